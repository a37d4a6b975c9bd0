"""Rotated glyphs: one asymmetric letter or digit per frame, for planar orientation search.

The data of an Affine-VAE-style model (Bidart): the encoder searches each input's rotation
over a grid of angles, so the latent can code the glyph's shape in a canonical pose. One white,
anti-aliased glyph on black per frame, three factors in this order:

- ``glyph`` 8: ``F G J L P R 4 7`` (``GLYPH_NAMES``), drawn as thick strokes along polylines.
  None has a rotational symmetry other than the identity, and none is a rotation of another,
  so the orientation of every frame is well defined (the tests check both on rendered images);
- ``scale`` 3: 0.75, 0.875 and 1.0 of the largest size;
- ``orientation`` 36: index ``k`` is the angle ``2πk/36`` (10° steps over the full turn),
  counter-clockwise as displayed, the convention of ``orientation.planar``: rendering at ``k``
  equals ``orientation.rotate_images(render at k=0, 2πk/36)`` up to bilinear resampling, and
  exactly ``torch.rot90`` at ``k = 9``.

There is no position factor: every glyph is centred on the image centre and, at every scale
and angle, its nonzero pixels lie inside the image's inscribed circle (every pixel square, not
only its centre), so rotating a frame about its centre never clips it. Each object record of
``factors.json`` carries the angle in radians (``"angle"``) next to the grid indices.

Anti-aliasing is analytic: a pixel's coverage is ``clip(half width - distance + 1/2, 0, 1)``
with the distance (in pixels) from its centre to the stroke centre line, a box filter across the
stroke edge that costs one distance evaluation per pixel instead of 16 for 4x4 supersampling.
The mask gives id 1 to every pixel with a nonzero value, so the background is exactly black.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from einops import rearrange

from data.errors import DataError
from data.pairs import ChangedFactors, ObjectFactors, Seed, SceneGenerator

#: Stroke centre lines in a unit design square (x right, y down as image rows), one list of
#: polylines per glyph; each glyph is re-centred on its bounding box before use.
_Polyline = list[tuple[float, float]]


def _arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, stop_deg: float, steps: int) -> _Polyline:
    """Points along an elliptic arc (angles in degrees, y down: +90 is straight down)."""
    angles = np.radians(np.linspace(start_deg, stop_deg, steps + 1))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


_P_BOWL: _Polyline = [(0.28, 0.9), (0.28, 0.1), *_arc(0.5, 0.3, 0.22, 0.2, -90, 90, 8), (0.28, 0.5)]

GLYPH_STROKES: dict[str, list[_Polyline]] = {
    "F": [[(0.28, 0.9), (0.28, 0.1), (0.76, 0.1)], [(0.28, 0.48), (0.64, 0.48)]],
    # Arc open at the upper right, ending in a bar that points into the bowl.
    "G": [[*_arc(0.5, 0.5, 0.27, 0.4, -50, -360, 14), (0.54, 0.5)]],
    "J": [[(0.42, 0.1), (0.7, 0.1)], [(0.7, 0.1), (0.7, 0.66), *_arc(0.48, 0.66, 0.22, 0.24, 0, 180, 8)[1:]]],
    "L": [[(0.28, 0.1), (0.28, 0.9), (0.74, 0.9)]],
    "P": [_P_BOWL],
    "R": [_P_BOWL, [(0.46, 0.5), (0.74, 0.9)]],
    "4": [[(0.62, 0.9), (0.62, 0.1), (0.24, 0.64), (0.78, 0.64)]],
    # A diagonal stem, so that 7 is not L turned by 180 degrees.
    "7": [[(0.24, 0.1), (0.76, 0.1), (0.42, 0.9)]],
}
GLYPH_NAMES = tuple(GLYPH_STROKES)

FACTOR_SIZES = {"glyph": len(GLYPH_NAMES), "scale": 3, "orientation": 36}
FACTOR_NAMES = tuple(FACTOR_SIZES)
SCALES = np.linspace(0.75, 1.0, FACTOR_SIZES["scale"])
#: Index k -> 2πk/36 radians, counter-clockwise as displayed (``orientation.planar`` convention).
ORIENTATIONS = np.arange(FACTOR_SIZES["orientation"]) * (2 * np.pi / FACTOR_SIZES["orientation"])
#: Their cosines and sines, from the scalar libm rather than numpy's vectorised (CPU-dispatched) loops.
_COS = np.array([math.cos(a) for a in ORIENTATIONS])
_SIN = np.array([math.sin(a) for a in ORIENTATIONS])
#: Half the stroke width, in design units (the glyphs' boxes are 0.8 high).
HALF_WIDTH = 0.085
#: Gap (pixels) between the largest glyph's reach and the inscribed circle: coverage reaches
#: 1/2 px past the stroke edge and a pixel square reaches √2/2 px past its centre.
EDGE_CLEARANCE = 1.5
MIN_RESOLUTION = 16
#: Elements of the [frames, segments, H, W] float32 temporaries per vectorised step of
#: ``render_batch``: ~0.5 MB each stays in cache (measured 2-3x faster than 64 frames a step).
RENDER_ELEMENTS = 1 << 17


def _segments(polylines: list[_Polyline]) -> np.ndarray:
    """float64 [S, 2, 2] (segment, end, xy) centred on the glyph's bounding box."""
    segments = np.array([[a, b] for line in polylines for a, b in zip(line[:-1], line[1:])], dtype=np.float64)
    if (np.linalg.norm(segments[:, 1] - segments[:, 0], axis=-1) < 1e-9).any():
        raise ValueError("glyph strokes must not contain zero-length segments")
    points = rearrange(segments, "s e xy -> (s e) xy")
    return segments - (points.min(axis=0) + points.max(axis=0)) / 2


