"""Options of `task: dinosaur` and their checks (see training/tasks/dinosaur.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from training.errors import ConfigError
from training.options.backbone import check_backbone_weights

if TYPE_CHECKING:
    from training.config import RunConfig


@dataclass
class DinosaurConfig:
    """Options of `task: dinosaur` (backbone in the backbone section, slots in the model section; the
    width of the MLP on the backbone features is model.encoder_channels)."""

    decoder_hidden_dim: int = 1024  # the per-slot MLP decoder's hidden width (DINOSAUR: 1024 / 2048)
    decoder_layers: int = 4  # its linear layers (DINOSAUR: 4)


#: restricted model options this task honours: none (no frames, colour values, mask prior or CNN strides)
MODEL_OPTIONS: tuple[str, ...] = ()


def model_options(config: RunConfig) -> tuple[str, ...]:
    return MODEL_OPTIONS


def validate(config: RunConfig) -> None:
    """DINOSAUR reconstructs a frozen timm backbone's features with an MLP decoder, whose pretrained weights
    must be a local file."""
    backbone = config.backbone
    if backbone.name is None:
        raise ConfigError("task dinosaur reconstructs a backbone's features: set backbone.name (a timm model)")
    if not backbone.frozen:
        raise ConfigError("task dinosaur reconstructs the frozen backbone's features (a trained one can collapse "
                          "them): set backbone.frozen=true")
    for key in ("decoder_hidden_dim", "decoder_layers"):
        if getattr(config.dinosaur, key) < 1:
            raise ConfigError(f"dinosaur.{key} must be >= 1, got {getattr(config.dinosaur, key)}")
    check_backbone_weights(config)


__all__ = ["DinosaurConfig", "MODEL_OPTIONS", "model_options", "validate"]
