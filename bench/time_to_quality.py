"""Time to object discovery: FG-ARI against wall-clock seconds for a training config, with the achieved
FLOP/s of its training step against this machine's measured matmul peak.

    python -m bench.time_to_quality                       # the default run
    python -m bench.time_to_quality train.max_steps=300   # any overrides of train_slots.py
    python -m bench.time_to_quality --mixed-precision bf16 data.resolution=64   # on a GPU

The peak is measured where training ran (the GPU if there is one) in the dtype it computed in (bf16 under
`--mixed-precision bf16`, else float32, which CUDA may run as TF32 if the user enabled it).

Writes `time_to_quality.csv` and `time_to_quality.png` into the run directory and prints a table.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from training.build import build_model
from training.config import RunConfig, load_run_config
from training.loop import run, wants_cpu
from viz.plots import plot_curve


def matmul_peak_gflops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                       size: int | None = None, repeats: int = 5) -> float:
    """Best observed GFLOP/s of a square matmul on `device` in `dtype`: the practical compute ceiling that
    the training step's achieved FLOP/s is compared with."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize()
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
    parser.add_argument("--eval-every", type=int, help="steps between FG-ARI measurements (default: the config's "
                        "train.eval_every, so the curve is the run's own)")
    parser.add_argument("--output-dir", default="bench_results")
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"],
                        help="as `accelerate launch --mixed_precision` (default: what the launcher set, else no)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = parser.parse_args(argv)

    if args.mixed_precision:  # read by Accelerator() inside the run, as `accelerate launch` would set it
        os.environ["ACCELERATE_MIXED_PRECISION"] = args.mixed_precision
    precision = os.environ.get("ACCELERATE_MIXED_PRECISION", "no")
    name = f"time_to_quality-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    every = [f"train.eval_every={args.eval_every}"] if args.eval_every else []
    overrides = [f"output_dir={args.output_dir}", f"name={name}", *every, *args.overrides]
    start = time.time()
    run_dir = Path(run(args.preset, None, None, overrides, start_time=start))
    config = load_run_config(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "eval_log.jsonl").read_text().splitlines()]
    with (run_dir / "time_to_quality.csv").open("w", newline="") as handle:
        unmerged = ["fg_ari_unmerged"] if rows and "fg_ari_unmerged" in rows[0] else []  # a model merging duplicates
        writer = csv.DictWriter(handle, fieldnames=["seconds", "step", "fg_ari", "ari", *unmerged])
        writer.writeheader()
        writer.writerows({key: row[key] for key in writer.fieldnames} for row in rows)
    plot_curve([row["seconds"] / 60 for row in rows], [row["fg_ari"] for row in rows], run_dir / "time_to_quality.png",
               "wall-clock minutes (data generation included)", "FG-ARI (first eval images)", f"{args.preset} run")

    steps_per_second = metrics["steps"] / metrics["train_seconds"]
    step_gflop = training_step_gflop(config)
    device = torch.device("cuda" if torch.cuda.is_available() and not wants_cpu() else "cpu")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
    peak = matmul_peak_gflops(device, dtype)
    achieved = step_gflop * steps_per_second
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n| minutes | step | FG-ARI |\n|---:|---:|---:|")
    for row in rows:
        print(f"| {row['seconds'] / 60:.1f} | {row['step']} | {row['fg_ari']:.3f} |")
    print(f"\nsteps/s {steps_per_second:.2f}; {step_gflop:.2f} GFLOP per step (forward + backward); "
          f"achieved {achieved:.1f} GFLOP/s = {achieved / peak:.1%} of the measured {str(dtype).removeprefix('torch.')} "
          f"matmul peak {peak:.1f} GFLOP/s ({where}, mixed precision {precision})")
    print(f"final FG-ARI {metrics['fg_ari']:.3f} on {metrics['eval_images']} images after "
          f"{metrics['total_seconds'] / 60:.1f} min; wrote {run_dir / 'time_to_quality.csv'} and .png")


if __name__ == "__main__":
    main()
