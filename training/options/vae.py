"""Options of `task: vae` (see training/tasks/vae.py). The method and its weights are checked by
weak_supervision.MethodConfig and the ground-truth source against the data set when the task is built."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from training.errors import ConfigError

if TYPE_CHECKING:
    from training.config import RunConfig


@dataclass
class VAEConfig:
    """Options of `task: vae`: the dlib VAE family on single-object frame pairs (weak_supervision/)."""

    method: str = "ada_gvae"  # see weak_supervision.METHODS
    beta: float = 1.0
    latent_dim: int = 10
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
    npz: str | None = None  # score against the original dSprites .npz instead of the procedural grid
    metric_seed: int = 0


#: restricted model options this task honours: none (the image-level VAEs have no slots)
MODEL_OPTIONS: tuple[str, ...] = ()


def model_options(config: RunConfig) -> tuple[str, ...]:
    return MODEL_OPTIONS


def validate(config: RunConfig) -> None:
    """Nothing to check here: the vae options are checked by the model library and against the data set
    when the task is built (see the module docstring)."""


__all__ = ["MODEL_OPTIONS", "VAEConfig", "model_options", "validate"]
