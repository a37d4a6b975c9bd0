"""Each slot's outline in its own frame, and a head that must draw it from the slot's latent.

With the attention mask prior the decoder takes every silhouette from the attention, so a slot's latent
never needs to say what shape an object is, and sharing between matched slots has only colour to work with.
The outline head makes the latent carry shape: from the latent alone it predicts the slot's rendered mask
resampled on a small grid centred on the slot's attention centroid and stretched by its frame's scales, so
position and size (already in the frame) are factored out and what is left is shape and orientation. A
small MLP suffices at that size, where a full-resolution decoder channel was too weak to draw 6-12-pixel
outlines (results/weak_slots_study/README.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from slots.frames import SlotFrames


def canonical_masks(masks: torch.Tensor, frames: SlotFrames, size: int, extent: float = 2.5) -> torch.Tensor:
    """[B, K, size, size]: masks [B, K, H, W] sampled (bilinear, zeros outside the image) on a size x size grid
    spanning `extent` frame scales either side of each slot's position (frames in [-1, 1] image units), turned
    back by the frame's angle when it has one (the inverse of `slots.frames.relative_grid`), so a turned object
    is read upright."""
    batch, num_slots = masks.shape[:2]
    steps = torch.linspace(-1.0, 1.0, size, device=masks.device, dtype=masks.dtype)
    y, x = torch.meshgrid(steps, steps, indexing="ij")
    unit = torch.stack([x, y], dim=-1)  # [size, size, 2] as (x, y), what grid_sample reads
    offset = extent * rearrange(frames.scales, "b k c -> b k 1 1 c") * unit
    if frames.angles is not None:  # offset = A(-angle) (scale * unit), A(a) = [[cos a, -sin a], [sin a, cos a]]
        cos = rearrange(frames.angles.cos(), "b k -> b k 1 1")
        sin = rearrange(frames.angles.sin(), "b k -> b k 1 1")
        a, b = offset.unbind(dim=-1)
        offset = torch.stack([cos * a + sin * b, -sin * a + cos * b], dim=-1)
    grid = rearrange(frames.positions, "b k c -> b k 1 1 c") + offset
    sampled = F.grid_sample(rearrange(masks, "b k h w -> (b k) 1 h w"), rearrange(grid, "b k h w c -> (b k) h w c"),
                            mode="bilinear", padding_mode="zeros", align_corners=False)
    return rearrange(sampled, "(b k) 1 h w -> b k h w", b=batch, k=num_slots)


class OutlineHead(nn.Module):
    """Latent [B, K, Z] -> outline logits [B, K, size, size] (the same MLP for every slot)."""

    def __init__(self, latent_dim: int, size: int = 8, hidden_dim: int = 128) -> None:
        super().__init__()
        if size < 2:
            raise ValueError(f"outline size must be >= 2, got {size}")
        self.size = size
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, size * size))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return rearrange(self.net(latents), "b k (h w) -> b k h w", h=self.size, w=self.size)


def outline_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per outline cell, averaged; the targets (rendered masks) are held fixed."""
    if logits.shape != targets.shape:
        raise ValueError(f"outline logits and targets differ in shape: {list(logits.shape)} vs {list(targets.shape)}")
    return F.binary_cross_entropy_with_logits(logits.float(), targets.detach().float().clamp(0, 1))
