"""Convert the original dSprites ``.npz`` into frame-pair shards of the procedural format.

The converter is a ``SceneGenerator`` over the file (``NpzDSprites``, name
``dsprites_npz``) that renders a scene by looking its image up instead of drawing it, so
``data.shards.write_split`` writes the shards and the pair semantics are exactly those of
``data.dsprites.DSprites``: one object, ``k`` of its factors moved to a different value
(``"random"``: k ~ U{1..F-1}), pair ``i`` a pure function of (seed, split, i). Frames are
RGB with the sprite white, masks have id 1 on the sprite, and the output directory gets the
``manifest.json`` that ``ensure_dataset`` writes, so ``data.load_dataset`` reads it.

Example::

    python -m data.convert_dsprites --npz dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz \\
        --out shards/dsprites_npz --num-train 20000 --num-eval 1000 --changed-factors random
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import DataError
from data.ground_truth import NpzDSpritesSource
from data.pairs import ChangedFactors, ObjectFactors, SceneGenerator, parse_changed_factors
from data.shards import DatasetInfo, convert_into, dataset_params, write_dataset


def file_sha256(path: Path) -> str:
    """Content hash of the source file: the dataset's identity, independent of where it lies."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class NpzDSprites(SceneGenerator):
    """Frame pairs from the original dSprites images (one object; factors from the file)."""

    name = "dsprites_npz"
    version = 1
    min_objects = 1

    def __init__(self, npz: str | os.PathLike, changed_factors: ChangedFactors = "random"):
        self.source = NpzDSpritesSource(npz)
        self._sha256: str | None = None
        self._factor_sizes: dict[str, int] | None = None
        super().__init__(changed_factors, self.min_objects)

    @property
    def factor_sizes(self) -> dict[str, int]:
        if self._factor_sizes is None:  # asked for several times per pair: build it once
            self._factor_sizes = dict(zip(self.source.factor_names, self.source.factor_sizes))
        return dict(self._factor_sizes)

    @property
    def resolution(self) -> int:
        return self.source.resolution

    @property
    def max_objects(self) -> int:
        return 1

    def config(self) -> dict[str, Any]:
        """The file by name and content hash (not by path, so the dataset hash is portable)."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self.source.path)
        return {"npz": self.source.path.name, "npz_sha256": self._sha256, "changed_factors": self.changed_factors}

    def sample_objects(self, rng: np.random.Generator) -> list[ObjectFactors]:
        values = rng.integers(0, list(self.factor_sizes.values()))
        return [dict(zip(self.factor_names, map(int, values)))]

    def render(self, objects: list[ObjectFactors]) -> tuple[np.ndarray, np.ndarray]:
        """(white-on-black RGB uint8 [H,W,3], mask uint8 [H,W] with id 1 on the sprite); never rejects."""
        if len(objects) != 1:
            raise DataError(f"dsprites_npz: scenes have exactly one object, got {len(objects)}")
        mask = self.source.images(np.array([[objects[0][name] for name in self.factor_names]]))[0]
        return np.repeat(mask[:, :, None] * np.uint8(255), 3, axis=2), mask  # (einops.repeat is 10x slower here)


def convert_npz(
    npz: str | os.PathLike,
    out: str | os.PathLike,
    num_train: int = 20_000,
    num_eval: int = 1_000,
    pairs_per_shard: int = 1_000,
    changed_factors: ChangedFactors = "random",
    seed: int = 0,
    progress: bool = True,
    num_workers: int = 1,
) -> DatasetInfo:
    """Write ``train-*.tar``, ``eval-*.tar`` and ``manifest.json`` into ``out``; returns its info.

    ``out`` is built in a temporary sibling directory and renamed into place when complete.
    An existing ``out`` with the same parameters is reused; any other non-empty ``out`` is
    an error (the converter never deletes a directory it did not create). One worker by
    default: each extra worker process reloads the whole ``.npz`` (~3 GB for dSprites).
    """
    generator = NpzDSprites(npz, changed_factors=changed_factors)
    params = dataset_params(generator, num_train, num_eval, pairs_per_shard, seed)
    return convert_into(out, params, num_train, pairs_per_shard, lambda staging: write_dataset(
        generator, staging, params, num_train, num_eval, pairs_per_shard, seed, progress, num_workers))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.convert_dsprites",
        description="Convert the original dSprites .npz into WebDataset frame-pair shards plus manifest.json.",
    )
    parser.add_argument("--npz", required=True, help="the dsprites_ndarray_*.npz file")
    parser.add_argument(
        "--out", required=True, help="dataset directory to create (train-*.tar, eval-*.tar, manifest.json)"
    )
    parser.add_argument("--num-train", type=int, default=20_000, help="training pairs")
    parser.add_argument("--num-eval", type=int, default=1_000, help="evaluation pairs")
    parser.add_argument("--pairs-per-shard", type=int, default=1_000, help="pairs per tar shard")
    parser.add_argument(
        "--changed-factors", default="random",
        help="factors changed between the frames: an int, 'random' (U{1..F-1}) or 'dlib' (data/pairs.py)"
    )
    parser.add_argument("--seed", type=int, default=0, help="pair i is a pure function of (seed, split, i)")
    parser.add_argument("--num-workers", type=int, default=1, help="processes (each reloads the .npz)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        info = convert_npz(
            args.npz, args.out, args.num_train, args.num_eval, args.pairs_per_shard,
            parse_changed_factors(args.changed_factors), args.seed,
            progress=not args.no_progress, num_workers=args.num_workers,
        )
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{info.root}: {info.num_train} train + {info.num_eval} eval dsprites_npz pairs "
        f"({info.resolution}x{info.resolution}, factors {info.factor_sizes}) in "
        f"{len(info.train_shards) + len(info.eval_shards)} shards, {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
