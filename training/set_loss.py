"""Hungarian-matched losses for set prediction (Deep Set Prediction Networks, Eq. 2; the official Slot
Attention set-prediction loss), and two attention losses that help slots bind (segmentation, compactness).

Slots come out in arbitrary order, so each image's K predictions are first paired one-to-one with its
targets by the assignment of least total Huber cost (scipy's `linear_sum_assignment`, through the shared
`metrics.matching.hungarian_match`: one host transfer per batch, no Python work per slot). Targets are padded
with all-zero "no object" rows up to K, so every slot is matched and the slots without an object learn to
say so through the is-object flag. On the matched pairs:

- `hungarian_huber_loss`: the Huber cost itself (the official loss), summed over slots, mean over images;
- `hungarian_classification_loss`: Huber on the coordinates and cross-entropy on each discrete property of
  the real objects, binary cross-entropy on the is-object flag of every slot. Huber on probabilities has
  a vanishing gradient for a confidently wrong class; cross-entropy does not (measured: with the same
  pooled features, 100% colour accuracy after 250 steps against 35% with Huber).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from metrics.matching import gather_matched, hungarian_match, pad_targets, pairwise_huber_cost


@dataclass
class SetLoss:
    """The loss, its parts, and the assignment: prediction `pred_idx[b, i]` is paired with target row
    `target_idx[b, i]` of the padded targets."""

    loss: torch.Tensor
    pred_idx: torch.Tensor  # [B, K]
    target_idx: torch.Tensor  # [B, K]
    matched_targets: torch.Tensor  # [B, K, P], the padded target row matched to each prediction row
    parts: dict[str, torch.Tensor]  # detached components, for logging


def match_sets(predictions: torch.Tensor, targets: torch.Tensor, delta: float = 1.0,
               weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cost [B, K, K], pred_idx, target_idx, padded targets): the least-cost assignment per image of
    predictions [B, K, P] to targets [B, M, P] padded to K rows (M <= K; M = 0 is an empty target set).

    Raises ValueError for mismatched shapes, more targets than slots, and NaN or infinite values (which
    scipy cannot match), saying which tensor holds how many.
    """
    if predictions.ndim != 3 or targets.ndim != 3:
        raise ValueError(f"predictions and targets must be [B, K, P] and [B, M, P], got "
                         f"{tuple(predictions.shape)} and {tuple(targets.shape)}")
    if predictions.shape[0] != targets.shape[0] or predictions.shape[2] != targets.shape[2]:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} must agree in "
                         "batch size and property dimension")
    targets = pad_targets(targets.to(predictions.dtype), predictions.shape[1])
    cost = pairwise_huber_cost(predictions, targets, delta, weights)
    try:
        pred_idx, target_idx = hungarian_match(cost)
    except ValueError as error:
        bad_pred = int((~torch.isfinite(predictions)).sum())
        bad_target = int((~torch.isfinite(targets)).sum())
        raise ValueError(f"set prediction loss: {bad_pred} non-finite prediction values of {predictions.numel()} "
                         f"and {bad_target} non-finite target values of {targets.numel()}; {error}") from None
    return cost, pred_idx, target_idx, targets


def _gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return values[torch.arange(values.shape[0], device=values.device).unsqueeze(1), index]


def hungarian_huber_loss(predictions: torch.Tensor, targets: torch.Tensor, delta: float = 1.0,
                         weights: torch.Tensor | None = None) -> SetLoss:
    """The official loss: matched Huber cost of predictions [B, K, P] against targets [B, M, P], summed over
    slots and averaged over images. Invariant to the order of the predictions and of the targets."""
    cost, pred_idx, target_idx, padded = match_sets(predictions, targets, delta, weights)
    matched = gather_matched(cost, pred_idx, target_idx)
    loss = matched.sum(dim=1).mean()
    return SetLoss(loss, pred_idx, target_idx, _gather_rows(padded, target_idx), {"huber": loss.detach()})


