"""Typed run configuration: dataclass defaults, YAML presets, and `section.key=value` overrides.

Every key is checked against the dataclasses, so a typo fails loudly instead of being ignored. A preset or a
config file may build on a preset with `base: <name>` instead of copying its values (load_yaml resolves it).
"""
from __future__ import annotations

import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from training.errors import ConfigError
from training.options import TASK_OPTIONS
from training.options.dinosaur import DinosaurConfig
from training.options.orientation import OrientationConfig
from training.options.set_prediction import SetPredictionConfig
from training.options.vae import VAEConfig
from training.options.weak_slots import WeakSlotsConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class DataConfig:
    generator: str = "multi_dsprites"
    generator_kwargs: dict = field(default_factory=dict)
    resolution: int = 32
    num_train: int = 20000
    num_eval: int = 500
    pairs_per_shard: int = 1000
    seed: int = 0
    root: str = "data_cache"
    train_shards: str | None = None  # explicit shards (dir, glob, brace pattern) instead of generating
    eval_shards: str | None = None
    shuffle_buffer: int = 1000
    num_workers: int = 0


@dataclass
class ModelConfig:
    num_slots: int = 5
    num_iterations: int = 3
    slot_dim: int = 64
    mlp_hidden_dim: int = 128
    encoder_channels: int = 32
    encoder_layers: int = 4
    encoder_kernel: int = 5
    # one stride per encoder layer; null: all 1 (a feature per pixel); auto: all 1 up to 63x63 images, stride 2
    # in the first layers above (64x64: [2, 1, 1, 1], 128x128: [2, 2, 1, 1]), so the feature grid stays 32-63 wide
    encoder_strides: list | str | None = "auto"
    decoder_channels: int = 32
    decoder_layers: int = 3
    decoder_kernel: int = 5
    broadcast_size: int | None = None
    implicit_grad: bool = True
    slot_frames: str = "none"  # none | translation | translation_scale | translation_isotropic: own frame
    frame_scale_factor: float = 1.0  # relative grid = (grid - position) / (scale * frame_scale_factor)
    colour_values: bool = False  # add a linear map of the pixels under each feature to the slot values
    invariant_attention: str = "none"  # none | mlp | quadratic | quadratic_translation: keys in each slot's frame
    mask_prior: str = "none"  # none | attention: alpha logits + log attention (masks start from the attention)
    merge_duplicates: float | None = None  # outside training, merge slots whose masks have cosine above this
    # turn each slot's frame to the best of this many angles before decoding (slots/orientation_search.py;
    # needs slot_frames); 0: off
    orientation_search: int = 0
    orientation_refine_steps: int = 0  # Adam steps refining each chosen angle
    # > 0: render and score each candidate only on a square of this many pixels around the slot (0: whole image)
    orientation_window: int = 0


MIXED_PRECISIONS = ("no", "bf16", "fp16", "auto")
LR_SCHEDULES = ("exponential", "cosine")  # training/schedule.py


@dataclass
class TrainConfig:
    batch_size: int = 8  # frame pairs per step and process; both frames are trained on, so 2x images
    max_steps: int = 1800
    # stop earlier once this many wall-clock minutes have passed since the run started (data generation
    # included; checked every `log_every` steps), then evaluate as usual: runs compared at a time budget
    time_limit_minutes: float | None = None
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    decay_steps: int = 2000  # learning rate halves every `decay_steps` (lr_schedule "exponential")
    lr_schedule: str = "exponential"  # or "cosine": from the warmup down to 0 at max_steps
    batches_per_epoch: int = 500  # length of one resampled pass; resumption replays epochs exactly
    grad_clip: float = 1.0
    seed: int = 0
    cpu_threads: int | None = None  # None: all cores / local processes when training on the CPU
    log_every: int = 25
    eval_every: int = 250
    eval_images: int = 256
    checkpoint_every: int = 500
    keep_checkpoints: int = 2  # newest checkpoints kept; 0: keep every one
    # steps whose loss or gradients are NaN/infinite that are skipped (no update) before the run stops;
    # 0: stop at the first one. Checked once per step, on every process alike.
    max_nonfinite_steps: int = 0
    # no | bf16 | fp16 | auto for the training step's forward pass (auto: bf16 where the device computes it
    # natively, training/precision.py); None: the launcher's (accelerate config or --mixed_precision).
    # (bool: YAML reads a bare `no` as false, which means "no")
    mixed_precision: str | bool | None = None


