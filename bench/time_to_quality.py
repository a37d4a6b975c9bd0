"""Time to object discovery: FG-ARI against wall-clock seconds for a training config, with the achieved
FLOP/s of its training step against this machine's measured matmul peak.

    python -m bench.time_to_quality                       # the default run (about 15 minutes on 2 cores)
    python -m bench.time_to_quality train.max_steps=300   # any overrides of train_slots.py

Writes `time_to_quality.csv` and `time_to_quality.png` into the run directory and prints a table.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from eval.plots import plot_curve
from training.build import build_model
from training.config import RunConfig, load_run_config


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best observed float32 GFLOP/s of a square matmul: the machine's practical compute ceiling."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def training_step_gflop(config: RunConfig) -> float:
    """FLOPs of one forward + backward pass of the config's model on one training batch."""
    model = build_model(config)
    side = config.data.resolution
    images = torch.rand(2 * config.train.batch_size, 3, side, side) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(model(images).reconstruction, images).backward()
    return counter.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between FG-ARI measurements")
    parser.add_argument("--output-dir", default="bench_results")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = parser.parse_args(argv)

    from training.loop import run

    name = f"time_to_quality-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    overrides = [f"output_dir={args.output_dir}", f"name={name}", f"train.eval_every={args.eval_every}", *args.overrides]
    start = time.time()
    run_dir = Path(run(args.preset, None, None, overrides, start_time=start))
    config = load_run_config(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "eval_log.jsonl").read_text().splitlines()]
    with (run_dir / "time_to_quality.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["seconds", "step", "fg_ari", "ari"])
        writer.writeheader()
        writer.writerows({key: row[key] for key in writer.fieldnames} for row in rows)
    plot_curve([row["seconds"] / 60 for row in rows], [row["fg_ari"] for row in rows], run_dir / "time_to_quality.png",
               "wall-clock minutes (data generation included)", "FG-ARI (first eval images)", f"{args.preset} run")

    steps_per_second = metrics["steps"] / metrics["train_seconds"]
    step_gflop = training_step_gflop(config)
    peak = matmul_peak_gflops()
    achieved = step_gflop * steps_per_second
    print(f"\n| minutes | step | FG-ARI |\n|---:|---:|---:|")
    for row in rows:
        print(f"| {row['seconds'] / 60:.1f} | {row['step']} | {row['fg_ari']:.3f} |")
    print(f"\nsteps/s {steps_per_second:.2f}; {step_gflop:.2f} GFLOP per step (forward + backward); "
          f"achieved {achieved:.1f} GFLOP/s = {achieved / peak:.0%} of the measured matmul peak {peak:.1f} GFLOP/s")
    print(f"final FG-ARI {metrics['fg_ari']:.3f} on {metrics['eval_images']} images after "
          f"{metrics['total_seconds'] / 60:.1f} min; wrote {run_dir / 'time_to_quality.csv'} and .png")


if __name__ == "__main__":
    main()
