"""Which latent dimensions two frames share, and the posterior both frames then use for them.

Everything here works on diagonal Gaussians given as (mu, logvar) of shape [..., D]: the leading dims may
be [B] for the image-level VAEs or [B, K] for matched slot pairs, so nothing assumes a 2-D input.

Conventions, checked against disentanglement_lib (dlib, `methods/weak/weak_vae.py`):
- The divergence is KL(q1_j || q2_j): frame 0's posterior measured *from* frame 1's, the direction dlib's
  `compute_kl(z_1, z_2, logvar_1, logvar_2)` uses. dlib omits the factor 1/2, i.e. it thresholds 2·KL; the
  threshold is scale invariant, so the mask is the same and we keep the true KL.
- dlib bins δ into two equal-width bins over [min δ, max δ] and keeps a dimension separate iff it falls
  in the upper bin, so δ_j == τ is kept separate: shared iff δ_j < τ. When all δ_j are equal (e.g. identical
  posteriors) the bin width is zero; we share every dimension then (nothing differs between the frames).
- ML-VAE: dlib's mean is the precision-weighted mean of the normalised product, but its variance is
  2·v1·v2/(v1+v2) (the normalised *geometric mean* of the two densities, twice the product's variance).
  `product_posterior` returns the paper's normalised product by default; `dlib_variance=True` gives dlib's.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

Posterior = tuple[Tensor, Tensor]


def kl_per_dim(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(q1_j || q2_j) for each dimension j, shape [..., D]; the distance Ada-* methods threshold."""
    return 0.5 * (torch.exp(logvar1 - logvar2) + (mu1 - mu2).square() * torch.exp(-logvar2) - 1.0 + logvar2 - logvar1)


def adaptive_share_mask(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor, fraction: float = 0.5) -> Tensor:
    """Bool [..., D], True where the dimension is shared: δ_j < τ = min δ + fraction·(max δ - min δ) per pair.

    Why adaptive: the number of changed factors is unknown, so the split between "changed" and "shared"
    dimensions is placed between the least and most different dimension of each pair; the paper's (and
    dlib's) split is halfway (`fraction` 0.5), other fractions are for exploring training schedules.
    """
    delta = kl_per_dim(mu1, logvar1, mu2, logvar2).detach()
    low, high = delta.amin(dim=-1, keepdim=True), delta.amax(dim=-1, keepdim=True)
    # (1 - f)·low + f·high: at f = 0.5 bit-identical to the midpoint (low + high)/2, since halving is exact
    return (delta < (1.0 - fraction) * low + fraction * high) | (high == low)


def label_share_mask(changed: Tensor, latent_dim: int) -> Tensor:
    """Bool [..., latent_dim] from known changed factors [..., F] (GVAE / ML-VAE).

    As in dlib, latent dimension i stands for factor i: it is kept separate iff factor i changed, and every
    other dimension (including those past the number of factors) is shared. dlib records only one changed
    factor per pair; with several changed factors each of their dimensions is kept separate.
    """
    num_factors = changed.shape[-1]
    if num_factors > latent_dim:
        raise ValueError(f"{num_factors} factors cannot be assigned to {latent_dim} latent dimensions")
    keep = torch.zeros(*changed.shape[:-1], latent_dim, dtype=torch.bool, device=changed.device)
    keep[..., :num_factors] = changed.bool()
    return ~keep


def average_posterior(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Posterior:
    """Ada-GVAE / GVAE aggregate: mean of the means and mean of the variances (log-space for stability)."""
    return 0.5 * (mu1 + mu2), torch.logaddexp(logvar1, logvar2) - math.log(2.0)


def product_posterior(
    mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor, dlib_variance: bool = False
) -> Posterior:
    """Ada-ML-VAE / ML-VAE aggregate: the normalised product q1·q2/∫q1·q2 (precision weighted).

    var = v1·v2/(v1+v2), mu = (mu1·v2 + mu2·v1)/(v1+v2). With `dlib_variance` the variance is doubled as in
    dlib (harmonic mean of the variances); the mean is the same either way.
    """
    weight1 = torch.sigmoid(logvar2 - logvar1)  # v2 / (v1 + v2): the more certain frame weighs more
    mu = weight1 * mu1 + (1.0 - weight1) * mu2
    logvar = logvar1 + logvar2 - torch.logaddexp(logvar1, logvar2)
    return mu, logvar + math.log(2.0) if dlib_variance else logvar


def aggregate_pair(
    mu1: Tensor,
    logvar1: Tensor,
    mu2: Tensor,
    logvar2: Tensor,
    share_mask: Tensor,
    kind: Literal["gvae", "mlvae"],
    dlib_variance: bool = False,
) -> tuple[Posterior, Posterior]:
    """Both frames' posteriors with shared dimensions replaced by the aggregate; the others untouched."""
    if kind == "gvae":
        mu, logvar = average_posterior(mu1, logvar1, mu2, logvar2)
    elif kind == "mlvae":
        mu, logvar = product_posterior(mu1, logvar1, mu2, logvar2, dlib_variance=dlib_variance)
    else:
        raise ValueError(f"unknown aggregation {kind!r}; expected 'gvae' or 'mlvae'")
    first = (torch.where(share_mask, mu, mu1), torch.where(share_mask, logvar, logvar1))
    second = (torch.where(share_mask, mu, mu2), torch.where(share_mask, logvar, logvar2))
    return first, second
