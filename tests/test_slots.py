"""Slot Attention: shapes, invariances, gradients and the run-time slot count."""
import pytest
import torch

from slots import GaussianSlotInit, SlotAttention, SlotAutoencoder, SpatialBroadcastDecoder, build_autoencoder


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("num_slots,num_inputs", [(1, 5), (3, 16), (7, 64)])
def test_slot_attention_shapes_for_any_slot_and_input_count(num_slots, num_inputs):
    attention = SlotAttention(input_dim=12, slot_dim=16, mlp_hidden_dim=32)
    slots, attn = attention(torch.randn(2, num_inputs, 12), torch.randn(2, num_slots, 16), num_iterations=2)
    assert slots.shape == (2, num_slots, 16)
    assert attn.shape == (2, num_slots, num_inputs)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, num_inputs))  # softmax over slots


def test_slot_attention_is_invariant_to_input_order():
    attention = SlotAttention(input_dim=8, slot_dim=16, mlp_hidden_dim=32).eval()
    inputs, initial = torch.randn(3, 20, 8), torch.randn(3, 4, 16)
    permutation = torch.randperm(20)
    slots, attn = attention(inputs, initial, num_iterations=3)
    slots_permuted, attn_permuted = attention(inputs[:, permutation], initial, num_iterations=3)
    torch.testing.assert_close(slots_permuted, slots, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn_permuted, attn[:, :, permutation], atol=1e-6, rtol=1e-5)


def test_slot_attention_is_equivariant_to_slot_order():
    attention = SlotAttention(input_dim=8, slot_dim=16, mlp_hidden_dim=32).eval()
    inputs, initial = torch.randn(3, 20, 8), torch.randn(3, 5, 16)
    permutation = torch.tensor([3, 0, 4, 1, 2])
    slots, attn = attention(inputs, initial, num_iterations=3)
    slots_permuted, attn_permuted = attention(inputs, initial[:, permutation], num_iterations=3)
    torch.testing.assert_close(slots_permuted, slots[:, permutation], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn_permuted, attn[:, permutation], atol=1e-6, rtol=1e-5)


def test_implicit_gradient_matches_forward_and_still_trains_the_initialiser():
    attention = SlotAttention(input_dim=8, slot_dim=16, mlp_hidden_dim=32, implicit_grad=True)
    init = GaussianSlotInit(16)
    inputs = torch.randn(2, 10, 8)
    noise_state = torch.get_rng_state()
    initial = init(2, 3)
    slots, _ = attention(inputs, initial, num_iterations=3)
    slots.square().sum().backward()
    assert init.mu.grad is not None and init.mu.grad.abs().sum() > 0
    assert init.log_sigma.grad is not None and init.log_sigma.grad.abs().sum() > 0
    full = SlotAttention(input_dim=8, slot_dim=16, mlp_hidden_dim=32, implicit_grad=False)
    full.load_state_dict(attention.state_dict())
    torch.set_rng_state(noise_state)
    full_slots, _ = full(inputs, init(2, 3), num_iterations=3)
    torch.testing.assert_close(slots, full_slots)  # same forward value, only the gradient path differs


def test_gaussian_init_samples_with_gradient_and_rejects_zero_slots():
    init = GaussianSlotInit(8)
    samples = init(4, 6)
    assert samples.shape == (4, 6, 8)
    samples.sum().backward()
    assert init.mu.grad.abs().sum() > 0 and init.log_sigma.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="num_slots must be >= 1"):
        init(4, 0)


