"""Spatial-broadcast decoder: every slot is decoded on its own into RGB and an alpha logit."""
from __future__ import annotations

import math

import torch
from einops import rearrange, repeat
from torch import nn

from slots.encoder import coordinate_grid
from slots.frames import SlotFrames, relative_grid
from slots.windows import PixelWindows


class SpatialBroadcastDecoder(nn.Module):
    """Decode each slot [D] into RGB + alpha logit at full resolution.

    The slot is broadcast over a grid with a position embedding added (Watters et al. 2019). The first
    layer is factored: relu(W·slot + P(grid)) equals a 1x1 convolution over the broadcast
    (slot + position) map, but costs one matrix product per slot instead of one per pixel per slot.
    With `broadcast_size` smaller than the image, stride-2 transposed convolutions upsample to full size
    (the CLEVR decoder); with `broadcast_size=None` the grid is the image (the Multi-dSprites decoder).
    """

    def __init__(
        self,
        slot_dim: int,
        resolution: tuple[int, int],
        channels: int = 32,
        num_layers: int = 3,
        kernel_size: int = 5,
        broadcast_size: int | None = None,
        out_channels: int = 4,
        relative_positions: bool = False,
        frame_scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.relative_positions, self.frame_scale_factor = relative_positions, frame_scale_factor
        self.out_channels = out_channels
        self.resolution = resolution
        height, width = resolution
        self.grid_size = (height, width) if broadcast_size is None else (broadcast_size, broadcast_size)
        num_upsamples = 0 if broadcast_size is None else int(round(math.log2(height / broadcast_size)))
        if self.grid_size[0] * 2**num_upsamples != height or self.grid_size[1] * 2**num_upsamples != width:
            raise ValueError(
                f"broadcast_size {broadcast_size} cannot be upsampled by powers of 2 to resolution {resolution}"
            )
        self.slot_proj = nn.Linear(slot_dim, channels)
        # relative: the grid in each slot's own frame (slots/frames.py), (x, y); absolute: [x, y, 1-x, 1-y]
        self.position_proj = nn.Linear(2 if relative_positions else 4, channels)
        layers: list[nn.Module] = []
        for index in range(num_layers - 1):
            if index < num_upsamples:
                layers.append(nn.ConvTranspose2d(channels, channels, kernel_size, stride=2,
                                                 padding=kernel_size // 2, output_padding=1))
            else:
                layers.append(nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2))
            layers.append(nn.ReLU())
        for _ in range(max(0, num_upsamples - (num_layers - 1))):
            layers += [nn.ConvTranspose2d(channels, channels, kernel_size, stride=2,
                                          padding=kernel_size // 2, output_padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
        self.convs = nn.Sequential(*layers)

    @property
    def receptive_radius(self) -> int:
        """How many pixels away an output pixel reads the broadcast grid (the convolutions' paddings summed)."""
        return sum(layer.padding[0] for layer in self.convs if isinstance(layer, nn.Conv2d))

    def forward(self, slots: torch.Tensor, frames: SlotFrames | None = None, window: PixelWindows | None = None
                ) -> torch.Tensor:
        """Slots [B, K, D] -> per-slot outputs [B, K, out_channels, H, W]; a decoder built with
        `relative_positions` needs each slot's frame. With `window` (relative positions, no upsampling) only
        each slot's window [B, K, out_channels, S, S], equal to those pixels of the full rendering: the window
        is rendered `receptive_radius` pixels wider, with the hidden maps zeroed outside the image as the full
        rendering's zero padding has them, and its border cut off."""
        batch, num_slots = slots.shape[:2]
        if window is not None:
            if not self.relative_positions or self.grid_size != tuple(self.resolution):
                raise ValueError("only a decoder that renders in slot frames at full resolution (no "
                                 "broadcast_size) can render windows")
            window = window.grown(self.receptive_radius)
        if self.relative_positions:
            if frames is None:
                raise ValueError("this decoder renders in slot-centric frames: pass `frames` (slots/frames.py)")
            grid = relative_grid(frames, *self.grid_size, scale_factor=self.frame_scale_factor, window=window)
        else:
            grid = rearrange(coordinate_grid(*self.grid_size, device=slots.device).to(slots.dtype),
                             "h w c -> 1 1 h w c")
        height, width = grid.shape[-3:-1]
        # The first layer relu(P·grid + W·slot + b) as one batched product per slot, [grid, 1] @ [P; W·slot + b],
        # written channels-last, which the convolutions read without a copy. A window's pixels outside the
        # image get [0, 0] @ ... = 0, what the full rendering's zero padding holds there.
        features = torch.cat([grid, torch.ones_like(grid[..., :1])], dim=-1)
        if window is not None:
            features = features * window.inside().unsqueeze(-1).to(features.dtype)
        features = rearrange(features.expand(batch, num_slots, -1, -1, -1), "b k h w c -> (b k) (h w) c")
        weights = torch.cat([repeat(self.position_proj.weight, "c i -> n i c", n=len(features)),
                             rearrange(self.slot_proj(slots) + self.position_proj.bias, "b k c -> (b k) 1 c")],
                            dim=1)
        hidden = torch.bmm(features, weights).relu_()
        hidden = rearrange(hidden, "n (h w) c -> n c h w", h=height, w=width)  # a channels-last view
        for index, layer in enumerate(self.convs):
            hidden = layer(hidden)
            if window is not None and isinstance(layer, nn.ReLU) and index + 1 < len(self.convs):
                hidden = hidden * rearrange(window.inside(), "b k h w -> (b k) 1 h w").to(hidden.dtype)
        if window is not None:
            margin = self.receptive_radius
            hidden = hidden[..., margin:height - margin, margin:width - margin]
        return rearrange(hidden, "(b k) c h w -> b k c h w", b=batch)
