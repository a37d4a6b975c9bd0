"""Registry of run kinds: `task: <name>` in a config picks one.

Tasks are imported when a run asks for them: the VAE task alone pulls in scikit-learn, and every process of
a launch pays for what this module imports.
"""
from __future__ import annotations

from importlib import import_module

from training.config import ConfigError, RunConfig
from training.tasks.base import Task

#: task name -> "module:class"
TASKS: dict[str, str] = {
    "discovery": "training.tasks.discovery:DiscoveryTask",
    "dinosaur": "training.tasks.dinosaur:DinosaurTask",
    "set_prediction": "training.tasks.set_prediction:SetPredictionTask",
    "vae": "training.tasks.vae:VAETask",
    "weak_slots": "training.tasks.weak_slots:WeakSlotsTask",
    "orientation": "training.tasks.orientation:OrientationTask",
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ConfigError(f"unknown task '{name}'; known tasks: {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(import_module(module), cls)


def make_task(config: RunConfig) -> Task:
    return task_class(config.task)(config)


__all__ = ["TASKS", "Task", "make_task", "task_class"]
