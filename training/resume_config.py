"""What a resumed run may change: the settings asked for on `--resume` compared with the run's saved config.

A resumed run continues one optimisation; a setting that shapes the model, the data, the batches or the
optimiser (its learning rate lives in the restored scheduler state) would be ignored or would make the
checkpoint unloadable, so it is refused instead of silently dropped. Settings that only say how long to
train, how often to log, checkpoint and evaluate, or how to evaluate at the end may change; each change is
printed and saved into the run's config.yaml.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from training.config import ConfigError, RunConfig, build_config

#: keys (or `section.` prefixes) a resumed run may change
RESUMABLE = (
    "train.max_steps", "train.time_limit_minutes", "train.log_every", "train.eval_every", "train.eval_images",
    "train.checkpoint_every", "train.keep_checkpoints", "train.max_nonfinite_steps", "train.cpu_threads",
    "eval.",
)
#: where the run lives: given by --resume itself, so they may be left out but not changed
IDENTITY = ("name", "output_dir")


def flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """{"train.max_steps": 6, ...}; free-form mappings (data.generator_kwargs) stay one value."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "generator_kwargs":
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resumable(key: str) -> bool:
    return any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUMABLE)


def shown(value: Any) -> str:
    return json.dumps(value)


def resumed_config(saved: RunConfig, requested: RunConfig, explicit: set[str], run: str) -> tuple[RunConfig, list[str]]:
    """(the config to continue with, the applied changes as "key old -> new"). `explicit` holds the keys the
    user wrote (overrides, --config file): only those may contradict the saved name and output_dir, which
    a preset leaves at their defaults. Raises one ConfigError listing every refused change."""
    old, new = flatten(asdict(saved)), flatten(asdict(requested))
    refused, applied = [], []
    for key in new:
        if old.get(key) == new[key]:
            continue
        change = f"{key} {shown(old.get(key))} -> {shown(new[key])}"
        if key in IDENTITY:
            if key in explicit:
                refused.append(change)
            setattr(requested, key, getattr(saved, key))
        elif resumable(key):
            if key == "train.max_steps" and new.get("train.lr_schedule") == "cosine":
                change += " (lr_schedule cosine: the rate now falls to 0 at the new max_steps, not where it was headed)"
            applied.append(change)
        else:
            refused.append(change)
    if refused:
        raise ConfigError(f"--resume {run}: these settings cannot change on a resumed run: {', '.join(refused)} "
                          "(start a new run with another name= to change them)")
    return build_config([asdict(requested)]), applied


def explicit_keys(sources: list[dict]) -> set[str]:
    """The dotted keys a list of mappings sets."""
    keys: set[str] = set()
    for values in sources:
        keys.update(flatten(values))
    return keys
