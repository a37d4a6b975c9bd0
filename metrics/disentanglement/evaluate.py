"""Run a set of disentanglement metrics with dlib's sample sizes and return flat float scores.

`evaluate_all` samples from a ground-truth source through a representation function (needed for the
intervention metrics BetaVAE / FactorVAE); `evaluate_arrays` scores (representation, factors) arrays
a caller already has, e.g. matched per-object slot latents.

Unlike dlib, which draws fresh points for each observational metric, `evaluate_all` draws one train
set and one test set (as large as the largest requested size) and gives each metric its first
`num_train` / `num_test` points: the same distribution at a fraction of the encoder calls.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np
from tqdm.auto import tqdm

from metrics.disentanglement.beta_vae import beta_vae_score
from metrics.disentanglement.dci import dci
from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.factor_vae import factor_vae_score
from metrics.disentanglement.mig import mig
from metrics.disentanglement.modularity import modularity_explicitness
from metrics.disentanglement.sap import sap
from metrics.disentanglement.source import GroundTruthSource, RepresentationFn, sample_representations
from metrics.disentanglement.validation import check_rng, check_train_test, take_points

ALL_METRICS = ("beta_vae", "factor_vae", "mig", "dci", "sap", "modularity")
ARRAY_METRICS = ("mig", "dci", "sap", "modularity")


@dataclasses.dataclass(frozen=True)
class MetricSizes:
    """Sample sizes; the defaults are disentanglement_lib's gin configs."""

    batch_size: int = 64  # BetaVAE / FactorVAE batch of pairs / of points sharing a factor
    beta_vae_num_train: int = 10000
    beta_vae_num_eval: int = 5000
    factor_vae_num_variance: int = 10000
    factor_vae_num_train: int = 10000
    factor_vae_num_eval: int = 5000
    mig_num_train: int = 10000
    dci_num_train: int = 10000
    dci_num_test: int = 5000
    sap_num_train: int = 10000
    sap_num_test: int = 5000
    modularity_num_train: int = 10000
    modularity_num_test: int = 5000
    representation_batch_size: int = 64  # observations per representation_fn call


DLIB_SIZES = MetricSizes()


def _resolve_sizes(sizes: MetricSizes | Mapping[str, int] | None) -> MetricSizes:
    """MetricSizes from None (dlib defaults), an instance, or a mapping of overrides."""
    if sizes is None:
        return DLIB_SIZES
    if isinstance(sizes, MetricSizes):
        return sizes
    known = {f.name for f in dataclasses.fields(MetricSizes)}
    unknown = sorted(set(sizes) - known)
    if unknown:
        raise MetricInputError(f"unknown size name(s) {unknown}; known: {sorted(known)}")
    return dataclasses.replace(DLIB_SIZES, **dict(sizes))


def _check_metrics(metrics: Iterable[str], allowed: tuple[str, ...]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in allowed]
    if unknown:
        raise MetricInputError(f"unknown metric(s) {unknown}; choose from {allowed}")
    return metrics


def _train_test_sizes(metrics: tuple[str, ...], sizes: MetricSizes) -> dict[str, tuple[int, int | None]]:
    """(num_train, num_test) per observational metric; MIG has no test split."""
    table = {
        "mig": (sizes.mig_num_train, None),
        "dci": (sizes.dci_num_train, sizes.dci_num_test),
        "sap": (sizes.sap_num_train, sizes.sap_num_test),
        "modularity": (sizes.modularity_num_train, sizes.modularity_num_test),
    }
    return {m: table[m] for m in metrics if m in table}


def _score_arrays(
    metric: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None,
    rng: np.random.Generator,
    dci_importance_model: str,
    num_bins: int,
    progress: bool,
) -> dict[str, float]:
    if metric == "mig":
        return mig(*train, num_bins=num_bins)
    assert test is not None
    if metric == "dci":
        return dci(*train, *test, importance_model=dci_importance_model, rng=rng, progress=progress)
    if metric == "sap":
        return sap(*train, *test, rng=rng)
    return modularity_explicitness(*train, *test, num_bins=num_bins, rng=rng)


