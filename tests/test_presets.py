"""Presets and config files that build on a `base` preset: resolution order, merging, errors, and the
repository's presets that inherit the default run instead of copying it."""
from __future__ import annotations

import re
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import pytest
import yaml

import training.config
from training.config import (ConfigError, RunConfig, build_config, load_yaml, parse_override, preset_names,
                             preset_path, read_yaml)
from training.loop import resolve_config

#: the repository's presets that build on another, and on which: every other preset stands alone
INHERITING_PRESETS = {"set_prediction": "default", "weak_slots": "default", "dsprites_vae": "dsprites_vae_dlib",
                      "discovery_64": "default", "weak_slots_64": "weak_slots"}


@pytest.fixture
def write_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict], Path]:
    """Presets in a folder of the test's own, so chains and broken bases need no change to configs/."""
    folder = tmp_path / "configs"
    folder.mkdir()
    monkeypatch.setattr(training.config, "PRESET_DIR", folder)

    def write(name: str, values: dict) -> Path:
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    return write


def resolved(preset: str | None, *overrides: str, config_file: Path | None = None) -> dict:
    return asdict(resolve_config(preset, config_file, None, list(overrides)))


def test_child_overrides_its_base_chain_which_overrides_the_defaults_and_overrides_win(write_preset):
    write_preset("grandparent", {"model": {"num_slots": 6, "slot_dim": 32}, "train": {"max_steps": 100}})
    write_preset("parent", {"base": "grandparent", "model": {"num_slots": 4}, "train": {"warmup_steps": 7}})
    write_preset("child", {"base": "parent", "model": {"num_slots": 3}})
    config = resolved("child")
    assert config["model"]["num_slots"] == 3  # the child over its base
    assert config["model"]["slot_dim"] == 32 and config["train"]["max_steps"] == 100  # the base's base
    assert config["train"]["warmup_steps"] == 7  # the base over the dataclass default (100)
    assert config["model"]["mlp_hidden_dim"] == RunConfig().model.mlp_hidden_dim  # set nowhere: the default
    overridden = resolved("child", "model.num_slots=9", "model.slot_dim=48", "train.warmup_steps=1")
    assert (overridden["model"]["num_slots"], overridden["model"]["slot_dim"], overridden["train"]["warmup_steps"]) \
        == (9, 48, 1)


def test_a_section_in_the_child_keeps_the_other_keys_of_the_base_section(write_preset):
    write_preset("parent", {"model": {"num_slots": 6, "decoder_layers": 1, "colour_values": True}})
    write_preset("child", {"base": "parent", "model": {"num_slots": 3}})
    model = resolved("child")["model"]
    assert (model["num_slots"], model["decoder_layers"], model["colour_values"]) == (3, 1, True)


def test_a_list_or_free_mapping_in_the_child_replaces_the_base_value_whole(write_preset):
    write_preset("parent", {"eval": {"sweep_slots": [2, 4, 6]},
                            "data": {"generator_kwargs": {"changed_factors": "random", "extra": 1}}})
    write_preset("child", {"base": "parent", "eval": {"sweep_slots": [3]},
                           "data": {"generator_kwargs": {"changed_factors": 1}}})
    config = resolved("child")
    assert config["eval"]["sweep_slots"] == [3]
    assert config["data"]["generator_kwargs"] == {"changed_factors": 1}  # as a command-line override sets it


def test_an_unknown_base_names_the_file_and_the_known_presets(write_preset):
    write_preset("other", {})
    path = write_preset("child", {"base": "nope"})
    with pytest.raises(ConfigError, match=rf"config file {re.escape(str(path))}: unknown base preset 'nope'; "
                                          r"known presets: child, other$"):
        resolved("child")


def test_a_base_cycle_names_the_file_and_the_chain(write_preset):
    write_preset("a", {"base": "b"})
    path_b = write_preset("b", {"base": "a"})
    with pytest.raises(ConfigError, match=rf"config file {re.escape(str(path_b))}: base 'a' makes a cycle: "
                                          r"a -> b -> a$"):
        resolved("a")
    path_self = write_preset("self", {"base": "self"})
    with pytest.raises(ConfigError, match=rf"{re.escape(str(path_self))}: base 'self' makes a cycle: self -> self"):
        resolved("self")


