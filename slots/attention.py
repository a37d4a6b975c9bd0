"""The Slot Attention module (Locatello et al. 2020, Algorithm 1)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from einops import einsum
from torch import nn

if TYPE_CHECKING:
    from slots.frames import SlotFrames


class SlotAttention(nn.Module):
    """Iterative attention in which slots compete for input features.

    The softmax is over the *slot* axis, so each input feature is shared out between slots; each slot
    then takes the attention-weighted *mean* of the values and is updated by a GRU and a residual MLP.
    The number of slots and of iterations are call arguments, not constructor arguments.

    With `implicit_grad=True` the gradient flows only through the last iteration, started from the
    detached fixed point (Chang et al. 2022, "Object Representations as Fixed Points"): cheaper
    backward and more stable training. The initial slots keep a straight-through gradient path so a
    learned initialiser still trains (Jia et al. 2023, BO-QSA).
    """

    def __init__(
        self,
        input_dim: int,
        slot_dim: int = 64,
        mlp_hidden_dim: int = 128,
        eps: float = 1e-8,
        implicit_grad: bool = True,
    ) -> None:
        super().__init__()
        self.eps = eps
        self.implicit_grad = implicit_grad
        self.scale = slot_dim**-0.5
        self.norm_inputs = nn.LayerNorm(input_dim)
        self.norm_slots = nn.LayerNorm(slot_dim)
        self.norm_mlp = nn.LayerNorm(slot_dim)
        self.to_q = nn.Linear(slot_dim, slot_dim, bias=False)
        self.to_k = nn.Linear(input_dim, slot_dim, bias=False)
        self.to_v = nn.Linear(input_dim, slot_dim, bias=False)
        self.gru = nn.GRUCell(slot_dim, slot_dim)
        self.mlp = nn.Sequential(
            nn.Linear(slot_dim, mlp_hidden_dim), nn.ReLU(), nn.Linear(mlp_hidden_dim, slot_dim)
        )

    def attend(self, keys: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Attention [B, K, N], normalised over slots (K): the competition between slots."""
        queries = self.to_q(self.norm_slots(slots)) * self.scale
        logits = einsum(keys, queries, "b n d, b k d -> b k n")
        return logits.softmax(dim=1)

    def step(
        self, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One refinement: attend, weighted mean of values, GRU, residual MLP."""
        attn = self.attend(keys, slots)
        return self.update(slots, attn, values), attn

    def update(self, slots: torch.Tensor, attn: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Weighted mean of the values under each slot's attention, then GRU and residual MLP."""
        weights = attn + self.eps
        weights = weights / weights.sum(dim=-1, keepdim=True)
        updates = einsum(weights, values, "b k n, b n d -> b k d")
        batch, num_slots, dim = slots.shape
        slots = self.gru(updates.reshape(-1, dim), slots.reshape(-1, dim)).reshape(batch, num_slots, dim)
        return slots + self.mlp(self.norm_mlp(slots))

    def keys_and_values(self, inputs: torch.Tensor, num_iterations: int, extra_values: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values [B, N, D] of the normalised inputs, `extra_values` added to the values."""
        if num_iterations < 1:
            raise ValueError(f"num_iterations must be >= 1, got {num_iterations}")
        inputs = self.norm_inputs(inputs)
        keys, values = self.to_k(inputs), self.to_v(inputs)
        return keys, values if extra_values is None else values + extra_values

    def forward(
        self, inputs: torch.Tensor, slots: torch.Tensor, num_iterations: int = 3,
        extra_values: torch.Tensor | None = None, *, grid_size: tuple[int, int] | None = None,
        generator: torch.Generator | None = None, initial_frames: SlotFrames | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Refine `slots` [B, K, D] against `inputs` [B, N, D_in]; returns (slots, attention [B, K, N]).
        `extra_values` [B, N, D] are added to the values only (what slots read, not how they bind).

        `grid_size`, `generator` and `initial_frames` complete the grouping interface (`slots.protocol`) that
        invariant slot attention needs; plain Slot Attention is a set function of its inputs with nothing to
        draw and no frames, so it ignores them."""
        keys, values = self.keys_and_values(inputs, num_iterations, extra_values)
        initial = slots
        for _ in range(num_iterations - 1):
            slots, _ = self.step(slots, keys, values)
        if self.implicit_grad and self.training:
            slots = slots.detach() + initial - initial.detach()
        return self.step(slots, keys, values)