def evaluate_arrays(
    train_reps: np.ndarray,
    train_factors: np.ndarray,
    test_reps: np.ndarray,
    test_factors: np.ndarray,
    metrics: Iterable[str] = ARRAY_METRICS,
    num_train: int | None = None,
    num_test: int | None = None,
    rng: np.random.Generator | None = None,
    dci_importance_model: str = "gbt",
    num_bins: int = 20,
    progress: bool = False,
) -> dict[str, float]:
    """Observational metrics on given arrays: reps [n, D], factors [n, F] (integer labels), per split.

    Uses all points unless num_train / num_test ask for a prefix (MetricInputError if fewer samples
    than asked). Keys: mig; dci_disentanglement, dci_completeness, dci_informativeness_{train,test};
    sap; modularity, explicitness_{train,test}.
    """
    metrics = _check_metrics(metrics, ARRAY_METRICS)
    rng = check_rng(rng)
    train = (take_points(train_reps, num_train, "train representation"),
             take_points(train_factors, num_train, "train factors"))
    test = (take_points(test_reps, num_test, "test representation"),
            take_points(test_factors, num_test, "test factors"))
    xtr, ytr, xte, yte = check_train_test(*train, *test)
    scores: dict[str, float] = {}
    for metric in tqdm(metrics, desc="disentanglement", disable=not progress):
        scores.update(_score_arrays(metric, (xtr, ytr), (xte, yte), rng, dci_importance_model, num_bins, progress))
    return scores


def evaluate_all(
    source: GroundTruthSource,
    representation_fn: RepresentationFn,
    rng: np.random.Generator,
    metrics: Iterable[str] = ALL_METRICS,
    sizes: MetricSizes | Mapping[str, int] | None = None,
    progress: bool = True,
    dci_importance_model: str = "gbt",
    num_bins: int = 20,
) -> dict[str, float]:
    """All requested metrics for a model on a source, dlib sizes unless overridden -> flat float dict.

    Keys: beta_vae_{train,eval}_accuracy; factor_vae_{train,eval}_accuracy, factor_vae_num_active_dims;
    mig; dci_disentanglement, dci_completeness, dci_informativeness_{train,test}; sap; modularity,
    explicitness_{train,test}. `sizes` may be a MetricSizes or a mapping of overrides such as
    {"dci_num_train": 2000}. With dlib's "gbt" DCI dominates the cost (minutes for dSprites-sized
    factors, see metrics.disentanglement.dci); "random_forest" / "extra_trees" are the fast options.
    """
    metrics = _check_metrics(metrics, ALL_METRICS)
    sizes = _resolve_sizes(sizes)
    rng = check_rng(rng)
    split_sizes = _train_test_sizes(metrics, sizes)
    scores: dict[str, float] = {}
    train = test = None
    if split_sizes:
        n_train = max(n for n, _ in split_sizes.values())
        n_test = max((m for _, m in split_sizes.values() if m is not None), default=0)
        train = sample_representations(source, representation_fn, n_train, rng, sizes.representation_batch_size,
                                       progress)
        if n_test:
            test = sample_representations(source, representation_fn, n_test, rng, sizes.representation_batch_size,
                                          progress)
    for metric in tqdm(metrics, desc="disentanglement", disable=not progress):
        if metric == "beta_vae":
            scores.update(beta_vae_score(
                source, representation_fn, rng, sizes.batch_size, sizes.beta_vae_num_train,
                sizes.beta_vae_num_eval, sizes.representation_batch_size, progress))
        elif metric == "factor_vae":
            scores.update(factor_vae_score(
                source, representation_fn, rng, sizes.batch_size, sizes.factor_vae_num_train,
                sizes.factor_vae_num_eval, sizes.factor_vae_num_variance,
                representation_batch_size=sizes.representation_batch_size, progress=progress))
        else:
            n_tr, n_te = split_sizes[metric]
            assert train is not None
            tr = (train[0][:n_tr], train[1][:n_tr])
            te = (test[0][:n_te], test[1][:n_te]) if (test is not None and n_te is not None) else None
            scores.update(_score_arrays(metric, tr, te, rng, dci_importance_model, num_bins, progress))
    return scores