@dataclass
class EvalConfig:
    sweep_slots: list = field(default_factory=lambda: [2, 3, 4, 5, 6, 8])
    sweep_iterations: list = field(default_factory=lambda: [3])
    batch_size: int = 100
    num_visualise: int = 8
    seed: int = 1234


@dataclass
class BackboneConfig:
    """A timm model as the encoder (slots/backbone.py), for `task: discovery` and `task: dinosaur`.
    `name: null` keeps the convolutional encoder of the model section. Weights come only from a local file."""

    name: str | None = None  # timm model name, e.g. vit_small_patch16_224.dino, resnet18.a1_in1k
    pretrained: bool = True  # load `weights` (then required); false: random weights, a smoke test only
    weights: str | None = None  # local .safetensors / .pth state dict of the timm model; nothing is downloaded
    frozen: bool = True  # no gradient, eval mode, not in the optimiser (DINOSAUR needs it frozen)
    image_size: int | None = None  # square size the backbone sees (images are resized); None: data.resolution
    feature_index: int | None = None  # CNNs: which feature stage (timm out_indices); None: the last


@dataclass
class RunConfig:
    task: str = "discovery"  # the kind of run: see training/tasks
    name: str | None = None
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    set_prediction: SetPredictionConfig = field(default_factory=SetPredictionConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    dinosaur: DinosaurConfig = field(default_factory=DinosaurConfig)
    weak_slots: WeakSlotsConfig = field(default_factory=WeakSlotsConfig)
    orientation: OrientationConfig = field(default_factory=OrientationConfig)


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(value: Any, expected: Any, key: str) -> Any:
    """Check `value` against an annotation, accepting ints for floats; raise ConfigError otherwise."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    base = origin or expected
    if base is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if base is float and isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}") from None
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
    if base is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if not isinstance(value, base):
        raise ConfigError(f"config key '{key}': expected {base.__name__}, got {type(value).__name__} {value!r}")
    return value


def _update(obj: Any, values: dict, prefix: str = "") -> None:
    known = {f.name for f in fields(obj)}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"unknown config key '{path}'; known keys here: {', '.join(sorted(known))}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{path}' is a section; expected a mapping, got {value!r}")
            _update(current, value, prefix=f"{path}.")
        else:
            setattr(obj, key, _coerce(value, _field_type(type(obj), key), path))


def parse_override(text: str) -> dict:
    """`train.max_steps=100` -> {'train': {'max_steps': 100}}; values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    dotted, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw else None
    nested: dict = {}
    cursor = nested
    parts = dotted.strip().split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def read_yaml(path: Path) -> dict:
    """The mapping a YAML file holds, as written (a `base` key left unresolved)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}".splitlines()[0]) from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


def load_yaml(path: Path) -> dict:
    """A config file's values with its `base` preset chain resolved underneath them, so that every caller
    (presets, --config files, saved run configs) gets the complete mapping the file stands for."""
    return _over_base(read_yaml(path), path, chain=())


def preset_names() -> list[str]:
    """The names a preset or a `base` may use, listed in errors so that a typo shows its fix."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset '{name}'; known presets: {', '.join(preset_names())}")
    return path


def declared_base(values: dict, path: Path) -> str | None:
    """The preset a file's `base` key names, if any. Only preset names are accepted: a base is a reviewed,
    named starting point, not an arbitrary file."""
    if "base" not in values:
        return None
    base = values["base"]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"config file {path}: base must be a preset name, got {type(base).__name__} {base!r}")
    return base


