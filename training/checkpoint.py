"""Atomic, verified, resumable checkpoints built on `Accelerator.save_state`.

A checkpoint is written into a hidden temporary directory and renamed into place only once complete,
so a crash mid-write never leaves a directory that looks like a valid checkpoint. Its last file is
`manifest.json`, the SHA-256 of every other file, so damage after the write (a full disk, a truncating
copy, bit rot) is found on load instead of resuming from, or evaluating, silently wrong weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator

from training.config import ConfigError

STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
RNG_PREFIX = "random_states_"  # Accelerate's per-process RNG state: random_states_<rank>.pkl
PREFIX = "step_"


class CheckpointError(ConfigError):
    """No checkpoint of a run can be resumed from as asked; the message names the checkpoints and why."""


class NonFiniteWeightsError(RuntimeError):
    """The weights about to be saved hold NaN or infinity; the message names the first such tensor."""


@dataclass
class TrainerState:
    """What the loop needs beyond Accelerate's state to continue a run as if it had never stopped."""

    step: int
    train_seconds: float = 0.0  # training time of every part of the run up to this checkpoint
    nonfinite_steps: int = 0  # steps skipped for a non-finite loss or gradient (train.max_nonfinite_steps)
    has_seconds: bool = field(default=True, repr=False)  # False: a checkpoint from before train_seconds was kept


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary directories are never listed)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def first_nonfinite(state: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating tensor holding NaN or infinity, else None. One device sync in all:
    the per-tensor flags are stacked before they are read."""
    names = [name for name, tensor in state.items() if torch.is_floating_point(tensor) and tensor.numel()]
    if not names:
        return None
    device = state[names[0]].device
    finite = torch.stack([torch.isfinite(state[name]).all().to(device) for name in names]).cpu()
    if bool(finite.all()):
        return None
    return names[int((~finite).nonzero()[0])]


def save_checkpoint(accelerator: Accelerator, run_dir: Path, step: int, keep: int,
                    state: TrainerState | None = None) -> Path:
    """Every process calls this (each saves its own RNG state); only the main process creates, renames and
    prunes directories. With several machines, the run directory must be on storage they share. Weights
    holding NaN or infinity are refused before anything is written: a run's newest checkpoint must always
    be one worth resuming from."""
    for model in accelerator._models:
        bad = first_nonfinite(accelerator.unwrap_model(model).state_dict())
        if bad is not None:
            raise NonFiniteWeightsError(f"not saving the checkpoint of step {step}: parameter {bad} is not finite")
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
        trainer_state = asdict(state or TrainerState(step))
        trainer_state.pop("has_seconds")
        (staging / STATE_FILE).write_text(json.dumps({**trainer_state, "step": step}))
        write_manifest(staging)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    """The SHA-256 of every file in a checkpoint directory, written last."""
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    sha256 = {p.relative_to(directory).as_posix(): file_digest(p) for p in files}
    (directory / MANIFEST_FILE).write_text(json.dumps({"sha256": sha256}, indent=1))


def read_manifest(directory: Path) -> dict[str, str] | None:
    """{relative path: sha256}; None when the checkpoint has no manifest (written before manifests
    existed). Raises ValueError for a manifest that cannot be read."""
    path = Path(directory) / MANIFEST_FILE
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    if not isinstance(manifest, dict) or not isinstance(manifest.get("sha256"), dict):
        raise ValueError("no sha256 table")
    return manifest["sha256"]


def file_problem(directory: Path, name: str, manifest: dict[str, str]) -> str | None:
    """Why file `name` of a checkpoint cannot be trusted ('missing', 'checksum mismatch'), or None."""
    path = Path(directory) / name
    if name not in manifest:
        return "not in manifest.json" if path.is_file() else "missing"
    if not path.is_file():
        return "missing"
    return None if file_digest(path) == manifest[name] else "checksum mismatch"


@dataclass
class CheckpointCheck:
    """What verifying one checkpoint found: damage to the training state (a reason to fall back to an
    older checkpoint), damage to RNG state only (an inexact resume), or no manifest to verify against."""

    path: Path
    damaged: list[str]
    rng_damaged: list[str]
    unverified: bool


def check_checkpoint(path: Path, num_processes: int = 1) -> CheckpointCheck:
    """Verify every file against the manifest, and that the RNG state of each of `num_processes` is there."""
    rng_files = [f"{RNG_PREFIX}{rank}.pkl" for rank in range(num_processes)]
    try:
        manifest = read_manifest(path)
    except (OSError, ValueError):
        return CheckpointCheck(path, [f"{MANIFEST_FILE}: unreadable"], [], False)
    if manifest is None:
        damaged = [] if _state_readable(path) else [f"{STATE_FILE}: unreadable"]
        damaged += [f"{weights.name}: unreadable" for weights in sorted(path.glob("*.safetensors"))
                    if not _safetensors_readable(weights)]
        rng = [f"{name}: {problem}" for name in rng_files if (problem := _rng_problem(path / name))]
        return CheckpointCheck(path, damaged, rng, True)
    damaged, rng = [], []
    for name in sorted(set(manifest) | set(rng_files)):
        problem = file_problem(path, name, manifest)
        if problem is not None:
            (rng if name.startswith(RNG_PREFIX) else damaged).append(f"{name}: {problem}")
    if not damaged and not _state_readable(path):
        damaged.append(f"{STATE_FILE}: unreadable")
    return CheckpointCheck(path, damaged, rng, False)


def _rng_problem(path: Path) -> str | None:
    """Without a manifest, the only check of an RNG state file is that Accelerate could read it (it would
    skip an unreadable one without a word)."""
    if not path.is_file():
        return "missing"
    try:
        torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # any unpickling failure: truncated, garbage, wrong format
        return "unreadable"
    return None


def _safetensors_readable(path: Path) -> bool:
    """A safetensors file whose header describes tensors that fit in the file (a truncated copy fails)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as weights:
            for key in weights.keys():
                weights.get_slice(key)
    except Exception:  # safetensors raises its own error types for a bad header or size
        return False
    return True


def _state_readable(path: Path) -> bool:
    try:
        return isinstance(json.loads((path / STATE_FILE).read_text())["step"], int)
    except (OSError, ValueError, KeyError, TypeError):
        return False


@dataclass
class ResumePoint:
    """The checkpoint a resumed run continues from, whether its RNG state is intact, and the notes to
    print about how it was chosen."""

    path: Path
    step: int
    exact: bool
    notes: list[str]


def choose_resume_checkpoint(run_dir: Path, num_processes: int = 1, inexact: bool = False) -> ResumePoint | None:
    """The newest intact checkpoint (None: the run has none yet). Damaged newer ones are named in one
    warning; damaged RNG state is an error unless `inexact`, since the resumed run would then not replay
    the random numbers of an uninterrupted one."""
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        return None
    skipped: list[str] = []
    for path in reversed(checkpoints):
        check = check_checkpoint(path, num_processes)
        if check.damaged:
            skipped.append(f"{path.name} ({', '.join(check.damaged)})")
            continue
        notes = []
        if skipped:
            notes.append(f"warning: damaged checkpoint{'s' if len(skipped) > 1 else ''} {'; '.join(skipped)}: "
                         f"resuming from {path.name} instead")
        if check.unverified:
            notes.append(f"note: checkpoint {path} has no {MANIFEST_FILE} (written before checksums existed): "
                         "loading it unverified")
        if check.rng_damaged and not inexact:
            raise CheckpointError(f"checkpoint {path}: random state {', '.join(check.rng_damaged)}; resuming would "
                                  "not replay the uninterrupted run's random numbers: pass --resume-inexact to "
                                  "continue with fresh random states anyway")
        if check.rng_damaged:
            notes.append(f"warning: checkpoint {path}: random state {', '.join(check.rng_damaged)}; continuing with "
                         "fresh random states (--resume-inexact): the run will not match an uninterrupted one")
        step = int(json.loads((path / STATE_FILE).read_text())["step"])
        return ResumePoint(path, step, not check.rng_damaged, notes)
    raise CheckpointError(f"no intact checkpoint in {checkpoint_dir(run_dir)}: {'; '.join(skipped)}")


def load_checkpoint(accelerator: Accelerator, path: Path) -> TrainerState:
    """Restore model, optimiser, scheduler and RNG states; returns the trainer state saved with them.
    Accelerate skips an unreadable RNG file without a word, so callers verify the checkpoint first
    (choose_resume_checkpoint)."""
    accelerator.load_state(str(path))
    saved = json.loads((Path(path) / STATE_FILE).read_text())
    return TrainerState(step=int(saved["step"]), train_seconds=float(saved.get("train_seconds", 0.0)),
                        nonfinite_steps=int(saved.get("nonfinite_steps", 0)), has_seconds="train_seconds" in saved)
