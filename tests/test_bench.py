"""The benchmark command runs and agrees with its oracle (no timing is asserted in tests)."""
from bench import speed


def test_speed_benchmark_prints_a_ratio_table_and_matches_sklearn(capsys):
    speed.main(["--resolution", "16", "--steps", "1", "--ari-images", "50"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| train") or line.startswith("| FG-ARI")]
    assert len(rows) == 2 and all(row.rstrip().endswith("x |") for row in rows)
    difference = float(out.split("FG-ARI over 50 images:")[1].split()[0])
    assert difference < 1e-9
