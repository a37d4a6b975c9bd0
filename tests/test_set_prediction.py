"""Set prediction: targets, the Hungarian-matched loss, the official AP metric, the model, the task end to end."""
from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import train_slots
from data import PairBatch
from data.errors import DataError
from data.properties import PropertyLayout, object_targets
from metrics.average_precision import THRESHOLDS, average_precision, voc_average_precision
from metrics.matching import hungarian_match, pairwise_huber_cost
from slots.glimpse import glimpse_windows, window_centres
from slots.set_prediction import SlotSetPredictor, attention_geometry
from training.set_loss import (attention_compactness_loss, attention_segmentation_loss,
                               hungarian_classification_loss, hungarian_huber_loss)

# A small layout for hand-built cases: x, y on 5-value grids, one discrete factor with 2 values -> 5 entries.
LAYOUT = PropertyLayout((("x", 5), ("y", 5)), (("shape", 2),))
AP_KEYS = ("ap_inf", "ap_1", "ap_0.5", "ap_0.25", "ap_0.125")


def vector(x: float, y: float, shape: int, flag: float = 1.0) -> list[float]:
    """A property vector of LAYOUT: coordinates, shape one-hot, is-object flag (or confidence)."""
    return [x, y, float(shape == 0), float(shape == 1), flag]


# --- targets --------------------------------------------------------------------------------------------


def test_targets_follow_the_documented_layout_and_pad_with_zero_rows():
    sizes = {"shape": 3, "colour": 12, "scale": 6, "orientation": 40, "x": 32, "y": 32}
    layout = PropertyLayout.from_factor_sizes(sizes, ["x", "y"], ["shape", "colour", "scale"])
    assert layout.dim == 24 and layout.object_index == 23
    assert layout.describe() == "x, y in [0, 1] | shape one-hot 3 | colour one-hot 12 | scale one-hot 6 | is-object 1"
    obj = {"shape": 2, "colour": 11, "scale": 0, "orientation": 7, "x": 31, "y": 0}
    factors = [{"factor_sizes": sizes, "objects0": [obj], "objects1": []}]
    targets, counts = object_targets(factors, layout, frame=0, num_rows=3)
    expected = torch.zeros(1, 3, 24)
    expected[0, 0, [0, 1, 2 + 2, 5 + 11, 17 + 0, 23]] = torch.tensor([1.0, 0.0, 1, 1, 1, 1])
    assert torch.equal(targets, expected) and counts.tolist() == [1]
    empty, counts = object_targets(factors, layout, frame=1, num_rows=3)  # an empty target set: padding only
    assert torch.equal(empty, torch.zeros(1, 3, 24)) and counts.tolist() == [0]


def test_more_objects_than_slots_and_foreign_factors_are_refused_with_the_numbers():
    sizes = {"x": 5, "y": 5, "shape": 2}
    objects = [{"x": 0, "y": 0, "shape": 0}] * 3
    with pytest.raises(ValueError, match="image 1 of the batch has 3 objects but there are only 2 target rows"):
        object_targets([{"factor_sizes": sizes, "objects0": objects[:1]},
                        {"factor_sizes": sizes, "objects0": objects}], LAYOUT, num_rows=2)
    with pytest.raises(DataError, match="factor 'shape' has 3 values in the data but the set-prediction layout expects 2"):
        object_targets([{"factor_sizes": {**sizes, "shape": 3}, "objects0": objects}], LAYOUT)
    with pytest.raises(DataError, match="factor 'size' is not produced by the data"):
        PropertyLayout.from_factor_sizes(sizes, ["x", "y"], ["size"])


# --- the loss -------------------------------------------------------------------------------------------


