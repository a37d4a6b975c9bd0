"""Voxel objects in WebDataset tar shards, cached data sets of them, and loading a split into memory.

The sibling of ``data.shards`` for 3D objects. A sample is one object in its canonical pose:

* ``voxels.bits``: ``np.packbits`` of the bool ``[D, D, D]`` grid in C order (axes x, y, z), D^3 / 8 bytes;
* ``factors.json``: ``{"family", "kind", "size", "rotation", "symmetry", "num_voxels"}``, where ``rotation``
  (0..23, uniform per object) is the pose of the object's *posed* copy, ``rotate_voxels(canonical,
  rotation)``, for test-time pose recovery, and ``symmetry`` lists the rotations that leave it unchanged.

``ensure_voxel_dataset`` writes ``train-*.tar``, ``eval-*.tar`` and ``manifest.json`` into
``root/voxels-<hash of everything that determines the bytes>/`` through a staging directory that is
renamed into place when complete, and reuses it afterwards (shard sha256 checked, as ``data.shards``).
Object i of a split is a pure function of (seed, split, i), so shards come out the same whatever the
number of worker processes. ``load_voxels`` reads whole splits into a ``VoxelSet`` (one byte per voxel:
32 KiB per object at D = 32, so 10 000 objects take 330 MB); damage is one ``DataError`` line naming the
shard, the sample and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds
from tqdm import tqdm

from data.cached_dirs import MANIFEST_NAME, convert_into, ensure_cached, read_manifest
from data.errors import DataError
from data.integrity import CHECKSUMS_KEY, verify_checksums
from data.resolve import ShardSpec, check_local_shard, resolve_shards
from data.shards import default_num_workers, shard_name, split_stream
from data.tar_reader import expand_shards, group_samples
from data.voxels import FAMILIES, VoxelObjects, voxel_rng
from data.workers import generation_pool, stop_pool
from orientation import CUBE_GROUP_SIZE, rotate_voxels

#: Bump when the bytes written for a given (parameters, seed, index) could change.
VOXEL_FORMAT_VERSION = 1
VOXEL_KEYS = ("voxels.bits", "factors.json")
FACTOR_KEYS = ("family", "kind", "size", "rotation", "symmetry", "num_voxels")


# --- one sample ------------------------------------------------------------------------------------------
def encode_voxels(grid: np.ndarray, factors: dict[str, Any], key: str) -> dict[str, Any]:
    """A WebDataset sample for one canonical grid and its factors."""
    return {
        "__key__": key,
        "voxels.bits": np.packbits(np.ascontiguousarray(grid, dtype=bool).reshape(-1)).tobytes(),
        "factors.json": json.dumps(factors, sort_keys=True).encode("utf-8"),
    }


def _where(sample: dict[str, Any]) -> str:
    return f"{sample.get('__url__', '<memory>')}: sample {sample.get('__key__', '?')!r}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_factors(factors: Any, where: str) -> int:
    """The grid side recorded in ``factors.json``; DataError naming the first bad field."""
    if not isinstance(factors, dict):
        raise DataError(f"{where}: factors.json must hold a JSON object, got {type(factors).__name__}")
    missing = [name for name in FACTOR_KEYS if name not in factors]
    if missing:
        raise DataError(f"{where}: factors.json lacks {missing} (expected keys {list(FACTOR_KEYS)})")
    size = factors["size"]
    if isinstance(size, list) and len(size) == 3 and all(_is_int(s) for s in size) and len(set(size)) == 1:
        size = size[0]
    if not _is_int(size) or size < 1:
        raise DataError(f"{where}: factors.json size must be the side of a cubic grid (one positive integer), "
                        f"got {factors['size']!r}")
    rotation, symmetry = factors["rotation"], factors["symmetry"]
    if not _is_int(rotation) or not 0 <= rotation < CUBE_GROUP_SIZE:
        raise DataError(f"{where}: factors.json rotation must be an integer in 0..{CUBE_GROUP_SIZE - 1}, "
                        f"got {rotation!r}")
    if not isinstance(symmetry, list) or 0 not in symmetry or \
            not all(_is_int(g) and 0 <= g < CUBE_GROUP_SIZE for g in symmetry):
        raise DataError(f"{where}: factors.json symmetry must be a list of rotation indices holding 0, "
                        f"got {symmetry!r}")
    for name in ("family", "kind"):
        if not isinstance(factors[name], str):
            raise DataError(f"{where}: factors.json {name} must be a string, got {factors[name]!r}")
    return size


def decode_voxels(sample: dict[str, Any], size: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """(bool grid [D, D, D], factors) of one sample; DataError naming the shard, sample and key on damage.

    ``size``, if given, is the side every sample must have (a split is one size).
    """
    where = _where(sample)
    missing = [name for name in VOXEL_KEYS if name not in sample]
    if missing:
        present = sorted(k for k in sample if not k.startswith("__"))
        raise DataError(f"{where}: missing {' and '.join(missing)} (expected keys {list(VOXEL_KEYS)}, got {present})")
    try:
        factors = json.loads(sample["factors.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{where}: factors.json is not valid JSON ({error})") from None
    side = _check_factors(factors, where)
    if size is not None and side != size:
        raise DataError(f"{where}: factors.json size expected {size} (as the samples before it), got {side}")
    bits = sample["voxels.bits"]
    expected = -(-side ** 3 // 8)
    if len(bits) != expected:
        raise DataError(f"{where}: voxels.bits expected {expected} bytes ({side}^3 bits packed), got {len(bits)}")
    grid = np.unpackbits(np.frombuffer(bits, dtype=np.uint8), count=side ** 3).astype(bool).reshape(side, side, side)
    count = int(grid.sum())
    if count != factors["num_voxels"]:
        raise DataError(f"{where}: voxels.bits expected {factors['num_voxels']} set voxels (factors.json "
                        f"num_voxels), got {count}")
    return grid, factors


# --- writing ---------------------------------------------------------------------------------------------
def sample_key(split: str, index: int) -> str:
    return f"{split}-{index:08d}"


def generated_object(generator: VoxelObjects, split: str, seed: int, index: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Object ``index`` of a split and its factors: a pure function of (generator config, seed, split, index)."""
    rng = voxel_rng([seed, split_stream(split)], index)
    grid, record = generator.make(rng)
    factors = {
        "family": record["family"],
        "kind": record["kind"],
        "size": generator.size,
        "rotation": int(rng.integers(CUBE_GROUP_SIZE)),
        "symmetry": record["symmetry"],
        "num_voxels": record["num_voxels"],
    }
    return grid, factors


