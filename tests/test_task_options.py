"""Each task owns its config section and its validation (training/options/<task>.py): a bad task option is
refused when the config is built, before any task object, model or data set exists, and the option modules
stay light enough for every process to import with the config."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from training.config import ConfigError, RunConfig, build_config, parse_override
from training.options import TASK_OPTIONS

ROOT = Path(__file__).resolve().parent.parent


def build(*overrides: str) -> RunConfig:
    return build_config([parse_override(text) for text in overrides])


@pytest.mark.parametrize("overrides, message", [
    (("task=set_prediction", "set_prediction.head_masks=alpha"),
     "set_prediction.head_masks must be 'attention' or 'decoder', got 'alpha'"),
    (("task=set_prediction", "set_prediction.loss=l1"), "set_prediction.loss must be 'cross_entropy' or 'huber'"),
    (("task=set_prediction", "set_prediction.encoder_strides=[2, 2]"),
     "set_prediction.encoder_strides needs one stride per encoder layer"),
    (("task=weak_slots", "weak_slots.mask_prior_floor=1.0"), "weak_slots.mask_prior_floor must be in [0, 1)"),
    (("task=weak_slots", "weak_slots.outline_input=true"), "weak_slots.outline_input feeds the outline grid"),
    (("task=dinosaur",), "task dinosaur reconstructs a backbone's features: set backbone.name"),
])
def test_a_task_option_is_refused_at_config_build_time(monkeypatch, overrides, message):
    """build_config raises, and no task class is even looked up (a task's __init__ would raise the same)."""
    import training.tasks as tasks

    def no_task(*args, **kwargs):
        raise AssertionError("a task was built before the config was refused")

    monkeypatch.setattr(tasks, "task_class", no_task)
    monkeypatch.setattr(tasks, "make_task", no_task)
    with pytest.raises(ConfigError) as raised:
        build(*overrides)
    assert message in str(raised.value)


def test_an_option_of_another_task_is_not_checked():
    """Only the active task's section is validated: an unused section keeps whatever it holds."""
    config = build("task=discovery", "set_prediction.head_masks=alpha", "weak_slots.mask_prior_floor=2.0")
    assert config.set_prediction.head_masks == "alpha"


def test_model_options_a_task_ignores_are_refused_from_its_own_list():
    with pytest.raises(ConfigError, match=r"model.slot_frames='translation' is only supported by task "
                                          r"discovery / weak_slots \(or set_prediction with"):
        build("task=set_prediction", "model.slot_frames=translation")
    build("task=set_prediction", "model.slot_frames=translation", "set_prediction.reconstruction_weight=1.0",
          "set_prediction.input_skip=false")
    with pytest.raises(ConfigError, match="model.merge_duplicates=0.9 is only supported by task discovery / "
                                          "weak_slots, not 'set_prediction'"):
        build("task=set_prediction", "model.merge_duplicates=0.9", "set_prediction.reconstruction_weight=1.0",
              "set_prediction.input_skip=false")


def test_every_task_of_the_registry_has_an_options_module():
    from training.tasks import TASKS

    assert list(TASK_OPTIONS) == list(TASKS)
    for module in TASK_OPTIONS.values():
        assert callable(module.validate) and callable(module.model_options)
        assert isinstance(module.MODEL_OPTIONS, tuple)


HEAVY = ("torch", "sklearn", "numpy", "timm", "data", "slots", "weak_supervision", "scoring", "training.tasks")


@pytest.mark.parametrize("module", ["training.config", "training.errors", "training.options",
                                    *(f"training.options.{name}" for name in TASK_OPTIONS)])
def test_the_config_and_task_option_modules_import_nothing_heavy(module):
    """In a fresh interpreter: no torch, scikit-learn or task module comes in with the config."""
    code = (f"import sys, {module}\n"
            f"heavy = sorted(m for m in sys.modules if any(m == h or m.startswith(h + '.') for h in {HEAVY!r}))\n"
            "print(','.join(heavy))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} imports {result.stdout.strip()}"
