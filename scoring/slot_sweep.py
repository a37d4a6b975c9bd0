"""Object discovery as the slot count (and iteration count) changes at test time: one row of metrics per
setting, the table, and slot_sweep.csv / slot_sweep.png."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

from scoring.discovery import evaluate_discovery
from viz.plots import plot_slot_sweep

COLUMNS = ("num_slots", "num_iterations", "fg_ari", "ari", "mbo", "miou")
#: reported too by a model that merges duplicate slots: FG-ARI of its masks before merging
UNMERGED = "fg_ari_unmerged"
#: reported too by a model that reconstructs pixels (the only score on images without masks)
RECONSTRUCTION = "mse"


def columns(rows: list[dict]) -> tuple[str, ...]:
    """The columns the rows have: segmentation scores only on a labelled eval set."""
    present = rows[0] if rows else {}
    return tuple(c for c in COLUMNS + (UNMERGED, RECONSTRUCTION) if c in present)


def headline(row: dict) -> str:
    """The row's main score for a progress line: FG-ARI, else the reconstruction error."""
    key = "fg_ari" if "fg_ari" in row else RECONSTRUCTION
    return f"{key}={row[key]:.4f}" if key in row else ""


def sweep(
    model: torch.nn.Module,
    eval_set: list[tuple[torch.Tensor, torch.Tensor]],
    slot_counts: list[int],
    iteration_counts: list[int],
    seed: int = 0,
    progress: bool = False,
) -> list[dict]:
    """One row of metrics per (slot count, iteration count): every key of `evaluate_discovery`."""
    rows = []
    for iterations in iteration_counts:
        for num_slots in slot_counts:
            metrics = evaluate_discovery(model, eval_set, num_slots, iterations, seed=seed)
            rows.append(metrics)
            if progress:
                print(f"  slots={num_slots} iterations={iterations} {headline(metrics)}", file=sys.stderr)
    return rows


def format_table(rows: list[dict]) -> str:
    names = columns(rows)
    header = " | ".join(f"{c:>15}" for c in names)
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(" | ".join(f"{row[c]:>15}" if isinstance(row[c], int) else f"{row[c]:>15.4f}" for c in names))
    return "\n".join(lines)


def write_sweep(rows: list[dict], out_dir: Path, train_slots: int | None = None) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "slot_sweep.csv", out_dir / "slot_sweep.png"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns(rows), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot_slot_sweep(rows, png_path, train_slots)
    return csv_path, png_path
