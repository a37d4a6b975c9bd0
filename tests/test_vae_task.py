"""The VAE family through the training entry point, its label plumbing, the traversal picture, and the
study's statistics."""
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

import train_slots
from viz.traversal import latent_traversal
from studies.weak_vae import bar_met, few_label_selection, markdown, medians, spearman_by_group
from training.tasks.vae import changed_labels, frames_for_vae, train_reconstruction

TINY_METRICS = ("vae.metrics=[mig, dci, sap, modularity, beta_vae, factor_vae]",
                "vae.metric_sizes={batch_size: 8, beta_vae_num_train: 40, beta_vae_num_eval: 20, "
                "factor_vae_num_variance: 200, factor_vae_num_train: 40, factor_vae_num_eval: 20, mig_num_train: 200, "
                "dci_num_train: 200, dci_num_test: 100, sap_num_train: 200, sap_num_test: 100, "
                "modularity_num_train: 200, modularity_num_test: 100}",
                "vae.dci_importance_model=random_forest")


def vae_args(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return ["--preset", "dsprites_vae", f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}",
            f"name={name}", "data.num_train=64", "data.num_eval=16", "data.pairs_per_shard=8",
            "data.shuffle_buffer=16", "train.batch_size=4", "train.max_steps=4", "train.batches_per_epoch=4",
            "train.log_every=1", "train.eval_every=2", "train.eval_images=8", "train.checkpoint_every=2",
            "vae.quick_mig_points=64", *extra]


@pytest.mark.parametrize("method", ["ada_gvae", "mlvae", "factor_vae"])
def test_vae_methods_train_and_write_every_metric(tmp_path, method):
    assert train_slots.main(vae_args(tmp_path, method, f"vae.method={method}", *TINY_METRICS)) == 0
    run_dir = tmp_path / "runs" / method
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("dci_disentanglement", "dci_completeness", "mig", "sap", "modularity", "explicitness_test",
                "beta_vae_eval_accuracy", "factor_vae_eval_accuracy", "train_recon_loss", "eval_recon_loss"):
        assert math.isfinite(metrics[key]), key
    assert metrics["method"] == method and metrics["steps"] == 4
    assert (run_dir / "latents.png").is_file()
    evals = [json.loads(line) for line in (run_dir / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4] and all("mig" in e for e in evals)
    if method == "ada_gvae":
        logs = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
        assert all(0 < r["shared_dims"] < 10 for r in logs)  # adaptive sharing keeps some dims, shares others
        # the on-demand scorer reproduces the report's MIG (same seed, sizes, checkpoint) and merges new keys
        from eval.disentangle import main as disentangle

        before = dict(metrics)
        metrics_path = run_dir / "metrics.json"
        metrics_path.write_text(json.dumps({k: v for k, v in metrics.items() if k != "mig"}))
        assert disentangle(["--run", str(run_dir), "--metrics", "mig"]) == 0
        assert json.loads(metrics_path.read_text())["mig"] == pytest.approx(before["mig"])
        assert disentangle(["--run", str(tmp_path)]) == 2


def test_vae_task_refuses_data_without_a_ground_truth_source(tmp_path, capsys):
    assert train_slots.main(vae_args(tmp_path, "bad", "data.generator=multi_dsprites", "data.resolution=32")) == 2
    assert "data.generator=dsprites" in capsys.readouterr().err
    assert train_slots.main(vae_args(tmp_path, "bad2", "vae.method=gvae2")) == 2
    assert "unknown method 'gvae2'" in capsys.readouterr().err


def test_changed_labels_and_frames():
    records = [{"factor_names": ["shape", "scale", "x"], "changed": [[0, "x"]]},
               {"factor_names": ["shape", "scale", "x"], "changed": [[0, "shape"], [0, "scale"]]}]
    assert changed_labels(records).tolist() == [[False, False, True], [True, True, False]]
    frames = torch.tensor([-1.0, 1.0, 0.0]).view(3, 1, 1, 1).expand(3, 3, 2, 2)
    assert frames_for_vae(frames, grayscale=True).shape == (3, 1, 2, 2)
    assert frames_for_vae(frames, grayscale=True)[:, 0, 0, 0].tolist() == [0.0, 1.0, 0.5]


class _CodeImage(torch.nn.Module):
    """encode -> a fixed mean; decode -> logits that spell out the code, so a traversal can be read back."""

    def encode(self, x):
        return torch.tensor([[0.3, -0.7, 1.1]]).expand(len(x), -1), torch.zeros(len(x), 3)

    def decode(self, z):
        return torch.logit(torch.sigmoid(z)).view(len(z), 1, 1, 3)


def test_latent_traversal_moves_one_dimension_per_row():
    grid = latent_traversal(_CodeImage(), torch.zeros(1, 1, 3), steps=5, limit=2.0)
    codes = torch.logit(grid.clamp(1e-6, 1 - 1e-6))[..., 0, 0, :]  # [rows, steps, dims]
    for row in range(3):
        assert torch.allclose(codes[row, :, row], torch.linspace(-2, 2, 5), atol=1e-4)
        others = [d for d in range(3) if d != row]
        assert torch.allclose(codes[row][:, others], torch.tensor([0.3, -0.7, 1.1])[others].expand(5, -1), atol=1e-4)


def test_train_reconstruction_averages_the_last_tenth(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "recon_loss": float(s)}) + "\n" for s in range(1, 101)))
    assert train_reconstruction(log, 100) == pytest.approx(sum(range(91, 101)) / 10)


