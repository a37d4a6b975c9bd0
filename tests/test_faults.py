"""Faults injected into training runs, each with the outcome that keeps it from passing as a result: NaN
losses, two writers on one run directory, changed settings on --resume, damaged checkpoints and logs,
settings out of range, SIGTERM. Every run is a tiny smoke run sharing one generated data set."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import train_slots
from training.checkpoint import STATE_FILE, file_digest, list_checkpoints, write_manifest

REPO = Path(__file__).resolve().parent.parent
QUIET = ("train.eval_every=0", "eval.sweep_slots=[2]", "eval.num_visualise=1")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def smoke_args(data_root: Path, runs: Path, name: str, *extra: str) -> list[str]:
    return ["--preset", "smoke", f"data.root={data_root}", f"output_dir={runs}", f"name={name}", *QUIET, *extra]


@pytest.fixture(scope="module")
def finished_run(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 6-step smoke run (checkpoints at steps 3 and 6); tests copy it before damaging it."""
    runs = tmp_path_factory.mktemp("runs")
    assert train_slots.main(smoke_args(data_root, runs, "done")) == 0
    return runs / "done"


def copy_run(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / run.name
    shutil.copytree(run, target)
    return target


def error_lines(err: str) -> list[str]:
    """The lines a run printed besides its progress bars."""
    return [line for line in err.splitlines() if line.startswith(("error:", "warning:", "note:", "terminated",
                                                                  "interrupted", "resume:"))]


def weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint / "model.safetensors"))


