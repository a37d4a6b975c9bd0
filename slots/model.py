"""The Slot Attention autoencoder for unsupervised object discovery."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slots.attention import SlotAttention
from slots.decoder import SpatialBroadcastDecoder
from slots.encoder import CNNEncoder
from slots.init import GaussianSlotInit


def check_images(images: torch.Tensor, resolution: tuple[int, int]) -> None:
    """Refuse images a model was not built for, with the expected and the actual shape."""
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != tuple(resolution):
        raise ValueError(f"expected images of shape [B, 3, {resolution[0]}, {resolution[1]}], got {list(images.shape)}")


def composite(decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-slot decoder outputs [B, K, 4, H, W] -> (image [B, 3, H, W], masks [B, K, H, W], slot RGB):
    the alpha logits compete over slots (softmax), and the image is the mask-weighted sum of slot RGB."""
    slot_rgb, alpha = decoded[:, :, :3], decoded[:, :, 3]
    masks = alpha.softmax(dim=1)
    return (slot_rgb * masks.unsqueeze(2)).sum(dim=1), masks, slot_rgb


@dataclass
class SlotAutoencoderOutput:
    """Everything a caller may want from one forward pass; masks sum to 1 over slots at every pixel."""

    reconstruction: torch.Tensor  # [B, 3, H, W]
    masks: torch.Tensor  # [B, K, H, W]
    slot_rgb: torch.Tensor  # [B, K, 3, H, W]
    slots: torch.Tensor  # [B, K, D]
    attention: torch.Tensor  # [B, K, H*W]


class SlotAutoencoder(nn.Module):
    """Encoder -> Slot Attention -> per-slot broadcast decoder -> alpha-composited image.

    `num_slots` and `num_iterations` default to the training values but can be changed per call,
    which is how the test-time slot sweep works. `encoder` replaces the CNN encoder (e.g. a
    `BackboneEncoder` around a timm model); the `encoder_*` sizes are then unused.
    """

    def __init__(
        self,
        resolution: tuple[int, int] = (32, 32),
        num_slots: int = 5,
        num_iterations: int = 3,
        slot_dim: int = 64,
        mlp_hidden_dim: int = 128,
        encoder_channels: int = 32,
        encoder_layers: int = 4,
        encoder_kernel: int = 5,
        decoder_channels: int = 32,
        decoder_layers: int = 3,
        decoder_kernel: int = 5,
        broadcast_size: int | None = None,
        implicit_grad: bool = True,
        encoder: nn.Module | None = None,
        decoder_input_dim: int | None = None,
    ) -> None:
        super().__init__()
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        self.resolution = tuple(resolution)
        self.num_slots = num_slots
        self.num_iterations = num_iterations
        self.encoder = encoder if encoder is not None else CNNEncoder(encoder_channels, encoder_layers, encoder_kernel)
        self.slot_init = GaussianSlotInit(slot_dim)
        self.slot_attention = SlotAttention(self.encoder.out_dim, slot_dim, mlp_hidden_dim, implicit_grad=implicit_grad)
        self.decoder = SpatialBroadcastDecoder(  # a slot VAE decodes a latent of its own size, not the slot
            decoder_input_dim or slot_dim, self.resolution, decoder_channels, decoder_layers, decoder_kernel,
            broadcast_size,
        )

    def forward(
        self,
        images: torch.Tensor,
        num_slots: int | None = None,
        num_iterations: int | None = None,
        generator: torch.Generator | None = None,
    ) -> SlotAutoencoderOutput:
        """Images [B, 3, H, W] in [-1, 1] -> reconstruction, masks and slots."""
        check_images(images, self.resolution)
        num_slots = self.num_slots if num_slots is None else num_slots
        num_iterations = self.num_iterations if num_iterations is None else num_iterations
        features = self.encoder(images)
        initial = self.slot_init(images.shape[0], num_slots, generator)
        slots, attention = self.slot_attention(features, initial, num_iterations)
        reconstruction, masks, slot_rgb = composite(self.decoder(slots))
        return SlotAutoencoderOutput(reconstruction, masks, slot_rgb, slots, attention)
