"""Each task's own options: one module per task holding its config section dataclass, the model options it
honours and `validate(config)`, every check of its options that needs no data set, the model libraries' own
checks included (a VAE method's name, a slot pair method, a backbone's weights file: `backbone.py`).
training.config builds RunConfig from these sections and runs the active task's validation at config build
time, before any task object (or model, or data set) is built; the task classes in training/tasks keep only
the checks that need the data. These modules never import a task, the data or scoring."""
from __future__ import annotations

from types import ModuleType

from training.options import dinosaur, discovery, orientation, set_prediction, vae, weak_slots

#: task name -> its options module, in the order of the task registry (training/tasks)
TASK_OPTIONS: dict[str, ModuleType] = {
    "discovery": discovery,
    "dinosaur": dinosaur,
    "set_prediction": set_prediction,
    "vae": vae,
    "weak_slots": weak_slots,
    "orientation": orientation,
}

__all__ = ["TASK_OPTIONS"]
