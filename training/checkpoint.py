"""Atomic, resumable checkpoints built on `Accelerator.save_state`.

A checkpoint is written into a hidden temporary directory and renamed into place only once complete,
so a crash mid-write never leaves a directory that looks like a valid checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from accelerate import Accelerator

STATE_FILE = "trainer_state.json"
PREFIX = "step_"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are never listed)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, keep: int) -> Path:
    """Every process calls this (each saves its own RNG state); only the main process creates, renames and
    prunes directories. With several machines, the run directory must be on storage they share."""
    root = checkpoint_dir(run_dir)
    final = root / f"{PREFIX}{step:08d}"
    staging = root / f".incomplete_{PREFIX}{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)  # before the others arrive: they add only their own RNG state to it
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / STATE_FILE).write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, path: Path) -> int:
    """Restore model, optimiser, scheduler and RNG states; returns the step the checkpoint was taken at."""
    accelerator.load_state(str(path))
    return int(json.loads((Path(path) / STATE_FILE).read_text())["step"])
