"""Candidate VAEs: the member with the lowest training reconstruction over the window is kept, only it trains
on, the choice survives a checkpoint, and settings that cannot choose are refused."""
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_slots
from tests.test_vae_task import vae_args
from weak_supervision import GaussianEncoderVAE, MethodConfig, VAECandidates, vae_loss


def small_candidates(count: int = 3, select_after: int = 4, window: int = 2) -> VAECandidates:
    torch.manual_seed(0)
    return VAECandidates([GaussianEncoderVAE(latent_dim=4) for _ in range(count)], select_after, window)


def test_the_member_with_the_lowest_reconstruction_over_the_window_is_chosen():
    candidates = small_candidates()
    assert not candidates.decided and candidates.chosen_index == 0 and len(candidates.training_members()) == 3
    # steps 0 and 1 lie before the window (select_after 4 - window 2): member 0 leads there but is not tallied
    candidates.record(0, [1.0, 9.0, 9.0])
    candidates.record(1, [1.0, 9.0, 9.0])
    assert int(candidates.tallied_steps) == 0 and candidates.chosen_index == 0
    candidates.record(2, [5.0, 4.0, 6.0])  # member 1 leads the tally
    assert candidates.chosen_index == 1 and not candidates.decided
    candidates.record(3, [5.0, 4.5, 2.0])  # window means: 5.0, 4.25, 4.0 -> member 2, chosen as step 3 ends it
    assert candidates.decided and candidates.chosen_index == 2
    assert candidates.training_members() == [candidates.members[2]]
    candidates.record(4, [0.0, 0.0, 9.0])  # after the choice nothing moves it
    assert candidates.chosen_index == 2 and int(candidates.tallied_steps) == 2


def test_the_set_encodes_with_the_chosen_member_and_only_trained_members_get_gradients():
    candidates = small_candidates(select_after=1, window=1)
    frames = torch.rand(2, 2, 1, 64, 64)
    config = MethodConfig(method="ada_gvae", latent_dim=4)
    losses = [vae_loss(member, None, config, frames[0], frames[1])[0] for member in candidates.training_members()]
    sum(losses).backward()
    assert all(p.grad is not None for p in candidates.parameters())
    candidates.zero_grad(set_to_none=True)
    candidates.record(0, [3.0, 1.0, 2.0])
    assert candidates.chosen_index == 1
    torch.testing.assert_close(candidates.encode(frames[0]), candidates.members[1].encode(frames[0]))
    loss = sum(vae_loss(member, None, config, frames[0], frames[1])[0] for member in candidates.training_members())
    loss.backward()
    trained = {index for index, member in enumerate(candidates.members) if member.encoder.mean.weight.grad is not None}
    assert trained == {1}


@pytest.mark.parametrize("members, select_after, window, message", [
    (1, 4, 2, "at least 2 members, got 1"), (2, 4, 0, r"window must be in \[1, select_after=4\], got 0"),
    (2, 4, 5, r"window must be in \[1, select_after=4\], got 5")])
def test_a_set_that_cannot_choose_is_refused(members, select_after, window, message):
    with pytest.raises(ValueError, match=message):
        VAECandidates([GaussianEncoderVAE(latent_dim=2) for _ in range(members)], select_after, window)


def model_state(run: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))


CANDIDATE_SETTINGS = ("vae.candidates=3", "vae.candidate_steps=2", "vae.candidate_window=1", "vae.metrics=[mig, dci]",
                      "vae.metric_sizes={mig_num_train: 200, dci_num_train: 200, dci_num_test: 100}")


CONSTANT_RATE = ("train.lr_schedule=exponential",)  # with the preset's huge decay_steps: a constant rate


def test_a_run_with_candidates_trains_only_the_chosen_one_after_the_choice_and_resumes_exactly(tmp_path):
    assert train_slots.main(vae_args(tmp_path, "straight", *CANDIDATE_SETTINGS, *CONSTANT_RATE)) == 0
    run = tmp_path / "runs" / "straight"
    at_choice, final = model_state(run, 2), model_state(run, 4)
    chosen = int(final["vae.selected"])
    assert int(at_choice["vae.selected"]) == chosen and 0 <= chosen < 3
    for member in range(3):
        key = f"vae.members.{member}.encoder.mean.weight"
        moved = not torch.equal(at_choice[key], final[key])
        assert moved == (member == chosen), f"member {member} {'moved' if moved else 'stayed'} after the choice"
    logs = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["candidates_training"] for r in logs] == [3.0, 3.0, 1.0, 1.0]
    assert [r["candidate"] for r in logs[2:]] == [float(chosen)] * 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 4 and 0 <= metrics["dci_disentanglement"] <= 1
    window = metrics["candidate_window_recon"]
    assert metrics["candidate"] == chosen and len(window) == 3 and window[chosen] == min(window)

    # stopped at the choice and resumed: the same member, the same weights as the uninterrupted run. The stop
    # is a smaller max_steps, so both runs take the preset's cosine rate off: its horizon is max_steps.
    assert train_slots.main(vae_args(tmp_path, "resumed", *CANDIDATE_SETTINGS, *CONSTANT_RATE,
                                     "train.max_steps=2")) == 0
    resumed = tmp_path / "runs" / "resumed"
    assert train_slots.main(["--resume", str(resumed), "train.max_steps=4"]) == 0
    again = model_state(resumed, 4)
    assert sorted(again) == sorted(final)
    for key in final:
        assert torch.equal(again[key], final[key]), key


@pytest.mark.parametrize("setting, message", [
    ("vae.candidates=0", "vae.candidates must be >= 1, got 0"),
    ("vae.method=factor_vae", "factor_vae needs one discriminator per VAE"),
    ("vae.candidate_window=3", r"vae.candidate_window must be in \[1, vae.candidate_steps=2\], got 3")])
def test_candidate_settings_it_cannot_honour_are_refused(tmp_path, capsys, setting, message):
    assert train_slots.main(vae_args(tmp_path, "bad", "vae.candidates=2", "vae.candidate_steps=2",
                                     "vae.candidate_window=1", setting)) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err


def test_candidate_options_enter_the_settings_digest_only_when_candidates_are_on():
    """Records made before the options existed keep counting: with one VAE the options change nothing."""
    from studies.runner import config_digest
    from training.loop import resolve_config

    def digest(*overrides: str) -> str:
        return config_digest(resolve_config("dsprites_vae", None, None, list(overrides)))

    single = digest()
    assert digest("vae.candidates=1", "vae.candidate_steps=99", "vae.candidate_window=9") == single
    several = digest("vae.candidates=2")
    assert several != single and digest("vae.candidates=2", "vae.candidate_steps=999") != several


def test_the_study_trains_candidates_for_the_methods_that_take_them(tmp_path, monkeypatch):
    """vae.candidates does not apply to factor_vae: a study asked only for Ada-GVAE must not stop on it."""
    import studies.weak_vae as study

    trained = []
    monkeypatch.setattr(study, "ensure_run", lambda out, run: trained.append(run.name))
    assert study.main(["--out", str(tmp_path), "--seeds", "0", "--only", "ada_gvae", "vae.candidates=3"]) == 0
    assert trained == ["ada_gvae-beta4-seed0"]
