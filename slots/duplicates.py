"""Merging duplicate slots: two slots that claim the same pixels describe one object.

Slot Attention draws every slot from one distribution, so two slots can converge onto the same object and
split its pixels between them (the reconstruction is just as good: nothing in the loss tells them apart).
An argmax over such masks cuts the object into speckles. Merging the slots whose masks point the same way
(cosine similarity over pixels above a threshold) gives the object back to one slot; masks of distinct
objects are disjoint (cosine ~0) and are never merged. Slot merging of this kind is part of SOLV (Aydemir
et al. 2023, agglomerative merging of similar slots) and, as slot dropping, of AdaSlot (Fan et al. 2024).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from einops import einsum, rearrange
from torch import nn


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


class MergeDuplicates:
    """Evaluation-time duplicate merging around a slot model: outside training, its output's masks are merged
    (`merge_duplicate_masks`), the reconstruction is recomposited from the merged masks, and the masks as the
    model drew them are kept in `unmerged_masks`; in training the output passes unchanged.

    It wraps the model's forward as a forward hook rather than as a module around the model, so the model
    keeps its class, attributes and state dict keys (checkpoints load either way) and the training code that
    reaches into it (`encode`, `attend`, `render`, `mask_prior_weight`) is unaffected. Works on any output
    dataclass with `masks` [B, K, H, W], `slot_rgb` [B, K, 3, H, W], `reconstruction` and `unmerged_masks`.
    """

    def __init__(self, model: nn.Module, threshold: float) -> None:
        self.threshold = self.check_threshold(threshold)
        self.handle = model.register_forward_hook(self)

    @staticmethod
    def check_threshold(threshold: float) -> float:
        if not 0 < threshold < 1:
            raise ValueError(f"merge_duplicates must be a cosine threshold in (0, 1) or None, got {threshold}")
        return threshold

    @staticmethod
    def attached(model: nn.Module) -> "MergeDuplicates | None":
        """The merger wrapped around `model`, if any."""
        return next((hook for hook in model._forward_hooks.values() if isinstance(hook, MergeDuplicates)), None)

    def remove(self) -> None:
        """Unwrap: the model's outputs are its own again."""
        self.handle.remove()

    def __call__(self, model: nn.Module, args: tuple, output: Any) -> Any:
        if model.training:
            return output
        masks = merge_duplicate_masks(output.masks, self.threshold)  # [B, K, H, W]
        reconstruction = (output.slot_rgb * masks.unsqueeze(2)).sum(dim=1)  # [B, 3, H, W]
        return dataclasses.replace(output, reconstruction=reconstruction, masks=masks, unmerged_masks=output.masks)

    def __repr__(self) -> str:
        return f"MergeDuplicates(threshold={self.threshold})"
