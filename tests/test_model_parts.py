"""The autoencoder built from parts: the one builder of model options, swapped-in parts, duplicate merging as an
evaluation-time wrapper, the protocol every slot model follows and the one slot-count check."""
import inspect

import pytest
import torch
from torch import nn

from slots import (BackboneEncoder, CNNEncoder, DinosaurAutoencoder, GaussianSlotInit, MergeDuplicates,
                   ModelOptionError, SlotAttention, SlotAutoencoder, SlotModel, SlotSetPredictor,
                   SpatialBroadcastDecoder, TimmBackbone, autoencoder_parts, build_autoencoder)
from slots.build import INVARIANT_ATTENTION, MASK_PRIORS, SLOT_FRAMES, with_duplicate_merging
from slots.duplicates import merge_duplicate_masks
from tests.test_slots import TINY_OPTIONS, tiny_model
from weak_supervision.slot_vae import SlotVAE

#: the default run's discovery options (configs/default.yaml)
DISCOVERY_OPTIONS = dict(mask_prior="attention", colour_values=True, slot_frames="translation_scale",
                         invariant_attention="quadratic_translation")


def images(batch: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the one builder ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, allowed", [
    ("slot_frames", "rotation", tuple(SLOT_FRAMES)),
    ("invariant_attention", "yes", tuple(INVARIANT_ATTENTION)),
    ("mask_prior", "decoder", tuple(MASK_PRIORS)),
])
def test_the_builder_refuses_an_unknown_option_value_in_one_line_naming_it(option, value, allowed):
    with pytest.raises(ModelOptionError) as caught:
        tiny_model(**{option: value})
    message = str(caught.value)
    assert message == f"{option} must be one of {allowed}, got {value!r}" and "\n" not in message


def test_the_builder_refuses_a_merge_threshold_outside_the_unit_interval():
    with pytest.raises(ModelOptionError, match=r"^merge_duplicates must be a cosine threshold in \(0, 1\) or None, "
                                               r"got 1.5$"):
        tiny_model(merge_duplicates=1.5)


def test_a_run_config_with_an_unknown_option_value_is_a_config_error_naming_the_key():
    from training.build import build_model
    from training.config import ConfigError, build_config, parse_override

    config = build_config([{"task": "discovery"}, parse_override("model.slot_frames=rotation")])
    with pytest.raises(ConfigError, match=r"^model.slot_frames must be one of \('none', 'translation', "):
        build_model(config)


def test_the_builder_draws_parts_in_the_order_their_weights_always_had():
    """A seeded build and the parts built by hand in the documented order give the same weights."""
    torch.manual_seed(3)
    built = build_autoencoder(**TINY_OPTIONS, colour_values=True)
    torch.manual_seed(3)
    encoder = CNNEncoder(8, 2, 3)
    slot_init = GaussianSlotInit(16, num_slots=4)
    attention = SlotAttention(8, 16, 32)
    decoder = SpatialBroadcastDecoder(16, (16, 16), 8, 2, 3)
    colour = nn.Linear(3, 16)
    by_hand = [*encoder.parameters(), *slot_init.parameters(), *attention.parameters(), *decoder.parameters(),
               *colour.parameters()]
    assert len(by_hand) == len(list(built.parameters()))
    for ours, theirs in zip(built.parameters(), by_hand):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_checkpoint_keys_keep_their_names():
    """State dict keys are what checkpoints written before the parts refactor hold."""
    keys = tiny_model(**DISCOVERY_OPTIONS, merge_duplicates=0.5).state_dict().keys()
    assert list(keys)[0] == "mask_prior_weight"
    prefixes = {key.split(".")[0] for key in keys}
    assert prefixes == {"mask_prior_weight", "encoder", "slot_init", "slot_attention", "decoder", "colour_values"}
    assert {"slot_init.mu", "slot_init.log_sigma", "colour_values.weight", "colour_values.bias",
            "slot_attention.position_bias.weight"} <= set(keys)


# --- parts passed in -----------------------------------------------------------------------------------------

