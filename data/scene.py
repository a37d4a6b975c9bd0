"""The common in-memory representation of one generated sample: a pair of frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FramePair:
    """Two frames of the same scene that differ in a few recorded (object, factor) entries.

    ``mask0``/``mask1`` hold instance ids: 0 is background and object ``i`` has id ``i + 1``
    in *both* frames, so object identity across the pair is given by the id alone.
    ``factors`` is JSON-serialisable so it can be written next to the images unchanged.
    """

    frame0: np.ndarray  # uint8 [H, W, 3]
    frame1: np.ndarray  # uint8 [H, W, 3]
    mask0: np.ndarray  # uint8 [H, W]
    mask1: np.ndarray  # uint8 [H, W]
    factors: dict[str, Any]

    @property
    def resolution(self) -> int:
        return int(self.frame0.shape[0])

    @property
    def changed(self) -> list[tuple[int, str]]:
        """The (object_index, factor_name) entries that differ between the two frames."""
        return [(int(obj), str(name)) for obj, name in self.factors["changed"]]
