"""The multi-object dataset converter: fixtures written in the original TFRecord schema, exact checks.

Fixtures are written with the `tfrecord` package's writer (its own framing and checksums) and
GZIP-compressed like the published files. The schema table below is transcribed from the readers
of deepmind/multi_object_datasets, independently of `data.mod_schema`.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tfrecord.reader import tfrecord_iterator
from tfrecord.writer import TFRecordWriter

from data import DataError, decode_sample, load_dataset
from data.convert_mod import convert_tfrecord
from data.convert_mod import main as convert_main
from data.mod_schema import SCHEMAS
from data.palette import TETROMINO_COLOURS
from data.tetrominoes import Tetrominoes
from data.tfrecords import iter_records, masked_crc32c

# name -> (height, width, channels, entities, mask layout, per-entity factors {name: (kind, extra shape)}, visibility)
ORIGINAL = {
    "clevr_with_masks": (240, 320, 3, 11, "EHW1", {
        "x": ("float", ()), "y": ("float", ()), "z": ("float", ()), "pixel_coords": ("float", (3,)),
        "rotation": ("float", ()), "size": ("byte", ()), "material": ("byte", ()), "shape": ("byte", ()),
        "color": ("byte", ())}, True),
    "multi_dsprites_binarized": (64, 64, 1, 4, "HWE1", {
        "x": ("float", ()), "y": ("float", ()), "shape": ("float", ()), "color": ("float", (1,)),
        "orientation": ("float", ()), "scale": ("float", ())}, True),
    "multi_dsprites_colored_on_grayscale": (64, 64, 3, 6, "HWE1", {
        "x": ("float", ()), "y": ("float", ()), "shape": ("float", ()), "color": ("float", (3,)),
        "orientation": ("float", ()), "scale": ("float", ())}, True),
    "multi_dsprites_colored_on_colored": (64, 64, 3, 5, "HWE1", {
        "x": ("float", ()), "y": ("float", ()), "shape": ("float", ()), "color": ("float", (3,)),
        "orientation": ("float", ()), "scale": ("float", ())}, True),
    "tetrominoes": (35, 35, 3, 4, "EHW1", {
        "x": ("float", ()), "y": ("float", ()), "shape": ("float", ()), "color": ("float", (3,))}, True),
    "objects_room": (64, 64, 3, 7, "EHW1", {}, False),
    "objects_room_six_objects": (64, 64, 3, 10, "EHW1", {}, False),
    "objects_room_empty_room": (64, 64, 3, 4, "EHW1", {}, False),
    "objects_room_identical_color": (64, 64, 3, 10, "EHW1", {}, False),
}
ONE_BYTE = [bytes([value]) for value in range(256)]
pytestmark = pytest.mark.filterwarnings("ignore:only .* train shards")  # tiny fixtures, few shards by design


def byte_values(array: np.ndarray) -> list[bytes]:
    """A BytesList of one-byte strings, as the published files store uint8 tensors."""
    return [ONE_BYTE[v] for v in np.asarray(array, dtype=np.uint8).ravel().tolist()]


def write_tfrecord(path: Path, records: list[dict], compress: bool = True) -> Path:
    """Write examples {name: (values, 'byte'|'float')} with the tfrecord package, then GZIP the file."""
    raw = path.with_name(path.name + ".raw")
    writer = TFRecordWriter(str(raw))
    for record in records:
        writer.write(record)
    writer.close()
    if not compress:
        raw.rename(path)
        return path
    with open(raw, "rb") as source, gzip.open(path, "wb") as target:
        shutil.copyfileobj(source, target)
    raw.unlink()
    return path


def make_scene(name: str, rng: np.random.Generator, null_entities: tuple[int, ...] = ()) -> dict:
    """A random image, random per-pixel entity ids and random factors; null entities have no pixels."""
    height, width, channels, entities, _, factor_kinds, _ = ORIGINAL[name]
    present = [e for e in range(entities) if e not in null_entities]
    ids = rng.choice(present, size=(height, width)).astype(np.uint8)
    factors = {}
    for factor, (kind, extra) in factor_kinds.items():
        values = (rng.integers(1, 9, size=(entities, *extra)).astype(np.uint8) if kind == "byte"
                  else rng.standard_normal((entities, *extra)).astype(np.float32))
        values[list(null_entities)] = 0
        factors[factor] = values
    visibility = np.ones(entities, dtype=np.float32)
    visibility[list(null_entities)] = 0
    return {"image": rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8), "ids": ids,
            "factors": factors, "visibility": visibility}


def masks_of(name: str, ids: np.ndarray) -> np.ndarray:
    """0/255 entity masks in the dataset's stored layout."""
    entities, layout = ORIGINAL[name][3], ORIGINAL[name][4]
    one_hot = (ids[None] == np.arange(entities)[:, None, None]).astype(np.uint8) * 255  # [E, H, W]
    stored = one_hot if layout == "EHW1" else np.transpose(one_hot, (1, 2, 0))
    return np.ascontiguousarray(stored[..., None])


