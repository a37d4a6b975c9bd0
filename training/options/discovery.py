"""Options of `task: discovery`: it has no section of its own (the model and backbone sections describe it);
it honours every model option that shapes the Slot Attention autoencoder."""
from __future__ import annotations

from typing import TYPE_CHECKING

from training.options.backbone import check_backbone_weights

if TYPE_CHECKING:
    from training.config import RunConfig


#: model options that not every task honours; this task honours all of them
MODEL_OPTIONS: tuple[str, ...] = ("slot_frames", "invariant_attention", "colour_values", "mask_prior",
                                  "merge_duplicates", "encoder_strides", "orientation_search",
                                  "orientation_refine_steps", "orientation_window")


def model_options(config: RunConfig) -> tuple[str, ...]:
    """The restricted model options this task honours under `config`."""
    return MODEL_OPTIONS


def validate(config: RunConfig) -> None:
    """Beyond the shared sections' checks (training.config): a timm backbone's weights file is there."""
    check_backbone_weights(config)


__all__ = ["MODEL_OPTIONS", "model_options", "validate"]
