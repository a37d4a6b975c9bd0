"""ARI / FG-ARI against scikit-learn, their degenerate cases, and mBO / matched mIoU on hand-built scenes."""
from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from metrics import (
    adjusted_rand_index,
    ari,
    fg_ari,
    masks_to_ids,
    matched_miou,
    mean_best_overlap,
    nanmean_with_count,
)


def sklearn_ari_per_image(true_ids: torch.Tensor, pred_ids: torch.Tensor, ignore_background: bool) -> np.ndarray:
    """The oracle: scikit-learn image by image; NaN where fewer than two pixels remain (our definition)."""
    scores = []
    for true, pred in zip(true_ids.reshape(len(true_ids), -1).numpy(), pred_ids.reshape(len(pred_ids), -1).numpy()):
        if ignore_background:
            true, pred = true[true != 0], pred[true != 0]
        scores.append(adjusted_rand_score(true, pred) if true.size >= 2 else math.nan)
    return np.array(scores, dtype=np.float64)


def random_segmentations(
    seed: int, batch: int, shape: tuple[int, ...], num_true: int, num_pred: int, agreement: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """True ids and predictions that copy the (relabelled) truth on a fraction `agreement` of pixels,
    so scores spread over the whole range instead of sitting near 0."""
    generator = torch.Generator().manual_seed(seed)
    true = torch.randint(0, num_true, (batch, *shape), generator=generator)
    noise = torch.randint(0, num_pred, (batch, *shape), generator=generator)
    relabel = torch.randint(0, num_pred, (num_true,), generator=generator)
    copy = torch.rand((batch, *shape), generator=generator) < agreement
    return true, torch.where(copy, relabel[true], noise)


CASES = [  # (batch, spatial shape, true clusters, predicted clusters, agreement)
    (6, (4, 4), 2, 2, 0.5),
    (6, (8, 8), 5, 3, 0.8),
    (4, (7, 9), 3, 7, 0.3),
    (4, (16, 16), 8, 8, 0.95),
    (3, (2, 3, 5), 4, 1, 0.5),
    (5, (3, 3), 1, 4, 0.0),
    (8, (2, 2), 3, 3, 0.5),  # tiny images: many with < 2 foreground pixels
]


@pytest.mark.parametrize("ignore_background", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_matches_sklearn_on_random_segmentations(case, ignore_background):
    batch, shape, num_true, num_pred, agreement = case
    true, pred = random_segmentations(sum(shape) + num_true, batch, shape, num_true, num_pred, agreement)
    scores = adjusted_rand_index(true, pred, ignore_background=ignore_background)
    assert scores.dtype == torch.float64 and scores.shape == (batch,)
    expected = sklearn_ari_per_image(true, pred, ignore_background)
    np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-12, equal_nan=True)


def test_wrappers_select_background_handling():
    true, pred = random_segmentations(1, 4, (8, 8), 4, 3, 0.7)
    assert torch.equal(fg_ari(true, pred), adjusted_rand_index(true, pred, ignore_background=True))
    assert torch.equal(ari(true, pred), adjusted_rand_index(true, pred, ignore_background=False))
    assert not torch.equal(fg_ari(true, pred), ari(true, pred))


@pytest.mark.parametrize("true_ids, pred_ids", [((0, 7, 200), (3, 9, 200)), ((0, 10**12, 5), (2**40, 1, 0))])
def test_arbitrary_id_values(true_ids, pred_ids):
    # Small ids index a dense table directly; huge ids take the sparse (torch.unique) path.
    true, pred = random_segmentations(2, 5, (6, 6), 3, 3, 0.6)
    true = torch.tensor(true_ids)[true]
    pred = torch.tensor(pred_ids)[pred]
    for ignore_background in (False, True):
        scores = adjusted_rand_index(true, pred, ignore_background=ignore_background)
        expected = sklearn_ari_per_image(true, pred, ignore_background)
        np.testing.assert_allclose(scores.numpy(), expected, rtol=0, atol=1e-12, equal_nan=True)


def test_sparse_path_equals_dense_path(monkeypatch):
    # Too many distinct ids for any dense table: the cells that occur are counted with torch.unique.
    true, pred = random_segmentations(3, 7, (9, 9), 6, 5, 0.6)
    true[0] = 0  # one image without foreground
    true = torch.tensor([0, 5, 10**12, 7, 2**40, 3])[true]
    dense = [adjusted_rand_index(true, pred, ignore_background=flag) for flag in (False, True)]
    # `metrics.ari` the attribute is the `ari` function; the module itself comes from the import system.
    monkeypatch.setattr(importlib.import_module("metrics.ari"), "dense_table_fits", lambda *args: False)
    for flag, dense_scores in zip((False, True), dense):
        sparse_scores = adjusted_rand_index(true, pred, ignore_background=flag)
        torch.testing.assert_close(sparse_scores, dense_scores, rtol=0, atol=0, equal_nan=True)
        expected = sklearn_ari_per_image(true, pred, flag)
        np.testing.assert_allclose(sparse_scores.numpy(), expected, rtol=0, atol=1e-12, equal_nan=True)


def test_invariant_to_relabelling_predictions():
    true, pred = random_segmentations(4, 6, (8, 8), 5, 5, 0.7)
    relabelled = torch.tensor([42, 3, 0, 17, 8])[pred]
    for ignore_background in (False, True):
        torch.testing.assert_close(
            adjusted_rand_index(true, relabelled, ignore_background=ignore_background),
            adjusted_rand_index(true, pred, ignore_background=ignore_background),
            rtol=0,
            atol=0,
        )


def test_batch_equals_per_image():
    true, pred = random_segmentations(5, 6, (10, 10), 4, 6, 0.5)
    true[2] = 0
    true[3, 1:] = 0  # a single foreground row
    for ignore_background in (False, True):
        batched = adjusted_rand_index(true, pred, ignore_background=ignore_background)
        single = torch.cat(
            [adjusted_rand_index(t[None], p[None], ignore_background=ignore_background) for t, p in zip(true, pred)]
        )
        torch.testing.assert_close(batched, single, rtol=0, atol=0, equal_nan=True)


# --- degenerate cases -------------------------------------------------------------------------------


def test_one_true_and_one_predicted_cluster_is_one():
    true = torch.full((2, 4, 4), 3)
    pred = torch.full((2, 4, 4), 8)
    assert adjusted_rand_score(true[0].flatten(), pred[0].flatten()) == 1.0
    assert ari(true, pred).tolist() == [1.0, 1.0]
    assert fg_ari(true, pred).tolist() == [1.0, 1.0]


def test_every_pixel_its_own_cluster_in_both_is_one():
    true = torch.arange(16).reshape(1, 4, 4)
    pred = (torch.arange(16) * 3 + 1).reshape(1, 4, 4)
    assert adjusted_rand_score(true.flatten(), pred.flatten()) == 1.0
    assert ari(true, pred).tolist() == [1.0]


def test_identical_partitions_are_exactly_one():
    true, _ = random_segmentations(6, 5, (16, 16), 6, 6, 1.0)
    pred = torch.tensor([5, 0, 9, 2, 7, 1])[true]
    assert ari(true, pred).tolist() == [1.0] * 5
    assert fg_ari(true, pred).tolist() == [1.0] * 5


@pytest.mark.parametrize(
    "true, pred, expected",
    [
        ([[1, 1, 1, 1]], [[0, 1, 2, 3]], 0.0),  # one true cluster, all pixels split
        ([[0, 1, 2, 3]], [[5, 5, 5, 5]], 0.0),  # all singletons, one predicted cluster
        ([[2, 2]], [[0, 1]], 0.0),  # two pixels, split
        ([[2, 2]], [[4, 4]], 1.0),  # two pixels, kept together
    ],
)
def test_small_degenerate_values_match_sklearn(true, pred, expected):
    true, pred = torch.tensor(true), torch.tensor(pred)
    assert adjusted_rand_score(true[0], pred[0]) == expected
    assert ari(true, pred).tolist() == [expected]


def test_fewer_than_two_pixels_is_nan():
    one_pixel = torch.tensor([[[3]], [[0]]])
    assert torch.isnan(ari(one_pixel, one_pixel)).all()
    assert torch.isnan(fg_ari(one_pixel, one_pixel)).all()
    # sklearn calls a single pixel a perfect match; we call it undefined.
    assert adjusted_rand_score([3], [3]) == 1.0
    assert ari(torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long)).isnan().all()


