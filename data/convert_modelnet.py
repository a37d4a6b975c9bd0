"""Convert ModelNet10 meshes (``ROOT/<class>/<train|test>/*.off``) into voxel shards of the ``data.voxel_shards``
format, so real objects go through the same loader as the generated ones.

Each mesh is read with trimesh, scaled so its longest side spans the grid less a one-voxel margin at each
end, voxelised at a pitch of one voxel (``mesh.voxelized``), filled inside (``.fill()``), and centred in
a ``size``^3 grid (padded, or cropped by at most a voxel of rounding). ModelNet10 is aligned with "up"
along +z, so every object is recorded in its canonical pose: rotation 0, family ``modelnet10``, kind the
class name, ``symmetry`` measured on the grid; ``source`` names the file. The ModelNet ``train`` split is
written as ``train-*.tar`` (``train_shards``), ``test`` as ``test-*.tar`` (``eval_shards``).

Some ModelNet files glue the header to the counts (``OFF490 518 0``): the header is split before
parsing. A file that cannot be read, is truncated or voxelises to nothing stops the conversion with one
line naming it.

Example::

    python -m data.convert_modelnet --root ModelNet10 --out shards/modelnet10-32 --size 32 --classes chair,table
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from tqdm import tqdm

from data.errors import DataError
from data.integrity import file_sha256
from data.voxel_shards import (VOXEL_FORMAT_VERSION, VoxelDatasetInfo, convert_voxels_into, write_manifest,
                               write_voxel_shards)
from data.voxels import grid_symmetry
from data.workers import generation_pool, stop_pool

#: Bump when the bytes written for the same input files and options could change.
CONVERTER_VERSION = 1
SPLITS = ("train", "test")
#: Shard file prefix of each ModelNet split; ``test`` is the data set's eval split.
SHARD_SPLIT = {"train": "train", "test": "test"}
_GLUED_HEADER = re.compile(rb"^(\s*)(C?OFF)[ \t]*(?=[-+.\d])")


def read_off(path: str | os.PathLike) -> trimesh.Trimesh:
    """The mesh in an OFF file; DataError naming the file when it is unreadable, malformed or truncated."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    raw = _GLUED_HEADER.sub(rb"\1\2\n", raw, count=1)  # "OFF490 518 0" or "OFF 490 518 0" -> "OFF\n490 518 0"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not an OFF file (not text)") from None
    lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines or lines[0] not in ("OFF", "COFF"):
        raise DataError(f"{path}: not an OFF file (header expected 'OFF', got {lines[0][:40] if lines else ''!r})")
    counts = lines[1].split() if len(lines) > 1 else []
    if len(counts) < 2 or not all(c.isdigit() for c in counts[:3]):
        raise DataError(f"{path}: malformed OFF counts line (expected 'vertices faces edges', got "
                        f"{' '.join(counts)[:40]!r})")
    vertices, faces = int(counts[0]), int(counts[1])
    if len(lines) - 2 < vertices + faces:
        raise DataError(f"{path}: truncated OFF (header promises {vertices} vertices and {faces} faces, found "
                        f"{len(lines) - 2} data lines)")
    try:
        mesh = trimesh.load(io.BytesIO(raw), file_type="off", force="mesh")
    except Exception as error:  # trimesh raises whatever numpy raises on bad numbers: report it in one line
        detail = (str(error).splitlines() or [""])[0][:120]
        raise DataError(f"{path}: malformed OFF ({type(error).__name__}: {detail})") from None
    if len(mesh.faces) == 0:
        raise DataError(f"{path}: OFF mesh has no faces")
    if not np.isfinite(mesh.vertices).all():
        raise DataError(f"{path}: OFF mesh has non-finite vertex coordinates")
    return mesh


def voxelise(mesh: trimesh.Trimesh, size: int, source: str = "mesh") -> np.ndarray:
    """A filled bool [size, size, size] grid of the mesh, its longest side ``size - 2`` voxels, centred."""
    extent = mesh.bounds[1] - mesh.bounds[0]
    longest = float(extent.max())
    if not np.isfinite(longest) or longest <= 0:
        raise DataError(f"{source}: mesh is degenerate (bounding box extents {extent.tolist()})")
    span = size - 2  # voxels along the longest side: a one-voxel margin at each end
    mesh = mesh.copy()
    mesh.apply_translation(-mesh.bounds[0])
    mesh.apply_scale((span - 1) / longest)  # voxel centres 0 .. span - 1 along the longest side
    matrix = np.asarray(mesh.voxelized(pitch=1.0).fill().matrix, dtype=bool)
    if not matrix.any():
        raise DataError(f"{source}: mesh voxelises to nothing at size {size}")
    grid = np.zeros((size, size, size), dtype=bool)
    source_slices, target_slices = [], []
    for length in matrix.shape:
        if length <= size:
            start = (size - length) // 2
            source_slices.append(slice(0, length))
            target_slices.append(slice(start, start + length))
        else:  # rounding gave a voxel too many: crop it evenly
            start = (length - size) // 2
            source_slices.append(slice(start, start + size))
            target_slices.append(slice(0, size))
    grid[tuple(target_slices)] = matrix[tuple(source_slices)]
    return grid


