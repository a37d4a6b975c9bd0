"""Per-object weak supervision: slot correspondence across frames, the pair objective, per-object scores."""
from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch

from data import PairBatch
from data.errors import DataError
from scoring.per_object import ObjectPoints, add_matches, object_factor_table, score_points
from slots.build import with_duplicate_merging
from slots.duplicates import MergeDuplicates
from weak_supervision.aggregation import kl_per_dim
from weak_supervision.slot_pairs import (SlotPairSettings, correspond, match_slots, permute_slots, share_mask,
                                         slot_pair_loss)
from weak_supervision.slot_vae import SlotVAE


def tiny_model(merge_duplicates: float | None = None, **kwargs) -> SlotVAE:
    """A small slot VAE; `merge_duplicates` wraps it in duplicate merging from outside, as the run's builder
    does (the model itself does not take the option)."""
    torch.manual_seed(0)
    model = SlotVAE(resolution=(16, 16), num_slots=4, slot_dim=16, latent_dim=6, mlp_hidden_dim=32,
                    encoder_channels=8, encoder_layers=2, decoder_channels=8, decoder_layers=2, **kwargs)
    return with_duplicate_merging(model, merge_duplicates)


def images(batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


#: the default run's discovery options, which the slot VAE of the weak_slots preset uses too
DISCOVERY_OPTIONS = dict(mask_prior="attention", colour_values=True, slot_frames="translation_scale",
                         invariant_attention="quadratic_translation", merge_duplicates=0.5)


@pytest.mark.parametrize("options", [{}, DISCOVERY_OPTIONS, {**DISCOVERY_OPTIONS, "glimpse_size": 7}],
                         ids=["paper", "discovery_options", "glimpse"])
@pytest.mark.parametrize("correspondence", ["init", "init_hungarian"])
def test_identical_frames_give_identical_posteriors_and_share_every_dimension(correspondence, options):
    """With invariant attention frame 1 must restart from frame 0's places too: fresh random starting
    positions would make slot k of the second pass a different object."""
    model, frame = tiny_model(**options).eval(), images()
    with torch.no_grad():
        slots0, slots1 = correspond(model, frame, frame, correspondence, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(slots1.mu, slots0.mu)
    torch.testing.assert_close(slots1.logvar, slots0.logvar)
    torch.testing.assert_close(slots1.attention, slots0.attention)
    assert share_mask(slots0.mu, slots0.logvar, slots1.mu, slots1.logvar, share_floor=0.0).all()  # paper's rule
    _, logs = slot_pair_loss(model, frame, frame, SlotPairSettings(correspondence=correspondence))
    assert logs["shared_fraction"] == 1.0


def test_restarting_from_drawn_places_would_break_the_correspondence():
    """The control for the test above: the same slots restarted at fresh random positions end elsewhere."""
    model, frame = tiny_model(**DISCOVERY_OPTIONS).eval(), images()
    with torch.no_grad():
        encoded = model.encode(frame)
        start, attention = model.attend(encoded, generator=torch.Generator().manual_seed(1))
        kept, _ = model.attend(encoded, initial_slots=start,
                               initial_frames=model.attention_frames(attention, model.resolution))
        redrawn, _ = model.attend(encoded, initial_slots=start, generator=torch.Generator().manual_seed(2))
    assert (kept - redrawn).abs().max() > 1e-3


def test_different_frames_keep_some_dimensions_apart():
    model = tiny_model().eval()
    with torch.no_grad():
        slots0, slots1 = correspond(model, images(seed=0), images(seed=1), "init")
    assert not torch.allclose(slots0.mu, slots1.mu)
    assert not share_mask(slots0.mu, slots0.logvar, slots1.mu, slots1.logvar, share_floor=0.0).all()


def test_hungarian_correspondence_keeps_each_slot_with_its_own_attention():
    """Matching reorders frame 1's slots; each slot's attention (its place and mask prior) must move with its
    posterior, or frame 1 would be rendered from mismatched parts. The composite is the same under any
    reordering of whole slots, so it must equal frame 1's own rendering."""
    options = {key: value for key, value in DISCOVERY_OPTIONS.items() if key != "merge_duplicates"}
    model, frame0, frame1 = tiny_model(**options).eval(), images(seed=0), images(seed=1)
    with torch.no_grad():
        _, slots1 = correspond(model, frame0, frame1, "hungarian", generator=torch.Generator().manual_seed(3))
        replay = torch.Generator().manual_seed(3)  # the same draws: frame 0's slots first, then frame 1's
        model.attend(model.encode(frame0), generator=replay)
        own = model(frame1, generator=replay)
        matched = model.render(slots1.mu, slots1.attention)
        unmatched = model.render(slots1.mu, own.attention)
    torch.testing.assert_close(matched.reconstruction, own.reconstruction, atol=1e-5, rtol=1e-5)
    assert not torch.equal(slots1.mu, own.mu)  # the matching did reorder slots here, so the check has teeth
    assert (unmatched.reconstruction - own.reconstruction).abs().max() > 1e-4


def test_matching_recovers_a_permutation_of_frame_one_slots():
    generator = torch.Generator().manual_seed(0)
    mu0 = torch.randn(5, 6, 8, generator=generator)
    perms = torch.stack([torch.randperm(6, generator=generator) for _ in range(5)])
    mu1 = permute_slots(mu0, perms.argsort(dim=1)) + 0.01 * torch.randn(5, 6, 8, generator=generator)
    found = match_slots(mu0, mu1)  # frame 0's slot k went to position perms[b, k] of frame 1
    torch.testing.assert_close(found, perms)
    torch.testing.assert_close(permute_slots(mu1, found), mu0, atol=0.05, rtol=0)


def test_hungarian_correspondence_undoes_a_permutation_of_the_starting_slots():
    """Slot Attention is slot-permutation equivariant, so frame 1 run from shuffled starting slots is frame 0
    shuffled; matching must undo it exactly."""
    model, frame = tiny_model().eval(), images()
    with torch.no_grad():
        start = model.slot_init(3, 4, torch.Generator().manual_seed(2))
        states0, _ = model.infer_slots(frame, initial_slots=start)
        perm = torch.stack([torch.randperm(4, generator=torch.Generator().manual_seed(i)) for i in range(3)])
        states1, _ = model.infer_slots(frame, initial_slots=permute_slots(start, perm))
        torch.testing.assert_close(states1, permute_slots(states0, perm), atol=1e-5, rtol=1e-5)
        mu0, mu1 = model.posterior(states0)[0], model.posterior(states1)[0]
    torch.testing.assert_close(permute_slots(mu1, match_slots(mu0, mu1)), mu0, atol=1e-5, rtol=1e-5)


def test_share_floor_shares_an_unchanged_slot_and_keeps_the_changed_dimension():
    mu0 = torch.zeros(1, 2, 4)
    logvar = torch.zeros(1, 2, 4)
    mu1 = mu0.clone()
    mu1[0, 0, 2] = 3.0  # slot 0: one dimension moved far (KL 4.5 nats)
    mu1[0, 1] = torch.tensor([0.01, 0.02, 0.03, 0.04])  # slot 1: noise-level differences only
    paper = share_mask(mu0, logvar, mu1, logvar, share_floor=0.0)
    floored = share_mask(mu0, logvar, mu1, logvar, share_floor=0.1)
    assert paper[0, 0].tolist() == [True, True, False, True] == floored[0, 0].tolist()
    assert not paper[0, 1].all()  # the midpoint rule splits pure noise in two ...
    assert floored[0, 1].all()  # ... the floor shares it
    assert kl_per_dim(mu0, logvar, mu1, logvar)[0, 1].max() < 0.1


@pytest.mark.parametrize("options", [{}, DISCOVERY_OPTIONS], ids=["paper", "discovery_options"])
def test_pair_loss_trains_every_part_and_the_baseline_shares_nothing(options):
    model = tiny_model(**options)
    for method in ("ada_gvae", "ada_mlvae", "slot_vae"):
        model.zero_grad()
        loss, logs = slot_pair_loss(model, images(seed=0), images(seed=1), SlotPairSettings(method=method, share_floor=0.0),
                                    generator=torch.Generator().manual_seed(0))
        loss.backward()
        assert torch.isfinite(loss)
        missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, f"{method}: no gradient for {missing}"
        if method == "slot_vae":
            assert logs["shared_fraction"] == 0.0
        else:
            assert 0.0 < logs["shared_fraction"] < 1.0


def test_pair_loss_is_mse_plus_scaled_kl():
    model, settings = tiny_model(), SlotPairSettings(method="slot_vae", beta=2.0, recon_sigma=0.5)
    loss, logs = slot_pair_loss(model, images(seed=0), images(seed=1), settings)
    expected = logs["mse"] + 2.0 * 2 * 0.25 * logs["kl"] / (3 * 16 * 16)
    torch.testing.assert_close(loss.detach(), expected)


@pytest.mark.parametrize("initial_logvar", [-4.0, 0.0])
def test_posterior_variance_starts_where_asked(initial_logvar):
    logvar = tiny_model(initial_logvar=initial_logvar)(images()).logvar
    assert abs(logvar.mean().item() - initial_logvar) < 0.3
    assert logvar.std().item() < 0.3


def test_warmup_scales_beta_and_the_sampling_noise():
    model, settings = tiny_model(), SlotPairSettings(method="slot_vae", beta=4.0)
    frames = torch.cat([images(seed=0), images(seed=1)])

    def loss_at(warmup: float) -> tuple[torch.Tensor, dict]:
        return slot_pair_loss(model, *frames.chunk(2), settings, torch.Generator().manual_seed(0), warmup)

    (cold, cold_logs), (half, half_logs) = loss_at(0.0), loss_at(0.5)
    states, attention = model.infer_slots(frames, generator=torch.Generator().manual_seed(0))  # same slot draws
    means = model.render(model.posterior(states)[0], attention).reconstruction
    torch.testing.assert_close(cold, torch.nn.functional.mse_loss(means, frames))  # no noise, no KL
    assert half_logs["mse"] > cold_logs["mse"]  # noise on the latents
    torch.testing.assert_close(half_logs["kl"], cold_logs["kl"])
    kl_term = 4.0 * 2 * 0.01 * half_logs["kl"] / (3 * 16 * 16)
    torch.testing.assert_close(half.detach(), half_logs["mse"] + 0.5 * kl_term)


def test_warmup_schedule_of_the_task():
    from training.config import build_config, parse_override
    from training.tasks.weak_slots import WeakSlotsTask

    def task(*overrides: str) -> WeakSlotsTask:
        return WeakSlotsTask(build_config([{"task": "weak_slots"}, *map(parse_override, overrides)]))

    warming = task("weak_slots.warmup_steps=100")
    assert [warming.warmup(step) for step in (0, 50, 100, 500)] == [0.0, 0.5, 1.0, 1.0]
    delayed = task("weak_slots.warmup_start=200", "weak_slots.warmup_steps=100")
    assert [delayed.warmup(step) for step in (0, 199, 200, 250, 300, 900)] == [0.0, 0.0, 0.0, 0.5, 1.0, 1.0]
    assert [task("weak_slots.warmup_start=10").warmup(step) for step in (9, 10)] == [0.0, 1.0]
    assert task().warmup(0) == 1.0


def test_mask_prior_fade_schedule_sets_the_model_weight_and_is_checked():
    from training.config import ConfigError, build_config, parse_override
    from training.tasks.weak_slots import WeakSlotsTask

    def task(*overrides: str) -> WeakSlotsTask:
        return WeakSlotsTask(build_config([{"task": "weak_slots"}, *map(parse_override, overrides)]))

    fading = task("model.mask_prior=attention", "weak_slots.mask_prior_fade_start=100",
                  "weak_slots.mask_prior_fade_steps=200")
    assert [fading.mask_prior_weight(step) for step in (0, 100, 200, 300, 900)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    floored = task("model.mask_prior=attention", "weak_slots.mask_prior_fade_start=100",
                   "weak_slots.mask_prior_fade_steps=200", "weak_slots.mask_prior_floor=0.25")
    assert [floored.mask_prior_weight(step) for step in (0, 100, 200, 300, 900)] == [1.0, 1.0, 0.625, 0.25, 0.25]
    model = tiny_model(**DISCOVERY_OPTIONS)
    fading.training_loss(model, PairBatch.from_frames(images(batch=2), images(batch=2, seed=1)), 200)
    assert float(model.mask_prior_weight) == 0.5
    assert "mask_prior_weight" in model.state_dict()  # a checkpoint keeps how far the prior has faded
    with pytest.raises(ConfigError, match="needs model.mask_prior=attention"):
        task("weak_slots.mask_prior_fade_steps=10")
    with pytest.raises(ConfigError, match="must be >= 0"):
        task("model.mask_prior=attention", "weak_slots.mask_prior_fade_start=-1")
    with pytest.raises(ConfigError, match=r"mask_prior_floor must be in \[0, 1\), got 1.0"):
        task("model.mask_prior=attention", "weak_slots.mask_prior_floor=1")


def test_a_faded_mask_prior_leaves_the_decoder_alone_and_a_half_faded_one_scales_the_log_attention():
    """At weight 0 the masks are the decoder's own (the same weights without a prior give the same output);
    in between the log attention is added scaled by the weight."""
    from slots.model import composite, log_attention_map

    options = {key: value for key, value in DISCOVERY_OPTIONS.items() if key != "merge_duplicates"}
    with_prior, without = tiny_model(**options).eval(), tiny_model(**{**options, "mask_prior": "none"}).eval()
    frame = images()
    with torch.no_grad():
        states, attention = with_prior.infer_slots(frame, generator=torch.Generator().manual_seed(5))
        latents = with_prior.posterior(states)[0]
        full = with_prior.render(latents, attention)
        with_prior.mask_prior_weight.fill_(0.0)
        faded = with_prior.render(latents, attention)
        torch.testing.assert_close(faded.masks, without.render(latents, attention).masks)
        assert (faded.masks - full.masks).abs().max() > 1e-3
        with_prior.mask_prior_weight.fill_(0.5)
        half = with_prior.render(latents, attention)
        decoded = with_prior.decoder(latents, with_prior.frames(attention, (16, 16)))
        prior = log_attention_map(attention, with_prior.feature_grid((16, 16)), (16, 16))
        torch.testing.assert_close(half.masks, composite(decoded, 0.5 * prior)[1])


def test_silhouette_divergence_by_hand():
    """KL over slots per pixel, averaged: zero when the head draws the rendered masks exactly."""
    from weak_supervision.slot_pairs import silhouette_divergence

    masks = torch.tensor([[0.75, 0.5], [0.25, 0.5]]).reshape(1, 2, 1, 2)  # 2 slots, 2 pixels
    torch.testing.assert_close(silhouette_divergence(masks.log(), masks), torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(silhouette_divergence(masks.log() + 3.0, masks), torch.tensor(0.0), atol=1e-6, rtol=0)
    drawn = torch.zeros(1, 2, 1, 2)  # uniform over the two slots
    by_hand = (0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5) + 0.0) / 2
    torch.testing.assert_close(silhouette_divergence(drawn, masks), torch.tensor(by_hand))
    with pytest.raises(ValueError, match="differ in shape"):
        silhouette_divergence(drawn, masks[:, :, :, :1])


SILHOUETTE_OPTIONS = {key: value for key, value in DISCOVERY_OPTIONS.items() if key != "merge_duplicates"}


def test_the_rendering_never_reads_the_silhouette_head():
    """The same weights without the fifth channel render the same image and masks."""
    with_head, without = tiny_model(**SILHOUETTE_OPTIONS, silhouette_head=True), tiny_model(**SILHOUETTE_OPTIONS)
    state = with_head.state_dict()
    last = max(key for key in state if key.startswith("decoder.convs.") and key.endswith(".weight"))
    for suffix in ("weight", "bias"):
        name = last.replace("weight", suffix)
        state[name] = state[name][:4]
    without.load_state_dict(state)
    frame = images()
    with torch.no_grad():
        states, attention = with_head.infer_slots(frame, generator=torch.Generator().manual_seed(2))
        latents = with_head.posterior(states)[0]
        full, plain = with_head.render(latents, attention), without.render(latents, attention)
    torch.testing.assert_close(full.reconstruction, plain.reconstruction)
    torch.testing.assert_close(full.masks, plain.masks)
    assert plain.silhouette_logits is None and full.silhouette_logits.shape == full.masks.shape
    assert (full.masks - full.silhouette_logits.softmax(dim=1)).abs().max() > 1e-3


def test_silhouette_term_is_added_and_trains_the_head_and_the_latents_only():
    """The loss grows by weight x divergence of the head's masks against the rendered ones; the rendered
    masks are held fixed, so the term moves the head and what feeds the latents, not the RGB + alpha rows."""
    from weak_supervision.slot_pairs import silhouette_divergence

    model, frames = tiny_model(**SILHOUETTE_OPTIONS, silhouette_head=True), (images(seed=0), images(seed=1))
    plain, _ = slot_pair_loss(model, *frames, SlotPairSettings(), generator=torch.Generator().manual_seed(3))
    loss, logs = slot_pair_loss(model, *frames, SlotPairSettings(silhouette_weight=0.5),
                                generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss - plain, 0.5 * logs["silhouette"])
    assert logs["silhouette"] > 0
    model.zero_grad()
    states, attention = model.infer_slots(frames[0])
    out = model.render(model.posterior(states)[0], attention)
    silhouette_divergence(out.silhouette_logits, out.masks).backward()
    head = model.decoder.convs[-1].weight.grad
    assert head[4].abs().sum() > 0 and head[:4].abs().sum() == 0
    assert model.to_posterior[1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="silhouette_head=True"):
        slot_pair_loss(tiny_model(**SILHOUETTE_OPTIONS), *frames, SlotPairSettings(silhouette_weight=0.5))


def test_a_glimpse_posterior_reads_the_pixels_and_permutes_with_the_slots():
    model, frame = tiny_model(**SILHOUETTE_OPTIONS, glimpse_size=7).eval(), images()
    with torch.no_grad():
        states, attention = model.infer_slots(frame, generator=torch.Generator().manual_seed(4))
        mu, logvar = model.posterior(states, frame, attention)
        perm = torch.tensor([2, 0, 3, 1])
        mu_perm, _ = model.posterior(states[:, perm], frame, attention[:, perm])
        other, _ = model.posterior(states, images(seed=9), attention)
    assert mu.shape == logvar.shape == (3, 4, 6)
    torch.testing.assert_close(mu_perm, mu[:, perm])
    assert (other - mu).abs().max() > 1e-4  # other pixels under the same attention: another posterior
    with pytest.raises(ValueError, match="pass the images and the attention"):
        model.posterior(states)


def test_outline_term_is_added_and_needs_the_head():
    model, frames = tiny_model(**SILHOUETTE_OPTIONS, outline_size=4), (images(seed=0), images(seed=1))
    plain, _ = slot_pair_loss(model, *frames, SlotPairSettings(), generator=torch.Generator().manual_seed(3))
    loss, logs = slot_pair_loss(model, *frames, SlotPairSettings(outline_weight=0.5),
                                generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(loss - plain, 0.5 * logs["outline"])
    model.zero_grad()
    slot_pair_loss(model, *frames, SlotPairSettings(outline_weight=0.5, beta=0.0))[0].backward()
    assert model.outline_head.net[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="outline head"):
        slot_pair_loss(tiny_model(**SILHOUETTE_OPTIONS), *frames, SlotPairSettings(outline_weight=0.5))


def test_an_outline_posterior_reads_the_attention_in_the_slot_frame():
    model, frame = tiny_model(**SILHOUETTE_OPTIONS, outline_size=4, outline_input=True).eval(), images()
    with torch.no_grad():
        states, attention = model.infer_slots(frame, generator=torch.Generator().manual_seed(4))
        mu, _ = model.posterior(states, frame, attention)
        perm = torch.tensor([3, 1, 0, 2])
        torch.testing.assert_close(model.posterior(states[:, perm], frame, attention[:, perm])[0], mu[:, perm])
        shifted = attention.roll(shifts=1, dims=1)  # every slot gets another slot's attention
        assert (model.posterior(states, frame, shifted)[0] - mu).abs().max() > 1e-4
    with pytest.raises(ValueError, match="pass the attention"):
        model.posterior(states)
    with pytest.raises(ValueError, match="set outline_size"):
        tiny_model(outline_input=True)


def test_silhouette_weight_needs_the_mask_prior():
    from training.config import ConfigError, build_config, parse_override
    from training.tasks.weak_slots import WeakSlotsTask

    def task(*overrides: str) -> WeakSlotsTask:
        return WeakSlotsTask(build_config([{"task": "weak_slots"}, *map(parse_override, overrides)]))

    weighted = task("model.mask_prior=attention", "weak_slots.silhouette_weight=0.1")
    assert weighted.settings.silhouette_weight == 0.1 and weighted.build_model().silhouette_head
    assert not task("model.mask_prior=attention").build_model().silhouette_head
    with pytest.raises(ConfigError, match="silhouette_weight .* needs model.mask_prior=attention"):
        task("weak_slots.silhouette_weight=0.1")
    with pytest.raises(ConfigError, match="silhouette_weight >= 0"):
        task("model.mask_prior=attention", "weak_slots.silhouette_weight=-1")
    outlined = task("weak_slots.outline_weight=0.1", "weak_slots.outline_size=6")
    assert outlined.settings.outline_weight == 0.1 and outlined.build_model().outline_head.size == 6
    assert task().build_model().outline_head is None
    with pytest.raises(ConfigError, match="outline_input .* needs weak_slots.outline_weight > 0"):
        task("weak_slots.outline_input=true")
    assert task("weak_slots.outline_weight=0.1", "weak_slots.outline_input=true").build_model().outline_input
    with pytest.raises(ConfigError, match="outline_size must be >= 2 cells, got 1"):
        task("weak_slots.outline_weight=0.1", "weak_slots.outline_size=1")
    with pytest.raises(ConfigError, match="outline_weight >= 0"):
        task("weak_slots.outline_weight=-0.1")
    with pytest.raises(ConfigError, match="glimpse_size must be 0 .* got 2"):
        task("weak_slots.glimpse_size=2")
    assert task("weak_slots.glimpse_size=7").build_model().glimpse.size == 7


def test_bad_pairs_and_settings_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="differ in shape"):
        slot_pair_loss(model, images(), images()[:, :, :8], SlotPairSettings())
    with pytest.raises(ValueError, match="unknown slot pair method"):
        SlotPairSettings(method="beta_vae")
    with pytest.raises(ValueError, match="expected images of shape"):
        model(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"initial slots must have shape \[3, K, 16\], got \[3, 4, 8\]"):
        model(images(), initial_slots=torch.zeros(3, 4, 8))
    with pytest.raises(ValueError, match=r"initial frames must be \[B, K, 2\]"):
        framed = tiny_model(**DISCOVERY_OPTIONS)
        encoded = framed.encode(images())
        _, attention = framed.attend(encoded)
        framed.attend(encoded, num_slots=4, initial_frames=framed.attention_frames(attention[:, :3], (16, 16)))


def test_num_slots_is_a_call_argument():
    model = tiny_model().eval()
    with torch.no_grad():
        for k in (2, 7):
            output = model(images(), num_slots=k)
            assert output.masks.shape == (3, k, 16, 16) and output.slots.shape == (3, k, 6)
            torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(3, 16, 16))


def test_slot_vae_with_discovery_options_changes_slot_count_and_merges_only_in_evaluation():
    model = tiny_model(**DISCOVERY_OPTIONS)
    for k in (2, 7):
        output = model.eval()(images(), num_slots=k)
        assert output.masks.shape == (3, k, 16, 16) and output.frames.positions.shape == (3, k, 2)
        torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(3, 16, 16))
        assert output.unmerged_masks is not None
    assert model.train()(images()).unmerged_masks is None


def test_the_run_builder_wraps_the_slot_vae_in_duplicate_merging_only_when_the_config_asks():
    """model.merge_duplicates reaches the slot VAE as the autoencoder's does: a wrapper its builder attaches,
    not a constructor argument, so the model class never sees the option."""
    from training.config import build_config, parse_override
    from training.tasks.weak_slots import build_slot_vae

    def built(*overrides: str) -> SlotVAE:
        sizes = [size for size in SMOKE_SIZES if size.startswith(("data.resolution", "model."))]
        return build_slot_vae(build_config([{"task": "weak_slots"}, *map(parse_override, [*sizes, *overrides])]))

    assert MergeDuplicates.attached(built()) is None
    wrapped = built("model.merge_duplicates=0.5")
    assert isinstance(wrapped, SlotVAE) and MergeDuplicates.attached(wrapped).threshold == 0.5
    with torch.no_grad():
        assert wrapped.eval()(images()).unmerged_masks is not None
    with pytest.raises(TypeError, match="merge_duplicates"):
        SlotVAE(resolution=(16, 16), merge_duplicates=0.5)


def test_the_representation_of_a_slot_in_its_own_frame_includes_the_frame():
    from scoring.per_object import slot_representations

    model = tiny_model(**DISCOVERY_OPTIONS).eval()
    with torch.no_grad():
        output = model(images())
    representation = slot_representations(output)
    assert representation.shape == (3, 4, 6 + 4)
    torch.testing.assert_close(representation[..., :6], output.mu)
    expected = model.attention_frames(output.attention, model.resolution)  # centre of mass and spread
    torch.testing.assert_close(representation[..., 6:8], expected.positions)
    torch.testing.assert_close(representation[..., 8:], expected.scales)
    torch.testing.assert_close(slot_representations(output, with_frame=False), output.mu)
    plain = tiny_model().eval()
    with torch.no_grad():
        plain_output = plain(images())
    torch.testing.assert_close(slot_representations(plain_output), plain_output.mu)  # no frame: the mean alone


# --- per-object matching -------------------------------------------------------------------------------

def square_masks() -> tuple[torch.Tensor, torch.Tensor]:
    """Image 0: object 1 top-left, object 2 bottom-right. Slots: slot 2 covers object 1, slot 0 object 2."""
    true = torch.zeros(1, 4, 4, dtype=torch.long)
    true[0, :2, :2], true[0, 2:, 2:] = 1, 2
    slots = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    slots[0, 2, :2, :2] = True
    slots[0, 0, 2:, 2:] = True
    slots[0, 1] = ~(slots[0, 0] | slots[0, 2])
    return true, slots


def test_objects_are_matched_to_slots_by_mask_iou():
    true, slot_masks = square_masks()
    latents = torch.arange(3.0).reshape(1, 3, 1).repeat(1, 1, 2)  # slot k's latent is [k, k]
    points = ObjectPoints()
    add_matches(points, latents, slot_masks, true, [np.array([[10, 11], [20, 21]])])
    reps, factors = points.arrays()
    pairs = sorted((tuple(r), tuple(f)) for r, f in zip(reps.tolist(), factors.tolist()))
    assert pairs == [((0.0, 0.0), (20, 21)), ((2.0, 2.0), (10, 11))]  # slot 0 <-> object 2, slot 2 <-> object 1
    assert points.ious == [1.0, 1.0] and points.unmatched_objects == 0 and points.objects == 2


def test_more_objects_than_slots_empty_frames_and_invisible_objects():
    true = torch.zeros(2, 4, 4, dtype=torch.long)
    true[0, 0, :] = 1
    true[0, 1, :] = 2
    true[0, 2, :] = 3  # three objects ...
    slot_masks = torch.zeros(2, 2, 4, 4, dtype=torch.bool)  # ... two slots
    slot_masks[:, 0, :2] = True
    slot_masks[:, 1, 2:] = True
    points = ObjectPoints()
    tables = [np.array([[1], [2], [3]]), np.zeros((0, 1), dtype=np.int64)]  # image 1: an empty frame
    add_matches(points, torch.randn(2, 2, 4), slot_masks, true, tables)
    assert points.objects == 3 and len(points.representations) == 2 and points.unmatched_objects == 1
    invisible = ObjectPoints()  # object 2 is listed but has no pixel: no point, counted unmatched
    add_matches(invisible, torch.randn(1, 2, 4), slot_masks[:1], (true[:1] == 1).long(), [np.array([[1], [2]])])
    assert len(invisible.representations) == 1 and invisible.unmatched_objects == 1
    with pytest.raises(DataError, match="nothing to score"):
        ObjectPoints().arrays()


def test_a_mask_id_without_factors_is_refused():
    true, _ = square_masks()
    record = {"factor_names": ["a", "b"], "objects0": [{"a": 1, "b": 2}], "objects1": []}
    with pytest.raises(DataError, match=r"sample 'pair-7': mask0 has object id 2 but factors.json lists 1"):
        object_factor_table([record], 0, true, ["pair-7"])


def test_per_object_scores_on_synthetic_latents():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 5, size=(1200, 3))

    def points(reps: np.ndarray, rows: slice) -> ObjectPoints:
        result = ObjectPoints(objects=rows.stop - rows.start, ious=[1.0])
        result.representations, result.factors = [reps[rows]], [factors[rows]]
        return result

    def scores(reps: np.ndarray) -> dict:
        return score_points(points(reps, slice(0, 800)), points(reps, slice(800, 1200)), metrics=["dci", "mig"])

    exact = scores(factors + 0.01 * rng.standard_normal(factors.shape))
    mixed = scores(factors @ np.linalg.qr(rng.standard_normal((3, 3)))[0])
    noise = scores(rng.standard_normal(factors.shape))
    assert exact["object_dci_disentanglement"] > 0.9 and exact["object_mig"] > 0.8
    assert mixed["object_dci_disentanglement"] < exact["object_dci_disentanglement"] - 0.2
    assert noise["object_dci_disentanglement"] < 0.1 and noise["object_mig"] < 0.05
    assert exact["object_matched_fraction"] == 1.0