def _chain_label(path: Path) -> str:
    """Presets by name, other files by path: how a base chain is shown in an error."""
    return path.stem if path.resolve().parent == PRESET_DIR.resolve() else str(path)


def _over_base(values: dict, path: Path, chain: tuple[Path, ...]) -> dict:
    """`values` (read from `path`) applied over the resolved values of the preset its `base` names, recursively;
    `chain` holds the files already on the way down, so a cycle fails instead of recursing forever."""
    chain = (*chain, path)
    base = declared_base(values, path)
    own = {key: value for key, value in values.items() if key != "base"}
    if base is None:
        return own
    base_path = PRESET_DIR / f"{base}.yaml"
    if not base_path.is_file():
        raise ConfigError(f"config file {path}: unknown base preset '{base}'; known presets: "
                          f"{', '.join(preset_names())}")
    if any(base_path.resolve() == seen.resolve() for seen in chain):
        cycle = " -> ".join(_chain_label(seen) for seen in (*chain, base_path))
        raise ConfigError(f"config file {path}: base '{base}' makes a cycle: {cycle}")
    return merge_values(_over_base(read_yaml(base_path), base_path, chain), own)


def merge_values(base: dict, child: dict, schema: type | None = None) -> dict:
    """`child` over `base` as applying them one after the other would set them: sections (the dataclasses of
    RunConfig) merged key by key, every other value, lists and free-form mappings such as
    data.generator_kwargs included, replaced whole. Unknown keys pass through for build_config to refuse."""
    schema = schema or RunConfig
    merged = dict(base)
    for key, value in child.items():
        section = _section_type(schema, key)
        if section is not None and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value, section)
        else:
            merged[key] = value
    return merged


def _section_type(schema: type, key: str) -> type | None:
    """The dataclass of section `key` of `schema`, or None where `key` is a plain option (or unknown)."""
    expected = typing.get_type_hints(schema).get(key)
    return expected if isinstance(expected, type) and is_dataclass(expected) else None


#: the preset `train_slots.py` runs when --preset is not given
DEFAULT_PRESET = "default"


def run_sources(preset: str | None, config_file: Path | None) -> list[dict]:
    """The mappings a new run starts from: the preset's values (DEFAULT_PRESET when none is named), then the
    config file's. A config file that names a `base` is complete on its own (the base chain resolved under
    it), so it replaces the preset rather than mixing two presets' values; --preset must then be left unset
    or name that same base."""
    if config_file is None:
        return [load_yaml(preset_path(preset or DEFAULT_PRESET))]
    base = declared_base(read_yaml(config_file), config_file)
    if base is None:
        return [load_yaml(preset_path(preset or DEFAULT_PRESET)), load_yaml(config_file)]
    if preset not in (None, base):
        raise ConfigError(f"--preset {preset} and config file {config_file} (base: {base}) name different presets; "
                          f"drop --preset or set the file's base to {preset}")
    return [load_yaml(config_file)]


def build_config(sources: list[dict]) -> RunConfig:
    """Apply mappings in order (preset, then file, then overrides) on top of the defaults; each mapping is
    complete already (load_yaml resolves a file's `base` chain)."""
    config = RunConfig()
    for values in sources:
        _update(config, values)
    validate(config)
    return config


def validate(config: RunConfig) -> None:
    """Cross-field checks that a type annotation cannot express."""
    if config.model.num_slots < 1:
        raise ConfigError(f"model.num_slots must be >= 1, got {config.model.num_slots}")
    if config.model.num_iterations < 1:
        raise ConfigError(f"model.num_iterations must be >= 1, got {config.model.num_iterations}")
    for value in config.eval.sweep_slots:
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"eval.sweep_slots must hold integers >= 1, got {config.eval.sweep_slots}")
    for key in ("batch_size", "max_steps"):
        if getattr(config.train, key) < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {getattr(config.train, key)}")
    if config.train.mixed_precision is False:  # YAML reads a bare `no` as false
        config.train.mixed_precision = "no"
    if config.train.mixed_precision not in (None, *MIXED_PRECISIONS):
        raise ConfigError(f"train.mixed_precision must be one of {', '.join(MIXED_PRECISIONS)} or null, "
                          f"got {config.train.mixed_precision!r}")
    if config.train.time_limit_minutes is not None and config.train.time_limit_minutes <= 0:
        raise ConfigError(f"train.time_limit_minutes must be > 0 or null, got {config.train.time_limit_minutes}")
    validate_train_numbers(config.train)
    validate_eval_numbers(config.eval)
    validate_model_options(config)
    validate_model_numbers(config)
    validate_backbone(config)
    validate_task_options(config)


