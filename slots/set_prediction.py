"""Slot Attention for set prediction (Locatello et al. 2020, section 4.2): one property vector per slot.

encoder (convolutions + soft position embedding + LayerNorm + MLP) -> Slot Attention -> a per-slot MLP head,
as in the official model, with four additions (each can be switched off) that make it learn within
minutes on a CPU instead of hours on accelerators:

- `input_skip`: a linear map of the input pixels (pooled to the feature grid) is added to the features
  Slot Attention reads, so a slot's mean value carries the colour of what it attends to from the first step
  (four randomly initialised ReLU convolutions all but erase it: a linear probe recovers 20% of the colours);
- `slot_geometry`: the head also sees the geometry of the slot's attention map (mass, centroid, covariance),
  slot-centric statistics in the spirit of Invariant Slot Attention (Biza et al. 2023) - cues to size,
  elongation and position that a weighted mean of features does not keep;
- `attention_coordinates`: the predicted coordinates are a learned affine map of the attention centroid
  plus the head's correction, so the coordinate loss moves the attention itself;
- `glimpse_size`: the head also reads a small CNN's view of the pixels around the slot's centroid, with the
  slot's attention map as a mask channel (slots/glimpse.py): shape and size are in the outline, which a
  weighted mean of features keeps poorly.

With `autoencoder` (a `SlotAutoencoder`), the slots come from an object-discovery autoencoder instead of
the predictor's own encoder and Slot Attention, and its reconstruction is returned for a pixel loss beside
the property loss: the autoencoder's decoder and mask prior bind slots to objects far sooner than the
property loss alone does, and the heads read slots that are already objects.

The head is shared by all slots and applied to each on its own, so the predictions inherit the slot
permutation equivariance of Slot Attention, which is what lets a Hungarian-matched loss train them.
Predictions live in the target space: coordinates (linear), one probability vector per discrete property
(softmax), and the is-object probability (sigmoid), so the matching cost compares like with like.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn

from slots.attention import SlotAttention
from slots.encoder import CNNEncoder, coordinate_grid
from slots.glimpse import SlotGlimpse, window_centres
from slots.init import GaussianSlotInit

#: mass, centroid (x, y), covariance (xx, yy, xy)
GEOMETRY_DIM = 6


@dataclass
class SetPredictionOutput:
    """predictions: [coordinates, softmax of each discrete block, sigmoid of the is-object logit];
    logits: the head's raw outputs (coordinates identical)."""

    predictions: torch.Tensor  # [B, K, P]
    logits: torch.Tensor  # [B, K, P]
    slots: torch.Tensor  # [B, K, D]
    attention: torch.Tensor  # [B, K, N], softmax over slots: the map the head read (`head_masks`)
    grid_size: tuple[int, int]  # (height, width) of that map: the feature grid, or the image for decoder masks
    geometry: torch.Tensor  # [B, K, 6]: `attention_geometry` of that map (mass, centroid, covariance)
    reconstruction: torch.Tensor | None = None  # [B, 3, H, W] from the autoencoder, when the slots come from one


