"""Merging duplicate slots (slots/duplicates.py): slots that split one object's pixels become one slot."""
import pytest
import torch

from slots.duplicates import MergeDuplicates, duplicate_groups, merge_duplicate_masks
from tests.test_slots import tiny_model


def _scene() -> torch.Tensor:
    """Masks [1, 4, 4, 4]: slot 0 the background, slots 1 and 2 share object A (0.7 / 0.3), slot 3 object B."""
    masks = torch.zeros(1, 4, 4, 4)
    masks[0, 0] = 1.0
    masks[0, 0, :2, :2] = 0.0  # object A: top-left 2x2
    masks[0, 1, :2, :2], masks[0, 2, :2, :2] = 0.7, 0.3
    masks[0, 0, 3, 3], masks[0, 3, 3, 3] = 0.0, 1.0  # object B: one pixel
    return masks


def test_slots_sharing_an_object_are_merged_into_the_larger_one():
    merged = merge_duplicate_masks(_scene(), 0.5)
    expected = _scene()
    expected[0, 1, :2, :2], expected[0, 2] = 1.0, 0.0
    torch.testing.assert_close(merged, expected)
    torch.testing.assert_close(merged.sum(dim=1), torch.ones(1, 4, 4))


def test_disjoint_masks_are_never_merged_and_the_threshold_is_a_cosine():
    masks = _scene()
    torch.testing.assert_close(merge_duplicate_masks(masks[:, [0, 1, 3]], 0.01), masks[:, [0, 1, 3]])
    # slots 1 and 2 are proportional on A: cosine 1, merged at any threshold below 1
    assert duplicate_groups(masks, 0.99)[0, 1, 2] == 1
    # a slot overlapping another on half of its pixels: cosine 0.5, merged below 0.5, kept above
    half = torch.zeros(1, 2, 1, 4)
    half[0, 0, 0, :2], half[0, 1, 0, 1:3] = 1.0, 1.0
    assert duplicate_groups(half, 0.49)[0, 0, 1] == 1 and duplicate_groups(half, 0.51)[0, 0, 1] == 0


def test_groups_are_transitive():
    """a ~ b and b ~ c puts a, b and c in one slot even when a and c alone are below the threshold."""
    masks = torch.zeros(1, 3, 1, 3)
    masks[0, 0, 0, :2], masks[0, 1, 0, :], masks[0, 2, 0, 1:] = 1.0, 1.0, 1.0
    masks[0, 1] *= 1.5  # b is the largest: it keeps the group
    groups = duplicate_groups(masks, 0.6)  # cos(a, b) = cos(b, c) = 0.82, cos(a, c) = 0.5
    torch.testing.assert_close(groups[0], torch.tensor([[0.0, 0, 0], [1, 1, 1], [0, 0, 0]]))


def test_merging_is_equivariant_to_slot_order():
    masks = (torch.randn(3, 5, 6, 6, generator=torch.Generator().manual_seed(0)) * 6).softmax(dim=1)
    masks[:, 3] = masks[:, 1] * 0.5  # a duplicate of slot 1
    masks = masks / masks.sum(dim=1, keepdim=True)
    merged = merge_duplicate_masks(masks, 0.9)
    assert torch.all(merged[:, 3] == 0) and torch.all(merged[:, [0, 2, 4]] == masks[:, [0, 2, 4]])
    permutation = torch.tensor([4, 2, 0, 3, 1])
    torch.testing.assert_close(merge_duplicate_masks(masks[:, permutation], 0.9), merged[:, permutation])


def test_the_model_merges_only_outside_training_and_keeps_its_slot_count():
    model = tiny_model(mask_prior="attention", merge_duplicates=0.5)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    generator = lambda: torch.Generator().manual_seed(0)
    model.train()
    raw = model(images, num_slots=6, generator=generator())
    model.eval()
    merged = model(images, num_slots=6, generator=generator())
    MergeDuplicates.attached(model).remove()
    unmerged = model(images, num_slots=6, generator=generator())
    assert merged.masks.shape == (2, 6, 16, 16)
    torch.testing.assert_close(merged.masks, merge_duplicate_masks(unmerged.masks, 0.5))
    torch.testing.assert_close(merged.reconstruction, (merged.slot_rgb * merged.masks[:, :, None]).sum(dim=1))
    assert raw.masks.requires_grad and not torch.equal(raw.masks, merged.masks)  # an untrained model has duplicates


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5])
def test_a_threshold_outside_the_open_unit_interval_is_refused(threshold):
    with pytest.raises(ValueError, match="merge_duplicates must be a cosine threshold in \\(0, 1\\)"):
        tiny_model(merge_duplicates=threshold)
