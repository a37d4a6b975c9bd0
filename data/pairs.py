"""Pair semantics shared by every generator (Locatello et al. 2020, with the paper's rules).

Frame 0 is a fresh scene; frame 1 is the same scene with exactly ``k`` (object, factor)
entries moved to a *different* value on that factor's grid. The entries are drawn uniformly
without replacement; ``k`` is fixed or, for ``"random"``, drawn per pair from U{1..d-1}
with d the number of per-object factors (the paper's text).

``"dlib"`` is what disentanglement_lib's weak-supervision code (``simple_dynamics``), which
produced the paper's numbers, does instead: it draws k' ~ U{1..d-1}, then changes one entry or
k' with equal odds, and redraws each chosen entry uniformly over *all* its values, so an entry
may keep its value (and a pair may not change at all). The record lists only the entries whose
value did change. Unlike disentanglement_lib's sampler, everything is seeded: pair ``index``
of seed ``seed`` depends on nothing else, so shards can be written in any order and in parallel.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar, Union

import numpy as np

from data.errors import DataError
from data.scene import FramePair

ObjectFactors = dict[str, int]
ChangedFactors = Union[int, str]  # a fixed k, "random" or "dlib"
#: The drawn ways of choosing k (the others are a fixed k).
DRAWN_K = ("random", "dlib")
Seed = Union[int, Sequence[int]]

#: Rejection-sampling budgets: generous for legal configurations, small enough that an
#: impossible one (e.g. too many objects for the canvas) fails in well under a second.
MAX_SCENE_ATTEMPTS = 200
MAX_CHANGE_ATTEMPTS = 50


def pair_rng(seed: Seed, index: int) -> np.random.Generator:
    """The random stream of one pair: a pure function of (seed words, index)."""
    words = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
    if index < 0 or any(int(w) < 0 for w in words):
        raise DataError(f"seeds and pair indices must be non-negative, got seed={seed!r} index={index}")
    return np.random.default_rng([*(int(w) for w in words), int(index)])


def parse_changed_factors(value: ChangedFactors) -> ChangedFactors:
    """Accept an int >= 1, a digit string, "random" or "dlib" (as typed on a command line)."""
    expected = "a positive integer, 'random' or 'dlib'"
    if isinstance(value, str):
        if value.strip().lower() in DRAWN_K:
            return value.strip().lower()
        if value.strip().isdigit():
            value = int(value)
        else:
            raise DataError(f"changed_factors must be {expected}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise DataError(f"changed_factors must be {expected}, got {value!r}")
    return int(value)


class SceneGenerator(abc.ABC):
    """Base class: subclasses say how to sample and render objects; this class makes pairs.

    Subclasses set ``name``, ``version``, ``factor_sizes`` (ordered: the per-object factor
    grids) and implement ``sample_objects`` and ``render``. ``render`` returns ``None`` for a
    scene that breaks the generator's rules (occlusion limit, overlap, out of bounds), which
    makes the sampler redraw.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    #: True: the k changed entries of a pair are k factors of one object drawn uniformly (the per-object
    #: pairs of the weak-supervision paper, applied to one object); False: k (object, factor) entries drawn
    #: uniformly over every object
    change_one_object: bool = False

    def __init__(self, changed_factors: ChangedFactors, min_objects: int):
        self.changed_factors = parse_changed_factors(changed_factors)
        changeable = min_objects * len(self.changeable_factors)
        if self.changed_factors not in DRAWN_K and self.changed_factors > changeable:
            raise DataError(
                f"{self.name}: changed_factors={self.changed_factors} exceeds the {changeable} "
                f"(object, factor) entries of a scene with {min_objects} objects"
            )

    # --- to implement -------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def factor_sizes(self) -> dict[str, int]:
        """Grid size of every per-object factor, in a fixed order."""

    @property
    @abc.abstractmethod
    def resolution(self) -> int:
        """Height = width of the square frames."""

    @property
    @abc.abstractmethod
    def max_objects(self) -> int:
        """Largest number of objects in a scene (a slot-count hint for models)."""

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """Constructor keyword arguments (defaults resolved) that rebuild this generator."""

    @abc.abstractmethod
    def sample_objects(self, rng: np.random.Generator) -> list[ObjectFactors]:
        """Draw the objects of frame 0 (their count is part of the draw)."""

    @abc.abstractmethod
    def render(self, objects: list[ObjectFactors]) -> tuple[np.ndarray, np.ndarray] | None:
        """(image uint8 [H,W,3], mask uint8 [H,W]) or None when the scene breaks the rules."""

    # --- shared pair logic ----------------------------------------------------------------
    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(self.factor_sizes)

    @property
    def changeable_factors(self) -> tuple[str, ...]:
        """Factors with at least two values (a one-value factor cannot be changed)."""
        return tuple(name for name, size in self.factor_sizes.items() if size > 1)

    def draw_k(self, rng: np.random.Generator) -> int:
        """Number of entries to change in one pair (with "dlib": to redraw, see the module docstring)."""
        if self.changed_factors in DRAWN_K:
            d = len(self.factor_sizes)
            k = int(rng.integers(1, max(d - 1, 1) + 1))
            return k if self.changed_factors == "random" else int(rng.choice([1, k]))
        return int(self.changed_factors)

    def change_objects(
        self, objects: list[ObjectFactors], k: int, rng: np.random.Generator
    ) -> tuple[list[ObjectFactors], list[list[Any]]]:
        """Copy ``objects`` with ``k`` distinct (object, factor) entries set to new values (all of one object
        with ``change_one_object``); with "dlib" each is redrawn over all its values, and only the entries
        that changed are listed."""
        names = self.changeable_factors
        if self.change_one_object:
            chosen = int(rng.integers(len(objects)))
            factors = np.sort(rng.choice(len(names), size=min(k, len(names)), replace=False))
            entries = chosen * len(names) + factors
        else:
            num_entries = len(objects) * len(names)
            entries = np.sort(rng.choice(num_entries, size=min(k, num_entries), replace=False))
        changed_objects = [dict(obj) for obj in objects]
        changed: list[list[Any]] = []
        for entry in entries:
            obj_index, factor_index = divmod(int(entry), len(names))
            factor = names[factor_index]
            size = self.factor_sizes[factor]
            if self.changed_factors == "dlib":  # a uniform draw over every value, the old one included
                offset = int(rng.integers(0, size))
            else:  # a uniform draw among the *other* size-1 values: never the old value
                offset = int(rng.integers(1, size))
            changed_objects[obj_index][factor] = (changed_objects[obj_index][factor] + offset) % size
            if offset:
                changed.append([obj_index, factor])
        return changed_objects, changed

    def pair(self, seed: Seed, index: int) -> FramePair:
        """Pair ``index`` of the stream ``seed``: deterministic, independent of other pairs."""
        rng = pair_rng(seed, index)
        k = self.draw_k(rng)
        for _ in range(MAX_SCENE_ATTEMPTS):
            objects0 = self.sample_objects(rng)
            rendered0 = self.render(objects0)
            if rendered0 is None:
                continue
            for _ in range(MAX_CHANGE_ATTEMPTS):
                objects1, changed = self.change_objects(objects0, k, rng)
                rendered1 = self.render(objects1)
                if rendered1 is not None:
                    return FramePair(
                        frame0=rendered0[0],
                        frame1=rendered1[0],
                        mask0=rendered0[1],
                        mask1=rendered1[1],
                        factors=self._factor_record(seed, index, k, objects0, objects1, changed),
                    )
        raise DataError(
            f"{self.name}: no valid scene after {MAX_SCENE_ATTEMPTS} attempts "
            f"(seed={seed!r}, index={index}); the configuration {self.config()} is probably "
            "impossible (too many or too large objects for the canvas)"
        )

    def _factor_record(
        self,
        seed: Seed,
        index: int,
        k: int,
        objects0: list[ObjectFactors],
        objects1: list[ObjectFactors],
        changed: list[list[Any]],
    ) -> dict[str, Any]:
        seed_words = [int(seed)] if isinstance(seed, (int, np.integer)) else [int(w) for w in seed]
        return {
            "generator": self.name,
            "generator_version": self.version,
            "seed": seed_words,
            "index": int(index),
            "resolution": self.resolution,
            "factor_names": list(self.factor_names),
            "factor_sizes": dict(self.factor_sizes),
            "num_objects": len(objects0),
            "k": k,
            "objects0": [{n: int(o[n]) for n in self.factor_names} for o in objects0],
            "objects1": [{n: int(o[n]) for n in self.factor_names} for o in objects1],
            "changed": changed,
        }