def attention_geometry(attention: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[B, K, 6]: each slot's share of the grid, centroid and covariance of its normalised attention map."""
    grid = rearrange(coordinate_grid(height, width, attention.device)[..., :2], "h w c -> (h w) c").to(attention.dtype)
    mass = attention.mean(dim=-1, keepdim=True)
    weights = attention / attention.sum(dim=-1, keepdim=True).clamp_min(1e-8)
    centroid = einsum(weights, grid, "b k n, n c -> b k c")
    offsets = rearrange(grid, "n c -> 1 1 n c") - centroid.unsqueeze(2)
    second = einsum(weights, offsets[..., [0, 1, 0]] * offsets[..., [0, 1, 1]], "b k n, b k n c -> b k c")
    return torch.cat([mass, centroid, second], dim=-1)


class SlotSetPredictor(nn.Module):
    """Images [B, 3, H, W] in [-1, 1] -> K property vectors. `num_slots` and `num_iterations` are call
    arguments (the training values by default), so the slot count can change at test time."""

    def __init__(
        self,
        num_coordinates: int,
        class_sizes: tuple[int, ...] | list[int],
        num_slots: int = 5,
        num_iterations: int = 3,
        slot_dim: int = 64,
        mlp_hidden_dim: int = 128,
        encoder_channels: int = 32,
        encoder_layers: int = 4,
        encoder_kernel: int = 5,
        encoder_strides: tuple[int, ...] | None = None,
        head_hidden_dim: int = 64,
        implicit_grad: bool = True,
        input_skip: bool = True,
        slot_geometry: bool = True,
        attention_coordinates: bool = True,
        glimpse_size: int = 0,
        glimpse_channels: int = 32,
        autoencoder: nn.Module | None = None,
        head_masks: str = "attention",
    ) -> None:
        super().__init__()
        if head_masks not in ("attention", "decoder"):
            raise ValueError(f"head_masks must be 'attention' or 'decoder', got {head_masks!r}")
        if head_masks == "decoder" and autoencoder is None:
            raise ValueError("head_masks='decoder' needs an autoencoder: only it has decoder masks")
        if num_coordinates < 0 or any(size < 1 for size in class_sizes):
            raise ValueError(f"need num_coordinates >= 0 and class sizes >= 1, got {num_coordinates}, {class_sizes}")
        self.num_slots = num_slots
        self.num_iterations = num_iterations
        self.num_coordinates = num_coordinates
        self.class_sizes = tuple(int(size) for size in class_sizes)
        self.property_dim = num_coordinates + sum(self.class_sizes) + 1
        self.autoencoder = autoencoder
        self.head_masks = head_masks
        if autoencoder is None:
            self.encoder = CNNEncoder(encoder_channels, encoder_layers, encoder_kernel, strides=encoder_strides)
            self.input_skip = nn.Linear(3, encoder_channels) if input_skip else None
            self.slot_init = GaussianSlotInit(slot_dim, num_slots)
            self.slot_attention = SlotAttention(encoder_channels, slot_dim, mlp_hidden_dim,
                                                implicit_grad=implicit_grad)
        else:
            slot_dim = autoencoder.slot_init.slot_dim
        self.slot_geometry = slot_geometry
        self.glimpse = SlotGlimpse(glimpse_size, glimpse_channels, head_hidden_dim) if glimpse_size else None
        head_in = slot_dim + (GEOMETRY_DIM if slot_geometry else 0) + (head_hidden_dim if glimpse_size else 0)
        self.head = nn.Sequential(nn.Linear(head_in, head_hidden_dim), nn.ReLU(),
                                  nn.Linear(head_hidden_dim, self.property_dim))
        self.centroid_proj = nn.Linear(2, num_coordinates) if attention_coordinates and num_coordinates else None

    def forward(
        self,
        images: torch.Tensor,
        num_slots: int | None = None,
        num_iterations: int | None = None,
        generator: torch.Generator | None = None,
        initial_slots: torch.Tensor | None = None,
    ) -> SetPredictionOutput:
        """`initial_slots` [B, K, D] replaces the sampled initialisation (then `num_slots` is ignored)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape [B, 3, H, W], got {list(images.shape)}")
        num_slots = self.num_slots if num_slots is None else num_slots
        num_iterations = self.num_iterations if num_iterations is None else num_iterations
        reconstruction = None
        if self.autoencoder is not None:
            decoded = self.autoencoder(images, num_slots, num_iterations, generator, initial_slots=initial_slots)
            slots, attention, reconstruction = decoded.slots, decoded.attention, decoded.reconstruction
            height, width = self.autoencoder.feature_grid(images.shape[-2:])
            # the masks as trained (duplicate merging, an eval-time option, would leave slots without theirs)
            masks = decoded.masks if decoded.unmerged_masks is None else decoded.unmerged_masks
        else:
            features = self.encoder(images)
            height, width = self.encoder.grid_size(*images.shape[-2:])
            if self.input_skip is not None:
                pooled = F.adaptive_avg_pool2d(images, (height, width))
                features = features + self.input_skip(rearrange(pooled, "b c h w -> b (h w) c"))
            if initial_slots is None:
                initial_slots = self.slot_init(images.shape[0], num_slots, generator)
            slots, attention = self.slot_attention(features, initial_slots, num_iterations)
        head_map = attention
        if self.head_masks == "decoder":
            head_map, (height, width) = rearrange(masks, "b k h w -> b k (h w)"), masks.shape[-2:]
        geometry = attention_geometry(head_map, height, width)
        head_inputs = [slots, geometry] if self.slot_geometry else [slots]
        centres = geometry[..., 1:3]
        if self.glimpse is not None:
            head_inputs.append(self.glimpse(images, head_map, centres, (height, width)))
            # the glimpse sees the object's offset from the window's centre pixel, so correct from there
            centres = window_centres(centres, images.shape[-2:], (height, width))
        logits = self.head(torch.cat(head_inputs, dim=-1))
        if self.centroid_proj is not None:
            coordinates = logits[..., : self.num_coordinates] + self.centroid_proj(centres)
            logits = torch.cat([coordinates, logits[..., self.num_coordinates:]], dim=-1)
        return SetPredictionOutput(self.to_properties(logits), logits, slots, head_map, (height, width), geometry,
                                   reconstruction)

    def to_properties(self, logits: torch.Tensor) -> torch.Tensor:
        """Head outputs -> a point in the target space: coordinates, class probabilities, is-object probability."""
        blocks = torch.split(logits[..., self.num_coordinates: -1], self.class_sizes, dim=-1)
        return torch.cat([logits[..., : self.num_coordinates], *(b.softmax(dim=-1) for b in blocks),
                          logits[..., -1:].sigmoid()], dim=-1)
