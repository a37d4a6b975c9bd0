"""dlib's VAE family in PyTorch: sharing masks, aggregates, regularisers, gradient routing, models, errors."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from weak_supervision import (
    METHODS,
    BroadcastDecoder,
    FactorDiscriminator,
    GaussianEncoderVAE,
    MethodConfig,
    adaptive_share_mask,
    aggregate_pair,
    annealed_capacity,
    annealed_vae_regulariser,
    average_posterior,
    bernoulli_reconstruction,
    covariance,
    dip_penalty,
    dip_vae_i_regulariser,
    dip_vae_ii_regulariser,
    factor_discriminator_loss,
    factor_vae_tc,
    gaussian_kl,
    kl_per_dim,
    label_share_mask,
    permute_dims,
    product_posterior,
    total_correlation,
    vae_loss,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- aggregation


def test_kl_per_dim_matches_torch_distributions_for_any_leading_dims():
    g = gen()
    mu1, lv1, mu2, lv2 = (torch.randn(3, 4, 6, generator=g, dtype=torch.float64) for _ in range(4))
    expected = kl_divergence(Normal(mu1, (0.5 * lv1).exp()), Normal(mu2, (0.5 * lv2).exp()))
    torch.testing.assert_close(kl_per_dim(mu1, lv1, mu2, lv2), expected)
    assert not torch.allclose(kl_per_dim(mu1, lv1, mu2, lv2), kl_per_dim(mu2, lv2, mu1, lv1))  # direction matters


def test_identical_posteriors_share_every_dimension():
    mu, lv = torch.randn(5, 10, generator=gen()), torch.randn(5, 10, generator=gen(1))
    assert adaptive_share_mask(mu, lv, mu, lv).all()


def test_one_far_dimension_is_the_only_one_kept():
    mu1, lv = torch.zeros(2, 10), torch.zeros(2, 10)
    mu2 = mu1 + 0.01 * torch.randn(2, 10, generator=gen())
    mu2[0, 3], mu2[1, 7] = 5.0, -4.0
    expected = torch.ones(2, 10, dtype=torch.bool)
    expected[0, 3] = expected[1, 7] = False
    assert torch.equal(adaptive_share_mask(mu1, lv, mu2, lv), expected)


def test_a_lower_fraction_shares_fewer_dimensions():
    # deltas [0, 0.5, 2, 4.5, 8]: fraction 0.2 puts tau at 1.6, fraction 0.8 at 6.4
    mu1, lv = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]), torch.zeros(1, 5)
    assert torch.equal(adaptive_share_mask(mu1, lv, torch.zeros(1, 5), lv, fraction=0.2),
                       torch.tensor([[True, True, False, False, False]]))
    assert torch.equal(adaptive_share_mask(mu1, lv, torch.zeros(1, 5), lv, fraction=0.8),
                       torch.tensor([[True, True, True, True, False]]))


def test_threshold_is_the_midpoint_and_a_tie_is_kept_separate():
    # unit variances: KL_j = (mu1_j - mu2_j)^2 / 2, so these means give deltas [0, 0.5, 2, 4.5, 8] -> tau = 4
    mu1, lv = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]]), torch.zeros(1, 5)
    assert torch.equal(adaptive_share_mask(mu1, lv, torch.zeros(1, 5), lv), torch.tensor([[True, True, True, False, False]]))
    # deltas [0, 2, 4, 8] -> tau = 4: delta == tau falls in dlib's upper bin and is kept separate
    mu1 = torch.tensor([[0.0, 2.0, math.sqrt(8.0), 4.0]])
    assert torch.equal(adaptive_share_mask(mu1, torch.zeros(1, 4), torch.zeros(1, 4), torch.zeros(1, 4)),
                       torch.tensor([[True, True, False, False]]))


def test_adaptive_mask_thresholds_each_slot_pair_separately():
    mu1, lv = torch.zeros(2, 3, 4), torch.zeros(2, 3, 4)
    mu2 = mu1.clone()
    mu2[0, 0, 0] = 3.0
    mu2[0, 1] = torch.tensor([3.0, 3.0, 0.0, 0.0])
    mu2[1, 2, 3] = 1.0
    mask = adaptive_share_mask(mu1, lv, mu2, lv)
    assert mask.shape == (2, 3, 4)
    assert mask[0, 0].tolist() == [False, True, True, True]
    assert mask[0, 1].tolist() == [False, False, True, True]
    assert mask[0, 2].all() and mask[1, 0].all() and mask[1, 1].all()
    assert mask[1, 2].tolist() == [True, True, True, False]


def test_label_mask_keeps_exactly_the_changed_factors_dimensions():
    changed = torch.tensor([[True, False, False], [False, True, True], [False, False, False]])
    mask = label_share_mask(changed, latent_dim=5)
    assert mask.tolist() == [
        [False, True, True, True, True],
        [True, False, False, True, True],
        [True, True, True, True, True],
    ]
    assert label_share_mask(changed.unsqueeze(1).expand(3, 2, 3), 5).shape == (3, 2, 5)
    with pytest.raises(ValueError, match="6 factors"):
        label_share_mask(torch.zeros(2, 6, dtype=torch.bool), 5)


def test_gvae_aggregate_hand_values():
    mu, lv = average_posterior(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([3.0]), torch.tensor([math.log(3.0)]))
    torch.testing.assert_close(mu, torch.tensor([2.0]))
    torch.testing.assert_close(lv.exp(), torch.tensor([2.0]))


def test_mlvae_aggregate_is_the_normalised_product_of_the_densities():
    grid = torch.linspace(-12, 12, 200_001, dtype=torch.float64)
    step = grid[1] - grid[0]
    for m1, v1, m2, v2 in [(1.0, 1.0, 3.0, 3.0), (-2.0, 0.25, 4.0, 2.0), (0.5, 4.0, 0.5, 0.1)]:
        density = Normal(m1, math.sqrt(v1)).log_prob(grid).exp() * Normal(m2, math.sqrt(v2)).log_prob(grid).exp()
        density = density / (density.sum() * step)
        mean = (grid * density).sum() * step
        var = ((grid - mean) ** 2 * density).sum() * step
        mu, lv = product_posterior(*(torch.tensor([x], dtype=torch.float64) for x in (m1, math.log(v1), m2, math.log(v2))))
        torch.testing.assert_close(mu, mean.reshape(1), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(lv.exp(), var.reshape(1), rtol=1e-6, atol=1e-6)
        mu_dlib, lv_dlib = product_posterior(
            *(torch.tensor([x], dtype=torch.float64) for x in (m1, math.log(v1), m2, math.log(v2))), dlib_variance=True
        )
        torch.testing.assert_close(mu_dlib, mu)
        torch.testing.assert_close(lv_dlib.exp(), torch.tensor([2 * v1 * v2 / (v1 + v2)], dtype=torch.float64))


@pytest.mark.parametrize("kind", ["gvae", "mlvae"])
def test_aggregate_pair_replaces_only_shared_dimensions(kind):
    g = gen()
    mu1, lv1, mu2, lv2 = (torch.randn(2, 3, 5, generator=g) for _ in range(4))
    share = torch.rand(2, 3, 5, generator=g) > 0.5
    (a_mu1, a_lv1), (a_mu2, a_lv2) = aggregate_pair(mu1, lv1, mu2, lv2, share, kind)
    agg_mu, agg_lv = (average_posterior if kind == "gvae" else product_posterior)(mu1, lv1, mu2, lv2)
    for got, own, agg in [(a_mu1, mu1, agg_mu), (a_lv1, lv1, agg_lv), (a_mu2, mu2, agg_mu), (a_lv2, lv2, agg_lv)]:
        assert torch.equal(got[share], agg[share]) and torch.equal(got[~share], own[~share])
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate_pair(mu1, lv1, mu2, lv2, share, "mean")  # type: ignore[arg-type]


# ---------------------------------------------------------------- losses


def test_bernoulli_reconstruction_and_gaussian_kl_formulas():
    g = gen()
    logits = torch.randn(4, 1, 6, 6, generator=g, dtype=torch.float64)
    target = torch.rand(4, 1, 6, 6, generator=g, dtype=torch.float64)
    p = torch.sigmoid(logits)
    manual = -(target * p.log() + (1 - target) * (1 - p).log()).sum(dim=(1, 2, 3)).mean()
    torch.testing.assert_close(bernoulli_reconstruction(logits, target), manual)
    mu, lv = torch.randn(4, 3, 10, generator=g, dtype=torch.float64), torch.randn(4, 3, 10, generator=g, dtype=torch.float64)
    expected = kl_divergence(Normal(mu, (0.5 * lv).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, lv), expected)


def test_total_correlation_near_zero_when_independent_and_positive_when_correlated():
    g, batch, dims = gen(), 512, 4
    lv = torch.zeros(batch, dims)
    mu = torch.randn(batch, dims, generator=g)
    independent = total_correlation(mu + torch.randn(batch, dims, generator=g), mu, lv, normalise=True)
    shared = torch.randn(batch, 1, generator=g).expand(batch, dims)
    correlated = total_correlation(shared + torch.randn(batch, dims, generator=g), shared, lv, normalise=True)
    # z = m + eps has correlation 1/2 between every pair: TC = -½ log det(corr) = -½ log(2.5 · 0.5³)
    assert abs(independent.item()) < 0.1
    assert correlated.item() == pytest.approx(-0.5 * math.log(2.5 * 0.125), abs=0.15)
    dlib_style = total_correlation(shared + torch.randn(batch, dims, generator=gen(1)), shared, lv)
    again = total_correlation(shared + torch.randn(batch, dims, generator=gen(1)), shared, lv, normalise=True)
    assert again.item() - dlib_style.item() == pytest.approx((dims - 1) * math.log(batch), rel=1e-5)


def whitened(batch: int, dims: int, scale: float = 1.0) -> torch.Tensor:
    x = torch.randn(batch, dims, generator=gen(), dtype=torch.float64)
    x = x - x.mean(0)
    return scale * x @ torch.linalg.inv(torch.linalg.cholesky(covariance(x))).T


def test_dip_penalties_vanish_at_identity_covariance_and_match_hand_value():
    mu = whitened(64, 5)
    torch.testing.assert_close(covariance(mu), torch.eye(5, dtype=torch.float64))
    kl = gaussian_kl(mu, torch.zeros_like(mu)).mean()
    torch.testing.assert_close(dip_vae_i_regulariser(mu, torch.zeros_like(mu), mu), kl)
    # DIP-II: Cov[mu] = 0.75 I plus mean encoder variance 0.25 I is the identity
    mu2, lv2 = whitened(64, 5, math.sqrt(0.75)), torch.full((64, 5), math.log(0.25), dtype=torch.float64)
    torch.testing.assert_close(dip_vae_ii_regulariser(mu2, lv2, mu2), gaussian_kl(mu2, lv2).mean())
    assert dip_vae_i_regulariser(mu2, lv2, mu2) > gaussian_kl(mu2, lv2).mean() + 1.0
    cov = torch.tensor([[2.0, 0.5], [0.5, 1.0]])
    assert dip_penalty(cov, lambda_od=10.0, lambda_d=3.0).item() == pytest.approx(10 * 0.5 + 3 * 1.0)


def test_annealed_capacity_schedule_and_regulariser():
    assert [annealed_capacity(s, 25.0, 100) for s in (0, 40, 100, 500)] == [0.0, 10.0, 25.0, 25.0]
    mu, lv = torch.ones(3, 2), torch.zeros(3, 2)  # KL = 1 per sample
    assert annealed_vae_regulariser(mu, lv, mu, step=0, gamma=1000.0).item() == pytest.approx(1000.0)
    value = annealed_vae_regulariser(mu, lv, mu, step=20, gamma=2.0, c_max=10.0, iteration_threshold=40)
    assert value.item() == pytest.approx(2.0 * abs(1.0 - 5.0))


def test_permute_dims_permutes_each_dimension_independently():
    z = torch.arange(40.0).reshape(20, 2) + torch.tensor([0.0, 1000.0])
    out = permute_dims(z, gen())
    for j in range(2):
        assert torch.equal(out[:, j].sort().values, z[:, j])
    assert not torch.equal(out, z) and not torch.equal(out[:, 0] - z[:, 0], out[:, 1] - z[:, 1])
    assert torch.equal(permute_dims(z, gen(3)), permute_dims(z, gen(3)))


def test_factor_vae_gradients_reach_only_the_right_networks():
    torch.manual_seed(0)
    encoder, critic = torch.nn.Linear(6, 4), FactorDiscriminator(latent_dim=4, hidden=16, depth=2)
    z = encoder(torch.randn(32, 6, generator=gen()))
    enc_params, critic_params = list(encoder.parameters()), list(critic.parameters())
    tc_grads = torch.autograd.grad(factor_vae_tc(z, critic), enc_params + critic_params, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in tc_grads[: len(enc_params)])
    assert all(g is None for g in tc_grads[len(enc_params):])
    critic_loss = factor_discriminator_loss(z, critic, gen())
    critic_grads = torch.autograd.grad(critic_loss, enc_params + critic_params, allow_unused=True)
    assert all(g is None for g in critic_grads[: len(enc_params)])
    assert all(g is not None for g in critic_grads[len(enc_params):])


def test_factor_vae_single_backward_trains_the_critic_on_its_own_loss_only():
    """The critic's gradient from the combined loss must not depend on gamma (the VAE's TC weight)."""
    torch.manual_seed(0)
    model, critic = GaussianEncoderVAE(), FactorDiscriminator(hidden=32, depth=2)
    frames = torch.rand(8, 1, 64, 64, generator=gen())
    grads = []
    for gamma in (1.0, 100.0):
        loss, logs = vae_loss(model, critic, MethodConfig("factor_vae", gamma=gamma), frames, generator=gen(5))
        grads.append(torch.autograd.grad(loss, list(critic.parameters()) + [model.encoder.mean.weight]))
        assert {"tc", "discriminator_loss", "recon_loss", "kl", "loss"} <= logs.keys()
    for a, b in zip(grads[0][:-1], grads[1][:-1]):
        torch.testing.assert_close(a, b)
    assert not torch.allclose(grads[0][-1], grads[1][-1])  # the encoder does feel gamma


# ---------------------------------------------------------------- models and methods


def test_model_shapes():
    model = GaussianEncoderVAE(channels=1, latent_dim=10)
    x = torch.rand(2, 1, 64, 64, generator=gen())
    sizes = []
    convs = [m for m in model.encoder.body if isinstance(m, torch.nn.Conv2d)]
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1])) for m in convs]
    mu, lv = model.encode(x)
    assert sizes == [32, 16, 8, 4] and mu.shape == lv.shape == (2, 10)
    for h in hooks:
        h.remove()
    z = model.sample(mu, lv, gen())
    torch.testing.assert_close(z, model.sample(mu, lv, gen()))
    assert model.decode(z).shape == (2, 1, 64, 64)
    assert GaussianEncoderVAE(channels=3).decode(torch.zeros(2, 10)).shape == (2, 3, 64, 64)
    critic = FactorDiscriminator()
    assert critic(torch.zeros(5, 10)).shape == (5, 2) and critic(torch.zeros(5, 3, 10)).shape == (5, 3, 2)
    assert sum(isinstance(m, torch.nn.LeakyReLU) for m in critic.modules()) == 6


def test_broadcast_decoder_renders_64x64_from_a_tiled_latent_and_coordinates():
    model = GaussianEncoderVAE(channels=1, latent_dim=10, decoder="broadcast")
    assert isinstance(model.decoder, BroadcastDecoder)
    z = torch.randn(3, 10, generator=gen())
    logits = model.decode(z)
    assert logits.shape == (3, 1, 64, 64) and logits.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.decode(z).dtype == torch.float32  # the loss sums 4096 pixels: float32 out of autocast too
    assert GaussianEncoderVAE(channels=3, decoder="broadcast").decode(z).shape == (3, 3, 64, 64)
    assert BroadcastDecoder(1, 10, grid=16)(z).shape == (3, 1, 64, 64)
    # the first layer reads the latent and the two coordinate channels at every one of the 8x8 cells
    first = model.decoder.net[0]
    inputs = []
    first.register_forward_hook(lambda m, i, o: inputs.append(i[0]))
    model.decode(z)
    tiled, coords = inputs[0][:, :10], inputs[0][:, 10:]
    torch.testing.assert_close(tiled, z[:, :, None, None].expand(-1, -1, 8, 8))
    torch.testing.assert_close(coords[0, 0, :, 0], torch.linspace(-1, 1, 8))  # rows run over y, columns over x
    torch.testing.assert_close(coords[0, 1, 0, :], torch.linspace(-1, 1, 8))
    # the coordinates are a constant of the architecture, not a weight: checkpoints do not carry them
    assert not any("coords" in key for key in model.state_dict())
    twin = GaussianEncoderVAE(channels=1, latent_dim=10, decoder="broadcast")
    twin.load_state_dict(model.state_dict())
    torch.testing.assert_close(twin.decode(z), model.decode(z))
    with pytest.raises(ValueError, match="decoder must be one of .*got 'dense'"):
        GaussianEncoderVAE(decoder="dense")
    with pytest.raises(ValueError, match="grid must be 8 or 16.*got 32"):
        BroadcastDecoder(grid=32)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_a_finite_loss_and_its_logs(method):
    torch.manual_seed(0)
    model = GaussianEncoderVAE()
    critic = FactorDiscriminator(hidden=16, depth=2) if METHODS[method].needs_discriminator else None
    f0, f1 = torch.rand(4, 1, 64, 64, generator=gen()), torch.rand(4, 1, 64, 64, generator=gen(1))
    changed = torch.tensor([[True, False, False, False, False]] * 4)
    loss, logs = vae_loss(model, critic, MethodConfig(method, beta=2.0), f0, f1, changed=changed, step=10, generator=gen())
    assert loss.ndim == 0 and torch.isfinite(loss) and logs["loss"] == pytest.approx(loss.item())
    assert {"recon_loss", "kl"} <= logs.keys()
    if METHODS[method].weak:
        assert logs["loss"] == pytest.approx(logs["recon_loss"] + 2.0 * logs["kl"], rel=1e-5)
        assert 0 <= logs["shared_dims"] <= 10
    if method in ("gvae", "mlvae"):
        assert logs["shared_dims"] == 9


def test_identical_frames_share_everything_and_recon_is_per_image():
    model = GaussianEncoderVAE()
    f0 = torch.rand(3, 1, 64, 64, generator=gen())
    _, logs = vae_loss(model, None, MethodConfig("ada_gvae"), f0, f0.clone(), generator=gen())
    assert logs["shared_dims"] == 10
    # per-image Bernoulli loss of 4096 pixels near logit 0 is about 4096·log 2
    assert 0.5 * 4096 * math.log(2) < logs["recon_loss"] < 2 * 4096 * math.log(2)


def test_ada_gvae_overfits_a_few_pairs():
    torch.manual_seed(0)
    model = GaussianEncoderVAE()
    f0 = torch.zeros(3, 1, 64, 64)
    for i in range(3):  # dSprites-like: one white square per image, moving between the frames
        f0[i, :, 8 * i : 8 * i + 12, 10 : 22] = 1.0
    f1 = f0.roll(6, dims=-1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)  # large, to see progress in a few steps
    history = []
    for step in range(6):
        loss, logs = vae_loss(model, None, MethodConfig("ada_gvae"), f0, f1, step=step, generator=gen(step))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(logs["recon_loss"])
    assert history[-1] < 0.5 * history[0]


def test_bad_inputs_raise_clear_errors():
    model, f0 = GaussianEncoderVAE(), torch.rand(2, 1, 64, 64, generator=gen())
    with pytest.raises(ValueError, match="unknown method 'vae'.*beta_vae.*ada_gvae"):
        MethodConfig("vae")
    config = MethodConfig("beta_vae")
    config.method = "nope"
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        vae_loss(model, None, config, f0)
    with pytest.raises(ValueError, match="needs frame pairs"):
        vae_loss(model, None, MethodConfig("ada_gvae"), f0)
    with pytest.raises(ValueError, match="needs `changed`"):
        vae_loss(model, None, MethodConfig("mlvae"), f0, f0)
    with pytest.raises(ValueError, match="changed has shape"):
        vae_loss(model, None, MethodConfig("gvae"), f0, f0, changed=torch.zeros(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"frame0 has shape \(2, 1, 64, 64\), frame1 has shape \(3, 1, 64, 64\)"):
        vae_loss(model, None, MethodConfig("ada_gvae"), f0, torch.rand(3, 1, 64, 64))
    with pytest.raises(ValueError, match="needs a discriminator"):
        vae_loss(model, None, MethodConfig("factor_vae"), f0)
    with pytest.raises(ValueError, match="even sizes"):
        GaussianEncoderVAE(encoder_kernels=(4, 4, 3, 3))
