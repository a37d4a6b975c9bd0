"""Per-slot orientation search (slots/orientation_search.py): the chosen angle on a hand-made decoder, its
change with the input's rotation, refinement, slot permutation equivariance and a training step with it on."""
import math

import pytest
import torch
from torch import nn

from orientation import planar_angles, rotate_images
from slots import build_autoencoder
from slots.frames import SlotFrames, relative_grid
from slots.orientation_search import ScoredPixels, SlotOrientationSearch, ownership_maps, slot_scores
from slots.windows import PixelWindows
from training.config import ConfigError, build_config

SIZE = 32


class LShapeDecoder(nn.Module):
    """Draws every slot as a white L (no rotational symmetry) or a square, in the slot's frame, whatever its
    latent; soft edges, so the rendering is differentiable in the frame's angle."""

    relative_positions = True
    out_channels = 5

    def __init__(self, shape: str = "L", sharpness: float = 12.0) -> None:
        super().__init__()
        self.shape, self.sharpness = shape, sharpness

    def inside(self, frames: SlotFrames, window: PixelWindows | None = None) -> torch.Tensor:
        grid = relative_grid(frames, SIZE, SIZE, window=window)
        x, y = grid[..., 0], grid[..., 1]
        box = lambda lo_x, hi_x, lo_y, hi_y: (torch.sigmoid(self.sharpness * (x - lo_x))  # noqa: E731
                                               * torch.sigmoid(self.sharpness * (hi_x - x))
                                               * torch.sigmoid(self.sharpness * (y - lo_y))
                                               * torch.sigmoid(self.sharpness * (hi_y - y)))
        if self.shape == "square":
            return box(-0.8, 0.8, -0.8, 0.8)
        return torch.maximum(box(-0.9, -0.2, -1.0, 1.0), box(-0.9, 0.9, 0.3, 1.0))  # a bar and a foot

    def forward(self, slots: torch.Tensor, frames: SlotFrames, window: PixelWindows | None = None) -> torch.Tensor:
        inside = self.inside(frames, window)  # [B, K, H, W] (or [B, K, S, S])
        rgb = (2 * inside - 1).unsqueeze(2).expand(-1, -1, 3, -1, -1)
        logit = 10 * (inside - 0.5)
        return torch.cat([rgb, logit.unsqueeze(2), logit.unsqueeze(2)], dim=2)


def scene(decoder: LShapeDecoder, angle: float, position=(0.0, 0.0)) -> tuple[torch.Tensor, torch.Tensor, SlotFrames]:
    """(image [1, 3, H, W], ownership [1, 2, H, W], frames without angles): one shape drawn at `angle` (slot
    0) on black (slot 1)."""
    frames = SlotFrames(torch.tensor([[position, (0.0, 0.0)]]), torch.full((1, 2, 2), 0.3))
    turned = SlotFrames(frames.positions, frames.scales, torch.tensor([[angle, 0.0]]))
    inside = decoder.inside(turned)[:, :1]
    image = (2 * inside - 1).expand(-1, 3, -1, -1).clone()
    return image, torch.cat([inside, 1 - inside], dim=1), frames


def search_angle(decoder, search, image, ownership, frames) -> torch.Tensor:
    slots = torch.zeros(1, 2, 4)
    render = lambda angles, window: decoder(slots, SlotFrames(frames.positions, frames.scales, angles),  # noqa: E731
                                            window)
    return search(render, image, ownership, frames.positions)[0, 0]


@pytest.mark.parametrize("window", [0, 14])
@pytest.mark.parametrize("index", [0, 1, 5, 9, 15])
def test_the_search_picks_the_angle_the_object_was_drawn_at(index, window):
    decoder, search = LShapeDecoder(), SlotOrientationSearch(16, window=window)
    angle = float(planar_angles(16)[index])
    image, ownership, frames = scene(decoder, angle, position=(0.2, -0.1))
    assert search_angle(decoder, search, image, ownership, frames).item() == pytest.approx(angle)


