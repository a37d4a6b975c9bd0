"""DINOSAUR (Seitzer et al. 2023): Slot Attention on a frozen timm backbone, trained to reconstruct the
backbone's features with a per-slot MLP decoder; its masks, upsampled to the image, are scored, swept over
test-time slot counts and drawn exactly as in object discovery (this task reuses that code)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, repeat
from torch import nn

from data import PairBatch
from slots import DinosaurOutput, SlotAutoencoderOutput
from training.tasks.discovery import DiscoveryTask


def mean_colour_picture(images: torch.Tensor, output: DinosaurOutput) -> SlotAutoencoderOutput:
    """DINOSAUR reconstructs features, not pixels: for the slot picture each slot is painted with the mean
    input colour under its mask, and the "reconstruction" is the masks' mix of those colours."""
    masks = output.masks.to(images.dtype)
    weights = masks / masks.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-8)
    colours = einsum(weights, images, "b k h w, b c h w -> b k c")
    slot_rgb = repeat(colours, "b k c -> b k c h w", h=images.shape[-2], w=images.shape[-1])
    reconstruction = einsum(slot_rgb, masks, "b k c h w, b k h w -> b c h w")
    return SlotAutoencoderOutput(reconstruction, output.masks, slot_rgb, output.slots, output.attention)


class DinosaurTask(DiscoveryTask):
    name = "dinosaur"

    def training_loss(self, model: nn.Module, batch: PairBatch, step: int
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, _ = batch.images_and_masks()
        output = model(images)
        loss = F.mse_loss(output.reconstruction.float(), output.target.float())
        return loss, {"loss": loss.detach()}

    def slot_picture_output(self, model: nn.Module, images: torch.Tensor,
                            generator: torch.Generator) -> SlotAutoencoderOutput:
        return mean_colour_picture(images, model(images, generator=generator))
