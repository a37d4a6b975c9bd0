"""Averaging per-image scores that may be undefined (NaN), saying how many images were left out.

Per-image metrics are NaN where they are undefined (e.g. FG-ARI of an image with fewer than two
foreground pixels). Silently dropping those images would hide how much of the evaluation set a number
is based on, so the mean always comes with the counts.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MeanWithExclusions:
    """Mean of the defined scores, and how many images were averaged and excluded."""

    mean: float
    std: float
    num_included: int
    num_excluded: int


def nanmean_with_count(scores: torch.Tensor) -> MeanWithExclusions:
    """Mean and (population) std over the non-NaN entries of `scores`; NaN mean if none is defined."""
    values = scores.detach().reshape(-1).double()
    defined = ~torch.isnan(values)
    kept = values[defined]
    num_included = int(kept.numel())
    mean = float(kept.mean()) if num_included else float("nan")
    std = float(kept.std(unbiased=False)) if num_included else float("nan")
    return MeanWithExclusions(mean=mean, std=std, num_included=num_included, num_excluded=values.numel() - num_included)
