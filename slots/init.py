"""Slot initialisers, kept apart from the attention so other schemes (learned per-slot queries,
the previous frame's slots) plug into `SlotAttention` the same way: each returns [B, K, D]."""
from __future__ import annotations

import torch
from torch import nn


def check_num_slots(num_slots: int) -> int:
    """The one check of a slot count, for every model (they all draw their slots from an initialiser)."""
    if num_slots < 1:
        raise ValueError(f"num_slots must be >= 1, got {num_slots}")
    return num_slots


class GaussianSlotInit(nn.Module):
    """Slots drawn i.i.d. from a learned Gaussian N(mu, sigma^2) (Locatello et al. 2020).

    Because every slot comes from the same distribution, the slot count K is a call argument and can
    differ between training and test; `num_slots` is the count drawn when a call names none (the training
    value). Sampling is written as mu + sigma * eps (reparameterised), so both parameters receive gradients;
    `torch.normal(mu, sigma)` would silently cut them off.
    """

    def __init__(self, slot_dim: int, num_slots: int = 5) -> None:
        super().__init__()
        self.num_slots = check_num_slots(num_slots)
        self.mu = nn.Parameter(torch.empty(1, 1, slot_dim))
        self.log_sigma = nn.Parameter(torch.empty(1, 1, slot_dim))
        nn.init.xavier_uniform_(self.mu)
        nn.init.xavier_uniform_(self.log_sigma)

    @property
    def slot_dim(self) -> int:
        return self.mu.shape[-1]

    def forward(
        self, batch_size: int, num_slots: int | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """[batch_size, K, D] slots, K = `num_slots` or the training count."""
        num_slots = check_num_slots(self.num_slots if num_slots is None else num_slots)
        noise = torch.randn(
            batch_size, num_slots, self.slot_dim,
            device=self.mu.device, dtype=self.mu.dtype, generator=generator,
        )
        return self.mu + self.log_sigma.exp() * noise
