"""Tests for the data package: generators, pair semantics, shards, loaders and error handling."""

from __future__ import annotations

import io
import json
import os
import shlex
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

import data
import data.shards as shards_module
from data import (
    DataError,
    GENERATORS,
    ensure_dataset,
    eval_batches,
    make_generator,
    resolve_shards,
    train_batches,
    write_split,
)
from data.codec import encode_png
from data.loader import SeededShardSampler
from data.make_shards import main as make_shards_main
from data.sprites import COLOURS as SPRITE_COLOURS
from data.tetrominoes import fixed_tetrominoes
from data.palette import TETROMINO_COLOURS

GENERATOR_NAMES = sorted(GENERATORS)
PALETTES = {"multi_dsprites": SPRITE_COLOURS, "tetrominoes": TETROMINO_COLOURS}
NUM_PAIRS, PAIRS_PER_SHARD, SEED = 40, 8, 7


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 multi_dsprites pairs in 5 shards of 8, written once for the loader tests."""
    out = tmp_path_factory.mktemp("shards")
    write_split(make_generator("multi_dsprites"), out, "train", NUM_PAIRS, PAIRS_PER_SHARD, SEED, progress=False, num_workers=1)
    return out


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Invert the loader's [-1, 1] scaling: float [B,3,H,W] -> uint8 [B,H,W,3]."""
    return ((frames + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def differing_entries(factors: dict) -> set[tuple[int, str]]:
    return {
        (i, name)
        for i, (a, b) in enumerate(zip(factors["objects0"], factors["objects1"]))
        for name in factors["factor_names"]
        if a[name] != b[name]
    }


# --- generators and pair semantics ----------------------------------------------------


@pytest.mark.parametrize("name", GENERATOR_NAMES)
def test_pair_is_a_pure_function_of_seed_and_index(name: str) -> None:
    generator = make_generator(name)
    later_first = [generator.pair(3, i) for i in (5, 2)]  # order of generation must not matter
    again = [make_generator(name).pair(3, i) for i in (5, 2)]
    for a, b in zip(later_first, again):
        for field in ("frame0", "frame1", "mask0", "mask1"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert a.factors == b.factors
    other_seed = generator.pair(4, 5)
    assert not np.array_equal(other_seed.frame0, later_first[0].frame0)
    assert other_seed.factors["objects0"] != later_first[0].factors["objects0"]
    assert json.loads(json.dumps(later_first[0].factors)) == later_first[0].factors


@pytest.mark.parametrize("name", GENERATOR_NAMES)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_exactly_k_entries_change_and_are_recorded(name: str, k: int) -> None:
    generator = make_generator(name, changed_factors=k)
    for index in range(15):
        factors = generator.pair(0, index).factors
        recorded = {(int(i), str(f)) for i, f in factors["changed"]}
        assert len(factors["changed"]) == k == factors["k"]
        assert differing_entries(factors) == recorded


@pytest.mark.parametrize("name", GENERATOR_NAMES)
def test_random_k_stays_in_one_to_d_minus_one(name: str) -> None:
    generator = make_generator(name, changed_factors="random")
    d = len(generator.factor_sizes)
    ks = []
    for index in range(60):
        factors = generator.pair(1, index).factors
        assert 1 <= factors["k"] <= d - 1
        assert len(differing_entries(factors)) == factors["k"]
        ks.append(factors["k"])
    assert len(set(ks)) > 1, "k='random' should not always draw the same k"


def test_dlib_sampler_changes_one_factor_or_k_and_may_keep_a_value() -> None:
    """disentanglement_lib's `simple_dynamics`: k' ~ U{1..4}, then 1 or k' entries with equal odds, each redrawn
    over all its values. By hand for dSprites' five factors: P(k = 1) = 1/2 + 1/2 * 1/4 = 0.625; E[k] = 1/2 +
    1/2 * 2.5 = 1.75; an entry keeps its value with probability mean(1/3, 1/6, 1/40, 1/32, 1/32) = 0.1175, so
    a pair keeps 1.75 * 0.1175 = 0.2056 of its drawn entries on average. The record lists what changed."""
    generator = make_generator("dsprites", changed_factors="dlib")
    pairs = [generator.pair(0, index).factors for index in range(2000)]
    for factors in pairs:
        assert 1 <= factors["k"] <= 4 and len(factors["changed"]) <= factors["k"]
        assert differing_entries(factors) == {(int(i), str(f)) for i, f in factors["changed"]}
    assert np.mean([f["k"] == 1 for f in pairs]) == pytest.approx(0.625, abs=0.04)
    assert np.mean([f["k"] - len(f["changed"]) for f in pairs]) == pytest.approx(0.2056, abs=0.04)
    random_pairs = [make_generator("dsprites", changed_factors="random").pair(0, i).factors for i in range(200)]
    assert all(f["k"] == len(f["changed"]) for f in random_pairs)  # the paper's text: every drawn entry changes


def test_changed_factors_names_its_options_on_a_typo() -> None:
    assert make_generator("dsprites", changed_factors="DLIB").changed_factors == "dlib"
    with pytest.raises(DataError, match="a positive integer, 'random' or 'dlib', got 'dlb'"):
        make_generator("dsprites", changed_factors="dlb")


@pytest.mark.parametrize("name,kwargs", [("multi_dsprites", {}), ("multi_dsprites", {"resolution": 64}), ("tetrominoes", {})])
def test_masks_are_consistent_with_images(name: str, kwargs: dict) -> None:
    generator = make_generator(name, **kwargs)
    palette = PALETTES[name]
    for index in range(10):
        pair = generator.pair(2, index)
        for frame, mask, objects in ((pair.frame0, pair.mask0, "objects0"), (pair.frame1, pair.mask1, "objects1")):
            assert frame.dtype == np.uint8 and mask.dtype == np.uint8
            assert frame.shape == (generator.resolution, generator.resolution, 3)
            assert mask.shape == frame.shape[:2]
            assert not frame[mask == 0].any(), "background must be black"
            for object_id, obj in enumerate(pair.factors[objects], start=1):
                pixels = frame[mask == object_id]
                assert len(pixels) > 0, f"object id {object_id} missing from the mask"
                assert (pixels == palette[obj["colour"]]).all(), "object pixels must have the object's colour"
            assert mask.max() == pair.factors["num_objects"]


def test_object_count_respects_configured_range() -> None:
    generator = make_generator("multi_dsprites", min_objects=3, max_objects=5)
    counts = [generator.pair(0, i).factors["num_objects"] for i in range(40)]
    assert min(counts) >= 3 and max(counts) <= 5
    assert set(counts) == {3, 4, 5}


def test_sprites_respect_the_visibility_rule() -> None:
    generator = make_generator("multi_dsprites", min_objects=4, max_objects=4)
    for index in range(10):
        pair = generator.pair(5, index)
        own_area = generator.object_masks([dict(o) for o in pair.factors["objects0"]]).sum(axis=(1, 2))
        visible = np.bincount(pair.mask0.ravel(), minlength=5)[1:]
        assert (visible >= 4).all()
        assert (visible >= 0.3 * own_area).all()


def test_sprite_size_scales_with_resolution() -> None:
    small, large = make_generator("multi_dsprites", resolution=32), make_generator("multi_dsprites", resolution=64)
    obj = [{"shape": 1, "colour": 0, "scale": 5, "orientation": 0, "x": 16, "y": 16}]
    area_small, area_large = small.object_masks(obj).sum(), large.object_masks(obj).sum()
    assert 3.5 < area_large / area_small < 4.5


#: the per-object disentanglement scenes of presets discovery_64 / weak_slots_64
OBJECT_SCENES = {"resolution": 64, "min_objects": 2, "max_objects": 3, "radius_fraction": 0.22,
                 "min_visible_fraction": 0.5, "change_one_object": True}


def test_object_scenes_have_large_objects_that_keep_half_their_silhouette() -> None:
    generator = make_generator("multi_dsprites", **OBJECT_SCENES)
    counts = set()
    for index in range(30):
        pair = generator.pair(3, index)
        for objects, mask in ((pair.factors["objects0"], pair.mask0), (pair.factors["objects1"], pair.mask1)):
            own_area = generator.object_masks([dict(o) for o in objects]).sum(axis=(1, 2))
            visible = np.bincount(mask.ravel(), minlength=len(objects) + 1)[1:]
            assert (visible >= 0.5 * own_area).all()
        counts.add(pair.factors["num_objects"])
    assert counts == {2, 3}
    # an ellipse (2:1) at scale index 0 / 5 spans 0.5 / 1.0 x 2 x 0.22 x 64 = 14 / 28 px along its long axis
    for scale, extent in ((0, 14), (5, 28)):
        ellipse = [{"shape": 1, "colour": 0, "scale": scale, "orientation": 0, "x": 16, "y": 16}]
        columns = np.flatnonzero(generator.object_masks(ellipse)[0].any(axis=0))
        assert abs(len(columns) - extent) <= 1, (scale, len(columns))


@pytest.mark.parametrize("changed, allowed", [(1, {1}), (3, {3}), ("random", {1, 2, 3, 4, 5})])
def test_change_one_object_changes_k_factors_of_a_single_object(changed, allowed) -> None:
    generator = make_generator("multi_dsprites", **OBJECT_SCENES, changed_factors=changed)
    ks = set()
    for index in range(40):
        pair = generator.pair(0, index)
        entries = pair.factors["changed"]
        assert len({obj for obj, _ in entries}) == 1 and len({f for _, f in entries}) == len(entries)
        differing = [(i, name) for i, (a, b) in enumerate(zip(pair.factors["objects0"], pair.factors["objects1"]))
                     for name in a if a[name] != b[name]]
        assert sorted(map(tuple, entries)) == sorted(differing)
        ks.add(len(entries))
    assert ks <= allowed and (len(allowed) == 1 or len(ks) >= 3)


def test_new_scene_options_leave_the_default_data_set_unchanged() -> None:
    """The default run's shards are named by a hash of the generator's config: options at their defaults
    must not appear in it, and the pairs must be the same draws."""
    plain = make_generator("multi_dsprites")
    assert set(plain.config()) == {"resolution", "min_objects", "max_objects", "changed_factors",
                                   "min_visible_fraction", "min_visible_pixels"}
    explicit = make_generator("multi_dsprites", radius_fraction=0.18, change_one_object=False)
    assert explicit.config() == plain.config()
    for index in range(5):
        assert np.array_equal(plain.pair(0, index).frame1, explicit.pair(0, index).frame1)


def test_tetrominoes_shapes_and_placement() -> None:
    shapes = fixed_tetrominoes()
    assert len({tuple(map(tuple, s.tolist())) for s in shapes}) == 19
    generator = make_generator("tetrominoes")
    assert generator.resolution == 35
    for index in range(10):
        pair = generator.pair(0, index)
        areas = np.bincount(pair.mask0.ravel(), minlength=4)[1:]
        assert (areas == 4 * 25).all(), "three pieces of four 5x5 blocks, no overlap"
        blocks = pair.mask0.reshape(7, 5, 7, 5)
        assert (blocks == blocks[:, :1, :, :1]).all(), "pieces are made of whole 5x5 blocks"


def test_unknown_generator_names_the_known_ones() -> None:
    with pytest.raises(DataError, match="unknown generator 'nope'.*multi_dsprites.*tetrominoes"):
        make_generator("nope")
    with pytest.raises(DataError, match="unknown parameter"):
        make_generator("tetrominoes", resolution=64)


def test_impossible_configuration_raises_a_clear_error() -> None:
    generator = make_generator("multi_dsprites", resolution=8, min_objects=40, max_objects=40)
    with pytest.raises(DataError, match="no valid scene"):
        generator.pair(0, 0)
    with pytest.raises(DataError, match="changed_factors"):
        make_generator("multi_dsprites", changed_factors=0)


# --- shards ---------------------------------------------------------------------------


def test_shard_round_trip_is_bit_exact(shard_dir: Path) -> None:
    generator = make_generator("multi_dsprites")
    batches = list(eval_batches(shard_dir, 16, resolution=32))
    frames0 = to_uint8(torch.cat([b.frame0 for b in batches]))
    frames1 = to_uint8(torch.cat([b.frame1 for b in batches]))
    masks0 = torch.cat([b.mask0 for b in batches]).numpy()
    masks1 = torch.cat([b.mask1 for b in batches]).numpy()
    factors = [f for b in batches for f in b.factors]
    assert len(factors) == NUM_PAIRS
    for i in (0, 13, NUM_PAIRS - 1):
        written = generator.pair(factors[i]["seed"], factors[i]["index"])
        assert factors[i]["index"] == i
        np.testing.assert_array_equal(frames0[i], written.frame0)
        np.testing.assert_array_equal(frames1[i], written.frame1)
        np.testing.assert_array_equal(masks0[i], written.mask0)
        np.testing.assert_array_equal(masks1[i], written.mask1)
        assert factors[i] == written.factors


def test_shard_layout_and_keys(shard_dir: Path) -> None:
    names = sorted(p.name for p in shard_dir.iterdir())
    assert names == [f"train-{i:06d}.tar" for i in range(NUM_PAIRS // PAIRS_PER_SHARD)]
    with tarfile.open(shard_dir / names[0]) as archive:
        members = archive.getnames()
    assert len(members) == PAIRS_PER_SHARD * len(data.SAMPLE_KEYS)
    assert {m.split(".", 1)[1] for m in members} == set(data.SAMPLE_KEYS)
    assert all("." not in m.split(".", 1)[0] for m in members)


def test_generation_does_not_depend_on_worker_count(tmp_path: Path) -> None:
    generator = make_generator("tetrominoes", changed_factors="random")
    one = write_split(generator, tmp_path / "one", "train", 12, 4, SEED, progress=False, num_workers=1)
    two = write_split(generator, tmp_path / "two", "train", 12, 4, SEED, progress=False, num_workers=2)
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]


def test_ensure_dataset_reuses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = dict(num_train=16, num_eval=8, pairs_per_shard=4, seed=SEED, progress=False, num_workers=1)
    with pytest.warns(UserWarning, match="train shards"):
        info = ensure_dataset("tetrominoes", {"changed_factors": 2}, tmp_path, **kwargs)
    assert len(info.train_shards) == 4 and len(info.eval_shards) == 2 and info.resolution == 35
    manifest = json.loads((info.root / "manifest.json").read_text())
    assert manifest["params"]["generator_config"]["changed_factors"] == 2
    mtimes = {p: os.stat(p).st_mtime_ns for p in info.train_shards + info.eval_shards}

    def must_not_write(*args, **kw):
        raise AssertionError("ensure_dataset regenerated a cached dataset")

    monkeypatch.setattr(shards_module, "write_split", must_not_write)
    again = ensure_dataset("tetrominoes", {"changed_factors": 2}, tmp_path, **kwargs)
    assert again.root == info.root and again.train_shards == info.train_shards
    assert mtimes == {p: os.stat(p).st_mtime_ns for p in again.train_shards + again.eval_shards}
    monkeypatch.undo()
    with pytest.warns(UserWarning):
        other = ensure_dataset("tetrominoes", {"changed_factors": 1}, tmp_path, **kwargs)
    assert other.root != info.root

    train_keys = {f["seed"][1] for b in eval_batches(info.train_shards, 8, 35) for f in b.factors}
    eval_pairs = [f for b in eval_batches(info.eval_shards, 8, 35) for f in b.factors]
    assert {f["seed"][1] for f in eval_pairs}.isdisjoint(train_keys), "train and eval use different seed streams"


@pytest.mark.filterwarnings("ignore:only 8 train shards")
def test_interrupted_generation_leaves_no_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write_split = shards_module.write_split

    def fail_on_eval(generator, out_dir, split, *args, **kw):
        if split == "eval":
            raise KeyboardInterrupt
        return real_write_split(generator, out_dir, split, *args, **kw)

    monkeypatch.setattr(shards_module, "write_split", fail_on_eval)
    kwargs = dict(num_train=8, num_eval=4, pairs_per_shard=1, seed=0, progress=False, num_workers=1)
    with pytest.raises(KeyboardInterrupt):
        ensure_dataset("tetrominoes", {}, tmp_path, **kwargs)
    assert list(tmp_path.iterdir()) == [], "nothing (not even a temporary directory) may be left behind"
    monkeypatch.undo()
    info = ensure_dataset("tetrominoes", {}, tmp_path, **kwargs)
    assert len(resolve_shards(info.root)) == 12


def test_cli_writes_shards_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["--generator", "multi_dsprites", "--num-pairs", "6", "--pairs-per-shard", "3", "--resolution", "64",
            "--changed-factors", "random", "--out-dir", str(tmp_path), "--no-progress"]
    assert make_shards_main(argv) == 0
    assert str(tmp_path) in capsys.readouterr().out
    batch = next(iter(eval_batches(tmp_path, 6, resolution=64)))
    assert batch.frame0.shape == (6, 3, 64, 64)
    assert make_shards_main(["--generator", "nope", "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown generator" in err


# --- loaders --------------------------------------------------------------------------


def test_train_batches_format(shard_dir: Path) -> None:
    batches = list(train_batches(shard_dir, 4, seed=0, epoch=0, batches_per_epoch=3, shuffle_buffer=8, num_workers=0, resolution=32))
    assert len(batches) == 3
    batch = batches[0]
    for name in ("frame0", "frame1"):
        frame = getattr(batch, name)
        assert frame.shape == (4, 3, 32, 32) and frame.dtype == torch.float32
        assert frame.min() >= -1.0 and frame.max() <= 1.0
        assert frame.min() == -1.0, "black background maps to -1"
    for name in ("mask0", "mask1"):
        assert getattr(batch, name).shape == (4, 32, 32) and getattr(batch, name).dtype == torch.int64
    assert len(batch.factors) == 4 and isinstance(batch.factors[0], dict)
    images, masks = batch.images_and_masks()
    assert images.shape == (8, 3, 32, 32) and masks.shape == (8, 32, 32)
    assert torch.equal(images[4:], batch.frame1) and torch.equal(masks[:4], batch.mask0)
    static = replace(batch, frame1=batch.frame0.clone(), mask1=batch.mask0.clone())
    images, masks = static.images_and_masks()  # static pairs (converted single images): each image once
    assert torch.equal(images, batch.frame0) and torch.equal(masks, batch.mask0)
    static.mask1[0, 0, 0] += 1  # same pixels but other ids: not static, both frames kept
    assert static.images_and_masks()[0].shape[0] == 8
    moved = batch.to("meta")  # the loop moves a batch once: every tensor goes, the records stay
    assert all(getattr(moved, name).device.type == "meta" for name in ("frame0", "frame1", "mask0", "mask1"))
    assert moved.factors is batch.factors and moved.keys is batch.keys and len(moved) == 4


@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_batches_are_deterministic(shard_dir: Path, num_workers: int) -> None:
    def keys(seed: int, epoch: int) -> list[list[str]]:
        loader = train_batches(shard_dir, 4, seed=seed, epoch=epoch, batches_per_epoch=6,
                               shuffle_buffer=16, num_workers=num_workers, resolution=32)
        return [b.keys for b in loader]

    first = keys(0, 1)
    assert len(first) == 6
    assert keys(0, 1) == first, "same (seed, epoch, num_workers) must give the same batches"
    assert keys(0, 2) != first and keys(1, 1) != first


def test_train_batches_leave_the_global_torch_rng_alone(shard_dir: Path) -> None:
    """Slot noise comes from the global RNG; a loader drawing from it would break exact resumption."""
    state = torch.get_rng_state()
    for _ in train_batches(shard_dir, 4, seed=0, epoch=0, batches_per_epoch=2, shuffle_buffer=8, resolution=32):
        pass
    assert torch.equal(torch.get_rng_state(), state)


def test_ranks_split_one_seeded_shard_stream(shard_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shards = resolve_shards(shard_dir)
    stream = SeededShardSampler(shards, seed=0, epoch=0)()
    drawn = [Path(next(stream)["url"]).name for _ in range(4)]
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        loader = train_batches(shard_dir, 4, seed=0, epoch=0, batches_per_epoch=4, shuffle_buffer=0, resolution=32)
        indices = [f["index"] for batch in loader for f in batch.factors]
        assert len(indices) == 16, "every rank gets exactly batches_per_epoch batches"
        # Unshuffled, rank r reads every other shard of the common stream, starting at r.
        expected = [f"train-{i // PAIRS_PER_SHARD:06d}.tar" for i in indices[::PAIRS_PER_SHARD]]
        assert expected == drawn[rank::2]


def test_stopping_early_releases_workers_quickly(shard_dir: Path) -> None:
    loader = train_batches(shard_dir, 2, seed=0, epoch=0, batches_per_epoch=50, shuffle_buffer=0, num_workers=1, resolution=32)
    iterator = iter(loader)
    next(iterator)
    started = time.perf_counter()
    iterator.close()  # what a `break` out of the training loop does
    assert time.perf_counter() - started < 2.0


def test_resumed_epoch_sees_the_same_batches(shard_dir: Path) -> None:
    def loader():
        return train_batches(shard_dir, 4, seed=3, epoch=2, batches_per_epoch=5, shuffle_buffer=8, num_workers=0, resolution=32)

    full = list(loader())
    resumed = [batch for step, batch in enumerate(loader()) if step >= 2]
    for a, b in zip(full[2:], resumed):
        assert torch.equal(a.frame0, b.frame0) and torch.equal(a.mask1, b.mask1)
        assert a.factors == b.factors


def test_eval_pass_covers_every_pair_once_in_order(shard_dir: Path) -> None:
    batches = list(eval_batches(f"{shard_dir}/train-{{000000..000004}}.tar", 6, resolution=32))
    assert [len(b.keys) for b in batches] == [6] * 6 + [4], "final partial batch is kept"
    indices = [f["index"] for b in batches for f in b.factors]
    assert indices == list(range(NUM_PAIRS))
    again = [f["index"] for b in eval_batches(shard_dir, 6, resolution=32) for f in b.factors]
    assert again == indices


def test_resolve_shards_accepts_all_spec_forms(shard_dir: Path) -> None:
    expected = sorted(str(p) for p in shard_dir.glob("*.tar"))
    assert resolve_shards(shard_dir) == expected
    assert resolve_shards(str(shard_dir / "train-*.tar")) == expected
    assert resolve_shards(str(shard_dir / "train-{000000..000004}.tar")) == expected
    assert resolve_shards([Path(p) for p in expected]) == expected
    assert resolve_shards("pipe:cat /no/such/{a,b}.tar") == ["pipe:cat /no/such/a.tar", "pipe:cat /no/such/b.tar"]


# --- bad input -> one DataError naming the file -----------------------------------------


def write_samples(path: Path, samples: list[dict]) -> Path:
    with wds.TarWriter(str(path), encoder=False) as sink:
        for sample in samples:
            sink.write(sample)
    return path


def good_sample(key: str, size: int = 32, mask_size: int | None = None) -> dict:
    pair = make_generator("multi_dsprites", resolution=size).pair(0, 0)
    sample = data.encode_pair(pair, key)
    if mask_size is not None:
        sample["mask1.png"] = encode_png(np.zeros((mask_size, mask_size), np.uint8))
    return sample


def first_eval_batch(spec, resolution: int = 32):
    return next(iter(eval_batches(spec, 4, resolution=resolution)))


def test_missing_path_directory_and_patterns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="shard not found: .*nothing-here.tar"):
        resolve_shards(str(tmp_path / "nothing-here.tar"))
    with pytest.raises(DataError, match=f"no shards .*in directory {tmp_path}"):
        resolve_shards(tmp_path)
    with pytest.raises(DataError, match="no shards match the pattern .*train-\\*.tar"):
        resolve_shards(str(tmp_path / "train-*.tar"))
    write_samples(tmp_path / "x-000000.tar", [good_sample("pair-0")])
    with pytest.raises(DataError, match="shard not found: .*x-000001.tar"):
        train_batches(str(tmp_path / "x-{000000..000001}.tar"), 2, seed=0, epoch=0, batches_per_epoch=1, resolution=32)


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty-000000.tar").write_bytes(b"")
    with pytest.raises(DataError, match="empty \\(0-byte\\).*empty-000000.tar"):
        first_eval_batch(tmp_path)


def truncated_copy(source: Path, target: Path, at_member_boundary: bool) -> Path:
    with tarfile.open(source) as archive:
        members = archive.getmembers()
    cut = members[7].offset if at_member_boundary else members[7].offset_data + 100
    target.write_bytes(source.read_bytes()[:cut])
    return target


@pytest.mark.parametrize("at_member_boundary", [True, False])
def test_truncated_tar_is_detected(shard_dir: Path, tmp_path: Path, at_member_boundary: bool) -> None:
    bad = truncated_copy(shard_dir / "train-000001.tar", tmp_path / "cut-000000.tar", at_member_boundary)
    with pytest.raises(DataError, match="cut-000000.tar.*truncated"):
        resolve_shards(bad)
    # A pipe url is not checked up front: the strict tar reader must catch it while streaming.
    with pytest.raises(DataError, match="cut-000000.tar.*truncated"):
        list(eval_batches(f"pipe:cat {shlex.quote(str(bad))}", 4, resolution=32))


def test_truncated_tar_in_a_worker_still_raises_data_error(shard_dir: Path, tmp_path: Path) -> None:
    bad = truncated_copy(shard_dir / "train-000001.tar", tmp_path / "cut-000000.tar", True)
    loader = train_batches([f"pipe:cat {shlex.quote(str(bad))}"], 2, seed=0, epoch=0, batches_per_epoch=20,
                           shuffle_buffer=0, num_workers=1, resolution=32)
    with pytest.raises(DataError, match="cut-000000.tar") as caught:
        list(loader)
    assert "Traceback" not in str(caught.value), "the worker's traceback is not repeated in the message"
    assert len(loader) == 20


def test_corrupt_tar_header(shard_dir: Path, tmp_path: Path) -> None:
    raw = bytearray((shard_dir / "train-000002.tar").read_bytes())
    with tarfile.open(shard_dir / "train-000002.tar") as archive:
        header_offset = archive.getmembers()[6].offset
    raw[header_offset : header_offset + 100] = os.urandom(100)
    bad = tmp_path / "garbled-000000.tar"
    bad.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="garbled-000000.tar.*corrupt"):
        list(eval_batches(bad, 4, resolution=32))
    (tmp_path / "garbled-000000.tar").write_bytes(os.urandom(4096) + bytes(1024))
    with pytest.raises(DataError, match="garbled-000000.tar"):
        list(eval_batches(bad, 4, resolution=32))


def test_sample_missing_a_key(tmp_path: Path) -> None:
    sample = good_sample("pair-0")
    del sample["mask1.png"]
    path = write_samples(tmp_path / "nokey-000000.tar", [sample])
    with pytest.raises(DataError, match="'pair-0' of shard .*nokey-000000.tar: missing key.*mask1.png"):
        first_eval_batch(path)


def test_wrong_image_size(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "big-000000.tar", [good_sample("pair-0", size=64)])
    with pytest.raises(DataError, match="big-000000.tar: key 'frame0.png' expected an image of size \\(32, 32\\), got \\(64, 64\\)"):
        first_eval_batch(path, resolution=32)
    loader = train_batches(path, 1, seed=0, epoch=0, batches_per_epoch=1, shuffle_buffer=0, resolution=32)
    with pytest.raises(DataError, match="big-000000.tar"):
        next(iter(loader))


def test_mask_shape_differs_from_images(tmp_path: Path) -> None:
    path = write_samples(tmp_path / "mask-000000.tar", [good_sample("pair-0", mask_size=16)])
    with pytest.raises(DataError, match="mask-000000.tar: key 'mask1.png' expected a mask of shape \\(32, 32\\).*got \\(16, 16\\)"):
        first_eval_batch(path, resolution=None)


def test_undecodable_image_and_wrong_mode(tmp_path: Path) -> None:
    sample = good_sample("pair-0")
    sample["frame1.png"] = b"not a png"
    path = write_samples(tmp_path / "junk-000000.tar", [sample])
    with pytest.raises(DataError, match="junk-000000.tar: key 'frame1.png' is not a readable PNG"):
        first_eval_batch(path)
    sample = good_sample("pair-0")
    buffer = io.BytesIO()
    Image.new("L", (32, 32)).save(buffer, format="PNG")
    sample["frame0.png"] = buffer.getvalue()
    path = write_samples(tmp_path / "mode-000000.tar", [sample])
    with pytest.raises(DataError, match="mode-000000.tar: key 'frame0.png' expected a RGB-mode"):
        first_eval_batch(path)
