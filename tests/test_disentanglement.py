"""Disentanglement metrics: hand-computed cases, ordering identity > mixed > noise, and input checks.

Representations used throughout: the factors themselves ("identity"), a rotation of the standardised
factors that mixes every factor into every code ("mixed"), and independent Gaussian noise.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from metrics.disentanglement import (
    MetricInputError,
    active_dims,
    beta_vae_factor_pairs,
    beta_vae_features,
    beta_vae_score,
    dci,
    code_disentanglement,
    dci_from_importance,
    evaluate_all,
    evaluate_arrays,
    explicitness,
    factor_vae_accuracy,
    factor_vae_batch_factors,
    factor_vae_score,
    factor_vae_votes,
    histogram_discretize,
    mig,
    mig_from_mutual_info,
    modularity,
    modularity_explicitness,
    modularity_from_mutual_info,
    mutual_info_matrix,
    sample_representations,
    sap,
    sap_from_scores,
    sap_score_matrix,
)
from metrics.disentanglement.source import GroundTruthSource

# ---------------------------------------------------------------------------------------------- helpers


class FakeSource:
    """Observations are the factors themselves, scaled to [0, 1], as [n, F, 1, 1] images."""

    def __init__(self, sizes: tuple[int, ...] = (3, 4, 5, 6)) -> None:
        self._sizes = tuple(sizes)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return self._sizes

    def sample_factors(self, num: int, rng: np.random.Generator) -> np.ndarray:
        return (rng.random((num, len(self._sizes))) * np.asarray(self._sizes)).astype(np.int64)

    def sample_observations_from_factors(self, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scale = np.maximum(np.asarray(self._sizes) - 1, 1)
        return (factors / scale).astype(np.float32)[:, :, None, None]


def identity_fn(observations: np.ndarray) -> np.ndarray:
    return observations.reshape(observations.shape[0], -1)


def noise_fn(seed: int = 5):
    rng = np.random.default_rng(seed)
    return lambda observations: rng.normal(size=(observations.shape[0], 4))


def draw_factors(rng: np.random.Generator, n: int, sizes: tuple[int, ...]) -> np.ndarray:
    return (rng.random((n, len(sizes))) * np.asarray(sizes)).astype(np.int64)


def standardise(factors: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    s = np.asarray(sizes, dtype=np.float64)
    return (factors - (s - 1) / 2) / np.sqrt((s**2 - 1) / 12)


def mixing_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random 4x4 rotation that puts equal weight (|q_ij| = 1/2) of every factor into every code.

    (Hadamard matrix with random row/column signs and order.) A generic random rotation is often close
    to axis-aligned for some factors, which makes "clearly lower" a statement about the seed.
    """
    h = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=np.float64) / 2
    signs = rng.choice([-1.0, 1.0], size=4)
    return (h * signs[:, None])[rng.permutation(4)][:, rng.permutation(4)]


SIZES = (4, 5, 6, 8)


