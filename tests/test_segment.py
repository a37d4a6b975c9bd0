"""Segmenting a user's images with a trained run: the Python API (`eval.load_run`), the command
(`python -m eval.segment`), what they write, and one-line errors for bad input; the automatic encoder strides
that let the default model read larger images."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import train_slots
from data.images import CropBox, fit_square
from eval import load_run
from eval.segment import ImageFile, main as segment_main, write_image
from eval.segmenter import Segmentation
from slots.encoder import auto_strides
from training.build import build_model
from training.config import ConfigError, build_config, load_yaml, preset_path


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    from accelerate.state import AcceleratorState

    root = tmp_path_factory.mktemp("segment")
    AcceleratorState._reset_state(reset_partial_state=True)
    assert train_slots.main(["--preset", "smoke", f"data.root={root / 'data'}", f"output_dir={root / 'runs'}",
                             "name=smoke", "train.eval_every=0"]) == 0
    AcceleratorState._reset_state(reset_partial_state=True)
    return root / "runs" / "smoke"


def write_images(folder: Path, count: int = 5, size: tuple[int, int] = (40, 30)) -> list[Path]:
    """Random RGB PNGs of `size` (width, height): contents do not matter to what is checked."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"frame{index}.png"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


# --- automatic encoder strides -----------------------------------------------------------------------------

@pytest.mark.parametrize("resolution, layers, expected", [
    (16, 4, (1, 1, 1, 1)), (32, 4, (1, 1, 1, 1)), (63, 4, (1, 1, 1, 1)), (64, 4, (2, 1, 1, 1)),
    (128, 4, (2, 2, 1, 1)), (100, 4, (2, 1, 1, 1)), (256, 2, (2, 2)),
])
def test_auto_strides_keep_the_feature_grid_between_32_and_63_wide(resolution, layers, expected):
    assert auto_strides(resolution, layers) == expected


@pytest.mark.parametrize("resolution, grid", [(32, (32, 32)), (64, (32, 32)), (128, (32, 32))])
def test_the_default_model_reads_larger_images_on_a_32x32_feature_grid(resolution, grid):
    config = build_config([load_yaml(preset_path("default")), {"data": {"resolution": resolution}}])
    model = build_model(config).eval()
    assert tuple(model.encoder.grid_size(resolution, resolution)) == grid
    images = torch.rand(2, 3, resolution, resolution) * 2 - 1
    with torch.no_grad():
        output = model(images)
    assert output.reconstruction.shape == images.shape
    assert output.masks.shape == (2, 7, resolution, resolution)
    torch.testing.assert_close(output.masks.sum(dim=1), torch.ones(2, resolution, resolution))


def test_encoder_strides_other_than_auto_a_list_or_null_are_refused():
    with pytest.raises(ConfigError, match="encoder_strides must be 'auto'"):
        build_config([{"model": {"encoder_strides": "half"}}])


# --- Python API ----------------------------------------------------------------------------------------------

def test_load_run_segments_files_arrays_and_tensors_alike(smoke_run, tmp_path):
    paths = write_images(tmp_path / "images", count=3)
    model = load_run(smoke_run)
    assert model.num_slots == 4 and model.resolution == 16
    from_files = model.segment(paths)
    assert from_files.masks.shape == (3, 4, 16, 16)
    torch.testing.assert_close(from_files.masks.sum(dim=1), torch.ones(3, 16, 16))
    assert torch.equal(from_files.ids, from_files.masks.argmax(dim=1))
    torch.testing.assert_close(from_files.areas().sum(dim=1), torch.ones(3, dtype=torch.float32))
    assert from_files.crops[0] == CropBox(5, 0, 30)  # the centred 30x30 square of a 40x30 image

    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    fitted = torch.from_numpy(np.stack([fit_square(a, 16) for a in arrays])).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(model.segment(arrays).masks, from_files.masks)
    assert torch.equal(model.segment([Image.open(p) for p in paths]).masks, from_files.masks)
    torch.testing.assert_close(model.segment(fitted).masks, from_files.masks)
    assert torch.equal(model.segment(paths, seed=0).masks, from_files.masks)  # reproducible


def test_the_slot_count_is_a_per_call_argument(smoke_run, tmp_path):
    paths = write_images(tmp_path / "images", count=2)
    model = load_run(smoke_run)
    for num_slots in (1, 2, 7):
        assert model.segment(paths, num_slots=num_slots).masks.shape == (2, num_slots, 16, 16)
    with pytest.raises(ValueError, match="num_slots must be >= 1, got 0"):
        model.segment(paths, num_slots=0)


