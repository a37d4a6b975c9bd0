"""The orientation-search VAEs through the training entry point: voxel and glyph runs train, resume exactly and
write the experiments' metrics; options that cannot work together are refused in one line; the study's bar
and table read the runs' metrics correctly."""
import json
import math
from pathlib import Path

import pytest
import torch

import train_slots
from data.oriented_objects import GlyphObjectSet, draw_batch
from studies.orientation import markdown, summarise, verdict

TINY = ["orientation.voxel_size=16", "orientation.width=8", "orientation.eval_objects=12",
        "orientation.consistency_objects=3", "data.num_train=24", "data.num_eval=12", "train.batch_size=4",
        "train.log_every=1", "train.eval_every=2", "train.checkpoint_every=2", "train.cpu_threads=1"]


def run_args(tmp_path: Path, name: str, *extra: str, preset: str = "voxel_orientation") -> list[str]:
    return ["--preset", preset, f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}", f"name={name}",
            *TINY, "train.max_steps=4", *extra]


@pytest.mark.parametrize("extra", [(), ("orientation.search=none",), ("orientation.train_orientations=one",)])
def test_voxel_runs_write_every_experiment_metric(tmp_path, extra):
    assert train_slots.main(run_args(tmp_path, "run", *extra)) == 0
    metrics = json.loads((tmp_path / "runs" / "run" / "metrics.json").read_text())
    for key in ("recon_canonical", "recon_all", "recon_all_search", "recovery_accuracy", "consistency",
                "orientation_probe_accuracy"):
        assert math.isfinite(metrics[key]), key
    assert set(metrics["recovery_by_family"]) <= {"polycube", "furniture"}
    assert metrics["recon_all_search"] <= metrics["recon_all"] + 1e-3, "the search can only lower the error"
    assert 0 <= metrics["recovery_accuracy"] <= 1 and metrics["orientation_probe_chance"] == pytest.approx(1 / 24)
    evals = [json.loads(line) for line in (tmp_path / "runs" / "run" / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4]


def test_glyph_run_trains_with_the_planar_search(tmp_path):
    args = run_args(tmp_path, "glyphs", "orientation.refine_steps=2", preset="glyph_orientation")
    args = [a for a in args if not a.startswith("orientation.voxel_size")]
    assert train_slots.main(args) == 0
    metrics = json.loads((tmp_path / "runs" / "glyphs" / "metrics.json").read_text())
    assert metrics["orientation_probe_chance"] == pytest.approx(1 / 36)
    assert metrics["recon_all_search"] <= metrics["recon_all"] + 1e-3


def test_resuming_gives_the_same_model_as_an_uninterrupted_run(tmp_path):
    assert train_slots.main(run_args(tmp_path, "whole", "train.max_steps=4")) == 0
    assert train_slots.main(run_args(tmp_path, "half", "train.max_steps=2")) == 0
    assert train_slots.main(["--resume", str(tmp_path / "runs" / "half"), "train.max_steps=4"]) == 0
    logs = [[json.loads(line)["loss"] for line in (tmp_path / "runs" / name / "train_log.jsonl").read_text().splitlines()]
            for name in ("whole", "half")]
    assert logs[0] == pytest.approx(logs[1], rel=1e-5)


def test_training_batches_are_a_pure_function_of_seed_step_and_rank():
    glyphs = GlyphObjectSet(32)
    first, again = draw_batch(glyphs, 6, 0, 5, 0, True), draw_batch(glyphs, 6, 0, 5, 0, True)
    assert torch.equal(first.inputs, again.inputs) and torch.equal(first.orientation, again.orientation)
    assert not torch.equal(first.objects, draw_batch(glyphs, 6, 0, 5, 1, True).objects)
    canonical = draw_batch(glyphs, 6, 0, 5, 0, False)
    assert torch.equal(canonical.orientation, torch.zeros(6, dtype=torch.long))
    assert torch.equal(canonical.inputs, glyphs.images[canonical.objects, 0])


@pytest.mark.parametrize("override, message", [
    ("orientation.search=planar", "does not act on voxels"),
    ("orientation.train_orientations=some", "train_orientations must be one of"),
    ("orientation.objects=meshes", "orientation.objects must be one of"),
    ("orientation.voxel_size=4", "voxel_size must be >= 8"),
])
def test_options_that_cannot_work_are_refused_in_one_line(tmp_path, capsys, override, message):
    assert train_slots.main(run_args(tmp_path, "bad", override)) == 2
    assert message in capsys.readouterr().err


def test_study_verdict_needs_consistency_and_a_lower_error_at_every_latent_size():
    def run(model, latent, recon, consistency=1.0, minutes=5.0):
        return {"model": model, "latent_dim": latent, "recon": recon, "recovery_accuracy": 0.5,
                "recovery_identifiable": 0.8,
                "consistency": consistency, "kind_agreement": 0.5, "orientation_probe_accuracy": 0.1,
                "total_seconds": minutes * 60}

    met = [run("all", 2, 100), run("search", 2, 90), run("all", 8, 50), run("search", 8, 40)]
    assert verdict(summarise(met)).startswith("met")
    higher = [run("all", 2, 100), run("search", 2, 90), run("all", 8, 50), run("search", 8, 60)]
    assert verdict(summarise(higher)).startswith("NOT met")
    inconsistent = [run("all", 2, 100), run("search", 2, 90, consistency=0.5)]
    assert "consistency >= 0.9: no" in verdict(summarise(inconsistent))
    slow = [run("all", 2, 100, minutes=16), run("search", 2, 90)]
    assert "every run <= 15 min: no" in verdict(summarise(slow))
    assert verdict(summarise([run("all", 2, 100)])).startswith("undecided")
    assert "| 8 | search | 1 | 40.0 | 0.50 | 0.80 |" in markdown(summarise(met), "voxels", [])


def test_rescoring_a_run_merges_the_same_experiment_metrics(tmp_path, capsys):
    from eval.orientation import main as rescore

    assert train_slots.main(run_args(tmp_path, "run")) == 0
    path = tmp_path / "runs" / "run" / "metrics.json"
    before = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in before.items() if k != "recon_all"}))
    assert rescore(["--run", str(tmp_path / "runs" / "run")]) == 0
    after = json.loads(path.read_text())
    assert after["recon_all"] == pytest.approx(before["recon_all"], rel=1e-4) and after["steps"] == before["steps"]
    assert rescore(["--run", str(tmp_path)]) == 2 and "not a run directory" in capsys.readouterr().err
