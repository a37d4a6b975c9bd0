"""data.from_images: a user's image folder or video -> frame-pair shards that the loader reads.

A tiny sequence (12 frames, 40x30, a square moving one pixel per frame) is written with PIL in a temporary
folder and converted at 16x16; the decoded pairs must be exactly ``fit_square`` of the expected source frames.
"""
from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from data import eval_batches, load_dataset
from data.from_images import Images, import_frames, main, shard_size
from data.images import fit_square

pytestmark = pytest.mark.filterwarnings("ignore:only .* train shards")

WIDTH, HEIGHT, RESOLUTION = 40, 30, 16


def moving_square(num_frames: int = 12) -> list[np.ndarray]:
    """uint8 [30, 40, 3] frames: a coloured square on black, one pixel further right each frame."""
    frames = []
    for t in range(num_frames):
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        frame[8:20, 6 + t: 18 + t] = (220, 120, 40)
        frame[24:28, 30:34] = (30, 200, 90)
        frames.append(frame)
    return frames


def write_frames(folder: Path, frames: list[np.ndarray], prefix: str = "frame") -> list[Path]:
    """PNG files named so that natural order is frame order (frame2 before frame10)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{prefix}{t}.png" for t in range(len(frames))]
    for path, frame in zip(paths, frames):
        Image.fromarray(frame).save(path)
    return paths


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Invert the loader's [-1, 1] scaling: float [B,3,H,W] -> uint8 [B,H,W,3]."""
    return ((frames + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def decoded_pairs(shards: list[str]) -> list[dict]:
    """Every pair of these shards, in order, as uint8 frames, masks, factors and static flag."""
    pairs = []
    for batch in eval_batches(shards, 4, resolution=RESOLUTION):
        frames0, frames1 = to_uint8(batch.frame0), to_uint8(batch.frame1)
        for i, factors in enumerate(batch.factors):
            pairs.append({"frame0": frames0[i], "frame1": frames1[i], "mask0": batch.mask0[i].numpy(),
                          "mask1": batch.mask1[i].numpy(), "factors": factors, "key": batch.keys[i],
                          "static": batch.is_static})
    return pairs


def assert_pairs(pairs: list[dict], frames: list[np.ndarray], names: list[str], indices: list[tuple[int, int]]
                 ) -> None:
    """The pairs are fit_square of frames (i, j), unlabelled, all background."""
    assert len(pairs) == len(indices)
    for pair, (i, j) in zip(pairs, indices):
        np.testing.assert_array_equal(pair["frame0"], fit_square(frames[i], RESOLUTION))
        np.testing.assert_array_equal(pair["frame1"], fit_square(frames[j], RESOLUTION))
        assert not pair["mask0"].any() and not pair["mask1"].any()
        assert pair["factors"] == {"unlabelled": True, "source": [names[i], names[j]], "objects": [], "changed": []}


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main([*argv, "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_consecutive_pairs_with_gap(tmp_path: Path) -> None:
    frames = moving_square()
    write_frames(tmp_path / "frames", frames)
    out = tmp_path / "shards"
    info = import_frames(Images(tmp_path / "frames"), out, resolution=RESOLUTION, gap=2, pairs_per_shard=3,
                         progress=False)
    # 12 frames: the last 10% (at least the 3 frames one gap-2 pair spans) are eval, the rest train.
    assert (info.num_train, info.num_eval) == (7, 1)
    assert len(info.train_shards) == 3 and len(info.eval_shards) == 1
    names = [f"frame{t}.png" for t in range(12)]
    assert_pairs(decoded_pairs(info.train_shards), frames, names, [(t, t + 2) for t in range(7)])
    assert_pairs(decoded_pairs(info.eval_shards), frames, names, [(9, 11)])
    manifest = load_dataset(out).manifest
    assert manifest == info.manifest
    assert manifest["labelled"] is False and manifest["num_frames"] == 12 and manifest["sources"] == names
    assert manifest["factor_names"] == [] and manifest["factor_sizes"] == {} and manifest["max_objects"] == 0
    params = manifest["params"]
    assert params["generator"] == "images" and params["source"] == "frames" and params["pairs"] == "consecutive"
    assert (params["resolution"], params["gap"], params["every"], params["max_frames"]) == (RESOLUTION, 2, 1, None)
    assert len(params["source_sha256"]) == 64
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_same_pairs_are_static(tmp_path: Path) -> None:
    frames = moving_square()
    write_frames(tmp_path / "photos", frames, prefix="img")
    info = import_frames(Images(str(tmp_path / "photos" / "*.png")), tmp_path / "shards", resolution=RESOLUTION,
                         pairs="same", eval_fraction=0.25, progress=False)
    assert (info.num_train, info.num_eval) == (9, 3)
    assert info.manifest["params"]["shard_size"] == 1 and len(info.train_shards) == 9  # fewer than 10 pairs: 1 each
    names = [f"img{t}.png" for t in range(12)]
    train, evals = decoded_pairs(info.train_shards), decoded_pairs(info.eval_shards)
    assert_pairs(train, frames, names, [(t, t) for t in range(9)])
    assert_pairs(evals, frames, names, [(t, t) for t in range(9, 12)])
    assert all(pair["static"] for pair in train + evals)


def test_identical_rerun_reuses_and_other_options_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_frames(tmp_path / "frames", moving_square())
    out = tmp_path / "shards"
    argv = ["--images", str(tmp_path / "frames"), "--out", str(out), "--resolution", str(RESOLUTION)]
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    assert stdout.count("\n") == 1 and "9 train + 1 eval pairs" in stdout
    assert (f"accelerate launch train_slots.py data.train_shards='{out}/train-*.tar' "
            f"data.eval_shards='{out}/eval-*.tar' data.resolution={RESOLUTION}") in stdout
    info = load_dataset(out)
    mtimes = {p: os.stat(p).st_mtime_ns for p in info.train_shards + info.eval_shards}

    def no_decoding(*args, **kwargs):
        raise AssertionError("an identical re-run decoded the frames again")

    monkeypatch.setattr(Images, "read", no_decoding)
    assert run(argv, capsys)[0] == 0
    assert mtimes == {p: os.stat(p).st_mtime_ns for p in info.train_shards + info.eval_shards}
    code, _, stderr = run([*argv, "--gap", "2"], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "exists and is not a dataset with these parameters" in stderr


def test_grey_and_rgba_images_are_converted(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("RGB", (WIDTH, HEIGHT), (10, 20, 30)).save(folder / "f0.png")
    Image.new("L", (WIDTH, HEIGHT), 77).save(folder / "f1.png")
    Image.new("RGBA", (WIDTH, HEIGHT), (200, 100, 50, 128)).save(folder / "f2.png")
    Image.new("RGB", (WIDTH, HEIGHT), (40, 50, 60)).save(folder / "f3.png")
    out = tmp_path / "shards"
    code, _, stderr = run(["--images", str(folder), "--out", str(out), "--resolution", str(RESOLUTION)], capsys)
    assert code == 0
    notes = [line for line in stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "2 image(s) were not 8-bit RGB" in notes[0] and "1 L" in notes[0] \
        and "1 RGBA" in notes[0]
    info = load_dataset(out)
    pairs = decoded_pairs(info.train_shards + info.eval_shards)  # (0, 1) train, (2, 3) eval
    assert [p["factors"]["source"] for p in pairs] == [["f0.png", "f1.png"], ["f2.png", "f3.png"]]
    assert (pairs[0]["frame1"] == 77).all()  # grey made RGB
    # alpha 128 composited on black: round(c * 128 / 255)
    assert (pairs[1]["frame0"] == np.array([100, 50, 25], np.uint8)).all()


def test_mixed_sizes_are_allowed_and_reported_with_same_pairs(tmp_path: Path, capsys: pytest.CaptureFixture
                                                              ) -> None:
    folder = tmp_path / "photos"
    write_frames(folder, moving_square(3))
    Image.new("RGB", (24, 48), (90, 90, 90)).save(folder / "frame3.png")
    out = tmp_path / "shards"
    code, _, stderr = run(["--images", str(folder), "--out", str(out), "--resolution", str(RESOLUTION),
                           "--pairs", "same"], capsys)
    assert code == 0
    notes = [line for line in stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "2 different sizes" in notes[0] and "40x30 (3)" in notes[0]
    pairs = decoded_pairs(load_dataset(out).eval_shards)
    assert len(pairs) == 1 and (pairs[0]["frame0"] == 90).all()


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """case -> (argv, fragments the one error line must contain)."""
    good = tmp_path / "good"
    write_frames(good, moving_square())
    (tmp_path / "empty").mkdir()
    with_text = tmp_path / "with_text"
    write_frames(with_text, moving_square(4))
    (with_text / "frame2b.png").write_text("not a picture")
    mixed = tmp_path / "mixed"
    write_frames(mixed, moving_square(4))
    Image.new("RGB", (50, 30)).save(mixed / "frame2b.png")
    few = tmp_path / "few"
    write_frames(few, moving_square(3))
    (tmp_path / "notes.txt").write_text("a text file given as a video")
    images = ["--images", str(good)]
    return {
        "empty folder": (["--images", str(tmp_path / "empty")], ["no image files in", "empty"]),
        "glob matching nothing": (["--images", str(tmp_path / "good" / "*.jpg")], ["no files match", "*.jpg"]),
        "not an image": (["--images", str(with_text)], ["frame2b.png", "not a readable image"]),
        "mixed sizes": (["--images", str(mixed)], ["frame0.png is 40x30", "frame2b.png is 50x30", "--pairs same"]),
        "too few frames": (["--images", str(few)], ["3 frame(s)", "at least 4"]),
        "resolution": ([*images, "--resolution", "4"], ["resolution must be at least 8"]),
        "gap": ([*images, "--gap", "0"], ["gap must be at least 1"]),
        "eval fraction 0": ([*images, "--eval-fraction", "0"], ["eval fraction"]),
        "eval fraction 1": ([*images, "--eval-fraction", "1"], ["eval fraction"]),
        "not a video": (["--video", str(tmp_path / "notes.txt")], ["notes.txt", "not a readable video"]),
        "missing video": (["--video", str(tmp_path / "missing.mp4")], ["missing.mp4", "no such video file"]),
    }


BAD_CASES = ["empty folder", "glob matching nothing", "not an image", "mixed sizes", "too few frames", "resolution",
             "gap", "eval fraction 0", "eval fraction 1", "not a video", "missing video"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_one_line_and_writes_nothing(case: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv, fragments = _bad_inputs(tmp_path)[case]
    out = tmp_path / "out"
    code, stdout, stderr = run([*argv[:2], "--out", str(out), "--resolution", "16", *argv[2:]], capsys)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)
    assert not out.exists()
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def write_video(path_stem: Path, frames: list[np.ndarray]) -> Path:
    """A lossless video of these frames: H.264 RGB at crf 0 in .mp4 where PyAV has it, else FFV1 in .mkv."""
    try:
        av.codec.Codec("libx264rgb", "w")
        path, codec, pix_fmt, options = path_stem.with_suffix(".mp4"), "libx264rgb", "rgb24", {"crf": "0"}
    except Exception:  # a PyAV build without x264: FFV1 is part of FFmpeg itself
        path, codec, pix_fmt, options = path_stem.with_suffix(".mkv"), "ffv1", "bgr0", {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt, stream.options = WIDTH, HEIGHT, pix_fmt, options
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_video_every_second_frame(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frames = moving_square()
    video = write_video(tmp_path / "clip", frames)
    out = tmp_path / "shards"
    code, stdout, _ = run(["--video", str(video), "--out", str(out), "--resolution", str(RESOLUTION),
                           "--every", "2"], capsys)
    assert code == 0 and "3 train + 1 eval pairs" in stdout
    info = load_dataset(out)
    kept = list(range(0, 12, 2))  # 6 frames: 4 train (3 pairs), 2 eval (1 pair)
    assert info.manifest["num_frames"] == 6 and info.manifest["params"]["generator"] == "video"
    assert info.manifest["sources"] == [f"{video.name}#frame={t}" for t in kept]
    pairs = decoded_pairs(info.train_shards + info.eval_shards)
    assert [p["factors"]["source"] for p in pairs] == [[f"{video.name}#frame={t}", f"{video.name}#frame={t + 2}"]
                                                       for t in (0, 2, 4, 8)]
    for pair, t in zip(pairs, (0, 2, 4, 8)):
        for frame, index in ((pair["frame0"], t), (pair["frame1"], t + 2)):
            expected = fit_square(frames[index], RESOLUTION).astype(int)
            assert np.abs(frame.astype(int) - expected).max() <= 3
        assert not pair["mask0"].any()

    code, stdout, _ = run(["--video", str(video), "--out", str(tmp_path / "first5"), "--resolution",
                           str(RESOLUTION), "--max-frames", "5"], capsys)
    assert code == 0 and load_dataset(tmp_path / "first5").manifest["num_frames"] == 5


@pytest.mark.parametrize("num_train, expected", [(3, 1), (10, 1), (100, 10), (9_999, 999), (25_000, 1_000)])
def test_default_shard_size_gives_ten_train_shards_of_at_most_1000_pairs(num_train, expected):
    assert shard_size(num_train) == expected
