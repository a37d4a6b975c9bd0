"""Per-slot pixel windows (slots/windows.py): crops against plain slicing, the decoder's window rendering against
its full rendering, and the windowed orientation search inside a model."""
import pytest
import torch

from slots import build_autoencoder
from slots.decoder import SpatialBroadcastDecoder
from slots.frames import SlotFrames
from slots.orientation_search import ScoredPixels, SlotOrientationSearch, ownership_maps, slot_scores
from slots.windows import PixelWindows


def windows(origins: list[list[tuple[int, int]]], size: int, image_size=(10, 12)) -> PixelWindows:
    return PixelWindows(torch.tensor(origins), size, image_size)


def test_crops_equal_slicing_inside_the_image_and_zeros_outside():
    maps = torch.arange(2 * 2 * 10 * 12, dtype=torch.float32).reshape(2, 2, 10, 12) + 1
    images = torch.rand(2, 3, 10, 12) + 1
    window = windows([[(2, 3), (-2, 9)], [(0, 0), (7, -1)]], 4)
    crops, image_crops = window.crop(maps), window.crop_images(images)
    assert crops.shape == (2, 2, 4, 4) and image_crops.shape == (2, 2, 3, 4, 4)
    torch.testing.assert_close(crops[0, 0], maps[0, 0, 2:6, 3:7])
    torch.testing.assert_close(image_crops[1, 0], images[1, :, 0:4, 0:4])
    # window (-2, 9): rows -2, -1 and columns 12 are outside a 10 x 12 image
    assert (crops[0, 1, :2] == 0).all() and (crops[0, 1, :, 3] == 0).all()
    torch.testing.assert_close(crops[0, 1, 2:, :3], maps[0, 1, 0:2, 9:12])
    inside = window.inside()
    assert inside[0, 0].all() and inside[0, 1].sum() == 2 * 3 and inside[1, 1].sum() == 3 * 3
    assert ((crops != 0) == inside).all()  # every map value is >= 1, so zeros are exactly the outside


def test_windows_around_a_position_are_centred_on_its_pixel():
    image_size = (16, 16)
    centre_of_pixel = lambda row, column: [(column + 0.5) / 16 * 2 - 1, (row + 0.5) / 16 * 2 - 1]  # noqa: E731
    positions = torch.tensor([[centre_of_pixel(5, 9), centre_of_pixel(0, 15)]])
    window = PixelWindows.around(positions, 5, image_size)
    assert window.origins.tolist() == [[[3, 7], [-2, 13]]]
    # the window's grid holds the image's own pixel-centre coordinates
    torch.testing.assert_close(window.grid()[0, 0, 2, 2], positions[0, 0])
    with pytest.raises(ValueError, match="at least one pixel"):
        PixelWindows.around(positions, 0, image_size)


def test_crops_refuse_maps_of_another_image_size():
    with pytest.raises(ValueError, match=r"expected maps \[B, K, 10, 12\], got \[2, 2, 8, 8\]"):
        windows([[(0, 0), (1, 1)]] * 2, 3).crop(torch.zeros(2, 2, 8, 8))


@pytest.mark.parametrize("layers, kernel", [(1, 5), (3, 5), (3, 3)])
def test_a_windows_rendering_equals_those_pixels_of_the_full_rendering(layers, kernel):
    """Windows that reach past every edge of the image, through one to three convolutions: exact, because
    the window is rendered wider by the receptive field and zeroed outside the image as zero padding is."""
    torch.manual_seed(0)
    decoder = SpatialBroadcastDecoder(8, (20, 20), 6, layers, kernel, relative_positions=True, out_channels=5)
    slots = torch.randn(2, 3, 8)
    frames = SlotFrames(torch.rand(2, 3, 2) * 2.4 - 1.2, torch.rand(2, 3, 2) * 0.3 + 0.1, torch.rand(2, 3) * 6)
    window = PixelWindows.around(frames.positions, 9, (20, 20))
    with torch.no_grad():
        full, windowed = decoder(slots, frames), decoder(slots, frames, window)
    assert windowed.shape == (2, 3, 5, 9, 9)
    full_crops = torch.stack([window.crop(full[:, :, channel]) for channel in range(5)], dim=2)
    inside = window.inside().unsqueeze(2)
    torch.testing.assert_close(windowed * inside, full_crops, atol=1e-5, rtol=1e-5)
    assert (~inside).any()  # the windows did reach outside


def test_only_a_full_resolution_frame_decoder_renders_windows():
    decoder = SpatialBroadcastDecoder(8, (16, 16), 6, 3, 3, broadcast_size=8, relative_positions=True)
    frames = SlotFrames(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.2))
    with pytest.raises(ValueError, match="full resolution"):
        decoder(torch.randn(1, 2, 8), frames, PixelWindows.around(frames.positions, 5, (16, 16)))


def test_a_window_covering_the_image_scores_as_the_whole_image():
    """A window larger than the image around its centre holds every pixel: the same scores to rounding."""
    torch.manual_seed(0)
    decoder = SpatialBroadcastDecoder(8, (12, 12), 6, 2, 3, relative_positions=True, out_channels=5)
    slots, attention = torch.randn(2, 3, 8), torch.rand(2, 3, 36).softmax(dim=1)
    frames = SlotFrames(torch.zeros(2, 3, 2), torch.full((2, 3, 2), 0.3), torch.rand(2, 3))
    images, ownership = torch.rand(2, 3, 12, 12) * 2 - 1, ownership_maps(attention, (6, 6), (12, 12))
    window = PixelWindows.around(frames.positions, 30, (12, 12))
    with torch.no_grad():
        whole = slot_scores(decoder(slots, frames), ScoredPixels.of(images, ownership))
        windowed = slot_scores(decoder(slots, frames, window), ScoredPixels.of(images, ownership, window))
    torch.testing.assert_close(windowed, whole, atol=1e-5, rtol=1e-5)


def test_the_windowed_search_keeps_slot_permutation_equivariance():
    torch.manual_seed(0)
    model = build_autoencoder((16, 16), num_slots=3, slot_dim=16, mlp_hidden_dim=16, encoder_channels=8,
                              encoder_layers=2, encoder_kernel=3, decoder_channels=8, decoder_layers=2,
                              decoder_kernel=3, slot_frames="translation_isotropic", orientation_search=8,
                              orientation_window=8).eval()
    assert isinstance(model.orientation_search, SlotOrientationSearch) and model.orientation_search.window == 8
    images, initial, order = torch.rand(2, 3, 16, 16) * 2 - 1, torch.randn(2, 3, 16), torch.tensor([2, 0, 1])
    with torch.no_grad():
        out = model(images, initial_slots=initial)
        permuted = model(images, initial_slots=initial[:, order])
    torch.testing.assert_close(permuted.masks, out.masks[:, order], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(permuted.frames.angles, out.frames.angles[:, order])


def test_a_windowed_search_needs_the_slots_positions():
    with pytest.raises(ValueError, match="needs each slot's position"):
        SlotOrientationSearch(8, window=6).scored_pixels(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 8), None)
