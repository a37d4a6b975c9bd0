"""Merging duplicate slots: two slots that claim the same pixels describe one object.

Slot Attention draws every slot from one distribution, so two slots can converge onto the same object and
split its pixels between them (the reconstruction is just as good: nothing in the loss tells them apart).
An argmax over such masks cuts the object into speckles. Merging the slots whose masks point the same way
(cosine similarity over pixels above a threshold) gives the object back to one slot; masks of distinct
objects are disjoint (cosine ~0) and are never merged. Slot merging of this kind is part of SOLV (Aydemir
et al. 2023, agglomerative merging of similar slots) and, as slot dropping, of AdaSlot (Fan et al. 2024).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange


def duplicate_groups(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    """Masks [B, K, H, W] -> assignment [B, K, K]: entry (i, j) is 1 when slot j's pixels go to slot i.

    Slots are linked when the cosine similarity of their masks exceeds `threshold`; linked slots form groups
    (transitively), and each group goes to its slot with the largest mask (ties: the lowest index), so the
    assignment is equivariant to the slot order.
    """
    num_slots = masks.shape[1]
    flat = rearrange(masks.float(), "b k h w -> b k (h w)")
    unit = flat / flat.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    linked = einsum(unit, unit, "b i n, b j n -> b i j") > threshold
    linked = linked | torch.eye(num_slots, dtype=torch.bool, device=masks.device)
    for _ in range(max(1, (num_slots - 1).bit_length())):  # transitive closure by repeated squaring
        linked = torch.matmul(linked.float(), linked.float()) > 0
    mass = flat.sum(dim=-1)
    keeper = torch.where(linked, rearrange(mass, "b i -> b i 1"), torch.full_like(linked, -1.0, dtype=mass.dtype))
    return rearrange(F.one_hot(keeper.argmax(dim=1), num_slots), "b j i -> b i j").to(masks.dtype)


def merge_duplicate_masks(masks: torch.Tensor, threshold: float) -> torch.Tensor:
    """Masks [B, K, H, W] (summing to 1 over slots) with each group of duplicates merged into one slot; the
    other slots of the group get empty masks, so shapes, slot count and the sum over slots are unchanged."""
    return einsum(duplicate_groups(masks, threshold), masks, "b i j, b j h w -> b i h w")