def test_true_codes_replace_the_vector_and_keep_the_frame():
    """A noise vector with a frame that codes factor a: replacing the vector by the true b and c lifts DCI
    from the frame's share to nearly perfect; the object counts and IoUs are kept."""
    from scoring.per_object import with_true_codes

    rng = np.random.default_rng(0)
    factors = rng.integers(0, 5, size=(900, 3))
    frame = factors[:, :1] + 0.01 * rng.standard_normal((900, 1))
    points = ObjectPoints([np.concatenate([rng.standard_normal((900, 4)), frame], axis=1)], [factors],
                          ("a", "b", "c"), objects=950, unmatched_objects=50, ious=[0.8] * 900)
    replaced = with_true_codes(points, ["c", "b"], frame_entries=1)
    representation = replaced.arrays()[0]
    np.testing.assert_array_equal(representation[:, :2], factors[:, [2, 1]])
    np.testing.assert_array_equal(representation[:, 2], points.arrays()[0][:, 4])
    assert (replaced.objects, replaced.unmatched_objects, replaced.ious) == (950, 50, [0.8] * 900)

    def dci(p: ObjectPoints) -> float:
        reps, true = p.arrays()
        part = lambda rows: ObjectPoints([reps[rows]], [true[rows]], p.factor_names, objects=1, ious=[1.0])
        return score_points(part(slice(0, 600)), part(slice(600, None)), metrics=["dci"])["object_dci_disentanglement"]

    assert dci(replaced) > 0.9 and dci(points) < dci(replaced) - 0.3
    with pytest.raises(DataError, match=r"true codes \['size'\] must be a non-empty subset of the factors"):
        with_true_codes(points, ["size"], frame_entries=1)


