"""Modularity and explicitness (Ridgeway & Zemel 2018), as dlib computes them.

Modularity: does each code depend on at most one factor?  From the MI matrix m [codes, factors]
(20-bin histogram codes, as MIG), for code j with theta_j = max_k m_jk and a template t_j that keeps
only that maximum: delta_j = sum_k (m_jk - t_jk)^2 / (theta_j^2 (F - 1)), modularity = mean_j (1 - delta_j).
A code with theta_j = 0 (it carries no information on any factor, e.g. a collapsed dimension) scores
0, as in dlib: it is not counted as perfectly modular.

Modularity is not a "noise scores zero" metric: a pure-noise code's estimated MI is estimator bias,
which grows with the factor's number of values, so with unequal factor sizes one factor dominates and
noise codes look fairly modular. Read it together with an informativeness score.

Explicitness: can each factor be read off linearly?  Per factor a one-vs-rest logistic regression on
standardised codes (statistics from the training split); score = macro ROC-AUC of its class
probabilities, on train and on test, averaged over factors. dlib called `LogisticRegression()`, whose
default in the sklearn of its time was one-vs-rest with the liblinear solver; that is what is fitted
here (`OneVsRestClassifier(LogisticRegression(solver="liblinear"))`, probabilities normalised over
classes as sklearn's OvR does). It is invariant to any invertible linear
mixing of the codes (up to regularisation), so it measures information, not disentanglement.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.multiclass import OneVsRestClassifier

from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.mig import histogram_discretize, mutual_info_matrix
from metrics.disentanglement.validation import check_pair, check_rng, check_train_test, sklearn_seed


def modularity_from_mutual_info(mi: np.ndarray) -> float:
    """Modularity from an MI matrix [num_codes, num_factors >= 2] (codes with no information score 0)."""
    mi = np.asarray(mi, dtype=np.float64)
    if mi.ndim != 2 or mi.shape[1] < 2:
        raise MetricInputError(f"modularity needs an MI matrix [num_codes, num_factors >= 2], got shape {mi.shape}")
    if not np.all(np.isfinite(mi)):
        raise MetricInputError("MI matrix contains NaN or inf values")
    squared = np.square(mi)
    theta_sq = squared.max(axis=1)
    deviation = (squared.sum(axis=1) - theta_sq) / np.where(theta_sq > 0, theta_sq * (mi.shape[1] - 1), 1.0)
    return float(np.mean(np.where(theta_sq > 0, 1.0 - deviation, 0.0)))


def modularity(representation: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, float]:
    """{"modularity": ...} of a representation [n, D] w.r.t. factors [n, F >= 2]. dlib: 10000 points."""
    reps, factors = check_pair(representation, factors, min_factors=2)
    mi = mutual_info_matrix(histogram_discretize(reps, num_bins), factors)
    return {"modularity": modularity_from_mutual_info(mi)}


def _macro_auc(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro one-vs-rest ROC-AUC over the classes that have positives and negatives in y.

    A class absent from the training split has no probability column and is skipped (its points still
    count as negatives for the others); dlib's binarizer would fail on mismatched class sets.
    """
    indicator = y[:, None] == classes[None, :]
    positives = indicator.sum(axis=0)
    usable = (positives > 0) & (positives < y.shape[0])
    if not usable.any():
        raise MetricInputError("explicitness: no factor value with both positives and negatives to score ROC-AUC")
    return float(roc_auc_score(indicator[:, usable], proba[:, usable], average="macro"))


def explicitness(
    train_reps: np.ndarray,
    train_factors: np.ndarray,
    test_reps: np.ndarray,
    test_factors: np.ndarray,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """{"explicitness_train", "explicitness_test"}: mean per-factor macro ROC-AUC. dlib: 10000 / 5000 points."""
    xtr, ytr, xte, yte = check_train_test(train_reps, train_factors, test_reps, test_factors)
    rng = check_rng(rng)
    mean = xtr.mean(axis=0)
    std = xtr.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant code stays 0 instead of dividing by zero
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    train_auc = np.zeros(ytr.shape[1])
    test_auc = np.zeros(ytr.shape[1])
    for k in range(ytr.shape[1]):
        model = OneVsRestClassifier(LogisticRegression(solver="liblinear", random_state=sklearn_seed(rng)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(xtr, ytr[:, k])
        train_auc[k] = _macro_auc(ytr[:, k], model.predict_proba(xtr), model.classes_)
        test_auc[k] = _macro_auc(yte[:, k], model.predict_proba(xte), model.classes_)
    return {"explicitness_train": float(train_auc.mean()), "explicitness_test": float(test_auc.mean())}


def modularity_explicitness(
    train_reps: np.ndarray,
    train_factors: np.ndarray,
    test_reps: np.ndarray,
    test_factors: np.ndarray,
    num_bins: int = 20,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """dlib's `compute_modularity_explicitness`: modularity on the train split, explicitness on both."""
    xtr, ytr, xte, yte = check_train_test(train_reps, train_factors, test_reps, test_factors, min_factors=2)
    return {**modularity(xtr, ytr, num_bins), **explicitness(xtr, ytr, xte, yte, rng)}
