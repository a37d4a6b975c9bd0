"""Slot-centric frames (Invariant Slot Attention): positions and scales from attention, and a decoder whose
rendering moves with its slot's frame."""
import pytest
import torch

from slots import SpatialBroadcastDecoder
from slots.frames import SlotFrames, centred_grid, frames_from_attention, relative_grid
from tests.test_slots import tiny_model


def _one_hot_attention(height: int, width: int, row: int, col: int) -> torch.Tensor:
    attention = torch.zeros(1, 1, height * width)
    attention[0, 0, row * width + col] = 1.0
    return attention


def test_frame_of_attention_on_one_pixel_is_that_pixel_with_the_smallest_scale():
    frames = frames_from_attention(_one_hot_attention(8, 4, row=5, col=1), (8, 4), min_scale=0.05)
    # pixel centres: x = (1 + 0.5) / 4 * 2 - 1 = -0.25, y = (5 + 0.5) / 8 * 2 - 1 = 0.375
    torch.testing.assert_close(frames.positions, torch.tensor([[[-0.25, 0.375]]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(frames.scales, torch.full((1, 1, 2), 0.05))


def test_uniform_attention_is_centred_with_the_grid_standard_deviation():
    height, width = 6, 10
    frames = frames_from_attention(torch.full((2, 3, height * width), 0.2), (height, width))
    torch.testing.assert_close(frames.positions, torch.zeros(2, 3, 2), atol=1e-6, rtol=0)
    # n evenly spaced pixel centres on [-1, 1] have variance (1 - 1 / n^2) / 3
    expected = torch.tensor([((1 - 1 / width**2) / 3) ** 0.5, ((1 - 1 / height**2) / 3) ** 0.5])
    torch.testing.assert_close(frames.scales, expected.expand(2, 3, 2), atol=1e-5, rtol=0)


def test_frames_follow_a_shifted_attention_map():
    attention = torch.zeros(1, 2, 16, 16)
    attention[0, 0, 3:7, 2:5] = 1.0
    attention[0, 1] = 1.0 - attention[0, 0]
    shifted = attention.roll(shifts=(4, 6), dims=(2, 3))  # the first slot's blob moves 6 right, 4 down
    before = frames_from_attention(attention.flatten(2), (16, 16))
    after = frames_from_attention(shifted.flatten(2), (16, 16))
    torch.testing.assert_close(after.positions[0, 0] - before.positions[0, 0], torch.tensor([6 / 8, 4 / 8]))
    torch.testing.assert_close(after.scales[0, 0], before.scales[0, 0])


def test_relative_grid_is_zero_at_the_slot_position_and_scaled_by_its_size():
    frames = SlotFrames(torch.tensor([[[0.125, -0.375]]]), torch.tensor([[[0.25, 0.5]]]))
    grid = relative_grid(frames, 8, 8, scale_factor=2.0)
    absolute = centred_grid(8, 8)
    torch.testing.assert_close(grid[0, 0], (absolute - torch.tensor([0.125, -0.375])) / torch.tensor([0.5, 1.0]))
    assert grid[0, 0, 2, 4].abs().max() == 0  # pixel (row 2, col 4) has centre (0.125, -0.375)


def test_frames_reject_attention_that_does_not_fit_the_grid():
    with pytest.raises(ValueError, match="attention over 30 positions does not fit a 4x8 grid"):
        frames_from_attention(torch.rand(1, 2, 30), (4, 8))


def test_relative_decoder_output_moves_with_the_slot_frame():
    """Translation equivariance: shifting a frame by whole pixels shifts the rendering, away from the
    border where zero padding sees the difference."""
    torch.manual_seed(0)
    decoder = SpatialBroadcastDecoder(slot_dim=6, resolution=(20, 20), channels=8, num_layers=3, kernel_size=3,
                                      relative_positions=True)
    slots = torch.randn(1, 2, 6)
    positions = torch.tensor([[[-0.2, 0.1], [0.3, -0.3]]])
    scales = torch.tensor([[[0.2, 0.3], [0.1, 0.15]]])
    shift = torch.tensor([3 * 2 / 20, 2 * 2 / 20])  # 3 pixels right, 2 down
    output = decoder(slots, SlotFrames(positions, scales))
    moved = decoder(slots, SlotFrames(positions + shift, scales))
    margin = 3  # the receptive field radius of three 3x3 layers
    inner = (slice(None), slice(None), slice(None), slice(margin + 2, 20 - margin), slice(margin + 3, 20 - margin))
    torch.testing.assert_close(moved[inner], output.roll(shifts=(2, 3), dims=(3, 4))[inner], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pass `frames`"):
        decoder(slots)


@pytest.mark.parametrize("slot_frames", ["translation", "translation_scale", "translation_isotropic"])
def test_autoencoder_with_frames_keeps_slot_count_and_slot_order_equivariance(slot_frames):
    model = tiny_model(slot_frames=slot_frames).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    initial = model.slot_init(2, 4)
    permutation = torch.tensor([2, 0, 3, 1])
    features = model.encoder(images)
    slots, attention = model.slot_attention(features, initial)
    slots_p, attention_p = model.slot_attention(features, initial[:, permutation])
    frames, frames_p = model.frames(attention, (16, 16)), model.frames(attention_p, (16, 16))
    torch.testing.assert_close(frames_p.positions, frames.positions[:, permutation], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.decoder(slots_p, frames_p), model.decoder(slots, frames)[:, permutation],
                               atol=1e-5, rtol=1e-5)
    output = model(images, num_slots=7)
    assert output.masks.shape == (2, 7, 16, 16) and output.frames.positions.shape == (2, 7, 2)
    if slot_frames == "translation":
        assert torch.all(output.frames.scales == 1)


def test_isotropic_frames_keep_the_position_and_take_the_geometric_mean_of_the_scales():
    """A 2x8-pixel bar: the anisotropic frame has scales (sx, sy); the isotropic one sqrt(sx * sy) on both axes,
    so the bar's aspect stays in the slot's own frame instead of its scales."""
    attention = torch.zeros(1, 2, 16, 16)
    attention[0, 0, 4:6, 3:11] = 1.0
    attention[0, 1] = 1.0 - attention[0, 0]
    attention = attention.flatten(2)
    anisotropic = tiny_model(slot_frames="translation_scale").attention_frames(attention, (16, 16))
    isotropic = tiny_model(slot_frames="translation_isotropic").attention_frames(attention, (16, 16))
    torch.testing.assert_close(isotropic.positions, anisotropic.positions)
    sx, sy = anisotropic.scales[0, 0]
    assert sx > 3 * sy  # the bar is wide and flat
    torch.testing.assert_close(isotropic.scales[0, 0], (sx * sy).sqrt().expand(2))
    assert torch.all(isotropic.scales[..., 0] == isotropic.scales[..., 1])


def test_autoencoder_rejects_an_unknown_frame_kind():
    with pytest.raises(ValueError, match="slot_frames must be one of"):
        tiny_model(slot_frames="rotation")


def _invariant_attention(**kwargs):
    from slots.frames import InvariantSlotAttention

    torch.manual_seed(0)
    return InvariantSlotAttention(input_dim=8, slot_dim=12, mlp_hidden_dim=16, **kwargs)


@pytest.mark.parametrize("key_encoding, scale_invariant", [("mlp", True), ("quadratic", True), ("quadratic", False)])
def test_invariant_attention_is_equivariant_to_slot_order(key_encoding, scale_invariant):
    attention = _invariant_attention(key_encoding=key_encoding, scale_invariant=scale_invariant).eval()
    inputs, slots = torch.randn(2, 6 * 5, 8), torch.randn(2, 4, 12)
    permutation = torch.tensor([3, 1, 0, 2])
    out, attn = attention(inputs, slots, 3, grid_size=(6, 5))
    out_p, attn_p = attention(inputs, slots[:, permutation], 3, grid_size=(6, 5))
    torch.testing.assert_close(out_p, out[:, permutation], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn_p, attn[:, permutation], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, 30))


@pytest.mark.parametrize("key_encoding", ["mlp", "quadratic"])
def test_invariant_attention_slots_depend_on_where_the_features_are(key_encoding):
    """Unlike plain Slot Attention (a set function of its inputs), keys carry each slot's relative grid:
    moving the features to other places changes the result."""
    attention = _invariant_attention(key_encoding=key_encoding).eval()
    inputs, slots = torch.randn(1, 16, 8), torch.randn(1, 3, 12)
    out, _ = attention(inputs, slots, 2, grid_size=(4, 4))
    out_moved, _ = attention(inputs[:, torch.randperm(16)], slots, 2, grid_size=(4, 4))
    assert (out - out_moved).abs().max() > 1e-3


@pytest.mark.parametrize("key_encoding", ["mlp", "quadratic"])
def test_invariant_attention_implicit_gradient_keeps_the_forward_value(key_encoding):
    implicit = _invariant_attention(implicit_grad=True, key_encoding=key_encoding).train()
    explicit = _invariant_attention(implicit_grad=False, key_encoding=key_encoding).train()
    inputs, slots = torch.randn(2, 9, 8), torch.randn(2, 3, 12)
    torch.testing.assert_close(implicit(inputs, slots, 3, grid_size=(3, 3))[0],
                               explicit(inputs, slots, 3, grid_size=(3, 3))[0])


def test_invariant_attention_needs_a_grid_that_fits_the_inputs():
    with pytest.raises(ValueError, match="needs the feature grid size: 10 inputs, got grid_size=\\(3, 3\\)"):
        _invariant_attention()(torch.randn(1, 10, 8), torch.randn(1, 2, 12), grid_size=(3, 3))


@pytest.mark.parametrize("scale_invariant", [True, False])
def test_quadratic_position_bias_is_the_hand_computed_polynomial_of_the_relative_grid(scale_invariant):
    attention = _invariant_attention(key_encoding="quadratic", scale_invariant=scale_invariant)
    with torch.no_grad():
        attention.position_bias.weight.zero_()
        attention.position_bias.bias.copy_(torch.tensor([0.5, -1.0, -2.0, 0.25]))
    frames = SlotFrames(torch.tensor([[[0.0, 0.0], [0.5, -0.5]]]), torch.tensor([[[0.5, 0.5], [0.25, 1.0]]]))
    keys = torch.zeros(1, 4, 12)  # no content term: the logits are the position bias alone
    logits = attention.logits(torch.randn(1, 2, 12), keys, frames, (2, 2))
    grid = centred_grid(2, 2).reshape(4, 2)  # pixel centres at +-0.5
    for slot in range(2):
        # scale-invariant keys measure offsets in units of the slot's spread, translation-only keys in image units
        rel = (grid - frames.positions[0, slot]) / (frames.scales[0, slot] if scale_invariant else 1.0)
        expected = 0.5 * rel[:, 0] - rel[:, 1] - 2 * rel[:, 0] ** 2 + 0.25 * rel[:, 1] ** 2
        torch.testing.assert_close(logits[0, slot], expected)


def test_random_initial_positions_come_from_the_generator():
    attention = _invariant_attention(key_encoding="quadratic", random_positions=True).eval()
    inputs, slots = torch.randn(1, 16, 8), torch.randn(1, 3, 12)
    run = lambda seed: attention(inputs, slots, 2, grid_size=(4, 4), generator=torch.Generator().manual_seed(seed))[0]
    torch.testing.assert_close(run(1), run(1))
    assert (run(1) - run(2)).abs().max() > 1e-4
    frames = attention.initial_frames(torch.zeros(500, 2, 12), torch.Generator().manual_seed(0))
    assert frames.positions.min() >= -1 and frames.positions.max() <= 1 and frames.positions.std() > 0.5


@pytest.mark.parametrize("invariant_attention", ["mlp", "quadratic", "quadratic_translation"])
def test_autoencoder_with_invariant_attention_changes_slot_count_at_test_time(invariant_attention):
    model = tiny_model(slot_frames="translation_scale", invariant_attention=invariant_attention).eval()
    output = model(torch.rand(2, 3, 16, 16) * 2 - 1, num_slots=6, num_iterations=2)
    assert output.masks.shape == (2, 6, 16, 16)
    torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(2, 16, 16))
    with pytest.raises(ValueError, match="invariant_attention must be one of"):
        tiny_model(invariant_attention="yes")


@pytest.mark.parametrize("task, option, message", [
    ("set_prediction", "model.encoder_strides=[1,2,1,1]", "model.encoder_strides=.* not 'set_prediction'"),
    ("vae", "model.slot_frames=translation", "model.slot_frames='translation' is only supported by task"),
    ("dinosaur", "model.colour_values=true", "model.colour_values=True is only supported by task discovery"),
    ("set_prediction", "model.invariant_attention=quadratic", "model.invariant_attention='quadratic'"),
    ("vae", "model.colour_values=true",
     "model.colour_values=True is only supported by task discovery / weak_slots, not 'vae'"),
    ("dinosaur", "model.mask_prior=attention", "model.mask_prior='attention' is only supported by task discovery"),
])
def test_model_options_a_task_would_ignore_are_refused(task, option, message):
    from training.config import ConfigError, build_config, parse_override

    with pytest.raises(ConfigError, match=message):
        build_config([{"task": task}, parse_override(option)])


def test_colour_values_reach_the_slots_but_not_the_attention():
    """Colour is added to the values only: the attention (how slots bind) is unchanged at equal weights."""
    torch.manual_seed(0)
    plain = tiny_model().eval()
    torch.manual_seed(0)
    coloured = tiny_model(colour_values=True).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    generator = lambda: torch.Generator().manual_seed(3)
    features = plain.encoder(images)
    initial = plain.slot_init(2, 4, generator())
    slots, attention = plain.slot_attention(features, initial, 1)
    slots_c, attention_c = coloured.slot_attention(features, initial, 1, extra_values=coloured.pixel_values(images))
    torch.testing.assert_close(attention_c, attention)
    assert (slots_c - slots).abs().max() > 1e-3
    assert coloured.pixel_values(images).shape == (2, 16 * 16, 16)


def test_colour_values_also_reach_invariant_attention():
    model = tiny_model(slot_frames="translation_scale", invariant_attention="quadratic", colour_values=True).eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with_colour = model(images, generator=torch.Generator().manual_seed(0)).slots
    model.colour_values = None
    without = model(images, generator=torch.Generator().manual_seed(0)).slots
    assert (with_colour - without).abs().max() > 1e-3