def _row(method, beta, seed, dci, recon):
    return {"method": method, "beta": beta, "seed": seed, "dci_disentanglement": dci, "mig": dci / 2, "sap": 0.0,
            "modularity": 0.5, "recon_loss": recon}


def test_study_statistics_by_hand():
    rows = [_row("ada_gvae", 1.0, s, d, r) for s, (d, r) in enumerate([(0.7, 30), (0.6, 40), (0.5, 50)])]
    rows += [_row("beta_vae", 1.0, s, d, r) for s, (d, r) in enumerate([(0.1, 30), (0.2, 40), (0.35, 35)])]
    rows += [_row("beta_vae", 16.0, s, d, r) for s, (d, r) in enumerate([(0.45, 90), (0.3, 80), (0.1, 85)])]
    summary = medians(rows)
    assert [s["dci_disentanglement"] for s in summary] == [0.6, 0.2, 0.3]
    assert bar_met(summary)  # 0.6 >= 0.5 and >= 2 x 0.3
    correlation = spearman_by_group(rows)
    assert correlation["weak"]["rho"] == pytest.approx(-1.0)  # lower loss <-> higher DCI, perfectly ranked
    # unsupervised: recon ranks (1,3,2,6,4,5), DCI ranks (1.5,3,5,6,4,1.5); centred at 3.5:
    # sum dx*dy = 6.5, sum dx^2 = 17.5, sum dy^2 = 17 -> rho = 6.5 / sqrt(17.5 * 17)
    assert correlation["unsupervised"]["rho"] == pytest.approx(6.5 / (17.5 * 17) ** 0.5)
    rows[7]["dci_disentanglement"] = 0.32  # the best beta-VAE median rises to 0.32: 0.6 < 2 x 0.32
    assert not bar_met(medians(rows))
    rows[7]["dci_disentanglement"] = 0.25  # best beta-VAE median 0.25 ...
    rows[1]["dci_disentanglement"] = 0.45  # ... and Ada-GVAE's falls to 0.5: exactly at both bars
    assert bar_met(medians(rows))
    rows[0]["dci_disentanglement"] = 0.48  # ... and now to 0.48: below 0.5
    assert not bar_met(medians(rows))
    ada = next(s["dci_disentanglement"] for s in medians(rows) if s["method"] == "ada_gvae")
    assert f"NOT met (Ada-GVAE {ada:.3f}, best beta-VAE 0.250: {ada / 0.25:.2f}x)" in markdown(
        rows, medians(rows), correlation, [])
    with_one_seed = rows + [_row("factor_vae", 1.0, 0, 0.3, 60)]  # not compared by the bar: still decided
    assert "Bar (median DCI of Ada-GVAE >= 0.5 and >= 2x the best beta-VAE median): NOT met" in markdown(
        with_one_seed, medians(with_one_seed), correlation, [])
    assert "undecided" in markdown(rows[:-1], medians(rows[:-1]), correlation, [])  # beta 16 has two seeds


