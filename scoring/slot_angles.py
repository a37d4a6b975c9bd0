"""Does a slot's chosen angle (the orientation search's, `slots.orientation_search`) follow its object's true
orientation? Up to the shape's rotational symmetry, and up to a per-shape offset: which pose of a heart the
decoder learns to draw upright is the model's own choice, so what must hold is that (angle - true orientation)
is the same for every heart, modulo the heart's symmetry period.

multi_dsprites turns a shape by its orientation factor one way round (`data.shapes.silhouettes` reads the image
at A(-theta), A the rotation matrix on (x, y)); a frame angle a renders the canonical shape read at A(a)
(`slots.frames.relative_grid`), the other way round, so the invariant is angle + true orientation.
"""
from __future__ import annotations

import math

import numpy as np

#: rotational symmetry period of each multi_dsprites shape (data/shapes.py: square, ellipse, heart)
SHAPE_PERIODS = {"square": math.pi / 2, "ellipse": math.pi, "heart": 2 * math.pi}
SHAPE_NAMES = ("square", "ellipse", "heart")


def circular_distance(a: np.ndarray, b: np.ndarray | float, period: float) -> np.ndarray:
    gap = np.abs(a - b) % period
    return np.minimum(gap, period - gap)


def best_offset(differences: np.ndarray, period: float, tolerance: float) -> float:
    """The offset on a circle of circumference `period` that most `differences` lie within `tolerance` of (a
    grid of offsets a quarter tolerance apart): a circular mode, which a few objects off by a half or quarter
    turn do not pull away from the rest, as they would a circular mean."""
    offsets = np.arange(0.0, period, tolerance / 4)
    near = circular_distance(differences[None, :], offsets[:, None], period) <= tolerance
    return float(offsets[near.sum(axis=1).argmax()])


def angle_agreement(angles: np.ndarray, orientations: np.ndarray, shapes: np.ndarray, tolerance: float
                    ) -> dict[str, float]:
    """Fraction of objects whose angle + true orientation (radians) lies within `tolerance` of its shape's most
    common value (`best_offset`), modulo the shape's period: overall, per shape, and the fraction uniform angles
    would reach (`object_angle_chance`; the mode of uniform values is a little above it by chance). `shapes`
    are indices into SHAPE_NAMES."""
    agree = np.zeros(len(angles), dtype=bool)
    chance = np.zeros(len(angles))
    scores: dict[str, float] = {}
    for index, name in enumerate(SHAPE_NAMES):
        chosen = shapes == index
        if not chosen.any():
            continue
        period = SHAPE_PERIODS[name]
        differences = (angles[chosen] + orientations[chosen]) % period
        offset = best_offset(differences, period, tolerance)
        agree[chosen] = circular_distance(differences, offset, period) <= tolerance
        chance[chosen] = min(1.0, 2 * tolerance / period)
        scores[f"object_angle_agreement_{name}"] = float(agree[chosen].mean())
    return {"object_angle_agreement": float(agree.mean()), "object_angle_chance": float(chance.mean()), **scores}


def points_angle_agreement(representations: np.ndarray, factors: np.ndarray, factor_names: tuple[str, ...],
                           num_orientations: int, num_angles: int) -> dict[str, float]:
    """`angle_agreement` of matched (slot, object) points whose representations end in the frame's angle as
    (cos, sin) (`scoring.per_object.slot_representations`), within half a search step (pi / num_angles)."""
    angles = np.arctan2(representations[:, -1], representations[:, -2])
    orientations = factors[:, factor_names.index("orientation")] * (2 * math.pi / num_orientations)
    return angle_agreement(angles, orientations, factors[:, factor_names.index("shape")], math.pi / num_angles)
