"""What differs between kinds of runs. The loop in training/loop.py (data stream, Accelerate, schedule,
checkpoints, logging, resumption) is shared; a task says what the model is, what its loss is, and how it
is evaluated, so a new kind of model costs one small module instead of a second training script."""
from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from data import PairBatch, check_shards, is_unlabelled, train_batches
from training.build import dataset_urls
from training.config import ConfigError, RunConfig


class Task(abc.ABC):
    """One kind of run, e.g. object discovery or set prediction; built from the run's config."""

    name: str
    #: whether the task reads each object's factors (targets, disentanglement scores): it refuses imported
    #: images without labels at start-up rather than failing at the first batch
    needs_object_factors: bool = False

    #: whether some trained weights may get no gradient in a step (data-parallel runs must then be told)
    has_unused_parameters: bool = False

    def __init__(self, config: RunConfig):
        self.config = config

    def datasets(self, progress: bool = True) -> tuple[list[str], list[str], dict]:
        """(train URLs, eval URLs, description of the data) of the run, made or found in the cache, with the
        eval split decoded once so that damage fails at start-up rather than at the report. Frame-pair
        shards unless the task reads another format."""
        train_urls, eval_urls, description = dataset_urls(self.config, progress=progress)
        check_shards(eval_urls, resolution=self.config.data.resolution)
        if self.needs_object_factors and is_unlabelled(eval_urls):
            raise ConfigError(f"task {self.name} needs each object's factors, but the eval shards hold images "
                              "without labels (data.from_images): train object discovery on them (task discovery, "
                              "e.g. the default preset)")
        return train_urls, eval_urls, description

    def train_batches(self, urls: list[str], start_step: int) -> Iterator[Any]:
        """Endless training batches (anything with `.to(device)`); epoch e is a pure function of (seed, e,
        rank), so resuming at any step replays exactly the batches an uninterrupted run would have seen.
        Ranks draw disjoint shards."""
        train = self.config.train
        epoch, skip = divmod(start_step, train.batches_per_epoch)
        while True:
            batches = train_batches(
                urls, train.batch_size, seed=train.seed, epoch=epoch, batches_per_epoch=train.batches_per_epoch,
                shuffle_buffer=self.config.data.shuffle_buffer, num_workers=self.config.data.num_workers,
                resolution=self.config.data.resolution,
            )
            for index, batch in enumerate(batches):
                if index >= skip:
                    yield batch
            epoch, skip = epoch + 1, 0

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
