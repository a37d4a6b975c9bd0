"""Name -> generator class, so configs and manifests can refer to generators by name."""

from __future__ import annotations

import inspect
from typing import Any

from data.dsprites import DSprites
from data.errors import DataError
from data.glyphs import Glyphs
from data.pairs import SceneGenerator
from data.sprites import MultiDSprites
from data.tetrominoes import Tetrominoes

GENERATORS: dict[str, type[SceneGenerator]] = {
    DSprites.name: DSprites,
    Glyphs.name: Glyphs,
    MultiDSprites.name: MultiDSprites,
    Tetrominoes.name: Tetrominoes,
}


def make_generator(name: str, **kwargs: Any) -> SceneGenerator:
    """Build a registered generator; unknown names or parameters raise one DataError."""
    if name not in GENERATORS:
        raise DataError(f"unknown generator {name!r}; known generators: {', '.join(sorted(GENERATORS))}")
    cls = GENERATORS[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise DataError(f"generator {name!r} got unknown parameter(s) {unknown}; it accepts {accepted}")
    return cls(**kwargs)