def test_factor_readout_says_which_factor_is_read_and_from_where():
    """Factor a is the frame's x, factor b vector entry 1, factor c is noise: the readout must tell them apart."""
    from scoring.per_object import code_names, factor_readout, format_readout

    rng = np.random.default_rng(0)
    factors = rng.integers(0, 4, size=(900, 3))
    vector = rng.standard_normal((900, 3))
    vector[:, 1] = factors[:, 1] + 0.05 * rng.standard_normal(900)
    frame = rng.standard_normal((900, 4))
    frame[:, 0] = factors[:, 0] + 0.05 * rng.standard_normal(900)
    reps = np.concatenate([vector, frame], axis=1)

    def points(rows: slice) -> ObjectPoints:
        result = ObjectPoints(factor_names=("a", "b", "c"))
        result.representations, result.factors = [reps[rows]], [factors[rows]]
        return result

    names = code_names(3, 7)
    assert names == ["z0", "z1", "z2", "frame_x", "frame_y", "frame_scale_x", "frame_scale_y"]
    factor_rows, code_rows = factor_readout(points(slice(0, 600)), points(slice(600, 900)), names)
    rows = {row["factor"]: row for row in factor_rows}
    assert rows["a"]["test_accuracy"] > 0.95 and rows["a"]["frame_share"] > 0.8 and rows["a"]["top_code"] == "frame_x"
    assert rows["b"]["test_accuracy"] > 0.95 and rows["b"]["frame_share"] < 0.2 and rows["b"]["top_code"] == "z1"
    assert rows["c"]["test_accuracy"] < rows["c"]["majority_accuracy"] + 0.08  # noise reads no better than guessing
    assert 0.2 < rows["c"]["majority_accuracy"] < 0.35  # four roughly balanced values
    assert "frame_x" in format_readout(list(rows.values())).splitlines()[1]
    # per entry: the contributions add up to DCI disentanglement on the same fit (same seed, same classifiers)
    from metrics.disentanglement import dci
    from scoring.per_object import format_code_readout

    expected = dci(reps[:600], factors[:600], reps[600:], factors[600:], "random_forest", np.random.default_rng(0))
    assert [row["code"] for row in code_rows] == names
    assert sum(row["contribution"] for row in code_rows) == pytest.approx(expected["dci_disentanglement"])
    assert sum(row["weight"] for row in code_rows) == pytest.approx(1.0)
    codes = {row["code"]: row for row in code_rows}
    noise_codes = [name for name in names if name not in ("z1", "frame_x")]
    for code, factor in (("z1", "b"), ("frame_x", "a")):  # the clean codes carry the weight, one factor each
        assert max(codes[code]["importance"], key=codes[code]["importance"].get) == factor
        assert codes[code]["weight"] > 0.3 and codes[code]["score"] > 0.5
    for code in noise_codes:  # a noise code serves only the noise factor c: "pure" but light
        assert codes[code]["weight"] < 0.1 and codes[code]["importance"]["a"] < 0.01 > codes[code]["importance"]["b"]
    assert format_code_readout(code_rows).splitlines()[-1].split()[2] == f"{expected['dci_disentanglement']:.3f}"
    with pytest.raises(ValueError, match="a representation of 5 entries is neither the 3-entry slot vector"):
        code_names(3, 5)