def _write_shard(generator: VoxelObjects, path: Path, split: str, seed: int, start: int, stop: int) -> tuple[int, int]:
    """Objects [start, stop) of a split into ``path`` (via a temporary name); (count, how many lack symmetry)."""
    partial = path.with_name(path.name + ".partial")
    free = 0
    with wds.TarWriter(str(partial), encoder=False, mtime=0) as sink:
        for index in range(start, stop):
            grid, factors = generated_object(generator, split, seed, index)
            free += len(factors["symmetry"]) == 1
            sink.write(encode_voxels(grid, factors, sample_key(split, index)))
    os.replace(partial, path)
    return stop - start, free


def _check_split(split: str, count: int, per_shard: int) -> None:
    if count < 1 or per_shard < 1:
        raise DataError(f"object count and objects_per_shard must be positive, got {count} and {per_shard}")
    if "." in split or "/" in split or not split:
        raise DataError(f"split name must be non-empty without dots or slashes, got {split!r}")


def _write_split(generator: VoxelObjects, out_dir: str | os.PathLike, split: str, num_objects: int,
                 objects_per_shard: int, seed: int, progress: bool, num_workers: int | None) -> tuple[list[Path], int]:
    _check_split(split, num_objects, objects_per_shard)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ranges = [(start, min(start + objects_per_shard, num_objects))
              for start in range(0, num_objects, objects_per_shard)]
    paths = [out / shard_name(split, i) for i in range(len(ranges))]
    workers = min(num_workers or default_num_workers(), len(ranges))
    free = 0
    with tqdm(total=num_objects, desc=f"{generator.name} {split}", unit="object", disable=not progress) as bar:
        if workers <= 1:
            for path, (start, stop) in zip(paths, ranges):
                done, symmetry_free = _write_shard(generator, path, split, seed, start, stop)
                free += symmetry_free
                bar.update(done)
        else:
            with generation_pool(workers) as pool:
                try:
                    futures = [pool.submit(_write_shard, generator, path, split, seed, start, stop)
                               for path, (start, stop) in zip(paths, ranges)]
                    for future in as_completed(futures):
                        done, symmetry_free = future.result()
                        free += symmetry_free
                        bar.update(done)
                except BaseException:
                    stop_pool(pool)  # no worker may go on writing into a directory the caller removes
                    raise
    return paths, free


