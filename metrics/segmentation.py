"""Overlap scores between predicted segments and true objects: mean best overlap (mBO) and matched mIoU.

ARI only asks whether pixels are grouped together; these scores ask how well each true object is
covered by a predicted segment. mBO (as in OCLF / DINOSAUR) lets several objects pick the same segment;
matched mIoU pairs segments with objects one-to-one (Hungarian), so merging two objects into one
segment is penalised. Both are computed from one per-image contingency table (a single `bincount`).
"""
from __future__ import annotations

import torch

from metrics.contingency import compact_contingency_table, prepare_id_maps
from metrics.matching import hungarian_match


def _object_iou(true_ids: torch.Tensor, pred_ids: torch.Tensor, ignore_background: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """IoU [B, T, P] between every true object and every predicted segment, and which objects occur [B, T].

    A predicted segment's area counts all its pixels, background included: a segment that spills over
    the background has a lower IoU with the object it covers.
    """
    table = compact_contingency_table(prepare_id_maps(true_ids, pred_ids)).double()
    segment_area = table.sum(dim=1)
    if ignore_background:
        table = table[:, 1:, :]  # row 0 is true id 0: background is not an object to find
    object_area = table.sum(dim=2)
    union = object_area.unsqueeze(2) + segment_area.unsqueeze(1) - table
    iou = torch.where(union > 0, table / union.clamp_min(1.0), torch.zeros_like(union))
    return iou, object_area > 0


def _mean_over_objects(per_object: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Mean over the objects present in each image; NaN where there is none."""
    num_objects = present.sum(dim=1)
    total = (per_object * present).sum(dim=1)
    return torch.where(num_objects > 0, total / num_objects.clamp_min(1), torch.full_like(total, float("nan")))


def mean_best_overlap(true_ids: torch.Tensor, pred_ids: torch.Tensor, *, ignore_background: bool = True) -> torch.Tensor:
    """mBO per image, float64 [B]: for each true object the best IoU over predicted segments, averaged.

    `true_ids`, `pred_ids`: integer id maps [B, ...]; true id 0 is background and is not an object
    when `ignore_background` (the default). Images without any object → NaN (average with
    `metrics.aggregate.nanmean_with_count`).
    """
    iou, present = _object_iou(true_ids, pred_ids, ignore_background)
    best = iou.amax(dim=2) if iou.shape[2] else torch.zeros_like(iou[..., 0])
    return _mean_over_objects(best, present)


def matched_miou(true_ids: torch.Tensor, pred_ids: torch.Tensor, *, ignore_background: bool = True) -> torch.Tensor:
    """Matched mIoU per image, float64 [B]: IoU after a one-to-one Hungarian matching, averaged over objects.

    Segments are matched to true objects to maximise the total IoU; true objects left without a segment
    (more objects than segments) count as IoU 0. Images without any object → NaN. Objects absent from
    an image have IoU 0 with everything, so they never change the optimal total.
    """
    iou, present = _object_iou(true_ids, pred_ids, ignore_background)
    rows, cols = hungarian_match(iou, maximize=True)
    image = torch.arange(iou.shape[0], device=iou.device).unsqueeze(1)
    per_object = torch.zeros_like(iou[..., 0]).scatter_(1, rows, iou[image, rows, cols])
    return _mean_over_objects(per_object, present)
