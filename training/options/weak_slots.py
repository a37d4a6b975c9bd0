"""Options of `task: weak_slots` and their checks (see training/tasks/weak_slots.py). The method, correspondence
and loss weights are checked against the model library's own lists and checks (weak_supervision.slot_pairs)
when the config is built, before anything is written."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from training.errors import ConfigError
from weak_supervision.slot_pairs import CORRESPONDENCES, PAIR_METHODS, SlotPairSettings
from weak_supervision.slot_vae import ORIENTATION_SCORES

if TYPE_CHECKING:
    from training.config import RunConfig


@dataclass
class WeakSlotsConfig:
    """Per-object weak supervision (task weak_slots): a slot VAE trained on frame pairs."""

    method: str = "ada_gvae"  # ada_gvae | ada_mlvae (matched slots share dims) | slot_vae (no pairing: baseline)
    beta: float = 1.0
    latent_dim: int = 10  # Gaussian latent per slot; its mean is the per-object representation
    glimpse_size: int = 0  # > 0: the posterior also reads a window of this many pixels around the slot (shape)
    initial_logvar: float = -4.0  # posterior log-variance at initialisation (std 0.14): lets the decoder learn
    warmup_start: int = 0  # steps without noise and KL (a deterministic autoencoder) before the warm-up
    warmup_steps: int = 0  # then beta and the sampling noise rise linearly from 0 over these steps
    correspondence: str = "init"  # init | init_hungarian | hungarian: how frame 1's slots follow frame 0's
    # with model.mask_prior=attention: the prior's weight falls linearly from 1 to 0 over `mask_prior_fade_steps`
    # steps from `mask_prior_fade_start` (0 steps: it stays), so that the decoder must draw the silhouettes
    # from the latents once the slots have bound
    mask_prior_fade_start: int = 0
    mask_prior_fade_steps: int = 0
    mask_prior_floor: float = 0.0  # the weight the fade ends at (in [0, 1)): a softened prior the decoder sharpens
    # with model.mask_prior=attention: > 0 adds a fifth decoder channel that must redraw the rendered masks (held
    # fixed) from the latents, with this weight on its KL (nats per pixel), so that the latent must say what shape
    # an object is; the rendering never reads the channel, so the segmentation stays the prior's (0: off)
    silhouette_weight: float = 0.0
    # > 0: an MLP must draw each slot's rendered mask, resampled on an outline_size^2 grid in the slot's own frame,
    # from its latent alone (binary cross-entropy, this weight): shape without position and size
    outline_weight: float = 0.0
    outline_size: int = 8
    outline_input: bool = False  # the posterior also reads the slot's attention on that grid (where shape is)
    # with model.orientation_search: what each candidate angle is scored by, the decoder's rendering of the
    # slot's pixels (render) or the outline head's drawing of the slot's outline read in the turned frame
    # (outline: needs outline_input; costs next to nothing)
    orientation_score: str = "render"
    share_floor: float = 0.1  # nats: a dimension this close in a slot pair is always shared (0: the paper's rule)
    recon_sigma: float = 0.1  # pixel std of the Gaussian likelihood (images in [-1, 1])
    object_metrics: list = field(default_factory=lambda: ["dci", "mig", "sap", "modularity"])
    dci_importance_model: str = "random_forest"
    metric_seed: int = 0


#: restricted model options this task honours: all of them (its slots come from the discovery autoencoder)
MODEL_OPTIONS: tuple[str, ...] = ("slot_frames", "invariant_attention", "colour_values", "mask_prior",
                                  "merge_duplicates", "encoder_strides", "orientation_search",
                                  "orientation_refine_steps", "orientation_window")


def model_options(config: RunConfig) -> tuple[str, ...]:
    return MODEL_OPTIONS


def validate(config: RunConfig) -> None:
    """Every check of the weak_slots section that needs no data."""
    if config.backbone.name is not None:
        raise ConfigError("task weak_slots uses the CNN encoder; unset backbone.name")
    options = config.weak_slots
    if options.method not in PAIR_METHODS:
        raise ConfigError(f"weak_slots.method must be one of {PAIR_METHODS}, got {options.method!r}")
    if options.correspondence not in CORRESPONDENCES:
        raise ConfigError(f"weak_slots.correspondence must be one of {CORRESPONDENCES}, "
                          f"got {options.correspondence!r}")
    pair_settings(config)
    fade = (options.mask_prior_fade_start, options.mask_prior_fade_steps)
    if min(fade) < 0:
        raise ConfigError(f"weak_slots.mask_prior_fade_start and mask_prior_fade_steps must be >= 0, got {fade}")
    if options.glimpse_size != 0 and options.glimpse_size < 4:
        raise ConfigError("weak_slots.glimpse_size must be 0 (no glimpse) or >= 4 pixels, "
                          f"got {options.glimpse_size}")
    if options.outline_input and options.outline_weight <= 0:
        raise ConfigError("weak_slots.outline_input feeds the outline grid to the posterior; it needs "
                          "weak_slots.outline_weight > 0")
    if options.orientation_score not in ORIENTATION_SCORES:
        raise ConfigError(f"weak_slots.orientation_score must be one of {', '.join(ORIENTATION_SCORES)}, got "
                          f"{options.orientation_score!r}")
    if options.orientation_score == "outline" and not (options.outline_input and config.model.orientation_search):
        raise ConfigError("weak_slots.orientation_score=outline scores the search's angles by the outline head: "
                          "it needs model.orientation_search and weak_slots.outline_input (with outline_weight > 0)")
    if options.orientation_score == "outline" and config.model.orientation_window:
        raise ConfigError("model.orientation_window renders each slot's window to score the search's angles; "
                          "weak_slots.orientation_score=outline scores them by the outline head without rendering, "
                          f"so the window would be ignored: set model.orientation_window=0 (got "
                          f"{config.model.orientation_window}) or weak_slots.orientation_score=render")
    if options.outline_weight > 0 and options.outline_size < 2:
        raise ConfigError(f"weak_slots.outline_size must be >= 2 cells, got {options.outline_size}")
    if not 0 <= options.mask_prior_floor < 1:
        raise ConfigError(f"weak_slots.mask_prior_floor must be in [0, 1), got {options.mask_prior_floor}")
    if options.silhouette_weight > 0 and config.model.mask_prior != "attention":
        raise ConfigError("weak_slots.silhouette_weight asks a decoder channel to redraw the masks the "
                          "attention prior shapes (without the prior the alpha channel draws them already); "
                          f"it needs model.mask_prior=attention, got {config.model.mask_prior!r}")
    if options.mask_prior_fade_steps > 0 and config.model.mask_prior != "attention":
        raise ConfigError("weak_slots.mask_prior_fade_steps fades the attention mask prior out; it needs "
                          f"model.mask_prior=attention, got {config.model.mask_prior!r}")


def pair_settings(config: RunConfig) -> SlotPairSettings:
    """How the pair objective trains a pair under the weak_slots section; its loss weights are checked by
    SlotPairSettings, whose refusal becomes a one-line ConfigError."""
    options = config.weak_slots
    try:
        return SlotPairSettings(method=options.method, beta=options.beta, correspondence=options.correspondence,
                                share_floor=options.share_floor, recon_sigma=options.recon_sigma,
                                silhouette_weight=options.silhouette_weight, outline_weight=options.outline_weight)
    except ValueError as error:
        raise ConfigError(f"weak_slots: {error}") from None


__all__ = ["MODEL_OPTIONS", "WeakSlotsConfig", "model_options", "pair_settings", "validate"]
