"""Schedules: the learning rate (the Slot Attention paper's linear warmup then exponential decay, or a warmup
then cosine decay to zero at the last step) and the linear ramp that loss weights follow."""
from __future__ import annotations

import math

import torch


def warmup_factor(step: int, warmup_steps: int) -> float:
    """The linear warm-up both learning-rate schedules share: (step + 1) / warmup_steps, capped at 1."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def warmup_exponential_decay(
    optimizer: torch.optim.Optimizer, warmup_steps: int, decay_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr(step) = base_lr * min(1, step / warmup) * 0.5 ** (step / decay_steps)."""

    def factor(step: int) -> float:
        return warmup_factor(step, warmup_steps) * 0.5 ** (step / decay_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warmup_cosine_decay(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """lr(step) = base_lr * min(1, (step + 1) / warmup) * (1 + cos(pi * step / total_steps)) / 2: the rate falls
    to zero at the run's last step, so late steps settle what the early, fast ones found (0 after the end)."""

    def factor(step: int) -> float:
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        return warmup_factor(step, warmup_steps) * cosine

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def learning_rate_schedule(optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, decay_steps: int,
                           max_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The scheduler `train.lr_schedule` names: "exponential" halves every `decay_steps`, "cosine" reaches zero
    at `max_steps` (so the horizon is the step count, not a time limit)."""
    if schedule == "cosine":
        return warmup_cosine_decay(optimizer, warmup_steps, max_steps)
    return warmup_exponential_decay(optimizer, warmup_steps, decay_steps)


def linear_ramp(step: int, start: int, steps: int) -> float:
    """0 before `start`, then rising linearly to 1 over `steps` steps (at once when `steps` <= 0)."""
    if step < start:
        return 0.0
    return 1.0 if steps <= 0 else min(1.0, (step - start) / steps)
