"""Streaming batches of frame pairs from WebDataset shards (SPEC section 8).

Training: shards are *resampled* from a stream seeded by (seed, epoch) only, split over
ranks (``split_by_node``) and DataLoader workers (``split_by_worker``); samples go through
a seeded shuffle buffer and are batched inside the workers; every rank yields exactly
``batches_per_epoch`` batches, so uneven shards cannot hang DDP. The same (seed, epoch,
num_workers, world size) always gives the same batches, which is what lets a resumed run
restart epoch ``e`` and skip the batches it already consumed.

``webdataset.WebDataset(resampled=True)`` is not used because in webdataset 1.0.2 it seeds
its shard sampler from the pid, the clock and ``os.urandom`` (not reproducible), and its
tar reader ends a truncated shard silently; both stages are replaced here by seeded and
strict equivalents, the rest of the pipeline is webdataset's (``DataPipeline``,
``split_by_node``, ``split_by_worker``, ``batched``, ``with_epoch``). Do not pass the
loader to ``accelerate.prepare``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from einops import rearrange

from data.batch import PairBatch
from data.codec import decode_sample
from data.errors import DataError
from data.resolve import ShardSpec, resolve_shards
from data.tar_reader import expand_shards, group_samples

def _worker_seed(*words: int) -> int:
    """Seed for one (rank, worker) from the run's words, stable across processes."""
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    return int(np.random.SeedSequence([*words, rank, worker]).generate_state(1)[0])


class SeededShardSampler:
    """Pipeline source: an endless stream of ``{"url": ...}`` drawn with replacement.

    The draw depends on (seed, epoch) only, so every rank and worker sees the same stream
    and ``split_by_node``/``split_by_worker`` then deal it out without overlap.
    """

    def __init__(self, urls: list[str], seed: int, epoch: int):
        self.urls, self.seed, self.epoch = list(urls), int(seed), int(epoch)

    def __call__(self) -> Iterator[dict[str, str]]:
        rng = random.Random(int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0]))
        while True:
            yield {"url": self.urls[rng.randrange(len(self.urls))]}


class SeededShuffle:
    """Pipeline stage: a shuffle buffer whose random stream is fixed per (seed, epoch, rank, worker)."""

    def __init__(self, buffer_size: int, seed: int, epoch: int):
        self.buffer_size, self.seed, self.epoch = int(buffer_size), int(seed), int(epoch)

    def __call__(self, samples: Iterable[Any]) -> Iterator[Any]:
        if self.buffer_size <= 1:
            yield from samples
            return
        rng = random.Random(_worker_seed(self.seed, self.epoch, 1))
        buffer: list[Any] = []
        for sample in samples:
            if len(buffer) < self.buffer_size:
                buffer.append(sample)
                continue
            slot = rng.randrange(len(buffer))
            yield buffer[slot]
            buffer[slot] = sample
        rng.shuffle(buffer)
        yield from buffer


class DecodeSamples:
    """Pipeline stage: raw samples -> validated numpy arrays (DataError names the shard)."""

    def __init__(self, resolution: int | None):
        self.resolution = resolution

    def __call__(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for sample in samples:
            yield decode_sample(sample, self.resolution)


def collate_pairs(samples: list[dict[str, Any]]) -> PairBatch:
    """Decoded samples -> one batch: frames float32 [B,3,H,W] in [-1,1], masks int64 [B,H,W]."""
    frames = [rearrange(torch.from_numpy(np.stack([s[name] for s in samples])), "b h w c -> b c h w")
              .float().div(127.5).sub(1.0).contiguous() for name in ("frame0", "frame1")]
    masks = [torch.from_numpy(np.stack([s[name] for s in samples]).astype(np.int64)) for name in ("mask0", "mask1")]
    return PairBatch(*frames, *masks, factors=[s["factors"] for s in samples], keys=[s["__key__"] for s in samples])


class TrainBatches:
    """Iterable over one epoch of training batches, run by a torch DataLoader.

    It is a thin wrapper instead of ``wds.WebLoader`` for two reasons: a DataError raised in
    a worker comes back as one clean DataError (not torch's re-raised worker traceback), and
    the workers are shut down as soon as iteration stops, by error or early ``break`` (left
    to the garbage collector, torch can block for 5 s per loader).
    """

    def __init__(self, pipeline: wds.DataPipeline, num_workers: int, batches_per_epoch: int):
        self.pipeline = pipeline
        self.num_workers = int(num_workers)
        self.batches_per_epoch = int(batches_per_epoch)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[PairBatch]:
        # A private generator: DataLoader otherwise draws a seed from the global torch RNG each time an
        # epoch starts, so a resumed run's RNG stream (slot noise) would drift from an uninterrupted one.
        loader = torch.utils.data.DataLoader(
            self.pipeline, batch_size=None, num_workers=self.num_workers, generator=torch.Generator().manual_seed(0)
        )
        iterator = iter(loader)
        failure: DataError | None = None
        try:
            for _ in range(self.batches_per_epoch):
                try:
                    batch = next(iterator)
                except StopIteration:
                    return
                except DataError as error:
                    failure = DataError(_worker_error_message(error))
                    break
                yield batch
        finally:
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if callable(shutdown):
                shutdown()
            del iterator
        if failure is not None:
            raise failure  # raised outside the except block: no chained worker traceback


def _worker_error_message(error: DataError) -> str:
    """The original message of a DataError that torch re-raised from a worker process."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last_line = text.strip().splitlines()[-1]
    _, _, message = last_line.partition("DataError: ")
    return message or text


def train_batches(
    urls: ShardSpec,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    batches_per_epoch: int,
    shuffle_buffer: int = 1000,
    num_workers: int = 0,
    resolution: int | None,
) -> TrainBatches:
    """Exactly ``batches_per_epoch`` shuffled training batches (per rank) for this epoch.

    Deterministic for a given (seed, epoch, num_workers, world size): a resumed run rebuilds
    the loader for its epoch and skips the batches it had already consumed. Build a new
    loader for every epoch. Samples are drawn with replacement from the shards.
    """
    if batch_size < 1 or batches_per_epoch < 1:
        raise DataError(f"batch_size and batches_per_epoch must be positive, got {batch_size}, {batches_per_epoch}")
    if num_workers < 0:
        raise DataError(f"num_workers must be >= 0, got {num_workers}")
    shards = resolve_shards(urls)
    per_worker = -(-batches_per_epoch // max(num_workers, 1))
    pipeline = wds.DataPipeline(
        SeededShardSampler(shards, seed, epoch),
        wds.split_by_node,
        wds.split_by_worker,
        expand_shards,
        group_samples,
        DecodeSamples(resolution),
        SeededShuffle(shuffle_buffer, seed, epoch),
        wds.batched(batch_size, collation_fn=collate_pairs, partial=False),
    ).with_epoch(per_worker)
    return TrainBatches(pipeline, num_workers, batches_per_epoch)


def eval_batches(urls: ShardSpec, batch_size: int, resolution: int | None) -> wds.DataPipeline:
    """One pass over every eval pair, in shard order, no shuffling; the last batch may be short.

    Every rank sees every pair (evaluation is not split across processes).
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}")
    shards = resolve_shards(urls)
    return wds.DataPipeline(
        wds.SimpleShardList(shards),
        expand_shards,
        group_samples,
        DecodeSamples(resolution),
        wds.batched(batch_size, collation_fn=collate_pairs, partial=True),
    )
