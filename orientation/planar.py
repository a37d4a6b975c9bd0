"""Planar rotations of images: a grid of R angles over the full turn, applied by bilinear resampling.

Angles are in radians, counter-clockwise as an image is displayed (rows top to bottom): an angle of pi/2
equals `torch.rot90(images, 1, dims=(-2, -1))` on a square image. Differentiable in the angles, so a search
over the grid can be refined by gradient steps.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from orientation.errors import OrientationError


def planar_angles(count: int, device: torch.device | str | None = None) -> torch.Tensor:
    """[count] angles 2 pi k / count, k = 0 .. count - 1 (angle 0, the identity, first)."""
    if count < 1:
        raise OrientationError(f"the number of planar angles must be >= 1, got {count}")
    return torch.arange(count, device=device, dtype=torch.float32) * (2 * math.pi / count)


def rotate_images(images: torch.Tensor, angles: torch.Tensor | float) -> torch.Tensor:
    """Rotate [B, C, H, W] images about their centre, image b by angles[b] (or all by one angle); zeros
    come in at the corners. Bilinear: exact for multiples of pi/2 on square images."""
    if images.dim() != 4:
        raise OrientationError(f"images must have shape [B, C, H, W], got {tuple(images.shape)}")
    angles = torch.as_tensor(angles, dtype=images.dtype, device=images.device)
    if angles.dim() == 0:
        angles = angles.expand(images.shape[0])
    if angles.shape != (images.shape[0],):
        raise OrientationError(f"one angle per image expected: {images.shape[0]} images, angles of shape "
                               f"{tuple(angles.shape)}")
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    # output pixel q samples the input at R(-angle) q, in (x right, y down) normalised coordinates
    theta = rearrange(torch.stack([cos, -sin, zero, sin, cos, zero], dim=-1), "b (r c) -> b r c", r=2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def all_planar_rotations(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] and [R] angles -> [R, B, C, H, W]: every image under every angle, one resampling pass."""
    count, batch = angles.shape[0], images.shape[0]
    tiled = repeat(images, "b c h w -> (r b) c h w", r=count)
    rotated = rotate_images(tiled, repeat(angles.to(images), "r -> (r b)", b=batch))
    return rearrange(rotated, "(r b) c h w -> r b c h w", r=count)