def record_of(name: str, scene: dict, masks: np.ndarray | None = None) -> dict:
    factor_kinds, has_visibility = ORIGINAL[name][5], ORIGINAL[name][6]
    record = {"image": (byte_values(scene["image"]), "byte"),
              "mask": (byte_values(masks_of(name, scene["ids"]) if masks is None else masks), "byte")}
    for factor, (kind, _) in factor_kinds.items():
        values = scene["factors"][factor]
        record[factor] = (byte_values(values), "byte") if kind == "byte" else (values.ravel().tolist(), "float")
    if has_visibility:
        record["visibility"] = (scene["visibility"].tolist(), "float")
    return record


def expected_frame_and_ids(name: str, scene: dict) -> tuple[np.ndarray, np.ndarray]:
    """Independent reference: torch's bilinear / nearest-exact resize for CLEVR, identity otherwise."""
    image, ids = scene["image"], scene["ids"]
    if image.shape[2] == 1:
        image = np.concatenate([image] * 3, axis=2)
    if name != "clevr_with_masks":
        return image, ids
    image, ids = image[29:221, 64:256], ids[29:221, 64:256]
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].double()
    resized = torch.nn.functional.interpolate(pixels, size=(128, 128), mode="bilinear", align_corners=False,
                                              antialias=False)
    frame = resized.round().clamp(0, 255)[0].permute(1, 2, 0).to(torch.uint8).numpy()
    id_map = torch.nn.functional.interpolate(torch.from_numpy(ids)[None, None].double(), size=(128, 128),
                                             mode="nearest-exact")
    return frame, id_map[0, 0].to(torch.uint8).numpy()


def expected_entities(name: str, scene: dict, ids: np.ndarray) -> list[dict]:
    factor_kinds, has_visibility = ORIGINAL[name][5], ORIGINAL[name][6]
    entities = []
    for entity in range(ORIGINAL[name][3]):
        values = {}
        for factor, (kind, _) in factor_kinds.items():
            value = scene["factors"][factor][entity]
            values[factor] = value.tolist() if kind == "byte" else (
                [float(v) for v in value] if value.ndim else float(value))
        visible = scene["visibility"][entity] > 0 if has_visibility else (scene["ids"] == entity).any()
        entities.append({**values, "visible": int(visible), "pixels": int((ids == entity).sum())})
    return entities


def read_samples(root: Path) -> list[dict]:
    """Every sample of a converted directory (train shards, then eval), decoded by the project's codec."""
    info = load_dataset(root)
    samples = []
    for shard in info.train_shards + info.eval_shards:
        grouped: dict[str, dict] = {}
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                key, extension = member.name.split(".", 1)
                grouped.setdefault(key, {"__key__": key, "__url__": shard})[extension] = tar.extractfile(member).read()
        samples += [decode_sample(sample, info.resolution) for sample in grouped.values()]
    return samples