def find_off_files(root: str | os.PathLike, classes: Sequence[str] | None = None,
                   splits: Sequence[str] = SPLITS) -> dict[str, list[tuple[str, Path]]]:
    """``{split: [(class, file), ...]}`` sorted by class then name; DataError if there is nothing to convert."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"ModelNet root {root} is not a directory")
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and any((p / s).is_dir() for s in SPLITS))
    if classes:
        unknown = [c for c in classes if c not in available]
        if unknown:
            raise DataError(f"class(es) {unknown} not found under {root} (classes there: {available or 'none'})")
        chosen = list(dict.fromkeys(classes))
    else:
        chosen = available
    found = {split: [(name, path) for name in chosen for path in sorted((root / name / split).glob("*.off"))]
             for split in splits}
    if not any(found.values()):
        raise DataError(f"no .off files under {root} (expected {root}/<class>/<{'|'.join(splits)}>/*.off)")
    return found


def _source_digest(root: Path, files: dict[str, list[tuple[str, Path]]]) -> str:
    """One sha256 of every input file's relative path and content: the output's identity, wherever it lies."""
    digest = hashlib.sha256()
    for split in sorted(files):
        for _, path in files[split]:
            digest.update(f"{path.relative_to(root).as_posix()}\0{file_sha256(path)}\n".encode("utf-8"))
    return digest.hexdigest()


def _convert_one(job: tuple[str, str, int, str]) -> tuple[np.ndarray, dict[str, Any]]:
    path, kind, size, source = job
    grid = voxelise(read_off(path), size, path)
    factors = {"family": "modelnet10", "kind": kind, "size": size, "rotation": 0, "symmetry": grid_symmetry(grid),
               "num_voxels": int(grid.sum()), "source": source}
    return grid, factors


def _converted(jobs: list[tuple[str, str, int, str]], num_workers: int, bar: tqdm) -> Iterator[tuple[np.ndarray, dict]]:
    """The converted objects in input order, from ``num_workers`` processes."""
    if num_workers <= 1:
        for job in jobs:
            yield _convert_one(job)
            bar.update(1)
        return
    with generation_pool(num_workers) as pool:
        try:
            for result in pool.map(_convert_one, jobs, chunksize=4):
                yield result
                bar.update(1)
        except BaseException:
            stop_pool(pool)
            raise


def convert_modelnet(
    root: str | os.PathLike,
    out: str | os.PathLike,
    size: int = 32,
    classes: Sequence[str] | None = None,
    split: str = "both",
    objects_per_shard: int = 500,
    progress: bool = True,
    num_workers: int = 1,
) -> VoxelDatasetInfo:
    """Voxelise the chosen ModelNet splits into ``out`` (``train-*.tar``, ``test-*.tar``, ``manifest.json``).

    ``out`` is reused if it already holds this conversion of the same files, refused if it holds anything
    else, and written through a temporary sibling renamed into place when complete.
    """
    if split not in (*SPLITS, "both"):
        raise DataError(f"split must be train, test or both, got {split!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 4:
        raise DataError(f"voxel grid size must be an integer >= 4, got {size!r}")
    if objects_per_shard < 1:
        raise DataError(f"objects_per_shard must be positive, got {objects_per_shard}")
    root = Path(root)
    splits = SPLITS if split == "both" else (split,)
    files = find_off_files(root, classes, splits)
    params = {
        "generator": "modelnet10",
        "converter_version": CONVERTER_VERSION,
        "format_version": VOXEL_FORMAT_VERSION,
        "size": size,
        "classes": sorted({kind for rows in files.values() for kind, _ in rows}),
        "splits": list(splits),
        "objects_per_shard": objects_per_shard,
        "source_sha256": _source_digest(root, files),
    }

    def write(staging: Path) -> None:
        started = time.perf_counter()
        shards: dict[str, list[str]] = {split: [] for split in SPLITS}
        total = sum(len(rows) for rows in files.values())
        with tqdm(total=total, desc=f"modelnet10 {size}^3", unit="mesh", disable=not progress) as bar:
            for name in splits:
                if not files[name]:
                    continue
                jobs = [(str(path), kind, size, path.relative_to(root).as_posix()) for kind, path in files[name]]
                paths = write_voxel_shards(_converted(jobs, num_workers, bar), staging, SHARD_SPLIT[name],
                                           objects_per_shard)
                shards[name] = [p.name for p in paths]
        write_manifest(staging, {
            "params": params,
            "size": size,
            "num_train": len(files.get("train", [])),
            "num_eval": len(files.get("test", [])),
            "train_shards": shards["train"],
            "eval_shards": shards["test"],
            "eval_split": "test",
            "class_counts": {name: dict(sorted(Counter(kind for kind, _ in rows).items()))
                             for name, rows in files.items()},
            "generation_seconds": round(time.perf_counter() - started, 3),
        })

    return convert_voxels_into(out, params, write)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.convert_modelnet",
        description="Voxelise ModelNet10 .off meshes into WebDataset voxel shards plus manifest.json.",
    )
    parser.add_argument("--root", required=True, help="ModelNet10 directory holding <class>/<train|test>/*.off")
    parser.add_argument("--out", required=True, help="data set directory to create")
    parser.add_argument("--size", type=int, default=32, help="voxel grid side")
    parser.add_argument("--classes", default="", help="comma-separated class names (default: every class)")
    parser.add_argument("--split", choices=("train", "test", "both"), default="both", help="which splits to convert")
    parser.add_argument("--objects-per-shard", type=int, default=500, help="objects per tar shard")
    parser.add_argument("--num-workers", type=int, default=1, help="processes voxelising meshes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] or None
    started = time.perf_counter()
    try:
        info = convert_modelnet(args.root, args.out, args.size, classes, args.split, args.objects_per_shard,
                                progress=not args.no_progress, num_workers=args.num_workers)
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{info.root}: {info.num_train} train + {info.num_eval} test ModelNet10 objects at {info.size}^3 in "
          f"{len(info.train_shards) + len(info.eval_shards)} shards, {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
