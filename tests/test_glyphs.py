"""Tests for the rotated-glyphs generator: asymmetry, fit in the inscribed circle, the rotation
convention of ``orientation.planar``, pair semantics and the cached shard path."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from einops import rearrange, repeat

from data import DataError, Glyphs, PairBatch, ensure_dataset, eval_batches, make_generator, train_batches
from data.glyphs import FACTOR_NAMES, FACTOR_SIZES, GLYPH_NAMES, ORIENTATIONS, SCALES
from data.registry import GENERATORS
from orientation.planar import planar_angles, rotate_images

NUM_GLYPHS, NUM_ANGLES = FACTOR_SIZES["glyph"], FACTOR_SIZES["orientation"]
LARGEST = FACTOR_SIZES["scale"] - 1


def grid(generator: Glyphs, scale: int) -> np.ndarray:
    """float32 [glyph, angle, H, W] in [0, 1]: every glyph at every angle, at one scale."""
    rows = np.array([[g, scale, k] for g in range(NUM_GLYPHS) for k in range(NUM_ANGLES)])
    images = generator.render_batch(rows).astype(np.float32) / 255
    return rearrange(images, "(g k) h w -> g k h w", g=NUM_GLYPHS)


def soft_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of grey images (min / max), over the last two axes."""
    return np.minimum(a, b).sum(axis=(-2, -1)) / np.maximum(a, b).sum(axis=(-2, -1))


@pytest.fixture(scope="module")
def upright_and_turned() -> np.ndarray:
    return grid(Glyphs(resolution=32), LARGEST)


def test_factor_grid_and_names() -> None:
    assert FACTOR_NAMES == ("glyph", "scale", "orientation")
    assert FACTOR_SIZES["glyph"] >= 8 and FACTOR_SIZES["scale"] == 3 and NUM_ANGLES == 36
    assert len(set(GLYPH_NAMES)) == NUM_GLYPHS
    np.testing.assert_allclose(SCALES, [0.75, 0.875, 1.0])
    np.testing.assert_allclose(ORIENTATIONS, planar_angles(NUM_ANGLES).double().numpy(), atol=1e-6)
    assert GENERATORS["glyphs"] is Glyphs and isinstance(make_generator("glyphs", resolution=32), Glyphs)