@pytest.fixture(scope="module")
def splits() -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(train reps, train factors, test reps, test factors) per representation kind."""
    rng = np.random.default_rng(0)
    ftr, fte = draw_factors(rng, 1000, SIZES), draw_factors(rng, 500, SIZES)
    q = mixing_rotation(rng)
    return {
        "identity": (ftr.astype(np.float64), ftr, fte.astype(np.float64), fte),
        "mixed": (standardise(ftr, SIZES) @ q, ftr, standardise(fte, SIZES) @ q, fte),
        "noise": (rng.normal(size=(1000, 4)), ftr, rng.normal(size=(500, 4)), fte),
    }


def three_bit_grid() -> tuple[np.ndarray, np.ndarray]:
    """All 8 combinations of three binary factors, and codes c0 = z0, c1 = z1 AND z2, c2 = constant."""
    z = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.int64)
    codes = np.stack([z[:, 0], z[:, 1] & z[:, 2], np.zeros(8)], axis=1).astype(np.float64)
    return codes, z


# Hand computation for three_bit_grid (natural logs):
#   I(c0; z0) = H(z0) = ln 2; I(c0; z1) = I(c0; z2) = 0 (independent).
#   c1 = z1 AND z2 takes 1 on 2 of 8 points: H(c1) = 3/4 ln(4/3) + 1/4 ln 4 = 3/4 ln(4/3) + 1/2 ln 2.
#   Given z1 = 0 (half the points) c1 = 0; given z1 = 1, c1 = z2 is a fair coin: H(c1 | z1) = 1/2 ln 2.
#   So a := I(c1; z1) = I(c1; z2) = 3/4 ln(4/3) ≈ 0.2158 and I(c1; z0) = 0. The constant c2 has MI 0.
A = 0.75 * math.log(4 / 3)
LN2 = math.log(2)


# ---------------------------------------------------------------------------------------------- MIG


def test_histogram_discretize_matches_dlib_binning():
    x = np.array([[0.0, 5.0], [1.0, 5.0], [0.5, 5.0], [0.96, 5.0]])
    bins = histogram_discretize(x, num_bins=20)
    # Equal-width bins over [0, 1]: 0 -> bin 1, 0.5 -> bin 11, 0.96 -> bin 20, the max -> the last bin.
    assert bins[:, 0].tolist() == [1, 20, 11, 20]
    assert np.all(bins[:, 1] == bins[0, 1])  # a constant code lands in one bin


def test_mutual_info_matrix_by_hand():
    codes, z = three_bit_grid()
    mi = mutual_info_matrix(histogram_discretize(codes), z)
    expected = np.array([[LN2, 0, 0], [0, A, A], [0, 0, 0]])
    np.testing.assert_allclose(mi, expected, atol=1e-12)


def test_mig_by_hand():
    codes, z = three_bit_grid()
    # Per factor (top1 - top2) / H, H = ln 2 for every factor:
    #   z0: (ln2 - 0) / ln2 = 1;  z1: (a - 0) / ln2;  z2: (a - 0) / ln2.
    expected = (1 + 2 * A / LN2) / 3  # ≈ 0.5409
    assert mig(codes, z)["mig"] == pytest.approx(expected, abs=1e-12)
    assert mig_from_mutual_info(np.array([[2.0, 1.0], [0.5, 0.0]]), np.array([4.0, 2.0])).tolist() == [0.375, 0.5]


def test_mig_identity_mixed_noise(splits):
    scores = {name: mig(xtr, ytr)["mig"] for name, (xtr, ytr, _, _) in splits.items()}
    assert scores["identity"] > 0.9
    assert scores["mixed"] < scores["identity"] - 0.5
    assert scores["noise"] < 0.05


def test_mig_random_rotation_lower(splits):
    xtr, ytr, _, _ = splits["identity"]
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))
    assert mig(standardise(ytr, SIZES) @ q, ytr)["mig"] < mig(xtr, ytr)["mig"] - 0.3


# ---------------------------------------------------------------------------------------------- DCI


def test_dci_from_importance_by_hand():
    r = np.array([[0.6, 0.0], [0.2, 0.2], [0.0, 0.0]])
    # Disentanglement (rows, base F=2): row 0 -> P=[1,0], 1-H=1, weight 0.6; row 1 -> P=[.5,.5], 1-H=0,
    # weight 0.4; row 2 has weight 0. D = 0.6.
    # Completeness (columns, base D=3): column 0 -> P=[.75,.25,0], H_3 = (3/4 ln(4/3) + 1/4 ln 4) / ln 3,
    # weight 0.8; column 1 -> P=[0,1,0], 1-H=1, weight 0.2.
    h = (0.75 * math.log(4 / 3) + 0.25 * math.log(4)) / math.log(3)
    d, c = dci_from_importance(r)
    assert d == pytest.approx(0.6, abs=1e-12)
    assert c == pytest.approx(0.8 * (1 - h) + 0.2, abs=1e-12)
    assert dci_from_importance(np.eye(3)) == pytest.approx((1.0, 1.0))
    assert dci_from_importance(np.ones((3, 3))) == pytest.approx((0.0, 0.0), abs=1e-12)
    assert dci_from_importance(np.zeros((3, 2))) == pytest.approx((0.0, 0.0), abs=1e-12)
    # the same matrix per code: weights 0.6 / 0.4 / 0 (row sums of a total of 1), scores 1 / 0 / 0
    weights, scores = code_disentanglement(r)
    assert weights == pytest.approx([0.6, 0.4, 0.0], abs=1e-12) and scores == pytest.approx([1.0, 0.0, 0.0])
    assert float(np.sum(weights * scores)) == pytest.approx(d, abs=1e-12)
    with pytest.raises(MetricInputError, match="finite and nonnegative"):
        code_disentanglement(np.array([[0.5, -0.1], [0.2, 0.2]]))


@pytest.mark.parametrize("model", ["random_forest", "extra_trees"])
def test_dci_identity_mixed_noise(splits, model):
    scores = {name: dci(xtr[:600], ytr[:600], xte[:300], yte[:300], importance_model=model,
                        rng=np.random.default_rng(0))
              for name, (xtr, ytr, xte, yte) in splits.items()}
    assert scores["identity"]["dci_disentanglement"] > 0.9
    assert scores["identity"]["dci_completeness"] > 0.9
    assert scores["identity"]["dci_informativeness_test"] > 0.95
    assert scores["mixed"]["dci_disentanglement"] < 0.6
    assert scores["mixed"]["dci_completeness"] < 0.6
    assert scores["noise"]["dci_disentanglement"] < 0.1
    assert scores["noise"]["dci_completeness"] < 0.1
    chance = np.mean([1 / s for s in SIZES])
    assert abs(scores["noise"]["dci_informativeness_test"] - chance) < 0.05


def test_dci_gbt_small():
    """The dlib-default gradient-boosted trees on binary factors (one tree per stage, so it is fast)."""
    rng = np.random.default_rng(1)
    f = draw_factors(rng, 300, (2, 2, 2))
    g = draw_factors(rng, 100, (2, 2, 2))
    out = dci(f.astype(float), f, g.astype(float), g, importance_model="gbt", rng=rng)
    assert out["dci_disentanglement"] > 0.95 and out["dci_completeness"] > 0.95
    assert out["dci_informativeness_test"] == 1.0
    with pytest.raises(MetricInputError, match="importance_model"):
        dci(f.astype(float), f, g.astype(float), g, importance_model="svm")


# ---------------------------------------------------------------------------------------------- SAP


def test_sap_binary_identity_mixed_noise():
    """With balanced binary factors SAP's ceiling is 0.5, not 1.

    The best code classifies its factor perfectly, but the runner-up code is uninformative and a
    classifier on it still scores chance (0.5), so the top-two gap is 1 - 0.5. With the equal-mixing
    rotation all four codes predict each factor equally well (gap ~0); noise codes all score chance.
    """
    rng = np.random.default_rng(2)
    sizes = (2, 2, 2, 2)
    ftr, fte = draw_factors(rng, 2000, sizes), draw_factors(rng, 1000, sizes)
    ident = sap_score_matrix(ftr.astype(float), ftr, fte.astype(float), fte)
    assert np.all(np.diag(ident) == 1.0)
    assert np.all(np.abs(ident[~np.eye(4, dtype=bool)] - 0.5) < 0.06)
    assert sap(ftr.astype(float), ftr, fte.astype(float), fte)["sap"] == pytest.approx(0.5, abs=0.05)
    q = mixing_rotation(rng)
    assert sap(standardise(ftr, sizes) @ q, ftr, standardise(fte, sizes) @ q, fte)["sap"] < 0.1
    assert sap(rng.normal(size=(2000, 4)), ftr, rng.normal(size=(1000, 4)), fte)["sap"] < 0.05


def test_sap_from_scores_by_hand():
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.6]])
    # factor 0: best 0.9, runner-up 0.6 -> 0.3; factor 1: best 0.7, runner-up 0.6 -> 0.1; mean 0.2.
    assert sap_from_scores(scores) == pytest.approx(0.2)


def test_sap_multivalued_identity_beats_mixed_and_noise(splits):
    scores = {name: sap(*arrays)["sap"] for name, arrays in splits.items()}
    assert scores["identity"] > scores["mixed"] + 0.1
    assert scores["noise"] < 0.05


# ---------------------------------------------------------------------------------------------- modularity


def test_modularity_by_hand():
    codes, z = three_bit_grid()
    # MI rows: c0 = [ln2, 0, 0] -> deviation 0 -> 1.
    #          c1 = [0, a, a]  -> theta = a, deviation = a^2 / (a^2 (F-1)) = 1/2 -> 0.5.
    #          c2 = [0, 0, 0]  -> no information -> 0 (dlib).
    assert modularity(codes, z)["modularity"] == pytest.approx((1 + 0.5 + 0) / 3, abs=1e-12)
    assert modularity(codes[:, :2], z)["modularity"] == pytest.approx(0.75, abs=1e-12)
    # Direct: deviation = (1^2 + 2^2) / (4^2 * 2) = 5/32.
    assert modularity_from_mutual_info(np.array([[1.0, 4.0, 2.0]])) == pytest.approx(1 - 5 / 32)


def test_modularity_identity_mixed_noise(splits):
    scores = {name: modularity(xtr, ytr)["modularity"] for name, (xtr, ytr, _, _) in splits.items()}
    assert scores["identity"] > 0.95
    assert scores["mixed"] < scores["identity"] - 0.4
    # Noise is *not* near zero: a noise code's MI is estimator bias that grows with the factor's number
    # of values (roughly (bins-1)(K-1)/2N), so the 8-valued factor dominates every noise code.
    assert 0.3 < scores["noise"] < 0.9


def test_explicitness_identity_mixed_noise(splits):
    scores = {name: explicitness(*arrays) for name, arrays in splits.items()}
    assert scores["identity"]["explicitness_test"] > 0.95
    # Linear decodability survives an invertible linear mixing: explicitness does not see rotations.
    assert scores["mixed"]["explicitness_test"] == pytest.approx(scores["identity"]["explicitness_test"], abs=0.02)
    assert scores["noise"]["explicitness_test"] == pytest.approx(0.5, abs=0.05)
    assert scores["noise"]["explicitness_train"] >= scores["noise"]["explicitness_test"] - 0.02


# ---------------------------------------------------------------------------------------------- BetaVAE


def test_beta_vae_factor_pairs_share_the_labelled_factor():
    rng = np.random.default_rng(0)
    f1, f2, k = beta_vae_factor_pairs(FakeSource(), 50, 8, rng)
    assert f1.shape == f2.shape == (50, 8, 4)
    rows = np.arange(50)
    np.testing.assert_array_equal(f1[rows, :, k], f2[rows, :, k])
    assert (f1 != f2).any(axis=(1, 2)).all()  # the other factors are redrawn
    assert set(k.tolist()) == {0, 1, 2, 3}


def test_beta_vae_features_by_hand():
    r1 = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    r2 = np.array([[[1.0, 1.0], [0.0, 0.0]]])
    np.testing.assert_allclose(beta_vae_features(r1, r2), [[1.5, 1.5]])


def test_beta_vae_identity_and_noise():
    kwargs = dict(batch_size=16, num_train=300, num_eval=200)
    ident = beta_vae_score(FakeSource(), identity_fn, np.random.default_rng(0), **kwargs)
    assert ident["beta_vae_eval_accuracy"] > 0.95
    noise = beta_vae_score(FakeSource(), noise_fn(), np.random.default_rng(0), **kwargs)
    assert noise["beta_vae_eval_accuracy"] == pytest.approx(0.25, abs=0.1)


# ---------------------------------------------------------------------------------------------- FactorVAE


def test_factor_vae_batch_factors_fix_one_factor():
    factors, labels = factor_vae_batch_factors(FakeSource(), 40, 10, np.random.default_rng(0))
    rows = np.arange(40)
    fixed = factors[rows, :, labels]
    assert (fixed == fixed[:, :1]).all()


def test_factor_vae_votes_and_accuracy_by_hand():
    # Two votes, codes 0..2 with code 2 inactive. Vote 0 fixes factor 1: code 1 has zero local
    # variance. Vote 1 fixes factor 0: code 0 is constant. Code 2 is constant in both but inactive.
    local = np.array([
        [[0.0, 5.0, 1.0], [2.0, 5.0, 1.0]],
        [[3.0, 0.0, 1.0], [3.0, 4.0, 1.0]],
    ])
    variances = np.array([1.0, 1.0, 1e-6])
    active = active_dims(variances)
    assert active.tolist() == [True, True, False]
    votes = factor_vae_votes(local, np.array([1, 0]), variances, active, num_factors=2)
    np.testing.assert_array_equal(votes, [[1, 0, 0], [0, 1, 0]])
    # Majority vote: code 0 -> factor 0 (3 votes vs 1), code 1 -> factor 1 (2 vs 2, tie -> factor 0).
    train = np.array([[3, 2, 0], [1, 2, 0]])
    evals = np.array([[1, 1, 0], [1, 3, 0]])
    out = factor_vae_accuracy(train, evals)
    assert out["factor_vae_train_accuracy"] == pytest.approx(5 / 8)
    assert out["factor_vae_eval_accuracy"] == pytest.approx(2 / 6)


def test_factor_vae_identity_noise_and_dead():
    kwargs = dict(batch_size=16, num_train=300, num_eval=200, num_variance_estimate=500)
    ident = factor_vae_score(FakeSource(), identity_fn, np.random.default_rng(0), **kwargs)
    assert ident["factor_vae_eval_accuracy"] > 0.98 and ident["factor_vae_num_active_dims"] == 4
    noise = factor_vae_score(FakeSource(), noise_fn(), np.random.default_rng(0), **kwargs)
    assert noise["factor_vae_eval_accuracy"] == pytest.approx(0.25, abs=0.1)
    with pytest.warns(UserWarning, match="no active dims"):
        dead = factor_vae_score(FakeSource(), lambda o: np.zeros((len(o), 3)), np.random.default_rng(0), **kwargs)
    assert dead == {"factor_vae_train_accuracy": 0.0, "factor_vae_eval_accuracy": 0.0,
                    "factor_vae_num_active_dims": 0.0}


# ---------------------------------------------------------------------------------------------- harness


def test_fake_source_satisfies_protocol_and_sampling():
    source = FakeSource()
    assert isinstance(source, GroundTruthSource)
    reps, factors = sample_representations(source, identity_fn, 100, np.random.default_rng(0), batch_size=32)
    assert reps.shape == (100, 4) and factors.shape == (100, 4)
    np.testing.assert_allclose(reps * np.array([2, 3, 4, 5]), factors, atol=1e-5)


def test_evaluate_all_small():
    sizes = dict(batch_size=16, beta_vae_num_train=200, beta_vae_num_eval=100, factor_vae_num_variance=300,
                 factor_vae_num_train=200, factor_vae_num_eval=100, mig_num_train=600, dci_num_train=400,
                 dci_num_test=200, sap_num_train=400, sap_num_test=200, modularity_num_train=600,
                 modularity_num_test=300)
    out = evaluate_all(FakeSource(), identity_fn, np.random.default_rng(0), sizes=sizes, progress=False,
                       dci_importance_model="random_forest")
    for key in ("beta_vae_eval_accuracy", "factor_vae_eval_accuracy", "mig", "dci_disentanglement",
                "dci_completeness", "dci_informativeness_test", "sap", "modularity", "explicitness_test"):
        assert isinstance(out[key], float)
    assert out["beta_vae_eval_accuracy"] > 0.95 and out["factor_vae_eval_accuracy"] > 0.95
    assert out["mig"] > 0.9 and out["dci_disentanglement"] > 0.9 and out["modularity"] > 0.95
    with pytest.raises(MetricInputError, match="unknown metric"):
        evaluate_all(FakeSource(), identity_fn, np.random.default_rng(0), metrics=("irs",))
    with pytest.raises(MetricInputError, match="unknown size"):
        evaluate_all(FakeSource(), identity_fn, np.random.default_rng(0), sizes={"mig_points": 5})


def test_evaluate_arrays_keys(splits):
    out = evaluate_arrays(*splits["identity"], metrics=("mig", "sap", "modularity"), num_train=500, num_test=300)
    assert set(out) == {"mig", "sap", "modularity", "explicitness_train", "explicitness_test"}


# ---------------------------------------------------------------------------------------------- bad inputs


def _good(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = np.tile(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), (n // 4 + 1, 1))[:n]
    return f + 0.1 * rng.normal(size=f.shape), f


METRICS = {
    "mig": lambda a, b, c, d: mig(a, b),
    "dci": lambda a, b, c, d: dci(a, b, c, d, importance_model="random_forest"),
    "sap": lambda a, b, c, d: sap(a, b, c, d),
    "modularity": lambda a, b, c, d: modularity_explicitness(a, b, c, d),
    "evaluate_arrays": lambda a, b, c, d: evaluate_arrays(a, b, c, d),
}


def _nan_reps():
    x, f = _good()
    x[3, 1] = np.nan
    return x, f


def _inf_reps():
    x, f = _good()
    x[0, 0] = np.inf
    return x, f


def _constant_factor():
    x, f = _good()
    f = f.copy()
    f[:, 1] = 2
    return x, f


def _short_factors():
    x, f = _good()
    return x, f[:-3]


def _flat_reps():
    x, f = _good()
    return x.reshape(-1), f


def _flat_factors():
    x, f = _good()
    return x, f[:, 0]


BAD = {
    "nan": (_nan_reps, "NaN"),
    "inf": (_inf_reps, "inf"),
    "single value": (_constant_factor, "single value"),
    "length": (_short_factors, "mismatched lengths"),
    "ndim reps": (_flat_reps, "2-D"),
    "ndim factors": (_flat_factors, "2-D"),
}


@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_raise(metric, case):
    make, words = BAD[case]
    x, f = make()
    xt, ft = _good(seed=1)
    with pytest.raises(MetricInputError, match=words):
        METRICS[metric](x, f, xt, ft)


def test_bad_test_split_and_sizes():
    x, f = _good()
    xt, ft = _good(seed=1)
    with pytest.raises(MetricInputError, match="mismatched code counts"):
        sap(x, f, np.c_[xt, xt[:, :1]], ft)
    with pytest.raises(MetricInputError, match="NaN"):
        dci(x, f, np.full_like(xt, np.nan), ft, importance_model="random_forest")
    with pytest.raises(MetricInputError, match="fewer samples than asked"):
        evaluate_arrays(x, f, xt, ft, num_train=100)
    with pytest.raises(MetricInputError, match="at least 2 codes"):
        mig(x[:, :1], f)
    with pytest.raises(MetricInputError, match="discrete"):
        mig(x, f + 0.5)
    with pytest.raises(MetricInputError, match="single value"):
        beta_vae_score(FakeSource((1, 3)), identity_fn, np.random.default_rng(0), num_train=10, num_eval=10,
                       batch_size=4)


def test_bad_representation_fn():
    rng = np.random.default_rng(0)
    with pytest.raises(MetricInputError, match="representation_fn returned shape"):
        sample_representations(FakeSource(), lambda o: o.reshape(len(o), -1)[:-1], 10, rng)
    with pytest.raises(MetricInputError, match="NaN"):
        sample_representations(FakeSource(), lambda o: np.full((len(o), 2), np.nan), 10, rng)
    with pytest.raises(MetricInputError, match="NaN"):
        factor_vae_score(FakeSource(), lambda o: np.full((len(o), 2), np.nan), rng, num_variance_estimate=10)
