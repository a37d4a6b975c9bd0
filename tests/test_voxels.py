"""Voxel objects for the orientation-search VAEs: the seeded generator, its symmetry record, the shard format
and its cache, damage reporting, and the ModelNet10 converter on hand-written .off meshes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

import data.voxel_shards as voxel_shards
from data.convert_modelnet import convert_modelnet, main as convert_main, read_off, voxelise
from data.errors import DataError
from data.voxel_shards import (encode_voxels, ensure_voxel_dataset, generated_object, load_voxel_dataset, load_voxels,
                               write_voxel_split)
from data.voxels import FURNITURE_KINDS, VoxelObjects, grid_symmetry
from orientation import CUBE_GROUP_SIZE, rotate_voxels, symmetry_group

SIZE = 16


@pytest.fixture(scope="module")
def objects() -> list[tuple[np.ndarray, dict]]:
    generator = VoxelObjects(SIZE)
    return [generator.object(7, index) for index in range(200)]


# --- the generator ---------------------------------------------------------------------------------------
def test_an_object_is_a_pure_function_of_seed_and_index() -> None:
    generator = VoxelObjects(SIZE)
    for index in (0, 5, 123):
        first, record = generator.object(3, index)
        again, record_again = VoxelObjects(SIZE).object(3, index)
        assert np.array_equal(first, again) and record == record_again
    others = [generator.object(3, i)[0] for i in range(6)] + [generator.object(4, 0)[0]]
    assert len({grid.tobytes() for grid in others}) == len(others)  # a different index or seed, another object


def test_objects_are_non_empty_fit_the_grid_and_are_centred(objects) -> None:
    for grid, record in objects:
        assert grid.shape == (SIZE,) * 3 and grid.dtype == bool
        assert record["num_voxels"] == grid.sum() > 0
        for axis in range(3):  # one empty voxel at every border, bounding box centred to within half a voxel
            filled = np.nonzero(grid.any(axis=tuple(a for a in range(3) if a != axis)))[0]
            assert filled[0] >= 1 and filled[-1] <= SIZE - 2
            assert abs(filled[0] - (SIZE - 1 - filled[-1])) <= 1
            assert filled[-1] - filled[0] + 1 == record["extent"][axis]


def test_most_objects_have_no_rotational_symmetry_and_furniture_never(objects) -> None:
    free = [len(record["symmetry"]) == 1 for _, record in objects]
    assert np.mean(free) >= 0.8, f"only {np.mean(free):.2f} of the objects have no rotational symmetry"
    furniture = [record for _, record in objects if record["family"] == "furniture"]
    assert {record["kind"] for record in furniture} == set(FURNITURE_KINDS)
    assert all(record["symmetry"] == [0] for record in furniture), [r for r in furniture if r["symmetry"] != [0]]
    assert any(len(record["symmetry"]) > 1 for _, record in objects)  # symmetric polycubes are recorded as such


def test_the_recorded_symmetry_is_the_orientation_packages(objects) -> None:
    for grid, record in objects[:40] + [o for o in objects if len(o[1]["symmetry"]) > 1][:10]:
        assert record["symmetry"] == symmetry_group(torch.from_numpy(grid))


def test_a_centred_cube_has_all_24_symmetries_and_a_taller_box_the_4_turns_about_z() -> None:
    grid = np.zeros((SIZE,) * 3, dtype=bool)
    grid[4:12, 4:12, 4:12] = True
    assert grid_symmetry(grid) == list(range(CUBE_GROUP_SIZE)) == symmetry_group(torch.from_numpy(grid))
    grid[4:12, 4:12, 12] = True  # one layer taller (and off centre along z): only the turns about z are left
    turns = grid_symmetry(grid)
    assert len(turns) == 4 and turns == symmetry_group(torch.from_numpy(grid))
    assert all(torch.equal(rotate_voxels(torch.from_numpy(grid), g), torch.from_numpy(grid)) for g in turns)
    grid[4, 4, 4] = False  # a missing corner: no symmetry at all
    assert grid_symmetry(grid) == [0]
    bar = np.zeros((SIZE,) * 3, dtype=bool)
    bar[6:10, 6:10, 2:14] = True  # a centred square bar along z: the 8 rotations of a square prism
    assert len(grid_symmetry(bar)) == 8


def test_polycubes_only_and_bad_arguments() -> None:
    generator = VoxelObjects(SIZE, ("polycube",))
    kinds = {generator.object(0, i)[1]["kind"] for i in range(40)}
    assert kinds <= {"tetracube", "pentacube", "hexacube", "heptacube", "octacube"} and len(kinds) >= 3
    with pytest.raises(DataError, match="families"):
        VoxelObjects(SIZE, ("spaceship",))
    with pytest.raises(DataError, match="size"):
        VoxelObjects(4)


# --- shards ----------------------------------------------------------------------------------------------
def test_shard_round_trip_and_posed_copies(tmp_path: Path) -> None:
    generator = VoxelObjects(SIZE)
    paths = write_voxel_split(generator, tmp_path, "train", 25, 10, seed=5, progress=False, num_workers=1)
    assert [p.name for p in paths] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    loaded = load_voxels([str(p) for p in paths])
    assert len(loaded) == 25 and loaded.size == SIZE and loaded.canonical.dtype == torch.bool
    for index in range(25):
        grid, factors = generated_object(generator, "train", 5, index)
        assert np.array_equal(loaded.canonical[index].numpy(), grid)
        assert int(loaded.rotation[index]) == factors["rotation"] and loaded.kinds[index] == factors["kind"]
        assert loaded.symmetry[index] == factors["symmetry"]
    assert len(set(loaded.rotation.tolist())) > 5  # drawn per object, not one pose for all
    assert torch.equal(loaded.posed, rotate_voxels(loaded.canonical, loaded.rotation))
    assert not torch.equal(loaded.posed, loaded.canonical)
    # the same bytes whatever the number of worker processes
    again = write_voxel_split(generator, tmp_path / "two", "train", 25, 10, seed=5, progress=False, num_workers=2)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_ensure_reuses_the_cache_and_regenerates_damage(tmp_path: Path, monkeypatch, capsys) -> None:
    kwargs = dict(size=SIZE, num_train=12, num_eval=5, seed=1, objects_per_shard=5, progress=False, num_workers=1)
    calls = []
    real = voxel_shards._write_split

    def counting(*args, **kw):
        calls.append(args[2])
        return real(*args, **kw)

    monkeypatch.setattr(voxel_shards, "_write_split", counting)
    info = ensure_voxel_dataset(tmp_path, **kwargs)
    assert calls == ["train", "eval"] and len(info.train_shards) == 3 and len(info.eval_shards) == 1
    assert load_voxel_dataset(info.root).manifest == info.manifest
    mtimes = [Path(p).stat().st_mtime_ns for p in info.train_shards]
    again = ensure_voxel_dataset(tmp_path, **kwargs)
    assert calls == ["train", "eval"] and again.root == info.root  # reused: nothing written
    assert [Path(p).stat().st_mtime_ns for p in again.train_shards] == mtimes
    other = ensure_voxel_dataset(tmp_path, **{**kwargs, "seed": 2})
    assert other.root != info.root and len(calls) == 4
    assert len(load_voxels(info.eval_shards)) == 5
    # a flipped byte (same size) fails the sha256 check and is regenerated, byte for byte the same
    shard = Path(info.train_shards[0])
    original = shard.read_bytes()
    damaged = bytearray(original)
    damaged[600] ^= 0xFF
    shard.write_bytes(bytes(damaged))
    repaired = ensure_voxel_dataset(tmp_path, **kwargs)
    assert len(calls) == 6 and "failed verification" in capsys.readouterr().err
    assert Path(repaired.train_shards[0]).read_bytes() == original


def _write_samples(path: Path, samples: list[dict]) -> str:
    with wds.TarWriter(str(path), encoder=False) as sink:
        for sample in samples:
            sink.write(sample)
    return str(path)


@pytest.fixture()
def good_sample() -> dict:
    grid, factors = generated_object(VoxelObjects(SIZE), "train", 0, 0)
    return encode_voxels(grid, factors, "train-00000000")


@pytest.mark.parametrize("damage, message", [
    (lambda s: {**s, "voxels.bits": s["voxels.bits"][:-1]}, r"voxels\.bits expected 512 bytes .* got 511"),
    (lambda s: {k: v for k, v in s.items() if k != "voxels.bits"}, r"missing voxels\.bits"),
    (lambda s: {k: v for k, v in s.items() if k != "factors.json"}, r"missing factors\.json"),
    (lambda s: {**s, "factors.json": b"{not json"}, r"factors\.json is not valid JSON"),
    (lambda s: {**s, "factors.json": json.dumps({**json.loads(s["factors.json"]), "size": [16, 16, 8]}).encode()},
     r"size must be the side of a cubic grid.*\[16, 16, 8\]"),
    (lambda s: {**s, "factors.json": json.dumps({**json.loads(s["factors.json"]), "rotation": 24}).encode()},
     r"rotation must be an integer in 0\.\.23, got 24"),
])
def test_damaged_samples_name_the_shard_the_sample_and_the_key(tmp_path, good_sample, damage, message) -> None:
    url = _write_samples(tmp_path / "bad.tar", [damage(good_sample)])
    with pytest.raises(DataError, match=message) as caught:
        load_voxels([url])
    text = str(caught.value)
    assert "\n" not in text and "bad.tar" in text and "train-00000000" in text


def test_mixed_sizes_a_truncated_tar_and_no_urls_are_clear_errors(tmp_path, good_sample) -> None:
    grid, factors = generated_object(VoxelObjects(20), "train", 0, 1)
    url = _write_samples(tmp_path / "mixed.tar", [good_sample, encode_voxels(grid, factors, "train-00000001")])
    with pytest.raises(DataError, match=r"train-00000001.*size expected 16 .* got 20"):
        load_voxels(url)
    whole = Path(_write_samples(tmp_path / "whole.tar", [good_sample])).read_bytes()
    (tmp_path / "cut.tar").write_bytes(whole[:700])
    with pytest.raises(DataError, match="cut.tar"):
        load_voxels([str(tmp_path / "cut.tar")])
    with pytest.raises(DataError, match="no shard urls"):
        load_voxels([])


# --- ModelNet10 converter --------------------------------------------------------------------------------
def _off(vertices: list[tuple[float, float, float]], faces: list[tuple[int, ...]], glued: bool = False) -> str:
    header = f"OFF{len(vertices)} {len(faces)} 0\n" if glued else f"OFF\n{len(vertices)} {len(faces)} 0\n"
    return header + "".join(f"{x} {y} {z}\n" for x, y, z in vertices) + \
        "".join(f"{len(f)} {' '.join(map(str, f))}\n" for f in faces)


def _box(extent: tuple[float, float, float]) -> tuple[list, list]:
    vertices = [(x, y, z) for x in (0, extent[0]) for y in (0, extent[1]) for z in (0, extent[2])]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return vertices, faces


def _l_prism() -> tuple[list, list]:
    """An L (2 x 2 with the 1 x 1 corner at (1..2, 1..2) cut away), extruded 1 along z."""
    outline = [(0, 0), (2, 0), (2, 1), (1, 1), (1, 2), (0, 2)]
    vertices = [(x, y, 0.0) for x, y in outline] + [(x, y, 1.0) for x, y in outline]
    caps = [(0, 1, 2), (0, 2, 3), (0, 3, 4), (0, 4, 5)]  # fans from (0, 0), which sees the whole L
    faces = caps + [tuple(i + 6 for i in cap) for cap in caps]
    faces += [(i, (i + 1) % 6, (i + 1) % 6 + 6, i + 6) for i in range(6)]
    return vertices, faces


@pytest.fixture()
def modelnet(tmp_path: Path) -> Path:
    root = tmp_path / "ModelNet10"
    for name, split, shape, glued in (("box", "train", _box((2, 1, 1)), True), ("box", "test", _box((1, 1, 3)), False),
                                      ("ell", "train", _l_prism(), False)):
        (root / name / split).mkdir(parents=True, exist_ok=True)
        (root / name / split / f"{name}_0001.off").write_text(_off(*shape, glued=glued))
    return root


def _filled_extent(grid: np.ndarray) -> list[tuple[int, int]]:
    return [(int(a.min()), int(a.max())) for a in np.nonzero(grid)]


def test_a_glued_header_box_voxelises_filled_with_its_proportions(modelnet: Path) -> None:
    grid = voxelise(read_off(modelnet / "box" / "train" / "box_0001.off"), SIZE)
    (x0, x1), (y0, y1), (z0, z1) = _filled_extent(grid)
    lengths = (x1 - x0 + 1, y1 - y0 + 1, z1 - z0 + 1)
    assert lengths[0] == SIZE - 2 and x0 == 1  # the longest side fills the grid less a margin
    assert abs(lengths[0] / lengths[1] - 2) < 0.3 and lengths[1] == lengths[2]
    assert grid.sum() == np.prod(lengths)  # solid: the interior is filled, not just the surface


def test_an_l_prism_keeps_its_notch(modelnet: Path) -> None:
    grid = voxelise(read_off(modelnet / "ell" / "train" / "ell_0001.off"), SIZE)
    (x0, x1), (y0, y1), (z0, z1) = _filled_extent(grid)
    assert x1 - x0 == y1 - y0 == SIZE - 3 and 5 <= z1 - z0 + 1 <= 9

    def at(fx: float, fy: float) -> bool:
        return bool(grid[round(x0 + fx * (x1 - x0)), round(y0 + fy * (y1 - y0)), (z0 + z1) // 2])

    assert at(0.1, 0.1) and at(0.9, 0.1) and at(0.1, 0.9) and not at(0.85, 0.85)


def test_converter_writes_loadable_shards_and_reuses_them(modelnet: Path, tmp_path: Path) -> None:
    info = convert_modelnet(modelnet, tmp_path / "out", size=SIZE, progress=False)
    assert info.num_train == 2 and info.num_eval == 1 and info.manifest["eval_split"] == "test"
    train = load_voxels(info.train_shards)
    assert train.kinds == ["box", "ell"] and train.families == ["modelnet10"] * 2
    assert train.rotation.tolist() == [0, 0] and len(load_voxels(info.eval_shards)) == 1
    assert convert_modelnet(modelnet, tmp_path / "out", size=SIZE, progress=False).manifest == info.manifest
    only = convert_modelnet(modelnet, tmp_path / "chairs", size=SIZE, classes=["ell"], split="train", progress=False)
    assert only.num_train == 1 and only.eval_shards == []
    with pytest.raises(DataError, match="not a voxel data set with these parameters"):
        convert_modelnet(modelnet, tmp_path / "out", size=SIZE + 4, progress=False)


@pytest.mark.parametrize("text, message", [
    ("OFF\n8 6 0\n0 0 0\n1 1 1\n", "truncated OFF"),
    ("OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", "malformed OFF"),
    ("PLY\n3 1 0\n", "not an OFF file"),
    ("OFF\nthree one zero\n", "malformed OFF counts line"),
])
def test_a_malformed_off_is_one_line_naming_the_file(modelnet: Path, tmp_path: Path, capsys, text, message) -> None:
    bad = modelnet / "box" / "train" / "broken_0002.off"
    bad.write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_off(bad)
    assert str(bad) in str(caught.value) and "\n" not in str(caught.value)
    assert convert_main(["--root", str(modelnet), "--out", str(tmp_path / "out"), "--size", str(SIZE),
                         "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken_0002.off" in err and message in err
    assert not (tmp_path / "out").exists()  # nothing half-written under the output name


def test_no_off_files_or_unknown_class_is_a_clear_error(tmp_path: Path, modelnet: Path, capsys) -> None:
    (tmp_path / "empty" / "chair" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no \.off files under .*empty"):
        convert_modelnet(tmp_path / "empty", tmp_path / "out", size=SIZE, progress=False)
    assert convert_main(["--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "not a directory" in capsys.readouterr().err
    with pytest.raises(DataError, match=r"class\(es\) \['chair'\] not found .*\['box', 'ell'\]"):
        convert_modelnet(modelnet, tmp_path / "out", size=SIZE, classes=["chair"], progress=False)
