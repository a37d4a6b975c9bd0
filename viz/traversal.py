"""Latent traversal picture: how each latent dimension changes the decoded image, the standard visual
check of a disentangled representation (one row per dimension, the others held at the image's mean)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange, repeat
from PIL import Image


@torch.no_grad()
def latent_traversal(model: torch.nn.Module, image: torch.Tensor, steps: int = 9, limit: float = 2.0) -> torch.Tensor:
    """Images [D, steps, C, H, W] in [0, 1]: row d sweeps dimension d of the posterior mean of `image`
    ([C, H, W] in [0, 1]) over [-limit, limit]; `model` has encode(x) -> (mu, logvar) and decode(z) -> logits."""
    mu, _ = model.encode(image[None])
    dims = mu.shape[-1]
    codes = repeat(mu[0], "d -> rows steps d", rows=dims, steps=steps).clone()
    values = torch.linspace(-limit, limit, steps, device=mu.device)
    for dim in range(dims):
        codes[dim, :, dim] = values
    logits = model.decode(rearrange(codes, "rows steps d -> (rows steps) d"))
    return rearrange(torch.sigmoid(logits), "(rows steps) c h w -> rows steps c h w", rows=dims)


def save_latent_traversal(model: torch.nn.Module, image: torch.Tensor, path: Path, steps: int = 9,
                          limit: float = 2.0) -> Path:
    """Write the traversal grid as a PNG, with the input image in the first column."""
    grid = latent_traversal(model, image, steps, limit).cpu()
    first = repeat(image.cpu(), "c h w -> rows 1 c h w", rows=grid.shape[0])
    grid = torch.cat([first, torch.full_like(first, 0.5), grid], dim=1)  # input | grey gap | traversal
    pixels = rearrange(grid, "rows cols c h w -> (rows h) (cols w) c")
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    Image.fromarray((pixels.clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(path)
    return path