@pytest.mark.parametrize("shape, period", [("L", 2 * math.pi), ("square", math.pi / 2)])
@pytest.mark.parametrize("turn", [1, 4, 7, 12])
def test_rotating_the_input_rotates_the_chosen_angle_by_as_much_up_to_symmetry(shape, period, turn):
    """The object drawn upright, then the whole image turned by one of the 16 angles (resampled, so not the
    decoder's own rendering): the chosen angle moves by the same amount, modulo the shape's symmetry."""
    decoder, search = LShapeDecoder(shape), SlotOrientationSearch(16)
    image, ownership, frames = scene(decoder, 0.0)
    delta = float(planar_angles(16)[turn])
    turned_image, turned_ownership = rotate_images(image, delta), rotate_images(ownership, delta)
    turned_ownership[:, 1] = 1 - turned_ownership[:, 0]  # the corners that came in are background
    turned_image = torch.where(turned_ownership[:, :1] > 0, turned_image, torch.full_like(turned_image, -1.0))
    before = search_angle(decoder, search, image, ownership, frames).item()
    after = search_angle(decoder, search, turned_image, turned_ownership, frames).item()
    difference = (after - before - delta) % period
    assert min(difference, period - difference) < 1e-4


def test_refinement_moves_an_off_grid_angle_towards_the_truth():
    decoder = LShapeDecoder()
    truth = float(planar_angles(16)[3]) + 0.15  # between two of the 16 candidates
    image, ownership, frames = scene(decoder, truth)
    coarse = search_angle(decoder, SlotOrientationSearch(16), image, ownership, frames).item()
    refined = search_angle(decoder, SlotOrientationSearch(16, refine_steps=40, refine_lr=0.02), image, ownership,
                           frames).item()
    assert abs(refined - truth) < 0.5 * abs(coarse - truth)


def test_scores_prefer_the_rendering_that_draws_the_owned_pixels():
    decoder = LShapeDecoder()
    image, ownership, frames = scene(decoder, 0.0)
    upright = decoder(torch.zeros(1, 2, 4), SlotFrames(frames.positions, frames.scales, torch.zeros(1, 2)))
    turned = decoder(torch.zeros(1, 2, 4), SlotFrames(frames.positions, frames.scales, torch.full((1, 2), 1.0)))
    pixels = ScoredPixels.of(image, ownership)
    assert slot_scores(upright, pixels)[0, 0] < slot_scores(turned, pixels)[0, 0]


def test_ownership_maps_sum_to_one_over_slots_at_image_resolution():
    attention = torch.rand(2, 3, 16).softmax(dim=1)
    maps = ownership_maps(attention, (4, 4), (8, 8))
    assert maps.shape == (2, 3, 8, 8)
    torch.testing.assert_close(maps.sum(dim=1), torch.ones(2, 8, 8))


def small_model(**options) -> nn.Module:
    torch.manual_seed(0)
    return build_autoencoder((16, 16), num_slots=3, slot_dim=16, mlp_hidden_dim=16, encoder_channels=8,
                             encoder_layers=2, encoder_kernel=3, decoder_channels=8, decoder_layers=2,
                             decoder_kernel=3, slot_frames="translation_isotropic", orientation_search=8, **options)


def test_slot_permutation_equivariance_with_the_search_on():
    model = small_model().eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    initial = torch.randn(2, 3, 16)
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        out = model(images, initial_slots=initial)
        permuted = model(images, initial_slots=initial[:, order])
    torch.testing.assert_close(permuted.masks, out.masks[:, order], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(permuted.frames.angles, out.frames.angles[:, order])
    assert out.frames.angles.shape == (2, 3)
    assert set(out.frames.angles.unique().tolist()) <= set(planar_angles(8).tolist())


def test_a_training_step_with_the_search_reaches_the_decoder_through_the_chosen_rendering():
    model = small_model().train()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    output = model(images)
    assert not output.frames.angles.requires_grad
    (output.reconstruction - images).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.decoder.parameters())


