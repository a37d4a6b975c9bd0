"""Colour palettes: saturated, bright hues so that no object is confused with the black background."""

from __future__ import annotations

import colorsys

import numpy as np


def hue_palette(num_colours: int) -> np.ndarray:
    """``num_colours`` evenly spaced HSV hues at full saturation and value, as uint8 [N, 3]."""
    rgb = [colorsys.hsv_to_rgb(i / num_colours, 1.0, 1.0) for i in range(num_colours)]
    return np.round(np.asarray(rgb) * 255).astype(np.uint8)


#: Tetrominoes' six colours (as in the DeepMind multi-object dataset): the primaries and
#: secondaries of RGB, i.e. hue_palette(6).
TETROMINO_COLOURS = hue_palette(6)