# --- the task and the comparison -----------------------------------------------------------------------

SMOKE_SIZES = ["data.resolution=16", "data.num_train=64", "data.num_eval=32", "data.pairs_per_shard=4",
               "data.shuffle_buffer=16", "model.num_slots=4", "model.slot_dim=16", "model.mlp_hidden_dim=32",
               "model.encoder_channels=8", "model.encoder_layers=2", "model.encoder_kernel=3",
               "model.decoder_channels=8", "model.decoder_layers=2", "model.decoder_kernel=3",
               "train.batch_size=4", "train.max_steps=4", "train.batches_per_epoch=4", "train.eval_every=2",
               "train.eval_images=8", "train.checkpoint_every=2", "eval.sweep_slots=[2,4]", "eval.batch_size=16",
               "eval.num_visualise=2", "weak_slots.object_metrics=[dci,mig]"]


def test_weak_slots_table_reports_angle_agreement_of_searching_runs_only():
    """Runs with model.orientation_search report how often the chosen angle follows the object; the table
    gives its median beside chance, and leaves it out for models that did not search."""
    from studies.weak_slots import SCORES, markdown, medians

    rows = [{key: 0.5 for key in SCORES} | {"model": model, "seed": 0, "steps": 10, "object_angle_agreement": None,
                                             "object_angle_chance": None}
            for model in ("autoencoder", "slot_vae", "ada_gvae")]
    assert "angle agreement" not in markdown(medians(rows), [], rows)
    rows[2] |= {"object_angle_agreement": 0.8, "object_angle_chance": 0.2}
    rows.append(rows[2] | {"seed": 1, "object_angle_agreement": 0.6})
    table = markdown(medians(rows), [], rows)
    angle_table = table.split("median angle agreement")[1].split("\n\n")[0]
    assert "| ada_gvae | 0.700 | 0.200 |" in angle_table and "slot_vae" not in angle_table


