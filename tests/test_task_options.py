"""Each task owns its config section and its validation (training/options/<task>.py): a bad task option is
refused when the config is built, before any task object, model or data set exists. The option modules may ask
the model libraries' own data-free checks (a method's name, a backbone's weights file), but never reach a task,
the data or scoring."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import train_slots
from training.config import ConfigError, RunConfig, build_config, parse_override
from training.options import TASK_OPTIONS
from weak_supervision.methods import METHODS

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
    (("task=vae", "vae.method=beta_vea"), f"vae.method: unknown method 'beta_vea'; known methods: {', '.join(METHODS)}"),
    (("task=weak_slots", "weak_slots.method=beta_vae"),
     "weak_slots.method must be one of ('ada_gvae', 'ada_mlvae', 'slot_vae'), got 'beta_vae'"),
    (("task=weak_slots", "weak_slots.correspondence=greedy"),
     "weak_slots.correspondence must be one of ('init', 'init_hungarian', 'hungarian'), got 'greedy'"),
    (("task=weak_slots", "weak_slots.recon_sigma=0"), "weak_slots: need beta >= 0, share_floor >= 0, recon_sigma > 0"),
    (("task=dinosaur", "backbone.name=test_vit.r160_in1k"),
     "backbone.pretrained is true but backbone.weights is not set (weights are never downloaded at run time)"),
    (("task=dinosaur", "backbone.name=test_vit.r160_in1k", "backbone.weights=/nowhere/dino.safetensors"),
     "backbone weights file not found: /nowhere/dino.safetensors"),
    (("task=discovery", "backbone.name=test_resnet.r160_in1k", "backbone.weights=/nowhere/resnet.safetensors"),
     "backbone weights file not found: /nowhere/resnet.safetensors"),
])
def test_a_task_option_is_refused_at_config_build_time(monkeypatch, overrides, message):
    """build_config raises a one-line error naming the key, and no task class is even looked up (a task's
    __init__ would raise the same)."""
    import training.tasks as tasks

    def no_task(*args, **kwargs):
        raise AssertionError("a task was built before the config was refused")

    monkeypatch.setattr(tasks, "task_class", no_task)
    monkeypatch.setattr(tasks, "make_task", no_task)
    with pytest.raises(ConfigError) as raised:
        build(*overrides)
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_refused_method_stops_the_command_with_one_line_before_anything_is_written(tmp_path, capsys):
    """The command line's view of the same check: exit 2, one line naming the key and the known methods, and
    neither a run directory nor a data set."""
    assert train_slots.main(["--preset", "dsprites_vae", "vae.method=beta_vea", f"output_dir={tmp_path / 'runs'}",
                             f"data.root={tmp_path / 'data'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: vae.method: unknown method 'beta_vea'; known methods: {', '.join(METHODS)}"
    assert list(tmp_path.iterdir()) == []


def test_a_good_config_of_each_library_checked_task_is_accepted(tmp_path):
    """The checks refuse only what the libraries refuse: every known method and correspondence builds."""
    for method in METHODS:
        assert build("task=vae", f"vae.method={method}").vae.method == method
    for method in ("ada_gvae", "ada_mlvae", "slot_vae"):
        for correspondence in ("init", "init_hungarian", "hungarian"):
            build("task=weak_slots", f"weak_slots.method={method}", f"weak_slots.correspondence={correspondence}")
    weights = tmp_path / "dino.safetensors"
    weights.touch()
    assert build("task=dinosaur", "backbone.name=test_vit.r160_in1k", f"backbone.weights={weights}").task == "dinosaur"
    assert build("task=dinosaur", "backbone.name=test_vit.r160_in1k", "backbone.pretrained=false").task == "dinosaur"


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


#: what the config must never bring in: a task (which imports the config: a cycle), the data, scoring, or
#: the heavy libraries only those use. The model libraries (torch, slots, weak_supervision) may come, for their
#: own data-free checks of a method name or a weights file.
NOT_WITH_THE_CONFIG = ("sklearn", "timm", "data", "scoring", "viz", "training.tasks", "training.build",
                       "training.loop")
#: ... and the config error, which every layer may raise, brings in nothing at all
HEAVY = ("torch", "numpy", "slots", "weak_supervision", "metrics", *NOT_WITH_THE_CONFIG)


@pytest.mark.parametrize("module, forbidden", [
    ("training.errors", HEAVY),
    *((module, NOT_WITH_THE_CONFIG) for module in ["training.config", "training.options", "training.options.backbone",
                                                   *(f"training.options.{name}" for name in TASK_OPTIONS)]),
])
def test_the_config_and_task_option_modules_import_no_task_data_or_scoring(module, forbidden):
    """In a fresh interpreter: no task module, data, scoring or scikit-learn comes in with the config."""
    code = (f"import sys, {module}\n"
            f"found = sorted(m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in {forbidden!r}))\n"
            "print(','.join(found))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"{module} imports {result.stdout.strip()}"