def test_generator_makes_slot_initialisation_reproducible():
    init = GaussianSlotInit(8)
    first = init(2, 3, generator=torch.Generator().manual_seed(5))
    second = init(2, 3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize("broadcast_size,resolution", [(None, (16, 16)), (4, (16, 16)), (8, (32, 32))])
def test_broadcast_decoder_output_shapes(broadcast_size, resolution):
    decoder = SpatialBroadcastDecoder(slot_dim=10, resolution=resolution, channels=8, num_layers=3,
                                      broadcast_size=broadcast_size)
    assert decoder(torch.randn(2, 5, 10)).shape == (2, 5, 4, *resolution)


def test_broadcast_decoder_rejects_impossible_upsampling():
    with pytest.raises(ValueError, match="broadcast_size"):
        SpatialBroadcastDecoder(slot_dim=10, resolution=(24, 24), broadcast_size=5)


TINY_OPTIONS = dict(resolution=(16, 16), num_slots=4, slot_dim=16, mlp_hidden_dim=32, encoder_channels=8,
                    encoder_layers=2, encoder_kernel=3, decoder_channels=8, decoder_layers=2, decoder_kernel=3)


def tiny_model(**options) -> SlotAutoencoder:
    """A small autoencoder from model options, built the way a run builds it (`slots.build`)."""
    return build_autoencoder(**{**TINY_OPTIONS, **options})


@pytest.mark.parametrize("num_slots", [1, 2, 4, 9])
def test_autoencoder_slot_count_is_a_call_argument(num_slots):
    model = tiny_model(num_slots=4).eval()
    output = model(torch.rand(3, 3, 16, 16) * 2 - 1, num_slots=num_slots, num_iterations=2)
    assert output.masks.shape == (3, num_slots, 16, 16)
    assert output.slot_rgb.shape == (3, num_slots, 3, 16, 16)
    assert output.reconstruction.shape == (3, 3, 16, 16)
    torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(3, 16, 16))


def test_autoencoder_reconstruction_is_the_mask_weighted_sum_of_slot_images():
    output = tiny_model().eval()(torch.rand(2, 3, 16, 16))
    expected = (output.slot_rgb * output.masks[:, :, None]).sum(dim=1)
    torch.testing.assert_close(output.reconstruction, expected)


def test_autoencoder_is_equivariant_to_slot_order_through_the_decoder():
    model = tiny_model().eval()
    images = torch.rand(2, 3, 16, 16)
    initial = model.slot_init(2, 4)
    permutation = torch.tensor([2, 0, 3, 1])
    features = model.encoder(images)
    slots, _ = model.slot_attention(features, initial)
    slots_permuted, _ = model.slot_attention(features, initial[:, permutation])
    torch.testing.assert_close(model.decoder(slots_permuted), model.decoder(slots)[:, permutation], atol=1e-5, rtol=1e-5)


def test_autoencoder_rejects_wrong_image_shape_and_bad_slot_count():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"expected images of shape \[B, 3, 16, 16\], got \[2, 3, 20, 20\]"):
        model(torch.rand(2, 3, 20, 20))
    with pytest.raises(ValueError, match="num_slots must be >= 1"):
        model(torch.rand(2, 3, 16, 16), num_slots=0)
    with pytest.raises(ValueError, match="num_slots must be >= 1"):
        tiny_model(num_slots=0)


def test_a_few_training_steps_reduce_the_reconstruction_error():
    model = tiny_model()
    colours = torch.rand(8, 2, 3, 1, 1) * 2 - 1
    images = torch.cat([colours[:, 0].expand(-1, -1, 16, 8), colours[:, 1].expand(-1, -1, 16, 8)], dim=-1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.mse_loss(model(images).reconstruction, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_benchmark_baseline_computes_the_same_function():
    """bench/ compares speed against a naive implementation; that is only fair if both compute the same."""
    from bench.naive import NaiveSlotAutoencoder

    model = tiny_model().eval()
    naive = build_autoencoder(**TINY_OPTIONS, model_class=NaiveSlotAutoencoder).eval()
    naive.load_state_dict(model.state_dict())
    images = torch.rand(2, 3, 16, 16)
    ours = model(images, generator=torch.Generator().manual_seed(3))
    theirs = naive(images, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(theirs.reconstruction, ours.reconstruction, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(theirs.masks, ours.masks, atol=1e-5, rtol=1e-4)
