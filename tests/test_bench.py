"""The benchmark command runs and agrees with its oracle (no timing is asserted in tests)."""
from bench import speed


def test_speed_benchmark_prints_a_ratio_table_and_matches_sklearn(capsys):
    speed.main(["--resolution", "16", "--steps", "1", "--ari-images", "50"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| train") or line.startswith("| FG-ARI")]
    assert len(rows) == 3 and all(row.rstrip().endswith("x |") for row in rows)
    difference = float(out.split("FG-ARI over 50 images:")[1].split()[0])
    assert difference < 1e-9


def test_time_to_quality_writes_the_curve_and_flop_figures(tmp_path, capsys):
    from bench import time_to_quality

    time_to_quality.main(["--preset", "smoke", "--output-dir", str(tmp_path), "--eval-every", "2",
                          f"data.root={tmp_path / 'data'}"])
    run_dir = next(p for p in tmp_path.iterdir() if p.name.startswith("time_to_quality-smoke"))
    lines = (run_dir / "time_to_quality.csv").read_text().splitlines()
    assert lines[0] == "seconds,step,fg_ari,ari"
    assert [int(line.split(",")[1]) for line in lines[1:]] == [2, 4, 6]
    seconds = [float(line.split(",")[0]) for line in lines[1:]]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert (run_dir / "time_to_quality.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "GFLOP per step" in out and "of the measured float32 matmul peak" in out
    assert "mixed precision no" in out


def test_weak_slots_benchmark_times_every_variant_against_the_autoencoder(capsys):
    from bench import weak_slots

    weak_slots.main(["--steps", "1", "--rounds", "1", "data.resolution=16", "model.slot_dim=16",
                     "model.mlp_hidden_dim=16", "model.encoder_channels=8", "train.batch_size=2"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| training step")]
    names = [row.split(" | ")[0][2:] for row in rows[:-1]]
    assert [name.removesuffix(" (preset)") for name in names] == ["baseline: autoencoder, both frames",
                                                                   *weak_slots.VARIANTS]
    assert [name for name in names if name.endswith(" (preset)")] == ["Ada-GVAE, hungarian (preset)"]
    assert rows[0].endswith("| 1.00x |") and all(row.rstrip().endswith("x |") for row in rows)
    assert rows[-1].startswith("| slot matching alone")
