"""Vectorised inside-tests for the sprite shapes, on coordinates in the object's frame.

Each function takes local coordinates ``u`` (along the object's rotated x axis) and ``v``
(rotated y axis, pointing *down* as image rows do), already divided by the object radius,
and returns a boolean array: True where the pixel centre lies inside the shape. Keeping
the shapes as implicit functions makes edges hard and masks exact, with no per-pixel loops.
``silhouettes`` is the one place that places, rotates and scales them, shared by every
sprite generator so that they all draw the same shapes.
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
#: Every shape lies within this distance of its centre (in object radii): the heart's
#: lobes reach 1.1714, the square's corners 0.8·√2 = 1.1314. Generators use it to keep
#: sprites inside the frame; a test checks it against all three shapes.
BOUNDING_RADIUS = 1.18


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


def silhouettes(
    shape_ids: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    angle: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
) -> np.ndarray:
    """Boolean [N, h, w]: which pixel centres lie inside each object's placed shape.

    ``shape_ids`` is int [N] (indices into ``SHAPES``); ``cx``, ``cy``, ``radius`` (pixels)
    and ``angle`` (radians) are [N, 1, 1]; ``rows``/``cols`` are pixel-centre coordinates
    that broadcast against them to [N, h, w] (the full frame, or a window per object: the
    arithmetic per pixel is the same either way, so both give identical pixels).
    """
    dx, dy = cols - cx, rows - cy
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / radius
    v = (-sin * dx + cos * dy) / radius
    masks = np.zeros(u.shape, dtype=bool)
    for shape_id, (_, inside) in enumerate(SHAPES):
        chosen = shape_ids == shape_id
        if chosen.any():
            masks[chosen] = inside(u[chosen], v[chosen])
    return masks
