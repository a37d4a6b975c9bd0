"""Set-prediction scores of a slot model: AP at every distance threshold for any test-time slot count, the
per-property accuracy of Hungarian-matched predictions, and the sweep's CSV and plot."""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Iterable

import torch

from data import PairBatch
from data.properties import PropertyLayout, object_targets
from metrics.average_precision import DISTANCE_SCALE, THRESHOLDS, average_precision, threshold_key
from metrics.matching import hungarian_match, pad_targets, pairwise_huber_cost
from viz.plots import plt

AP_KEYS = tuple(threshold_key(t) for t in THRESHOLDS)
COLUMNS = ("num_slots", "num_iterations", *AP_KEYS)
SWEEP_FILES = ("set_prediction_sweep.csv", "set_prediction_sweep.png")


def load_property_eval_set(batches: Iterable[PairBatch], layout: PropertyLayout, max_images: int | None = None
                           ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Decode the eval shards once into (images, targets) chunks, both frames of each pair as images."""
    chunks, count = [], 0
    for batch in batches:
        images = batch.frames
        frames = [object_targets(batch.factors, layout, frame)[0] for frame in (0, 1)]
        width = max(t.shape[1] for t in frames)
        targets = torch.cat([_pad(t, width) for t in frames])
        if max_images is not None:
            images, targets = images[: max_images - count], targets[: max_images - count]
        chunks.append((images, targets))
        count += len(images)
        if max_images is not None and count >= max_images:
            break
    return chunks


def _pad(targets: torch.Tensor, width: int) -> torch.Tensor:
    return torch.cat([targets, targets.new_zeros(targets.shape[0], width - targets.shape[1], targets.shape[2])], 1)


@torch.no_grad()
def predict(model: torch.nn.Module, eval_set: list[tuple[torch.Tensor, torch.Tensor]], num_slots: int,
            num_iterations: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(predictions [N, K, P], targets [N, M, P]) over the whole set; slot noise from a private generator."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    predictions = [model(images.to(device), num_slots=num_slots, num_iterations=num_iterations,
                         generator=generator).predictions.float().cpu() for images, _ in eval_set]
    model.train(was_training)
    width = max(targets.shape[1] for _, targets in eval_set)
    return torch.cat(predictions), torch.cat([_pad(targets, width) for _, targets in eval_set])


def matched_accuracy(predictions: torch.Tensor, targets: torch.Tensor, layout: PropertyLayout) -> dict[str, float]:
    """Where the errors are: Hungarian-match each image's predictions to its targets (Huber cost, as the
    loss), then over the real objects the accuracy of each discrete property, of all of them at once, and
    the mean coordinate error in AP distance units."""
    padded = pad_targets(targets, max(predictions.shape[1], targets.shape[1]))
    if padded.shape[1] > predictions.shape[1]:  # fewer slots than target rows: pad predictions instead
        predictions = torch.cat([predictions, predictions.new_zeros(predictions.shape[0], padded.shape[1]
                                                                    - predictions.shape[1], predictions.shape[2])], 1)
    pred_idx, target_idx = hungarian_match(pairwise_huber_cost(predictions, padded))
    rows = torch.arange(len(predictions)).unsqueeze(1)
    matched_pred, matched_true = predictions[rows, pred_idx], padded[rows, target_idx]
    real = matched_true[..., layout.object_index] != 0
    results, all_right = {}, torch.ones_like(real)
    for name, block in layout.discrete_slices.items():
        right = matched_pred[..., block].argmax(-1) == matched_true[..., block].argmax(-1)
        results[f"accuracy_{name}"] = float(right[real].float().mean())
        all_right &= right
    results["accuracy_all"] = float(all_right[real].float().mean())
    coords = layout.coordinate_slice
    distance = (matched_pred[..., coords] - matched_true[..., coords]).norm(dim=-1) * DISTANCE_SCALE
    results["distance_mean"] = float(distance[real].mean())
    return results


def evaluate_set_prediction(model: torch.nn.Module, eval_set: list[tuple[torch.Tensor, torch.Tensor]],
                            layout: PropertyLayout, num_slots: int, num_iterations: int, seed: int = 0) -> dict:
    """One row: the slot and iteration counts, AP at every threshold, and the number of images and objects."""
    predictions, targets = predict(model, eval_set, num_slots, num_iterations, seed)
    return {"num_slots": num_slots, "num_iterations": num_iterations,
            **average_precision(predictions, targets, layout), **matched_accuracy(predictions, targets, layout),
            "images": len(targets), "objects": int((targets[..., layout.object_index] != 0).sum())}


def sweep(model: torch.nn.Module, eval_set: list[tuple[torch.Tensor, torch.Tensor]], layout: PropertyLayout,
          slot_counts: list[int], iteration_counts: list[int], seed: int = 0) -> list[dict]:
    return [evaluate_set_prediction(model, eval_set, layout, slots, iterations, seed)
            for iterations in iteration_counts for slots in slot_counts]


def format_table(rows: list[dict]) -> str:
    """A markdown table: one row per (slots, iterations), AP at every threshold."""
    lines = ["| slots | iterations | " + " | ".join(AP_KEYS) + " |", "|---:|---:|" + "---:|" * len(AP_KEYS)]
    for row in rows:
        lines.append(f"| {row['num_slots']} | {row['num_iterations']} | "
                     + " | ".join(f"{row[key]:.3f}" for key in AP_KEYS) + " |")
    return "\n".join(lines)


def write_sweep(rows: list[dict], out_dir: Path, train_slots: int | None = None) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = (out_dir / name for name in SWEEP_FILES)
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    iteration_counts = sorted({row["num_iterations"] for row in rows})
    fig, axes = plt.subplots(1, len(iteration_counts), figsize=(4.5 * len(iteration_counts), 3.6), squeeze=False)
    for axis, iterations in zip(axes[0], iteration_counts):
        subset = sorted((r for r in rows if r["num_iterations"] == iterations), key=lambda r: r["num_slots"])
        for key in AP_KEYS:
            axis.plot([r["num_slots"] for r in subset], [r[key] for r in subset], marker="o", label=key)
        if train_slots is not None:
            axis.axvline(train_slots, color="grey", linestyle="--", linewidth=1)
        axis.set(xlabel="slots at test time", ylabel="AP", ylim=(0.0, 1.0), title=f"{iterations} iterations")
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)
    return csv_path, png_path