def brute_force_loss(predictions: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean over images of the least total Huber cost over every permutation of the zero-padded targets."""
    num_slots = predictions.shape[1]
    padded = torch.cat([targets, torch.zeros(targets.shape[0], num_slots - targets.shape[1], targets.shape[2])], 1)
    totals = []
    for pred, target in zip(predictions, padded):
        best = min(sum(torch.nn.functional.huber_loss(pred[k], target[perm[k]]).item() for k in range(num_slots))
                   for perm in itertools.permutations(range(num_slots)))
        totals.append(best)
    return float(np.mean(totals))


@pytest.mark.parametrize("num_slots, num_targets", [(1, 1), (2, 2), (3, 1), (4, 4), (5, 3), (5, 0)])
def test_loss_equals_the_brute_force_minimum_over_permutations(num_slots, num_targets):
    generator = torch.Generator().manual_seed(10 * num_slots + num_targets)
    predictions = torch.rand(3, num_slots, 4, generator=generator) * 3 - 1  # beyond delta=1: both Huber branches
    targets = torch.rand(3, num_targets, 4, generator=generator)
    loss = hungarian_huber_loss(predictions, targets).loss
    assert loss.item() == pytest.approx(brute_force_loss(predictions, targets), rel=1e-6)


def test_loss_is_invariant_to_the_order_of_predictions_and_targets():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.rand(4, 5, 6, generator=generator, requires_grad=True)
    targets = torch.rand(4, 3, 6, generator=generator)
    result = hungarian_huber_loss(predictions, targets)
    result.loss.backward()
    gradient = predictions.grad.clone()
    slot_perm, target_perm = torch.tensor([3, 0, 4, 1, 2]), torch.tensor([2, 0, 1])
    permuted = predictions.detach()[:, slot_perm].requires_grad_()
    permuted_result = hungarian_huber_loss(permuted, targets[:, target_perm])
    permuted_result.loss.backward()
    assert permuted_result.loss.item() == pytest.approx(result.loss.item(), rel=1e-6)
    torch.testing.assert_close(permuted.grad, gradient[:, slot_perm])
    # the assignment pairs every slot once
    assert all(sorted(row.tolist()) == list(range(5)) for row in result.pred_idx)
    assert all(sorted(row.tolist()) == list(range(5)) for row in result.target_idx)


def test_classification_loss_uses_the_best_huber_assignment_and_is_order_invariant():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 4, 5, generator=generator)
    predictions = torch.cat([logits[..., :2], logits[..., 2:4].softmax(-1), logits[..., 4:].sigmoid()], -1)
    targets = torch.tensor([[vector(0.1, 0.2, 0), vector(0.9, 0.4, 1)]] * 3)
    result = hungarian_classification_loss(logits, predictions, targets, 2, (2,))
    padded = torch.cat([targets, torch.zeros(3, 2, 5)], 1)
    expected = 0.0
    for image in range(3):  # brute force: the permutation of least Huber cost, then the loss written out
        cost = pairwise_huber_cost(predictions[image:image + 1], padded[image:image + 1])[0]
        perm = min(itertools.permutations(range(4)), key=lambda p: sum(cost[k, p[k]].item() for k in range(4)))
        for slot, row in enumerate(perm):
            flag = padded[image, row, 4]
            expected += torch.nn.functional.binary_cross_entropy_with_logits(logits[image, slot, 4], flag).item()
            if flag:
                expected += torch.nn.functional.huber_loss(predictions[image, slot, :2], padded[image, row, :2],
                                                           reduction="sum").item()
                expected += torch.nn.functional.cross_entropy(logits[image, slot, 2:4].unsqueeze(0),
                                                              padded[image, row, 2:4].argmax().unsqueeze(0)).item()
    assert result.loss.item() == pytest.approx(expected / 6, rel=1e-5)  # 6 real objects
    perm = torch.tensor([2, 3, 0, 1])
    shuffled = hungarian_classification_loss(logits[:, perm], predictions[:, perm], targets.flip(1), 2, (2,))
    assert shuffled.loss.item() == pytest.approx(result.loss.item(), rel=1e-6)


def test_attention_segmentation_loss_is_zero_for_a_segmentation_into_uniform_regions():
    image = -torch.ones(1, 3, 4, 4)
    image[0, 0, :2, :2] = 1.0  # a red 2x2 object on black
    inside = torch.zeros(16, dtype=torch.bool)
    inside[[0, 1, 4, 5]] = True
    perfect = torch.stack([inside, ~inside]).float().unsqueeze(0)  # [1, K=2, N=16]
    assert attention_segmentation_loss(perfect, image, (4, 4)).item() == pytest.approx(0.0, abs=1e-12)
    uniform = torch.full((1, 2, 16), 0.5)
    assert attention_segmentation_loss(uniform, image, (4, 4)).item() > 0.1


def test_compactness_counts_only_slots_matched_to_real_objects():
    """2x2 grid with coordinates 0 and 1 (cells in row-major order). Slot 0 sits on one cell: variance 0.
    Slot 2 has weights 1/4, 1/2, 1/4 on cells (x, y) = (1, 0), (0, 1), (1, 1): centroid (0.5, 0.75), var x
    0.5 - 0.25 = 0.25, var y 0.75 - 0.5625 = 0.1875. Slot 1 is matched to padding and is not counted."""
    attention = torch.tensor([[[1.0, 0, 0, 0], [0, 0.5, 0, 0.5], [0, 0.5, 1.0, 0.5]]])  # [1, 3, 4]
    targets = torch.zeros(1, 3, 3)
    targets[0, :2, -1] = 1.0  # rows 0 and 1 are real objects, row 2 is padding
    pred_idx = torch.tensor([[2, 0, 1]])  # slot 2 -> object 0, slot 0 -> object 1, slot 1 -> padding
    geometry = attention_geometry(attention, 2, 2)
    loss = attention_compactness_loss(geometry, pred_idx, targets)
    torch.testing.assert_close(loss, torch.tensor((0.25 + 0.1875 + 0.0) / 2))
    targets[0, :, -1] = 0.0
    assert float(attention_compactness_loss(geometry, pred_idx, targets)) == 0.0


def test_attention_geometry_of_a_single_cell():
    attention = torch.zeros(1, 2, 9)
    attention[0, 0, 5] = 1.0  # row 1, column 2 of a 3x3 grid: x = 1, y = 0.5
    attention[0, 1] = 1.0 - attention[0, 0]
    geometry = attention_geometry(attention, 3, 3)
    torch.testing.assert_close(geometry[0, 0], torch.tensor([1 / 9, 1.0, 0.5, 0.0, 0.0, 0.0]))
    assert geometry[0, 1, 0].item() == pytest.approx(8 / 9) and geometry[0, 1, 3].item() > 0


def test_perfect_predictions_in_any_order_have_zero_loss_and_weights_change_the_cost():
    targets = torch.tensor([[vector(0.0, 0.5, 1), vector(1.0, 0.25, 0)]])
    predictions = torch.cat([torch.zeros(1, 1, 5), targets.flip(1)], dim=1)  # an empty slot first
    assert hungarian_huber_loss(predictions, targets).loss.item() == 0.0
    weights = torch.tensor([2.0, 2.0, 1.0, 1.0, 0.0])
    cost = pairwise_huber_cost(torch.tensor([[vector(0.5, 0.5, 0, 0.0)]]), torch.tensor([[vector(0.0, 0.5, 0)]]),
                               weights=weights)
    assert cost.item() == pytest.approx(2 * 0.5 * 0.5**2 / 6)  # only x differs, by 0.5; the flag has weight 0


def test_empty_target_set_matches_every_slot_to_no_object():
    predictions = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(1))
    loss = hungarian_huber_loss(predictions, torch.zeros(2, 0, 5)).loss
    expected = torch.nn.functional.huber_loss(predictions, torch.zeros_like(predictions), reduction="none")
    assert loss.item() == pytest.approx(expected.mean(dim=-1).sum(dim=1).mean().item())


def test_loss_refuses_more_targets_than_slots_and_non_finite_values():
    with pytest.raises(ValueError, match="4 target rows but only 3 predicted slots"):
        hungarian_huber_loss(torch.rand(2, 3, 5), torch.rand(2, 4, 5))
    predictions = torch.rand(2, 3, 5)
    predictions[1, 2, 0] = math.nan
    with pytest.raises(ValueError, match=r"1 non-finite prediction values of 30 and 0 non-finite target values.*"
                                         r"NaN or ±inf.*first is image 1 at row 2"):
        hungarian_huber_loss(predictions, torch.rand(2, 2, 5))
    targets = torch.rand(2, 2, 5)
    targets[0, 0, 4] = math.inf
    with pytest.raises(ValueError, match="0 non-finite prediction values of 30 and 1 non-finite target values"):
        hungarian_huber_loss(torch.rand(2, 3, 5), targets)
    with pytest.raises(ValueError, match="must agree in batch size and property dimension"):
        hungarian_huber_loss(torch.rand(2, 3, 5), torch.rand(2, 3, 4))


def test_hungarian_match_error_names_the_first_bad_image():
    cost = torch.rand(3, 2, 2)
    cost[2, 1, 0] = -math.inf
    with pytest.raises(ValueError, match=r"1 NaN or ±inf entries \(shape \(3, 2, 2\); 1 image\(s\) affected, "
                                         r"the first is image 2 at row 1, column 0: -inf\)"):
        hungarian_match(cost)


# --- average precision ----------------------------------------------------------------------------------

# Three objects: two in image 0, one in image 1 (whose second row is padding).
TARGETS = torch.tensor([[vector(0.0, 0.0, 0), vector(1.0, 1.0, 1)],
                        [vector(0.5, 0.5, 0), [0.0] * 5]])


def predictions_of(rows_per_image: list[list[list[float]]], slots: int = 3) -> torch.Tensor:
    """Pad each image's predictions with zero-confidence rows to `slots`."""
    return torch.tensor([rows + [vector(0.0, 0.0, 1, 0.0)] * (slots - len(rows)) for rows in rows_per_image])


def ap(predictions: torch.Tensor) -> list[float]:
    result = average_precision(predictions, TARGETS, LAYOUT)
    return [result[key] for key in AP_KEYS]


def test_ap_of_perfect_predictions_is_one_at_every_threshold():
    perfect = predictions_of([[vector(0.0, 0.0, 0, 0.9), vector(1.0, 1.0, 1, 0.8)], [vector(0.5, 0.5, 0, 0.7)]])
    assert ap(perfect) == [1.0] * 5


def test_ap_with_one_wrong_property():
    # confidence order: A (TP), C with the wrong shape (FP), B (TP): precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3
    wrong = predictions_of([[vector(0.0, 0.0, 0, 0.9), vector(1.0, 1.0, 1, 0.7)], [vector(0.5, 0.5, 1, 0.8)]])
    assert ap(wrong) == pytest.approx([1 / 3 + 1 / 3 * 2 / 3] * 5)


def test_ap_with_one_prediction_too_far_for_the_smaller_thresholds():
    # C is 0.05 off in x: 6 * 0.05 = 0.3 units, inside 0.5 but not 0.25
    far = predictions_of([[vector(0.0, 0.0, 0, 0.9), vector(1.0, 1.0, 1, 0.7)], [vector(0.55, 0.5, 0, 0.8)]])
    assert ap(far) == pytest.approx([1.0, 1.0, 1.0, 5 / 9, 5 / 9])


def test_ap_counts_duplicates_as_false_positives():
    # A twice (0.9, 0.8), then B, C: precision 1, 1/2, 2/3, 3/4 -> envelope 1, 3/4, 3/4
    duplicate = predictions_of([[vector(0.0, 0.0, 0, 0.9), vector(0.0, 0.0, 0, 0.8), vector(1.0, 1.0, 1, 0.7)],
                                [vector(0.5, 0.5, 0, 0.6)]])
    assert ap(duplicate) == pytest.approx([1 / 3 + 1 / 3 * 3 / 4 + 1 / 3 * 3 / 4] * 5)
    late_duplicate = predictions_of([[vector(0.0, 0.0, 0, 0.9), vector(0.0, 0.0, 0, 0.1), vector(1.0, 1.0, 1, 0.7)],
                                     [vector(0.5, 0.5, 0, 0.6)]])
    assert ap(late_duplicate) == [1.0] * 5  # after full recall a false positive costs nothing


def test_ap_follows_the_official_rule_for_a_claimed_nearest_object():
    """The official code takes the nearest attribute-matching object, claimed or not: a second prediction
    near an already claimed object is a false positive even with an unclaimed twin within the threshold."""
    twins = torch.tensor([[vector(0.0, 0.0, 0), vector(0.5, 0.0, 0)]])
    predictions = torch.tensor([[vector(0.0, 0.0, 0, 0.9), vector(0.1, 0.0, 0, 0.8)]])
    result = average_precision(predictions, twins, LAYOUT)
    assert result["ap_inf"] == pytest.approx(0.5)


def official_average_precision(pred: np.ndarray, attributes: np.ndarray, threshold: float) -> float:
    """A plain transcription of the official loop (one detection at a time) for LAYOUT, as the test oracle."""
    flat = pred.reshape(-1, pred.shape[-1])
    order = np.argsort(-flat[:, -1], kind="stable")
    tp, fp, claimed = np.zeros(len(order)), np.zeros(len(order)), set()
    for rank, index in enumerate(order):
        image = index // pred.shape[1]
        best_distance, best_id = 10000.0, None
        for object_id, target in enumerate(attributes[image]):
            if target[-1] and np.argmax(target[2:4]) == np.argmax(flat[index, 2:4]):
                distance = np.linalg.norm((target[:2] - flat[index, :2]) * 6.0)
                if distance < best_distance:
                    best_distance, best_id = distance, object_id
        if (best_distance < threshold or threshold == -1) and best_id is not None and (image, best_id) not in claimed:
            tp[rank] = 1
            claimed.add((image, best_id))
        else:
            fp[rank] = 1
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall, precision = [0.0] + list(tp / attributes[:, :, -1].sum()) + [1.0], [0.0] + list(tp / (tp + fp)) + [0.0]
    for i in range(len(precision) - 1, 0, -1):
        precision[i - 1] = max(precision[i - 1], precision[i])
    return sum(precision[i + 1] * (recall[i + 1] - recall[i]) for i in range(len(recall) - 1)
               if recall[i + 1] != recall[i])


def test_ap_equals_a_transcription_of_the_official_loop_on_random_sets():
    rng = np.random.default_rng(0)
    for trial in range(5):
        num_images, slots, rows = 30, 4, 3
        targets = np.zeros((num_images, rows, 5))
        predictions = np.zeros((num_images, slots, 5))
        for image in range(num_images):
            count = rng.integers(0, rows + 1)
            for row in range(count):
                targets[image, row] = vector(*rng.integers(0, 5, 2) / 4, int(rng.integers(2)))
            for slot in range(slots):
                source = targets[image, rng.integers(rows)].copy()  # a noisy copy of some row, maybe padding
                source[:2] += rng.normal(0, 0.05, 2)
                if rng.random() < 0.2:
                    source[2:4] = source[2:4][::-1]
                source[4] = rng.random()
                predictions[image, slot] = source
        result = average_precision(torch.from_numpy(predictions), torch.from_numpy(targets), LAYOUT)
        for threshold in THRESHOLDS:
            key = "ap_inf" if math.isinf(threshold) else f"ap_{threshold:g}"
            expected = official_average_precision(predictions, targets, -1 if math.isinf(threshold) else threshold)
            assert result[key] == pytest.approx(expected, abs=1e-12), (trial, key)


def test_voc_average_precision_known_values():
    assert voc_average_precision(np.array([1.0, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert voc_average_precision(np.array([0.0]), np.array([0.0])) == 0.0


def test_ap_refuses_non_finite_predictions_and_sets_without_objects():
    bad = predictions_of([[vector(0.0, 0.0, 0, math.nan)], [vector(0.5, 0.5, 0, 0.7)]])
    with pytest.raises(ValueError, match=r"predictions contain 1 NaN or infinite values \(the first in image 0, row 0, "
                                         r"property 4\)"):
        average_precision(bad, TARGETS, LAYOUT)
    with pytest.raises(ValueError, match="the 2 target images hold 0 real objects"):
        average_precision(torch.rand(2, 3, 5), torch.zeros(2, 2, 5), LAYOUT)
    with pytest.raises(ValueError, match="must have the same number of images and 5 properties"):
        average_precision(torch.rand(3, 3, 5), TARGETS, LAYOUT)


# --- the model ------------------------------------------------------------------------------------------


def tiny_model(**kwargs) -> SlotSetPredictor:
    torch.manual_seed(0)
    return SlotSetPredictor(2, (2, 2), num_slots=4, slot_dim=16, mlp_hidden_dim=32, encoder_channels=8,
                            encoder_layers=2, encoder_kernel=3, head_hidden_dim=16, **kwargs)


@pytest.mark.parametrize("strides, extras, glimpse", [(None, True, 0), ((1, 2), True, 0), ((1, 2), False, 0),
                                                      ((1, 2), True, 7), (None, False, 5)])
def test_model_outputs_are_permutation_equivariant_in_the_slots(strides, extras, glimpse):
    model = tiny_model(encoder_strides=strides, input_skip=extras, slot_geometry=extras,
                       attention_coordinates=extras, glimpse_size=glimpse).eval()
    images = torch.rand(2, 3, 12, 12) * 2 - 1
    initial = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([2, 0, 3, 1])
    out = model(images, initial_slots=initial)
    permuted = model(images, initial_slots=initial[:, perm])
    torch.testing.assert_close(permuted.predictions, out.predictions[:, perm], atol=1e-5, rtol=1e-5)
    assert out.predictions.shape == (2, 4, 7)
    torch.testing.assert_close(out.predictions[..., 2:4].sum(-1), torch.ones(2, 4))  # one probability block each
    torch.testing.assert_close(out.predictions[..., 4:6].sum(-1), torch.ones(2, 4))
    assert ((out.predictions[..., 6] > 0) & (out.predictions[..., 6] < 1)).all()
    assert torch.equal(out.predictions[..., :2], out.logits[..., :2])
    assert out.attention.shape == (2, 4, 144 if strides is None else 36)


def test_glimpse_reads_the_image_pixels_around_the_attention_centroid():
    """Attention on one feature cell of a stride-2 grid -> a window of exact image pixels centred on the pixel
    that cell is centred on (2 * cell), zeros outside the image, and the upsampled attention as fourth channel."""
    images = torch.arange(2 * 3 * 12 * 12, dtype=torch.float32).reshape(2, 3, 12, 12)
    attention = torch.zeros(2, 1, 36)
    attention[0, 0, 2 * 6 + 4] = 1.0  # cell (row 2, column 4) -> pixel (row 4, column 8)
    attention[1, 0, 0] = 1.0  # cell (0, 0) -> pixel (0, 0): half the window is outside the image
    centres = attention_geometry(attention, 6, 6)[..., 1:3]
    windows = glimpse_windows(images, attention, centres, (6, 6), 5)
    assert windows.shape == (2, 4, 5, 5)
    torch.testing.assert_close(windows[0, :3], images[0, :, 2:7, 6:11])
    torch.testing.assert_close(windows[1, :3, 2:, 2:], images[1, :, 0:3, 0:3])
    assert windows[1, :3, :2].abs().sum() == 0 and windows[1, :3, :, :2].abs().sum() == 0
    attention_map = windows[0, 3]
    assert attention_map.argmax() // 5 in (1, 2) and attention_map[0, 0] == 0  # the attended cell, upsampled


def test_window_centres_move_to_the_nearest_pixel_and_pass_the_gradient_straight_through():
    centres = torch.tensor([[[0.71, 0.0], [0.3, 1.0]]], requires_grad=True)
    rounded = window_centres(centres, (12, 12), (6, 6))  # stride 2: [0, 1] spans pixels 0..10
    torch.testing.assert_close(rounded, torch.tensor([[[0.7, 0.0], [0.3, 1.0]]]))
    rounded.sum().backward()
    torch.testing.assert_close(centres.grad, torch.ones(1, 2, 2))
    torch.testing.assert_close(window_centres(torch.tensor([[[0.26, 0.5]]]), (12, 12), (12, 12)),
                               torch.tensor([[[0.2727, 0.5455]]]), atol=1e-4, rtol=0)  # 2.86 -> pixel 3 of 0..11


def test_glimpse_gradient_reaches_the_attention_but_not_the_window_position():
    attention = torch.rand(2, 3, 36).softmax(dim=1).requires_grad_()
    centres = attention_geometry(attention, 6, 6)[..., 1:3]
    windows = glimpse_windows(torch.rand(2, 3, 12, 12), attention, centres, (6, 6), 5)
    (attention_grad,) = torch.autograd.grad(windows[:, 3].sum(), attention, retain_graph=True)
    assert attention_grad.abs().sum() > 0
    (rgb_grad,) = torch.autograd.grad(windows[:, :3].sum(), attention, allow_unused=True, materialize_grads=True)
    assert rgb_grad.abs().sum() == 0  # the window's position is not learned through the pixels


def test_slot_and_iteration_counts_change_at_call_time():
    model = tiny_model()
    images = torch.rand(3, 3, 10, 10) * 2 - 1
    for slots in (1, 4, 9):
        assert model(images, num_slots=slots, num_iterations=2).predictions.shape == (3, slots, 7)


# --- the task end to end --------------------------------------------------------------------------------

TINY = ("data.resolution=16", "data.num_train=64", "data.num_eval=16", "data.pairs_per_shard=4",
        "data.shuffle_buffer=16", "model.slot_dim=16", "model.mlp_hidden_dim=32", "model.encoder_channels=8",
        "model.encoder_layers=2", "model.encoder_kernel=3", "model.decoder_channels=8", "model.decoder_kernel=3",
        "set_prediction.head_hidden_dim=16", "set_prediction.glimpse_size=7", "train.batch_size=4",
        "train.max_steps=4", "train.warmup_steps=2", "train.batches_per_epoch=4", "train.log_every=1", "train.eval_every=2", "train.eval_images=8",
        "train.checkpoint_every=4", "eval.sweep_slots=[2, 4, 6]")


def preset_args(tmp_path: Path, name: str, *extra: str) -> list[str]:
    return ["--preset", "set_prediction", f"data.root={tmp_path / 'data'}", f"output_dir={tmp_path / 'runs'}",
            f"name={name}", *TINY, *extra]


def test_preset_runs_end_to_end_and_reports_ap_with_a_slot_sweep(tmp_path, capsys):
    assert train_slots.main(preset_args(tmp_path, "sp")) == 0
    run_dir = tmp_path / "runs" / "sp"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in (*AP_KEYS, "num_slots", "num_iterations", "steps", "train_seconds", "total_seconds", "dataset", "seed",
                "eval_images", "eval_objects", "property_layout", "distance_unit", "slot_sweep"):
        assert key in metrics, key
    assert metrics["steps"] == 4 and metrics["eval_images"] == 32 and metrics["eval_objects"] >= 64
    assert [row["num_slots"] for row in metrics["slot_sweep"]] == [2, 4, 6, 7]  # the sweep plus the training count
    assert all(0.0 <= row[key] <= 1.0 for row in metrics["slot_sweep"] for key in AP_KEYS)
    evaluations = [json.loads(line) for line in (run_dir / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evaluations] == [2, 4] and all("ap_inf" in e for e in evaluations)
    csv_lines = (run_dir / "set_prediction_sweep.csv").read_text().splitlines()
    assert csv_lines[0] == "num_slots,num_iterations,ap_inf,ap_1,ap_0.5,ap_0.25,ap_0.125"
    assert (run_dir / "set_prediction_sweep.png").stat().st_size > 0
    assert "| slots | iterations | ap_inf |" in capsys.readouterr().out

    from eval import set_prediction  # the saved run re-evaluates with other slot and iteration counts

    out = tmp_path / "sweep"
    assert set_prediction.main(["--run", str(run_dir), "--num-slots", "3", "7", "--iterations", "1", "--out",
                                str(out)]) == 0
    rows = (out / "set_prediction_sweep.csv").read_text().splitlines()[1:]
    assert [tuple(row.split(",")[:2]) for row in rows] == [("3", "1"), ("7", "1")]


@pytest.mark.parametrize("override, message", [
    ("model.num_slots=3", "set prediction needs model.num_slots >= 4"),
    ("set_prediction.discrete_factors=[size]", "factor 'size' is not produced by the data"),
    ("set_prediction.object_weight=-1", "set_prediction.object_weight must be >= 0, got -1"),
    ("set_prediction.encoder_strides=[2]", "set_prediction.encoder_strides is for the predictor's own encoder"),
    ("set_prediction.head_masks=alpha", "set_prediction.head_masks must be 'attention' or 'decoder', got 'alpha'"),
    ("set_prediction.glimpse_size=3", "set_prediction.glimpse_size must be 0 (off) or >= 4 pixels, got 3"),
])
def test_bad_set_prediction_config_fails_with_one_line(tmp_path, capsys, override, message):
    assert train_slots.main(preset_args(tmp_path, "bad", override)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_own_encoder_strides_must_name_every_layer():
    """Refused when the config is built, before any task or model exists."""
    from training.config import ConfigError, build_config, parse_override

    with pytest.raises(ConfigError, match=re.escape("set_prediction.encoder_strides needs one stride per encoder "
                                                    "layer (4)")):
        build_config([{"task": "set_prediction"}, parse_override("set_prediction.encoder_strides=[2]")])


def test_matching_benchmark_prints_the_overhead_table(capsys):
    from bench import set_prediction as bench

    bench.main(["--steps", "1", "--rounds", "1", "data.resolution=16", "model.encoder_channels=8",
                "model.encoder_layers=2", "model.decoder_channels=8", "set_prediction.glimpse_size=7",
                "train.batch_size=2"])
    out = capsys.readouterr().out
    assert "| training step, Hungarian-matched loss |" in out
    overhead = float(out.split("matching overhead:")[1].split("%")[0])
    assert 0.0 < overhead < 100.0


def test_the_official_configuration_runs_through_the_task():
    """loss=huber with every addition off is the official model and loss; one optimiser step must work."""
    from bench.set_prediction import synthetic_factors
    from training.config import build_config, load_yaml, parse_override, preset_path
    from training.tasks.set_prediction import SetPredictionTask

    overrides = ["set_prediction.loss=huber", "set_prediction.input_skip=false", "set_prediction.slot_geometry=false",
                 "set_prediction.attention_coordinates=false", "set_prediction.glimpse_size=0",
                 "set_prediction.segmentation_weight=0", "set_prediction.coordinate_weight=1",
                 "set_prediction.head_hidden_dim=64", "model.encoder_channels=8", "model.encoder_layers=2",
                 "set_prediction.encoder_strides=[1, 2]", "train.batch_size=2"]
    config = build_config([load_yaml(preset_path("set_prediction_attention"))] + [parse_override(o) for o in overrides])
    task = SetPredictionTask(config)
    model = task.build_model()
    assert model.autoencoder is None and model.input_skip is None
    assert model.centroid_proj is None and model.glimpse is None
    assert model.head[0].in_features == 64
    batch = PairBatch.from_frames(torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1,
                                  synthetic_factors(task, 2, seed=0))
    loss, logs = task.training_loss(model, batch, 0)
    loss.backward()
    assert set(logs) == {"loss", "huber"} and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.head.parameters())


# --- the property ceiling (eval/property_ceiling.py) ---------------------------------------------------------

def test_crop_around_centres_the_object_and_pads_with_zeros():
    from studies.property_ceiling import crop_around
    channels = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8) + 1.0
    mask = np.zeros((8, 8), dtype=bool)
    mask[0:3, 5:8] = True  # a 3x3 object in the top-right corner: bounding-box centre (1, 6)
    window = crop_around(channels, mask, 6)
    assert window.shape == (2, 6, 6)
    # the window's centre pixel (3, 3) is the object's centre (1, 6); rows above the image are zero
    np.testing.assert_array_equal(window[:, 3, 3], channels[:, 1, 6])
    np.testing.assert_array_equal(window[:, :2], 0.0)
    # rows -2..3 and columns 3..8 of the image: inside it, the pixels themselves; outside, zeros
    np.testing.assert_array_equal(window[:, 2:, :5], channels[:, 0:4, 3:8])
    np.testing.assert_array_equal(window[:, :, 5], 0.0)


def test_object_examples_have_one_row_per_object_with_its_factors():
    from data.sprites import MultiDSprites
    from studies.property_ceiling import object_examples
    generator = MultiDSprites()
    examples = object_examples(generator, seed=5, num_pairs=3, properties=("shape", "scale"), crop=20)
    expected = [o for i in range(3) for key in ("objects0", "objects1")
                for o in generator.pair(5, i).factors[key]]
    assert examples.inputs.shape == (len(expected), 4, 20, 20)
    assert examples.labels["shape"].tolist() == [o["shape"] for o in expected]
    assert examples.labels["scale"].tolist() == [o["scale"] for o in expected]
    # the generator keeps at least 30% of every object visible; the mask channel is binary and non-empty
    assert bool(((examples.visible_fraction >= 0.3) & (examples.visible_fraction <= 1.0)).all())
    mask_channel = examples.inputs[:, 3]
    assert set(mask_channel.unique().tolist()) <= {0.0, 1.0}
    assert bool((mask_channel.sum(dim=(1, 2)) > 0).all())


def test_compactness_weight_adds_its_part_to_the_training_loss():
    from bench.set_prediction import synthetic_factors
    from training.config import build_config, parse_override
    from training.tasks.set_prediction import SetPredictionTask

    def step(weight: float) -> dict:
        overrides = [f"set_prediction.compactness_weight={weight}", "model.encoder_channels=8",
                     "model.encoder_layers=2", "set_prediction.encoder_strides=[1, 2]", "train.batch_size=2"]
        task = SetPredictionTask(build_config([{"task": "set_prediction"}] + [parse_override(o) for o in overrides]))
        torch.manual_seed(0)
        model = task.build_model()
        batch = PairBatch.from_frames(torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1,
                                      synthetic_factors(task, 2, seed=0))
        return task.training_loss(model, batch, 0)[1]

    off, on = step(0), step(10)
    assert "compactness" not in off and float(on["compactness"]) > 0
    torch.testing.assert_close(on["loss"], off["loss"] + 10 * on["compactness"], rtol=1e-5, atol=1e-5)


# --- slots from the object-discovery autoencoder (set_prediction.reconstruction_weight > 0) ------------------

def _autoencoder_predictor(head_masks: str = "attention") -> SlotSetPredictor:
    from tests.test_slots import tiny_model as tiny_autoencoder

    autoencoder = tiny_autoencoder(resolution=(12, 12), mask_prior="attention", decoder_layers=1)
    return SlotSetPredictor(2, (2, 2), num_slots=4, head_hidden_dim=16, glimpse_size=5, autoencoder=autoencoder,
                            head_masks=head_masks)


def test_predictions_from_autoencoder_slots_are_equivariant_and_come_with_a_reconstruction():
    model = _autoencoder_predictor().eval()
    assert not hasattr(model, "encoder") and not hasattr(model, "slot_attention")  # no second slot module
    images = torch.rand(2, 3, 12, 12) * 2 - 1
    initial = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    perm = torch.tensor([2, 0, 3, 1])
    out, permuted = model(images, initial_slots=initial), model(images, initial_slots=initial[:, perm])
    torch.testing.assert_close(permuted.predictions, out.predictions[:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(permuted.reconstruction, out.reconstruction, atol=1e-5, rtol=1e-5)
    assert out.reconstruction.shape == (2, 3, 12, 12) and out.attention.shape == (2, 4, 144)
    torch.testing.assert_close(out.slots, model.autoencoder(images, initial_slots=initial).slots)
    assert model(images, num_slots=6).predictions.shape == (2, 6, 7)


def test_decoder_head_masks_give_the_head_the_alpha_masks_and_keep_equivariance():
    from slots.set_prediction import attention_geometry

    model = _autoencoder_predictor("decoder").eval()
    images = torch.rand(2, 3, 12, 12) * 2 - 1
    initial = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    out = model(images, initial_slots=initial)
    masks = model.autoencoder(images, initial_slots=initial).masks
    torch.testing.assert_close(out.attention, masks.flatten(2))  # the head read the decoder masks ...
    assert not torch.allclose(out.attention, model.autoencoder(images, initial_slots=initial).attention)
    torch.testing.assert_close(out.geometry, attention_geometry(masks.flatten(2), 12, 12))  # ... for its geometry
    perm = torch.tensor([3, 1, 0, 2])
    permuted = model(images, initial_slots=initial[:, perm])
    torch.testing.assert_close(permuted.predictions, out.predictions[:, perm], atol=1e-5, rtol=1e-5)
    attention_model = _autoencoder_predictor("attention").eval()
    attention_model.load_state_dict(model.state_dict())  # the same weights: only the map the head reads differs
    assert not torch.allclose(attention_model(images, initial_slots=initial).predictions, out.predictions)


def test_decoder_head_masks_need_an_autoencoder():
    with pytest.raises(ValueError, match="head_masks='decoder' needs an autoencoder"):
        SlotSetPredictor(2, (2, 2), num_slots=4, head_masks="decoder")
    with pytest.raises(ValueError, match="head_masks must be 'attention' or 'decoder', got 'alpha'"):
        SlotSetPredictor(2, (2, 2), num_slots=4, head_masks="alpha")


# the preset's model options that only the autoencoder honours, back at their defaults
NO_AUTOENCODER_OPTIONS = ("model.mask_prior=none", "model.slot_frames=none", "model.invariant_attention=none",
                          "model.colour_values=false")


def _reconstruction_task(*overrides: str):
    from training.config import build_config, load_yaml, parse_override, preset_path
    from training.tasks.set_prediction import SetPredictionTask

    base = ["set_prediction.reconstruction_weight=2", "set_prediction.input_skip=false", "model.encoder_channels=8",
            "model.encoder_layers=2", "model.mask_prior=attention", "model.decoder_layers=1", "train.batch_size=2"]
    return SetPredictionTask(build_config([load_yaml(preset_path("set_prediction"))]
                                          + [parse_override(o) for o in (*base, *overrides)]))


def test_reconstruction_weight_adds_the_pixel_loss_of_the_autoencoder():
    from bench.set_prediction import synthetic_factors

    task = _reconstruction_task("set_prediction.encoder_strides=null")
    model = task.build_model()
    assert model.autoencoder.mask_prior == "attention" and model.autoencoder.decoder.convs[0].out_channels == 4
    batch = PairBatch.from_frames(torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1,
                                  synthetic_factors(task, 2, seed=0))
    torch.manual_seed(1)
    loss, logs = task.training_loss(model, batch, 0)
    images = batch.frames
    torch.manual_seed(1)
    again = model(images)  # the same slot draws: the logged part is the MSE of this reconstruction
    torch.testing.assert_close(logs["reconstruction"], torch.nn.functional.mse_loss(again.reconstruction, images))
    without = logs["loss"] - 2 * logs["reconstruction"]  # weight 2: the rest is the property loss
    assert float(logs["reconstruction"]) > 0 and float(without) > 0
    loss.backward()
    assert model.autoencoder.decoder.convs[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides, message", [
    (("set_prediction.encoder_strides=[1, 2]",), "set_prediction.encoder_strides is for the predictor's own encoder"),
    (("set_prediction.encoder_strides=null", "set_prediction.input_skip=true"), "set set_prediction.input_skip=false"),
    (("set_prediction.encoder_strides=null", "set_prediction.reconstruction_weight=-1", *NO_AUTOENCODER_OPTIONS),
     "set_prediction.reconstruction_weight must be >= 0, got -1"),
    (("set_prediction.encoder_strides=null", "set_prediction.head_masks=alpha"),
     "set_prediction.head_masks must be 'attention' or 'decoder', got 'alpha'"),
    (("set_prediction.encoder_strides=null", "set_prediction.reconstruction_weight=0", *NO_AUTOENCODER_OPTIONS,
      "set_prediction.head_masks=decoder"),
     "set_prediction.head_masks=decoder needs set_prediction.reconstruction_weight > 0"),
])
def test_reconstruction_options_that_contradict_each_other_are_refused(overrides, message):
    from training.config import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        _reconstruction_task(*overrides)


def test_discovery_model_options_need_the_reconstruction_loss_in_set_prediction():
    from training.config import ConfigError, build_config, parse_override

    hint = "(or set_prediction with set_prediction.reconstruction_weight > 0)"
    with pytest.raises(ConfigError, match=re.escape(hint)):
        build_config([{"task": "set_prediction"}, parse_override("model.mask_prior=attention")])
    # input_skip=false too: with the autoencoder it is refused at config build time (the task's own check)
    build_config([{"task": "set_prediction"}, parse_override("model.mask_prior=attention"),
                  parse_override("set_prediction.reconstruction_weight=1"),
                  parse_override("set_prediction.input_skip=false")])
    with pytest.raises(ConfigError,
                       match="model.merge_duplicates=0.5 is only supported by task discovery / weak_slots, not"):
        build_config([{"task": "set_prediction"}, parse_override("model.merge_duplicates=0.5"),
                      parse_override("set_prediction.reconstruction_weight=1")])