def hungarian_classification_loss(logits: torch.Tensor, predictions: torch.Tensor, targets: torch.Tensor,
                                  num_coordinates: int, class_sizes: tuple[int, ...], delta: float = 1.0,
                                  weights: torch.Tensor | None = None) -> SetLoss:
    """Match on the Huber cost of `predictions` (the property vectors), then on each matched pair: Huber on
    the coordinates and cross-entropy on the discrete properties (real objects only; from `logits`), binary
    cross-entropy on the is-object flag (every slot). Each part is weighted by the first entry of its block
    in `weights`, summed over slots and divided by the number of real objects in the batch."""
    _, pred_idx, target_idx, padded = match_sets(predictions, targets, delta, weights)
    weights = torch.ones(predictions.shape[-1], device=predictions.device) if weights is None else weights
    logits, predictions = _gather_rows(logits, pred_idx), _gather_rows(predictions, pred_idx)
    matched = _gather_rows(padded, target_idx)
    real = matched[..., -1]
    count = real.sum().clamp_min(1.0)  # per object: the loss scale does not depend on how many there are
    coords = slice(0, num_coordinates)
    parts = {"coordinates": (F.huber_loss(predictions[..., coords], matched[..., coords], reduction="none", delta=delta)
                             * weights[coords]).sum(dim=-1).mul(real).sum() / count}
    start = num_coordinates
    for index, size in enumerate(class_sizes):
        block = slice(start, start + size)
        entropy = F.cross_entropy(rearrange(logits[..., block], "b k c -> (b k) c"),
                                  rearrange(matched[..., block].argmax(dim=-1), "b k -> (b k)"), reduction="none")
        parts[f"class_{index}"] = weights[start] * (entropy * rearrange(real, "b k -> (b k)")).sum() / count
        start += size
    parts["is_object"] = weights[-1] * F.binary_cross_entropy_with_logits(logits[..., -1], real, reduction="sum") / count
    loss = sum(parts.values())
    return SetLoss(loss, pred_idx, target_idx, matched, {key: value.detach() for key, value in parts.items()})


def attention_segmentation_loss(attention: torch.Tensor, images: torch.Tensor, grid_size: tuple[int, int]
                                ) -> torch.Tensor:
    """Mean squared error of the image (pooled to the attention grid) against its piecewise-constant
    reconstruction: every pixel is the attention-weighted mix of the slots' mean colours.

    A decoder-free, label-free objective: it is lowest when each slot's attention covers one uniformly
    coloured region, i.e. when slots bind to objects. Attention [B, K, N] is softmax over slots.
    """
    pixels = rearrange(F.adaptive_avg_pool2d(images, grid_size), "b c h w -> b (h w) c")
    weights = attention / attention.sum(dim=-1, keepdim=True).clamp_min(1e-8)
    slot_colours = torch.einsum("bkn,bnc->bkc", weights, pixels)
    reconstruction = torch.einsum("bkn,bkc->bnc", attention, slot_colours)
    return F.mse_loss(reconstruction, pixels)


def attention_compactness_loss(geometry: torch.Tensor, pred_idx: torch.Tensor, matched_targets: torch.Tensor
                               ) -> torch.Tensor:
    """Mean spatial variance (var x + var y, in the [0, 1] units of the feature grid) of the normalised
    attention maps of the slots matched to real objects; spare slots are free.

    Why: where a slot's attention is spread over two objects or over background, its glimpse and its mean
    features name the object wrongly; a compact map is one that covers one object. Uses only the matching
    (which slots are objects), no masks. `geometry` [B, K, 6] as `slots.set_prediction.attention_geometry`
    (covariance xx, yy at 3, 4); `pred_idx` [B, K] and `matched_targets` [B, K, P] (is-object flag last) as
    in `SetLoss`.
    """
    variance = _gather_rows(geometry[..., 3] + geometry[..., 4], pred_idx)
    real = matched_targets[..., -1]
    return (variance * real).sum() / real.sum().clamp_min(1.0)
