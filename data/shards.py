"""Write frame pairs into WebDataset tar shards, and build cached, reproducible datasets.

A dataset directory is named after a hash of everything that determines its bytes
(generator name and resolved config, sizes, seed, format version), so ``ensure_dataset``
can reuse it on the next run and never mixes datasets made with different parameters.
It is written to a staging directory and renamed into place only when complete: an
interrupted generation never leaves something that looks like a finished dataset, and the
staging directory of a killed process is removed by the next run (``data.staging``). The
manifest records each shard's sha256; a cached dataset whose shards no longer match is
regenerated once, with a one-line note on stderr (``data.integrity``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
import zlib
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any

import webdataset as wds
from tqdm import tqdm

from data import cached_dirs
from data.cached_dirs import MANIFEST_NAME, ensure_cached, read_manifest
from data.codec import encode_pair
from data.errors import DataError
from data.integrity import CHECKSUMS_KEY, verify_checksums
from data.pairs import SceneGenerator
from data.registry import make_generator
from data.resolve import check_local_shard
from data.version import DATA_VERSION
from data.workers import generation_pool, stop_pool

#: Fewer train shards than this starves shard-level shuffling and worker/rank splitting.
MIN_TRAIN_SHARDS = 10


def split_stream(split: str) -> int:
    """A stable per-split seed word, so train and eval pairs come from different streams."""
    return zlib.crc32(split.encode("utf-8"))


def shard_name(split: str, shard_index: int) -> str:
    return f"{split}-{shard_index:06d}.tar"


def _write_shard(generator: SceneGenerator, path: Path, split: str, seed: int, start: int, stop: int) -> int:
    """Write pairs [start, stop) of a split to ``path`` (via a temporary name); returns the count."""
    partial = path.with_name(path.name + ".partial")
    with wds.TarWriter(str(partial), encoder=False, mtime=0) as sink:
        for index in range(start, stop):
            pair = generator.pair([seed, split_stream(split)], index)
            sink.write(encode_pair(pair, key=f"{split}-{index:08d}"))
    os.replace(partial, path)
    return stop - start


def default_num_workers() -> int:
    """Two processes at most: generation is cheap and the machine is shared."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:
        available = os.cpu_count() or 1
    return max(1, min(2, available))