@pytest.mark.parametrize("base", [3, ["default"], {"name": "default"}, None, ""])
def test_a_base_that_is_not_a_preset_name_names_the_file(write_preset, base):
    write_preset("default", {})
    path = write_preset("child", {"base": base})
    with pytest.raises(ConfigError, match=rf"config file {re.escape(str(path))}: base must be a preset name, got "):
        resolved("child")


def test_a_config_file_with_base_default_resolves_like_the_preset_plus_its_values(tmp_path):
    values = {"model": {"num_slots": 5}, "train": {"max_steps": 30}}
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "default", **values}))
    expected = asdict(build_config([load_yaml(preset_path("default")), values]))
    assert resolved("default", config_file=path) == expected
    assert expected["model"]["mask_prior"] == "attention" and expected["model"]["num_slots"] == 5
    assert resolved("default", "train.max_steps=40", config_file=path)["train"]["max_steps"] == 40


def test_a_config_file_base_replaces_the_default_preset_and_must_agree_with_an_explicit_one(tmp_path):
    """A file built on smoke must not pick up the default preset's model options from under it."""
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"base": "smoke", "train": {"max_steps": 2}}))
    expected = asdict(build_config([load_yaml(preset_path("smoke")), {"train": {"max_steps": 2}}]))
    assert resolved(None, config_file=path) == expected == resolved("smoke", config_file=path)
    assert expected["model"]["mask_prior"] == "none"
    for preset in ("paper", "default"):  # an explicit --preset default is a different preset too
        with pytest.raises(ConfigError, match=rf"--preset {preset} and config file {re.escape(str(path))} "
                                              r"\(base: smoke\) name different presets"):
            resolved(preset, config_file=path)


def test_no_preset_and_no_config_file_is_the_default_preset():
    assert resolved(None) == resolved("default")


def test_a_config_file_without_base_still_applies_over_the_preset(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"train": {"max_steps": 2}}))
    config = resolved("smoke", config_file=path)
    assert config == asdict(build_config([load_yaml(preset_path("smoke")), {"train": {"max_steps": 2}}]))


def test_only_the_presets_derived_from_another_run_name_a_base():
    """paper and smoke are deliberately the dataclass defaults (plus smoke's tiny sizes): the default run's
    model options must not leak into them."""
    bases = {name: read_yaml(preset_path(name)).get("base") for name in preset_names()}
    assert {name: base for name, base in bases.items() if base is not None} == INHERITING_PRESETS
    assert resolved("paper") == asdict(RunConfig())
    assert resolved("smoke")["model"]["mask_prior"] == "none"


@pytest.mark.parametrize("name", sorted(INHERITING_PRESETS))
def test_an_inheriting_preset_repeats_none_of_its_base_values(name):
    """A value the base sets already, written again in the child, is the copy inheritance replaces: it would
    silently stop following a change to the base."""
    base_values = load_yaml(preset_path(INHERITING_PRESETS[name]))
    for section, values in read_yaml(preset_path(name)).items():
        if isinstance(values, dict) and isinstance(base_values.get(section), dict):
            repeated = {key: value for key, value in values.items() if base_values[section].get(key, ...) == value}
            assert not repeated, f"{name}.yaml repeats {section} values of its base: {repeated}"


def test_the_64_pixel_object_presets_compare_like_for_like():
    """weak_slots_64 and its autoencoder baseline discovery_64 train on the same data with the same slot count
    and budget; each is its base with only the scenes, the slot count and the budget changed."""
    autoencoder, weak = resolved("discovery_64"), resolved("weak_slots_64")
    assert autoencoder["data"] == weak["data"] and weak["data"]["resolution"] == 64
    assert weak["data"]["generator_kwargs"] == {"min_objects": 2, "max_objects": 3, "radius_fraction": 0.22,
                                                "min_visible_fraction": 0.5, "changed_factors": 1,
                                                "change_one_object": True}
    assert autoencoder["train"] == weak["train"] == {**resolved("default")["train"], "max_steps": 20000,
                                                     "time_limit_minutes": 27}
    assert autoencoder["model"] == {**resolved("default")["model"], "num_slots": 5}
    assert weak["model"] == autoencoder["model"]
    assert weak["weak_slots"] == resolved("weak_slots")["weak_slots"]


