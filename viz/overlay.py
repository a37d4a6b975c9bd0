"""Segmentations as image files: instance ids, a colour overlay on the input, per-slot masks.

Plain uint8 arrays in and out (written with Pillow), so the pictures of `eval.segment` open in any viewer and
a slot keeps its colour across images (slot k is always colour k of the palette).
"""
from __future__ import annotations

import numpy as np

#: tab10 then its light variants: distinct at a glance for up to 20 slots, then repeating
PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
], dtype=np.float32)


def slot_colours(num_slots: int) -> np.ndarray:
    """[K, 3] RGB in 0-255, slot k's colour."""
    return PALETTE[np.arange(num_slots) % len(PALETTE)]


def colour_overlay(image: np.ndarray, masks: np.ndarray, opacity: float = 0.55) -> np.ndarray:
    """The image (uint8 [H, W, 3]) tinted by each slot's colour in proportion to its soft mask ([K, H, W],
    summing to 1 over slots), with the argmax boundaries drawn in white: uint8 [H, W, 3]."""
    colours = slot_colours(masks.shape[0])
    tint = np.einsum("khw,kc->hwc", masks.astype(np.float32), colours)
    blended = (1 - opacity) * image.astype(np.float32) + opacity * tint
    ids = masks.argmax(axis=0)
    edge = np.zeros(ids.shape, dtype=bool)
    edge[:-1] |= ids[:-1] != ids[1:]
    edge[:, :-1] |= ids[:, :-1] != ids[:, 1:]
    blended[edge] = 255.0
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """A soft mask [H, W] in [0, 1] -> uint8 grey levels (255 = the slot owns the pixel)."""
    return np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8)
