"""The one place where the model options of a run (training/config.py, `model:` section) become the parts of
the Slot Attention autoencoder: every option string is checked here, with a one-line error naming the option
and its allowed values, and nowhere else.

Parts are built in a fixed order (encoder, slot initialiser, grouping, decoder, colour values), the order
their parameters are drawn in, so a seeded build gives the same weights as it always has.
"""
from __future__ import annotations

from typing import Any, TypeVar

from torch import nn

from slots.attention import SlotAttention
from slots.decoder import SpatialBroadcastDecoder
from slots.duplicates import MergeDuplicates
from slots.encoder import CNNEncoder, ColourValues, auto_strides
from slots.frames import AttentionFrames, InvariantSlotAttention
from slots.init import GaussianSlotInit
from slots.mask_prior import AttentionMaskPrior
from slots.model import SlotAutoencoder
from slots.orientation_search import SlotOrientationSearch

# model.slot_frames: the frames the decoder renders each slot in ("none": image coordinates): the position
# only, position and scale, or position and one scale for both axes
SLOT_FRAMES: dict[str, dict | None] = {"none": None, "translation": dict(scale=False), "translation_scale": {},
                                       "translation_isotropic": dict(isotropic=True)}
# model.invariant_attention: keys in slot frames: the paper's MLP encoding (slots start at the centre), or the
# cheap quadratic bias with slots starting at random positions, on the grid relative to each slot's position
# and scale, or to its position only (distances in image units, so a slot spread over two distant objects is
# not excused)
INVARIANT_ATTENTION: dict[str, dict | None] = {
    "none": None, "mlp": dict(key_encoding="mlp", initial_scale=0.1),
    "quadratic": dict(key_encoding="quadratic", random_positions=True, initial_scale=0.2),
    "quadratic_translation": dict(key_encoding="quadratic", random_positions=True, initial_scale=0.2,
                                  scale_invariant=False),
}
# model.mask_prior: what the decoder's alpha logits are added to before the softmax over slots
MASK_PRIORS: dict[str, type[nn.Module] | None] = {"none": None, "attention": AttentionMaskPrior}

Model = TypeVar("Model", bound=nn.Module)


class ModelOptionError(ValueError):
    """A model option has a value no part is built for; the message names the option and the allowed values."""


def choice(option: str, value: Any, allowed: dict) -> Any:
    """`allowed[value]`, or a one-line error naming `option` and the allowed values."""
    if not isinstance(value, str) or value not in allowed:
        raise ModelOptionError(f"{option} must be one of {tuple(allowed)}, got {value!r}")
    return allowed[value]


