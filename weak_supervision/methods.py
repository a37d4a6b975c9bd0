"""The method registry and one loss entry point shared by the unsupervised and the weakly-supervised VAEs.

Unsupervised methods train on single images: given a pair, both frames are used as independent images
(the batch is concatenated), so a pair loader feeds every method. Weak methods encode both frames with the
same weights, share dimensions (adaptively or by label), aggregate, and average the two frames' ELBO terms:
loss = ½Σ_i recon(x_i) + β·½Σ_i KL(q̃_i || N(0, I))  (SPEC §5, dlib `GroupVAEBase` / `MLVae`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from weak_supervision import losses
from weak_supervision.aggregation import adaptive_share_mask, aggregate_pair, label_share_mask
from weak_supervision.model import GaussianEncoderVAE


@dataclass(frozen=True)
class MethodInfo:
    """What a method needs from its caller and how it shares dimensions."""

    name: str
    weak: bool = False
    aggregate: Literal["gvae", "mlvae"] | None = None
    uses_labels: bool = False
    needs_discriminator: bool = False


METHODS: dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("beta_vae"),
        MethodInfo("beta_tcvae"),
        MethodInfo("factor_vae", needs_discriminator=True),
        MethodInfo("dip_vae_i"),
        MethodInfo("dip_vae_ii"),
        MethodInfo("annealed_vae"),
        MethodInfo("ada_gvae", weak=True, aggregate="gvae"),
        MethodInfo("ada_mlvae", weak=True, aggregate="mlvae"),
        MethodInfo("gvae", weak=True, aggregate="gvae", uses_labels=True),
        MethodInfo("mlvae", weak=True, aggregate="mlvae", uses_labels=True),
    )
}

_DEFAULT_GAMMA = {"factor_vae": 10.0, "annealed_vae": 1000.0}
_DEFAULT_LAMBDA_D_FACTOR = {"dip_vae_i": 10.0, "dip_vae_ii": 1.0}


def method_info(name: str) -> MethodInfo:
    """Registry lookup with an error that lists the known names."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    return METHODS[name]


@dataclass
class MethodConfig:
    """Hyper-parameters of every method; None means dlib's default for the chosen method.

    gamma: FactorVAE's TC weight (default 10) or AnnealedVAE's capacity weight (default 1000).
    lambda_d_factor: lambda_d = lambda_d_factor·lambda_od (default 10 for DIP-VAE-I, 1 for DIP-VAE-II).
    mlvae_dlib_variance: ML-VAE aggregate with dlib's doubled variance instead of the paper's product.
    The discriminator's optimiser settings (dlib: Adam 1e-4, betas (0.5, 0.9)) are the caller's business.
    """

    method: str = "ada_gvae"
    beta: float = 1.0
    latent_dim: int = 10
    gamma: float | None = None
    lambda_od: float = 10.0
    lambda_d_factor: float | None = None
    c_max: float = 25.0
    iteration_threshold: int = 100_000
    mlvae_dlib_variance: bool = False

    def __post_init__(self) -> None:
        method_info(self.method)

    @property
    def resolved_gamma(self) -> float:
        return self.gamma if self.gamma is not None else _DEFAULT_GAMMA.get(self.method, 1.0)

    @property
    def resolved_lambda_d_factor(self) -> float:
        return self.lambda_d_factor if self.lambda_d_factor is not None else _DEFAULT_LAMBDA_D_FACTOR.get(self.method, 1.0)


def _check_inputs(info: MethodInfo, discriminator: nn.Module | None, frame0: Tensor, frame1: Tensor | None,
                  changed: Tensor | None) -> None:
    """Fail early, with the offending shapes, on inputs a method cannot use."""
    if frame1 is not None and frame1.shape != frame0.shape:
        raise ValueError(f"frame0 has shape {tuple(frame0.shape)}, frame1 has shape {tuple(frame1.shape)}; they must match")
    if info.weak and frame1 is None:
        raise ValueError(f"method {info.name!r} is weakly supervised and needs frame pairs: pass frame1")
    if info.uses_labels:
        if changed is None:
            raise ValueError(f"method {info.name!r} shares dimensions by label and needs `changed` [B, num_factors]")
        if changed.ndim != 2 or changed.shape[0] != frame0.shape[0]:
            raise ValueError(f"changed has shape {tuple(changed.shape)}; expected [{frame0.shape[0]}, num_factors]")
    if info.needs_discriminator and discriminator is None:
        raise ValueError(f"method {info.name!r} needs a discriminator (weak_supervision.FactorDiscriminator)")


