"""dSprites-like single-object scenes: the factor grid of the disentanglement benchmarks.

One white sprite on black per frame, five factors in dSprites' order and grid sizes:
shape 3 (square, ellipse, heart: the shapes of ``data.shapes``), scale 6 (0.5..1),
orientation 40 (over [0, 2π) — the original's grid includes both 0 and 2π, i.e. one
duplicated orientation; ours does not), x 32 and y 32 (over [0, 1] of the usable range,
so that, as in dSprites, the sprite is whole at every position: the range leaves a margin
of the largest sprite's bounding radius plus one pixel on each side). ``y`` grows
downwards, like image rows. Every factor combination is a valid scene, so the pair
sampler never redraws, and pairs change ``k`` of the five factors of the single object
(``"random"``: k ~ U{1..4}, the setting Locatello et al. 2020 describe; ``"dlib"``: what their
code samples, see ``data.pairs``).

``render_batch`` draws many scenes at once and is what the disentanglement metrics use
(through ``data.ground_truth.DSpritesSource``); ``render`` (used by the pair sampler)
calls it, so both give identical pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from einops import rearrange

from data.errors import DataError
from data.pairs import ChangedFactors, ObjectFactors, SceneGenerator
from data.shapes import BOUNDING_RADIUS, silhouettes

FACTOR_SIZES = {"shape": 3, "scale": 6, "orientation": 40, "x": 32, "y": 32}
FACTOR_NAMES = tuple(FACTOR_SIZES)
SCALES = np.linspace(0.5, 1.0, FACTOR_SIZES["scale"])
ORIENTATIONS = np.linspace(0.0, 2 * np.pi, FACTOR_SIZES["orientation"], endpoint=False)
#: Positions as fractions of the usable range (dSprites' posX/posY values).
X_POSITIONS = np.linspace(0.0, 1.0, FACTOR_SIZES["x"])
Y_POSITIONS = np.linspace(0.0, 1.0, FACTOR_SIZES["y"])
#: Radius of a scale-1 sprite as a fraction of the image side: at 64x64 a scale-1 square
#: is 15 px wide and a scale-1 ellipse 19x10 px, close to the original dSprites sizes.
RADIUS_FRACTION = 0.15
#: Extra clearance (pixels) between the largest sprite's bounding circle and the frame edge.
EDGE_CLEARANCE = 1.0
#: Scenes per vectorised step of ``render_batch``: bounds the float64 temporaries (~5 MB
#: each at 64x64) and keeps them cache-friendly.
RENDER_CHUNK = 1024


class DSprites(SceneGenerator):
    """Seeded dSprites-like frame-pair generator (one object; see the module docstring)."""

    name = "dsprites"
    version = 1
    min_objects = 1

    def __init__(self, resolution: int = 64, changed_factors: ChangedFactors = "random"):
        if resolution < 16:
            raise DataError(f"dsprites: resolution must be at least 16 pixels, got {resolution}")
        self._resolution = int(resolution)
        super().__init__(changed_factors, self.min_objects)
        res = self._resolution
        self.max_radius = RADIUS_FRACTION * res
        reach = BOUNDING_RADIUS * self.max_radius  # farthest sprite pixel from its centre
        margin = reach + EDGE_CLEARANCE
        # Factor index -> geometry in pixels, looked up per scene.
        self._cx = margin + X_POSITIONS * (res - 2 * margin)
        self._cy = margin + Y_POSITIONS * (res - 2 * margin)
        self._radius = SCALES * self.max_radius
        # Every sprite pixel lies in a window of this side around the centre, so only the
        # window is evaluated (~9x fewer pixels at 64x64); the per-pixel arithmetic is the
        # full frame's, so the result is the same as evaluating every pixel.
        self._reach = reach
        self._window = min(res, math.ceil(2 * reach) + 2)

    @property
    def factor_sizes(self) -> dict[str, int]:
        return dict(FACTOR_SIZES)

    @property
    def resolution(self) -> int:
        return self._resolution

    @property
    def max_objects(self) -> int:
        return 1

    def config(self) -> dict[str, Any]:
        return {"resolution": self._resolution, "changed_factors": self.changed_factors}

    def sample_objects(self, rng: np.random.Generator) -> list[ObjectFactors]:
        values = rng.integers(0, list(FACTOR_SIZES.values()))
        return [dict(zip(FACTOR_NAMES, map(int, values)))]

    def check_factors(self, factors: np.ndarray) -> np.ndarray:
        """int64 [n, 5] after checking shape, integer dtype and ranges (DataError otherwise)."""
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
            raise DataError(
                f"dsprites: factors must have shape [n, {len(FACTOR_SIZES)}] ({', '.join(FACTOR_NAMES)}), "
                f"got {factors.shape}"
            )
        if factors.size and not np.issubdtype(factors.dtype, np.integer):
            raise DataError(f"dsprites: factors must be integer grid indices, got dtype {factors.dtype}")
        factors = factors.astype(np.int64, copy=False)
        sizes = np.array(list(FACTOR_SIZES.values()))
        if factors.size and ((factors < 0).any() or (factors >= sizes).any()):
            bad = int(np.argmax(((factors < 0) | (factors >= sizes)).any(axis=0)))
            raise DataError(
                f"dsprites: factor {FACTOR_NAMES[bad]!r} must be in 0..{sizes[bad] - 1}, "
                f"got values {factors[:, bad].min()}..{factors[:, bad].max()}"
            )
        return factors

    def render_batch(self, factors: np.ndarray) -> np.ndarray:
        """Silhouettes uint8 [n, H, W] in {0, 1} (1 = sprite) for factor rows int [n, 5].

        Multiply by 255 for a white sprite. Speed at 64x64, n = 10,000, one CPU core
        (float64 numpy; only a window around each sprite is evaluated): 30,000-50,000
        images/s of CPU time, ~15,000 images/s wall clock on a loaded shared machine.
        """
        factors = self.check_factors(factors)
        out = np.zeros((len(factors), self._resolution, self._resolution), dtype=np.uint8)
        for start in range(0, len(factors), RENDER_CHUNK):
            self._render_chunk(factors[start : start + RENDER_CHUNK], out[start : start + RENDER_CHUNK])
        return out

    def _render_chunk(self, factors: np.ndarray, out: np.ndarray) -> None:
        n, side = len(factors), self._window
        shape, scale, orientation, x, y = factors.T
        cx, cy = self._cx[x], self._cy[y]
        # Top-left pixel of each window: the first pixel whose centre can be inside the sprite.
        limit = self._resolution - side
        col0 = np.clip(np.floor(cx - self._reach - 0.5).astype(np.int64), 0, limit)
        row0 = np.clip(np.floor(cy - self._reach - 0.5).astype(np.int64), 0, limit)
        offsets = np.arange(side)
        rows_index = rearrange(row0, "n -> n 1 1") + rearrange(offsets, "h -> 1 h 1")  # [n, side, 1]
        cols_index = rearrange(col0, "n -> n 1 1") + rearrange(offsets, "w -> 1 1 w")  # [n, 1, side]
        column = lambda values: rearrange(values, "n -> n 1 1")  # noqa: E731
        window = silhouettes(
            shape,
            column(cx),
            column(cy),
            column(self._radius[scale]),
            column(ORIENTATIONS[orientation]),
            rows_index + 0.5,  # pixel centres, exactly as on the full frame
            cols_index + 0.5,
        )
        out[rearrange(np.arange(n), "n -> n 1 1"), rows_index, cols_index] = window

    def render(self, objects: list[ObjectFactors]) -> tuple[np.ndarray, np.ndarray]:
        """(white-on-black RGB uint8 [H,W,3], mask uint8 [H,W] with id 1 on the sprite); never rejects."""
        if len(objects) != 1:
            raise DataError(f"dsprites: scenes have exactly one object, got {len(objects)}")
        row = np.array([[objects[0][name] for name in FACTOR_NAMES]])
        mask = self.render_batch(row)[0]
        return np.repeat(mask[:, :, None] * np.uint8(255), 3, axis=2), mask  # (einops.repeat is 10x slower here)
