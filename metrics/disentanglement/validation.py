"""Input checks shared by the metrics: fail early with a message that names the problem.

Every array-level metric runs its arguments through these, so a NaN in a representation or a factor
that never varies is reported as such instead of surfacing as a division by zero or an sklearn error.
Arrays are [num_points, num_codes] (representation) and [num_points, num_factors] (factors).
"""
from __future__ import annotations

import numpy as np

from metrics.disentanglement.errors import MetricInputError


def check_representation(x: np.ndarray, name: str = "representation", min_codes: int = 1) -> np.ndarray:
    """A finite float64 [n, D] array, or MetricInputError (wrong ndim, non-numeric, NaN/inf, too few codes)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise MetricInputError(
            f"{name} must be 2-D [num_points, num_codes], got ndim={x.ndim} with shape {x.shape}"
        )
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
        raise MetricInputError(f"{name} must be real-valued numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    bad = ~np.isfinite(x)
    if bad.any():
        rows, cols = np.nonzero(bad)
        raise MetricInputError(
            f"{name} contains {int(bad.sum())} NaN or inf value(s) (first at point {rows[0]}, code {cols[0]})"
        )
    if x.shape[1] < min_codes:
        raise MetricInputError(f"{name} has {x.shape[1]} code(s); this metric needs at least {min_codes} codes")
    return x


def check_factors(
    factors: np.ndarray, name: str = "factors", need_variation: bool = True, min_factors: int = 1
) -> np.ndarray:
    """Integer-valued int64 [n, F] factor labels, or MetricInputError.

    The metrics treat each factor as a discrete class label (dlib's discrete-factor branch), so
    non-integer values are refused rather than silently turned into thousands of classes; a factor
    that takes a single value carries no information to recover and breaks entropies and classifiers.
    """
    factors = np.asarray(factors)
    if factors.ndim != 2:
        raise MetricInputError(
            f"{name} must be 2-D [num_points, num_factors], got ndim={factors.ndim} with shape {factors.shape}"
        )
    if factors.shape[1] < min_factors:
        raise MetricInputError(
            f"{name} has {factors.shape[1]} factor(s); this metric needs at least {min_factors} factors"
        )
    if np.issubdtype(factors.dtype, np.integer) or factors.dtype == np.bool_:
        factors = factors.astype(np.int64, copy=False)
    elif np.issubdtype(factors.dtype, np.floating):
        if not np.all(np.isfinite(factors)):
            raise MetricInputError(f"{name} contains NaN or inf values")
        if np.any(factors != np.round(factors)):
            raise MetricInputError(
                f"{name} must be discrete (integer-valued) labels; discretise continuous factors first "
                "(e.g. with histogram_discretize)"
            )
        factors = factors.astype(np.int64)
    else:
        raise MetricInputError(f"{name} must be integer labels, got dtype {factors.dtype}")
    if need_variation and factors.shape[0] > 0:
        constant = np.flatnonzero(factors.min(axis=0) == factors.max(axis=0))
        if constant.size:
            raise MetricInputError(
                f"{name}: factor(s) {constant.tolist()} take a single value over the {factors.shape[0]} points; "
                "this metric needs every factor to vary"
            )
    return factors


def check_pair(
    representation: np.ndarray,
    factors: np.ndarray,
    min_points: int = 2,
    name: str = "",
    min_codes: int = 1,
    min_factors: int = 1,
    need_variation: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Check one (representation, factors) split: both valid, same number of points, enough points."""
    prefix = f"{name} " if name else ""
    reps = check_representation(representation, f"{prefix}representation", min_codes=min_codes)
    n = reps.shape[0]
    factors = np.asarray(factors)
    if factors.ndim == 2 and factors.shape[0] != n:
        raise MetricInputError(
            f"mismatched lengths: {prefix}representation has {n} points but {prefix}factors has {factors.shape[0]}"
        )
    if n < min_points:
        raise MetricInputError(f"{prefix}representation has {n} points; this metric needs at least {min_points}")
    facs = check_factors(factors, f"{prefix}factors", need_variation=need_variation, min_factors=min_factors)
    return reps, facs


def check_train_test(
    train_reps: np.ndarray,
    train_factors: np.ndarray,
    test_reps: np.ndarray,
    test_factors: np.ndarray,
    min_codes: int = 1,
    min_factors: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check both splits and that they describe the same codes and factors."""
    xtr, ytr = check_pair(train_reps, train_factors, name="train", min_codes=min_codes, min_factors=min_factors)
    xte, yte = check_pair(test_reps, test_factors, min_points=1, name="test", min_codes=min_codes,
                          min_factors=min_factors)
    if xtr.shape[1] != xte.shape[1]:
        raise MetricInputError(
            f"mismatched code counts: train representation has {xtr.shape[1]} codes, test has {xte.shape[1]}"
        )
    if ytr.shape[1] != yte.shape[1]:
        raise MetricInputError(
            f"mismatched factor counts: train factors has {ytr.shape[1]} factors, test has {yte.shape[1]}"
        )
    return xtr, ytr, xte, yte


def take_points(x: np.ndarray, num: int | None, name: str) -> np.ndarray:
    """The first `num` rows of x (all if num is None); MetricInputError if fewer samples than asked."""
    x = np.asarray(x)
    if num is None:
        return x
    if num < 1:
        raise MetricInputError(f"asked for {num} points of {name}; need a positive number")
    if x.ndim < 1 or x.shape[0] < num:
        have = x.shape[0] if x.ndim >= 1 else 0
        raise MetricInputError(f"fewer samples than asked: {name} has {have} points, asked for {num}")
    return x[:num]


def check_rng(rng: np.random.Generator | None) -> np.random.Generator:
    """The given Generator, or a fixed-seed one: results are reproducible and never touch the global RNG."""
    if rng is None:
        return np.random.default_rng(0)
    if not isinstance(rng, np.random.Generator):
        raise MetricInputError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def sklearn_seed(rng: np.random.Generator) -> int:
    """An int seed for an sklearn estimator's random_state, drawn from (and advancing) rng."""
    return int(rng.integers(2**31 - 1))
