"""Batched Hungarian matching and pairwise mask IoU: how every part of the library pairs slots with things.

Slots come out in arbitrary order, so comparing them with targets (objects, masks, property vectors)
needs the one-to-one assignment of least total cost. scipy's `linear_sum_assignment` solves it on the
CPU; the whole batch crosses to the host in one transfer and the indices come back in one.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from scipy.optimize import linear_sum_assignment


def hungarian_match(cost: torch.Tensor, *, maximize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal one-to-one assignment per image of a cost [B, K, M] (K != M allowed).

    Returns (row_idx, col_idx), LongTensors [B, min(K, M)] on `cost`'s device: row `row_idx[b, i]` is
    matched with column `col_idx[b, i]`; rows are in increasing order. With `maximize=True` the total is
    maximised instead (e.g. for IoU). Empty batches or an empty side give empty results.
    Non-finite costs raise `ValueError` here instead of deep inside scipy.
    """
    if not isinstance(cost, torch.Tensor) or cost.ndim != 3:
        shape = tuple(cost.shape) if isinstance(cost, torch.Tensor) else type(cost).__name__
        raise ValueError(f"cost must have shape [B, K, M], got {shape}")
    if cost.is_complex():
        raise ValueError(f"cost must be real, got dtype {cost.dtype}")
    num_images, num_rows, num_cols = cost.shape
    num_matches = min(num_rows, num_cols)
    host_cost = cost.detach().to(device="cpu", dtype=torch.float64).numpy()  # the one host transfer
    if not np.isfinite(host_cost).all():
        bad = ~np.isfinite(host_cost)
        image, row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"cost contains {int(bad.sum())} NaN or ±inf entries (shape {tuple(cost.shape)}; "
            f"{int(bad.any(axis=(1, 2)).sum())} image(s) affected, the first is image {image} at row {row}, "
            f"column {col}: {host_cost[image, row, col]}); "
            "Hungarian matching needs finite costs - replace forbidden pairs by a large finite cost"
        )
    row_idx = np.empty((num_images, num_matches), dtype=np.int64)
    col_idx = np.empty((num_images, num_matches), dtype=np.int64)
    if num_matches:
        for image in range(num_images):  # scipy has no batched solver
            row_idx[image], col_idx[image] = linear_sum_assignment(host_cost[image], maximize=maximize)
    return torch.from_numpy(row_idx).to(cost.device), torch.from_numpy(col_idx).to(cost.device)


def gather_matched(cost: torch.Tensor, row_idx: torch.Tensor, col_idx: torch.Tensor) -> torch.Tensor:
    """The costs [B, min(K, M)] of the matched pairs, batched (no Python loop), keeping `cost`'s gradient."""
    batch = torch.arange(cost.shape[0], device=cost.device).unsqueeze(1)
    return cost[batch, row_idx, col_idx]


def mask_iou(pred_masks: torch.Tensor, true_masks: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU [B, K, M] between masks [B, K, ...] and [B, M, ...] (same spatial shape).

    Boolean masks give the usual IoU. Soft masks in [0, 1] give the soft IoU
    Σ p·t / (Σ p + Σ t − Σ p·t), which equals the usual IoU on binary values. A pair whose union is
    empty has IoU 0: an empty mask overlaps nothing.
    """
    for name, masks in (("pred_masks", pred_masks), ("true_masks", true_masks)):
        if not isinstance(masks, torch.Tensor) or masks.ndim < 3:
            shape = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise ValueError(f"{name} must have shape [B, K, ...spatial], got {shape}")
    if pred_masks.shape[0] != true_masks.shape[0] or pred_masks.shape[2:] != true_masks.shape[2:]:
        raise ValueError(
            "true_masks must match pred_masks in batch and spatial dims: expected "
            f"[{pred_masks.shape[0]}, M, {', '.join(map(str, pred_masks.shape[2:]))}], got {tuple(true_masks.shape)}"
        )
    dtype = torch.promote_types(
        pred_masks.dtype if pred_masks.is_floating_point() else torch.float32,
        true_masks.dtype if true_masks.is_floating_point() else torch.float32,
    )
    pred = rearrange(pred_masks, "b k ... -> b k (...)").to(dtype)
    true = rearrange(true_masks, "b m ... -> b m (...)").to(dtype)
    intersection = einsum(pred, true, "b k n, b m n -> b k m")
    union = pred.sum(dim=-1).unsqueeze(2) + true.sum(dim=-1).unsqueeze(1) - intersection
    return torch.where(union > 0, intersection / union.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(union))


def pairwise_huber_cost(predictions: torch.Tensor, targets: torch.Tensor, delta: float = 1.0,
                        weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cost [B, K, M]: the Huber loss between prediction k and target m, averaged over the property
    dimension (as Keras' Huber does), optionally with per-dimension `weights` [P] (a weighted mean)."""
    elementwise = F.huber_loss(rearrange(predictions, "b k p -> b k 1 p").expand(-1, -1, targets.shape[1], -1),
                               rearrange(targets, "b m p -> b 1 m p").expand(-1, predictions.shape[1], -1, -1),
                               reduction="none", delta=delta)
    if weights is None:
        return elementwise.mean(dim=-1)
    return (elementwise * weights).sum(dim=-1) / weights.sum()


def pad_targets(targets: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Append all-zero "no object" rows up to `num_rows`; more targets than rows is an error."""
    batch, count, dim = targets.shape
    if count > num_rows:
        raise ValueError(f"{count} target rows but only {num_rows} predicted slots: every object needs a slot; "
                         f"use at least {count} slots")
    if count == num_rows:
        return targets
    return torch.cat([targets, targets.new_zeros(batch, num_rows - count, dim)], dim=1)
