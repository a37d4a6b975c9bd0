"""Evaluation metrics for object-centric models: ARI / FG-ARI, mBO, matched mIoU and Hungarian matching."""
from eval.aggregate import MeanWithExclusions, nanmean_with_count
from eval.ari import adjusted_rand_index, ari, fg_ari, masks_to_ids
from eval.matching import hungarian_match, mask_iou
from eval.segmentation import matched_miou, mean_best_overlap

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
