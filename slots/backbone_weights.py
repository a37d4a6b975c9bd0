"""Backbone weights from a local file only: nothing is downloaded at run time, so a run is reproducible
offline and a wrong or missing file is named in one clear sentence instead of a torch traceback."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

SHOWN_KEYS = 5  # offending keys named in an error message


class BackboneError(ValueError):
    """A backbone cannot be built as configured (unknown model, missing or mismatched weights, bad size)."""


def how_to_provide(name: str) -> str:
    """One line telling the user how to get a local weights file for timm model `name`."""
    return (f"download once on a machine with internet: python -c \"import timm, safetensors.torch as st; "
            f"st.save_file(timm.create_model('{name}', pretrained=True).state_dict(), '{name}.safetensors')\", "
            f"then pass backbone.weights=<path to {name}.safetensors> (a .pth state dict works too), "
            f"or set backbone.pretrained=false for random weights")


def read_state_dict(path: str | Path, name: str) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors or torch (.pth/.pt/.bin) file; training-checkpoint wrappers
    ('state_dict', 'model', EMA) and DDP's 'module.' prefix are unwrapped as timm does."""
    from timm.models import load_state_dict

    file = Path(path).expanduser()
    if not file.is_file():
        raise BackboneError(f"backbone weights file not found: {file}; {how_to_provide(name)}")
    try:
        state = load_state_dict(str(file), use_ema=False, weights_only=True)
    except Exception as error:  # safetensors and torch.load raise many kinds for unreadable files
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BackboneError(f"could not read backbone weights from {file} ({type(error).__name__}: "
                            f"{first_line}); expected a state dict saved with safetensors or torch.save") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"{file} does not hold a state dict of tensors; {how_to_provide(name)}")
    return state


def _timm_filter(model: nn.Module, state: dict[str, torch.Tensor], file: Path) -> dict[str, torch.Tensor]:
    """timm's own conversion for the architecture (e.g. original DINO / DeiT checkpoints into timm names)."""
    convert = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if convert is None:
        return state
    try:
        return convert(state, model)
    except Exception as error:
        raise BackboneError(f"backbone weights {file} do not fit {type(model).__name__} "
                            f"(timm's conversion failed: {type(error).__name__}: {error})") from None


def _classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """Names of the classification head, which the backbone never uses (it is removed after loading)."""
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    return tuple(f"{name}." for name in names)


def _mismatch_message(file: Path, name: str, missing: list[str], unexpected: list[str], shapes: list[str]) -> str:
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:SHOWN_KEYS]) + (", ..." if len(items) > SHOWN_KEYS else "")
            parts.append(f"{len(items)} {label} ({shown})")
    return (f"backbone weights {file} do not match timm model '{name}' (wrong architecture?): " + "; ".join(parts)
            + f"; {how_to_provide(name)}")


def load_backbone_weights(model: nn.Module, path: str | Path, name: str) -> None:
    """Load `path` into the full timm model (before any pruning), strictly except for the classifier head:
    every other key must be present with the same shape, and no foreign key may be in the file."""
    file = Path(path).expanduser()
    state = _timm_filter(model, read_state_dict(file, name), file)
    head = _classifier_prefixes(model)
    expected = model.state_dict()
    missing = [key for key in expected if key not in state and not key.startswith(head)]
    unexpected = [key for key in state if key not in expected]
    shapes = [f"{key}: file {list(state[key].shape)} vs model {list(expected[key].shape)}"
              for key in expected if key in state and state[key].shape != expected[key].shape
              and not key.startswith(head)]
    if missing or unexpected or shapes:
        raise BackboneError(_mismatch_message(file, name, missing, unexpected, shapes))
    usable = {key: value for key, value in state.items() if value.shape == expected[key].shape}
    model.load_state_dict(usable, strict=False)
