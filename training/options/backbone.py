"""Checks of the backbone section that every task reading a timm backbone (discovery with backbone.name,
dinosaur) runs at config build time: a missing weights file is named in one line before anything is written,
not after the data set has been generated."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from slots.backbone_weights import how_to_provide
from training.errors import ConfigError

if TYPE_CHECKING:
    from training.config import RunConfig


def check_backbone_weights(config: RunConfig) -> None:
    """Refuse pretrained weights without a local file, or a file that is not there (nothing is downloaded)."""
    options = config.backbone
    if options.name is None or not options.pretrained:
        return
    if options.weights is None:
        raise ConfigError(f"backbone.pretrained is true but backbone.weights is not set (weights are never "
                          f"downloaded at run time); {how_to_provide(options.name)}")
    if not Path(options.weights).expanduser().is_file():
        raise ConfigError(f"backbone weights file not found: {options.weights}; {how_to_provide(options.name)}")


__all__ = ["check_backbone_weights"]
