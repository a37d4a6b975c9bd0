"""What differs between kinds of runs. The loop in training/loop.py (data stream, Accelerate, schedule,
checkpoints, logging, resumption) is shared; a task says what the model is, what its loss is, and how it
is evaluated, so a new kind of model costs one small module instead of a second training script."""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from data import PairBatch
from training.config import RunConfig


class Task(abc.ABC):
    """One kind of run, e.g. object discovery or set prediction; built from the run's config."""

    name: str

    def __init__(self, config: RunConfig):
        self.config = config

    @abc.abstractmethod
    def build_model(self) -> nn.Module:
        """Every trainable module of the run (auxiliary networks included), so that one prepare(),
        one optimiser and one checkpoint hold all of it."""

    def param_groups(self, model: nn.Module) -> Iterable[Any]:
        """Optimiser parameter groups; one group at the configured learning rate unless a task needs more.
        Frozen parameters (a frozen backbone) are left out: the optimiser never holds state for them."""
        return [parameter for parameter in model.parameters() if parameter.requires_grad]

    @abc.abstractmethod
    def training_loss(self, model: nn.Module, batch: PairBatch, step: int
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss to back-propagate, scalars to log) of a batch the loop has moved to the model's device.
        Logged values stay tensors: the loop reads them only every `log_every` steps, so training does not
        wait on the device each step."""

    def prepare_quick_eval(self, eval_urls: list[str]) -> None:
        """Load what `quick_eval` needs, once, on the main process."""

    def quick_eval(self, model: nn.Module) -> dict[str, float]:
        """A cheap periodic evaluation logged during training (empty: none)."""
        return {}

    @abc.abstractmethod
    def report(self, model: nn.Module, run_dir: Path, eval_urls: list[str], summary: dict) -> dict:
        """The final evaluation: write metrics.json (with `summary`: timing, dataset) and any pictures
        into `run_dir`, print a short result, and return the metrics."""
