"""Build the model and locate the data of a run from its config, the same way for training and evaluation."""
from __future__ import annotations

import inspect
from dataclasses import asdict
from pathlib import Path

import torch

from data import GENERATORS, ensure_dataset, resolve_shards
from slots import SlotAutoencoder
from training.config import ConfigError, RunConfig

WEIGHTS_FILE = "model.safetensors"


def build_model(config: RunConfig) -> SlotAutoencoder:
    resolution = (config.data.resolution, config.data.resolution)
    return SlotAutoencoder(resolution=resolution, **asdict(config.model))


def dataset_urls(config: RunConfig, progress: bool = True) -> tuple[list[str], list[str], dict]:
    """(train URLs, eval URLs, description). Explicit shards win; otherwise the generator's cached shards."""
    data = config.data
    if data.train_shards or data.eval_shards:
        if not (data.train_shards and data.eval_shards):
            raise ConfigError("data.train_shards and data.eval_shards must be given together")
        description = {"train_shards": data.train_shards, "eval_shards": data.eval_shards}
        return resolve_shards(data.train_shards), resolve_shards(data.eval_shards), description
    if data.generator not in GENERATORS:
        raise ConfigError(f"unknown data.generator '{data.generator}'; known: {', '.join(sorted(GENERATORS))}")
    kwargs = dict(data.generator_kwargs)
    if "resolution" in inspect.signature(GENERATORS[data.generator]).parameters:
        kwargs.setdefault("resolution", data.resolution)
    info = ensure_dataset(
        data.generator,
        kwargs,
        out_root=data.root,
        num_train=data.num_train,
        num_eval=data.num_eval,
        pairs_per_shard=data.pairs_per_shard,
        seed=data.seed,
        progress=progress,
    )
    if info.resolution != data.resolution:
        raise ConfigError(f"data.generator '{data.generator}' renders {info.resolution}x{info.resolution} images "
                          f"but data.resolution is {data.resolution}: set data.resolution={info.resolution}")
    description = {"directory": str(info.root), **info.manifest["params"]}
    return list(info.train_shards), list(info.eval_shards), description


def load_weights(model: torch.nn.Module, checkpoint: Path) -> None:
    """Load the model weights of an Accelerate checkpoint directory (or a bare safetensors file)."""
    from safetensors.torch import load_file

    path = Path(checkpoint)
    file = path / WEIGHTS_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no model weights at {file}")
    model.load_state_dict(load_file(str(file)))
