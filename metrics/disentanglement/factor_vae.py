"""FactorVAE score (Kim & Mnih 2018), as dlib's `compute_factor_vae`.

Global variances of every code come from `num_variance_estimate` random points (ddof=1); codes with
std < 0.05 are inactive (collapsed) and ignored. One vote: pick a factor k uniformly, draw a batch
of `batch_size` points that all share factor k's value (the first sample's), encode, and vote
(k, argmin over active codes of local variance / global variance). The classifier maps each code to
the factor with most training votes; accuracy = fraction of (eval) votes it classifies correctly.
If no code is active the score is 0 and `factor_vae_num_active_dims` is 0 (with a warning).
dlib: batch_size 64, 10000 points for variances, 10000 train / 5000 eval votes.

`factor_vae_batch_factors`, `global_variances`, `active_dims`, `factor_vae_votes`,
`factor_vae_accuracy` are the array parts; `factor_vae_score` is the sampling glue.
"""
from __future__ import annotations

import warnings

import numpy as np
from tqdm.auto import tqdm

from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.source import (
    GroundTruthSource,
    RepresentationFn,
    num_factors,
    represent_factors,
    require_varying_factors,
    sample_factors_checked,
    sample_representations,
)
from metrics.disentanglement.validation import check_representation, check_rng


