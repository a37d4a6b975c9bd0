"""Ground-truth sources for the disentanglement metrics: sample factors, render observations.

Both classes follow the ``GroundTruthSource`` protocol of ``metrics.disentanglement.source``
by structure (``factor_sizes``, ``sample_factors``, ``sample_observations_from_factors``),
so this package does not import the metrics. ``DSpritesSource`` renders the procedural
grid on the fly; ``NpzDSpritesSource`` reads the original ``dsprites_ndarray_*.npz``
(keys ``imgs`` uint8 [N, 64, 64] in {0, 1}, ``latents_classes`` int [N, 6]: colour, shape,
scale, orientation, posX, posY) and looks images up by their factor classes.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from einops import rearrange

from data.dsprites import DSprites
from data.errors import DataError

#: Column names of the original ``latents_classes`` (dSprites' own names, in our spelling).
NPZ_LATENT_NAMES = ("colour", "shape", "scale", "orientation", "x", "y")
NPZ_REQUIRED_KEYS = ("imgs", "latents_classes")


def _uniform_factors(sizes: tuple[int, ...], num: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [num, F]: each factor drawn independently and uniformly over its grid."""
    if num < 0:
        raise DataError(f"num must be non-negative, got {num}")
    return rng.integers(0, np.asarray(sizes, dtype=np.int64), size=(int(num), len(sizes)), dtype=np.int64)


def _check_factor_rows(factors: np.ndarray, sizes: tuple[int, ...], names: tuple[str, ...], where: str) -> np.ndarray:
    """int64 [n, F] after checking shape, dtype and ranges, with a message naming the factor."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or factors.shape[1] != len(sizes):
        raise DataError(f"{where}: factors must have shape [n, {len(sizes)}] ({', '.join(names)}), got {factors.shape}")
    if factors.size and not np.issubdtype(factors.dtype, np.integer):
        raise DataError(f"{where}: factors must be integer grid indices, got dtype {factors.dtype}")
    factors = factors.astype(np.int64, copy=False)
    outside = (factors < 0) | (factors >= np.asarray(sizes))
    if outside.any():
        bad = int(np.argmax(outside.any(axis=0)))
        raise DataError(f"{where}: factor {names[bad]!r} must be in 0..{sizes[bad] - 1}, got {factors[outside][0]}")
    return factors


class DSpritesSource:
    """The procedural dSprites grid (``data.dsprites.DSprites``) as a ground-truth source.

    Rendering is deterministic, so ``sample_observations_from_factors`` ignores its rng
    (it is part of the protocol for sources with nuisance randomness).
    """

    def __init__(self, resolution: int = 64):
        self.generator = DSprites(resolution=resolution)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return tuple(self.generator.factor_sizes.values())

    @property
    def factor_names(self) -> tuple[str, ...]:
        return self.generator.factor_names

    @property
    def resolution(self) -> int:
        return self.generator.resolution

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return _uniform_factors(self.factor_sizes, num, rng)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32 [n, 1, H, W] in {0, 1}: one white-on-black silhouette per factor row."""
        factors = _check_factor_rows(factors, self.factor_sizes, self.factor_names, "DSpritesSource")
        images = self.generator.render_batch(factors)
        return rearrange(images, "n h w -> n 1 h w").astype(np.float32)


@dataclass(frozen=True)
class _NpzContents:
    """The loaded arrays and the factor -> image-row lookup built from them."""

    imgs: np.ndarray  # uint8 [N, H, W]
    factor_columns: tuple[int, ...]  # columns of latents_classes that vary (the factors)
    factor_sizes: tuple[int, ...]
    strides: np.ndarray  # int64 [F]: mixed-radix weights, last factor fastest
    row_of_index: np.ndarray | None  # None when rows are already in mixed-radix order


