"""Learning-rate schedule of the Slot Attention paper: linear warmup, then exponential decay."""
from __future__ import annotations

import torch


def warmup_exponential_decay(
    optimizer: torch.optim.Optimizer, warmup_steps: int, decay_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr(step) = base_lr * min(1, step / warmup) * 0.5 ** (step / decay_steps)."""

    def factor(step: int) -> float:
        warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
        return warmup * 0.5 ** (step / decay_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
