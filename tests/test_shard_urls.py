"""Shard urls that stream instead of naming local files: `pipe:` commands (the form for object storage,
e.g. `pipe:aws s3 cp s3://... -`) and http(s), brace-expanded, through the loaders and the training config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from data import DataError, PairBatch, eval_batches, make_generator, resolve_shards, train_batches, write_split


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    generator = make_generator("multi_dsprites", resolution=16)
    write_split(generator, out, "train", num_pairs=12, pairs_per_shard=4, seed=0, progress=False, num_workers=1)
    write_split(generator, out, "eval", num_pairs=6, pairs_per_shard=3, seed=0, progress=False, num_workers=1)
    return out


def pipe_url(shard_dir: Path, split: str, last: int) -> str:
    return f"pipe:cat {shard_dir}/{split}-{{000000..{last:06d}}}.tar"


def test_pipe_urls_are_brace_expanded_and_read_like_local_files(shard_dir: Path) -> None:
    urls = resolve_shards(pipe_url(shard_dir, "train", 2))
    assert urls == [f"pipe:cat {shard_dir}/train-{i:06d}.tar" for i in range(3)]
    local = sorted(str(p) for p in shard_dir.glob("train-*.tar"))

    def batches(shards: list[str]) -> list[PairBatch]:
        return list(train_batches(shards, 4, seed=0, epoch=0, batches_per_epoch=3, shuffle_buffer=8, resolution=16))

    for piped, direct in zip(batches(urls), batches(local), strict=True):
        assert piped.keys == direct.keys and torch.equal(piped.frame0, direct.frame0)
    keys = [key for batch in eval_batches(pipe_url(shard_dir, "eval", 1), 4, resolution=16) for key in batch.keys]
    assert keys == [f"eval-{i:08d}" for i in range(6)]


def test_http_urls_are_expanded_without_being_fetched() -> None:
    urls = resolve_shards("https://example.invalid/data/train-{000000..000002}.tar")
    assert urls == [f"https://example.invalid/data/train-{i:06d}.tar" for i in range(3)]


def test_a_failing_pipe_command_is_a_data_error_naming_the_shard(shard_dir: Path) -> None:
    url = f"pipe:cat {shard_dir}/missing.tar"
    with pytest.raises(DataError, match="the command that streams it failed") as error:
        list(eval_batches(url, 4, resolution=16))
    assert url in str(error.value)


def test_a_scheme_without_reader_is_refused_at_startup_with_the_pipe_form() -> None:
    with pytest.raises(DataError, match=r"pipe:aws s3 cp s3://bucket/train-0\.tar -"):
        resolve_shards("s3://bucket/train-{0..1}.tar")
    with pytest.raises(DataError, match="no command"):
        resolve_shards("pipe:  ")


def test_training_streams_from_pipe_urls(shard_dir: Path, tmp_path: Path) -> None:
    import train_slots

    args = ["--preset", "smoke", f"output_dir={tmp_path}", "name=piped", "train.max_steps=2", "train.eval_every=0",
            "eval.sweep_slots=[2]", f"data.train_shards={pipe_url(shard_dir, 'train', 2)}",
            f"data.eval_shards={pipe_url(shard_dir, 'eval', 1)}"]
    assert train_slots.main(args) == 0
    metrics = json.loads((tmp_path / "piped" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["eval_images"] == 12
