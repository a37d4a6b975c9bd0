"""What the intervention-based metrics need from a data set and a model, and the sampling harness.

A `GroundTruthSource` is any object that can sample ground-truth factors and render observations for
given factors (dlib's `GroundTruthData`, reduced to what the metrics use). A `RepresentationFn` maps a
batch of observations to the model's posterior means. The harness calls the model in batches, checks
what it returns, and never uses the global RNG.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
from tqdm.auto import tqdm

from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.validation import check_representation

RepresentationFn = Callable[[np.ndarray], np.ndarray]
"""observations float32 [n, C, H, W] in [0, 1] -> float [n, D] (the posterior mean)."""


@runtime_checkable
class GroundTruthSource(Protocol):
    """A data set with known, independently sampled discrete factors of variation."""

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        """Number of values of each factor; factor f takes values in range(factor_sizes[f])."""
        ...

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        """int64 [num, F], factors drawn independently (column f in range(factor_sizes[f]))."""
        ...

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """float32 [num, C, H, W] in [0, 1], one observation per row of factors."""
        ...


def num_factors(source: GroundTruthSource) -> int:
    """F, with a check that the source has at least one factor."""
    sizes = tuple(source.factor_sizes)
    if not sizes or min(sizes) < 1:
        raise MetricInputError(f"source.factor_sizes must be non-empty positive sizes, got {sizes}")
    return len(sizes)


def require_varying_factors(source: GroundTruthSource) -> int:
    """F, or MetricInputError if some factor has a single value (an intervention on it changes nothing)."""
    f = num_factors(source)
    single = [i for i, size in enumerate(source.factor_sizes) if size < 2]
    if single:
        raise MetricInputError(
            f"source factor(s) {single} take a single value (size 1); this metric needs every factor to vary"
        )
    if f < 2:
        raise MetricInputError("this metric needs at least 2 factors (it classifies which one was fixed)")
    return f


def sample_factors_checked(source: GroundTruthSource, num: int, rng: np.random.Generator) -> np.ndarray:
    """source.sample_factors, with its shape and ranges checked (a wrong source fails here, not later)."""
    sizes = np.asarray(source.factor_sizes)
    factors = np.asarray(source.sample_factors(num, rng))
    if factors.shape != (num, sizes.size):
        raise MetricInputError(
            f"source.sample_factors({num}) returned shape {factors.shape}, expected {(num, sizes.size)}"
        )
    if num and ((factors.min(axis=0) < 0).any() or (factors.max(axis=0) >= sizes).any()):
        raise MetricInputError("source.sample_factors returned values outside range(factor_sizes)")
    return factors.astype(np.int64, copy=False)


def represent_factors(
    source: GroundTruthSource,
    representation_fn: RepresentationFn,
    factors: np.ndarray,
    rng: np.random.Generator,
    batch_size: int = 64,
    progress: bool = False,
    desc: str = "representing",
) -> np.ndarray:
    """Render observations for the given factors and encode them, `batch_size` at a time -> float64 [n, D].

    Batching keeps memory bounded for image observations; each batch's output is checked (2-D, one row
    per observation, finite) so a broken model is reported by name.
    """
    if batch_size < 1:
        raise MetricInputError(f"batch_size must be positive, got {batch_size}")
    factors = np.asarray(factors)
    n = factors.shape[0]
    chunks: list[np.ndarray] = []
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False, unit="batch"):
        batch = factors[start:start + batch_size]
        observations = source.sample_observations_from_factors(batch, rng)
        reps = np.asarray(representation_fn(observations))
        if reps.ndim != 2 or reps.shape[0] != batch.shape[0]:
            raise MetricInputError(
                f"representation_fn returned shape {reps.shape} for {batch.shape[0]} observations; "
                "expected [num_observations, num_codes]"
            )
        chunks.append(check_representation(reps, "representation_fn output"))
    if not chunks:
        raise MetricInputError("asked for representations of 0 points")
    width = {c.shape[1] for c in chunks}
    if len(width) != 1:
        raise MetricInputError(f"representation_fn returned different code counts across batches: {sorted(width)}")
    return np.concatenate(chunks, axis=0)


def sample_representations(
    source: GroundTruthSource,
    representation_fn: RepresentationFn,
    num_points: int,
    rng: np.random.Generator,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(representations float64 [n, D], factors int64 [n, F]) for n points with random factors.

    The observational metrics (MIG, DCI, SAP, modularity) score these pairs; dlib's
    `generate_batch_factor_code`.
    """
    if num_points < 1:
        raise MetricInputError(f"num_points must be positive, got {num_points}")
    num_factors(source)
    factors = sample_factors_checked(source, num_points, rng)
    reps = represent_factors(source, representation_fn, factors, rng, batch_size, progress, "sampling points")
    return reps, factors
