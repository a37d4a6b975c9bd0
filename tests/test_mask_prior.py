"""The attention mask prior (`mask_prior="attention"`): the decoder's alpha logits are added to the log of
Slot Attention's attention before the softmax over slots."""
import pytest
import torch
from einops import rearrange

from slots.model import composite, log_attention_map
from tests.test_slots import tiny_model


def _flatten_decoder_alpha(model) -> None:
    """Zero the decoder's alpha channel, so the masks are whatever the prior says."""
    final = model.decoder.convs[-1]
    with torch.no_grad():
        final.weight[3].zero_()
        final.bias[3].zero_()


def test_with_a_flat_decoder_alpha_the_masks_are_the_attention():
    model = tiny_model(mask_prior="attention").eval()
    _flatten_decoder_alpha(model)
    output = model(torch.rand(2, 3, 16, 16) * 2 - 1, generator=torch.Generator().manual_seed(0))
    expected = rearrange(output.attention, "b k (h w) -> b k h w", h=16)
    torch.testing.assert_close(output.masks, expected, atol=1e-6, rtol=1e-5)
    # without the prior the same flat alpha gives uniform masks
    model.alpha_prior = None
    uniform = model(torch.rand(2, 3, 16, 16) * 2 - 1).masks
    torch.testing.assert_close(uniform, torch.full_like(uniform, 0.25))


def test_the_prior_multiplies_each_slot_mask_by_its_attention():
    """softmax(alpha + log a) = a * exp(alpha) / sum_j a_j exp(alpha_j), checked against that formula."""
    decoded = torch.randn(2, 3, 4, 5, 5)
    attention = torch.rand(2, 3, 25).softmax(dim=1)
    _, masks, _ = composite(decoded, log_attention_map(attention, (5, 5), (5, 5)))
    weights = rearrange(attention, "b k (h w) -> b k h w", h=5) * decoded[:, :, 3].exp()
    torch.testing.assert_close(masks, weights / weights.sum(dim=1, keepdim=True), atol=1e-6, rtol=1e-5)


def test_a_coarser_feature_grid_is_upsampled_to_the_image():
    # slot 0 holds the left half of a 4x4 feature grid, slot 1 the right half
    attention = torch.full((1, 2, 4, 4), 1e-4)
    attention[:, 0, :, :2], attention[:, 1, :, 2:] = 1 - 1e-4, 1 - 1e-4
    prior = log_attention_map(rearrange(attention, "b k h w -> b k (h w)"), (4, 4), (8, 8))
    _, masks, _ = composite(torch.zeros(1, 2, 4, 8, 8), prior)
    assert masks.shape == (1, 2, 8, 8)
    # interpolating the log (not the attention) keeps the seam sharp: at column 3 the log prior is
    # 0.75 log(1 - 1e-4) + 0.25 log(1e-4) for slot 0 against the reverse for slot 1, a mask of 0.99
    torch.testing.assert_close(masks[0, 0, :, :4], torch.ones(8, 4), atol=0.011, rtol=0)
    torch.testing.assert_close(masks[0, 1, :, 4:], torch.ones(8, 4), atol=0.011, rtol=0)
    assert masks[0, 0, 0, 2] > 0.999 and masks[0, 0, 0, 3] < 0.999
    model = tiny_model(mask_prior="attention", encoder_strides=[2, 1]).eval()
    output = model(torch.rand(2, 3, 16, 16) * 2 - 1, num_slots=5)
    assert output.attention.shape == (2, 5, 8 * 8) and output.masks.shape == (2, 5, 16, 16)
    torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(2, 16, 16))


def test_mask_prior_keeps_slot_order_equivariance_and_any_slot_count():
    model = tiny_model(mask_prior="attention", slot_frames="translation_scale").eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    initial = model.slot_init(2, 4)
    permutation = torch.tensor([2, 0, 3, 1])
    features = model.encoder(images)
    output = model.decode_slots(*model.slot_attention(features, initial), (16, 16))
    permuted = model.decode_slots(*model.slot_attention(features, initial[:, permutation]), (16, 16))
    torch.testing.assert_close(permuted.masks, output.masks[:, permutation], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(permuted.reconstruction, output.reconstruction, atol=1e-5, rtol=1e-5)
    for num_slots in (2, 7):
        masks = model(images, num_slots=num_slots).masks
        assert masks.shape == (2, num_slots, 16, 16)
        torch.testing.assert_close(masks.sum(dim=1), torch.ones(2, 16, 16))


def test_reconstruction_error_reaches_the_encoder_through_the_masks():
    """With the prior, the attention gets a gradient from the masks even when the slots get none."""
    model = tiny_model(mask_prior="attention").train()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    features = model.encoder(images)
    slots, attention = model.slot_attention(features, model.slot_init(2, 4))
    output = model.decode_slots(slots.detach(), attention, (16, 16))
    torch.nn.functional.mse_loss(output.reconstruction, images).backward()
    assert model.encoder.convs[0].weight.grad.abs().sum() > 0


def test_unknown_mask_prior_is_refused():
    with pytest.raises(ValueError, match="mask_prior must be one of \\('none', 'attention'\\), got 'decoder'"):
        tiny_model(mask_prior="decoder")
