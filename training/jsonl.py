"""The run's JSON-lines logs (train_log.jsonl, eval_log.jsonl): appended one record per line while training,
cut back to the resumed checkpoint's step on `--resume`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from training.config import ConfigError


def append_jsonl(path: Path, record: dict) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def read_records(path: Path) -> list[tuple[str, dict]]:
    """(line, record) pairs of a log. A torn last line (the process was killed mid-write) is dropped with a
    note, since it is the only record a kill can damage; a damaged line before it means the file was edited
    or corrupted otherwise, and is refused rather than silently lost."""
    lines = path.read_text().splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not a record with an integer step")
        except ValueError:
            if number == len(lines):
                print(f"note: {path}: dropped a torn last line (written when the run was killed): {line[:60]!r}",
                      file=sys.stderr)
                break
            raise ConfigError(f"{path} line {number}: expected a JSON record with a step, got {line[:60]!r}") from None
        records.append((line, record))
    return records


def truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records logged after the checkpoint a run resumes from, so they are not logged twice. The file
    is replaced atomically, so a kill during the rewrite keeps the old log."""
    if not path.is_file():
        return
    kept = [line for line, record in read_records(path) if record["step"] <= last_step]
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text("".join(line + "\n" for line in kept))
    os.replace(temporary, path)
