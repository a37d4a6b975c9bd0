"""Mutual Information Gap (Chen et al. 2018), as computed by disentanglement_lib.

For each factor, how much more does its most informative code know about it than the runner-up,
relative to the factor's entropy: MIG = mean_k (I(c_(1); z_k) - I(c_(2); z_k)) / H(z_k).

Estimator: every code is discretised into 20 equal-width histogram bins (dlib's
`_histogram_discretize`) and the MI between the discretised code and the discrete factor is the
plug-in estimate of `sklearn.metrics.mutual_info_score`, in nats. This "discrete MIG" is the number
dlib reports; it is *not* comparable to MIG from continuous/sampling-based estimators (e.g. the
β-TCVAE paper's), and it depends on the bin count and on outliers stretching the bins.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import mutual_info_score

from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.validation import check_factors, check_pair, check_representation


def histogram_discretize(x: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """int64 [n, D] bin ids in 1..num_bins, each column cut into equal-width bins over its own range.

    As dlib: `np.digitize(x, np.histogram(x, num_bins)[1][:-1])`, so the column maximum falls in the
    last bin and a constant column lands in a single bin (it then carries no information).
    """
    if num_bins < 1:
        raise MetricInputError(f"num_bins must be positive, got {num_bins}")
    x = check_representation(x, "x")
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):  # per code: bin edges differ per column
        edges = np.histogram_bin_edges(x[:, j], bins=num_bins)
        out[:, j] = np.digitize(x[:, j], edges[:-1])
    return out


def mutual_info_matrix(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """MI in nats between every discrete code and every factor -> float64 [num_codes, num_factors]."""
    codes, factors = check_pair(discrete_codes, factors, min_points=1, need_variation=False)
    mi = np.empty((codes.shape[1], factors.shape[1]), dtype=np.float64)
    for j in range(codes.shape[1]):
        for k in range(factors.shape[1]):
            mi[j, k] = mutual_info_score(factors[:, k], codes[:, j])
    return mi


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of each column of integer labels -> float64 [num_factors]."""
    factors = check_factors(factors, need_variation=False)
    out = np.empty(factors.shape[1], dtype=np.float64)
    for k in range(factors.shape[1]):
        _, counts = np.unique(factors[:, k], return_counts=True)
        p = counts / counts.sum()
        out[k] = -np.sum(p * np.log(p))
    return out


def mig_from_mutual_info(mi: np.ndarray, entropy: np.ndarray) -> np.ndarray:
    """Per-factor normalised gap (top1 - top2 MI over codes) / H(factor) -> [num_factors]."""
    mi = np.asarray(mi, dtype=np.float64)
    entropy = np.asarray(entropy, dtype=np.float64)
    if mi.ndim != 2 or mi.shape[0] < 2:
        raise MetricInputError(f"MIG needs an MI matrix [num_codes >= 2, num_factors], got shape {mi.shape}")
    if entropy.shape != (mi.shape[1],):
        raise MetricInputError(f"mismatched lengths: entropy has shape {entropy.shape}, MI has {mi.shape[1]} factors")
    if np.any(entropy <= 0):
        raise MetricInputError("a factor with a single value has zero entropy; MIG needs every factor to vary")
    top = np.sort(mi, axis=0)[::-1]
    return (top[0] - top[1]) / entropy


def mig(representation: np.ndarray, factors: np.ndarray, num_bins: int = 20) -> dict[str, float]:
    """{"mig": ...}: discrete (20-bin histogram) MIG of a representation [n, D] w.r.t. factors [n, F].

    Needs at least 2 codes (a gap needs a runner-up) and every factor to vary. dlib uses 10000 points.
    """
    reps, factors = check_pair(representation, factors, min_codes=2)
    mi = mutual_info_matrix(histogram_discretize(reps, num_bins), factors)
    per_factor = mig_from_mutual_info(mi, discrete_entropy(factors))
    return {"mig": float(np.mean(per_factor))}
