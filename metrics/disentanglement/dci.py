"""DCI: Disentanglement, Completeness, Informativeness (Eastwood & Williams 2018), as dlib computes it.

One classifier per factor predicts the factor from all codes; its feature importances form column k
of the importance matrix R [num_codes, num_factors] (absolute values).

- Disentanglement: does each code matter for one factor only?  Row j normalised, P_j = R_j / sum(R_j),
  D = sum_j rho_j (1 - H_F(P_j)), rho_j = sum(R_j) / sum(R), entropy in base F (number of factors).
- Completeness: is each factor captured by one code?  The same over columns, entropy base D (codes),
  weights = column sums / total.
- Informativeness: mean accuracy of the per-factor classifiers on held-out points (train accuracy too).

Importance models (`importance_model`), all read `feature_importances_` (absolute values, as dlib):
- "gbt": `GradientBoostingClassifier()` with sklearn defaults, as dlib. Faithful but slow: a
  multiclass GBT grows one depth-3 tree per class per stage (100 stages), so a 40-valued factor
  means 4000 trees; cost is about linear in the total number of factor values.
- "random_forest": `RandomForestClassifier(n_estimators=50, max_features=None, min_samples_leaf=10,
  n_jobs=-1)`.
- "extra_trees": `ExtraTreesClassifier` with the same settings; the fastest.
For both forests `max_features=None` (every split may look at every code) matters: with sqrt
subsampling, splits are forced onto irrelevant codes and a perfectly disentangled representation
loses D and C. `min_samples_leaf=10` stops fully grown trees from splitting on noise codes deep
down, which otherwise moves importance onto them (fully grown forests gave D 0.83 / C 0.78 against
GBT's 0.92 / 0.90 on the benchmark below). The forests track GBT closely but not exactly
(e.g. a random rotation of 5 factors + 5 noise codes, 3000 points: GBT D 0.21 C 0.37, random_forest
0.17 / 0.35, extra_trees 0.18 / 0.38; pure noise: all about 0.00). Compare models only under one
importance model, and report which.

Their cost and agreement with GBT on a benchmark: docs/metrics.md ("DCI importance models").
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from tqdm.auto import tqdm

from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.validation import check_rng, check_train_test, sklearn_seed

IMPORTANCE_MODELS = ("gbt", "random_forest", "extra_trees")


def make_importance_model(importance_model: str, seed: int):
    """A fresh sklearn classifier with `feature_importances_` for one factor."""
    if importance_model == "gbt":
        return GradientBoostingClassifier(random_state=seed)
    forest = {"random_forest": RandomForestClassifier, "extra_trees": ExtraTreesClassifier}.get(importance_model)
    if forest is not None:
        return forest(n_estimators=50, max_features=None, min_samples_leaf=10, n_jobs=-1, random_state=seed)
    raise MetricInputError(f"unknown importance_model {importance_model!r}; choose one of {IMPORTANCE_MODELS}")


def factor_importance(
    train_reps: np.ndarray,
    train_factors: np.ndarray,
    test_reps: np.ndarray,
    test_factors: np.ndarray,
    importance_model: str = "gbt",
    rng: np.random.Generator | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R [num_codes, num_factors], train accuracy [num_factors], test accuracy [num_factors]): one
    classifier per factor, kept per factor so a caller can say which factor a representation fails to hold."""
    xtr, ytr, xte, yte = check_train_test(train_reps, train_factors, test_reps, test_factors)
    rng = check_rng(rng)
    if importance_model not in IMPORTANCE_MODELS:
        raise MetricInputError(f"unknown importance_model {importance_model!r}; choose one of {IMPORTANCE_MODELS}")
    num_factors = ytr.shape[1]
    r = np.zeros((xtr.shape[1], num_factors), dtype=np.float64)
    train_acc = np.zeros(num_factors)
    test_acc = np.zeros(num_factors)
    for k in tqdm(range(num_factors), desc=f"DCI ({importance_model})", disable=not progress, leave=False):
        model = make_importance_model(importance_model, sklearn_seed(rng))
        with warnings.catch_warnings():
            # sklearn 1.9 warns from every worker thread when the caller's warning filter list is
            # empty ("`sklearn.utils.parallel.delayed` should be used with ..."); a non-empty list
            # is propagated to the threads and silences the spurious flood.
            warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
            model.fit(xtr, ytr[:, k])
            r[:, k] = np.abs(model.feature_importances_)
            train_acc[k] = np.mean(model.predict(xtr) == ytr[:, k])
            test_acc[k] = np.mean(model.predict(xte) == yte[:, k])
    return r, train_acc, test_acc


