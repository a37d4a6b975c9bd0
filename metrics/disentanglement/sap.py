"""SAP: Separated Attribute Predictability (Kumar et al. 2018), dlib's discrete-factor branch.

For every (code, factor) pair a linear classifier sees only that one code; its held-out accuracy is
the score S[code, factor]. A factor is "separated" when one code predicts it much better than every
other, so SAP = mean over factors of (best - second best) score. Needs at least 2 codes.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.validation import check_rng, check_train_test, sklearn_seed


def sap_score_matrix(
    train_reps: np.ndarray,
    train_factors: np.ndarray,
    test_reps: np.ndarray,
    test_factors: np.ndarray,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Test accuracy of `LinearSVC(C=0.01, class_weight="balanced")` on each single code -> [codes, factors].

    Convergence warnings are silenced: at C=0.01 liblinear may stop at its iteration limit on poorly
    scaled codes, which dlib tolerated too; the accuracy is still what the metric scores.
    """
    xtr, ytr, xte, yte = check_train_test(train_reps, train_factors, test_reps, test_factors)
    rng = check_rng(rng)
    scores = np.zeros((xtr.shape[1], ytr.shape[1]), dtype=np.float64)
    for j in range(xtr.shape[1]):
        for k in range(ytr.shape[1]):
            model = LinearSVC(C=0.01, class_weight="balanced", random_state=sklearn_seed(rng))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(xtr[:, j:j + 1], ytr[:, k])
            scores[j, k] = np.mean(model.predict(xte[:, j:j + 1]) == yte[:, k])
    return scores


def sap_from_scores(scores: np.ndarray) -> float:
    """Mean over factors (columns) of the gap between the two best codes (rows)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 2:
        raise MetricInputError(f"SAP needs a score matrix [num_codes >= 2, num_factors], got shape {scores.shape}")
    top = np.sort(scores, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def sap(
    train_reps: np.ndarray,
    train_factors: np.ndarray,
    test_reps: np.ndarray,
    test_factors: np.ndarray,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """{"sap": ...}. dlib uses 10000 train / 5000 test points."""
    xtr, ytr, xte, yte = check_train_test(train_reps, train_factors, test_reps, test_factors, min_codes=2)
    return {"sap": sap_from_scores(sap_score_matrix(xtr, ytr, xte, yte, rng))}
