"""Registry of run kinds: `task: <name>` in a config picks one."""
from __future__ import annotations

from training.config import ConfigError, RunConfig
from training.tasks.base import Task
from training.tasks.discovery import DiscoveryTask
from training.tasks.set_prediction import SetPredictionTask
from training.tasks.vae import VAETask

TASKS: dict[str, type[Task]] = {
    DiscoveryTask.name: DiscoveryTask,
    SetPredictionTask.name: SetPredictionTask,
    VAETask.name: VAETask,
}


def make_task(config: RunConfig) -> Task:
    if config.task not in TASKS:
        raise ConfigError(f"unknown task '{config.task}'; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[config.task](config)


__all__ = ["TASKS", "Task", "make_task"]
