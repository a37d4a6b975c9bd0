"""Open a finished (or running) training run for evaluation: its config, task, model and weights, the same
way for every evaluation command, with one-line errors for a wrong directory, task or checkpoint."""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from training.build import WEIGHTS_FILE, load_weights
from training.checkpoint import file_problem, first_nonfinite, list_checkpoints, read_manifest
from training.config import ConfigError, RunConfig, load_run_config
from training.tasks import Task, make_task


@dataclass
class TrainedRun:
    config: RunConfig
    task: Task
    model: nn.Module
    checkpoint: Path


def load_trained_run(run: Path, checkpoint: Path | None = None, tasks: Iterable[str] | None = None) -> TrainedRun:
    """The run's model with the weights of `checkpoint` (default: its latest); ConfigError if `run` is not a
    run directory, has no checkpoint, is of a task not in `tasks`, or if the weights do not match the
    checkpoint's checksum or hold NaN/infinity (scores of such weights would look like results)."""
    if not (run / "config.yaml").is_file():
        raise ConfigError(f"{run} is not a run directory (no config.yaml)")
    config = load_run_config(run)
    allowed = tuple(tasks) if tasks is not None else None
    if allowed is not None and config.task not in allowed:
        raise ConfigError(f"{run} is a '{config.task}' run; this command scores {' or '.join(allowed)} runs")
    checkpoint = checkpoint or (list_checkpoints(run) or [None])[-1]
    if checkpoint is None:
        raise ConfigError(f"{run} has no checkpoints yet")
    task = make_task(config)
    model = task.build_model()
    verify_weights_file(checkpoint)
    load_weights(model, checkpoint)
    bad = first_nonfinite(model.state_dict())
    if bad is not None:
        raise ConfigError(f"checkpoint {checkpoint}: parameter {bad} is not finite (NaN or infinity): the run "
                          "diverged; evaluate an earlier checkpoint with --checkpoint")
    model.eval()
    return TrainedRun(config, task, model, checkpoint)


def verify_weights_file(checkpoint: Path) -> None:
    """The weights file of a checkpoint directory against its manifest.json; checkpoints written before
    manifests existed (and bare weight files) are loaded unverified."""
    if not Path(checkpoint).is_dir():
        return
    try:
        manifest = read_manifest(checkpoint)
    except (OSError, ValueError):
        raise ConfigError(f"checkpoint {checkpoint}: manifest.json is unreadable, so its weights cannot be "
                          "verified") from None
    if manifest is None:
        return
    problem = file_problem(checkpoint, WEIGHTS_FILE, manifest)
    if problem is not None:
        raise ConfigError(f"checkpoint {checkpoint}: {WEIGHTS_FILE}: {problem} (damaged); evaluate another "
                          "checkpoint with --checkpoint")


def positive_int(text: str) -> int:
    """argparse type for counts (slots, iterations, images)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def merge_metrics(run: Path, scores: dict[str, float]) -> Path:
    """Add (or overwrite) `scores` in the run's metrics.json, keeping everything else; returns its path."""
    path = run / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    metrics.update(scores)
    path.write_text(json.dumps(metrics, indent=2))
    return path


def sweep_parser(description: str, run_help: str) -> argparse.ArgumentParser:
    """The command line of a test-time slot sweep over a saved run (object discovery, set prediction)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help=run_help)
    parser.add_argument("--num-slots", type=positive_int, nargs="+", default=[2, 3, 4, 5, 6, 8])
    parser.add_argument("--iterations", type=positive_int, nargs="+", default=None,
                        help="iteration counts (default: the training value)")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory (default: the run's latest)")
    parser.add_argument("--max-images", type=positive_int, help="evaluate on the first N eval images only")
    parser.add_argument("--out", type=Path, help="where to write the CSV and plot (default: the run directory)")
    return parser
