"""The outline head's target: each slot's mask in its own frame (position and size factored out)."""
from __future__ import annotations

import pytest
import torch

from slots.frames import SlotFrames, frames_from_attention
from weak_supervision.outline import OutlineHead, canonical_masks, outline_loss


def square(height: int, width: int, top: int, left: int, side: int) -> torch.Tensor:
    mask = torch.zeros(height, width)
    mask[top:top + side, left:left + side] = 1.0
    return mask


def frame_of(mask: torch.Tensor) -> SlotFrames:
    """The frame Slot Attention would give a slot attending exactly to `mask`."""
    return frames_from_attention(mask.reshape(1, 1, -1), tuple(mask.shape))


def test_the_centre_of_the_outline_is_inside_and_the_rim_outside():
    mask = square(32, 32, 10, 12, 8)
    outline = canonical_masks(mask.reshape(1, 1, 32, 32), frame_of(mask), size=9, extent=2.5)[0, 0]
    assert outline[4, 4] == pytest.approx(1.0)
    assert outline[0].abs().max() == 0 and outline[:, -1].abs().max() == 0


def test_a_moved_object_has_the_same_outline():
    """Moving the object (and so its frame) by whole pixels leaves its outline unchanged: what the head must
    draw is shape, not position."""
    here, there = square(32, 32, 4, 5, 7), square(32, 32, 19, 20, 7)
    masks = torch.stack([here, there]).reshape(2, 1, 32, 32)
    frames = frame_of(here), frame_of(there)
    both = SlotFrames(torch.cat([f.positions for f in frames]), torch.cat([f.scales for f in frames]))
    outlines = canonical_masks(masks, both, size=8)
    torch.testing.assert_close(outlines[0], outlines[1], atol=1e-4, rtol=0)
    assert outlines[0].sum() > 1.0


def test_the_outline_of_a_larger_object_fills_the_same_cells():
    small, large = square(32, 32, 8, 8, 6), square(32, 32, 4, 4, 12)
    outline = [canonical_masks(m.reshape(1, 1, 32, 32), frame_of(m), size=8)[0, 0] for m in (small, large)]
    assert ((outline[0] > 0.5) == (outline[1] > 0.5)).float().mean() > 0.9


def test_head_shapes_and_bad_input():
    head = OutlineHead(latent_dim=6, size=5)
    logits = head(torch.zeros(2, 3, 6))
    assert logits.shape == (2, 3, 5, 5)
    assert outline_loss(torch.zeros(2, 3, 5, 5), torch.full((2, 3, 5, 5), 0.5)).item() == pytest.approx(0.693147)
    assert outline_loss(torch.full((1, 1, 1, 1), 2.0), torch.ones(1, 1, 1, 1)).item() == pytest.approx(
        0.126928, abs=1e-6)  # -log(sigmoid(2))
    with pytest.raises(ValueError, match="differ in shape"):
        outline_loss(logits, torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="outline size must be >= 2"):
        OutlineHead(latent_dim=6, size=1)
