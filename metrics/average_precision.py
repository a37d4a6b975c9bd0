"""Average precision of predicted object sets, as the official Slot Attention CLEVR metric defines it
(`average_precision_clevr` and `compute_average_precision` in google-research/slot_attention/utils.py).

- Every prediction of every image of the evaluation set is one detection; all detections are sorted by
  confidence (the is-object output), highest first, over the whole set (ties: earlier image and slot first).
- For each detection, among the *real* objects of its image whose discrete properties (argmax of each
  one-hot block) all equal the detection's, take the nearest one by coordinate distance (the first one on
  ties), whether or not it was already claimed.
- The detection is a true positive iff that object exists, its distance is strictly below the threshold
  (any distance at threshold inf) and no earlier detection claimed it; a true positive claims the object.
  Everything else is a false positive (so a duplicate of an already claimed object counts against
  precision, even if another matching object lies within the threshold: the official rule).
- Precision and recall (over the number of real objects) along the sorted list give the VOC all-point AP:
  area under the precision envelope (precision made non-increasing from the right), recall padded with
  0 and 1.

Distance unit: coordinates are positions normalised to [0, 1] over the range object centres can take
(`data.properties`), and distances are multiplied by `DISTANCE_SCALE` = 6, as the official code multiplies
by 6 to undo its [-3, 3] -> [0, 1] rescaling of CLEVR coordinates. So in both, the range of object
positions spans 6 units and the thresholds {1, 0.5, 0.25, 0.125} are the same fractions of it. For the
default 32x32 multi_dsprites data one unit is 0.7 / 6 of the image side = 3.73 pixels, and adjacent
position grid values are 6 / 31 = 0.19 units apart (the 0.125 threshold needs the exact grid position).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch



class PropertyLayout(Protocol):
    """Where each property sits in a prediction or target vector (data.properties.PropertyLayout is one):
    a protocol, so the metric needs no part of the data package."""

    dim: int
    object_index: int
    coordinate_slice: slice
    discrete_slices: dict[str, slice]

    def describe(self) -> str: ...


THRESHOLDS = (math.inf, 1.0, 0.5, 0.25, 0.125)
DISTANCE_SCALE = 6.0
DISTANCE_UNIT = ("6 x the Euclidean distance between positions normalised to [0, 1] over the range of object "
                 "centres (that range spans 6 units, as CLEVR's [-3, 3]); multi_dsprites: 1 unit = 0.7/6 of the "
                 "image side")


def threshold_key(threshold: float) -> str:
    """Metric name of a threshold: ap_inf, ap_1, ap_0.5, ap_0.25, ap_0.125."""
    return "ap_inf" if math.isinf(threshold) else f"ap_{threshold:g}"


@dataclass(frozen=True)
class Detections:
    """Everything about the sorted detections that does not depend on the threshold."""

    image: np.ndarray  # [D] image index of each detection, in confidence order
    best_object: np.ndarray  # [D] index of the nearest attribute-matching real object, -1 if none
    best_distance: np.ndarray  # [D] its distance in scene units, inf if none
    num_objects: int  # real objects in the whole set (the recall denominator)
    num_targets: int  # target rows per image (M)


def _check(name: str, values: torch.Tensor) -> None:
    bad = ~torch.isfinite(values)
    if bad.any():
        image, row, column = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"{name} contain {int(bad.sum())} NaN or infinite values (the first in image {image}, "
                         f"row {row}, property {column}); average precision needs finite values")


def match_detections(predictions: torch.Tensor, targets: torch.Tensor, layout: PropertyLayout,
                     distance_scale: float = DISTANCE_SCALE) -> Detections:
    """Sort predictions [N, K, P] by confidence and find each one's nearest matching object in targets [N, M, P]."""
    if predictions.ndim != 3 or targets.ndim != 3:
        raise ValueError(f"predictions and targets must be [N, K, P] and [N, M, P], got "
                         f"{tuple(predictions.shape)} and {tuple(targets.shape)}")
    if predictions.shape[0] != targets.shape[0] or predictions.shape[2] != layout.dim or targets.shape[2] != layout.dim:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} must have the same "
                         f"number of images and {layout.dim} properties each (the layout: {layout.describe()})")
    _check("predictions", predictions)
    _check("targets", targets)
    predictions, targets = predictions.detach().cpu().double(), targets.detach().cpu().double()
    num_images, num_slots, _ = predictions.shape
    real = targets[..., layout.object_index] != 0
    num_objects = int(real.sum())
    if num_objects == 0:
        raise ValueError(f"average precision is undefined without objects: the {num_images} target images hold "
                         "0 real objects (is-object flag 0 everywhere)")

    same = real.unsqueeze(1).expand(-1, num_slots, -1)  # [N, K, M]
    for block in layout.discrete_slices.values():
        pred_class = predictions[..., block].argmax(dim=-1)
        true_class = targets[..., block].argmax(dim=-1)
        same = same & (pred_class.unsqueeze(2) == true_class.unsqueeze(1))
    coords = layout.coordinate_slice
    distance = torch.cdist(predictions[..., coords], targets[..., coords]) * distance_scale  # [N, K, M]
    distance = torch.where(same, distance, torch.full_like(distance, math.inf))
    if distance.shape[2]:
        best_distance, best_object = distance.min(dim=2)  # first index on ties, as the official strict '<'
    else:
        best_distance = torch.full((num_images, num_slots), math.inf, dtype=torch.float64)
        best_object = torch.zeros((num_images, num_slots), dtype=torch.long)
    best_object = torch.where(torch.isinf(best_distance), torch.full_like(best_object, -1), best_object)

    confidence = predictions[..., layout.object_index].reshape(-1).numpy()
    order = np.argsort(-confidence, kind="stable")
    return Detections(
        image=order // num_slots,
        best_object=best_object.reshape(-1).numpy()[order],
        best_distance=best_distance.reshape(-1).numpy()[order],
        num_objects=num_objects,
        num_targets=targets.shape[1],
    )


def voc_average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC all-point AP: area under the non-increasing envelope of precision over recall in [0, 1]."""
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def average_precision_at(detections: Detections, threshold: float) -> float:
    """AP at one distance threshold (math.inf: discrete properties only)."""
    hit = detections.best_object >= 0
    if not math.isinf(threshold):
        hit &= detections.best_distance < threshold
    claimed = detections.image * max(detections.num_targets, 1) + detections.best_object
    hit_positions = np.flatnonzero(hit)
    _, first = np.unique(claimed[hit_positions], return_index=True)  # the first hit on each object claims it
    true_positive = np.zeros(len(hit), dtype=bool)
    true_positive[hit_positions[first]] = True
    accumulated_tp = np.cumsum(true_positive)
    precision = accumulated_tp / np.arange(1, len(hit) + 1)
    recall = accumulated_tp / detections.num_objects
    return voc_average_precision(precision, recall)


def average_precision(predictions: torch.Tensor, targets: torch.Tensor, layout: PropertyLayout,
                      thresholds: tuple[float, ...] = THRESHOLDS,
                      distance_scale: float = DISTANCE_SCALE) -> dict[str, float]:
    """{'ap_inf': ..., 'ap_1': ..., ...} of predictions [N, K, P] (confidence = is-object output) against
    targets [N, M, P] padded with all-zero rows. ValueError on NaN/inf values or a set without objects."""
    detections = match_detections(predictions, targets, layout, distance_scale)
    return {threshold_key(t): average_precision_at(detections, t) for t in thresholds}
