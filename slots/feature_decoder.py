"""DINOSAUR's decoder (Seitzer et al. 2023): every slot is decoded on its own into backbone features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum
from torch import nn


class MLPFeatureDecoder(nn.Module):
    """Slots [B, K, D] -> reconstructed tokens [B, N, C] and masks [B, K, N].

    Each slot is broadcast to the N token positions and a learned position embedding is added; a shared
    MLP maps every (slot, position) to C features plus one alpha logit. The alphas are softmaxed over the
    slots, so the masks sum to 1 at every token and the slots compete for it; the reconstruction is the
    mask-weighted sum of the slots' features. As in the broadcast decoder, the first layer is factored:
    W·(slot + position) = W·slot + W·position, one product per slot and one per position instead of one per
    (slot, position) pair.
    """

    def __init__(self, slot_dim: int, feature_dim: int, num_tokens: int, hidden_dim: int = 1024,
                 num_layers: int = 4) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.num_tokens, self.feature_dim = num_tokens, feature_dim
        self.position = nn.Parameter(torch.randn(num_tokens, slot_dim) * 0.02)
        first_out = hidden_dim if num_layers > 1 else feature_dim + 1
        self.first = nn.Linear(slot_dim, first_out)
        layers: list[nn.Module] = []
        for index in range(1, num_layers):
            last = index == num_layers - 1
            layers += [nn.ReLU(), nn.Linear(hidden_dim, feature_dim + 1 if last else hidden_dim)]
        self.rest = nn.Sequential(*layers)

    def forward(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slots [B, K, D] -> (reconstruction [B, N, C], masks [B, K, N] summing to 1 over K)."""
        hidden = self.first(slots)[:, :, None, :] + F.linear(self.position.to(slots.dtype), self.first.weight)
        decoded = self.rest(hidden)  # [B, K, N, C + 1]
        features, alpha = decoded[..., :-1], decoded[..., -1]
        masks = alpha.softmax(dim=1)
        reconstruction = einsum(features, masks, "b k n c, b k n -> b n c")
        return reconstruction, masks
