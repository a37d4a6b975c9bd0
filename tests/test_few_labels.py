"""Model selection from a few labels: the selection statistics on a hand-made case, and the few-label DCI
ranking representations whose order is known by construction."""
import numpy as np
import pytest

from metrics.disentanglement import MetricInputError
from metrics.disentanglement.few_labels import few_label_dci, selection_from_few_labels


def test_selection_statistics_match_a_hand_computed_case():
    full = np.array([0.2, 0.8, 0.5])
    few = np.array([[0.1, 0.9, 0.3],    # picks run 1, the full-label best: no regret; same ranking: rho 1
                    [0.6, 0.5, 0.4]])   # picks run 0: regret 0.8 - 0.2; ranks (3, 2, 1) vs (1, 3, 2): rho -0.5
    result = selection_from_few_labels(full, few)
    assert result["agreement"] == pytest.approx(0.5)
    assert result["mean_regret"] == pytest.approx(0.3)
    assert result["max_regret"] == pytest.approx(0.6)
    assert result["spearman"] == pytest.approx((1.0 - 0.5) / 2)
    assert result["draws"] == 2


def test_selection_refuses_mismatched_or_non_finite_scores():
    with pytest.raises(MetricInputError, match=r"few_scores must be \[num_draws, 3\]"):
        selection_from_few_labels(np.array([0.1, 0.2, 0.3]), np.zeros((2, 4)))
    with pytest.raises(MetricInputError, match="finite"):
        selection_from_few_labels(np.array([0.1, np.nan]), np.zeros((1, 2)))


def representations(factors: np.ndarray, mixing: float, rng: np.random.Generator) -> np.ndarray:
    """Codes = factors (scaled to [0, 1]) rotated pairwise by `mixing` (0: aligned, 1: 45 degrees), plus noise."""
    scaled = factors / factors.max(axis=0)
    angle = mixing * np.pi / 4
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    codes = np.concatenate([scaled[:, :2] @ rotation.T, scaled[:, 2:]], axis=1)
    return codes + 0.01 * rng.standard_normal(codes.shape)


@pytest.mark.parametrize("num_labels", [100, 1000])
def test_few_label_dci_ranks_aligned_above_mixed_codes_and_selects_the_aligned_model(num_labels):
    rng = np.random.default_rng(0)
    mixings = (0.0, 0.5, 1.0)  # the aligned model is best, then the half-rotated, then the fully rotated
    draws = []
    for draw in range(3):
        factors = rng.integers(0, [4, 5, 3], size=(num_labels, 3))
        draws.append([few_label_dci(representations(factors, m, rng), factors, rng=np.random.default_rng(draw))
                      ["dci_disentanglement"] for m in mixings])
    draws = np.array(draws)
    assert (np.diff(draws.mean(axis=0)) < 0).all(), draws
    selection = selection_from_few_labels(np.array([0.9, 0.6, 0.3]), draws)
    assert selection["agreement"] == 1.0 and selection["mean_regret"] == 0.0


def test_few_label_dci_needs_held_out_points():
    factors = np.random.default_rng(0).integers(0, 3, size=(4, 2))
    with pytest.raises(MetricInputError, match="4 labelled points leave no fitting or no held-out points"):
        few_label_dci(factors.astype(float), factors, train_fraction=0.9)