GLYPH_SEGMENTS: tuple[np.ndarray, ...] = tuple(_segments(GLYPH_STROKES[name]) for name in GLYPH_NAMES)
#: Farthest inked point from the centre, in design units (segments' farthest points are ends).
BOUNDING_RADIUS = max(float(np.linalg.norm(s, axis=-1).max()) for s in GLYPH_SEGMENTS) + HALF_WIDTH


def _check_resolution(resolution: Any) -> int:
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < MIN_RESOLUTION:
        raise DataError(
            f"glyphs: resolution must be an integer of at least {MIN_RESOLUTION} pixels (the glyph must stay "
            f"legible inside the image's inscribed circle), got {resolution!r}"
        )
    return int(resolution)


class Glyphs(SceneGenerator):
    """Seeded frame pairs of one rotated glyph each (see the module docstring)."""

    name = "glyphs"
    version = 1
    min_objects = 1

    def __init__(self, resolution: int = 32, changed_factors: ChangedFactors = "random"):
        self._resolution = _check_resolution(resolution)
        super().__init__(changed_factors, self.min_objects)
        res = self._resolution
        #: Pixels per design unit at scale 1: the largest glyph just fits the inscribed circle.
        self.pixels_per_unit = (res / 2 - EDGE_CLEARANCE) / BOUNDING_RADIUS
        centres = np.arange(res, dtype=np.float32) + 0.5 - res / 2  # pixel centres about the image centre
        self._x = rearrange(centres, "w -> 1 1 1 w")
        self._y = rearrange(centres, "h -> 1 1 h 1")

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
        """int64 [n, 3] after checking shape, integer dtype and ranges (DataError otherwise)."""
        factors = np.asarray(factors)
        if factors.ndim != 2 or factors.shape[1] != len(FACTOR_SIZES):
            raise DataError(
                f"glyphs: factors must have shape [n, {len(FACTOR_SIZES)}] ({', '.join(FACTOR_NAMES)}), "
                f"got {factors.shape}"
            )
        if factors.size and not np.issubdtype(factors.dtype, np.integer):
            raise DataError(f"glyphs: factors must be integer grid indices, got dtype {factors.dtype}")
        factors = factors.astype(np.int64, copy=False)
        sizes = np.array(list(FACTOR_SIZES.values()))
        outside = (factors < 0) | (factors >= sizes)
        if outside.any():
            bad = int(np.argmax(outside.any(axis=0)))
            raise DataError(
                f"glyphs: factor {FACTOR_NAMES[bad]!r} must be in 0..{sizes[bad] - 1}, "
                f"got values {factors[:, bad].min()}..{factors[:, bad].max()}"
            )
        return factors

    def render_batch(self, factors: np.ndarray) -> np.ndarray:
        """Grey levels uint8 [n, H, W] (0 background, 255 fully inked) for factor rows int [n, 3].

        A pure function of the rows (frames do not depend on their neighbours). Speed on one
        CPU core, n = 6,000: ~30,000 frames/s of CPU time at 32x32, ~8,000 at 64x64 (``render``,
        one frame a call: ~10,000 and ~5,000).
        """
        factors = self.check_factors(factors)
        out = np.zeros((len(factors), self._resolution, self._resolution), dtype=np.uint8)
        for glyph in np.unique(factors[:, 0]):
            rows = np.flatnonzero(factors[:, 0] == glyph)
            step = max(1, RENDER_ELEMENTS // (len(GLYPH_SEGMENTS[glyph]) * self._resolution**2))
            for start in range(0, len(rows), step):
                chunk = rows[start : start + step]
                out[chunk] = self._render_glyph(int(glyph), factors[chunk, 1], factors[chunk, 2])
        return out

    def _render_glyph(self, glyph: int, scale: np.ndarray, orientation: np.ndarray) -> np.ndarray:
        """uint8 [m, H, W] of one glyph at m (scale, orientation) index pairs."""
        # Turn the strokes, not the pixels: a frame at angle a samples the upright glyph at R(a) q
        # (as orientation.rotate_images does), so its strokes are the upright ones mapped by R(-a).
        cos, sin = _COS[orientation], _SIN[orientation]
        unrotate = rearrange(np.stack([cos, sin, -sin, cos], axis=-1), "m (r c) -> m r c", r=2)
        size = SCALES[scale] * self.pixels_per_unit  # [m] pixels per design unit
        ends = np.einsum("mrc,sec->mser", unrotate, GLYPH_SEGMENTS[glyph]) * rearrange(size, "m -> m 1 1 1")
        ends = ends.astype(np.float32)
        start, step = ends[:, :, 0], ends[:, :, 1] - ends[:, :, 0]  # [m, S, 2]
        column = lambda values: rearrange(values, "m s -> m s 1 1")  # noqa: E731
        ax, ay, dx, dy = column(start[..., 0]), column(start[..., 1]), column(step[..., 0]), column(step[..., 1])
        px, py = self._x - ax, self._y - ay  # [m, S, 1, W] and [m, S, H, 1]
        along = np.clip((px * dx + py * dy) / (dx * dx + dy * dy), 0.0, 1.0)  # nearest point on the segment
        ox, oy = px - along * dx, py - along * dy
        distance = np.sqrt((ox * ox + oy * oy).min(axis=1))  # [m, H, W] pixels to the nearest stroke
        half_width = rearrange((HALF_WIDTH * size).astype(np.float32), "m -> m 1 1")
        coverage = np.clip(half_width - distance + np.float32(0.5), 0.0, 1.0)
        return np.rint(coverage * np.float32(255)).astype(np.uint8)

    def render(self, objects: list[ObjectFactors]) -> tuple[np.ndarray, np.ndarray]:
        """(white-on-black RGB uint8 [H,W,3], mask uint8 [H,W]: id 1 wherever a pixel is nonzero)."""
        if len(objects) != 1:
            raise DataError(f"glyphs: scenes have exactly one object, got {len(objects)}")
        grey = self.render_batch(np.array([[objects[0][name] for name in FACTOR_NAMES]]))[0]
        return np.repeat(grey[:, :, None], 3, axis=2), (grey > 0).astype(np.uint8)

    def _factor_record(
        self,
        seed: Seed,
        index: int,
        k: int,
        objects0: list[ObjectFactors],
        objects1: list[ObjectFactors],
        changed: list[list[Any]],
    ) -> dict[str, Any]:
        """The base record, with each object's angle in radians next to its orientation index."""
        record = super()._factor_record(seed, index, k, objects0, objects1, changed)
        for key in ("objects0", "objects1"):
            for obj in record[key]:
                obj["angle"] = float(ORIENTATIONS[obj["orientation"]])
        return record
