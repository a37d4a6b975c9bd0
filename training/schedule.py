"""Schedules: the Slot Attention paper's learning rate (linear warmup, then exponential decay) and the linear
ramp that loss weights follow."""
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


def linear_ramp(step: int, start: int, steps: int) -> float:
    """0 before `start`, then rising linearly to 1 over `steps` steps (at once when `steps` <= 0)."""
    if step < start:
        return 0.0
    return 1.0 if steps <= 0 else min(1.0, (step - start) / steps)
