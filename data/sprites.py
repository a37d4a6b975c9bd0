"""Multi-dSprites-like scenes: 2..4 sprites on black, every factor on a discrete grid.

Factors per object (grid sizes as in dSprites, plus colour): shape 3 (square, ellipse,
heart), colour 12 (HSV hues), scale 6 (0.5..1), orientation 40 (over 2π; symmetric shapes
make some orientations look alike, as in dSprites), x 32 and y 32 (over [0.15, 0.85] of
the image). Objects are painted in order, later ones on top; a scene is rejected when an
object keeps less than ``min_visible_fraction`` of its own area or fewer than
``min_visible_pixels`` pixels, so every object id is really present in the masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from einops import rearrange

from data.errors import DataError
from data.palette import hue_palette
from data.pairs import DRAWN_K, ChangedFactors, ObjectFactors, SceneGenerator
from data.shapes import silhouettes

FACTOR_SIZES = {"shape": 3, "colour": 12, "scale": 6, "orientation": 40, "x": 32, "y": 32}
SCALES = np.linspace(0.5, 1.0, FACTOR_SIZES["scale"])
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, FACTOR_SIZES["orientation"], endpoint=False)
X_POSITIONS = np.linspace(0.15, 0.85, FACTOR_SIZES["x"])
Y_POSITIONS = np.linspace(0.15, 0.85, FACTOR_SIZES["y"])
COLOURS = hue_palette(FACTOR_SIZES["colour"])
#: Radius of a scale-1 object as a fraction of the image side (12 px across at 32x32); `radius_fraction` changes it
#: (0.22 at 64x64: objects 14-28 px across, the per-object disentanglement scenes of preset weak_slots_64).
RADIUS_FRACTION = 0.18


class MultiDSprites(SceneGenerator):
    """Seeded Multi-dSprites-like frame-pair generator."""

    name = "multi_dsprites"
    version = 1

    def __init__(
        self,
        resolution: int = 32,
        min_objects: int = 2,
        max_objects: int = 4,
        changed_factors: ChangedFactors = 1,
        min_visible_fraction: float = 0.3,
        min_visible_pixels: int = 4,
        radius_fraction: float = RADIUS_FRACTION,
        change_one_object: bool = False,
    ):
        if not 1 <= min_objects <= max_objects <= 254:
            raise DataError(
                f"multi_dsprites: need 1 <= min_objects <= max_objects <= 254, got {min_objects}..{max_objects}"
            )
        if resolution < 8:
            raise DataError(f"multi_dsprites: resolution must be at least 8 pixels, got {resolution}")
        if not 0.0 <= min_visible_fraction <= 1.0:
            raise DataError(f"multi_dsprites: min_visible_fraction must be in [0, 1], got {min_visible_fraction}")
        if not 0.0 < radius_fraction <= 0.5:
            raise DataError(f"multi_dsprites: radius_fraction must be in (0, 0.5], got {radius_fraction}")
        self._resolution = int(resolution)
        self.radius_fraction = float(radius_fraction)
        self.change_one_object = bool(change_one_object)
        self.min_objects = int(min_objects)
        self._max_objects = int(max_objects)
        self.min_visible_fraction = float(min_visible_fraction)
        self.min_visible_pixels = int(min_visible_pixels)
        super().__init__(changed_factors, self.min_objects)
        if self.change_one_object and self.changed_factors not in DRAWN_K and self.changed_factors > len(FACTOR_SIZES):
            raise DataError(f"multi_dsprites: changed_factors={self.changed_factors} exceeds the {len(FACTOR_SIZES)} "
                            "factors of the one object a pair changes (change_one_object)")
        # Pixel-centre coordinates, shared by every render.
        centres = np.arange(self._resolution, dtype=np.float64) + 0.5
        self._rows, self._cols = np.meshgrid(centres, centres, indexing="ij")

    @property
    def factor_sizes(self) -> dict[str, int]:
        return dict(FACTOR_SIZES)

    @property
    def resolution(self) -> int:
        return self._resolution

    @property
    def max_objects(self) -> int:
        return self._max_objects

    def config(self) -> dict[str, Any]:
        return {
            "resolution": self._resolution,
            "min_objects": self.min_objects,
            "max_objects": self._max_objects,
            "changed_factors": self.changed_factors,
            "min_visible_fraction": self.min_visible_fraction,
            "min_visible_pixels": self.min_visible_pixels,
            # recorded only away from their defaults, so the hash of every earlier data set stays the same
            **({"radius_fraction": self.radius_fraction} if self.radius_fraction != RADIUS_FRACTION else {}),
            **({"change_one_object": True} if self.change_one_object else {}),
        }

    def sample_objects(self, rng: np.random.Generator) -> list[ObjectFactors]:
        count = int(rng.integers(self.min_objects, self._max_objects + 1))
        values = rng.integers(0, list(FACTOR_SIZES.values()), size=(count, len(FACTOR_SIZES)))
        return [dict(zip(FACTOR_SIZES, map(int, row))) for row in values]

    def object_masks(self, objects: list[ObjectFactors]) -> np.ndarray:
        """Boolean [N, H, W]: each object's full silhouette, ignoring occlusion."""
        res = self._resolution
        factor = lambda name, table: np.array([table[o[name]] for o in objects])  # noqa: E731
        cx = factor("x", X_POSITIONS)[:, None, None] * res
        cy = factor("y", Y_POSITIONS)[:, None, None] * res
        radius = factor("scale", SCALES)[:, None, None] * self.radius_fraction * res
        angle = factor("orientation", ORIENTATIONS)[:, None, None]
        shape_ids = np.array([o["shape"] for o in objects])
        return silhouettes(shape_ids, cx, cy, radius, angle, self._rows[None], self._cols[None])

    def render(self, objects: list[ObjectFactors]) -> tuple[np.ndarray, np.ndarray] | None:
        silhouettes = self.object_masks(objects)
        ids = np.arange(1, len(objects) + 1, dtype=np.uint8)
        # Later objects have larger ids and are painted on top: the visible id is the max.
        mask = (silhouettes * rearrange(ids, "n -> n 1 1")).max(axis=0).astype(np.uint8)
        visible = np.bincount(mask.ravel(), minlength=len(objects) + 1)[1:]
        own_area = silhouettes.sum(axis=(1, 2))
        if np.any(visible < self.min_visible_pixels) or np.any(visible < self.min_visible_fraction * own_area):
            return None
        lookup = np.zeros((len(objects) + 1, 3), dtype=np.uint8)
        lookup[1:] = COLOURS[[o["colour"] for o in objects]]
        return lookup[mask], mask