def test_set_prediction_is_the_default_run_plus_its_stated_changes():
    default, preset = resolved("default"), resolved("set_prediction")
    assert preset["task"] == "set_prediction"
    assert preset["model"] == {**default["model"], "merge_duplicates": None}
    assert preset["train"] == {**default["train"], "max_steps": 13000, "decay_steps": 8000, "eval_every": 500,
                               "eval_images": 256, "log_every": 50, "checkpoint_every": 1000}
    assert preset["train"]["time_limit_minutes"] == 14
    assert preset["data"] == default["data"] and preset["eval"] == default["eval"]
    assert {key: preset["set_prediction"][key] for key in ("reconstruction_weight", "head_masks", "input_skip",
                                                           "segmentation_weight")} == {
        "reconstruction_weight": 100, "head_masks": "decoder", "input_skip": False, "segmentation_weight": 0}


def test_weak_slots_trains_the_default_runs_model_on_its_data_and_budget():
    default, preset = resolved("default"), resolved("weak_slots")
    assert preset["task"] == "weak_slots"
    for section in ("model", "data", "train", "eval"):
        assert preset[section] == default[section], section


def test_dsprites_vae_is_the_dlib_setup_plus_the_time_to_disentanglement_settings():
    dlib, fast = resolved("dsprites_vae_dlib"), resolved("dsprites_vae")
    assert (dlib["train"]["learning_rate"], dlib["train"]["max_steps"], dlib["vae"]["beta"]) == (1e-4, 300000, 1.0)
    assert dlib["train"]["mixed_precision"] is None and dlib["train"]["grad_clip"] == 0.0
    assert fast["task"] == dlib["task"] == "vae"
    assert fast["data"] == {**dlib["data"], "generator_kwargs": {"changed_factors": "random"}}  # the paper's text
    assert dlib["data"]["generator_kwargs"] == {"changed_factors": "dlib"}  # what dlib's code samples
    assert fast["model"] == dlib["model"] and fast["eval"] == dlib["eval"]
    assert fast["vae"] == {**dlib["vae"], "beta": 4.0, "beta_warmup_steps": 1500, "decoder": "broadcast"}
    assert dlib["vae"]["decoder"] == "deconv"  # disentanglement_lib's architecture
    assert fast["train"] == {**dlib["train"], "learning_rate": 1e-3, "max_steps": 5000, "mixed_precision": "auto",
                             "lr_schedule": "cosine",
                             "time_limit_minutes": 28, "eval_every": 1000, "checkpoint_every": 1000}
    assert fast["data"]["generator_kwargs"] == {"changed_factors": "random"} and fast["data"]["resolution"] == 64


#: what a preset needs from the command line to resolve: DINOSAUR's pretrained backbone reads a local
#: weights file, which no preset can name (training/options/backbone.py refuses the config without one)
NEEDS_WEIGHTS = {"dinosaur"}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_resolves(name, tmp_path):
    weights = tmp_path / "backbone.safetensors"
    weights.touch()
    overrides = [f"backbone.weights={weights}"] if name in NEEDS_WEIGHTS else []
    assert resolved(name, *overrides) == asdict(build_config([load_yaml(preset_path(name)),
                                                              *map(parse_override, overrides)]))


@pytest.mark.parametrize("name", sorted(NEEDS_WEIGHTS))
def test_a_preset_of_a_pretrained_backbone_is_refused_without_its_weights_file(name, tmp_path):
    with pytest.raises(ConfigError, match="backbone.pretrained is true but backbone.weights is not set"):
        resolved(name)
    with pytest.raises(ConfigError, match="backbone weights file not found: .*missing.safetensors"):
        resolved(name, f"backbone.weights={tmp_path / 'missing.safetensors'}")
