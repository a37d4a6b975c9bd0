"""Object-discovery evaluation of a slot model: FG-ARI, ARI, mBO and matched mIoU over a data set, and the
reconstruction error, which is all there is to report on a user's images without masks."""
from __future__ import annotations

from typing import Iterable

import torch

from data import PairBatch
from metrics.aggregate import nanmean_with_count
from metrics.ari import adjusted_rand_index, masks_to_ids
from metrics.segmentation import matched_miou, mean_best_overlap

METRICS = ("fg_ari", "ari", "mbo", "miou")
#: what is reported for every image, masks or not: mean squared error of the reconstruction ([-1, 1] pixels)
RECONSTRUCTION = "mse"


def is_labelled(eval_set: list[tuple[torch.Tensor, torch.Tensor]]) -> bool:
    """Whether any image of the set has an object in its mask. Imported images (`data.from_images`) have id 0
    everywhere; segmentation scores against such masks would be numbers without meaning (ARI against one
    cluster), so they are not computed."""
    return any(bool(masks.any()) for _, masks in eval_set)


def load_eval_set(batches: Iterable[PairBatch], max_images: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Decode the eval shards once into (images, masks) chunks, both frames of each pair as images,
    so a sweep over many slot counts does not decode the shards again for each setting."""
    chunks, count = [], 0
    for batch in batches:
        images, masks = batch.images_and_masks()
        if max_images is not None:
            images, masks = images[: max_images - count], masks[: max_images - count]
        chunks.append((images, masks))
        count += len(images)
        if max_images is not None and count >= max_images:
            break
    return chunks


@torch.no_grad()
def evaluate_discovery(
    model: torch.nn.Module,
    eval_set: list[tuple[torch.Tensor, torch.Tensor]],
    num_slots: int,
    num_iterations: int,
    seed: int = 0,
) -> dict[str, float]:
    """Mean metrics over every image; images where a metric is undefined (e.g. FG-ARI with fewer than
    two foreground pixels) are left out of that mean and counted in `<metric>_undefined`. The reconstruction
    error `mse` is reported too when the model reconstructs pixels; on a set without masks (`is_labelled`) it
    is the only metric.

    Slot initialisation noise comes from a private generator seeded with `seed`, so results are
    reproducible and evaluation never disturbs the training RNG.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    labelled = is_labelled(eval_set)
    per_image: dict[str, list[torch.Tensor]] = {name: [] for name in METRICS} if labelled else {}
    for images, masks in eval_set:
        images = images.to(device)
        output = model(images, num_slots=num_slots, num_iterations=num_iterations, generator=generator)
        reconstruction = getattr(output, "reconstruction", None)
        if reconstruction is not None and reconstruction.shape == images.shape:  # not DINOSAUR's features
            error = (reconstruction.float() - images).pow(2).mean(dim=(1, 2, 3))
            per_image.setdefault(RECONSTRUCTION, []).append(error.double().cpu())
        if not labelled:
            continue
        predicted = masks_to_ids(output.masks.float()).cpu()
        per_image["fg_ari"].append(adjusted_rand_index(masks, predicted, ignore_background=True))
        unmerged = getattr(output, "unmerged_masks", None)
        if unmerged is not None:  # the same slots before duplicates were merged: what merging adds
            per_image.setdefault("fg_ari_unmerged", []).append(
                adjusted_rand_index(masks, masks_to_ids(unmerged.float()).cpu(), ignore_background=True))
        per_image["ari"].append(adjusted_rand_index(masks, predicted, ignore_background=False))
        per_image["mbo"].append(mean_best_overlap(masks, predicted).double())
        per_image["miou"].append(matched_miou(masks, predicted).double())
    model.train(was_training)
    results: dict[str, float] = {"num_slots": num_slots, "num_iterations": num_iterations}
    for name, values in per_image.items():
        summary = nanmean_with_count(torch.cat(values))
        results[name] = summary.mean
        results[f"{name}_undefined"] = summary.num_excluded
    results["images"] = sum(len(images) for images, _ in eval_set)
    return results
