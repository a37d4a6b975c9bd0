"""Adjusted Rand Index (ARI) and foreground ARI (FG-ARI) between integer segmentations, batched.

ARI compares two partitions of an image's pixels through pair counts: with the contingency table
n_ij (pixels with true id i and predicted id j), row sums a_i and column sums b_j, and n pixels,

    ARI = (Σ C(n_ij,2) − E) / (½(Σ C(a_i,2) + Σ C(b_j,2)) − E),   E = Σ C(a_i,2) · Σ C(b_j,2) / C(n,2).

It is invariant to relabelling either partition, 1 for identical partitions and 0 in expectation
for random ones. FG-ARI (the object-discovery score of Slot Attention and its successors) drops the
pixels whose *true* id is 0 (background), so a model is not rewarded for segmenting the background.
"""
from __future__ import annotations

import torch

from metrics.contingency import (
    compact_ids,
    contingency_table,
    dense_table_fits,
    prepare_id_maps,
    unique_with_inverse,
)


def _pairs(counts: torch.Tensor) -> torch.Tensor:
    """C(count, 2), exactly, in int64."""
    return counts * (counts - 1) // 2


def _pair_sums_dense(
    true_ids: torch.Tensor, pred_ids: torch.Tensor, num_true: int, num_pred: int, ignore_background: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n, Σ C(n_ij,2), Σ C(a_i,2), Σ C(b_j,2)) per image from one dense [B, T, P] table."""
    table = contingency_table(true_ids, pred_ids, num_true, num_pred)
    if ignore_background:
        table = table[:, 1:, :]  # row 0 holds exactly the pixels whose true id is 0
    together_both = _pairs(table).sum(dim=(1, 2))
    together_true = _pairs(table.sum(dim=2)).sum(dim=1)
    together_pred = _pairs(table.sum(dim=1)).sum(dim=1)
    return table.sum(dim=(1, 2)), together_both, together_true, together_pred


def _pair_sums_sparse(
    true_ids: torch.Tensor, pred_ids: torch.Tensor, num_true: int, num_pred: int, ignore_background: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same sums as `_pair_sums_dense`, counting only the (image, true, pred) cells that occur.

    Used when even compacted ids are too many for a dense table (e.g. instance ids that are unique
    across a data set, or pixel-wise clusters); memory stays proportional to the number of pixels.
    Expects compacted ids (below `num_true` / `num_pred` ≤ number of pixels), so keys cannot overflow.
    """
    num_images = true_ids.shape[0]
    image = torch.arange(num_images, device=true_ids.device).unsqueeze(1).expand_as(true_ids)
    if ignore_background:
        keep = true_ids != 0
        image, true_ids, pred_ids = image[keep], true_ids[keep], pred_ids[keep]
    else:
        image, true_ids, pred_ids = image.reshape(-1), true_ids.reshape(-1), pred_ids.reshape(-1)
    rows, row_of_pixel, row_sizes = unique_with_inverse(image * num_true + true_ids)
    cols, col_of_pixel, col_sizes = unique_with_inverse(image * num_pred + pred_ids)
    cells, _, cell_sizes = unique_with_inverse(row_of_pixel * cols.numel() + col_of_pixel)
    image_of_row = rows // num_true
    image_of_col = cols // num_pred
    image_of_cell = image_of_row[cells // cols.numel()]

    def per_image(image_index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        return torch.zeros(num_images, dtype=torch.long, device=values.device).index_add_(0, image_index, values)

    return (
        per_image(image_of_row, row_sizes),
        per_image(image_of_cell, _pairs(cell_sizes)),
        per_image(image_of_row, _pairs(row_sizes)),
        per_image(image_of_col, _pairs(col_sizes)),
    )


def _ari_from_pair_sums(
    num_pixels: torch.Tensor, together_both: torch.Tensor, together_true: torch.Tensor, together_pred: torch.Tensor
) -> torch.Tensor:
    """ARI in float64 from exact integer pair counts, with the degenerate cases of the module docs."""
    identical = (together_both == together_true) & (together_both == together_pred)
    total_pairs = _pairs(num_pixels).double()
    both, true, pred = together_both.double(), together_true.double(), together_pred.double()
    expected = true * pred / total_pairs
    score = (both - expected) / (0.5 * (true + pred) - expected)
    score = torch.where(identical, torch.ones_like(score), score)
    return torch.where(num_pixels < 2, torch.full_like(score, float("nan")), score)


def adjusted_rand_index(
    true_ids: torch.Tensor, pred_ids: torch.Tensor, *, ignore_background: bool = False
) -> torch.Tensor:
    """ARI per image, float64 [B], between integer id maps [B, ...] (any spatial shape).

    Ids are arbitrary non-negative integers (not necessarily contiguous). With
    `ignore_background=True` (FG-ARI) pixels whose *true* id is 0 are excluded before counting.

    Degenerate cases (where the formula's denominator vanishes or it is undefined):
    - identical partitions (no pair of pixels is together in one and apart in the other) → exactly
      1.0. This covers the zero-denominator cases "one true and one predicted cluster" and "every pixel
      its own cluster in both", and matches scikit-learn's `adjusted_rand_score`;
    - fewer than 2 (foreground) pixels in an image → NaN: there is no pair of pixels to compare, so
      there is no evidence either way (scikit-learn returns 1.0 here). Average with
      `metrics.aggregate.nanmean_with_count`, which reports how many images were excluded.

    The batch is counted in one `bincount` over combined (image, true, pred) indices. Ids too large to
    index a dense table are first remapped to 0..U-1 over the batch (a sorted unique); if there are still
    too many, only the cells that occur are counted, by sorting (slower, memory ∝ pixels).
    """
    true_flat, pred_flat, num_true, num_pred = prepare_id_maps(true_ids, pred_ids)
    num_images, num_pixels = true_flat.shape
    if not dense_table_fits(num_images, num_pixels, num_true, num_pred):
        true_flat, num_true = compact_ids(true_flat)  # id 0 stays 0, so background is still row 0
        pred_flat, num_pred = compact_ids(pred_flat)
    if dense_table_fits(num_images, num_pixels, num_true, num_pred):
        sums = _pair_sums_dense(true_flat, pred_flat, num_true, num_pred, ignore_background)
    else:
        sums = _pair_sums_sparse(true_flat, pred_flat, num_true, num_pred, ignore_background)
    return _ari_from_pair_sums(*sums)


def fg_ari(true_ids: torch.Tensor, pred_ids: torch.Tensor) -> torch.Tensor:
    """Foreground ARI per image [B]: ARI over the pixels whose true id is not 0 (background)."""
    return adjusted_rand_index(true_ids, pred_ids, ignore_background=True)


def ari(true_ids: torch.Tensor, pred_ids: torch.Tensor) -> torch.Tensor:
    """Full ARI per image [B], background pixels included."""
    return adjusted_rand_index(true_ids, pred_ids, ignore_background=False)


def masks_to_ids(soft_masks: torch.Tensor) -> torch.Tensor:
    """Hard segmentation [B, ...] from per-slot masks [B, K, ...]: each pixel goes to its argmax slot.

    Ties go to the lowest slot index, so the result is deterministic. `max(dim).indices` is used rather
    than `argmax(dim)`: same result, but several times faster on CPU for a reduction over a middle axis.
    """
    if not isinstance(soft_masks, torch.Tensor) or soft_masks.ndim < 3:
        shape = tuple(soft_masks.shape) if isinstance(soft_masks, torch.Tensor) else type(soft_masks).__name__
        raise ValueError(f"soft_masks must have shape [B, K, H, W] (slots on dim 1), got {shape}")
    if soft_masks.shape[1] == 0:
        raise ValueError(f"soft_masks needs at least one slot on dim 1, got shape {tuple(soft_masks.shape)}")
    return soft_masks.max(dim=1).indices
