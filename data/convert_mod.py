"""Convert the DeepMind multi-object datasets (GZIP TFRecords) into frame-pair shards.

Supported files (github.com/deepmind/multi_object_datasets): ``clevr_with_masks``,
``multi_dsprites_{binarized,colored_on_grayscale,colored_on_colored}``, ``tetrominoes``,
``objects_room`` and the Objects Room test files (``objects_room_six_objects``,
``objects_room_empty_room``, ``objects_room_identical_color``). No TensorFlow: records are
read by ``data.tfrecords`` and parsed against ``data.mod_schema``.

Each record is one image, not a pair, so it is stored as a **static pair**: frame 1 = frame 0,
mask 1 = mask 0, ``k = 0`` and no changed factor. Frames are RGB (Multi-dSprites binarized is
grey, repeated to three channels); masks hold instance ids (0 = background = entity 0, id e =
entity e, see ``data.mod_record``); ``factors.json`` has the generators' layout with the
record's float factors (CLEVR's categorical factors as their integer codes), ``visible`` and
``pixels`` per object (null entities are kept and flagged ``visible: 0``), ``background`` (the
factors of entity 0) and ``source`` (file and record index). ``factor_sizes`` are 0: the files
declare no value grids.

The first ``num_train`` usable records (in file order) become the train split, the next
``num_eval`` the eval split (the defaults, 60,000 and 320, are the protocol of IODINE and Slot
Attention for Multi-dSprites and Tetrominoes). ``max_objects`` skips records with more visible
objects (CLEVR6: 6). Workers parse and encode chunks of records; the main process writes them
in file order, so the shards are byte-identical for any number of workers.

Example::

    python -m data.convert_mod --dataset tetrominoes --tfrecord tetrominoes_train.tfrecords \\
        --out shards/tetrominoes --num-train 60000 --num-eval 320
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import webdataset as wds
from tqdm import tqdm

from data.codec import FACTORS_KEY, FRAME_KEYS, MASK_KEYS, encode_png
from data.errors import DataError
from data.mod_record import entity_records, frame_and_ids
from data.mod_schema import SCHEMAS, DatasetSchema, get_schema, parse_record
from data.shards import MANIFEST_NAME, DatasetInfo, convert_into, default_num_workers, shard_name
from data.tfrecords import iter_records
from data.version import DATA_VERSION
from data.workers import generation_pool

GENERATOR_VERSION = 1
DEFAULT_NUM_TRAIN = 60_000
DEFAULT_NUM_EVAL = 320
#: A chunk (one task for a worker) ends at this many records or bytes, whichever comes first:
#: CLEVR records are ~3 MB each, Tetrominoes ~26 kB.
CHUNK_RECORDS = 64
CHUNK_BYTES = 32 << 20

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ConvertedRecord:
    """One record as encoded sample parts; ``factors`` lacks the split index, set when written."""

    record: int
    frame_png: bytes
    mask_png: bytes
    num_visible: int
    factors: dict[str, Any]


def convert_record(payload: bytes, schema: DatasetSchema, path: str, index: int) -> ConvertedRecord:
    """Parse, validate and encode record ``index`` of ``path`` (a pure function of its bytes)."""
    parsed = parse_record(payload, schema, where=f"{path}: record {index}")
    frame, ids = frame_and_ids(parsed, schema)
    background, *objects = entity_records(parsed, schema, ids)
    num_visible = sum(obj["visible"] for obj in objects)
    factors = {
        "generator": f"mod_{schema.name}",
        "generator_version": GENERATOR_VERSION,
        "seed": [],
        "resolution": schema.output_resolution,
        "factor_names": list(schema.factor_names),
        "factor_sizes": dict.fromkeys(schema.factor_names, 0),
        "num_objects": len(objects),
        "num_visible": num_visible,
        "k": 0,
        "objects0": objects,
        "objects1": objects,
        "changed": [],
        "background": background,
        "source": {"dataset": schema.name, "file": os.path.basename(path), "record": index},
    }
    return ConvertedRecord(index, encode_png(frame), encode_png(ids), num_visible, factors)


ChunkResult = list[ConvertedRecord | DataError | None]


def _convert_chunk(job: tuple[str, str, int | None, list[tuple[int, bytes]]]) -> ChunkResult:
    """Worker task: convert a chunk of records; None for records skipped by ``max_objects``.

    A bad record's DataError is returned, not raised, so it stops the conversion only if the
    writer gets that far (the chunk may reach past the last record needed).
    """
    dataset, path, max_objects, items = job
    schema = SCHEMAS[dataset]
    converted: ChunkResult = []
    for index, payload in items:
        try:
            record = convert_record(payload, schema, path, index)
        except DataError as error:
            converted.append(error)
            continue
        converted.append(None if max_objects is not None and record.num_visible > max_objects else record)
    return converted


def _chunks(records: Iterable[bytes]) -> Iterator[list[tuple[int, bytes]]]:
    chunk: list[tuple[int, bytes]] = []
    size = 0
    for index, payload in enumerate(records):
        chunk.append((index, payload))
        size += len(payload)
        if len(chunk) >= CHUNK_RECORDS or size >= CHUNK_BYTES:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def ordered_map(fn: Callable[[T], R], jobs: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, jobs)`` over a process pool, in input order, with at most 2 x workers jobs in flight.

    Bounded so a large file is never read far ahead of the writer (``Pool.imap`` would read
    it all into memory).
    """
    if workers <= 1:
        yield from map(fn, jobs)
        return
    pool = generation_pool(workers)  # fork, and the workers die with this process
    pending: deque[Future[R]] = deque()
    try:
        for job in jobs:
            pending.append(pool.submit(fn, job))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ShardSink:
    """Writes samples in arrival order: the first ``num_train`` to train shards, the rest to eval.

    It writes into a staging directory that is renamed into place only when complete, so shards
    need no temporary names of their own.
    """

    def __init__(self, root: Path, num_train: int, num_eval: int, pairs_per_shard: int):
        self.root = root
        self.sizes = {"train": num_train, "eval": num_eval}
        self.pairs_per_shard = pairs_per_shard
        self.written = 0
        self.shards: dict[str, list[str]] = {"train": [], "eval": []}
        self._writer: wds.TarWriter | None = None

    @property
    def total(self) -> int:
        return self.sizes["train"] + self.sizes["eval"]

    @property
    def full(self) -> bool:
        return self.written >= self.total

    def write(self, record: ConvertedRecord) -> None:
        split, index = ("train", self.written) if self.written < self.sizes["train"] else (
            "eval", self.written - self.sizes["train"])
        if index % self.pairs_per_shard == 0:
            self._open(split, index // self.pairs_per_shard)
        assert self._writer is not None
        factors = {**record.factors, "index": index}
        sample = {"__key__": f"{split}-{index:08d}", FACTORS_KEY: json.dumps(factors, sort_keys=True).encode("utf-8")}
        sample.update(dict.fromkeys(FRAME_KEYS, record.frame_png))
        sample.update(dict.fromkeys(MASK_KEYS, record.mask_png))
        self._writer.write(sample)
        self.written += 1
        if index + 1 == self.sizes[split] or (index + 1) % self.pairs_per_shard == 0:
            self.close()

    def _open(self, split: str, shard: int) -> None:
        name = shard_name(split, shard)
        self.shards[split].append(name)
        self._writer = wds.TarWriter(str(self.root / name), encoder=False, mtime=0)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None


def conversion_params(schema: DatasetSchema, tfrecord: Path, num_train: int, num_eval: int, pairs_per_shard: int,
                      max_objects: int | None) -> dict[str, Any]:
    """What determines the output's bytes (the file by name and size, so the hash is portable)."""
    return {
        "generator": f"mod_{schema.name}",
        "generator_version": GENERATOR_VERSION,
        "generator_config": {"dataset": schema.name, "tfrecord": tfrecord.name,
                             "tfrecord_bytes": tfrecord.stat().st_size, "max_objects": max_objects},
        "num_train": int(num_train),
        "num_eval": int(num_eval),
        "pairs_per_shard": int(pairs_per_shard),
        "data_version": DATA_VERSION,
    }


def _write_shards(schema: DatasetSchema, tfrecord: Path, staging: Path, params: dict[str, Any],
                  max_objects: int | None, progress: bool, workers: int) -> dict[str, Any]:
    """Stream the file into shards in ``staging`` and write the manifest; returns the manifest."""
    started = time.perf_counter()
    path = str(tfrecord)
    sink = ShardSink(staging, params["num_train"], params["num_eval"], params["pairs_per_shard"])
    skipped = last_record = 0
    with contextlib.closing(iter_records(tfrecord)) as records, \
            tqdm(total=sink.total, desc=schema.name, unit="image", disable=not progress) as bar:
        jobs = ((schema.name, path, max_objects, chunk) for chunk in _chunks(records))
        results = ordered_map(_convert_chunk, jobs, workers)
        try:
            for record in itertools.chain.from_iterable(results):
                if isinstance(record, DataError):
                    raise record
                if record is None:
                    skipped += 1
                    continue
                sink.write(record)
                last_record = record.record
                bar.update(1)
                if sink.full:
                    break
        finally:
            results.close()
            sink.close()
    if not sink.full:
        reason = f", {skipped} with more than {max_objects} visible objects" if max_objects is not None else ""
        raise DataError(f"{path}: only {sink.written} usable records ({sink.written + skipped} read{reason}); "
                        f"need {params['num_train']} train + {params['num_eval']} eval")
    manifest = {
        "params": params,
        "resolution": schema.output_resolution,
        "factor_names": list(schema.factor_names),
        "factor_sizes": dict.fromkeys(schema.factor_names, 0),
        "max_objects": max_objects if max_objects is not None else schema.max_entities - 1,
        "train_shards": sink.shards["train"],
        "eval_shards": sink.shards["eval"],
        "source": {"file": tfrecord.name, "records_used": last_record + 1, "records_skipped": skipped},
        "generation_seconds": round(time.perf_counter() - started, 3),
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def convert_tfrecord(
    dataset: str,
    tfrecord: str | os.PathLike,
    out: str | os.PathLike,
    num_train: int = DEFAULT_NUM_TRAIN,
    num_eval: int = DEFAULT_NUM_EVAL,
    pairs_per_shard: int = 1_000,
    max_objects: int | None = None,
    progress: bool = True,
    num_workers: int | None = None,
) -> DatasetInfo:
    """Write ``train-*.tar``, ``eval-*.tar`` and ``manifest.json`` into ``out``; returns its info.

    Built in a temporary sibling directory and renamed into place when complete; an existing
    ``out`` with the same parameters is reused, any other non-empty ``out`` is refused.
    """
    schema = get_schema(dataset)
    tfrecord = Path(tfrecord)
    if not tfrecord.is_file():
        raise DataError(f"TFRecord file not found: {tfrecord}")
    if num_train < 1 or num_eval < 1 or pairs_per_shard < 1:
        raise DataError(f"num_train, num_eval and pairs_per_shard must be positive, got {num_train}, {num_eval}, "
                        f"{pairs_per_shard}")
    if max_objects is not None and max_objects < 0:
        raise DataError(f"max_objects must be >= 0, got {max_objects}")
    params = conversion_params(schema, tfrecord, num_train, num_eval, pairs_per_shard, max_objects)
    workers = num_workers if num_workers is not None else default_num_workers()
    return convert_into(out, params, num_train, pairs_per_shard, lambda staging: _write_shards(
        schema, tfrecord, staging, params, max_objects, progress, workers))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.convert_mod",
        description="Convert a DeepMind multi-object dataset (GZIP TFRecord) into frame-pair shards + manifest.json.",
    )
    parser.add_argument("--dataset", required=True, help=f"one of: {', '.join(SCHEMAS)}")
    parser.add_argument("--tfrecord", required=True, help="the dataset's .tfrecords file (GZIP-compressed)")
    parser.add_argument("--out", required=True,
                        help="dataset directory to create (train-*.tar, eval-*.tar, manifest.json)")
    parser.add_argument("--num-train", type=int, default=DEFAULT_NUM_TRAIN, help="training images (first records)")
    parser.add_argument("--num-eval", type=int, default=DEFAULT_NUM_EVAL, help="evaluation images (the next records)")
    parser.add_argument("--pairs-per-shard", type=int, default=1_000, help="samples per tar shard")
    parser.add_argument("--max-objects", type=int, default=None,
                        help="skip records with more visible objects (CLEVR6: 6)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: up to 2)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        info = convert_tfrecord(
            args.dataset, args.tfrecord, args.out, args.num_train, args.num_eval, args.pairs_per_shard,
            args.max_objects, progress=not args.no_progress, num_workers=args.workers,
        )
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"{info.root}: {info.num_train} train + {info.num_eval} eval {args.dataset} images "
        f"({info.resolution}x{info.resolution}, static pairs) in "
        f"{len(info.train_shards) + len(info.eval_shards)} shards, {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
