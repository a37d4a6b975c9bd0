"""Plots of evaluation results (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_slot_sweep(rows: list[dict], path: Path, train_slots: int | None = None) -> None:
    """FG-ARI and ARI against the test-time slot count, one line per iteration count; the reconstruction
    error instead when the eval images have no masks (rows without `fg_ari`)."""
    labelled = bool(rows) and "fg_ari" in rows[0]
    keys = ("fg_ari", "ari") if labelled else ("mse",)
    titles = ("FG-ARI", "ARI (with background)") if labelled else ("reconstruction MSE (no masks to score)",)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), sharex=True, squeeze=False)
    axes = axes[0]
    for iterations in sorted({row["num_iterations"] for row in rows}):
        subset = sorted((r for r in rows if r["num_iterations"] == iterations), key=lambda r: r["num_slots"])
        slots = [r["num_slots"] for r in subset]
        for axis, key in zip(axes, keys):
            line, = axis.plot(slots, [r[key] for r in subset], marker="o", label=f"{iterations} iterations")
        if "fg_ari_unmerged" in subset[0]:  # a model that merges duplicate slots: also before merging
            axes[0].plot(slots, [r["fg_ari_unmerged"] for r in subset], marker=".", linestyle=":",
                         color=line.get_color(), label=f"{iterations} iterations, duplicates not merged")
    for axis, title in zip(axes, titles):
        if train_slots is not None:
            axis.axvline(train_slots, color="grey", linestyle="--", linewidth=1, label="training slots")
        axis.set_xlabel("slots at test time")
        axis.set_title(title)
        if labelled:
            axis.set_ylim(min(0.0, axis.get_ylim()[0]), 1.0)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curve(xs: list[float], ys: list[float], path: Path, xlabel: str, ylabel: str, title: str = "") -> None:
    """A single labelled line plot (used by the time-to-quality benchmark)."""
    fig, axis = plt.subplots(figsize=(5, 3.6))
    axis.plot(xs, ys, marker="o")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
