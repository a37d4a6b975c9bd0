"""BetaVAE score (Higgins et al. 2017), as dlib's `compute_beta_vae_sklearn`.

One training point: pick a factor k uniformly, draw two batches of `batch_size` factor vectors that
agree on factor k, encode both, and take the feature mean_b |r1_b - r2_b| [D]; its label is k. In a
disentangled representation the codes of factor k do not move, so a linear classifier
(dlib's `LogisticRegression()`, i.e. the default of the sklearn of its time: one-vs-rest with the
liblinear solver) recovers k. Score = accuracy on fresh eval points;
chance is 1 / num_factors. dlib: batch_size 64, 10000 train / 5000 eval points.

`beta_vae_factor_pairs` and `beta_vae_features` / `beta_vae_classifier` are the array parts;
`beta_vae_score` is the sampling glue.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from tqdm.auto import tqdm

from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.source import (
    GroundTruthSource,
    RepresentationFn,
    num_factors,
    represent_factors,
    require_varying_factors,
    sample_factors_checked,
)
from metrics.disentanglement.validation import check_factors, check_representation, check_rng, sklearn_seed


def beta_vae_factor_pairs(
    source: GroundTruthSource, num_points: int, batch_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(factors1, factors2 int64 [P, B, F], labels int64 [P]) with factors2[p, :, labels[p]] = factors1[...]."""
    if num_points < 1 or batch_size < 1:
        raise MetricInputError(f"num_points and batch_size must be positive, got {num_points}, {batch_size}")
    f = num_factors(source)
    labels = rng.integers(f, size=num_points)
    factors1 = sample_factors_checked(source, num_points * batch_size, rng).reshape(num_points, batch_size, f)
    factors2 = sample_factors_checked(source, num_points * batch_size, rng).reshape(num_points, batch_size, f)
    rows = np.arange(num_points)
    factors2[rows, :, labels] = factors1[rows, :, labels]
    return factors1, factors2, labels


def beta_vae_features(reps1: np.ndarray, reps2: np.ndarray) -> np.ndarray:
    """mean over the batch axis of |reps1 - reps2|: [P, B, D] x 2 -> [P, D]."""
    reps1 = np.asarray(reps1, dtype=np.float64)
    reps2 = np.asarray(reps2, dtype=np.float64)
    if reps1.ndim != 3 or reps1.shape != reps2.shape:
        raise MetricInputError(
            f"BetaVAE features need two [num_points, batch, num_codes] arrays of one shape, got {reps1.shape} "
            f"and {reps2.shape}"
        )
    if not (np.all(np.isfinite(reps1)) and np.all(np.isfinite(reps2))):
        raise MetricInputError("representation contains NaN or inf values")
    return np.mean(np.abs(reps1 - reps2), axis=1)


def beta_vae_classifier(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Fit one-vs-rest liblinear `LogisticRegression` on the train features.

    Returns {"beta_vae_train_accuracy", "beta_vae_eval_accuracy"}.
    """
    xtr = check_representation(train_features, "train features")
    xev = check_representation(eval_features, "eval features")
    ytr = check_factors(np.asarray(train_labels).reshape(-1, 1), "train labels", need_variation=True)[:, 0]
    yev = check_factors(np.asarray(eval_labels).reshape(-1, 1), "eval labels", need_variation=False)[:, 0]
    if xtr.shape[0] != ytr.shape[0] or xev.shape[0] != yev.shape[0]:
        raise MetricInputError(
            f"mismatched lengths: features {xtr.shape[0]}/{xev.shape[0]} vs labels {ytr.shape[0]}/{yev.shape[0]}"
        )
    if xtr.shape[1] != xev.shape[1]:
        raise MetricInputError(f"mismatched code counts: train {xtr.shape[1]}, eval {xev.shape[1]}")
    model = OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=sklearn_seed(check_rng(rng))))
    with warnings.catch_warnings():  # unscaled features; dlib used the default solver settings too
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(xtr, ytr)
    return {
        "beta_vae_train_accuracy": float(np.mean(model.predict(xtr) == ytr)),
        "beta_vae_eval_accuracy": float(np.mean(model.predict(xev) == yev)),
    }


def _sample_features(
    source: GroundTruthSource,
    representation_fn: RepresentationFn,
    num_points: int,
    batch_size: int,
    rng: np.random.Generator,
    representation_batch_size: int,
    progress: bool,
    desc: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(features [num_points, D], labels [num_points]), built a chunk of points at a time."""
    points_per_chunk = max(1, 4096 // batch_size)
    features, labels = [], []
    with tqdm(total=num_points, desc=desc, disable=not progress, leave=False, unit="point") as bar:
        for start in range(0, num_points, points_per_chunk):
            p = min(points_per_chunk, num_points - start)
            f1, f2, k = beta_vae_factor_pairs(source, p, batch_size, rng)
            both = np.concatenate([f1, f2]).reshape(2 * p * batch_size, -1)
            reps = represent_factors(source, representation_fn, both, rng, representation_batch_size)
            reps = reps.reshape(2, p, batch_size, -1)
            features.append(beta_vae_features(reps[0], reps[1]))
            labels.append(k)
            bar.update(p)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae_score(
    source: GroundTruthSource,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    representation_batch_size: int = 64,
    progress: bool = False,
) -> dict[str, float]:
    """BetaVAE score with dlib's defaults -> {"beta_vae_train_accuracy", "beta_vae_eval_accuracy"}."""
    rng = check_rng(rng)
    require_varying_factors(source)
    args = (batch_size, rng, representation_batch_size, progress)
    train = _sample_features(source, representation_fn, num_train, *args, desc="BetaVAE train")
    evals = _sample_features(source, representation_fn, num_eval, *args, desc="BetaVAE eval")
    return beta_vae_classifier(*train, *evals, rng=rng)