def test_weak_slots_comparison_end_to_end(tmp_path, capsys):
    """One seed of the three models through the study command: every run trains through train_slots.py,
    the autoencoder's slots are scored afterwards, and the table reports the bar as undecided."""
    from studies.weak_slots import main as study

    out = tmp_path / "study"
    study_args = ["--out", str(out), "--seeds", "0", f"data.root={tmp_path / 'data'}", *SMOKE_SIZES]
    assert study([*study_args, "--only", "ada_gvae"]) == 0  # a slice: one model trained, the table reads it alone
    assert sorted(path.name for path in (out / "runs").iterdir()) == ["ada_gvae-seed0"]
    assert [row["model"] for row in csv.DictReader((out / "results.csv").open())] == ["ada_gvae"]
    assert study(study_args) == 0  # the rest of the study: ada_gvae is reused, the other two are trained
    for model in ("autoencoder", "slot_vae", "ada_gvae"):
        metrics = json.loads((out / "runs" / f"{model}-seed0" / "metrics.json").read_text())
        for key in ("fg_ari", "object_dci_disentanglement", "object_mig", "object_matched_fraction",
                    "object_vector_dci_disentanglement"):
            assert math.isfinite(metrics[key]), (model, key)
        assert metrics["steps"] == 4 and [row["num_slots"] for row in metrics["slot_sweep"]] == [2, 4]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [row["model"] for row in rows] == ["autoencoder", "slot_vae", "ada_gvae"]
    assert "undecided" in (out / "results.md").read_text() and (out / "results.png").is_file()
    readme = tmp_path / "README.md"  # --readme: the same table and the plot, into the README's block
    readme.write_text("text\n<!-- weak_slots_study:begin -->\nstale\n<!-- weak_slots_study:end -->\nmore\n")
    assert study(["--out", str(out), "--seeds", "0", "--finished-only", "--readme", str(readme)]) == 0
    written = readme.read_text()
    assert "stale" not in written and (out / "results.md").read_text().strip() in written
    assert "![weak_slots_study](study/results.png)" in written and written.endswith("end -->\nmore\n")
    from eval.per_object import main as per_object  # the readout of a finished run, from the command line

    run = out / "runs" / "ada_gvae-seed0"
    assert per_object(["--run", str(run), "--readout", "--max-images", "16"]) == 0
    readout = json.loads((run / "object_readout.json").read_text())
    code_rows = json.loads((run / "object_codes.json").read_text())
    vector_codes = [f"z{i}" for i in range(len(code_rows) - 4)]
    assert [row["code"] for row in code_rows] == [*vector_codes, "frame_x", "frame_y", "frame_scale_x", "frame_scale_y"]
    assert sum(row["weight"] for row in code_rows) == pytest.approx(1.0)
    assert {"colour", "shape", "x", "y"} <= {row["factor"] for row in readout}
    names = {f"z{i}" for i in range(16)} | {"frame_x", "frame_y", "frame_scale_x", "frame_scale_y"}
    assert all(0.0 <= row["test_accuracy"] <= 1.0 and 0.0 <= row["frame_share"] <= 1.0 and row["top_code"] in names
               for row in readout)
    with pytest.raises(SystemExit):
        study(["--out", str(out), "--only", "ada_gvea,slot_vae"])
    assert "--only: unknown model(s) ada_gvea; the study's: autoencoder, slot_vae, ada_gvae" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="train.max_steps differ"):  # finished runs are reused only as trained
        study(["--out", str(out), "--seeds", "0", f"data.root={tmp_path / 'data'}", *SMOKE_SIZES,
               "train.max_steps=5"])
    def recorded_rows() -> dict[str, dict]:  # the settings a table was built with aside
        return {row["model"]: {k: v for k, v in row.items() if k != "overrides"}
                for row in csv.DictReader((out / "results.csv").open())}

    recorded = recorded_rows()
    shutil.rmtree(out / "runs" / "ada_gvae-seed0")  # run directories are not kept in git, the CSV is
    assert study(study_args) == 0
    assert not (out / "runs" / "ada_gvae-seed0").exists()  # recorded with the same settings: not trained again
    assert recorded_rows() == recorded


