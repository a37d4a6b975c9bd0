"""Tests for the dSprites-like generator, the ground-truth sources and the .npz converter."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from data import (
    DataError,
    DSprites,
    DSpritesSource,
    NpzDSpritesSource,
    decode_sample,
    ensure_dataset,
    eval_batches,
    load_dataset,
    make_generator,
)
from data.convert_dsprites import NpzDSprites, convert_npz
from data.convert_dsprites import main as convert_main
from data.dsprites import FACTOR_NAMES, FACTOR_SIZES, ORIENTATIONS
from data.shapes import BOUNDING_RADIUS, SHAPES, silhouettes

SIZES = np.array(list(FACTOR_SIZES.values()))
#: The tiny .npz grid: colour 1, shape 2, scale 2, orientation 3, x 4, y 4 = 192 images.
TINY_SIZES = (1, 2, 2, 3, 4, 4)
TINY_NAMES = ["shape", "scale", "orientation", "x", "y"]
#: Where each tiny class sits on the procedural grid, so all 192 images are distinct.
TINY_TO_GRID = tuple(map(np.array, ([0, 1], [0, 5], [0, 13, 26], [0, 10, 20, 31], [0, 10, 20, 31])))


def random_factors(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, SIZES, size=(n, len(SIZES)))


def changed_names(factors: dict) -> set[str]:
    (a,), (b,) = factors["objects0"], factors["objects1"]
    return {name for name in factors["factor_names"] if a[name] != b[name]}


def full_frame_reference(generator: DSprites, factors: np.ndarray, pad: int = 0) -> np.ndarray:
    """Silhouettes evaluated at every pixel of a frame padded by ``pad`` on each side (no windowing)."""
    centres = np.arange(-pad, generator.resolution + pad) + 0.5
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    shape, scale, orientation, x, y = factors.T
    column = lambda values: values[:, None, None]  # noqa: E731
    return silhouettes(
        shape, column(generator._cx[x]), column(generator._cy[y]), column(generator._radius[scale]),
        column(ORIENTATIONS[orientation]), rows[None], cols[None],
    )


def write_npz(path: Path, order: np.ndarray | None = None, **overrides: np.ndarray) -> dict[str, np.ndarray]:
    """A dSprites .npz in the original schema, rendered on a sub-grid of the procedural generator."""
    classes = np.stack(np.unravel_index(np.arange(np.prod(TINY_SIZES)), TINY_SIZES), axis=1).astype(np.int64)
    grid = np.stack([table[classes[:, i + 1]] for i, table in enumerate(TINY_TO_GRID)], axis=1)
    arrays = {
        "imgs": DSprites().render_batch(grid),
        "latents_classes": classes,
        "latents_values": classes.astype(np.float64) / np.maximum(np.array(TINY_SIZES) - 1, 1),
    }
    if order is not None:
        arrays = {key: value[order] for key, value in arrays.items()}
    arrays.update(overrides)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    np.savez_compressed(path, **arrays)
    return arrays


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("npz") / "dsprites_tiny.npz"
    return path, write_npz(path)


# --- the procedural generator ---------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_exactly_k_factors_change_and_frames_follow(k: int) -> None:
    generator = make_generator("dsprites", changed_factors=k)
    assert generator.resolution == 64 and generator.max_objects == 1
    for index in range(12):
        pair = generator.pair(0, index)
        factors = pair.factors
        assert factors["k"] == k == len(factors["changed"]) and factors["num_objects"] == 1
        assert changed_names(factors) == {name for _, name in factors["changed"]}
        assert all(obj == 0 for obj, _ in factors["changed"])
        for frame, mask, objects in ((pair.frame0, pair.mask0, "objects0"), (pair.frame1, pair.mask1, "objects1")):
            image, expected_mask = generator.render(factors[objects])
            np.testing.assert_array_equal(frame, image)
            np.testing.assert_array_equal(mask, expected_mask)
            assert set(np.unique(mask)) == {0, 1} and ((frame == 255) == (mask[..., None] == 1)).all()
        if changed_names(factors) != {"orientation"}:  # a rotation by a symmetry can leave the pixels alone
            assert not np.array_equal(pair.frame0, pair.frame1)


def test_random_k_covers_one_to_four() -> None:
    generator = DSprites()  # default: "random"
    ks = []
    for index in range(200):
        factors = generator.pair(9, index).factors
        assert 1 <= factors["k"] <= 4 and len(changed_names(factors)) == factors["k"]
        ks.append(factors["k"])
    counts = np.bincount(ks, minlength=5)[1:]
    assert (counts > 25).all(), f"k should be roughly uniform on 1..4, got counts {counts}"


def test_pairs_depend_only_on_seed_and_index() -> None:
    a, b = DSprites(), DSprites()
    for index in (3, 0):
        first, again = a.pair(5, index), b.pair(5, index)
        assert first.factors == again.factors
        np.testing.assert_array_equal(first.frame0, again.frame0)
        np.testing.assert_array_equal(first.frame1, again.frame1)
    other = [a.pair(6, i).factors["objects0"] for i in range(5)]
    assert other != [a.pair(5, i).factors["objects0"] for i in range(5)]
    assert json.loads(json.dumps(a.pair(5, 0).factors)) == a.pair(5, 0).factors


def test_render_batch_matches_render_and_full_frame() -> None:
    generator = DSprites()
    factors = random_factors(300, seed=1)
    batch = generator.render_batch(factors)
    assert batch.dtype == np.uint8 and batch.shape == (300, 64, 64) and set(np.unique(batch)) == {0, 1}
    for row, image in zip(factors[:40], batch):
        frame, mask = generator.render([dict(zip(FACTOR_NAMES, map(int, row)))])
        np.testing.assert_array_equal(mask, image)
        np.testing.assert_array_equal(frame, np.repeat(image[..., None] * 255, 3, axis=2))
    # The windowed renderer must equal evaluating the shapes at every pixel.
    np.testing.assert_array_equal(batch.astype(bool), full_frame_reference(generator, factors))
    assert generator.render_batch(np.zeros((0, 5), dtype=np.int64)).shape == (0, 64, 64)


def test_every_factor_changes_the_image() -> None:
    generator = DSprites()
    base = random_factors(40, seed=2)
    for column, name in enumerate(FACTOR_NAMES):
        moved = base.copy()
        moved[:, column] = (moved[:, column] + 1) % SIZES[column]
        changed = (generator.render_batch(base) != generator.render_batch(moved)).any(axis=(1, 2))
        if name == "orientation":
            assert changed.mean() > 0.9, "a one-step rotation should change almost every sprite"
        else:
            assert changed.all(), f"changing {name} by one step must change the pixels"


def test_sprites_stay_inside_the_frame_and_are_never_empty() -> None:
    for resolution in (64, 32):
        generator = DSprites(resolution=resolution)
        grid = np.stack(np.meshgrid(range(3), [5], range(40), [0, 31], [0, 31], indexing="ij"), -1).reshape(-1, 5)
        images = generator.render_batch(grid)
        border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
        assert not border.any(), "the largest sprites at extreme positions must not touch the border"
        padded = full_frame_reference(generator, grid, pad=16)
        assert (padded.sum(axis=(1, 2)) == images.sum(axis=(1, 2))).all(), "part of a sprite fell outside"
        smallest = np.stack(np.meshgrid(range(3), range(6), range(40), [0], [31], indexing="ij"), -1).reshape(-1, 5)
        assert (generator.render_batch(smallest).sum(axis=(1, 2)) > 0).all()
    x_extent = np.flatnonzero(DSprites().render_batch(np.array([[0, 5, 0, 31, 16]]))[0].any(axis=0))
    assert x_extent.max() >= 58, "the range should use most of the frame"


def test_bounding_radius_holds_for_every_shape() -> None:
    radius, angle = np.meshgrid(np.linspace(0.0, 1.5, 301), np.linspace(0.0, 2 * np.pi, 721))
    u, v = radius * np.cos(angle), radius * np.sin(angle)
    reach = max(radius[inside(u, v)].max() for _, inside in SHAPES)
    assert 1.15 < reach <= BOUNDING_RADIUS


def test_bad_factors_are_rejected() -> None:
    generator = DSprites()
    with pytest.raises(DataError, match="'x' must be in 0..31"):
        generator.render_batch(np.array([[0, 0, 0, 32, 0]]))
    with pytest.raises(DataError, match=r"shape \[n, 5\]"):
        generator.render_batch(np.zeros((2, 4), dtype=int))
    with pytest.raises(DataError, match="changed_factors"):
        DSprites(changed_factors=6)


# --- ground-truth sources -------------------------------------------------------------


def test_dsprites_source_shapes_ranges_and_determinism() -> None:
    source = DSpritesSource()
    assert source.factor_sizes == (3, 6, 40, 32, 32) and source.factor_names == FACTOR_NAMES
    factors = source.sample_factors(4000, np.random.default_rng(0))
    assert factors.dtype == np.int64 and factors.shape == (4000, 5)
    assert (factors.min(axis=0) == 0).all() and (factors.max(axis=0) == SIZES - 1).all()
    np.testing.assert_array_equal(factors, source.sample_factors(4000, np.random.default_rng(0)))
    assert not np.array_equal(factors, source.sample_factors(4000, np.random.default_rng(1)))
    observations = source.sample_observations_from_factors(factors[:50], np.random.default_rng(0))
    assert observations.dtype == np.float32 and observations.shape == (50, 1, 64, 64)
    assert set(np.unique(observations)) == {0.0, 1.0}
    np.testing.assert_array_equal(observations[:, 0], DSprites().render_batch(factors[:50]))
    with pytest.raises(DataError, match="'shape' must be in 0..2"):
        source.sample_observations_from_factors(np.array([[3, 0, 0, 0, 0]]), np.random.default_rng(0))


def test_npz_source_returns_the_image_of_a_factor_row(tiny_npz, tmp_path: Path) -> None:
    path, arrays = tiny_npz
    shuffled_path = tmp_path / "shuffled.npz"
    write_npz(shuffled_path, order=np.random.default_rng(0).permutation(192))
    for source in (NpzDSpritesSource(path), NpzDSpritesSource(shuffled_path)):
        assert source.factor_sizes == (2, 2, 3, 4, 4) and list(source.factor_names) == TINY_NAMES
        factors = source.sample_factors(64, np.random.default_rng(3))
        assert factors.dtype == np.int64 and factors.shape == (64, 5)
        observations = source.sample_observations_from_factors(factors, np.random.default_rng(0))
        assert observations.dtype == np.float32 and observations.shape == (64, 1, 64, 64)
        for row, observation in zip(factors, observations):
            match = np.flatnonzero((arrays["latents_classes"][:, 1:] == row).all(axis=1))
            assert len(match) == 1
            np.testing.assert_array_equal(observation[0], arrays["imgs"][match[0]])
    assert NpzDSpritesSource(shuffled_path).load().row_of_index is not None
    assert NpzDSpritesSource(path).load().row_of_index is None


def test_npz_source_rejects_bad_files(tiny_npz, tmp_path: Path) -> None:
    path, arrays = tiny_npz
    with pytest.raises(DataError, match="nope.npz does not exist"):
        NpzDSpritesSource(tmp_path / "nope.npz")
    cases = {
        "no_classes": ({"latents_classes": None}, r"missing key 'latents_classes'"),
        "no_imgs": ({"imgs": None}, r"missing key 'imgs'"),
        "short": ({"imgs": arrays["imgs"][:100]}, r"'latents_classes' has 192 rows but key 'imgs' has 100"),
        "values": ({"latents_values": arrays["latents_values"][:5]}, r"'latents_values' has shape"),
        "flat": ({"imgs": arrays["imgs"].reshape(192, -1)}, r"'imgs' must be uint8 \[N, H, H\]"),
        "hole": ({"latents_classes": np.concatenate([arrays["latents_classes"][:-1], arrays["latents_classes"][:1]])},
                 "not a full factor grid"),
    }
    for name, (overrides, message) in cases.items():
        bad = tmp_path / f"{name}.npz"
        write_npz(bad, **overrides)
        with pytest.raises(DataError, match=message) as error:
            NpzDSpritesSource(bad).factor_sizes
        assert str(bad) in str(error.value), "the message must name the file"
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        NpzDSpritesSource(garbage).load()


# --- converter ------------------------------------------------------------------------


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Invert the loader's [-1, 1] scaling: float [B,3,H,W] -> uint8 [B,H,W,3]."""
    return ((frames + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_converter_writes_the_generator_format(tiny_npz, tmp_path: Path) -> None:
    path, arrays = tiny_npz
    source = NpzDSpritesSource(path)
    out = tmp_path / "converted"
    with pytest.warns(UserWarning, match="train shards"):
        info = convert_npz(path, out, num_train=24, num_eval=6, pairs_per_shard=8, seed=0, progress=False)
    assert info.root == out and len(info.train_shards) == 3 and len(info.eval_shards) == 1
    assert info.generator_name == "dsprites_npz" and info.resolution == 64 and info.max_objects == 1
    assert info.factor_sizes == dict(zip(TINY_NAMES, (2, 2, 3, 4, 4)))
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())

    ks = []
    batches = list(eval_batches(info.train_shards + info.eval_shards, 10, resolution=64))
    for batch in batches:
        frames0, frames1 = to_uint8(batch.frame0), to_uint8(batch.frame1)
        for i, factors in enumerate(batch.factors):
            assert factors["generator"] == "dsprites_npz" and factors["factor_names"] == TINY_NAMES
            assert len(factors["objects0"]) == len(factors["objects1"]) == factors["num_objects"] == 1
            assert 1 <= factors["k"] <= 4 and changed_names(factors) == {n for _, n in factors["changed"]}
            assert len(factors["changed"]) == factors["k"]
            ks.append(factors["k"])
            for frames, mask, objects in ((frames0, batch.mask0, "objects0"), (frames1, batch.mask1, "objects1")):
                row = np.array([[factors[objects][0][n] for n in TINY_NAMES]])
                image = arrays["imgs"][source.rows_of(row)[0]]
                np.testing.assert_array_equal(frames[i], np.repeat(image[..., None] * 255, 3, axis=2))
                np.testing.assert_array_equal(mask[i].numpy(), image)
    assert sum(len(b.factors) for b in batches) == 30 and len(set(ks)) > 1

    with tarfile.open(info.train_shards[0]) as archive:  # the raw samples decode too
        members = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    key = sorted(members)[0].split(".")[0]
    sample = {name.split(".", 1)[1]: data for name, data in members.items() if name.startswith(key + ".")}
    decoded = decode_sample({**sample, "__key__": key}, resolution=64)
    assert decoded["mask0"].max() == 1 and decoded["frame0"].max() == 255

    # Same manifest layout as ensure_dataset, and the same pair semantics as the generator.
    with pytest.warns(UserWarning, match="train shards"):
        reference = ensure_dataset("dsprites", {}, tmp_path / "ref", num_train=2, num_eval=1, pairs_per_shard=1,
                                   progress=False, num_workers=1)
    assert set(info.manifest) == set(reference.manifest)
    assert set(info.manifest["params"]) == set(reference.manifest["params"])
    assert load_dataset(out).manifest == info.manifest


def test_converter_reuses_and_refuses(tiny_npz, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path, _ = tiny_npz
    out = tmp_path / "converted"
    argv = ["--npz", str(path), "--out", str(out), "--num-train", "4", "--num-eval", "2", "--pairs-per-shard", "2",
            "--changed-factors", "2", "--seed", "3", "--no-progress"]
    with pytest.warns(UserWarning, match="train shards"):
        assert convert_main(argv) == 0
    info = load_dataset(out)
    assert info.manifest["params"]["generator_config"]["changed_factors"] == 2
    assert info.manifest["params"]["generator_config"]["npz"] == path.name
    for batch in eval_batches(info.train_shards, 4, resolution=64):
        assert all(f["k"] == 2 and len(changed_names(f)) == 2 for f in batch.factors)
    mtimes = {p: os.stat(p).st_mtime_ns for p in info.train_shards}
    assert convert_main(argv) == 0  # same parameters: reused, not rewritten
    assert mtimes == {p: os.stat(p).st_mtime_ns for p in info.train_shards}
    assert convert_main([*argv[:-2], "4", "--no-progress"]) == 2  # other seed, same directory
    assert "exists" in capsys.readouterr().err
    assert convert_main(["--npz", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "x")]) == 2
    assert "missing.npz does not exist" in capsys.readouterr().err


def test_npz_generator_pairs_are_deterministic(tiny_npz) -> None:
    path, _ = tiny_npz
    generator = NpzDSprites(path, changed_factors="random")
    first = [generator.pair(1, i).factors for i in range(6)]
    assert first == [NpzDSprites(path).pair(1, i).factors for i in range(6)]
    assert first != [generator.pair(2, i).factors for i in range(6)]
