"""Options of `task: set_prediction` and their checks (see training/tasks/set_prediction.py). The checks that
need the data (num_slots against the generator's most objects, the property layout, the loss weights of that
layout) stay in the task."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from training.errors import ConfigError

if TYPE_CHECKING:
    from training.config import RunConfig


@dataclass
class SetPredictionConfig:
    """Options of `task: set_prediction` (slot and encoder sizes come from the model section); see
    slots/set_prediction.py and training/set_loss.py for what each switch does and why."""

    coordinate_factors: list = field(default_factory=lambda: ["x", "y"])  # regressed, in [0, 1]
    discrete_factors: list = field(default_factory=lambda: ["shape", "colour", "scale"])  # one-hot blocks
    head_hidden_dim: int = 128  # the per-slot MLP head: slot (+ geometry, glimpse) -> head_hidden_dim -> properties
    encoder_strides: list | None = None  # one stride per encoder layer; None: all 1
    input_skip: bool = True  # add a linear map of the pooled input pixels to the features
    slot_geometry: bool = True  # the head also sees each slot's attention mass, centroid and covariance
    attention_coordinates: bool = True  # coordinates = affine(attention centroid) + the head's correction
    glimpse_size: int = 19  # > 0: the head also reads a CNN's view of this many pixels around each slot; 0: off
    glimpse_channels: int = 32  # width of that CNN
    loss: str = "cross_entropy"  # on matched pairs: "cross_entropy" or "huber" (the official loss)
    huber_delta: float = 1.0
    coordinate_weight: float = 10.0  # weight of each coordinate entry (matching cost and loss)
    discrete_weight: float = 1.0  # ... of each one-hot entry
    object_weight: float = 1.0  # ... of the is-object flag
    segmentation_weight: float = 10.0  # attention segmentation loss (decoder-free, label-free); 0: off
    compactness_weight: float = 0.0  # spatial variance of the attention of slots matched to objects; 0: off
    # > 0: the slots come from the object-discovery autoencoder of the model section (decoder, mask prior,
    # frames, ...), trained with this weight on its pixel MSE beside the property loss; 0: the predictor's own
    # encoder and Slot Attention (then `encoder_strides` and `input_skip` above apply)
    reconstruction_weight: float = 0.0
    # what the head's geometry and glimpse read as each slot's map: "attention" (Slot Attention's), or
    # "decoder" (the autoencoder's alpha masks; needs reconstruction_weight > 0)
    head_masks: str = "attention"


#: restricted model options this task honours: none, as its own encoder and Slot Attention ignore them
MODEL_OPTIONS: tuple[str, ...] = ()
#: ... and those it honours with reconstruction_weight > 0, when its slots come from the object-discovery
#: autoencoder: the options that shape the slots (merging duplicates only changes the masks, and set
#: prediction reads the unmerged ones)
AUTOENCODER_MODEL_OPTIONS: tuple[str, ...] = ("slot_frames", "invariant_attention", "colour_values", "mask_prior",
                                              "encoder_strides")


def model_options(config: RunConfig) -> tuple[str, ...]:
    """The restricted model options set prediction honours under `config`."""
    return AUTOENCODER_MODEL_OPTIONS if config.set_prediction.reconstruction_weight > 0 else MODEL_OPTIONS


def model_option_hint(key: str) -> str:
    """What to add to the refusal of model option `key`, where a reconstruction loss would make it honoured."""
    return (" (or set_prediction with set_prediction.reconstruction_weight > 0)"
            if key in AUTOENCODER_MODEL_OPTIONS else "")


def validate(config: RunConfig) -> None:
    """Every check of the set_prediction section that needs no data set."""
    options = config.set_prediction
    for key in ("coordinate_weight", "discrete_weight", "object_weight", "compactness_weight"):
        if getattr(options, key) < 0:
            raise ConfigError(f"set_prediction.{key} must be >= 0, got {getattr(options, key)}")
    if options.loss not in ("cross_entropy", "huber"):
        raise ConfigError(f"set_prediction.loss must be 'cross_entropy' or 'huber', got {options.loss!r}")
    if options.segmentation_weight < 0:
        raise ConfigError(f"set_prediction.segmentation_weight must be >= 0, got {options.segmentation_weight}")
    if options.glimpse_size != 0 and options.glimpse_size < 4:
        raise ConfigError(f"set_prediction.glimpse_size must be 0 (off) or >= 4 pixels, got {options.glimpse_size}")
    if options.glimpse_channels < 1:
        raise ConfigError(f"set_prediction.glimpse_channels must be >= 1, got {options.glimpse_channels}")
    if options.huber_delta <= 0:
        raise ConfigError(f"set_prediction.huber_delta must be > 0, got {options.huber_delta}")
    if options.reconstruction_weight < 0:
        raise ConfigError(f"set_prediction.reconstruction_weight must be >= 0, "
                          f"got {options.reconstruction_weight}")
    if options.head_masks not in ("attention", "decoder"):
        raise ConfigError(f"set_prediction.head_masks must be 'attention' or 'decoder', got {options.head_masks!r}")
    if options.head_masks == "decoder" and options.reconstruction_weight <= 0:
        raise ConfigError("set_prediction.head_masks=decoder needs set_prediction.reconstruction_weight > 0: "
                          "only the autoencoder has decoder masks")
    if options.reconstruction_weight > 0 and options.encoder_strides is not None:
        raise ConfigError("set_prediction.encoder_strides is for the predictor's own encoder; with "
                          "reconstruction_weight > 0 the slots come from the autoencoder: "
                          "use model.encoder_strides")
    if options.reconstruction_weight > 0 and options.input_skip:
        raise ConfigError("set_prediction.input_skip is for the predictor's own encoder; with "
                          "reconstruction_weight > 0 the autoencoder reads colour through model.colour_values: "
                          "set set_prediction.input_skip=false")
    validate_encoder_strides(config)


def validate_encoder_strides(config: RunConfig) -> None:
    """The predictor's own encoder strides: one integer >= 1 per encoder layer of the model section."""
    strides = config.set_prediction.encoder_strides
    if strides is not None and (len(strides) != config.model.encoder_layers
                                or not all(isinstance(s, int) and s >= 1 for s in strides)):
        raise ConfigError(f"set_prediction.encoder_strides needs one stride per encoder layer "
                          f"({config.model.encoder_layers}), integers >= 1, got {list(strides)}")


__all__ = ["AUTOENCODER_MODEL_OPTIONS", "MODEL_OPTIONS", "SetPredictionConfig", "model_option_hint", "model_options",
           "validate", "validate_encoder_strides"]
