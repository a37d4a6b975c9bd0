"""Vectorised inside-tests for the sprite shapes, on coordinates in the object's frame.

Each function takes local coordinates ``u`` (along the object's rotated x axis) and ``v``
(rotated y axis, pointing *down* as image rows do), already divided by the object radius,
and returns a boolean array: True where the pixel centre lies inside the shape. Keeping
the shapes as implicit functions makes edges hard and masks exact, with no per-pixel loops.
"""

from __future__ import annotations

import numpy as np

#: Half side of the square relative to the object radius; chosen so that squares, ellipses
#: and hearts of the same scale have comparable areas.
SQUARE_HALF_SIDE = 0.8
#: Ellipse semi-axes relative to the radius: a 2:1 aspect ratio as in Multi-dSprites.
ELLIPSE_AXES = (1.0, 0.5)
#: The heart curve spans x in [-1.14, 1.14] and y in [-1, 1.24]: scale and shift it so it
#: fits the unit disc, centred.
HEART_SCALE = 1.14
HEART_Y_SHIFT = 0.12


def inside_square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= SQUARE_HALF_SIDE


def inside_ellipse(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    a, b = ELLIPSE_AXES
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def inside_heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The classic implicit heart (x² + y² − 1)³ − x²y³ ≤ 0, point of the heart downwards."""
    x = u * HEART_SCALE
    y = -v * HEART_SCALE + HEART_Y_SHIFT  # y points up in the curve's equation
    return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0


#: Index on the shape factor grid -> inside-test. The order is part of the data format.
SHAPES = (
    ("square", inside_square),
    ("ellipse", inside_ellipse),
    ("heart", inside_heart),
)