def test_study_few_label_table_compares_selection_with_full_labels():
    rows = [_row("ada_gvae", 1.0, 0, 0.8, 30), _row("beta_vae", 1.0, 0, 0.2, 30), _row("beta_vae", 4.0, 0, 0.5, 30)]
    runs = [{"few_label_dci": {"100": [0.7, 0.1], "1000": [0.8, 0.8]}},
            {"few_label_dci": {"100": [0.2, 0.3], "1000": [0.1, 0.1]}},
            {"few_label_dci": {"100": [0.4, 0.2], "1000": [0.5, 0.5]}}]
    selection = {(s["labels"], s["group"]): s for s in few_label_selection(rows, runs)}
    assert set(selection) == {(100, "all"), (1000, "all")}  # one weak run: nothing to select among
    assert selection[(1000, "all")]["agreement"] == 1.0 and selection[(1000, "all")]["mean_regret"] == 0.0
    # 100 labels: draw 0 picks the Ada-GVAE run, draw 1 the beta 1 run (full 0.2): regret 0.6 once
    assert selection[(100, "all")]["agreement"] == 0.5
    assert selection[(100, "all")]["mean_regret"] == pytest.approx(0.3)
    table = markdown(rows, medians(rows), spearman_by_group(rows), [], list(selection.values()))
    assert "| 100 | all (3) |" in table and "50% |" in table


def test_study_refuses_to_reuse_runs_trained_with_other_settings(tmp_path):
    from studies.runner import check_same_settings
    from training.config import save_config
    from training.loop import resolve_config

    settings = [f"output_dir={tmp_path}", "name=r", "vae.method=ada_gvae", "train.max_steps=400"]
    save_config(resolve_config("dsprites_vae", None, None, settings), tmp_path / "config.yaml")
    check_same_settings(tmp_path, "dsprites_vae", settings)  # same settings: reused silently
    check_same_settings(tmp_path, "dsprites_vae", settings + ["model.num_slots=3"])  # a section vae ignores
    with pytest.raises(SystemExit, match=r"train\.max_steps differ"):
        check_same_settings(tmp_path, "dsprites_vae", settings[:-1] + ["train.max_steps=500"])


def test_vae_trains_on_converted_npz_shards_and_scores_against_the_npz(tmp_path):
    from data.convert_dsprites import convert_npz
    from test_dsprites import write_npz

    npz = tmp_path / "dsprites_tiny.npz"
    write_npz(npz)
    shards = tmp_path / "shards"
    convert_npz(npz, shards, num_train=64, num_eval=16, pairs_per_shard=8, changed_factors="random", seed=0,
                progress=False)
    args = vae_args(tmp_path, "npz", f"data.train_shards={shards}/train-*.tar", f"data.eval_shards={shards}/eval-*.tar",
                    f"vae.npz={npz}", "vae.metrics=[mig]", "vae.metric_sizes={mig_num_train: 100}",
                    "vae.quick_mig_points=32")
    assert train_slots.main(args) == 0
    metrics = json.loads((tmp_path / "runs" / "npz" / "metrics.json").read_text())
    assert 0.0 <= metrics["mig"] <= 1.0 and metrics["dataset"]["train_shards"].endswith("train-*.tar")