@pytest.mark.parametrize("model, message", [
    ({"orientation_search": 16}, "orientation_search turns each slot's frame: set slot_frames"),
    ({"orientation_search": 1, "slot_frames": "translation"}, "at least 2 angles"),
    ({"orientation_refine_steps": 3}, "set orientation_search"),
    ({"orientation_window": 24}, "set orientation_search"),
    ({"orientation_search": 16, "orientation_window": -1, "slot_frames": "translation"}, "window must be >= 0"),
    ({"orientation_search": 16, "orientation_window": 24, "slot_frames": "translation", "broadcast_size": 8},
     "orientation_window renders .* at full resolution"),
])
def test_bad_orientation_search_options_are_one_line_errors(model, message):
    from training.build import build_model

    with pytest.raises(ConfigError, match=message):
        build_model(build_config([{"model": model}]))


def test_tasks_whose_models_do_not_search_refuse_the_option():
    with pytest.raises(ConfigError, match="model.orientation_search=16 is only supported by task discovery / "
                                          "weak_slots.*not 'vae'"):
        build_config([{"task": "vae", "model": {"orientation_search": 16}}])


# --- the slot VAE and the per-object weak objective with the search on ----------------------------------------

def search_slot_vae(**options):
    from weak_supervision.slot_vae import SlotVAE

    torch.manual_seed(0)
    return SlotVAE(latent_dim=6, outline_size=8, outline_input=True, resolution=(16, 16), num_slots=3, slot_dim=16,
                   mlp_hidden_dim=32, encoder_channels=8, encoder_layers=2, decoder_channels=8, decoder_layers=2,
                   mask_prior="attention", slot_frames="translation_isotropic", orientation_search=8, **options)


