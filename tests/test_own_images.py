"""The whole path a user takes with their own pictures: a folder of PNG frames -> shards (`data.from_images`)
-> training with an existing preset -> evaluation without masks -> the slot sweep -> segmenting the folder
with the trained run (`eval.segment`, `eval.load_run`)."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import train_slots
from data.from_images import Images, import_frames
from eval import load_run
from eval.segment import main as segment_main
from eval.slot_sweep import main as slot_sweep_main

SMOKE_MODEL = ["model.num_slots=3", "model.slot_dim=16", "model.mlp_hidden_dim=32", "model.encoder_channels=8",
               "model.encoder_layers=2", "model.encoder_kernel=3", "model.decoder_channels=8",
               "model.decoder_kernel=3", "train.batch_size=4", "train.max_steps=4", "train.warmup_steps=1",
               "train.batches_per_epoch=2", "train.log_every=1", "train.eval_every=2", "train.eval_images=4",
               "train.checkpoint_every=2", "train.cpu_threads=1", "eval.batch_size=8", "eval.num_visualise=2",
               "eval.sweep_slots=[2, 4]", "data.shuffle_buffer=8"]


def moving_squares(folder: Path, count: int = 14, size: tuple[int, int] = (36, 28)) -> list[Path]:
    """A short 'video' as numbered PNGs: a red and a green square on black, moving a pixel per frame."""
    folder.mkdir(parents=True)
    paths = []
    for t in range(count):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[4:12, 2 + t: 10 + t] = (220, 40, 40)
        frame[16:24, 20 - t // 2: 28 - t // 2] = (40, 200, 60)
        path = folder / f"frame_{t:03d}.png"
        Image.fromarray(frame).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def trained_on_frames(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(frames folder, shards directory, run directory) of a run trained on imported frames."""
    from accelerate.state import AcceleratorState

    root = tmp_path_factory.mktemp("own_images")
    frames = root / "frames"
    moving_squares(frames)
    info = import_frames(Images(str(frames)), root / "shards", resolution=16, eval_fraction=0.3, progress=False)
    assert info.manifest["labelled"] is False and info.resolution == 16
    AcceleratorState._reset_state(reset_partial_state=True)
    code = train_slots.main(["--preset", "default", f"output_dir={root / 'runs'}", "name=frames",
                             f"data.train_shards={root / 'shards'}/train-*.tar",
                             f"data.eval_shards={root / 'shards'}/eval-*.tar", "data.resolution=16", *SMOKE_MODEL])
    AcceleratorState._reset_state(reset_partial_state=True)
    assert code == 0
    return frames, root / "shards", root / "runs" / "frames"


def test_training_on_imported_frames_reports_reconstruction_error_and_pictures(trained_on_frames):
    _, _, run = trained_on_frames
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["labelled"] is False
    assert 0 < metrics["mse"] < 4  # [-1, 1] pixels: at most 4
    for key in ("fg_ari", "ari", "mbo", "miou", "fg_ari_undefined_images"):
        assert key not in metrics, key  # no segmentation score against masks that do not exist
    assert [row["num_slots"] for row in metrics["slot_sweep"]] == [2, 3, 4]
    assert all("mse" in row and "fg_ari" not in row for row in metrics["slot_sweep"])
    for name in ("slots.png", "slot_sweep.png", "slot_sweep.csv"):
        assert (run / name).stat().st_size > 0, name
    header = (run / "slot_sweep.csv").read_text().splitlines()[0]
    assert header == "num_slots,num_iterations,mse"
    logged = [json.loads(line) for line in (run / "eval_log.jsonl").read_text().splitlines()]
    assert logged and all("mse" in record and "fg_ari" not in record for record in logged)


def test_the_slot_sweep_of_an_unlabelled_run_is_the_reconstruction_error(trained_on_frames, tmp_path, capsys):
    _, _, run = trained_on_frames
    assert slot_sweep_main(["--run", str(run), "--num-slots", "1", "5", "--out", str(tmp_path)]) == 0
    rows = (tmp_path / "slot_sweep.csv").read_text().splitlines()
    assert rows[0] == "num_slots,num_iterations,mse" and len(rows) == 3


def test_segmenting_the_frames_with_the_run_trained_on_them(trained_on_frames, tmp_path):
    frames, _, run = trained_on_frames
    out = tmp_path / "segments"
    assert segment_main(["--run", str(run), "--images", str(frames), "--out", str(out), "--num-slots", "4",
                         "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "segments.jsonl").read_text().splitlines()]
    assert len(records) == 14 and all(record["num_slots"] == 4 for record in records)
    assert records[0]["crop"] == {"left": 4, "top": 0, "size": 28}
    result = load_run(run).segment(sorted(frames.iterdir())[:3], num_slots=4)
    ids = np.asarray(Image.open(out / "ids" / "frame_000.png"))
    np.testing.assert_array_equal(ids, result.ids[0].numpy())  # the command and the API agree


def test_tasks_that_need_object_factors_refuse_unlabelled_shards(trained_on_frames, tmp_path, capsys):
    _, shards, _ = trained_on_frames
    code = train_slots.main(["--preset", "weak_slots", f"output_dir={tmp_path}", "name=refused",
                             f"data.train_shards={shards}/train-*.tar", f"data.eval_shards={shards}/eval-*.tar",
                             "data.resolution=16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "needs each object's factors" in err[-1] and "data.from_images" in err[-1]