class NpzDSpritesSource:
    """The original dSprites ``.npz`` as a ground-truth source (images looked up, not rendered).

    The factors are the ``latents_classes`` columns that take more than one value (colour
    has one), in file order. The file is read on first use (``np.load`` without memory
    mapping: ``.npz`` members are compressed). Images are found by the mixed-radix index of
    their factor classes; a file whose rows are a full grid in another order gets an index
    table instead, and anything else (missing or repeated combinations) is a DataError.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"dSprites file {self.path} does not exist (expected the original dsprites .npz)")
        self._contents: _NpzContents | None = None

    # Loaded arrays are dropped when pickled (e.g. to a worker process), which reloads them.
    def __getstate__(self) -> dict:
        return {"path": self.path, "_contents": None}

    def _fail(self, message: str) -> DataError:
        return DataError(f"{self.path}: {message}")

    def load(self) -> _NpzContents:
        """Read and validate the file once; later calls return the cached result."""
        if self._contents is None:
            self._contents = self._read()
        return self._contents

    def _read(self) -> _NpzContents:
        try:
            npz = np.load(self.path, mmap_mode=None, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise self._fail(f"not a readable .npz file ({error})") from None
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise self._fail("is a single .npy array, expected an .npz archive with keys 'imgs' and 'latents_classes'")
        with npz:
            for key in NPZ_REQUIRED_KEYS:
                if key not in npz.files:
                    raise self._fail(f"missing key {key!r} (keys present: {sorted(npz.files)})")
            try:
                imgs, classes = npz["imgs"], npz["latents_classes"]
                values = npz["latents_values"] if "latents_values" in npz.files else None
            except (OSError, ValueError, zipfile.BadZipFile) as error:
                raise self._fail(f"cannot read its arrays ({error})") from None
        if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2] or imgs.dtype != np.uint8:
            raise self._fail(f"key 'imgs' must be uint8 [N, H, H] square images, got {imgs.dtype} {imgs.shape}")
        if classes.ndim != 2 or not np.issubdtype(classes.dtype, np.integer):
            raise self._fail(
                f"key 'latents_classes' must be an integer [N, F] array, got {classes.dtype} {classes.shape}"
            )
        if len(classes) != len(imgs):
            raise self._fail(
                f"key 'latents_classes' has {len(classes)} rows but key 'imgs' has {len(imgs)} images"
            )
        if values is not None and values.shape != classes.shape:
            raise self._fail(
                f"key 'latents_values' has shape {values.shape}, expected {classes.shape} like 'latents_classes'"
            )
        if len(imgs) == 0:
            raise self._fail("key 'imgs' holds no images")
        return self._index(imgs, classes.astype(np.int64))

    def _index(self, imgs: np.ndarray, classes: np.ndarray) -> _NpzContents:
        lows, highs = classes.min(axis=0), classes.max(axis=0)
        columns = tuple(int(c) for c in np.flatnonzero(highs > lows))
        if not columns:
            raise self._fail("key 'latents_classes': no column takes more than one value, so there are no factors")
        sizes = []
        for column in columns:
            present = np.unique(classes[:, column])
            if lows[column] != 0 or len(present) != highs[column] + 1:
                raise self._fail(
                    f"key 'latents_classes' column {column} must take every value 0..{highs[column]}, "
                    f"got {len(present)} distinct values from {lows[column]}"
                )
            sizes.append(int(highs[column]) + 1)
        total = int(np.prod(sizes))
        if total != len(imgs):
            raise self._fail(
                f"key 'latents_classes': factor sizes {tuple(sizes)} make {total} combinations but there are "
                f"{len(imgs)} rows, so it is not a full factor grid"
            )
        strides = np.cumprod([1, *sizes[::-1]])[:-1][::-1].astype(np.int64)
        index = classes[:, list(columns)] @ strides
        row_of_index = None
        if not np.array_equal(index, np.arange(total)):
            row_of_index = np.full(total, -1, dtype=np.int64)
            row_of_index[index] = np.arange(total)
            if (row_of_index < 0).any():
                missing = np.flatnonzero(row_of_index < 0)[0]
                combination = np.unravel_index(missing, sizes)
                raise self._fail(
                    f"key 'latents_classes' repeats some factor combinations and lacks others "
                    f"(e.g. {tuple(int(c) for c in combination)}), so it is not a full factor grid"
                )
        return _NpzContents(imgs, columns, tuple(sizes), strides, row_of_index)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self.load().factor_sizes

    @property
    def factor_names(self) -> tuple[str, ...]:
        columns = self.load().factor_columns
        return tuple(NPZ_LATENT_NAMES[c] if c < len(NPZ_LATENT_NAMES) else f"latent{c}" for c in columns)

    @property
    def resolution(self) -> int:
        return int(self.load().imgs.shape[1])

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return _uniform_factors(self.factor_sizes, num, rng)

    def rows_of(self, factors: np.ndarray) -> np.ndarray:
        """int64 [n]: the image row holding each factor combination."""
        contents = self.load()
        factors = _check_factor_rows(factors, contents.factor_sizes, self.factor_names, str(self.path))
        index = factors @ contents.strides
        return index if contents.row_of_index is None else contents.row_of_index[index]

    def images(self, factors: np.ndarray) -> np.ndarray:
        """uint8 [n, H, W] in {0, 1}: the stored image of each factor row."""
        images = self.load().imgs[self.rows_of(factors)]
        if images.size and images.max() > 1:
            raise self._fail(f"key 'imgs' must hold 0/1 silhouettes, found the value {images.max()}")
        return images

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32 [n, 1, H, W] in {0, 1}; the rng is unused (the lookup is deterministic)."""
        return rearrange(self.images(factors), "n h w -> n 1 h w").astype(np.float32)