class FixedSlots(nn.Module):
    """A slot initialiser that starts every image from the same learned queries (one per slot)."""

    def __init__(self, num_slots: int, slot_dim: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_slots, slot_dim))
        self.num_slots, self.slot_dim = num_slots, slot_dim

    def forward(self, batch_size: int, num_slots: int | None = None, generator=None) -> torch.Tensor:
        return self.queries.expand(batch_size, -1, -1)


class FlatDecoder(nn.Module):
    """Every slot paints its first three entries everywhere with a flat alpha; records what it was given."""

    out_channels = 4

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size, self.seen = size, []

    def forward(self, slots: torch.Tensor, frames=None) -> torch.Tensor:
        self.seen.append(slots)
        rgb = slots[..., :3, None, None].expand(-1, -1, -1, self.size, self.size)
        return torch.cat([rgb, torch.zeros_like(rgb[:, :, :1])], dim=2)


def test_a_swapped_in_initialiser_and_decoder_are_the_ones_used():
    torch.manual_seed(0)
    slot_init, decoder = FixedSlots(3, 16), FlatDecoder(16)
    model = SlotAutoencoder(CNNEncoder(8, 2, 3), slot_init, SlotAttention(8, 16, 32), decoder, (16, 16)).eval()
    assert model.num_slots == 3  # the training slot count is the initialiser's
    output = model(images())
    assert output.slots.shape == (2, 3, 16) and decoder.seen[-1] is output.slots
    expected, _ = model.slot_attention(model.encoder(images()), slot_init.queries.expand(2, -1, -1), 3)
    torch.testing.assert_close(output.slots, expected)
    torch.testing.assert_close(output.masks, torch.full_like(output.masks, 1 / 3))  # flat alpha: equal shares
    torch.testing.assert_close(output.reconstruction, output.slots[..., :3].mean(dim=1)[..., None, None]
                               .expand(-1, -1, 16, 16))
    output.reconstruction.sum().backward()
    assert slot_init.queries.grad.abs().sum() > 0


def test_optional_parts_are_parts_or_none():
    plain, full = tiny_model(), tiny_model(**DISCOVERY_OPTIONS)
    assert plain.alpha_prior is None and plain.colour_values is None and plain.slot_frames is None
    assert plain.mask_prior == "none" and full.mask_prior == "attention"
    assert full.alpha_prior is not None and full.colour_values is not None and full.slot_frames is not None
    assert not hasattr(plain, "mask_prior_weight") and float(full.mask_prior_weight) == 1.0


def test_a_decoder_rendering_in_frames_needs_the_frames_part():
    parts = autoencoder_parts(**TINY_OPTIONS, slot_frames="translation_scale")
    with pytest.raises(ValueError, match="renders in slot frames exactly when the model has slot_frames"):
        SlotAutoencoder(**{**parts, "slot_frames": None})


# --- duplicate merging wraps the model ------------------------------------------------------------------------

def test_merge_duplicates_merges_in_evaluation_is_the_identity_in_training_and_keeps_the_state_dict():
    torch.manual_seed(0)
    model = tiny_model(mask_prior="attention")
    keys, names = list(model.state_dict()), [name for name, _ in model.named_parameters()]
    plain_training = model.train()(images(), num_slots=6, generator=generator())
    model.eval()
    with torch.no_grad():
        plain = model(images(), num_slots=6, generator=generator())
    merger = MergeDuplicates(model, 0.5)
    assert MergeDuplicates.attached(model) is merger and isinstance(model, SlotAutoencoder)
    assert list(model.state_dict()) == keys and [name for name, _ in model.named_parameters()] == names
    with torch.no_grad():
        merged = model(images(), num_slots=6, generator=generator())
    torch.testing.assert_close(merged.unmerged_masks, plain.masks, rtol=0, atol=0)
    torch.testing.assert_close(merged.masks, merge_duplicate_masks(plain.masks, 0.5))
    torch.testing.assert_close(merged.reconstruction, (merged.slot_rgb * merged.masks[:, :, None]).sum(dim=1))
    assert not torch.equal(merged.masks, plain.masks)  # an untrained model has duplicates to merge
    model.train()
    training = model(images(), num_slots=6, generator=generator())
    for field in ("masks", "reconstruction", "slots"):
        torch.testing.assert_close(getattr(training, field), getattr(plain_training, field), rtol=0, atol=0)
    assert training.unmerged_masks is None and training.masks.requires_grad
    merger.remove()
    assert MergeDuplicates.attached(model) is None
    with torch.no_grad():
        assert model.eval()(images(), num_slots=6, generator=generator()).unmerged_masks is None