def test_no_glyph_has_a_rotational_symmetry(upright_and_turned: np.ndarray) -> None:
    for g, name in enumerate(GLYPH_NAMES):
        overlap = soft_iou(upright_and_turned[g, :1], upright_and_turned[g, 1:])
        assert overlap.max() < 0.9, f"glyph {name!r} looks the same turned by {10 * (overlap.argmax() + 1)} degrees"
        # A symmetric shape (N, S, Z, H, ...) would match itself at 180 (or 90 / 120) degrees.
        far = overlap[NUM_ANGLES // 4 - 1 : 3 * NUM_ANGLES // 4]  # turns of 90..270 degrees
        assert far.max() < 0.8, f"glyph {name!r} is nearly symmetric under a turn of 90 degrees or more"


def test_no_glyph_is_a_turned_copy_of_another(upright_and_turned: np.ndarray) -> None:
    """Otherwise a canonical pose would not determine the glyph (e.g. L turned by 180 degrees is a 7)."""
    for g in range(NUM_GLYPHS):
        for h in range(NUM_GLYPHS):
            if g != h:
                best = soft_iou(upright_and_turned[g, :1], upright_and_turned[h]).max()
                assert best < 0.85, f"{GLYPH_NAMES[g]!r} looks like {GLYPH_NAMES[h]!r} turned ({best:.2f})"


@pytest.mark.parametrize("resolution", [16, 32, 33, 64])
def test_glyphs_stay_inside_the_inscribed_circle(resolution: int) -> None:
    generator = Glyphs(resolution=resolution)
    images = grid(generator, LARGEST)
    centres = np.arange(resolution) + 0.5 - resolution / 2
    # The farthest point of each pixel square from the image centre.
    reach = np.hypot(np.abs(centres)[None, :] + 0.5, np.abs(centres)[:, None] + 0.5)
    outside = reach > resolution / 2
    assert outside.any() and not images[..., outside].any(), "ink outside the inscribed circle"
    assert (images.max(axis=(-2, -1)) == 1).all(), "every glyph has fully inked pixels"
    fraction = images.sum(axis=(-2, -1)) / resolution**2
    assert fraction.min() > 0.05, "glyphs should be large enough to see"
    # Glyphs are centred: the largest one nearly touches the circle, at some angle.
    radius = np.hypot(centres[None, :], centres[:, None])
    assert (radius * (images > 0)).max() > resolution / 2 - 2.5


def test_scale_changes_the_size() -> None:
    generator = Glyphs(resolution=32)
    ink = [grid(generator, s).sum(axis=(-2, -1)) for s in range(3)]
    assert (ink[0] < ink[1]).all() and (ink[1] < ink[2]).all()


def test_rendering_matches_rotate_images(upright_and_turned: np.ndarray) -> None:
    """Index k is orientation.planar's angle 2 pi k / 36, counter-clockwise as displayed."""
    angles = planar_angles(NUM_ANGLES)
    upright = torch.from_numpy(repeat(upright_and_turned[:, 0], "g h w -> (g k) 1 h w", k=NUM_ANGLES))
    turned = torch.from_numpy(rearrange(upright_and_turned, "g k h w -> (g k) 1 h w"))
    per_image = angles.repeat(NUM_GLYPHS)
    error = (rotate_images(upright, per_image) - turned).abs().mean(dim=(1, 2, 3))
    wrong_way = (rotate_images(upright, -per_image) - turned).abs().mean(dim=(1, 2, 3))
    assert error.max() < 0.03, f"bilinear rotation differs by {error.max():.3f} on average"
    # The tolerance is tight enough to tell the two directions apart (0 and 180 degrees agree).
    opposite = repeat(torch.arange(NUM_ANGLES) % (NUM_ANGLES // 2) != 0, "k -> (g k)", g=NUM_GLYPHS)
    assert (error[opposite] < 0.5 * wrong_way[opposite]).all()
    # A quarter turn is exact on the pixel grid: the same as torch.rot90, as planar.py documents.
    quarter = torch.rot90(torch.from_numpy(upright_and_turned[:, 0]), 1, dims=(-2, -1))
    turned_by_index = torch.from_numpy(upright_and_turned[:, NUM_ANGLES // 4])
    torch.testing.assert_close(quarter, turned_by_index, atol=1.5 / 255, rtol=0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pairs_change_exactly_k_factors(k: int) -> None:
    generator = make_generator("glyphs", resolution=32, changed_factors=k)
    for index in range(20):
        pair = generator.pair(0, index)
        factors = pair.factors
        (a,), (b,) = factors["objects0"], factors["objects1"]
        differing = {name for name in FACTOR_NAMES if a[name] != b[name]}
        assert len(differing) == k == factors["k"] and differing == {name for _, name in factors["changed"]}
        for obj in (a, b):
            assert obj["angle"] == pytest.approx(2 * math.pi * obj["orientation"] / NUM_ANGLES)
        for frame, mask, obj in ((pair.frame0, pair.mask0, a), (pair.frame1, pair.mask1, b)):
            assert frame.shape == (32, 32, 3) and frame.dtype == np.uint8 and mask.dtype == np.uint8
            expected = generator.render_batch(np.array([[obj[name] for name in FACTOR_NAMES]]))[0]
            np.testing.assert_array_equal(frame, np.repeat(expected[..., None], 3, axis=2))
            np.testing.assert_array_equal(mask, (expected > 0).astype(np.uint8))
            assert not frame[mask == 0].any() and mask.max() == 1
        assert not np.array_equal(pair.frame0, pair.frame1)


def test_pairs_depend_only_on_seed_and_index() -> None:
    a, b = make_generator("glyphs"), make_generator("glyphs")
    first = [a.pair(5, i) for i in (3, 0)]
    again = [b.pair(5, i) for i in (3, 0)]
    for x, y in zip(first, again):
        for field in ("frame0", "frame1", "mask0", "mask1"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
        assert x.factors == y.factors == json.loads(json.dumps(x.factors))
    assert [a.pair(6, i).factors["objects0"] for i in range(5)] != [a.pair(5, i).factors["objects0"] for i in range(5)]
    ks = {a.pair(1, i).factors["k"] for i in range(40)}
    assert ks == {1, 2}, "changed_factors='random' draws k from 1..d-1 = 1..2"


def test_render_batch_is_chunk_and_order_independent() -> None:
    generator = Glyphs(resolution=32)
    rows = np.random.default_rng(0).integers(0, list(FACTOR_SIZES.values()), size=(150, 3))
    together = generator.render_batch(rows)
    one_by_one = np.stack([generator.render_batch(row[None])[0] for row in rows])
    np.testing.assert_array_equal(together, one_by_one)
    assert generator.render_batch(np.zeros((0, 3), dtype=np.int64)).shape == (0, 32, 32)


def test_cached_shards_give_pair_batches(tmp_path: Path) -> None:
    kwargs = {"resolution": 32, "changed_factors": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few train shards for a real run: expected at this size
        info = ensure_dataset("glyphs", kwargs, tmp_path, num_train=12, num_eval=6, pairs_per_shard=4,
                              progress=False, num_workers=1)
        again = ensure_dataset("glyphs", kwargs, tmp_path, num_train=12, num_eval=6, pairs_per_shard=4,
                               progress=False, num_workers=1)
    assert again.root == info.root and info.generator_name == "glyphs" and info.resolution == 32
    assert info.factor_sizes == FACTOR_SIZES and info.max_objects == 1
    batches = list(eval_batches(info.eval_shards, 4, resolution=32))
    assert [len(b) for b in batches] == [4, 2]
    batch = batches[0]
    assert isinstance(batch, PairBatch) and batch.frame0.shape == batch.frame1.shape == (4, 3, 32, 32)
    assert batch.mask0.shape == (4, 32, 32) and batch.frame0.min() >= -1 and batch.frame0.max() <= 1
    generator = make_generator("glyphs", **kwargs)
    for i, record in enumerate(batch.factors):
        assert record["generator"] == "glyphs" and record["k"] == 1 and len(record["changed"]) == 1
        obj = record["objects0"][0]
        assert obj["angle"] == pytest.approx(ORIENTATIONS[obj["orientation"]])
        grey = generator.render_batch(np.array([[obj[n] for n in FACTOR_NAMES]]))[0]
        np.testing.assert_allclose(batch.frame0[i, 0].numpy(), grey / 127.5 - 1, atol=1e-6)
    train = list(train_batches(info.train_shards, 3, seed=0, epoch=0, batches_per_epoch=2, resolution=32))
    assert len(train) == 2 and all(b.frame0.shape == (3, 3, 32, 32) for b in train)


@pytest.mark.parametrize("resolution", [8, 15, 0, -32, 32.0, "32", True])
def test_bad_resolution_is_a_clear_data_error(resolution: object) -> None:
    with pytest.raises(DataError, match="glyphs: resolution must be an integer of at least 16"):
        make_generator("glyphs", resolution=resolution)


def test_bad_arguments_are_data_errors() -> None:
    with pytest.raises(DataError, match="exceeds"):
        make_generator("glyphs", changed_factors=4)
    with pytest.raises(DataError, match="unknown parameter"):
        make_generator("glyphs", position=3)
    generator = Glyphs()
    with pytest.raises(DataError, match="'orientation' must be in 0..35"):
        generator.render_batch(np.array([[0, 0, 36]]))
    with pytest.raises(DataError, match="shape"):
        generator.render_batch(np.array([0, 0, 0]))
    with pytest.raises(DataError, match="exactly one object"):
        generator.render([])
