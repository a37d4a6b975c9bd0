"""Build the model and locate the data of a run from its config, the same way for training and evaluation."""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from data import GENERATORS, ensure_dataset, resolve_shards
from slots import (BackboneEncoder, BackboneError, DinosaurAutoencoder, ModelOptionError, TimmBackbone,
                   build_autoencoder)
from training.config import ConfigError, RunConfig
from training.options.backbone import check_backbone_weights

WEIGHTS_FILE = "model.safetensors"


def build_model(config: RunConfig) -> nn.Module:
    """The object-discovery model of a run: DINOSAUR for `task: dinosaur`, else the pixel autoencoder (with
    the CNN encoder, or a timm backbone when backbone.name is set) from its parts (`slots.build`), wrapped in
    duplicate merging at evaluation when model.merge_duplicates is set."""
    resolution = (config.data.resolution, config.data.resolution)
    model = config.model
    if config.task == "dinosaur":
        return DinosaurAutoencoder(
            build_backbone_encoder(config), resolution, num_slots=model.num_slots,
            num_iterations=model.num_iterations, slot_dim=model.slot_dim, mlp_hidden_dim=model.mlp_hidden_dim,
            decoder_hidden_dim=config.dinosaur.decoder_hidden_dim, decoder_layers=config.dinosaur.decoder_layers,
            implicit_grad=model.implicit_grad,
        )
    encoder = build_backbone_encoder(config) if config.backbone.name is not None else None
    with model_option_errors():
        return build_autoencoder(resolution, **asdict(model), encoder=encoder)


@contextmanager
def model_option_errors() -> Iterator[None]:
    """A model option no part is built for (or a bad duplicate-merging threshold) becomes a one-line
    ConfigError naming its key in the model section, for every builder of a run's slot model."""
    try:
        yield
    except ModelOptionError as error:
        raise ConfigError(f"model.{error}") from None


def build_backbone_encoder(config: RunConfig) -> BackboneEncoder:
    """The configured timm backbone (weights from the local file only) + LayerNorm/MLP to
    model.encoder_channels; every backbone problem becomes a one-line ConfigError."""
    options = config.backbone
    check_backbone_weights(config)  # at config build time too; again for a config changed since
    try:
        backbone = TimmBackbone(options.name, options.image_size or config.data.resolution,
                                weights=options.weights, frozen=options.frozen, feature_index=options.feature_index)
    except BackboneError as error:
        raise ConfigError(str(error)) from None
    if not options.pretrained and options.frozen:
        warnings.warn(f"backbone '{options.name}' is frozen with random weights (backbone.pretrained=false): "
                      "its features are a smoke test, not a representation to learn objects from", stacklevel=2)
    return BackboneEncoder(backbone, config.model.encoder_channels)


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
