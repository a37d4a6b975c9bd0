"""Metrics as pure functions of arrays and tensors: ARI / FG-ARI, mBO, matched mIoU, Hungarian matching,
set-prediction AP and the disentanglement scores. Nothing here imports the rest of the project, so a
metric can be read, tested and reused on its own."""
from metrics.aggregate import MeanWithExclusions, nanmean_with_count
from metrics.ari import adjusted_rand_index, ari, fg_ari, masks_to_ids
from metrics.matching import hungarian_match, mask_iou
from metrics.segmentation import matched_miou, mean_best_overlap

__all__ = [
    "MeanWithExclusions",
    "adjusted_rand_index",
    "ari",
    "fg_ari",
    "hungarian_match",
    "mask_iou",
    "masks_to_ids",
    "matched_miou",
    "mean_best_overlap",
    "nanmean_with_count",
]