def test_fewer_than_two_foreground_pixels_is_nan_for_fg_ari_only():
    true = torch.zeros(3, 4, 4, dtype=torch.long)
    true[1, 0, 0] = 2  # one foreground pixel
    true[2, 0, :2] = 1  # two foreground pixels
    pred = torch.randint(0, 3, (3, 4, 4), generator=torch.Generator().manual_seed(0))
    scores = fg_ari(true, pred)
    assert torch.isnan(scores[:2]).all() and not torch.isnan(scores[2])
    assert not torch.isnan(ari(true, pred)).any()


def test_empty_batch():
    empty = torch.zeros(0, 4, 4, dtype=torch.long)
    assert fg_ari(empty, empty).shape == (0,)


def test_nanmean_reports_excluded_images():
    summary = nanmean_with_count(torch.tensor([1.0, math.nan, 0.5, math.nan], dtype=torch.float64))
    assert (summary.mean, summary.std, summary.num_included, summary.num_excluded) == (0.75, 0.25, 2, 2)
    nothing = nanmean_with_count(torch.tensor([math.nan]))
    assert math.isnan(nothing.mean) and (nothing.num_included, nothing.num_excluded) == (0, 1)


# --- input validation -------------------------------------------------------------------------------


def test_rejects_shape_mismatch_with_both_shapes():
    with pytest.raises(ValueError, match=r"pred_ids.*expected \(2, 4, 4\), got \(2, 4, 5\)"):
        ari(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_rejects_non_integer_dtypes(dtype):
    ids = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=rf"true_ids must have an integer dtype.*got {dtype}"):
        ari(ids.to(dtype), ids)
    with pytest.raises(ValueError, match=r"pred_ids must have an integer dtype"):
        fg_ari(ids, ids.to(dtype))