@pytest.fixture(scope="module")
def tetrominoes_file(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Eight random Tetrominoes-schema records; record 2 has a null entity."""
    rng = np.random.default_rng(7)
    scenes = [make_scene("tetrominoes", rng, null_entities=(3,) if i == 2 else ()) for i in range(8)]
    path = write_tfrecord(tmp_path_factory.mktemp("tetro") / "tetrominoes_train.tfrecords",
                          [record_of("tetrominoes", s) for s in scenes])
    return path, scenes


# --- the reader ------------------------------------------------------------------------------


def test_reader_agrees_with_the_tfrecord_package(tetrominoes_file):
    path, _ = tetrominoes_file
    ours = list(iter_records(path))
    theirs = [bytes(view) for view in tfrecord_iterator(str(path), compression_type="gzip")]
    assert len(ours) == 8 and ours == theirs
    for data in (b"", b"abc", ours[0]):
        assert struct.pack("<I", masked_crc32c(data)) == TFRecordWriter.masked_crc(data)


# --- exact conversion of every dataset -------------------------------------------------------


def test_every_original_dataset_has_a_schema():
    assert list(SCHEMAS) == list(ORIGINAL)


@pytest.mark.parametrize("name", list(ORIGINAL))
def test_every_dataset_converts_exactly(name, tmp_path):
    rng = np.random.default_rng(len(name))
    entities = ORIGINAL[name][3]
    scenes = [make_scene(name, rng), make_scene(name, rng, null_entities=(entities - 1,)), make_scene(name, rng)]
    masks = [None, None, masks_of(name, scenes[2]["ids"])]
    masks[2].reshape(-1)[::7] = 0  # some pixels lose their entity: argmax over all-zero masks is entity 0
    path = write_tfrecord(tmp_path / f"{name}.tfrecords", [record_of(name, s, m) for s, m in zip(scenes, masks)])

    info = convert_tfrecord(name, path, tmp_path / "out", num_train=2, num_eval=1, pairs_per_shard=1,
                            progress=False, num_workers=1)
    resolution = 128 if name == "clevr_with_masks" else ORIGINAL[name][0]
    assert info.resolution == resolution and info.max_objects == entities - 1
    assert [Path(s).name for s in info.train_shards] == ["train-000000.tar", "train-000001.tar"]
    assert [Path(s).name for s in info.eval_shards] == ["eval-000000.tar"]
    assert info.manifest["factor_names"] == list(ORIGINAL[name][5])

    samples = read_samples(tmp_path / "out")
    assert [s["__key__"] for s in samples] == ["train-00000000", "train-00000001", "eval-00000000"]
    for record_index, (sample, scene) in enumerate(zip(samples, scenes)):
        if record_index == 2:
            stored = masks[2][..., 0] if ORIGINAL[name][4] == "EHW1" else np.transpose(masks[2][..., 0], (2, 0, 1))
            scene = {**scene, "ids": np.argmax(stored, axis=0).astype(np.uint8)}
            assert (scene["ids"] == 0).sum() > (scenes[2]["ids"] == 0).sum()
        frame, ids = expected_frame_and_ids(name, scene)
        np.testing.assert_array_equal(sample["frame0"], frame)
        np.testing.assert_array_equal(sample["mask0"], ids)
        np.testing.assert_array_equal(sample["frame1"], sample["frame0"])
        np.testing.assert_array_equal(sample["mask1"], sample["mask0"])
        factors = sample["factors"]
        background, *objects = expected_entities(name, scene, ids)
        assert factors["objects0"] == objects and factors["objects1"] == objects
        assert factors["background"] == background
        assert factors["k"] == 0 and factors["changed"] == []
        assert factors["num_objects"] == entities - 1
        assert factors["num_visible"] == sum(o["visible"] for o in objects)
        assert factors["index"] == (record_index if record_index < 2 else 0)
        assert factors["source"] == {"dataset": name, "file": path.name, "record": record_index}
        assert factors["generator"] == f"mod_{name}" and factors["resolution"] == resolution
    null_object = samples[1]["factors"]["objects0"][-1]  # kept in place, flagged
    assert null_object["visible"] == 0 and null_object["pixels"] == 0


def test_clevr_crop_keeps_objects_that_left_the_frame_flagged_visible(tmp_path):
    """A visible CLEVR object outside the crop keeps visible=1 with 0 pixels (nothing is renumbered)."""
    rng = np.random.default_rng(3)
    scene = make_scene("clevr_with_masks", rng)
    scene["ids"][:] = 0
    scene["ids"][0:10, 0:10] = 5  # top-left corner: outside rows 29:221 / cols 64:256
    scene["ids"][100:140, 100:140] = 2
    path = write_tfrecord(tmp_path / "clevr.tfrecords", [record_of("clevr_with_masks", scene)] * 2)
    convert_tfrecord("clevr_with_masks", path, tmp_path / "out", num_train=1, num_eval=1, pairs_per_shard=1,
                     progress=False, num_workers=1)
    objects = read_samples(tmp_path / "out")[0]["factors"]["objects0"]
    assert objects[4]["visible"] == 1 and objects[4]["pixels"] == 0
    _, ids = expected_frame_and_ids("clevr_with_masks", scene)
    assert objects[1]["pixels"] == (ids == 2).sum() > 0


# --- workers, filtering, CLI -----------------------------------------------------------------


def test_output_is_identical_for_any_number_of_workers(tetrominoes_file, tmp_path, monkeypatch):
    import data.convert_mod as convert_mod

    monkeypatch.setattr(convert_mod, "CHUNK_RECORDS", 2)  # several chunks in flight
    path, _ = tetrominoes_file
    for workers in (1, 2):
        convert_tfrecord("tetrominoes", path, tmp_path / f"w{workers}", num_train=5, num_eval=2, pairs_per_shard=2,
                         progress=False, num_workers=workers)
    names = sorted(p.name for p in (tmp_path / "w1").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "w2").iterdir())
    assert names == ["eval-000000.tar", "manifest.json", "train-000000.tar", "train-000001.tar", "train-000002.tar"]
    for name in names:
        if name.endswith(".tar"):
            assert (tmp_path / "w1" / name).read_bytes() == (tmp_path / "w2" / name).read_bytes(), name


def test_max_objects_skips_crowded_records(tmp_path):
    rng = np.random.default_rng(5)
    nulls = [(), (3,), (), (2, 3), (1,), (), (1, 2)]  # visible objects: 3, 2, 3, 1, 2, 3, 1
    path = write_tfrecord(tmp_path / "t.tfrecords",
                          [record_of("tetrominoes", make_scene("tetrominoes", rng, n)) for n in nulls])
    info = convert_tfrecord("tetrominoes", path, tmp_path / "out", num_train=2, num_eval=1, pairs_per_shard=1,
                            max_objects=2, progress=False, num_workers=1)
    samples = read_samples(tmp_path / "out")
    assert [s["factors"]["source"]["record"] for s in samples] == [1, 3, 4]
    assert [s["factors"]["num_visible"] for s in samples] == [2, 1, 2]
    assert info.max_objects == 2
    assert info.manifest["source"] == {"file": "t.tfrecords", "records_used": 5, "records_skipped": 2}


def test_cli_converts_reuses_and_refuses(tetrominoes_file, tmp_path, capsys):
    path, _ = tetrominoes_file
    argv = ["--dataset", "tetrominoes", "--tfrecord", str(path), "--out", str(tmp_path / "out"), "--num-train", "4",
            "--num-eval", "2", "--pairs-per-shard", "2", "--workers", "1", "--no-progress"]
    assert convert_main(argv) == 0
    assert "4 train + 2 eval tetrominoes images (35x35" in capsys.readouterr().out
    before = (tmp_path / "out" / "manifest.json").read_text()
    assert convert_main(argv) == 0 and (tmp_path / "out" / "manifest.json").read_text() == before  # reused
    other = [("3" if arg == "4" else arg) for arg in argv]  # other parameters, same directory
    assert convert_main(other) == 2
    assert "exists and is not a dataset with these parameters" in capsys.readouterr().err


# --- bad input -------------------------------------------------------------------------------


def tetromino_records(count: int = 3, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [record_of("tetrominoes", make_scene("tetrominoes", rng)) for _ in range(count)]


def convert_error(path: Path, tmp_path: Path, dataset: str = "tetrominoes", workers: int = 1) -> str:
    with pytest.raises(DataError) as caught:
        convert_tfrecord(dataset, path, tmp_path / "out", num_train=2, num_eval=1, pairs_per_shard=1,
                         progress=False, num_workers=workers)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")], "staging directory left behind"
    return str(caught.value)


@pytest.mark.parametrize("workers", [1, 2])
def test_missing_feature_names_file_record_and_feature(tmp_path, workers):
    records = tetromino_records()
    del records[1]["mask"]
    path = write_tfrecord(tmp_path / "bad.tfrecords", records)
    message = convert_error(path, tmp_path, workers=workers)
    assert message.startswith(f"{path}: record 1: feature 'mask' is missing (the record has color, image, shape,")


@pytest.mark.parametrize("feature,values,message", [
    ("mask", lambda r: (r["mask"][0][:-1], "byte"), "feature 'mask' expected 4*35*35*1 = 4900 bytes, got 4899"),
    ("image", lambda r: (r["image"][0] + [b"\x00"], "byte"), "feature 'image' expected 35*35*3 = 3675 bytes, got 3676"),
    ("x", lambda r: (r["x"][0][:3], "float"), "feature 'x' expected 4 floats, got 3"),
    ("color", lambda r: (r["color"][0][:11], "float"), "feature 'color' expected 4*3 = 12 floats, got 11"),
    ("x", lambda r: (byte_values(np.zeros(4)), "byte"), "feature 'x' expected a float_list, got bytes_list"),
    ("mask", lambda r: ([0.0] * 4900, "float"), "feature 'mask' expected a bytes_list, got float_list"),
])
def test_feature_of_the_wrong_size_or_type(tmp_path, feature, values, message):
    records = tetromino_records()
    records[2][feature] = values(records[2])
    path = write_tfrecord(tmp_path / "bad.tfrecords", records)
    assert convert_error(path, tmp_path) == f"{path}: record 2: {message}"


def test_one_byte_elements_and_one_joined_string_read_the_same(tmp_path):
    """The converter reads the files' one-byte-per-element lists; one joined string gives the same bytes."""
    records = tetromino_records()
    joined = [dict(r) for r in records]
    for record in joined:
        record["image"] = (b"".join(record["image"][0]), "byte")
        record["mask"] = (b"".join(record["mask"][0]), "byte")
    for label, recs in (("split", records), ("joined", joined)):
        (tmp_path / label).mkdir()
        source = write_tfrecord(tmp_path / label / "t.tfrecords", recs)
        convert_tfrecord("tetrominoes", source, tmp_path / label / "out", num_train=2, num_eval=1, pairs_per_shard=3,
                         progress=False, num_workers=1)
    shard = Path("out") / "train-000000.tar"
    assert (tmp_path / "split" / shard).read_bytes() == (tmp_path / "joined" / shard).read_bytes()


def test_corrupted_gzip_stream(tmp_path):
    path = write_tfrecord(tmp_path / "bad.tfrecords", tetromino_records(4))
    data = bytearray(path.read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    message = convert_error(path, tmp_path)
    assert message.startswith(f"{path}: ") and "corrupted" in message, message


def test_truncated_file(tmp_path):
    path = write_tfrecord(tmp_path / "bad.tfrecords", tetromino_records(4))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    message = convert_error(path, tmp_path)
    assert message.startswith(f"{path}: truncated GZIP stream: it ends inside record "), message


def test_file_that_is_not_gzip(tmp_path):
    path = write_tfrecord(tmp_path / "plain.tfrecords", tetromino_records(), compress=False)
    message = convert_error(path, tmp_path)
    assert message.startswith(f"{path}: corrupted GZIP stream at record 0") and "Not a gzipped file" in message


def frame(payload: bytes, payload_crc: int | None = None) -> bytes:
    """TFRecord framing built from the tfrecord package's checksum (optionally a wrong payload CRC)."""
    length = struct.pack("<Q", len(payload))
    crc = TFRecordWriter.masked_crc(payload) if payload_crc is None else struct.pack("<I", payload_crc)
    return length + TFRecordWriter.masked_crc(length) + payload + crc


@pytest.mark.parametrize("case,message", [
    ("checksum", "record 1: corrupted payload"),
    ("cut", "record 1: truncated payload: expected"),
    ("garbage", "record 1: not a tf.train.Example"),
])
def test_bad_framing_inside_a_valid_gzip_stream(tmp_path, case, message):
    good = TFRecordWriter.serialize_tf_example(tetromino_records(1)[0])
    if case == "checksum":
        stream = frame(good) + frame(good, payload_crc=12345)
    elif case == "cut":
        stream = frame(good) + frame(good)[:-100]
    else:
        stream = frame(good) + frame(b"\xff\xff\xff not a protobuf")
    path = tmp_path / "bad.tfrecords"
    path.write_bytes(gzip.compress(stream))
    assert convert_error(path, tmp_path).startswith(f"{path}: {message}")


def test_too_few_records_and_unknown_dataset(tetrominoes_file, tmp_path, capsys):
    path, _ = tetrominoes_file
    with pytest.raises(DataError, match=r"only 8 usable records \(8 read\); need 8 train \+ 1 eval"):
        convert_tfrecord("tetrominoes", path, tmp_path / "out", num_train=8, num_eval=1, progress=False,
                         num_workers=1)
    with pytest.raises(DataError, match="unknown multi-object dataset 'mnist'; known datasets: clevr_with_masks, "):
        convert_tfrecord("mnist", path, tmp_path / "out")
    assert convert_main(["--dataset", "mnist", "--tfrecord", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "unknown multi-object dataset 'mnist'" in capsys.readouterr().err
    with pytest.raises(DataError, match="TFRecord file not found: .*nowhere.tfrecords"):
        convert_tfrecord("tetrominoes", tmp_path / "nowhere.tfrecords", tmp_path / "out")


# --- end to end ------------------------------------------------------------------------------


def tetromino_record(generator: Tetrominoes, index: int) -> dict:
    """A record in the original schema rendered by our Tetrominoes generator (background + 3 pieces)."""
    pair = generator.pair([0], index)
    objects = pair.factors["objects0"]
    colours = np.zeros((4, 3), dtype=np.float32)
    colours[1:] = TETROMINO_COLOURS[[o["colour"] for o in objects]] / 255
    return {
        "image": (byte_values(pair.frame0), "byte"),
        "mask": (byte_values(masks_of("tetrominoes", pair.mask0)), "byte"),
        "x": ([0.0] + [float(o["x"]) for o in objects], "float"),
        "y": ([0.0] + [float(o["y"]) for o in objects], "float"),
        "shape": ([0.0] + [float(o["shape"]) for o in objects], "float"),
        "color": (colours.ravel().tolist(), "float"),
        "visibility": ([1.0] * 4, "float"),
    }


def test_converted_tetrominoes_train_through_the_entry_point(tmp_path):
    import train_slots

    generator = Tetrominoes()
    path = write_tfrecord(tmp_path / "tetrominoes_train.tfrecords", [tetromino_record(generator, i) for i in range(20)])
    out = tmp_path / "tetro"
    convert_tfrecord("tetrominoes", path, out, num_train=16, num_eval=4, pairs_per_shard=2, progress=False,
                     num_workers=1)
    args = [
        "--preset", "tetrominoes", f"data.train_shards={out}/train-*.tar", f"data.eval_shards={out}/eval-*.tar",
        f"output_dir={tmp_path / 'runs'}", "name=mod", "data.shuffle_buffer=8", "model.slot_dim=16",
        "model.mlp_hidden_dim=32", "model.encoder_channels=8", "model.encoder_layers=2", "model.encoder_kernel=3",
        "model.decoder_channels=8", "model.decoder_layers=2", "model.decoder_kernel=3", "train.batch_size=4",
        "train.max_steps=2", "train.warmup_steps=1", "train.batches_per_epoch=2", "train.eval_every=0",
        "train.eval_images=8", "train.checkpoint_every=2", "eval.sweep_slots=[4]", "eval.batch_size=8",
        "eval.num_visualise=1",
    ]
    assert train_slots.main(args) == 0
    metrics = json.loads((tmp_path / "runs" / "mod" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["num_slots"] == 4
    assert -1.0 <= metrics["fg_ari"] <= 1.0