def test_the_builder_wraps_only_when_asked_and_a_wrapped_checkpoint_loads_into_a_plain_model():
    assert MergeDuplicates.attached(tiny_model()) is None
    wrapped = tiny_model(**DISCOVERY_OPTIONS, merge_duplicates=0.5)
    assert MergeDuplicates.attached(wrapped).threshold == 0.5
    plain = tiny_model(**DISCOVERY_OPTIONS)
    plain.load_state_dict(wrapped.state_dict())
    with torch.no_grad():
        ours = wrapped.eval()(images(), generator=generator())
        theirs = plain.eval()(images(), generator=generator())
    torch.testing.assert_close(ours.unmerged_masks, theirs.masks, rtol=0, atol=0)


# --- one protocol, one slot-count check -----------------------------------------------------------------------

def _dinosaur() -> DinosaurAutoencoder:
    backbone = TimmBackbone("test_vit.r160_in1k", image_size=64)
    return DinosaurAutoencoder(BackboneEncoder(backbone, 16), (16, 16), num_slots=4, slot_dim=16, mlp_hidden_dim=32,
                               decoder_hidden_dim=32, decoder_layers=2)


SLOT_MODELS = {
    "autoencoder": lambda: tiny_model(**DISCOVERY_OPTIONS, merge_duplicates=0.5),
    "dinosaur": _dinosaur,
    "set_predictor": lambda: SlotSetPredictor(2, (2, 2), num_slots=4, slot_dim=16, mlp_hidden_dim=32,
                                              encoder_channels=8, encoder_layers=2, head_hidden_dim=16),
    "set_predictor_on_autoencoder": lambda: SlotSetPredictor(2, (2, 2), num_slots=4, head_hidden_dim=16,
                                                             autoencoder=tiny_model(), input_skip=False),
    "slot_vae": lambda: with_duplicate_merging(SlotVAE(latent_dim=6, **TINY_OPTIONS, **DISCOVERY_OPTIONS), 0.5),
}


@pytest.mark.parametrize("name", list(SLOT_MODELS))
def test_every_slot_model_follows_the_protocol(name):
    torch.manual_seed(0)
    model = SLOT_MODELS[name]().eval()
    assert isinstance(model, SlotModel) and model.num_slots == 4 and model.num_iterations == 3
    parameters = list(inspect.signature(model.forward).parameters)
    assert parameters[:5] == ["images", "num_slots", "num_iterations", "generator", "initial_slots"]
    with torch.no_grad():
        first = model(images(), num_slots=3, num_iterations=2, generator=generator(1))
        again = model(images(), 3, 2, generator(1))
        start = torch.randn(2, 5, 16)  # every model here has 16-dimensional slot states
        restarted = model(images(), initial_slots=start)
    assert first.slots.shape[:2] == (2, 3) and restarted.slots.shape[:2] == (2, 5)
    torch.testing.assert_close(again.slots, first.slots, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(SLOT_MODELS))
def test_a_slot_count_below_one_is_one_clear_error_at_the_call(name):
    torch.manual_seed(0)
    model = SLOT_MODELS[name]()
    with pytest.raises(ValueError) as caught:
        model(images(), num_slots=0)
    assert str(caught.value) == "num_slots must be >= 1, got 0"


@pytest.mark.parametrize("build", [
    lambda: tiny_model(num_slots=0),
    lambda: SlotVAE(latent_dim=6, **{**TINY_OPTIONS, "num_slots": -1}),
    lambda: SlotSetPredictor(2, (2, 2), num_slots=0),
    lambda: GaussianSlotInit(8, num_slots=0),
], ids=["autoencoder", "slot_vae", "set_predictor", "initialiser"])
def test_a_slot_count_below_one_is_refused_at_construction_by_the_initialiser(build):
    with pytest.raises(ValueError, match=r"^num_slots must be >= 1, got -?\d+$"):
        build()
