"""Options of `task: vae` (see training/tasks/vae.py). The method and its weights are checked here, by the
model library's own check (weak_supervision.MethodConfig), when the config is built; the ground-truth source
is checked against the data set when the task is built."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from training.errors import ConfigError
from training.schedule import linear_ramp
from weak_supervision.methods import MethodConfig
from weak_supervision.model import DECODERS

if TYPE_CHECKING:
    from training.config import RunConfig


@dataclass
class VAEConfig:
    """Options of `task: vae`: the dlib VAE family on single-object frame pairs (weak_supervision/)."""

    method: str = "ada_gvae"  # see weak_supervision.METHODS
    beta: float = 1.0
    # beta rises linearly from 1 to `beta` over these steps (0: constant). Early on the KL weight decides how
    # many latents stay active; a gentle start keeps a factor from spreading over a rotated basis of several.
    beta_warmup_steps: int = 0
    latent_dim: int = 10
    # "deconv": dlib's dense + transposed-convolution decoder; "broadcast": z tiled over an 8x8 grid beside
    # coordinate channels (weak_supervision.model.BroadcastDecoder), so position fits one latent per axis
    decoder: str = "deconv"
    # Train this many VAEs side by side from different initialisations for `candidate_steps` steps, then keep
    # the one with the lowest mean training reconstruction over the last `candidate_window` of them (the
    # paper's unsupervised model selection, inside one run; weak_supervision/candidates.py). 1: one VAE.
    candidates: int = 1
    candidate_steps: int = 1500
    candidate_window: int = 500
    gamma: float | None = None  # FactorVAE TC weight (10) / AnnealedVAE capacity weight (1000) when None
    lambda_od: float = 10.0  # DIP-VAE off-diagonal weight
    lambda_d_factor: float | None = None  # DIP-VAE diagonal weight / lambda_od (10 for I, 1 for II when None)
    c_max: float = 25.0  # AnnealedVAE final capacity (nats)
    iteration_threshold: int = 100000  # AnnealedVAE steps to reach c_max
    discriminator_lr: float = 1e-4  # FactorVAE discriminator, Adam betas (0.5, 0.9) as dlib
    grayscale: bool = True  # train on one channel (dSprites is white on black), else RGB
    # scored at the end of training; BetaVAE / FactorVAE (slow at dlib's sizes): `python -m eval.disentangle`
    metrics: list = field(default_factory=lambda: ["mig", "dci", "sap", "modularity"])
    metric_sizes: dict = field(default_factory=dict)  # overrides of dlib's sample sizes, e.g. {dci_num_train: 2000}
    dci_importance_model: str = "random_forest"  # "gbt" = dlib's GradientBoostingClassifier: ~25x slower
    quick_mig_points: int = 2000  # MIG during training, on this many points
    quick_dci_points: int = 0  # also DCI during training from this many points (+ half as many held out); 0: off
    npz: str | None = None  # score against the original dSprites .npz instead of the procedural grid
    metric_seed: int = 0


#: restricted model options this task honours: none (the image-level VAEs have no slots)
MODEL_OPTIONS: tuple[str, ...] = ()


def model_options(config: RunConfig) -> tuple[str, ...]:
    return MODEL_OPTIONS


def validate(config: RunConfig) -> None:
    """An unknown method or a warm-up that cannot rise is refused before anything is written."""
    method_config(config)
    check_candidates(config)
    options = config.vae
    if options.decoder not in DECODERS:
        raise ConfigError(f"vae.decoder must be one of {', '.join(DECODERS)}, got {options.decoder!r}")
    if options.beta_warmup_steps < 0:
        raise ConfigError(f"vae.beta_warmup_steps must be >= 0, got {options.beta_warmup_steps}")
    if options.beta_warmup_steps and options.beta < 1:
        raise ConfigError(f"vae.beta_warmup_steps raises beta from 1 to vae.beta: needs vae.beta >= 1, got "
                          f"{options.beta} (set vae.beta_warmup_steps=0 for a constant beta below 1)")


def check_candidates(config: RunConfig) -> None:
    """A candidate set that cannot choose, or a method whose extra network it does not copy, is refused."""
    options = config.vae
    if options.candidates < 1:
        raise ConfigError(f"vae.candidates must be >= 1, got {options.candidates}")
    if options.candidates == 1:
        return
    if method_config(config).method == "factor_vae":
        raise ConfigError("vae.candidates > 1 trains several VAEs against one discriminator; factor_vae needs one "
                          "discriminator per VAE: use vae.candidates=1 with factor_vae")
    if options.candidate_steps < 1:
        raise ConfigError(f"vae.candidate_steps must be >= 1, got {options.candidate_steps}")
    if not 1 <= options.candidate_window <= options.candidate_steps:
        raise ConfigError(f"vae.candidate_window must be in [1, vae.candidate_steps={options.candidate_steps}], got "
                          f"{options.candidate_window}")


def warmed_beta(beta: float, warmup_steps: int, step: int) -> float:
    """beta at `step`: linear from 1 to `beta` over `warmup_steps`, then constant."""
    return 1.0 + (beta - 1.0) * linear_ramp(step, 0, warmup_steps)


def method_config(config: RunConfig) -> MethodConfig:
    """The library's settings of the vae section's method; a one-line ConfigError if it refuses them."""
    options = config.vae
    try:
        return MethodConfig(method=options.method, beta=options.beta, latent_dim=options.latent_dim,
                            gamma=options.gamma, lambda_od=options.lambda_od, lambda_d_factor=options.lambda_d_factor,
                            c_max=options.c_max, iteration_threshold=options.iteration_threshold)
    except ValueError as error:
        raise ConfigError(f"vae.method: {error}") from None


__all__ = ["MODEL_OPTIONS", "VAEConfig", "check_candidates", "method_config", "model_options", "validate",
           "warmed_beta"]