@pytest.mark.parametrize("method", ["ada_gvae", "slot_vae"])
def test_the_pair_objective_trains_with_the_search_and_renders_in_the_chosen_frames(method):
    from weak_supervision.slot_pairs import SlotPairSettings, slot_pair_loss

    model = search_slot_vae()
    frames = [torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1 for seed in (0, 1)]
    loss, logs = slot_pair_loss(model, *frames, SlotPairSettings(method=method, correspondence="hungarian",
                                                                 outline_weight=0.05), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and "outline" in logs
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    with torch.no_grad():
        output = model.eval()(frames[0])
    assert output.frames.angles.shape == (2, 3)
    assert set(output.frames.angles.unique().tolist()) <= set(planar_angles(8).tolist())


def test_the_search_turns_the_posteriors_outline_input_with_the_frame():
    """The posterior reads each slot's attention in its frame: turned by the chosen angle when there is one,
    so a different angle gives a different posterior, and the chosen angles are what forward rendered with."""
    model = search_slot_vae().eval()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        states, attention = model.infer_slots(images, generator=torch.Generator().manual_seed(0))
        angles = model.choose_angles(states, attention, images)
        upright = model.posterior(states, images, attention)[0]
        chosen = model.posterior(states, images, attention, angles)[0]
        turned = model.posterior(states, images, attention, angles + math.pi / 2)[0]
    assert not torch.allclose(chosen, turned)
    torch.testing.assert_close(chosen, model.posterior(states, images, attention, angles)[0])
    assert angles.abs().sum() == 0 or not torch.allclose(upright, chosen)


def test_canonical_masks_read_a_turned_object_upright():
    from weak_supervision.outline import canonical_masks

    decoder = LShapeDecoder()
    frames = SlotFrames(torch.tensor([[[0.1, -0.2]]]), torch.full((1, 1, 2), 0.3))
    angle = float(planar_angles(8)[3])
    drawn = lambda a: decoder.inside(SlotFrames(frames.positions, frames.scales, torch.tensor([[a]])))  # noqa: E731
    upright = canonical_masks(drawn(0.0), frames, 12, extent=1.5)
    read = canonical_masks(drawn(angle), SlotFrames(frames.positions, frames.scales, torch.tensor([[angle]])), 12,
                           extent=1.5)
    assert (read - upright).abs().mean() < 0.02 and upright.mean() > 0.2
    assert (canonical_masks(drawn(angle), frames, 12, extent=1.5) - upright).abs().mean() > 0.1


def test_the_angle_is_part_of_a_slots_representation():
    from scoring.per_object import code_names, slot_representations

    model = search_slot_vae().eval()
    with torch.no_grad():
        output = model(torch.rand(2, 3, 16, 16) * 2 - 1)
    representation = slot_representations(output)
    assert representation.shape == (2, 3, 6 + 4 + 2)
    torch.testing.assert_close(representation[..., -2], output.frames.angles.cos())
    torch.testing.assert_close(representation[..., -1], output.frames.angles.sin())
    assert code_names(6, 12)[-2:] == ["frame_angle_cos", "frame_angle_sin"]


# --- agreement of the chosen angles with the true orientations ---------------------------------------------

def test_angle_agreement_by_hand():
    """Squares (period pi/2) and hearts (2 pi): angle = offset - true orientation follows the object exactly;
    one heart off by a quarter turn is the one disagreement; uniform angles agree about as often as chance."""
    from scoring.slot_angles import angle_agreement

    true = torch.tensor([0.0, 0.3, 1.0, 2.0, 0.5, 1.5, 2.5, 4.0]).numpy()
    shapes = torch.tensor([0, 0, 0, 0, 2, 2, 2, 2]).numpy()
    angles = 0.7 - true
    angles[:4] += torch.tensor([0.0, 1.0, 2.0, 3.0]).numpy() * math.pi / 2  # square symmetry: still agreeing
    angles[7] += math.pi / 2
    scores = angle_agreement(angles, true, shapes, tolerance=0.1)
    assert scores["object_angle_agreement_square"] == 1.0
    assert scores["object_angle_agreement_heart"] == 0.75
    assert scores["object_angle_agreement"] == 7 / 8
    generator = torch.Generator().manual_seed(0)
    many = 4000
    uniform = angle_agreement((torch.rand(many, generator=generator) * 2 * math.pi).numpy(),
                              (torch.rand(many, generator=generator) * 2 * math.pi).numpy(),
                              torch.randint(0, 3, (many,), generator=generator).numpy(), tolerance=0.2)
    assert abs(uniform["object_angle_agreement"] - uniform["object_angle_chance"]) < 0.03


@pytest.mark.parametrize("window", [0, 16])
def test_the_search_follows_the_generators_orientation_on_a_hand_made_decoder(window):
    """Hearts of multi_dsprites drawn by the generator at several orientations, searched with a decoder that
    draws the generator's own upright heart: the chosen angles agree with the orientations (sign included)."""
    import numpy as np

    from data.shapes import silhouettes
    from scoring.slot_angles import angle_agreement

    class HeartDecoder(LShapeDecoder):
        def inside(self, frames, window=None):
            grid = relative_grid(frames, SIZE, SIZE, window=window)  # canonical (x, y) in units of 0.3 of the half image
            x, y = grid[..., 0] * 0.3 * SIZE / 2, grid[..., 1] * 0.3 * SIZE / 2
            drawn = silhouettes(np.array([2]), np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), np.full((1, 1, 1), 6.0),
                                np.zeros((1, 1, 1)), y.detach().numpy().reshape(1, -1, x.shape[-1]),
                                x.detach().numpy().reshape(1, -1, x.shape[-1]))
            return torch.from_numpy(drawn.astype(np.float32)).reshape(x.shape)

    decoder, search = HeartDecoder(), SlotOrientationSearch(16, window=window)
    frames = SlotFrames(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.3))
    centres = np.arange(SIZE) + 0.5 - SIZE / 2
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    orientations = np.arange(0, 40, 5) * 2 * math.pi / 40
    chosen = []
    for theta in orientations:
        inside = torch.from_numpy(silhouettes(np.array([2]), np.zeros((1, 1, 1)), np.zeros((1, 1, 1)),
                                              np.full((1, 1, 1), 6.0), np.full((1, 1, 1), theta), rows[None],
                                              cols[None]).astype(np.float32))[None]
        image = (2 * inside - 1).expand(-1, 3, -1, -1)
        chosen.append(search_angle(decoder, search, image, torch.cat([inside, 1 - inside], dim=1), frames).item())
    scores = angle_agreement(np.array(chosen), orientations, np.full(len(chosen), 2), tolerance=math.pi / 16)
    assert scores["object_angle_agreement"] == 1.0