def test_rejects_negative_ids_and_missing_batch_dim():
    ids = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"pred_ids must be non-negative.*-1"):
        ari(ids, ids - 1)
    with pytest.raises(ValueError, match=r"true_ids must have shape \[B"):
        ari(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_accepts_other_integer_dtypes():
    true, pred = random_segmentations(7, 3, (5, 5), 3, 3, 0.5)
    torch.testing.assert_close(ari(true.to(torch.uint8), pred.to(torch.int32)), ari(true, pred))


# --- masks_to_ids -----------------------------------------------------------------------------------


def test_masks_to_ids_takes_argmax_over_slots_with_ties_to_lowest():
    masks = torch.zeros(1, 3, 2, 2)
    masks[0, 2, 0, 0] = 1.0
    masks[0, 1, 1, 1] = 0.7
    masks[0, 0, 1, 1] = 0.3
    masks[0, :, 0, 1] = 0.5  # a three-way tie
    assert masks_to_ids(masks).tolist() == [[[2, 0], [0, 1]]]


def test_masks_to_ids_validates_shape():
    with pytest.raises(ValueError, match="soft_masks must have shape"):
        masks_to_ids(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="at least one slot"):
        masks_to_ids(torch.zeros(2, 0, 4, 4))


# --- mBO and matched mIoU ---------------------------------------------------------------------------

# True scene (4×4): background 0 (8 pixels), object 1 and object 2 (4 pixels each).
TRUE_SCENE = [
    [0, 0, 0, 0],
    [1, 1, 2, 2],
    [1, 1, 2, 2],
    [0, 0, 0, 0],
]
# Object 2 split in half: IoU(obj1, seg1) = 4/4 = 1, IoU(obj2, seg2) = IoU(obj2, seg3) = 2/4 = 1/2.
SPLIT = [
    [0, 0, 0, 0],
    [1, 1, 2, 3],
    [1, 1, 2, 3],
    [0, 0, 0, 0],
]
# Both objects in one segment of 8 pixels: IoU with either object = 4/8 = 1/2; segment 0 misses both.
MERGED = [
    [0, 0, 0, 0],
    [1, 1, 1, 1],
    [1, 1, 1, 1],
    [0, 0, 0, 0],
]
# Segment 1 = object 1 plus 2 background pixels: IoU = 4/6 = 2/3; segment 2 = object 2: IoU 1.
SPILLED = [
    [1, 1, 0, 0],
    [1, 1, 2, 2],
    [1, 1, 2, 2],
    [0, 0, 0, 0],
]
# One segment over the whole image: IoU with either object = 4/16 = 1/4.
ONE_SEGMENT = [[0] * 4] * 4


def _scene(pred: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([TRUE_SCENE]), torch.tensor([pred])


@pytest.mark.parametrize(
    "pred, expected_mbo, expected_miou",
    [
        (SPLIT, (1 + 1 / 2) / 2, (1 + 1 / 2) / 2),  # matching picks either half of object 2
        (MERGED, 1 / 2, (1 / 2 + 0) / 2),  # mBO lets both objects use the merged segment; matching does not
        (SPILLED, (2 / 3 + 1) / 2, (2 / 3 + 1) / 2),
        (ONE_SEGMENT, 1 / 4, (1 / 4 + 0) / 2),  # more objects than segments: the unmatched one scores 0
    ],
)
def test_overlap_scores_on_hand_built_scene(pred, expected_mbo, expected_miou):
    true, pred = _scene(pred)
    assert mean_best_overlap(true, pred).item() == pytest.approx(expected_mbo, abs=1e-15)
    assert matched_miou(true, pred).item() == pytest.approx(expected_miou, abs=1e-15)


def test_background_counts_as_object_when_not_ignored():
    true, pred = _scene(SPLIT)
    # Background (8 pixels) is exactly segment 0: IoU 1. mBO = (1 + 1 + 1/2) / 3 = 5/6.
    assert mean_best_overlap(true, pred, ignore_background=False).item() == pytest.approx(5 / 6, abs=1e-15)
    assert matched_miou(true, pred, ignore_background=False).item() == pytest.approx(5 / 6, abs=1e-15)


def test_perfect_prediction_scores_one_under_any_labels():
    true = torch.tensor([TRUE_SCENE, SPILLED])
    pred = torch.tensor([3, 10**12, 5])[true]  # relabelled, with a huge id (compacted table)
    for metric in (mean_best_overlap, matched_miou):
        assert metric(true, pred).tolist() == [1.0, 1.0]
        assert metric(true, pred, ignore_background=False).tolist() == [1.0, 1.0]


def test_images_without_objects_are_nan():
    true = torch.zeros(2, 4, 4, dtype=torch.long)
    true[1, :2] = 4
    pred = torch.zeros(2, 4, 4, dtype=torch.long)
    for metric in (mean_best_overlap, matched_miou):
        scores = metric(true, pred)
        assert math.isnan(scores[0]) and scores[1].item() == pytest.approx(8 / 16)
        assert metric(true, pred, ignore_background=False)[0].item() == 1.0


def _reference_overlaps(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """mBO and matched mIoU of one image by explicit masks and brute force over assignments."""
    objects = [true == t for t in np.unique(true) if t != 0]
    segments = [pred == p for p in np.unique(pred)]
    iou = np.array([[(o & s).sum() / (o | s).sum() for s in segments] for o in objects])
    best = iou.max(axis=1).mean()
    slots = segments + [None] * len(objects)  # None: object left unmatched (IoU 0)
    matched = max(
        sum(iou[i, j] if j < len(segments) else 0.0 for i, j in enumerate(choice))
        for choice in itertools.permutations(range(len(slots)), len(objects))
    ) / len(objects)
    return best, matched


def test_overlap_scores_match_explicit_reference():
    true, pred = random_segmentations(8, 5, (6, 6), 4, 3, 0.6)
    true[:, 0] = 0  # make sure background is present
    mbo, miou = mean_best_overlap(true, pred), matched_miou(true, pred)
    for image in range(len(true)):
        best, matched = _reference_overlaps(true[image].numpy(), pred[image].numpy())
        assert mbo[image].item() == pytest.approx(best, abs=1e-12)
        assert miou[image].item() == pytest.approx(matched, abs=1e-12)
