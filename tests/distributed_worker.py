"""One process of a multi-process training run, for tests/test_distributed.py.

Launched by torchrun with train_slots.py's arguments. It trains through the real loop and then writes
`rank{RANK}.json` (optimiser steps, a digest of the final parameters, the files this process wrote under
the watched directory) into $WEAKSLOTS_REPORT_DIR, which lies outside the run directory, so the product
itself never has to write per-rank files.

Which process created a file is also readable from the file itself: rank 0 runs with umask 022, every
other rank with umask 026, so only files created by another rank have group-read without other-read
(native writers such as torch.save and safetensors included, which the audit hook cannot see).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch

OTHER_RANK_UMASK, MAIN_RANK_UMASK = 0o026, 0o022
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def record_writes(watched: Path) -> list[str]:
    """Paths under `watched` that this process opens for writing, creates, renames or removes, collected
    with a Python audit hook (writes from native code, e.g. safetensors, are not seen)."""
    watched_text = str(watched.resolve())
    writes: list[str] = []

    def inside(path: object) -> str | None:
        if isinstance(path, int) or path is None:
            return None
        text = os.path.abspath(os.fsdecode(path))
        return os.path.relpath(text, watched_text) if text.startswith(watched_text + os.sep) else None

    def hook(event: str, args: tuple) -> None:
        if event == "open":  # builtins.open and os.open; args: path, mode, flags
            paths = [args[0]] if isinstance(args[2], int) and args[2] & WRITE_FLAGS else []
        elif event == "os.mkdir":
            paths = [args[0]] if not os.path.exists(args[0]) else []
        elif event in ("os.rename", "os.remove", "os.rmdir", "shutil.rmtree"):
            paths = list(args[:2]) if event == "os.rename" else [args[0]]
        else:
            return
        writes.extend(relative for relative in map(inside, paths) if relative is not None)

    sys.addaudithook(hook)
    return writes


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over every parameter and buffer, in name order: equal digests mean bitwise-equal models."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def created_by_other_ranks(path: Path) -> bool:
    """True for a file or directory created by a process running with OTHER_RANK_UMASK."""
    return path.stat().st_mode & 0o044 == 0o040


def main(argv: list[str]) -> int:
    report_dir = Path(os.environ["WEAKSLOTS_REPORT_DIR"])
    os.umask(MAIN_RANK_UMASK if int(os.environ["RANK"]) == 0 else OTHER_RANK_UMASK)
    writes = record_writes(Path(os.environ["WEAKSLOTS_WATCH_DIR"]))
    import train_slots
    from training.loop import train

    args = train_slots.parse_args(argv)
    result = train(args.preset, args.config, args.resume, args.overrides, start_time=time.time())
    report = {"rank": int(os.environ["RANK"]), "world_size": int(os.environ["WORLD_SIZE"]), "steps": result.steps,
              "digest": state_digest(result.model.state_dict()), "writes": sorted(set(writes))}
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"rank{report['rank']}.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
