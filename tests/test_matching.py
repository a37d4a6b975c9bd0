"""Batched Hungarian matching against brute force, its error handling, and pairwise mask IoU."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from metrics import hungarian_match, mask_iou


def brute_force_best_total(cost: torch.Tensor, maximize: bool) -> float:
    """Best total over every injective assignment of the smaller side to the larger one."""
    rows, cols = cost.shape
    if rows <= cols:
        totals = [sum(cost[i, j].item() for i, j in enumerate(perm)) for perm in itertools.permutations(range(cols), rows)]
    else:
        totals = [sum(cost[i, j].item() for j, i in enumerate(perm)) for perm in itertools.permutations(range(rows), cols)]
    return max(totals) if maximize else min(totals)


@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 2), (3, 3), (5, 5), (2, 5), (5, 2), (3, 4), (4, 1)])
def test_equals_brute_force(rows, cols, maximize):
    cost = torch.rand(4, rows, cols, dtype=torch.float64, generator=torch.Generator().manual_seed(rows * 10 + cols))
    row_idx, col_idx = hungarian_match(cost, maximize=maximize)
    matches = min(rows, cols)
    assert row_idx.shape == col_idx.shape == (4, matches)
    assert row_idx.dtype == col_idx.dtype == torch.long
    for image in range(4):
        assert len(set(row_idx[image].tolist())) == matches and len(set(col_idx[image].tolist())) == matches
        assert row_idx[image].tolist() == sorted(row_idx[image].tolist())
        total = cost[image, row_idx[image], col_idx[image]].sum().item()
        assert total == pytest.approx(brute_force_best_total(cost[image], maximize), abs=1e-9)


def test_known_assignment():
    cost = torch.tensor([[[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]]])
    row_idx, col_idx = hungarian_match(cost)
    assert row_idx.tolist() == [[0, 1, 2]] and col_idx.tolist() == [[1, 0, 2]]  # total 1 + 2 + 2 = 5


def test_accepts_integer_and_half_precision_costs():
    cost = torch.tensor([[[0, 5], [5, 0]]])
    for typed in (cost, cost.half(), cost.bfloat16()):
        assert hungarian_match(typed)[1].tolist() == [[0, 1]]


def test_gradient_carrying_costs_are_detached():
    cost = torch.rand(2, 3, 3, requires_grad=True)
    row_idx, _ = hungarian_match(cost * 2)
    assert not row_idx.requires_grad


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_non_finite_costs(bad):
    cost = torch.rand(2, 3, 3)
    cost[1, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN or ±inf"):
        hungarian_match(cost)


def test_rejects_wrong_rank():
    with pytest.raises(ValueError, match=r"cost must have shape \[B, K, M\], got \(3, 3\)"):
        hungarian_match(torch.rand(3, 3))


@pytest.mark.parametrize("shape, expected", [((0, 3, 3), (0, 3)), ((2, 3, 0), (2, 0)), ((2, 0, 4), (2, 0))])
def test_empty_inputs_give_empty_results(shape, expected):
    row_idx, col_idx = hungarian_match(torch.zeros(shape))
    assert row_idx.shape == col_idx.shape == expected
    assert row_idx.dtype == torch.long


# --- mask IoU ---------------------------------------------------------------------------------------


def test_mask_iou_hand_built():
    # 1×4 "images": pred 0 = pixels {0,1}, pred 1 = {} (empty); true 0 = {1,2}, true 1 = {0,1}.
    pred = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]]], dtype=torch.bool)
    true = torch.tensor([[[0, 1, 1, 0], [1, 1, 0, 0]]], dtype=torch.bool)
    # pred 0 vs true 0: 1 shared pixel of 3 → 1/3; vs true 1: identical → 1; empty pred → 0.
    expected = torch.tensor([[[1 / 3, 1.0], [0.0, 0.0]]])
    torch.testing.assert_close(mask_iou(pred, true), expected)


def test_mask_iou_empty_union_is_zero_and_spatial_dims_flattened():
    empty = torch.zeros(1, 1, 2, 2, dtype=torch.bool)
    assert mask_iou(empty, empty).tolist() == [[[0.0]]]


def test_mask_iou_matches_loop_and_soft_masks_equal_binary():
    generator = torch.Generator().manual_seed(0)
    pred = torch.rand(3, 4, 5, 5, generator=generator) > 0.5
    true = torch.rand(3, 2, 5, 5, generator=generator) > 0.5
    iou = mask_iou(pred, true)
    assert iou.shape == (3, 4, 2)
    for b, k, m in itertools.product(range(3), range(4), range(2)):
        union = (pred[b, k] | true[b, m]).sum().item()
        expected = (pred[b, k] & true[b, m]).sum().item() / union if union else 0.0
        assert iou[b, k, m].item() == pytest.approx(expected, abs=1e-6)
    torch.testing.assert_close(mask_iou(pred.float(), true.double()), iou.double())


def test_mask_iou_rejects_mismatched_masks():
    with pytest.raises(ValueError, match="true_masks must match pred_masks"):
        mask_iou(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))