def test_study_skips_a_run_another_process_holds(tmp_path, monkeypatch):
    import subprocess

    from studies.runner import ensure_run, run_lock
    from studies.weak_vae import planned_run

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a held run must not be trained"))
    with run_lock(tmp_path, "ada_gvae-beta1-seed0") as held:
        assert held
        with run_lock(tmp_path, "ada_gvae-beta1-seed0") as held_again:  # another open file: another holder
            assert not held_again
        assert ensure_run(tmp_path, planned_run("ada_gvae", 1.0, 0, [], tmp_path)) is None
    with run_lock(tmp_path, "ada_gvae-beta1-seed0") as held:  # released when its holder let go
        assert held


def test_bf16_training_scores_dci_during_training_and_from_few_labels(tmp_path, capsys):
    """bf16 autocast on the CPU still trains in float32 posteriors; the eval log carries DCI and the time
    spent scoring; eval.few_labels scores the same labelled draws the same way twice."""
    from eval.few_labels import main as few_labels

    args = vae_args(tmp_path, "bf16", "train.mixed_precision=bf16", "vae.quick_dci_points=60")
    assert train_slots.main(args) == 0
    run_dir = tmp_path / "runs" / "bf16"
    evals = [json.loads(line) for line in (run_dir / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4]
    assert all(0 <= e["dci"] <= 1 and e["eval_seconds"] > 0 and e["train_seconds"] > 0 for e in evals)
    logs = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in logs)
    assert few_labels(["--run", str(run_dir), "--labels", "20", "40", "--draws", "3"]) == 0
    first = json.loads((run_dir / "metrics.json").read_text())["few_label_dci"]
    assert sorted(first) == ["20", "40"] and all(len(v) == 3 and all(-1e-9 <= x <= 1 for x in v) for v in first.values())
    assert few_labels(["--run", str(run_dir), "--labels", "20", "40", "--draws", "3"]) == 0
    assert json.loads((run_dir / "metrics.json").read_text())["few_label_dci"] == first
    assert few_labels(["--run", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_time_to_disentanglement_benchmark_writes_both_curves_and_ratios(tmp_path, capsys):
    from bench import time_to_disentanglement

    tiny = vae_args(tmp_path, "unused")[2:]  # the tiny data and schedule, without --preset
    tiny = [arg for arg in tiny if not arg.startswith(("name=", "output_dir="))] + [
        "vae.metrics=[mig, dci]", "vae.metric_sizes={mig_num_train: 100, dci_num_train: 100, dci_num_test: 50}"]
    summary = time_to_disentanglement.main(["--presets", "dsprites_vae", "--eval-every", "2",
                                            "--dci-points", "40", "--output-dir", str(tmp_path / "bench"),
                                            "--variants", "fp32=train.mixed_precision=no vae.beta=2", "--", *tiny])
    assert list(summary) == ["fp32", "dsprites_vae"]  # the ablation, then the baseline
    fp32 = yaml.safe_load((Path(summary["fp32"]["run_dir"]) / "config.yaml").read_text())
    assert fp32["train"]["mixed_precision"] == "no" and fp32["vae"]["beta"] == 2  # the first preset, ablated
    lines = (tmp_path / "bench" / "time_to_disentanglement.csv").read_text().splitlines()
    assert lines[0] == "preset,minutes,step,dci,mig,recon_loss"
    for preset in summary:
        rows = [line.split(",") for line in lines[1:] if line.startswith(preset + ",")]
        assert [int(r[2]) for r in rows] == [2, 4]
        assert float(rows[0][1]) > 0 and float(rows[1][1]) > float(rows[0][1])  # training minutes increase
    assert (tmp_path / "bench" / "time_to_disentanglement.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "| dsprites_vae |" in out and "1.00x |" in out and "matmul peak" in out
    assert "| run | DCI at " in out and out.count("| fp32 |") == 4  # 2 curve rows, the ablation row, the summary


def test_study_only_trains_the_methods_asked_for_and_names_unknown_ones(tmp_path, monkeypatch, capsys):
    import studies.weak_vae as study

    trained = []
    monkeypatch.setattr(study, "ensure_run", lambda out, run: trained.append(run.name))
    assert study.main(["--out", str(tmp_path), "--seeds", "0,1", "--only", "ada_gvae,beta_vae"]) == 0
    assert trained == ["ada_gvae-beta4-seed0", "beta_vae-beta1-seed0", "beta_vae-beta4-seed0", "beta_vae-beta16-seed0",
                       "ada_gvae-beta4-seed1", "beta_vae-beta1-seed1", "beta_vae-beta4-seed1", "beta_vae-beta16-seed1"]
    trained.clear()
    assert study.main(["--out", str(tmp_path), "--seeds", "0,1", "--only", "beta_vae-beta16,gvae"]) == 0
    assert trained == ["gvae-beta4-seed0", "beta_vae-beta16-seed0", "gvae-beta4-seed1", "beta_vae-beta16-seed1"]
    with pytest.raises(SystemExit):
        study.main(["--out", str(tmp_path), "--only", "ada_gvea,beta_vae-beta2"])
    assert "--only: unknown method(s) ada_gvea, beta_vae-beta2" in capsys.readouterr().err


def test_study_keeps_runs_its_csv_records_when_their_directories_are_gone(tmp_path, monkeypatch):
    """Run directories are not kept, the CSV is: a later --only adds methods instead of dropping recorded runs,
    and the recorded few-label scores survive; rows recorded under other overrides are not reused."""
    import shutil

    import studies.weak_vae as study

    trained = []
    monkeypatch.setattr(study, "ensure_run", lambda out, run: trained.append(run.name))
    scores = {"ada_gvae-beta4-seed0": 0.4, "beta_vae-beta1-seed0": 0.1}
    for name, dci in scores.items():
        (tmp_path / "runs" / name).mkdir(parents=True)
        method, beta = name.split("-")[0], float(name.split("-")[1][4:])
        metrics = {"method": method, "beta": beta, "seed": 0, "dci_disentanglement": dci, "mig": dci / 2, "sap": 0.01,
                   "modularity": 0.8, "train_recon_loss": 100 * dci, "few_label_dci": {"100": [dci, dci - 0.05]}}
        (tmp_path / "runs" / name / "metrics.json").write_text(json.dumps(metrics))
    assert study.main(["--out", str(tmp_path), "--seeds", "0", "--only", "ada_gvae", "--labels", "100"]) == 0
    first = (tmp_path / "results.csv").read_text()
    shutil.rmtree(tmp_path / "runs")
    trained.clear()
    assert study.main(["--out", str(tmp_path), "--seeds", "0", "--only", "ada_gvae,gvae", "--labels", "100"]) == 0
    assert trained == ["gvae-beta4-seed0"]  # the recorded Ada-GVAE run is not trained again
    assert (tmp_path / "results.csv").read_text() == first
    assert "| 100 | all (2) |" in (tmp_path / "results.md").read_text()  # few-label scores read back from the CSV
    trained.clear()
    assert study.main(["--out", str(tmp_path), "--seeds", "0", "--only", "ada_gvae", "train.max_steps=10"]) == 0
    assert trained == ["ada_gvae-beta4-seed0"]  # recorded under other overrides: not comparable, trained


def test_study_csv_keeps_records_of_other_settings_and_the_thread_count_is_not_a_setting(tmp_path, monkeypatch):
    """A table made under other overrides leaves the earlier records out of the table but keeps them in the CSV
    (they may be the only record of runs whose directories are gone), and a later table under the first
    settings finds them again; runs trained with one or two threads count as the same settings."""
    import csv
    import shutil

    import studies.weak_vae as study
    from studies.runner import settings_digest

    def digest(*overrides: str) -> str:
        return settings_digest(study.planned_run("ada_gvae", 4.0, 0, list(overrides), tmp_path))

    assert digest("train.cpu_threads=1") == digest("train.cpu_threads=2") == digest()
    assert digest("train.max_steps=10") != digest()
    monkeypatch.setattr(study, "ensure_run", lambda out, run: None)

    def finish(dci: float, *overrides: str) -> list[dict]:
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
        (tmp_path / "runs" / "ada_gvae-beta4-seed0").mkdir(parents=True)
        metrics = {"method": "ada_gvae", "beta": 4.0, "seed": 0, "dci_disentanglement": dci, "mig": dci / 2,
                   "sap": 0.01, "modularity": 0.8, "train_recon_loss": 100.0}
        (tmp_path / "runs" / "ada_gvae-beta4-seed0" / "metrics.json").write_text(json.dumps(metrics))
        assert study.main(["--out", str(tmp_path), "--seeds", "0", "--only", "ada_gvae", *overrides]) == 0
        shutil.rmtree(tmp_path / "runs")
        with (tmp_path / "results.csv").open(newline="") as handle:
            return list(csv.DictReader(handle))

    assert [line["settings_digest"] for line in finish(0.25, "train.cpu_threads=1")] == [digest()]
    records = finish(0.75, "train.max_steps=10")
    assert [(line["settings_digest"], line["dci_disentanglement"]) for line in records] == [
        (digest("train.max_steps=10"), "0.75"), (digest(), "0.25")]  # the table's row first, the earlier kept
    assert "| ada_gvae | 4 | 1 | 0.750 |" in (tmp_path / "results.md").read_text()
    assert study.main(["--out", str(tmp_path), "--seeds", "0", "--finished-only", "train.cpu_threads=2"]) == 0
    assert "| ada_gvae | 4 | 1 | 0.250 |" in (tmp_path / "results.md").read_text()  # found again, other threads
    with (tmp_path / "results.csv").open(newline="") as handle:
        assert sorted(line["dci_disentanglement"] for line in csv.DictReader(handle)) == ["0.25", "0.75"]


def test_beta_warm_up_rises_from_one_to_beta_in_the_logged_loss(tmp_path):
    from training.options.vae import warmed_beta

    assert [warmed_beta(4.0, 4, step) for step in (0, 1, 2, 4, 9)] == [1.0, 1.75, 2.5, 4.0, 4.0]
    assert warmed_beta(4.0, 0, 0) == 4.0
    assert train_slots.main(vae_args(tmp_path, "warm", "vae.method=beta_vae", "vae.beta=4",
                                     "vae.beta_warmup_steps=4", "vae.metrics=[mig]")) == 0
    logs = [json.loads(line) for line in (tmp_path / "runs" / "warm" / "train_log.jsonl").read_text().splitlines()]
    assert [r["beta"] for r in logs] == [1.0, 1.75, 2.5, 3.25]
    # beta-VAE's loss is recon + beta * KL: the logged parts reproduce it at the warmed beta
    for r in logs:
        assert r["loss"] == pytest.approx(r["recon_loss"] + r["beta"] * r["kl"], rel=1e-4)


@pytest.mark.parametrize("setting, message", [("vae.beta_warmup_steps=-1", "must be >= 0, got -1"),
                                              ("vae.beta=0.5", "needs vae.beta >= 1, got 0.5")])
def test_beta_warm_up_refuses_settings_it_cannot_honour(tmp_path, capsys, setting, message):
    assert train_slots.main(vae_args(tmp_path, "bad", "vae.beta_warmup_steps=10", setting)) == 2
    err = capsys.readouterr().err
    assert "vae.beta_warmup_steps" in err and message in err


def test_an_unknown_decoder_is_refused_before_anything_is_written(tmp_path, capsys):
    assert train_slots.main(vae_args(tmp_path, "bad", "vae.decoder=dense")) == 2
    err = capsys.readouterr().err
    assert "vae.decoder must be one of deconv, broadcast, got 'dense'" in err
    assert not (tmp_path / "runs" / "bad").exists()
