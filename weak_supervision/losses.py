"""Reconstruction, KL and the unsupervised regularisers of dlib's VAE family, as pure functions.

Batch statistics (total correlation, DIP covariances, FactorVAE permutations) treat dim -2 as the batch and
dim -1 as the latent dimension, so [B, D] and [..., B, D] inputs both work. Every regulariser includes the
KL term where dlib's does (dlib: loss = reconstruction + regulariser).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.func import functional_call


def bernoulli_reconstruction(logits: Tensor, target: Tensor) -> Tensor:
    """dlib's "bernoulli" loss with logits: BCE summed over pixels, averaged over the batch; targets in [0, 1]."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return rearrange(bce, "b ... -> b (...)").sum(dim=1).mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the last dim: one value per sample."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum(dim=-1)


def gaussian_log_density(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(x; mu, exp(logvar))."""
    return -0.5 * ((x - mu).square() * torch.exp(-logvar) + logvar + math.log(2 * math.pi))


def total_correlation(z: Tensor, mu: Tensor, logvar: Tensor, normalise: bool = False) -> Tensor:
    """Minibatch-weighted-sampling estimate of TC(q(z)) over the batch (beta-TCVAE, dlib).

    q(z_i) and its marginals are estimated by mixing the posteriors of the batch. dlib drops the constant
    -(D-1)·log(batch·dataset size) as it has no gradient; `normalise=True` adds (D-1)·log B back, the TC of
    the batch's own mixture, which is ~0 for independent latents (useful for logging and tests).
    """
    log_q = gaussian_log_density(z.unsqueeze(-2), mu.unsqueeze(-3), logvar.unsqueeze(-3))  # [..., B, B, D]
    log_qz = torch.logsumexp(log_q.sum(dim=-1), dim=-1)
    log_qz_product = torch.logsumexp(log_q, dim=-2).sum(dim=-1)
    tc = (log_qz - log_qz_product).mean(dim=-1)
    if normalise:
        tc = tc + (z.shape[-1] - 1) * math.log(z.shape[-2])
    return tc.mean()


def covariance(x: Tensor) -> Tensor:
    """Population covariance over dim -2 (dlib: E[x xᵀ] − E[x] E[x]ᵀ), shape [..., D, D]."""
    centred = x - x.mean(dim=-2, keepdim=True)
    return torch.einsum("...bi,...bj->...ij", centred, centred) / x.shape[-2]


def dip_penalty(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """lambda_od·Σ offdiag² + lambda_d·Σ (diag − 1)²: distance of the covariance from the identity."""
    diag = torch.diagonal(cov, dim1=-2, dim2=-1)
    off_diag = cov - torch.diag_embed(diag)
    return (lambda_od * off_diag.square().sum(dim=(-2, -1)) + lambda_d * (diag - 1.0).square().sum(dim=-1)).mean()


def beta_vae_regulariser(mu: Tensor, logvar: Tensor, z: Tensor, beta: float = 1.0) -> Tensor:
    """beta-VAE: beta·KL."""
    return beta * gaussian_kl(mu, logvar).mean()


def beta_tcvae_regulariser(mu: Tensor, logvar: Tensor, z: Tensor, beta: float = 1.0) -> Tensor:
    """beta-TCVAE with alpha = gamma = 1: KL + (beta − 1)·TC."""
    return gaussian_kl(mu, logvar).mean() + (beta - 1.0) * total_correlation(z, mu, logvar)


def dip_vae_i_regulariser(
    mu: Tensor, logvar: Tensor, z: Tensor, lambda_od: float = 10.0, lambda_d_factor: float = 10.0
) -> Tensor:
    """DIP-VAE-I: KL + penalty on Cov[mu] (lambda_d = lambda_d_factor·lambda_od, dlib's parametrisation)."""
    return gaussian_kl(mu, logvar).mean() + dip_penalty(covariance(mu), lambda_od, lambda_d_factor * lambda_od)


def dip_vae_ii_regulariser(
    mu: Tensor, logvar: Tensor, z: Tensor, lambda_od: float = 10.0, lambda_d_factor: float = 1.0
) -> Tensor:
    """DIP-VAE-II: KL + penalty on Cov[z] = Cov[mu] + E[diag exp(logvar)]."""
    cov_z = covariance(mu) + torch.diag_embed(logvar.exp().mean(dim=-2))
    return gaussian_kl(mu, logvar).mean() + dip_penalty(cov_z, lambda_od, lambda_d_factor * lambda_od)


def annealed_capacity(step: int, c_max: float = 25.0, iteration_threshold: int = 100_000) -> float:
    """Capacity C grows linearly from 0 to c_max over iteration_threshold steps, then stays."""
    return min(c_max, c_max * step / iteration_threshold)


def annealed_vae_regulariser(
    mu: Tensor,
    logvar: Tensor,
    z: Tensor,
    step: int = 0,
    gamma: float = 1000.0,
    c_max: float = 25.0,
    iteration_threshold: int = 100_000,
) -> Tensor:
    """AnnealedVAE (Burgess et al.): gamma·|KL − C(step)|."""
    return gamma * (gaussian_kl(mu, logvar).mean() - annealed_capacity(step, c_max, iteration_threshold)).abs()


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each latent dimension shuffled independently across the batch: samples of ∏_j q(z_j)."""
    order = torch.rand(z.shape, generator=generator, device=z.device).argsort(dim=-2)
    return z.gather(-2, order)


def factor_vae_tc(z: Tensor, discriminator: nn.Module) -> Tensor:
    """The VAE's TC estimate E[logit_joint − logit_permuted], differentiable in z only.

    The discriminator runs with detached copies of its parameters, so this term can share one backward pass
    and one optimiser with the discriminator's own loss without training the discriminator.
    """
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    frozen |= {name: b for name, b in discriminator.named_buffers()}
    logits = functional_call(discriminator, frozen, (z,))
    return (logits[..., 0] - logits[..., 1]).mean()


def factor_discriminator_loss(z: Tensor, discriminator: nn.Module, generator: torch.Generator | None = None) -> Tensor:
    """Cross-entropy of telling z (class 0) from permute_dims(z) (class 1); detached, so it trains only the critic."""
    z = z.detach()
    joint = F.log_softmax(discriminator(z), dim=-1)[..., 0]
    permuted = F.log_softmax(discriminator(permute_dims(z, generator)), dim=-1)[..., 1]
    return -0.5 * (joint.mean() + permuted.mean())


def factor_vae_regulariser(
    mu: Tensor,
    logvar: Tensor,
    z: Tensor,
    discriminator: nn.Module,
    gamma: float = 10.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """FactorVAE: (KL + gamma·TC for the VAE, the discriminator's loss, TC) — add the first two and backprop once."""
    tc = factor_vae_tc(z, discriminator)
    return gaussian_kl(mu, logvar).mean() + gamma * tc, factor_discriminator_loss(z, discriminator, generator), tc
