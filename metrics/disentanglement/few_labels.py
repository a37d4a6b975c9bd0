"""Model selection from a few labels (Locatello et al. 2020, "Disentangling factors of variation using few
labels"): score every trained model's DCI on only N labelled points and ask whether the best model by that
cheap score is the best model by the full-label score.

`few_label_dci` scores one model from its N labelled points (split into fitting and held-out points as the
full DCI is); `selection_from_few_labels` compares the few-label scores of many runs, over several draws of
the labelled points, with their full-label scores.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from metrics.disentanglement.dci import dci
from metrics.disentanglement.errors import MetricInputError
from metrics.disentanglement.validation import check_pair

#: Share of the N labelled points the importance model is fitted on; the rest is its held-out set.
TRAIN_FRACTION = 0.8


def few_label_dci(reps: np.ndarray, factors: np.ndarray, importance_model: str = "random_forest",
                  rng: np.random.Generator | None = None, train_fraction: float = TRAIN_FRACTION) -> dict[str, float]:
    """DCI scores from N labelled points only: the first `train_fraction` of them fit the importance model,
    the rest test it (the points are assumed drawn at random, so their order is a random split)."""
    reps, factors = check_pair(reps, factors, name="labelled", min_codes=2, min_factors=2)
    if not 0 < train_fraction < 1:
        raise MetricInputError(f"train_fraction must be in (0, 1), got {train_fraction}")
    split = int(round(len(reps) * train_fraction))
    if split < 2 or split >= len(reps):
        raise MetricInputError(f"{len(reps)} labelled points leave no fitting or no held-out points "
                               f"(train_fraction {train_fraction}); use at least 10")
    return dci(reps[:split], factors[:split], reps[split:], factors[split:], importance_model, rng)


def selection_from_few_labels(full_scores: np.ndarray, few_scores: np.ndarray) -> dict[str, float]:
    """How well N-label scores pick models, over D draws of the labelled points.

    full_scores [R]: each run's full-label score; few_scores [D, R]: its N-label score in each draw.
    Returns the median (over draws) Spearman correlation of few- with full-label scores across runs; the
    share of draws whose best run by the few-label score is the best run by the full-label score; and the
    regret, the full-label score given up by selecting with few labels (mean and worst over draws).
    """
    full = np.asarray(full_scores, dtype=np.float64)
    few = np.atleast_2d(np.asarray(few_scores, dtype=np.float64))
    if full.ndim != 1 or len(full) < 2:
        raise MetricInputError(f"full_scores must be [num_runs >= 2], got shape {full.shape}")
    if few.ndim != 2 or few.shape[1] != len(full):
        raise MetricInputError(f"few_scores must be [num_draws, {len(full)}] (one column per run), got {few.shape}")
    if not (np.isfinite(full).all() and np.isfinite(few).all()):
        raise MetricInputError("scores must be finite (no NaN or inf)")
    chosen = few.argmax(axis=1)  # [D]
    regret = full.max() - full[chosen]
    rhos = [spearmanr(draw, full)[0] for draw in few]
    return {"spearman": float(np.nanmedian(rhos)) if not np.isnan(rhos).all() else float("nan"),
            "agreement": float(np.mean(full[chosen] == full.max())),
            "mean_regret": float(regret.mean()), "max_regret": float(regret.max()), "draws": int(len(few))}