# --- any per-slot score: the search's argmin, and the slot VAE's outline score ------------------------------

def test_best_picks_each_slots_nearest_candidate_of_a_hand_made_score():
    targets = torch.tensor([[0.1, 2.0, -1.0], [3.1, 4.5, 6.2]])  # radians; the 8 candidates are k * pi / 4
    chosen = SlotOrientationSearch(8).best(lambda angles: 1 - torch.cos(angles - targets), (2, 3),
                                           torch.device("cpu"))
    candidates = planar_angles(8)
    nearest = candidates[(1 - torch.cos(candidates.view(-1, 1, 1) - targets)).argmin(dim=0)]
    torch.testing.assert_close(chosen, nearest)
    assert chosen[0].tolist() == pytest.approx([0.0, 3 * math.pi / 4, 7 * math.pi / 4])


def test_the_outline_score_chooses_the_angle_whose_outline_the_head_draws_best():
    model = search_slot_vae(orientation_score="outline").eval()
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        states, attention = model.infer_slots(images, generator=torch.Generator().manual_seed(0))
        chosen = model.choose_angles(states, attention, images)
        frames = model.frames(attention, model.resolution)
        ownership = ownership_maps(attention, model.feature_grid(model.resolution), model.resolution)
        by_angle = torch.stack([model.outline_scores(states, images, attention, ownership,
                                                     SlotFrames(frames.positions, frames.scales,
                                                                angle.expand(2, 3)))
                                for angle in planar_angles(8)])
    torch.testing.assert_close(chosen, planar_angles(8)[by_angle.argmin(dim=0)])
    assert by_angle.std(dim=0).min() > 0  # the outline score does depend on the angle


def test_a_pair_step_with_the_outline_score_trains_every_parameter():
    from weak_supervision.slot_pairs import SlotPairSettings, slot_pair_loss

    model = search_slot_vae(orientation_score="outline")
    frames = [torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1 for seed in (0, 1)]
    loss, _ = slot_pair_loss(model, *frames, SlotPairSettings(correspondence="hungarian", outline_weight=0.05),
                             torch.Generator().manual_seed(0))
    loss.backward()
    assert [name for name, p in model.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("weak_slots, model, message", [
    ({"orientation_score": "pixels"}, {}, "orientation_score must be one of render, outline, got 'pixels'"),
    ({"orientation_score": "outline", "outline_weight": 0.05, "outline_input": True}, {},
     "needs model.orientation_search and weak_slots.outline_input"),
    ({"orientation_score": "outline"}, {"orientation_search": 8, "slot_frames": "translation"},
     "needs model.orientation_search and weak_slots.outline_input"),
    ({"orientation_score": "outline", "outline_weight": 0.05, "outline_input": True},
     {"orientation_search": 8, "slot_frames": "translation", "orientation_window": 32},
     "the window would be ignored: set model.orientation_window=0 \\(got 32\\)"),
])
def test_bad_orientation_scores_are_one_line_errors(weak_slots, model, message):
    with pytest.raises(ConfigError, match=message):
        build_config([{"task": "weak_slots", "weak_slots": weak_slots, "model": model}])