def _one_minus_entropy(p: np.ndarray, axis: int, base: int) -> np.ndarray:
    """1 - H_base of the distributions along `axis` of a nonnegative array (0 log 0 = 0).

    A slice with zero total is treated as uniform (score 0); it also gets weight 0 below, as in dlib
    (which adds 1e-11 before normalising).
    """
    total = p.sum(axis=axis, keepdims=True)
    safe = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / p.shape[axis])
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(safe > 0, safe * np.log(safe), 0.0)
    return 1.0 + plogp.sum(axis=axis) / np.log(base)


def checked_importance(importance: np.ndarray) -> np.ndarray:
    """R as float64 [num_codes >= 2, num_factors >= 2], finite and nonnegative, or a MetricInputError."""
    r = np.asarray(importance, dtype=np.float64)
    if r.ndim != 2:
        raise MetricInputError(f"importance matrix must be 2-D [num_codes, num_factors], got ndim={r.ndim}")
    if r.shape[0] < 2 or r.shape[1] < 2:
        raise MetricInputError(
            f"DCI needs at least 2 codes and 2 factors (entropy bases), got importance shape {r.shape}"
        )
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise MetricInputError("importance matrix must be finite and nonnegative (no NaN or inf)")
    return r


def _weights(r: np.ndarray) -> np.ndarray:
    """What the code and factor weights are taken from: R itself, or uniform when R is all zeros."""
    return r if r.sum() > 0 else np.ones_like(r)


def code_disentanglement(importance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rho [num_codes], 1 - H_F(P_j) [num_codes]): each code's weight in D and its own score, so that
    D = sum(rho * score). Where a low D comes from: a code can weigh little, or matter for several factors."""
    r = checked_importance(importance)
    weights = _weights(r)
    return weights.sum(axis=1) / weights.sum(), _one_minus_entropy(r, axis=1, base=r.shape[1])


def dci_from_importance(importance: np.ndarray) -> tuple[float, float]:
    """(disentanglement, completeness) from an importance matrix R [num_codes >= 2, num_factors >= 2].

    If R is all zeros (no classifier used any code) both are 0: the weights become uniform and every
    per-code / per-factor score is that of a uniform distribution.
    """
    r = checked_importance(importance)
    code_weight, per_code = code_disentanglement(r)
    per_factor = _one_minus_entropy(r, axis=0, base=r.shape[0])
    weights = _weights(r)
    factor_weight = weights.sum(axis=0) / weights.sum()
    return float(np.sum(per_code * code_weight)), float(np.sum(per_factor * factor_weight))


def dci(
    train_reps: np.ndarray,
    train_factors: np.ndarray,
    test_reps: np.ndarray,
    test_factors: np.ndarray,
    importance_model: str = "gbt",
    rng: np.random.Generator | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """DCI scores: dci_disentanglement, dci_completeness, dci_informativeness_{train,test} (accuracies).

    dlib uses 10000 train / 5000 test points and importance_model="gbt".
    """
    xtr, ytr, xte, yte = check_train_test(train_reps, train_factors, test_reps, test_factors, min_codes=2,
                                          min_factors=2)
    r, train_acc, test_acc = factor_importance(xtr, ytr, xte, yte, importance_model, rng, progress)
    disentanglement, completeness = dci_from_importance(r)
    return {
        "dci_disentanglement": disentanglement,
        "dci_completeness": completeness,
        "dci_informativeness_train": float(train_acc.mean()),
        "dci_informativeness_test": float(test_acc.mean()),
    }
