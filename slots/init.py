"""Slot initialisers, kept apart from the attention so other schemes (learned per-slot queries,
the previous frame's slots) plug into `SlotAttention` the same way: each returns [B, K, D]."""
from __future__ import annotations

import torch
from torch import nn


class GaussianSlotInit(nn.Module):
    """Slots drawn i.i.d. from a learned Gaussian N(mu, sigma^2) (Locatello et al. 2020).

    Because every slot comes from the same distribution, the slot count K is a call argument and can
    differ between training and test. Sampling is written as mu + sigma * eps (reparameterised), so both
    parameters receive gradients; `torch.normal(mu, sigma)` would silently cut them off.
    """

    def __init__(self, slot_dim: int) -> None:
        super().__init__()
        self.mu = nn.Parameter(torch.empty(1, 1, slot_dim))
        self.log_sigma = nn.Parameter(torch.empty(1, 1, slot_dim))
        nn.init.xavier_uniform_(self.mu)
        nn.init.xavier_uniform_(self.log_sigma)

    def forward(
        self, batch_size: int, num_slots: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        noise = torch.randn(
            batch_size, num_slots, self.mu.shape[-1],
            device=self.mu.device, dtype=self.mu.dtype, generator=generator,
        )
        return self.mu + self.log_sigma.exp() * noise