def factor_vae_batch_factors(
    source: GroundTruthSource, num_votes: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(factors int64 [V, B, F], labels [V]): in vote v, factor labels[v] is fixed to the first sample's value."""
    if num_votes < 1 or batch_size < 2:
        raise MetricInputError(f"need num_votes >= 1 and batch_size >= 2 (a variance), got {num_votes}, {batch_size}")
    f = num_factors(source)
    labels = rng.integers(f, size=num_votes)
    factors = sample_factors_checked(source, num_votes * batch_size, rng).reshape(num_votes, batch_size, f)
    rows = np.arange(num_votes)
    factors[rows, :, labels] = factors[rows, :1, labels]
    return factors, labels


def global_variances(representation: np.ndarray) -> np.ndarray:
    """Per-code variance (ddof=1) of a representation [n >= 2, D] -> [D]."""
    reps = check_representation(representation)
    if reps.shape[0] < 2:
        raise MetricInputError(f"representation has {reps.shape[0]} points; a variance needs at least 2")
    return reps.var(axis=0, ddof=1)


def active_dims(variances: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """bool [D]: codes whose std >= threshold (dlib's `prune_dims.threshold = 0.05`)."""
    return np.sqrt(np.asarray(variances, dtype=np.float64)) >= threshold


def factor_vae_votes(
    local_reps: np.ndarray,
    labels: np.ndarray,
    variances: np.ndarray,
    active: np.ndarray,
    num_factors: int,
) -> np.ndarray:
    """Vote counts int64 [num_factors, D]: row = fixed factor, column = code with least normalised variance.

    local_reps [V, B, D] are the batches with one factor fixed; only active codes can be voted for.
    """
    local_reps = np.asarray(local_reps, dtype=np.float64)
    labels = np.asarray(labels)
    variances = np.asarray(variances, dtype=np.float64)
    active = np.asarray(active, dtype=bool)
    if local_reps.ndim != 3 or local_reps.shape[1] < 2:
        raise MetricInputError(
            f"local representations must be [num_votes, batch >= 2, num_codes], got {local_reps.shape}"
        )
    if not np.all(np.isfinite(local_reps)):
        raise MetricInputError("representation contains NaN or inf values")
    d = local_reps.shape[2]
    if labels.shape != (local_reps.shape[0],):
        raise MetricInputError(f"mismatched lengths: {local_reps.shape[0]} batches but labels of shape {labels.shape}")
    if variances.shape != (d,) or active.shape != (d,):
        raise MetricInputError(f"variances and active mask must have one entry per code ({d})")
    if not active.any():
        raise MetricInputError("no active dims: every code has std below the threshold")
    if labels.size and (labels.min() < 0 or labels.max() >= num_factors):
        raise MetricInputError(f"labels must be in range({num_factors})")
    active_idx = np.flatnonzero(active)
    local = local_reps[:, :, active_idx].var(axis=1, ddof=1)
    winners = active_idx[np.argmin(local / variances[active_idx], axis=1)]
    votes = np.zeros((num_factors, d), dtype=np.int64)
    np.add.at(votes, (labels, winners), 1)
    return votes


def factor_vae_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> dict[str, float]:
    """Majority-vote classifier (code -> factor with most train votes; ties to the lower factor, as dlib)."""
    train_votes = np.asarray(train_votes)
    eval_votes = np.asarray(eval_votes)
    if train_votes.ndim != 2 or train_votes.shape != eval_votes.shape:
        raise MetricInputError(
            f"vote matrices must share one 2-D shape, got {train_votes.shape} and {eval_votes.shape}"
        )
    if train_votes.sum() == 0 or eval_votes.sum() == 0:
        raise MetricInputError("fewer samples than asked: a vote matrix is empty")
    classifier = np.argmax(train_votes, axis=0)
    codes = np.arange(train_votes.shape[1])
    return {
        "factor_vae_train_accuracy": float(train_votes[classifier, codes].sum() / train_votes.sum()),
        "factor_vae_eval_accuracy": float(eval_votes[classifier, codes].sum() / eval_votes.sum()),
    }


def _sample_votes(
    source: GroundTruthSource,
    representation_fn: RepresentationFn,
    num_votes: int,
    batch_size: int,
    rng: np.random.Generator,
    variances: np.ndarray,
    active: np.ndarray,
    representation_batch_size: int,
    progress: bool,
    desc: str,
) -> np.ndarray:
    """Votes [F, D] accumulated a chunk of batches at a time."""
    f = num_factors(source)
    votes = np.zeros((f, variances.shape[0]), dtype=np.int64)
    per_chunk = max(1, 4096 // batch_size)
    with tqdm(total=num_votes, desc=desc, disable=not progress, leave=False, unit="vote") as bar:
        for start in range(0, num_votes, per_chunk):
            v = min(per_chunk, num_votes - start)
            factors, labels = factor_vae_batch_factors(source, v, batch_size, rng)
            reps = represent_factors(source, representation_fn, factors.reshape(v * batch_size, f), rng,
                                     representation_batch_size)
            votes += factor_vae_votes(reps.reshape(v, batch_size, -1), labels, variances, active, f)
            bar.update(v)
    return votes


def factor_vae_score(
    source: GroundTruthSource,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    threshold: float = 0.05,
    representation_batch_size: int = 64,
    progress: bool = False,
) -> dict[str, float]:
    """FactorVAE score with dlib's defaults -> train / eval accuracy and `factor_vae_num_active_dims`."""
    rng = check_rng(rng)
    require_varying_factors(source)
    reps, _ = sample_representations(source, representation_fn, num_variance_estimate, rng,
                                     representation_batch_size, progress)
    variances = global_variances(reps)
    active = active_dims(variances, threshold)
    if not active.any():
        warnings.warn("FactorVAE score: no active dims (every code has std < %g); scoring 0" % threshold,
                      stacklevel=2)
        return {"factor_vae_train_accuracy": 0.0, "factor_vae_eval_accuracy": 0.0, "factor_vae_num_active_dims": 0.0}
    args = (batch_size, rng, variances, active, representation_batch_size, progress)
    train_votes = _sample_votes(source, representation_fn, num_train, *args, desc="FactorVAE train")
    eval_votes = _sample_votes(source, representation_fn, num_eval, *args, desc="FactorVAE eval")
    return {**factor_vae_accuracy(train_votes, eval_votes), "factor_vae_num_active_dims": float(active.sum())}