def write_voxel_split(
    generator: VoxelObjects,
    out_dir: str | os.PathLike,
    split: str,
    num_objects: int,
    objects_per_shard: int,
    seed: int,
    progress: bool = True,
    num_workers: int | None = None,
) -> list[Path]:
    """Write ``num_objects`` objects as ``{split}-000000.tar``, ... in ``out_dir``; returns the shard paths.

    Object ``i`` is ``generated_object(generator, split, seed, i)``: the same whatever the number of workers.
    """
    return _write_split(generator, out_dir, split, num_objects, objects_per_shard, seed, progress, num_workers)[0]


def write_voxel_shards(samples: Iterable[tuple[np.ndarray, dict[str, Any]]], out_dir: str | os.PathLike, split: str,
                       objects_per_shard: int) -> list[Path]:
    """Write (grid, factors) pairs in order as ``{split}-000000.tar``, ...; for converters, which stream objects.

    Returns the shard paths; DataError if there were no samples.
    """
    _check_split(split, 1, objects_per_shard)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    sink: wds.TarWriter | None = None
    index = 0
    try:
        for grid, factors in samples:
            if index % objects_per_shard == 0:
                if sink is not None:
                    sink.close()
                    os.replace(paths[-1].with_name(paths[-1].name + ".partial"), paths[-1])
                paths.append(out / shard_name(split, len(paths)))
                sink = wds.TarWriter(str(paths[-1].with_name(paths[-1].name + ".partial")), encoder=False, mtime=0)
            sink.write(encode_voxels(grid, factors, sample_key(split, index)))
            index += 1
    finally:
        if sink is not None:
            sink.close()
    if not paths:
        raise DataError(f"no {split} objects to write into {out}")
    os.replace(paths[-1].with_name(paths[-1].name + ".partial"), paths[-1])
    return paths


# --- cached data sets ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VoxelDatasetInfo:
    """Where a voxel data set lives and what it holds (the parsed manifest)."""

    root: Path
    train_shards: list[str]
    eval_shards: list[str]
    manifest: dict[str, Any] = field(repr=False)

    @property
    def size(self) -> int:
        return int(self.manifest["size"])

    @property
    def num_train(self) -> int:
        return int(self.manifest["num_train"])

    @property
    def num_eval(self) -> int:
        return int(self.manifest["num_eval"])


def voxel_dataset_params(generator: VoxelObjects, num_train: int, num_eval: int, objects_per_shard: int,
                         seed: int) -> dict[str, Any]:
    """Everything that determines a generated voxel data set's bytes; its hash names the directory."""
    return {
        "generator": generator.name,
        "generator_version": generator.version,
        "generator_config": generator.config(),
        "num_train": int(num_train),
        "num_eval": int(num_eval),
        "objects_per_shard": int(objects_per_shard),
        "seed": int(seed),
        "format_version": VOXEL_FORMAT_VERSION,
    }