def all_finite(checkpoint: Path) -> bool:
    return all(torch.isfinite(tensor).all() for tensor in weights(checkpoint).values())


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "train_log.jsonl").read_text().splitlines()]


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    """train_slots.py in a child process (its own session, so signals reach only it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    with log.open("wb") as output:
        return subprocess.Popen([sys.executable, str(REPO / "train_slots.py"), *args], cwd=REPO, env=env,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(condition, process: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if process.poll() is not None or time.time() > deadline:
            process.kill()
            pytest.fail(f"child run exited ({process.poll()}) or stalled; its output:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


# 1. non-finite loss ---------------------------------------------------------------------------------------------

def test_nan_loss_stops_at_once_with_one_line_and_keeps_finite_checkpoints(data_root, tmp_path, capsys):
    args = smoke_args(data_root, tmp_path, "nan", "train.learning_rate=1e6", "train.max_steps=30",
                      "train.checkpoint_every=1")
    assert train_slots.main(args) == 3
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: non-finite loss or gradient at step 2 (loss=nan"), lines
    assert "last finite checkpoint step_00000001" in lines[0]
    run = tmp_path / "nan"
    assert not (run / "metrics.json").exists()
    assert [p.name for p in list_checkpoints(run)] == ["step_00000001"]
    assert all_finite(list_checkpoints(run)[-1])
    assert not (run / "run.lock").exists()


def test_nan_steps_are_skipped_up_to_the_allowed_count_then_the_run_stops(data_root, tmp_path, capsys):
    args = smoke_args(data_root, tmp_path, "skips", "train.learning_rate=1e6", "train.max_steps=30",
                      "train.checkpoint_every=1", "train.keep_checkpoints=0", "train.max_nonfinite_steps=2")
    assert train_slots.main(args) == 3
    lines = error_lines(capsys.readouterr().err)
    assert [line.split(" (")[0] for line in lines] == [
        "warning: non-finite loss or gradient at step 2", "warning: non-finite loss or gradient at step 3",
        "error: non-finite loss or gradient at step 4"], lines
    run = tmp_path / "skips"
    assert not (run / "metrics.json").exists()
    checkpoints = list_checkpoints(run)
    assert [p.name for p in checkpoints] == ["step_00000001", "step_00000002", "step_00000003"]
    assert all(all_finite(p) for p in checkpoints)
    assert json.loads((checkpoints[-1] / STATE_FILE).read_text())["nonfinite_steps"] == 2


def test_a_skipped_step_applies_no_update_and_the_run_completes(data_root, tmp_path, monkeypatch, capsys):
    from training.loop import TrainingStep

    original = TrainingStep.forward

    def nan_at_third_step(self, batch, step):
        loss, logs = original(self, batch, step)
        return (loss * float("nan") if step == 2 else loss), logs

    monkeypatch.setattr(TrainingStep, "forward", nan_at_third_step)
    args = smoke_args(data_root, tmp_path, "one_nan", "train.max_steps=4", "train.checkpoint_every=1",
                      "train.keep_checkpoints=0", "train.max_nonfinite_steps=1")
    assert train_slots.main(args) == 0
    assert any("at step 3" in line and "step skipped" in line for line in error_lines(capsys.readouterr().err))
    checkpoints = {p.name: weights(p) for p in list_checkpoints(tmp_path / "one_nan")}
    before, skipped, after = (checkpoints[f"step_0000000{i}"] for i in (2, 3, 4))
    assert all(torch.equal(before[key], skipped[key]) for key in before), "the skipped step changed the weights"
    assert not all(torch.equal(skipped[key], after[key]) for key in skipped)
    assert json.loads((tmp_path / "one_nan" / "metrics.json").read_text())["nonfinite_steps"] == 1


def test_a_resumed_run_that_fails_leaves_no_report_of_the_earlier_end(finished_run, tmp_path, monkeypatch,
                                                                       capsys):
    """The finished run's metrics.json (6 steps) moves aside when it is resumed; the resumed part hits a NaN,
    so no metrics.json is left to be mistaken for the result of the longer run."""
    from training.loop import TrainingStep

    run = copy_run(finished_run, tmp_path)
    original = TrainingStep.forward
    monkeypatch.setattr(TrainingStep, "forward", lambda self, batch, step: (
        (lambda loss, logs: (loss * float("nan"), logs))(*original(self, batch, step))))
    assert train_slots.main(["--resume", str(run), "train.max_steps=8"]) == 3
    assert not (run / "metrics.json").exists()
    assert json.loads((run / "metrics.step_6.json").read_text())["steps"] == 6
    assert "resume: the earlier report moved to metrics.step_6.json" in capsys.readouterr().err


def test_evaluation_refuses_non_finite_weights(finished_run, tmp_path):
    from eval.run_loading import load_trained_run
    from training.config import ConfigError

    run = copy_run(finished_run, tmp_path)
    checkpoint = list_checkpoints(run)[-1]
    state = weights(checkpoint)
    name = sorted(state)[0]
    state[name] = torch.full_like(state[name], float("nan"))
    save_file(state, str(checkpoint / "model.safetensors"))
    write_manifest(checkpoint)  # intact file, diverged weights
    with pytest.raises(ConfigError, match=f"{checkpoint}: parameter .* is not finite"):
        load_trained_run(run)


# 2. one run directory, one writer -------------------------------------------------------------------------------

def test_a_second_process_on_a_run_directory_is_refused_and_a_stale_lock_taken_over(data_root, tmp_path, capsys):
    run = tmp_path / "busy"
    log = tmp_path / "first.log"
    first = spawn(smoke_args(data_root, tmp_path, "busy", "train.max_steps=100000", "train.checkpoint_every=100000"),
                  log)
    try:
        wait_for(lambda: (run / "train_log.jsonl").is_file(), first, log)
        assert json.loads((run / "run.lock").read_text())["pid"] == first.pid
        assert train_slots.main(["--resume", str(run), "train.max_steps=2"]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: run directory {run} is in use by process {first.pid} (lock file {run / 'run.lock'}); "
                       "wait for it to finish or stop it first")
    finally:
        first.kill()  # SIGKILL: no cleanup, the lock file stays behind
        first.wait()
    assert (run / "run.lock").is_file()
    assert train_slots.main(["--resume", str(run), "train.max_steps=2"]) == 0
    err = capsys.readouterr().err
    assert f"note: taking over the stale lock of process {first.pid} (no longer running) in {run}" in err
    assert not (run / "run.lock").exists()


# 3. --resume with changed settings ------------------------------------------------------------------------------

def test_resume_refuses_a_changed_model_and_leaves_the_run_untouched(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    saved = (run / "config.yaml").read_bytes()
    listing = sorted(p.relative_to(run) for p in run.rglob("*"))
    assert train_slots.main(["--resume", str(run), "model.slot_dim=32", "train.max_steps=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: --resume {run}: these settings cannot change on a resumed run: model.slot_dim 16 -> 32 "
                   "(start a new run with another name= to change them)")
    assert (run / "config.yaml").read_bytes() == saved
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == listing
    # the same through --preset: the preset and the overrides given are compared with the saved config
    args = smoke_args(tmp_path / "other_data", run.parent, run.name, "model.slot_dim=32", "data.num_train=32")
    assert train_slots.main([*args, "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "data.num_train 64 -> 32" in err and "data.root" in err and "model.slot_dim 16 -> 32" in err
    assert (run / "config.yaml").read_bytes() == saved


def test_resume_applies_a_larger_max_steps_and_accumulates_train_seconds(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    first_seconds = json.loads((run / "metrics.json").read_text())["train_seconds"]
    assert train_slots.main(["--resume", str(run), "train.max_steps=8", "eval.sweep_slots=[3]"]) == 0
    lines = error_lines(capsys.readouterr().err)
    assert "resume: train.max_steps 6 -> 8" in lines and "resume: eval.sweep_slots [2] -> [3]" in lines, lines
    assert "max_steps: 8" in (run / "config.yaml").read_text()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 8 and metrics["resumed_from_step"] == 6
    assert metrics["train_seconds"] >= first_seconds
    saved = json.loads((list_checkpoints(run)[-1] / STATE_FILE).read_text())
    assert saved["step"] == 8 and saved["train_seconds"] >= first_seconds
    assert steps_logged(run) == list(range(1, 9))


# 4. checkpoint integrity ----------------------------------------------------------------------------------------

def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble_manifest(path: Path) -> None:
    manifest = json.loads(path.read_text())
    manifest["sha256"]["scheduler.bin"] = "0" * 64
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [
    lambda c: truncate(c / "model.safetensors"),
    lambda c: truncate(c / "optimizer.bin"),
    lambda c: (c / STATE_FILE).write_text('{"step": 6, "train_sec'),
    lambda c: garble_manifest(c / "manifest.json"),
], ids=["model", "optimizer", "trainer_state", "manifest"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(finished_run, tmp_path, capsys, damage):
    run = copy_run(finished_run, tmp_path)
    newest = list_checkpoints(run)[-1]
    original_weights = json.loads((newest / "manifest.json").read_text())["sha256"]["model.safetensors"]
    damage(newest)
    assert train_slots.main(["--resume", str(run)]) == 0
    lines = [line for line in error_lines(capsys.readouterr().err) if line.startswith("warning")]
    assert len(lines) == 1 and lines[0].startswith("warning: damaged checkpoint step_00000006 (") \
        and lines[0].endswith("resuming from step_00000003 instead"), lines
    # retrained from step 3, the run reaches the very weights the damaged checkpoint had held
    assert file_digest(list_checkpoints(run)[-1] / "model.safetensors") == original_weights


def test_no_intact_checkpoint_is_a_one_line_error(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    for checkpoint in list_checkpoints(run):
        truncate(checkpoint / "model.safetensors")
    assert train_slots.main(["--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: no intact checkpoint in {run / 'checkpoints'}: step_00000006 (model.safetensors: "
                          "checksum mismatch); step_00000003") and len(err.splitlines()) == 1, err


def test_a_checkpoint_without_manifest_loads_with_a_note(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    for checkpoint in list_checkpoints(run):
        (checkpoint / "manifest.json").unlink()
    assert train_slots.main(["--resume", str(run)]) == 0
    assert (f"note: checkpoint {run / 'checkpoints' / 'step_00000006'} has no manifest.json (written before "
            "checksums existed): loading it unverified") in capsys.readouterr().err


def test_damaged_rng_state_is_an_error_unless_resume_inexact(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    rng = list_checkpoints(run)[-1] / "random_states_0.pkl"
    rng.write_bytes(b"not a pickle")
    assert train_slots.main(["--resume", str(run), "train.max_steps=7"]) == 2
    err = capsys.readouterr().err.strip()
    assert "random_states_0.pkl: checksum mismatch" in err and "--resume-inexact" in err
    assert len(err.splitlines()) == 1, err
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6  # nothing ran
    assert train_slots.main(["--resume", str(run), "--resume-inexact", "train.max_steps=7"]) == 0
    assert "warning: checkpoint" in capsys.readouterr().err
    assert json.loads((run / "metrics.json").read_text())["steps"] == 7


# 5. settings that crashed with a traceback ----------------------------------------------------------------------

@pytest.mark.parametrize("override,message", [
    ("train.checkpoint_every=0", "train.checkpoint_every must be >= 1, got 0"),
    ("train.log_every=0", "train.log_every must be >= 1, got 0"),
    ("train.decay_steps=0", "train.decay_steps must be >= 1, got 0"),
    ("train.batches_per_epoch=0", "train.batches_per_epoch must be >= 1, got 0"),
    ("train.learning_rate=-1", "train.learning_rate must be a number > 0, got -1.0"),
    ("train.learning_rate=0", "train.learning_rate must be a number > 0, got 0.0"),
    ("train.warmup_steps=-1", "train.warmup_steps must be >= 0, got -1"),
    ("train.lr_schedule=cos", "train.lr_schedule must be one of exponential, cosine, got 'cos'"),
    ("train.grad_clip=-1", "train.grad_clip must be >= 0 (0: no clipping), got -1.0"),
    ("train.keep_checkpoints=-1", "train.keep_checkpoints must be >= 0 (0: keep every checkpoint), got -1"),
    ("train.max_nonfinite_steps=-1", "train.max_nonfinite_steps must be >= 0, got -1"),
    ("train.eval_every=-5", "train.eval_every must be >= 0"),
    ("model.slot_dim=0", "model.slot_dim must be >= 1, got 0"),
    ("model.decoder_layers=0", "model.decoder_layers must be >= 1, got 0"),
    ("model.encoder_strides=[2,2,2,2,2]", "model.encoder_strides needs one integer >= 1 per encoder layer "
                                          "(model.encoder_layers=2), got [2, 2, 2, 2, 2]"),
    ("model.encoder_strides=[8,4]", "model.encoder_strides [8, 4] downsample by 32, more than the 16-pixel"),
    ("eval.batch_size=0", "eval.batch_size must be >= 1, got 0"),
])
def test_a_setting_out_of_range_fails_with_one_line_naming_the_key(data_root, tmp_path, capsys, override, message):
    assert train_slots.main(smoke_args(data_root, tmp_path, "bad", override)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


# 6. SIGTERM, torn logs ------------------------------------------------------------------------------------------

def test_sigterm_saves_a_checkpoint_and_prints_the_resume_command(data_root, tmp_path):
    run, log = tmp_path / "term", tmp_path / "term.log"
    child = spawn(smoke_args(data_root, tmp_path, "term", "train.max_steps=100000", "train.checkpoint_every=100000"),
                  log)
    log_path = run / "train_log.jsonl"
    wait_for(lambda: log_path.is_file() and log_path.read_text().count("\n") >= 2, child, log)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=120) == 143, log.read_text()[-2000:]
    last = log.read_text().strip().splitlines()[-1]
    checkpoints = list_checkpoints(run)
    assert len(checkpoints) == 1, checkpoints
    step = int(checkpoints[0].name.split("_")[1])
    assert last == (f"terminated (SIGTERM) at step {step}: checkpoint step_{step:08d} saved; resume with: "
                    f"python train_slots.py --resume {run}")
    assert not (run / "run.lock").exists()


def test_a_torn_last_log_line_does_not_block_resume(finished_run, tmp_path, capsys):
    run = copy_run(finished_run, tmp_path)
    with (run / "train_log.jsonl").open("a") as handle:
        handle.write('{"step": 7, "loss": 0.4')  # killed mid-write
    with (run / "eval_log.jsonl").open("a") as handle:
        handle.write('{"step": 9')
    assert train_slots.main(["--resume", str(run), "train.max_steps=8"]) == 0
    notes = [line for line in error_lines(capsys.readouterr().err) if "torn last line" in line]
    assert len(notes) == 2, notes
    assert steps_logged(run) == list(range(1, 9))


def test_a_longer_cosine_run_is_told_its_rate_now_falls_to_the_new_horizon():
    from training.config import build_config
    from training.resume_config import resumed_config

    for schedule, noted in (("cosine", True), ("exponential", False)):
        saved = build_config([{"train": {"lr_schedule": schedule, "max_steps": 6}}])
        requested = build_config([{"train": {"lr_schedule": schedule, "max_steps": 8}}])
        config, applied = resumed_config(saved, requested, {"train.max_steps"}, "runs/x")
        assert config.train.max_steps == 8 and len(applied) == 1 and applied[0].startswith("train.max_steps 6 -> 8")
        assert ("falls to 0 at the new max_steps" in applied[0]) == noted