def test_vector_only_scores_of_a_searching_run_report_no_angle(tmp_path):
    """The angle agreement reads the frame's (cos, sin) at the end of a representation: scoring the vector
    alone must not read the vector's last two entries as an angle."""
    import train_slots
    from eval.per_object import main as per_object

    args = ["--preset", "weak_slots", f"output_dir={tmp_path / 'runs'}", "name=search", f"data.root={tmp_path / 'data'}",
            *SMOKE_SIZES, "model.orientation_search=4"]
    assert train_slots.main(args) == 0
    run = tmp_path / "runs" / "search"
    assert 0.0 <= json.loads((run / "metrics.json").read_text())["object_angle_agreement"] <= 1.0
    assert per_object(["--run", str(run), "--vector-only", "--max-images", "16"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert "object_vector_dci_disentanglement" in metrics and "object_vector_angle_agreement" not in metrics


def test_weak_slots_verdict_by_hand():
    from studies.weak_slots import verdict

    def summary(ae_dci, vae_dci, weak_dci, ae_ari, weak_ari, seeds=3):
        values = {"autoencoder": (ae_dci, ae_ari), "slot_vae": (vae_dci, 0.5), "ada_gvae": (weak_dci, weak_ari)}
        return [{"model": m, "seeds": seeds, "object_dci_disentanglement": d, "fg_ari": a}
                for m, (d, a) in values.items()]

    assert verdict(summary(0.10, 0.12, 0.20, 0.70, 0.68)) == "met"
    assert verdict(summary(0.10, 0.16, 0.20, 0.70, 0.68)) == "NOT met (per-object DCI)"  # margin 0.05 missed
    assert verdict(summary(0.10, 0.12, 0.20, 0.70, 0.66)) == "NOT met (FG-ARI)"
    assert verdict(summary(0.10, 0.12, 0.20, 0.70, 0.68, seeds=2)).startswith("undecided")
    assert verdict(summary(0.10, 0.12, 0.20, 0.70, 0.68)[:2]).startswith("undecided")


def test_per_object_command_refuses_a_vae_run_and_a_missing_directory(tmp_path, capsys):
    from eval.per_object import main as per_object

    assert per_object(["--run", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_the_weak_slots_preset_builds_on_the_default_run():
    """The comparison is like for like only if the slot VAEs use the default autoencoder's model and budget."""
    from dataclasses import asdict

    from training.loop import resolve_config

    default, weak = (resolve_config(preset, None, None, []) for preset in ("default", "weak_slots"))
    assert weak.task == "weak_slots" and default.task == "discovery"
    assert asdict(weak.model) == asdict(default.model)
    assert (weak.train.max_steps, weak.train.time_limit_minutes) == (default.train.max_steps,
                                                                     default.train.time_limit_minutes)
    assert asdict(weak.data) == asdict(default.data)


def test_weak_slots_table_lists_every_seed_and_marks_a_missing_one():
    from studies.weak_slots import per_seed

    rows = [{"model": "slot_vae", "seed": seed, "fg_ari": ari, "object_dci_disentanglement": dci, "steps": 5000}
            for seed, ari, dci in ((0, 0.9, 0.41), (2, 0.8, 0.43))]
    rows.append({"model": "ada_gvae", "seed": 1, "fg_ari": 0.7, "object_dci_disentanglement": None, "steps": 4000})
    header, _, slot_vae, ada_gvae = per_seed(rows)
    assert "seeds 0 / 1 / 2" in header
    assert slot_vae == "| slot_vae | 0.900 / - / 0.800 | 0.410 / - / 0.430 | 5000 / - / 5000 |"
    assert ada_gvae == "| ada_gvae | - / 0.700 / - | - / - / - | - / 4000 / - |"
