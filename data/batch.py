"""The batch every task and score reads: frame pairs with their instance masks and factor records.

A typed object instead of a dictionary, so a misspelt field fails where it is written, and one `.to(device)`
that the training loop calls once per step instead of every task moving its own tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class PairBatch:
    """B frame pairs; frame 1 is frame 0 with a few object factors changed (or the same image, for a
    converted single-image data set)."""

    frame0: torch.Tensor  # [B, 3, H, W] float32 in [-1, 1]
    frame1: torch.Tensor  # [B, 3, H, W]
    mask0: torch.Tensor  # [B, H, W] int64 instance ids, 0 = background, one id per object in both frames
    mask1: torch.Tensor  # [B, H, W]
    factors: list[dict]  # each pair's factors.json: every object's factors in both frames, what changed
    keys: list[str]  # each pair's sample key, for error messages that name the sample

    @classmethod
    def from_frames(cls, frame0: torch.Tensor, frame1: torch.Tensor, factors: list[dict] | None = None
                    ) -> PairBatch:
        """Pairs without segmentation: every mask pixel is background (id 0), records empty unless given."""
        background = torch.zeros(frame0.shape[0], *frame0.shape[-2:], dtype=torch.int64, device=frame0.device)
        return cls(frame0, frame1, background, background.clone(),
                   factors=factors if factors is not None else [{} for _ in range(len(frame0))],
                   keys=[f"pair{i}" for i in range(len(frame0))])

    def __len__(self) -> int:
        return self.frame0.shape[0]

    def to(self, device: torch.device | str) -> PairBatch:
        """The same pairs with every tensor on `device` (records stay on the host)."""
        return replace(self, frame0=self.frame0.to(device), frame1=self.frame1.to(device),
                       mask0=self.mask0.to(device), mask1=self.mask1.to(device))

    @property
    def frames(self) -> torch.Tensor:
        """Both frames as one image batch [2B, 3, H, W], frame 0s first."""
        return torch.cat([self.frame0, self.frame1])

    @property
    def is_static(self) -> bool:
        """Frame 1 repeats frame 0 everywhere, masks included (converted single-image data sets)."""
        return torch.equal(self.frame0, self.frame1) and torch.equal(self.mask0, self.mask1)

    def images_and_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Both frames as independent images: ([2B, 3, H, W], [2B, H, W]), frame 0s first.

        A batch of static pairs gives its frame 0s only ([B, 3, H, W]): the same images twice would double
        the work and change nothing else.
        """
        if self.is_static:
            return self.frame0, self.mask0
        return self.frames, torch.cat([self.mask0, self.mask1])