def validate_task_options(config: RunConfig) -> None:
    """The active task's own checks of its options (training/options/<task>.py), run when the config is
    built, before any task, model or data set; an unknown task is left to the task registry to refuse."""
    task = TASK_OPTIONS.get(config.task)
    if task is not None:
        task.validate(config)


def _at_least(section: str, owner: Any, keys: tuple[str, ...], minimum: int, meaning: str = "") -> None:
    """Each of `keys` (None allowed where the default is None) must be >= `minimum`: a zero step interval
    divides by zero mid-run, a negative count silently means something else (Python's slicing)."""
    for key in keys:
        value = getattr(owner, key)
        if value is not None and not value >= minimum:
            raise ConfigError(f"{section}.{key} must be >= {minimum}{meaning}, got {value}")


def validate_train_numbers(train: TrainConfig) -> None:
    """Ranges of the training options, checked before any work so a bad value fails in one line instead
    of as a traceback minutes into the run (a modulo by zero at the first log step, Adam's own check)."""
    _at_least("train", train, ("decay_steps", "batches_per_epoch", "log_every", "checkpoint_every",
                               "eval_images", "cpu_threads"), 1)
    _at_least("train", train, ("warmup_steps", "max_nonfinite_steps"), 0)
    _at_least("train", train, ("eval_every",), 0, " (0: no evaluation during training)")
    _at_least("train", train, ("keep_checkpoints",), 0, " (0: keep every checkpoint)")
    _at_least("train", train, ("grad_clip",), 0, " (0: no clipping)")
    if train.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {train.lr_schedule!r}")
    if not train.learning_rate > 0 or train.learning_rate == float("inf"):
        raise ConfigError(f"train.learning_rate must be a number > 0, got {train.learning_rate}")


def validate_model_numbers(config: RunConfig) -> None:
    """Sizes of the model: a zero width builds a model that divides by zero (attention's 1/sqrt(slot_dim))
    or has no parameters at all. Encoder strides must give one stride per layer and leave a feature grid
    that is smaller than the image only as much as the image allows, so the data sizes they are checked
    against are checked here too."""
    model = config.model
    _at_least("model", model, ("slot_dim", "mlp_hidden_dim", "encoder_channels", "encoder_layers", "encoder_kernel",
                               "decoder_channels", "decoder_layers", "decoder_kernel", "broadcast_size"), 1)
    if not model.frame_scale_factor > 0:
        raise ConfigError(f"model.frame_scale_factor must be > 0, got {model.frame_scale_factor}")
    _at_least("data", config.data, ("resolution", "num_train", "num_eval", "pairs_per_shard"), 1)
    _at_least("data", config.data, ("shuffle_buffer", "num_workers"), 0)
    strides = model.encoder_strides
    if isinstance(strides, str) and strides != "auto":
        raise ConfigError(f"model.encoder_strides must be 'auto', a list with one stride per encoder layer or "
                          f"null, got {strides!r}")
    if strides is None or strides == "auto":
        return
    if len(strides) != model.encoder_layers or not all(isinstance(s, int) and s >= 1 for s in strides):
        raise ConfigError(f"model.encoder_strides needs one integer >= 1 per encoder layer "
                          f"(model.encoder_layers={model.encoder_layers}), got {list(strides)}")
    total = 1
    for stride in strides:
        total *= stride
    if total > config.data.resolution:
        raise ConfigError(f"model.encoder_strides {list(strides)} downsample by {total}, more than the "
                          f"{config.data.resolution}-pixel images (data.resolution): the total stride must be "
                          f"<= {config.data.resolution}")