def autoencoder_parts(
    resolution: tuple[int, int] = (32, 32),
    num_slots: int = 5,
    num_iterations: int = 3,
    slot_dim: int = 64,
    mlp_hidden_dim: int = 128,
    encoder_channels: int = 32,
    encoder_layers: int = 4,
    encoder_kernel: int = 5,
    encoder_strides: tuple[int, ...] | list[int] | str | None = None,
    decoder_channels: int = 32,
    decoder_layers: int = 3,
    decoder_kernel: int = 5,
    broadcast_size: int | None = None,
    implicit_grad: bool = True,
    slot_frames: str = "none",
    frame_scale_factor: float = 1.0,
    invariant_attention: str = "none",
    colour_values: bool = False,
    mask_prior: str = "none",
    encoder: nn.Module | None = None,
    decoder_input_dim: int | None = None,
    silhouette_head: bool = False,
    orientation_search: int = 0,
    orientation_refine_steps: int = 0,
    orientation_window: int = 0,
) -> dict[str, Any]:
    """The keyword arguments of `SlotAutoencoder` (or of a subclass, such as the slot VAE) for these options.

    `encoder` replaces the CNN encoder (e.g. a `BackboneEncoder` around a timm model; the `encoder_*` sizes
    are then unused); `decoder_input_dim` is the width the decoder reads when it is not the slot's (a slot VAE
    decodes a latent of its own size); `silhouette_head` adds the decoder's fifth channel.
    """
    frames_kind = choice("slot_frames", slot_frames, SLOT_FRAMES)
    invariant = choice("invariant_attention", invariant_attention, INVARIANT_ATTENTION)
    prior = choice("mask_prior", mask_prior, MASK_PRIORS)
    if encoder is None:
        if encoder_strides == "auto":  # the grid follows the image size (slots.encoder.auto_strides)
            encoder_strides = auto_strides(max(resolution), encoder_layers)
        elif isinstance(encoder_strides, str):
            raise ModelOptionError(f"encoder_strides must be 'auto', a list of strides or null, got {encoder_strides!r}")
        encoder = CNNEncoder(encoder_channels, encoder_layers, encoder_kernel, strides=encoder_strides)
    slot_init = GaussianSlotInit(slot_dim, num_slots)
    slot_attention = (
        SlotAttention(encoder.out_dim, slot_dim, mlp_hidden_dim, implicit_grad=implicit_grad) if invariant is None
        else InvariantSlotAttention(encoder.out_dim, slot_dim, mlp_hidden_dim, implicit_grad=implicit_grad,
                                    frame_scale_factor=frame_scale_factor, **invariant))
    decoder = SpatialBroadcastDecoder(
        decoder_input_dim or slot_dim, tuple(resolution), decoder_channels, decoder_layers, decoder_kernel,
        broadcast_size, relative_positions=frames_kind is not None, frame_scale_factor=frame_scale_factor,
        out_channels=5 if silhouette_head else 4,
    )
    colour = ColourValues(slot_dim) if colour_values else None
    search = None
    if orientation_search:
        if frames_kind is None:
            raise ModelOptionError("orientation_search turns each slot's frame: set slot_frames (e.g. "
                                   "translation_isotropic)")
        if orientation_window and broadcast_size is not None:
            raise ModelOptionError("orientation_window renders each slot's window at full resolution: it needs "
                                   "broadcast_size null (no upsampling decoder)")
        try:
            search = SlotOrientationSearch(orientation_search, orientation_refine_steps, window=orientation_window)
        except ValueError as error:
            raise ModelOptionError(f"orientation_search: {error}") from None
    elif orientation_refine_steps or orientation_window:
        raise ModelOptionError("orientation_refine_steps and orientation_window belong to an orientation search: "
                               "set orientation_search (the number of angles)")
    return dict(encoder=encoder, slot_init=slot_init, slot_attention=slot_attention, decoder=decoder,
                resolution=tuple(resolution), num_iterations=num_iterations,
                alpha_prior=None if prior is None else prior(), colour_values=colour,
                slot_frames=None if frames_kind is None else AttentionFrames(**frames_kind),
                orientation_search=search)


def build_autoencoder(resolution: tuple[int, int] = (32, 32), merge_duplicates: float | None = None,
                      model_class: type[SlotAutoencoder] = SlotAutoencoder, **options: Any) -> SlotAutoencoder:
    """The autoencoder of these model options (`autoencoder_parts`), wrapped in duplicate merging at
    evaluation when `merge_duplicates` (a cosine threshold) is set. `model_class` is a subclass that takes
    the same parts (bench/'s naive baseline)."""
    return with_duplicate_merging(model_class(**autoencoder_parts(resolution, **options)), merge_duplicates)


def with_duplicate_merging(model: Model, threshold: float | None) -> Model:
    """`model` with `MergeDuplicates` attached at evaluation when `threshold` (model.merge_duplicates) is set:
    the one place every builder of a slot model turns that option into the wrapper, so the model classes
    never take it."""
    if threshold is None:
        return model
    try:
        MergeDuplicates(model, threshold)
    except ValueError as error:
        raise ModelOptionError(str(error)) from None
    return model
