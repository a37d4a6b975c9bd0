"""Slot-centric reference frames (Biza et al. 2023, "Invariant Slot Attention").

Each slot gets a position (the centre of mass of its attention) and a scale (the attention-weighted
standard deviation of the coordinates around it). The decoder then renders a slot on a grid expressed
*relative* to that frame, so a shape is learned once for every position and size instead of once per
place in the image; and because the frame is computed from the attention, the reconstruction error
reaches the attention directly through where the slot is rendered.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import einsum, rearrange
from torch import nn

from slots.attention import SlotAttention
from slots.windows import PixelWindows


def centred_grid(height: int, width: int, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> torch.Tensor:
    """Pixel-centre coordinates [H, W, 2] as (x, y) in [-1, 1] over the image, whatever the grid's size, so
    frames measured on the encoder's feature grid apply unchanged to the decoder's grid."""
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height * 2 - 1
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width * 2 - 1
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y], dim=-1)


@dataclass
class SlotFrames:
    """Per-slot frame: positions [B, K, 2] (x, y in [-1, 1]), scales [B, K, 2] (std along x and y) and, when an
    orientation search chose them (`slots.orientation_search`), angles [B, K] in radians: the slot's object is
    its canonical rendering turned by that angle, as `orientation.rotate_images` turns an image."""

    positions: torch.Tensor
    scales: torch.Tensor
    angles: torch.Tensor | None = None


def frames_from_attention(attention: torch.Tensor, grid_size: tuple[int, int], min_scale: float = 0.02,
                          max_scale: float = 2.0, eps: float = 1e-8) -> SlotFrames:
    """Attention [B, K, N] over a grid_size = (H, W) grid (N = H * W) -> each slot's frame.

    The attention is renormalised over positions first (as in the weighted-mean update), so a slot with
    little attention still gets a well-defined frame. Scales are clipped to [min_scale, max_scale]: a slot
    attending to one pixel would otherwise divide by zero.
    """
    height, width = grid_size
    if attention.shape[-1] != height * width:
        raise ValueError(f"attention over {attention.shape[-1]} positions does not fit a {height}x{width} grid")
    grid = rearrange(centred_grid(height, width, attention.device, attention.dtype), "h w c -> (h w) c")
    weights = attention + eps
    weights = weights / weights.sum(dim=-1, keepdim=True)
    positions = einsum(weights, grid, "b k n, n c -> b k c")
    spread = (rearrange(grid, "n c -> 1 1 n c") - rearrange(positions, "b k c -> b k 1 c")).square()
    scales = einsum(weights, spread, "b k n, b k n c -> b k c").clamp_min(eps).sqrt()
    return SlotFrames(positions, scales.clamp(min_scale, max_scale))


class AttentionFrames(nn.Module):
    """The frames a decoder renders each slot in, read off its attention (a part of `SlotAutoencoder`; a model
    without it renders in image coordinates).

    `scale=False` renders with the position only (unit scale: "translation"); `isotropic=True` uses one scale
    for both axes, the geometric mean of the two, so that an object's aspect and the direction it is turned
    stay in the slot's own frame instead of its scales ("translation_isotropic").
    """

    def __init__(self, scale: bool = True, isotropic: bool = False) -> None:
        super().__init__()
        self.scale, self.isotropic = scale, isotropic

    def measure(self, attention: torch.Tensor, grid_size: tuple[int, int]) -> SlotFrames:
        """Where each slot is and how far it spreads (what a slot's representation and its outline are read in):
        its attention's centre of mass and spread, isotropic if the renderer is."""
        frames = frames_from_attention(attention, grid_size)
        if self.isotropic:
            frames.scales = frames.scales.log().mean(dim=-1, keepdim=True).exp().expand_as(frames.scales)
        return frames

    def forward(self, attention: torch.Tensor, grid_size: tuple[int, int]) -> SlotFrames:
        """Attention [B, K, N] over the (h, w) feature grid -> the frames to render in (positions and scales
        [B, K, 2])."""
        frames = self.measure(attention, grid_size)
        if not self.scale:
            frames.scales = torch.ones_like(frames.scales)
        return frames

    def extra_repr(self) -> str:
        return f"scale={self.scale}, isotropic={self.isotropic}"


def relative_grid(frames: SlotFrames, height: int, width: int, scale_factor: float = 1.0,
                  window: PixelWindows | None = None) -> torch.Tensor:
    """The image grid in every slot's frame: [B, K, H, W, 2] = A(angle) (grid - position) / (scale * scale_factor),
    A(angle) = [[cos, -sin], [sin, cos]] on (x, y) (the identity without angles): where the canonical rendering
    of a slot is sampled, so a decoder that draws a shape upright draws it turned by the slot's angle. With
    `window` (of an H x W image) only each slot's window [B, K, S, S, 2]."""
    if window is None:
        grid = rearrange(centred_grid(height, width, frames.positions.device, frames.positions.dtype),
                         "h w c -> 1 1 h w c")
    else:
        grid = window.grid(frames.positions.dtype)
    offset = grid - rearrange(frames.positions, "b k c -> b k 1 1 c")
    if frames.angles is not None:
        cos = rearrange(frames.angles.cos(), "b k -> b k 1 1")
        sin = rearrange(frames.angles.sin(), "b k -> b k 1 1")
        x, y = offset.unbind(dim=-1)
        offset = torch.stack([cos * x - sin * y, sin * x + cos * y], dim=-1)
    return offset / rearrange(frames.scales * scale_factor, "b k c -> b k 1 1 c")


class InvariantSlotAttention(SlotAttention):
    """Slot Attention whose keys are expressed in each slot's frame (Biza et al. 2023, ISA-TS).

    Every slot sees the grid relative to its own position and scale (from its attention in the previous
    round), so "near me" is something a slot can attend to wherever it is in the image. Two encodings:
    "mlp" is the paper's (relative grid projected, added to the keys, through an MLP: one MLP over
    [B, K, N, D] per round, about doubling a CPU training step); "quadratic" adds to each slot's logits a
    bias linear in [x, y, x^2, y^2] of its relative grid with coefficients read from its query, a learned
    locality prior that costs almost nothing. Slots start at the centre (`random_positions=False`, the
    paper's ISA-TS) or at positions drawn uniformly in the image, which breaks the tie between slots.
    With `scale_invariant=False` the keys see the grid relative to each slot's position only, in image units:
    a locality prior that a slot cannot weaken by spreading its attention (a scale-normalised prior is as
    mild for a slot covering two distant objects of one colour as for a slot covering one).
    """

    def __init__(self, input_dim: int, slot_dim: int = 64, mlp_hidden_dim: int = 128, eps: float = 1e-8,
                 implicit_grad: bool = True, initial_scale: float = 0.1, frame_scale_factor: float = 1.0,
                 key_encoding: str = "mlp", random_positions: bool = False, scale_invariant: bool = True) -> None:
        super().__init__(input_dim, slot_dim, mlp_hidden_dim, eps, implicit_grad)
        if key_encoding not in ("mlp", "quadratic"):
            raise ValueError(f"key_encoding must be 'mlp' or 'quadratic', got {key_encoding!r}")
        self.initial_scale, self.frame_scale_factor = initial_scale, frame_scale_factor
        self.key_encoding, self.random_positions = key_encoding, random_positions
        self.scale_invariant = scale_invariant
        if key_encoding == "mlp":
            self.grid_proj = nn.Linear(2, slot_dim)
            self.grid_encoder = nn.Sequential(nn.LayerNorm(slot_dim), nn.Linear(slot_dim, mlp_hidden_dim),
                                              nn.ReLU(), nn.Linear(mlp_hidden_dim, slot_dim))
        else:
            self.position_bias = nn.Linear(slot_dim, 4)  # query -> coefficients of x, y, x^2, y^2
            nn.init.zeros_(self.position_bias.weight)
            with torch.no_grad():  # start with a mild preference for features near the slot
                self.position_bias.bias.copy_(torch.tensor([0.0, 0.0, -0.1, -0.1]))

    def logits(self, slots: torch.Tensor, keys: torch.Tensor, frames: SlotFrames,
               grid_size: tuple[int, int]) -> torch.Tensor:
        """Attention logits [B, K, N] of every slot against its own relative grid."""
        if not self.scale_invariant:
            frames = SlotFrames(frames.positions, torch.ones_like(frames.scales))
        grid = rearrange(relative_grid(frames, *grid_size, self.frame_scale_factor), "b k h w c -> b k (h w) c")
        queries = self.to_q(self.norm_slots(slots)) * self.scale
        if self.key_encoding == "mlp":
            slot_keys = self.grid_encoder(rearrange(keys, "b n d -> b 1 n d") + self.grid_proj(grid))
            return einsum(slot_keys, queries, "b k n d, b k d -> b k n")
        features = torch.cat([grid, grid.square()], dim=-1)
        return (einsum(keys, queries, "b n d, b k d -> b k n")
                + einsum(features, self.position_bias(queries), "b k n f, b k f -> b k n"))

    def relative_step(self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, frames: SlotFrames,
                      grid_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One refinement: attention against each slot's relative grid, then the usual update."""
        attn = self.logits(slots, keys, frames, grid_size).softmax(dim=1)
        return self.update(slots, attn, values), attn

    def initial_frames(self, slots: torch.Tensor, generator: torch.Generator | None) -> SlotFrames:
        batch, num_slots = slots.shape[:2]
        if self.random_positions:
            positions = torch.rand(batch, num_slots, 2, generator=generator, device=slots.device,
                                   dtype=slots.dtype) * 2 - 1
        else:
            positions = slots.new_zeros(batch, num_slots, 2)
        return SlotFrames(positions, slots.new_full((batch, num_slots, 2), self.initial_scale))

    def forward(self, inputs: torch.Tensor, slots: torch.Tensor, num_iterations: int = 3,
                grid_size: tuple[int, int] | None = None, generator: torch.Generator | None = None,
                extra_values: torch.Tensor | None = None, initial_frames: SlotFrames | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """As SlotAttention.forward; `grid_size` (H, W) of the feature grid, N = H * W, is required;
        `generator` draws the random initial positions unless `initial_frames` gives them."""
        if grid_size is None or grid_size[0] * grid_size[1] != inputs.shape[1]:
            raise ValueError(f"invariant slot attention needs the feature grid size: {inputs.shape[1]} inputs, "
                             f"got grid_size={grid_size}")
        keys, values = self.keys_and_values(inputs, num_iterations, extra_values)
        if initial_frames is None:
            frames = self.initial_frames(slots, generator)
        elif initial_frames.positions.shape != (*slots.shape[:2], 2):
            raise ValueError(f"initial frames must be [B, K, 2] for slots {list(slots.shape)}, "
                             f"got {list(initial_frames.positions.shape)}")
        else:
            frames = initial_frames
        initial = slots
        for _ in range(num_iterations - 1):
            slots, attn = self.relative_step(slots, keys, values, frames, grid_size)
            frames = frames_from_attention(attn, grid_size)
        if self.implicit_grad and self.training:
            slots = slots.detach() + initial - initial.detach()
            frames = SlotFrames(frames.positions.detach(), frames.scales.detach())
        return self.relative_step(slots, keys, values, frames, grid_size)