def test_load_run_refuses_a_directory_without_a_checkpoint(smoke_run, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text((smoke_run / "config.yaml").read_text())
    with pytest.raises(ConfigError, match="has no checkpoints"):
        load_run(tmp_path / "run")
    with pytest.raises(ConfigError, match="not a run directory"):
        load_run(tmp_path)


def test_centroids_and_areas_of_a_hand_made_segmentation_in_file_coordinates(tmp_path):
    """One slot owns the single model pixel (row 2, column 5) of a 16x16 input cut from the centred 32x32
    square of a 48x32 file (left 8): that pixel is the file's 2x2 block at columns 18-19, rows 4-5, centre
    (18.5, 4.5)."""
    masks = torch.zeros(1, 2, 16, 16)
    masks[0, 1] = 1.0
    masks[0, 1, 2, 5], masks[0, 0, 2, 5] = 0.0, 1.0
    result = Segmentation(masks, torch.zeros(1, 3, 16, 16), None, [CropBox(8, 0, 32)])
    item = ImageFile(tmp_path / "x.png", "x", 48, 32, "RGB")
    record = write_image(item, result, 0, tmp_path / "out", "model")
    assert record["slots"][0]["centroid"] == [18.5, 4.5]
    assert record["slots"][0]["area"] == pytest.approx(1 / 256, abs=1e-6)  # rounded to 6 places
    assert record["slots"][0]["area_pixels"] == pytest.approx(4.0)
    assert record["slots"][1]["area"] == pytest.approx(255 / 256, abs=1e-6)
    ids = np.asarray(Image.open(tmp_path / "out" / "ids" / "x.png"))
    assert ids[2, 5] == 0 and (ids == 1).sum() == 255


# --- the command ---------------------------------------------------------------------------------------------

def test_segment_command_writes_ids_overlays_masks_and_records(smoke_run, tmp_path, capsys):
    paths = write_images(tmp_path / "images", count=3)
    Image.fromarray(np.full((20, 20), 128, np.uint8)).save(tmp_path / "images" / "grey.png")
    Image.fromarray(np.zeros((20, 20, 4), np.uint8)).save(tmp_path / "images" / "clear.png")
    (tmp_path / "images" / "notes.txt").write_text("not an image, and not looked at: wrong suffix")
    out = tmp_path / "out"
    assert segment_main(["--run", str(smoke_run), "--images", str(tmp_path / "images"), "--out", str(out),
                         "--num-slots", "3", "--batch-size", "2", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "2 image(s) were not 8-bit RGB (1 L, 1 RGBA" in err
    records = [json.loads(line) for line in (out / "segments.jsonl").read_text().splitlines()]
    assert [r["name"] for r in records] == ["clear", "frame0", "frame1", "frame2", "grey"]
    for record in records:
        name = record["name"]
        ids = np.asarray(Image.open(out / "ids" / f"{name}.png"))
        assert ids.shape == (16, 16) and ids.max() < 3
        assert Image.open(out / "overlay" / f"{name}.png").size == (16, 16)
        slot_masks = sorted((out / "masks" / name).iterdir())
        assert [p.name for p in slot_masks] == ["slot_00.png", "slot_01.png", "slot_02.png"]
        levels = np.stack([np.asarray(Image.open(p), dtype=np.float64) for p in slot_masks])
        np.testing.assert_allclose(levels.sum(axis=0), 255, atol=2)  # soft masks sum to 1 (rounded)
        assert sum(slot["area"] for slot in record["slots"]) == pytest.approx(1, abs=1e-4)
    assert records[1]["crop"] == {"left": 5, "top": 0, "size": 30}
    info = json.loads((out / "info.json").read_text())
    assert info["num_slots"] == 3 and info["images"] == 5 and info["resolution"] == 16

    crop_out = tmp_path / "crop"
    assert segment_main(["--run", str(smoke_run), "--images", str(paths[0]), "--out", str(crop_out),
                         "--size", "crop", "--no-progress"]) == 0
    assert Image.open(crop_out / "ids" / "frame0.png").size == (30, 30)
    assert Image.open(crop_out / "overlay" / "frame0.png").size == (30, 30)


def truncated_png(path: Path) -> None:
    """A PNG whose header reads but whose pixel data stops half way: it fails only when decoded."""
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("case, message", [
    ("not_an_image", "broken.png: not a readable image"),
    ("truncated", "truncated.png: not a readable image"),
    ("empty_folder", "no image files in"),
    ("no_match", "no files match"),
    ("zero_slots", "--num-slots must be >= 1, got 0"),
    ("no_checkpoint", "has no checkpoints yet"),
    ("out_not_empty", "exists and is not empty"),
])
def test_bad_input_is_one_line_and_writes_nothing(smoke_run, tmp_path, capsys, case, message):
    images = tmp_path / "images"
    write_images(images, count=3)
    run, out, extra = smoke_run, tmp_path / "out", []
    if case == "not_an_image":
        (images / "broken.png").write_text("this is text")
    elif case == "truncated":
        truncated_png(images / "truncated.png")
    elif case == "empty_folder":
        images = tmp_path / "nothing"
        images.mkdir()
    elif case == "no_match":
        images = tmp_path / "nowhere" / "*.png"
    elif case == "zero_slots":
        extra = ["--num-slots", "0"]
    elif case == "no_checkpoint":
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.yaml").write_text((smoke_run / "config.yaml").read_text())
    elif case == "out_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    capsys.readouterr()
    code = segment_main(["--run", str(run), "--images", str(images), "--out", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    if case == "out_not_empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"]
    else:
        assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # no staging left behind


def test_the_documented_python_example_runs(smoke_run, tmp_path, monkeypatch):
    """The Python block of docs/tasks/own_images.md, on two pictures and the smoke run."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "tasks" / "own_images.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'load_run("runs/<name>")' in code and "model.segment(" in code
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "pictures", count=2)
    (tmp_path / "pictures" / "frame0.png").rename(tmp_path / "b.png")
    Image.open(tmp_path / "pictures" / "frame1.png").save(tmp_path / "a.jpg")
    namespace: dict = {}
    exec(compile(code.replace("runs/<name>", str(smoke_run)), "own_images.md", "exec"), namespace)
    result = namespace["result"]
    assert result.masks.shape == (2, 5, 16, 16) and result.ids.shape == (2, 16, 16)
