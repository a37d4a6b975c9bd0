"""Slot glimpses: a small CNN reads the image window around each slot's attention centroid.

A slot is a weighted mean of encoder features, and a mean keeps little of an object's outline: with perfect
(true-mask) binding, mean-pooled slot features still learned shape and scale slowly. A supervised CNN that
sees a window of pixels around one object, with that object's mask as a fourth channel, names its shape,
colour and scale almost as well as the pixels allow (`eval/property_ceiling.py`). A glimpse gives every
slot that view, with its own (soft, upsampled) attention map as the mask: a spatial-transformer-style crop
(Jaderberg et al. 2015) centred on the slot, read at the image's own pixel size. The crop is taken per slot
with the same weights, so slot permutation equivariance is kept.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


def centre_span(image_size: tuple[int, int], grid_size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(x, y) pixels spanned by [0, 1] over the feature grid's cell centres: feature cell i of a stride-s grid
    is centred on pixel s*i, so [0, 1] over the cells spans pixels 0..s*(w-1)."""
    cells = torch.tensor([grid_size[1], grid_size[0]], device=device, dtype=torch.float32)
    pixels = torch.tensor([image_size[1], image_size[0]], device=device, dtype=torch.float32)
    return (cells - 1).clamp_min(1) * pixels / cells


def window_centres(centres: torch.Tensor, image_size: tuple[int, int], grid_size: tuple[int, int]) -> torch.Tensor:
    """[B, K, 2]: `centres` (x, y in [0, 1] over the feature grid's cell centres) moved to the nearest whole
    pixel, in the same units (straight-through: the gradient is that of `centres`)."""
    span = centre_span(image_size, grid_size, centres.device)
    rounded = torch.round(centres.detach().float() * span) / span
    return centres + (rounded - centres).detach()  # straight-through: the value is rounded, the gradient is not


def glimpse_windows(images: torch.Tensor, attention: torch.Tensor, centres: torch.Tensor,
                    grid_size: tuple[int, int], size: int) -> torch.Tensor:
    """[B*K, 4, size, size]: RGB and the slot's attention map in a `size`-pixel window around each centre.

    images [B, 3, H, W]; attention [B, K, h*w] on the feature grid; centres [B, K, 2] as (x, y) in [0, 1]
    over the feature grid's cell centres (the attention centroid of `attention_geometry`). Centres are rounded
    to whole pixels, so the window holds the image's pixels unblurred; outside the image it reads zeros.
    Where the window sits is not learned (no gradient through the centres); what the attention map shows is.
    """
    batch, num_slots = attention.shape[:2]
    height, width = images.shape[-2:]
    maps = rearrange(attention, "b k (h w) -> (b k) 1 h w", h=grid_size[0], w=grid_size[1])
    maps = F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)
    inputs = torch.cat([repeat(images, "b c h w -> (b k) c h w", k=num_slots), maps.to(images.dtype)], dim=1)
    pixels = torch.tensor([width, height], device=images.device, dtype=torch.float32)
    on_pixels = rearrange(window_centres(centres.detach().float(), (height, width), grid_size), "b k c -> (b k) c")
    pixel_centre = on_pixels * centre_span((height, width), grid_size, images.device)
    offset = (2 * pixel_centre + 1) / pixels - 1  # that pixel's centre in align_corners=False units
    theta = torch.zeros(batch * num_slots, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1] = size / width, size / height
    theta[:, :, 2] = offset
    grid = F.affine_grid(theta, [batch * num_slots, 4, size, size], align_corners=False)
    return F.grid_sample(inputs, grid.to(inputs.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)


class SlotGlimpse(nn.Module):
    """Each slot's window (RGB + attention) -> a feature vector, with a strided CNN as the property oracle's.
    No global pooling: where the object sits in the window is what the coordinates are refined from."""

    def __init__(self, size: int = 19, channels: int = 32, out_dim: int = 128) -> None:
        super().__init__()
        if size < 4:
            raise ValueError(f"glimpse size must be >= 4 pixels, got {size}")
        self.size = size
        side = ((size + 1) // 2 + 1) // 2  # after the two stride-2 convolutions (padding 1)
        self.net = nn.Sequential(
            nn.Conv2d(4, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * channels * side**2, out_dim), nn.ReLU(),
        )

    def forward(self, images: torch.Tensor, attention: torch.Tensor, centres: torch.Tensor,
                grid_size: tuple[int, int]) -> torch.Tensor:
        """[B, K, out_dim]."""
        windows = glimpse_windows(images, attention, centres, grid_size, self.size)
        return rearrange(self.net(windows), "(b k) d -> b k d", b=attention.shape[0])
