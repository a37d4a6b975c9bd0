"""Brute-force search over a finite group of transforms, per sample, before the backward pass.

The seed posts' inner loop: score every candidate transform of every input with the model's loss (no
gradient), keep each input's argmin, then train on the chosen one. All candidates go through the model as
one batch (in chunks if memory asks for it), not one forward per group element.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange

from orientation.errors import OrientationError
from orientation.planar import rotate_images

LossFn = Callable[[torch.Tensor], torch.Tensor]  # a batch [n, ...] -> per-sample losses [n]


@dataclass(frozen=True)
class SearchResult:
    """Each sample's best group element, its loss, and every candidate's loss."""

    index: torch.Tensor  # [B] int64
    loss: torch.Tensor  # [B]
    losses: torch.Tensor  # [G, B]


@torch.no_grad()
def best_of_group(candidates: torch.Tensor, loss_fn: LossFn, chunk_size: int | None = None) -> SearchResult:
    """candidates [G, B, ...] (sample b under group element g) -> the per-sample argmin of `loss_fn`.

    `loss_fn` sees flat batches of up to `chunk_size` samples (all G * B at once when None). Ties go to the
    lowest index, so with the identity first an input that is already canonical stays as it is."""
    if candidates.dim() < 2:
        raise OrientationError(f"candidates must have shape [G, B, ...], got {tuple(candidates.shape)}")
    groups = candidates.shape[0]
    flat = rearrange(candidates, "g b ... -> (g b) ...")
    pieces = [flat] if chunk_size is None else flat.split(chunk_size)
    losses = torch.cat([loss_fn(piece).reshape(-1) for piece in pieces])
    if losses.shape[0] != flat.shape[0]:
        raise OrientationError(f"loss_fn must return one loss per sample: {flat.shape[0]} samples, "
                               f"{losses.shape[0]} losses")
    losses = rearrange(losses.float(), "(g b) -> g b", g=groups)
    loss, index = losses.min(dim=0)
    return SearchResult(index=index, loss=loss, losses=losses)


def refine_angles(images: torch.Tensor, angles: torch.Tensor, loss_fn: LossFn, steps: int = 10,
                  lr: float = 0.01) -> torch.Tensor:
    """A few Adam steps on each image's angle (the Affine VAE's refinement after the random restarts), the
    loss differentiated through the resampling only: the model's parameters get no gradient. Returns the
    refined angles, detached."""
    angle = angles.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([angle], lr=lr)
    for _ in range(steps):
        loss = loss_fn(rotate_images(images, angle)).sum()
        (gradient,) = torch.autograd.grad(loss, angle)
        angle.grad = gradient
        optimizer.step()
    return angle.detach()
