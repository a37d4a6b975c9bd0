"""DINOSAUR (Seitzer et al. 2023): Slot Attention on a frozen backbone's features, trained to reconstruct
those features instead of pixels; its masks, upsampled to the image, are scored like the autoencoder's."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange

from slots.attention import SlotAttention
from slots.encoder import BackboneEncoder
from slots.feature_decoder import MLPFeatureDecoder
from slots.init import GaussianSlotInit
from slots.model import check_images


@dataclass
class DinosaurOutput:
    """One forward pass; `masks` are at image resolution so metrics and pictures treat both models alike."""

    reconstruction: torch.Tensor  # [B, N, C] reconstructed backbone tokens
    target: torch.Tensor  # [B, N, C] the backbone tokens (detached): what the loss compares against
    masks: torch.Tensor  # [B, K, H, W], bilinear upsampling of token_masks; sums to 1 over slots
    token_masks: torch.Tensor  # [B, K, N] on the backbone's grid
    slots: torch.Tensor  # [B, K, D]
    attention: torch.Tensor  # [B, K, N]


def upsample_masks(token_masks: torch.Tensor, grid: tuple[int, int], resolution: tuple[int, int]) -> torch.Tensor:
    """Masks [B, K, h*w] on the token grid -> [B, K, H, W]; bilinear weights are convex, so the sum over
    slots stays 1 at every pixel."""
    masks = rearrange(token_masks, "b k (h w) -> b k h w", h=grid[0], w=grid[1])
    if tuple(grid) == tuple(resolution):
        return masks
    return F.interpolate(masks, size=tuple(resolution), mode="bilinear", align_corners=False)


class DinosaurAutoencoder(torch.nn.Module):
    """Backbone encoder -> Slot Attention -> per-slot MLP feature decoder.

    `num_slots` and `num_iterations` are call arguments (the test-time slot sweep), as in SlotAutoencoder.
    """

    def __init__(self, encoder: BackboneEncoder, resolution: tuple[int, int] = (32, 32), num_slots: int = 5,
                 num_iterations: int = 3, slot_dim: int = 64, mlp_hidden_dim: int = 128,
                 decoder_hidden_dim: int = 1024, decoder_layers: int = 4, implicit_grad: bool = True) -> None:
        super().__init__()
        self.resolution = tuple(resolution)
        self.num_iterations = num_iterations
        self.encoder = encoder
        self.slot_init = GaussianSlotInit(slot_dim, num_slots)
        self.slot_attention = SlotAttention(encoder.out_dim, slot_dim, mlp_hidden_dim, implicit_grad=implicit_grad)
        height, width = encoder.backbone.grid
        self.decoder = MLPFeatureDecoder(slot_dim, encoder.backbone.out_dim, height * width, decoder_hidden_dim,
                                         decoder_layers)

    @property
    def num_slots(self) -> int:
        """The training slot count: the initialiser's."""
        return self.slot_init.num_slots

    def forward(self, images: torch.Tensor, num_slots: int | None = None, num_iterations: int | None = None,
                generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None
                ) -> DinosaurOutput:
        """Images [B, 3, H, W] in [-1, 1] -> reconstructed features, targets, masks and slots; `initial_slots`
        [B, K, D] replaces the sampled initialisation (then `num_slots` is ignored)."""
        check_images(images, self.resolution)
        num_iterations = self.num_iterations if num_iterations is None else num_iterations
        tokens, features = self.encoder.encode(images)  # [B, N, C_backbone], [B, N, C]
        if initial_slots is None:
            initial_slots = self.slot_init(images.shape[0], num_slots, generator)  # [B, K, D]
        slots, attention = self.slot_attention(features, initial_slots, num_iterations)  # [B, K, D], [B, K, N]
        reconstruction, token_masks = self.decoder(slots)  # [B, N, C_backbone], [B, K, N]
        masks = upsample_masks(token_masks, self.encoder.backbone.grid, self.resolution)  # [B, K, H, W]
        return DinosaurOutput(reconstruction, tokens.detach(), masks, token_masks, slots, attention)