def vae_loss(
    model: GaussianEncoderVAE,
    discriminator: nn.Module | None,
    config: MethodConfig,
    frame0: Tensor,
    frame1: Tensor | None = None,
    changed: Tensor | None = None,
    step: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Training loss of `config.method` on a batch (images in [0, 1]) and its scalar logs.

    For factor_vae the returned loss also contains the discriminator's loss; gradients are routed so a single
    backward through one optimiser (two parameter groups) trains each network on its own objective only.
    """
    info = method_info(config.method)
    _check_inputs(info, discriminator, frame0, frame1, changed)
    if info.weak:
        return _weak_loss(model, config, info, frame0, frame1, changed, generator)
    images = frame0 if frame1 is None else torch.cat([frame0, frame1])
    mu, logvar = model.encode(images)
    z = model.sample(mu, logvar, generator)
    recon = losses.bernoulli_reconstruction(model.decode(z), images)
    kl = losses.gaussian_kl(mu, logvar).mean()
    logs: dict[str, Tensor] = {}
    name, extra = config.method, None
    if name == "beta_vae":
        reg = losses.beta_vae_regulariser(mu, logvar, z, config.beta)
    elif name == "beta_tcvae":
        logs["tc"] = losses.total_correlation(z, mu, logvar, normalise=True)
        reg = losses.beta_tcvae_regulariser(mu, logvar, z, config.beta)
    elif name in ("dip_vae_i", "dip_vae_ii"):
        fn = losses.dip_vae_i_regulariser if name == "dip_vae_i" else losses.dip_vae_ii_regulariser
        reg = fn(mu, logvar, z, config.lambda_od, config.resolved_lambda_d_factor)
        logs["dip_penalty"] = reg - kl
    elif name == "annealed_vae":
        reg = losses.annealed_vae_regulariser(
            mu, logvar, z, step, config.resolved_gamma, config.c_max, config.iteration_threshold
        )
        logs["capacity"] = torch.tensor(losses.annealed_capacity(step, config.c_max, config.iteration_threshold))
    else:  # factor_vae
        reg, extra, logs["tc"] = losses.factor_vae_regulariser(
            mu, logvar, z, discriminator, config.resolved_gamma, generator
        )
        logs["discriminator_loss"] = extra
    vae_part = recon + reg
    loss = vae_part if extra is None else vae_part + extra
    logs |= {"loss": loss, "vae_loss": vae_part, "recon_loss": recon, "kl": kl, "regulariser": reg}
    return loss, {k: float(v.detach()) for k, v in logs.items()}


def _weak_loss(
    model: GaussianEncoderVAE,
    config: MethodConfig,
    info: MethodInfo,
    frame0: Tensor,
    frame1: Tensor,
    changed: Tensor | None,
    generator: torch.Generator | None,
) -> tuple[Tensor, dict[str, float]]:
    """Ada-GVAE / Ada-ML-VAE / GVAE / ML-VAE on a batch of pairs."""
    # two encoder passes (as dlib) so that identical frames get bit-identical posteriors
    (mu1, lv1), (mu2, lv2) = model.encode(frame0), model.encode(frame1)
    if info.uses_labels:
        share = label_share_mask(changed.to(mu1.device), mu1.shape[-1])
    else:
        share = adaptive_share_mask(mu1, lv1, mu2, lv2)
    (a_mu1, a_lv1), (a_mu2, a_lv2) = aggregate_pair(
        mu1, lv1, mu2, lv2, share, info.aggregate, dlib_variance=config.mlvae_dlib_variance
    )
    agg_mu, agg_lv = torch.cat([a_mu1, a_mu2]), torch.cat([a_lv1, a_lv2])
    z = model.sample(agg_mu, agg_lv, generator)
    images = torch.cat([frame0, frame1])
    recon = losses.bernoulli_reconstruction(model.decode(z), images)  # = ½ Σ_i mean-over-batch recon_i
    kl = losses.gaussian_kl(agg_mu, agg_lv).mean()  # = ½ Σ_i KL(q̃_i || N(0, I))
    loss = recon + config.beta * kl
    logs = {"loss": loss, "recon_loss": recon, "kl": kl, "shared_dims": share.float().sum(dim=-1).mean()}
    return loss, {k: float(v.detach()) for k, v in logs.items()}