def write_split(
    generator: SceneGenerator,
    out_dir: str | os.PathLike,
    split: str,
    num_pairs: int,
    pairs_per_shard: int,
    seed: int,
    progress: bool = True,
    num_workers: int | None = None,
) -> list[Path]:
    """Write ``num_pairs`` pairs as ``{split}-000000.tar``, ... in ``out_dir``; returns the shard paths.

    Pair ``i`` is ``generator.pair([seed, split_stream(split)], i)``: the shards are the same
    whatever the number of worker processes or the order in which they finish.
    """
    if num_pairs < 1 or pairs_per_shard < 1:
        raise DataError(f"num_pairs and pairs_per_shard must be positive, got {num_pairs} and {pairs_per_shard}")
    if "." in split or "/" in split or not split:
        raise DataError(f"split name must be non-empty without dots or slashes, got {split!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ranges = [(start, min(start + pairs_per_shard, num_pairs)) for start in range(0, num_pairs, pairs_per_shard)]
    paths = [out / shard_name(split, i) for i in range(len(ranges))]
    workers = min(num_workers or default_num_workers(), len(ranges))
    with tqdm(total=num_pairs, desc=f"{generator.name} {split}", unit="pair", disable=not progress) as bar:
        if workers <= 1:
            for path, (start, stop) in zip(paths, ranges):
                bar.update(_write_shard(generator, path, split, seed, start, stop))
        else:
            with generation_pool(workers) as pool:
                try:
                    futures = [
                        pool.submit(_write_shard, generator, path, split, seed, start, stop)
                        for path, (start, stop) in zip(paths, ranges)
                    ]
                    for future in as_completed(futures):
                        bar.update(future.result())
                except BaseException:
                    stop_pool(pool)  # no worker may go on writing into a directory the caller removes
                    raise
    return paths


@dataclass(frozen=True)
class DatasetInfo:
    """Where a generated dataset lives and what it contains (the parsed manifest)."""

    root: Path
    train_shards: list[str]
    eval_shards: list[str]
    resolution: int
    manifest: dict[str, Any] = field(repr=False)

    @property
    def generator_name(self) -> str:
        return self.manifest["params"]["generator"]

    @property
    def factor_sizes(self) -> dict[str, int]:
        return dict(self.manifest["factor_sizes"])

    @property
    def max_objects(self) -> int:
        return int(self.manifest["max_objects"])

    @property
    def num_train(self) -> int:
        return int(self.manifest["params"]["num_train"])

    @property
    def num_eval(self) -> int:
        return int(self.manifest["params"]["num_eval"])


def dataset_params(
    generator: SceneGenerator, num_train: int, num_eval: int, pairs_per_shard: int, seed: int
) -> dict[str, Any]:
    """Everything that determines a dataset's bytes; its hash names the directory."""
    return {
        "generator": generator.name,
        "generator_version": generator.version,
        "generator_config": generator.config(),
        "num_train": int(num_train),
        "num_eval": int(num_eval),
        "pairs_per_shard": int(pairs_per_shard),
        "seed": int(seed),
        "data_version": DATA_VERSION,
    }


def dataset_dir_name(params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return f"{params['generator']}-{digest}"


def _info_from_manifest(root: Path, manifest: dict[str, Any]) -> DatasetInfo:
    return DatasetInfo(
        root=root,
        train_shards=[str(root / name) for name in manifest["train_shards"]],
        eval_shards=[str(root / name) for name in manifest["eval_shards"]],
        resolution=int(manifest["resolution"]),
        manifest=manifest,
    )


def load_dataset(root: str | os.PathLike) -> DatasetInfo:
    """Read a dataset directory's manifest and check that every listed shard is intact.

    Intact means complete (ends with a tar end-of-archive marker) and, where the manifest records
    checksums, byte for byte what was written.
    """
    root = Path(root)
    manifest = read_manifest(root, ("params", "train_shards", "eval_shards", "resolution", "factor_sizes",
                                    "max_objects"), "dataset")
    info = _info_from_manifest(root, manifest)
    for shard in info.train_shards + info.eval_shards:
        check_local_shard(shard)
    if CHECKSUMS_KEY in manifest:
        verify_checksums(root, manifest)
    return info


def warn_if_few_shards(num_train: int, pairs_per_shard: int) -> None:
    num_train_shards = -(-num_train // pairs_per_shard)
    if num_train_shards < MIN_TRAIN_SHARDS:
        warnings.warn(
            f"only {num_train_shards} train shards (< {MIN_TRAIN_SHARDS}): shard shuffling and "
            "worker/rank splitting work poorly; lower pairs_per_shard"
        )


def write_dataset(generator: SceneGenerator, staging: Path, params: dict[str, Any], num_train: int, num_eval: int,
                  pairs_per_shard: int, seed: int, progress: bool, num_workers: int | None) -> dict[str, Any]:
    """Both splits and the manifest into `staging` (returns the manifest); the caller renames it into place."""
    started = time.perf_counter()
    train = write_split(generator, staging, "train", num_train, pairs_per_shard, seed, progress, num_workers)
    evals = write_split(generator, staging, "eval", num_eval, pairs_per_shard, seed, progress, num_workers)
    manifest = {
        "params": params,
        "resolution": generator.resolution,
        "factor_names": list(generator.factor_names),
        "factor_sizes": generator.factor_sizes,
        "max_objects": generator.max_objects,
        "train_shards": [p.name for p in train],
        "eval_shards": [p.name for p in evals],
        "generation_seconds": round(time.perf_counter() - started, 3),
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def convert_into(out: str | os.PathLike, params: dict[str, Any], num_train: int, pairs_per_shard: int,
                 write: Callable[[Path], Any]) -> DatasetInfo:
    """A converter's output directory (`data.cached_dirs.convert_into`): reused if it already holds a dataset
    with these parameters, refused if it holds anything else, else filled by ``write(staging)`` and renamed into
    place when complete, so an interrupted conversion never leaves something that looks finished."""
    def warned(staging: Path) -> Any:
        warn_if_few_shards(num_train, pairs_per_shard)
        return write(staging)

    return cached_dirs.convert_into(out, params, load_dataset, warned, "dataset")


def ensure_dataset(
    generator_name: str,
    generator_kwargs: dict[str, Any] | None,
    out_root: str | os.PathLike,
    num_train: int = 20_000,
    num_eval: int = 1_000,
    pairs_per_shard: int = 1_000,
    seed: int = 0,
    progress: bool = True,
    num_workers: int | None = None,
) -> DatasetInfo:
    """The dataset for these parameters under ``out_root``: reused if present, else generated.

    Writes ``train-*.tar``, ``eval-*.tar`` and ``manifest.json`` into
    ``out_root/<generator>-<hash of parameters>/``. Train and eval pairs come from different
    seed streams. Safe against interruption (SIGTERM included) and against two processes racing
    to create it; staging directories of killed processes are removed first. A cached dataset
    whose shards no longer match their recorded sha256 is regenerated (byte-identical, since
    generation is deterministic) with a one-line note on stderr.
    """
    generator = make_generator(generator_name, **(generator_kwargs or {}))
    params = dataset_params(generator, num_train, num_eval, pairs_per_shard, seed)

    def write(staging: Path) -> None:
        warn_if_few_shards(num_train, pairs_per_shard)
        write_dataset(generator, staging, params, num_train, num_eval, pairs_per_shard, seed, progress, num_workers)

    return ensure_cached(Path(out_root), dataset_dir_name(params), params, load_dataset, write, _info_from_manifest,
                         "dataset")
