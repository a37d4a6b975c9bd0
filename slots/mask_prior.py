"""The attention mask prior: each slot's alpha logits start from the log of its own attention.

Added to the decoder's alpha logits before the softmax over slots, the log attention makes the masks start
from Slot Attention's own per-pixel segmentation, which the decoder then refines. The reconstruction error
then reaches the attention (and through the keys the encoder) at every pixel: objects bind as soon as the
features separate them, instead of after the decoder has learned to draw every shape from a slot vector, and
mask edges are as sharp as the feature grid.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def log_attention_map(attention: torch.Tensor, grid_size: tuple[int, int], image_size: tuple[int, int],
                      eps: float = 1e-8) -> torch.Tensor:
    """Attention [B, K, N] over the feature grid -> its log [B, K, H, W] at image resolution (bilinear when
    the grid is coarser: interpolating the log, not the attention, keeps the seams between slots sharp)."""
    log_attention = rearrange(torch.log(attention + eps), "b k (h w) -> b k h w", h=grid_size[0], w=grid_size[1])
    if tuple(grid_size) != tuple(image_size):
        log_attention = F.interpolate(log_attention, size=tuple(image_size), mode="bilinear", align_corners=False)
    return log_attention


class AttentionMaskPrior(nn.Module):
    """A part of `SlotAutoencoder`: the alpha prior [B, K, H, W] read off the slots' attention. It has no
    state; the autoencoder scales it by its `mask_prior_weight` (which a run may fade out)."""

    #: the model.mask_prior option value that builds this part
    option = "attention"

    def forward(self, attention: torch.Tensor, grid_size: tuple[int, int], image_size: tuple[int, int]
                ) -> torch.Tensor:
        return log_attention_map(attention, grid_size, image_size)
