"""Per-image contingency tables between two integer segmentations, built with one `bincount`.

Every overlap-based metric (ARI, mBO, matched mIoU) reduces to the table n[b, t, p] = number of pixels
of image b with true id t and predicted id p. Counting the combined index (b, t, p) with a single
`bincount` is about ten times faster than an einsum of one-hot maps (SPEC §10) and needs no float
one-hots at all.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from einops import rearrange

# A dense table larger than this many cells (per pixel of the batch, plus a constant) would cost more
# to allocate and reduce than the pixels it summarises; callers then compact the ids or go sparse.
DENSE_CELLS_PER_PIXEL = 4
DENSE_CELLS_SLACK = 1 << 16


class IdMaps(NamedTuple):
    """Validated id maps flattened to [B, N] int64, with the id-axis sizes that index them directly."""

    true: torch.Tensor
    pred: torch.Tensor
    num_true: int
    num_pred: int


def prepare_id_maps(true_ids: torch.Tensor, pred_ids: torch.Tensor) -> IdMaps:
    """Check two id maps [B, ...] and flatten them to [B, N] int64.

    Errors are raised here, with the argument's name and expected-vs-got, rather than as an opaque
    failure inside `bincount` or as a silently wrong score. One min/max pass per map serves both the
    negative-id check and the table size.
    """
    for name, ids in (("true_ids", true_ids), ("pred_ids", pred_ids)):
        if not isinstance(ids, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of integer ids, got {type(ids).__name__}")
        if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
            raise ValueError(
                f"{name} must have an integer dtype (e.g. torch.int64), got {ids.dtype}; "
                "use masks_to_ids() to turn soft masks into ids"
            )
        if ids.ndim < 2:
            raise ValueError(f"{name} must have shape [B, ...spatial] (at least 2 dims), got {tuple(ids.shape)}")
    if true_ids.shape != pred_ids.shape:
        raise ValueError(
            f"pred_ids must have the same shape as true_ids: expected {tuple(true_ids.shape)}, "
            f"got {tuple(pred_ids.shape)}"
        )
    if true_ids.device != pred_ids.device:
        raise ValueError(f"pred_ids must be on true_ids' device: expected {true_ids.device}, got {pred_ids.device}")
    sizes = []
    for name, ids in (("true_ids", true_ids), ("pred_ids", pred_ids)):
        if ids.numel() == 0:
            sizes.append(1)
            continue
        smallest, largest = (int(value) for value in torch.aminmax(ids))
        if smallest < 0:
            raise ValueError(f"{name} must be non-negative ids, got minimum {smallest}")
        sizes.append(largest + 1)
    return IdMaps(
        rearrange(true_ids, "b ... -> b (...)").long(),
        rearrange(pred_ids, "b ... -> b (...)").long(),
        *sizes,
    )


def dense_table_fits(num_images: int, num_pixels: int, num_true: int, num_pred: int) -> bool:
    """Whether a [B, T, P] table is cheap compared with the pixels it counts."""
    cells = num_images * num_true * num_pred
    return cells <= DENSE_CELLS_PER_PIXEL * num_images * num_pixels + DENSE_CELLS_SLACK


def unique_with_inverse(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sorted distinct values of a 1-D tensor, each element's index into them, and their counts.

    `torch.unique` on CPU is several times slower than `numpy.unique` (docs/benchmarks.md), so CPU tensors
    go through numpy; other devices keep `torch.unique`.
    """
    if values.device.type != "cpu":
        return torch.unique(values, return_inverse=True, return_counts=True)
    distinct, inverse, counts = np.unique(values.numpy(), return_inverse=True, return_counts=True)
    return torch.from_numpy(distinct), torch.from_numpy(inverse.reshape(-1)).long(), torch.from_numpy(counts).long()


def compact_ids(ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Remap arbitrary non-negative ids to 0..U-1 over the whole batch, keeping id 0 as code 0.

    Code 0 stays background so that callers can still drop it; the order of the other ids is kept.
    """
    with_zero = torch.cat([ids.new_zeros(1), ids.reshape(-1)])
    distinct, codes, _ = unique_with_inverse(with_zero)
    return codes[1:].reshape(ids.shape), distinct.numel()


def contingency_table(true_ids: torch.Tensor, pred_ids: torch.Tensor, num_true: int, num_pred: int) -> torch.Tensor:
    """Counts [B, T, P] (int64) of pixels per (true id, predicted id), from one `bincount`.

    `true_ids`, `pred_ids` are [B, N] with ids below `num_true` / `num_pred`.
    """
    num_images = true_ids.shape[0]
    image_offset = torch.arange(num_images, device=true_ids.device).unsqueeze(1) * (num_true * num_pred)
    combined = torch.add(pred_ids, true_ids, alpha=num_pred).add_(image_offset)  # two passes over the pixels
    counts = torch.bincount(combined.reshape(-1), minlength=num_images * num_true * num_pred)
    return rearrange(counts, "(b t p) -> b t p", b=num_images, t=num_true, p=num_pred)


def compact_contingency_table(id_maps: IdMaps) -> torch.Tensor:
    """Dense table [B, T, P] from prepared id maps, compacting the ids only when they are large.

    Row 0 is always true id 0 (background), so callers can drop it. Small ids are used as they are:
    rows or columns of ids that never occur are all zero and change no overlap metric. Compaction is
    over the whole batch, so T and P are at most the number of distinct ids in the batch.
    """
    true_ids, pred_ids, num_true, num_pred = id_maps
    num_images, num_pixels = true_ids.shape
    if not dense_table_fits(num_images, num_pixels, num_true, num_pred):
        true_ids, num_true = compact_ids(true_ids)
        pred_ids, num_pred = compact_ids(pred_ids)
    return contingency_table(true_ids, pred_ids, num_true, num_pred)