def voxel_dataset_dir_name(params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    return f"voxels-{digest}"


def _info(root: Path, manifest: dict[str, Any]) -> VoxelDatasetInfo:
    return VoxelDatasetInfo(root=root, train_shards=[str(root / name) for name in manifest["train_shards"]],
                            eval_shards=[str(root / name) for name in manifest["eval_shards"]], manifest=manifest)


def load_voxel_dataset(root: str | os.PathLike) -> VoxelDatasetInfo:
    """Read a voxel data set's manifest and check every listed shard: complete, and as written (sha256)."""
    root = Path(root)
    manifest = read_manifest(root, ("params", "size", "num_train", "num_eval", "train_shards", "eval_shards"),
                             "voxel data set")
    info = _info(root, manifest)
    for shard in info.train_shards + info.eval_shards:
        check_local_shard(shard)
    if CHECKSUMS_KEY in manifest:
        verify_checksums(root, manifest)
    return info


def ensure_voxel_dataset(
    root: str | os.PathLike,
    *,
    size: int = 32,
    families: Sequence[str] = FAMILIES,
    num_train: int = 10_000,
    num_eval: int = 1_000,
    seed: int = 0,
    objects_per_shard: int = 1_000,
    progress: bool = True,
    num_workers: int | None = None,
) -> VoxelDatasetInfo:
    """The voxel data set for these parameters under ``root``: reused if present and intact, else generated.

    Train and eval objects come from different seed streams. Safe against interruption and against two
    processes racing to create it (the loser uses the winner's copy).
    """
    generator = VoxelObjects(size, families)
    params = voxel_dataset_params(generator, num_train, num_eval, objects_per_shard, seed)

    def write(staging: Path) -> None:
        started = time.perf_counter()
        train, train_free = _write_split(generator, staging, "train", num_train, objects_per_shard, seed, progress,
                                         num_workers)
        evals, eval_free = _write_split(generator, staging, "eval", num_eval, objects_per_shard, seed, progress,
                                        num_workers)
        write_manifest(staging, {
            "params": params,
            "size": generator.size,
            "num_train": num_train,
            "num_eval": num_eval,
            "train_shards": [p.name for p in train],
            "eval_shards": [p.name for p in evals],
            "no_symmetry_fraction": round((train_free + eval_free) / (num_train + num_eval), 4),
            "generation_seconds": round(time.perf_counter() - started, 3),
        })

    return ensure_cached(Path(root), voxel_dataset_dir_name(params), params, load_voxel_dataset, write, _info,
                         "voxel data set")


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def convert_voxels_into(out: str | os.PathLike, params: dict[str, Any],
                        write: Callable[[Path], Any]) -> VoxelDatasetInfo:
    """A converter's output directory (`data.cached_dirs.convert_into`): reused if it holds a voxel data set
    with these parameters, refused if it holds anything else, else filled by ``write(staging)`` (shards and
    manifest) and renamed into place when complete; a damaged previous output is an error, never deleted."""
    return convert_into(out, params, load_voxel_dataset, write, "voxel data set")


# --- loading into memory ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class VoxelSet:
    """A whole split in memory: canonical grids, the pose of each object's posed copy, symmetries, kinds."""

    canonical: torch.Tensor  # bool [N, D, D, D]
    rotation: torch.Tensor  # int64 [N], 0..23
    symmetry: list[list[int]]
    kinds: list[str]
    families: list[str]

    def __post_init__(self) -> None:
        n = self.canonical.shape[0]
        lengths = {len(self.rotation), len(self.symmetry), len(self.kinds), len(self.families)}
        if self.canonical.dim() != 4 or lengths != {n}:
            raise DataError(f"VoxelSet parts disagree: canonical {tuple(self.canonical.shape)}, rotation "
                            f"{len(self.rotation)}, symmetry {len(self.symmetry)}, kinds {len(self.kinds)}")

    def __len__(self) -> int:
        return int(self.canonical.shape[0])

    @property
    def size(self) -> int:
        return int(self.canonical.shape[-1])

    @property
    def posed(self) -> torch.Tensor:
        """``rotate_voxels(canonical, rotation)``, computed on each access one rotation at a time (a [N] index
        gather would build an N x D^3 int64 index: 5 GB for 20 000 objects at D = 32)."""
        out = torch.empty_like(self.canonical)
        for g in torch.unique(self.rotation).tolist():
            chosen = self.rotation == g
            out[chosen] = rotate_voxels(self.canonical[chosen], g)
        return out

    @property
    def asymmetric(self) -> torch.Tensor:
        """bool [N]: objects without rotational symmetry (their pose is well defined)."""
        return torch.tensor([len(s) == 1 for s in self.symmetry], dtype=torch.bool)


def load_voxels(urls: ShardSpec) -> VoxelSet:
    """Every sample of these shards (paths, globs, brace patterns or a list of them) in one ``VoxelSet``.

    All samples must share one grid size. DataError (one line naming the shard, the sample and expected vs
    got) on a missing key, a wrong bit count, bad JSON, a non-cubic or mixed size, or a damaged tar.
    """
    if isinstance(urls, Sequence) and not isinstance(urls, (str, bytes)) and len(urls) == 0:
        raise DataError("load_voxels: no shard urls given (an empty list)")
    grids: list[np.ndarray] = []
    rotations: list[int] = []
    symmetry: list[list[int]] = []
    kinds: list[str] = []
    families: list[str] = []
    size: int | None = None
    for sample in group_samples(expand_shards(resolve_shards(urls))):
        grid, factors = decode_voxels(sample, size)
        size = grid.shape[0]
        grids.append(grid)
        rotations.append(factors["rotation"])
        symmetry.append(list(factors["symmetry"]))
        kinds.append(factors["kind"])
        families.append(factors["family"])
    return VoxelSet(canonical=torch.from_numpy(np.stack(grids)), rotation=torch.tensor(rotations, dtype=torch.int64),
                    symmetry=symmetry, kinds=kinds, families=families)