def validate_eval_numbers(evaluation: EvalConfig) -> None:
    """Evaluation options that would otherwise fail only after training, at the report."""
    _at_least("eval", evaluation, ("batch_size",), 1)
    _at_least("eval", evaluation, ("num_visualise",), 0)
    for value in evaluation.sweep_iterations:
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"eval.sweep_iterations must hold integers >= 1, got {evaluation.sweep_iterations}")


# model options that only some tasks' models honour (elsewhere they would be silently ignored: set prediction
# has its own encoder_strides; DINOSAUR and the image-level VAEs have neither frames nor colour values); which
# task honours which is each task's own knowledge (MODEL_OPTIONS / model_options in training/options)
RESTRICTED_MODEL_OPTIONS = ("slot_frames", "invariant_attention", "colour_values", "mask_prior", "merge_duplicates",
                            "encoder_strides", "orientation_search", "orientation_refine_steps",
                            "orientation_window")


def validate_model_options(config: RunConfig) -> None:
    """Refuse a model option, set away from its default, that the task's model would ignore (the task's
    options module says which it honours; an unknown task honours none, and the registry refuses it)."""
    defaults = ModelConfig()
    task = TASK_OPTIONS.get(config.task)
    honoured = task.model_options(config) if task is not None else ()
    for key in RESTRICTED_MODEL_OPTIONS:
        value = getattr(config.model, key)
        if value != getattr(defaults, key) and key not in honoured:
            tasks = [name for name, options in TASK_OPTIONS.items() if key in options.MODEL_OPTIONS]
            hint_of = getattr(task, "model_option_hint", None)
            hint = hint_of(key) if hint_of is not None else ""
            raise ConfigError(f"model.{key}={value!r} is only supported by task {' / '.join(tasks)}{hint}, "
                              f"not {config.task!r}")
    threshold = config.model.merge_duplicates
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError(f"model.merge_duplicates must be a cosine threshold in (0, 1) or null, got {threshold}")
    if isinstance(config.model.encoder_strides, list) and config.backbone.name is not None:
        raise ConfigError("model.encoder_strides applies to the CNN encoder, not to a timm backbone (backbone.name)")


def validate_backbone(config: RunConfig) -> None:
    """Backbone options that contradict each other or the task (DINOSAUR's own in training/options/dinosaur.py)."""
    backbone = config.backbone
    if backbone.name is not None and config.task not in ("discovery", "dinosaur"):
        raise ConfigError(f"backbone.name is used by task discovery or dinosaur, not '{config.task}': leave it unset")
    if backbone.image_size is not None and backbone.image_size < 1:
        raise ConfigError(f"backbone.image_size must be >= 1, got {backbone.image_size}")
    if backbone.feature_index is not None and backbone.feature_index < 0:
        raise ConfigError(f"backbone.feature_index must be >= 0, got {backbone.feature_index}")
    if backbone.weights is not None and not backbone.pretrained:
        raise ConfigError("backbone.weights is set but backbone.pretrained is false: drop one of the two")


def to_dict(config: RunConfig) -> dict:
    return asdict(config)


def save_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def load_run_config(run_dir: Path) -> RunConfig:
    """The resolved config a run was started with (written as config.yaml in the run directory)."""
    return build_config([load_yaml(run_dir / "config.yaml")])


__all__ = [
    "DEFAULT_PRESET", "BackboneConfig", "ConfigError", "DataConfig", "DinosaurConfig", "EvalConfig", "ModelConfig",
    "RunConfig", "SetPredictionConfig", "TrainConfig", "VAEConfig", "build_config", "declared_base",
    "load_run_config", "load_yaml", "merge_values", "parse_override", "preset_names", "preset_path", "read_yaml",
    "run_sources", "save_config", "to_dict", "validate",
]
