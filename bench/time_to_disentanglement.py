"""Time to disentanglement: DCI disentanglement and MIG of a VAE preset against wall-clock minutes of
training, beside a baseline preset trained for the same time in the same process, with steps/s and the
achieved FLOP/s of each training step against this machine's measured matmul peak.

    python -m bench.time_to_disentanglement                          # dsprites_vae vs dsprites_vae_dlib, 30 min each
    python -m bench.time_to_disentanglement --minutes 10 --presets dsprites_vae
    python -m bench.time_to_disentanglement train.seed=1              # overrides apply to every preset
    python -m bench.time_to_disentanglement --presets dsprites_vae --variants "fp32=train.mixed_precision=no" \
        "lr 1e-4=train.learning_rate=1e-4"                            # ablations: the first preset, one choice undone

Each preset trains until its own `train.max_steps` or `train.time_limit_minutes` = --minutes, whichever comes
first (a preset with a cosine learning rate is built for its step count: its rate reaches zero there), and
scores DCI (`vae.quick_dci_points` points, the run's importance model) and MIG every `--eval-every` steps;
the minutes on the curve leave out the time spent scoring, so they are what a run without the intermediate
scores takes. Writes
`time_to_disentanglement.csv` and `.png` into --output-dir and prints the curves, DCI at a third, two
thirds and all of the budget for each run (the ablation table), and steps/s, FLOP/s and final DCI with
ratios to the baseline (the last preset named).
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch
from accelerate.state import AcceleratorState
from torch.utils.flop_counter import FlopCounterMode

from bench.time_to_quality import matmul_peak_gflops
from data import PairBatch
from training.config import RunConfig, load_run_config
from training.loop import run, wants_cpu
from training.tasks import make_task
from viz.plots import plt

CURVE_COLUMNS = ("preset", "minutes", "step", "dci", "mig", "recon_loss")


def cell(value: float | None) -> str:
    """A score for the tables: '-' where the run did not compute it (e.g. vae.metrics without dci)."""
    return "-" if value is None else f"{value:.3f}"


def parse_variant(text: str) -> tuple[str, list[str]]:
    """'LABEL=section.key=value [section.key=value ...]' -> (label, overrides)."""
    label, _, overrides = text.partition("=")
    if not label or "=" not in overrides:
        raise argparse.ArgumentTypeError(f"a variant is LABEL=section.key=value [...], got {text!r}")
    return label.strip(), overrides.split()


def dci_at(rows: list[dict], minutes: float) -> float | None:
    """The DCI of the last evaluation at or before `minutes` of training (None before the first)."""
    earlier = [r for r in rows if r["minutes"] <= minutes + 1e-9]
    return earlier[-1]["dci"] if earlier else None


def vae_step_gflop(config: RunConfig) -> float:
    """FLOPs of one training step (forward + backward of the task's loss) on one batch of frame pairs."""
    task = make_task(config)
    model = task.build_model()
    side, size = config.data.resolution, config.train.batch_size
    frames = torch.rand(size, 3, side, side) * 2 - 1
    factors = [{"factor_names": ["shape"], "changed": [[0, "shape"]]}] * size
    batch = PairBatch.from_frames(frames, frames.flip(-1), factors=factors)
    with FlopCounterMode(display=False) as counter:
        task.training_loss(model, batch, 0)[0].backward()
    return counter.get_total_flops() / 1e9


def curve(run_dir: Path, preset: str) -> list[dict]:
    """Rows of the run's evaluations with minutes of training net of the evaluations before each row."""
    rows, spent = [], 0.0
    for line in (run_dir / "eval_log.jsonl").read_text().splitlines():
        record = json.loads(line)
        spent += record.get("eval_seconds", 0.0)
        minutes = (record.get("train_seconds", record["seconds"]) - spent) / 60
        rows.append({"preset": preset, "minutes": round(minutes, 3), "step": record["step"],
                     "dci": record.get("dci"), "mig": record.get("mig"), "recon_loss": record.get("recon_loss")})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for preset in dict.fromkeys(r["preset"] for r in rows):
        mine = [r for r in rows if r["preset"] == preset]
        for axis, key in zip(axes, ("dci", "mig"), strict=True):
            axis.plot([r["minutes"] for r in mine], [r[key] for r in mine], marker="o", label=preset)
    for axis, label in zip(axes, ("DCI disentanglement", "MIG"), strict=True):
        axis.set_xlabel("training minutes (scoring left out)")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["dsprites_vae", "dsprites_vae_dlib"],
                        help="VAE presets to time; the last is the baseline of the ratios")
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall clock per preset")
    parser.add_argument("--eval-every", type=int, default=1000, help="steps between DCI / MIG scores")
    parser.add_argument("--dci-points", type=int, default=5000,
                        help="points the intermediate DCI is fitted on (half as many more held out)")
    parser.add_argument("--variants", nargs="*", type=parse_variant, default=[], metavar="LABEL=OVERRIDES",
                        help="runs of the first preset with these overrides (e.g. one choice undone each)")
    parser.add_argument("--output-dir", default="bench_results")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value")
    args = parser.parse_args(argv)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    # variants first (they ablate the first preset), then the presets, the baseline last
    plan = [(label, args.presets[0], extra) for label, extra in args.variants]
    plan += [(preset, preset, []) for preset in args.presets]
    rows, summary = [], {}
    for label, preset, extra in plan:
        name = f"time_to_disentanglement-{label.replace(' ', '_')}-{stamp}"
        overrides = [f"output_dir={args.output_dir}", f"name={name}", f"train.eval_every={args.eval_every}",
                     f"train.time_limit_minutes={args.minutes}",
                     f"vae.quick_dci_points={args.dci_points}", *args.overrides, *extra]
        AcceleratorState._reset_state()  # each run may ask for its own mixed precision (the process stays)
        run_dir = Path(run(preset, None, None, overrides, start_time=time.time()))
        config = load_run_config(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows += curve(run_dir, label)
        summary[label] = {"steps_per_second": metrics["steps"] / metrics["train_seconds"],
                          "gflop_per_step": vae_step_gflop(config), "dci": metrics.get("dci_disentanglement"),
                          "mig": metrics.get("mig"), "run_dir": str(run_dir)}

    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "time_to_disentanglement.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "time_to_disentanglement.png")

    device = torch.device("cuda" if torch.cuda.is_available() and not wants_cpu() else "cpu")
    peak = matmul_peak_gflops(device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    baseline = summary[plan[-1][0]]
    print("\n| run | minutes | step | DCI | MIG |\n|---|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['preset']} | {row['minutes']:.1f} | {row['step']} | {cell(row['dci'])} | {cell(row['mig'])} |")
    marks = [args.minutes / 3, 2 * args.minutes / 3, args.minutes]
    print("\n| run | " + " | ".join(f"DCI at {m:.3g} min" for m in marks) + " |\n|---|" + "---:|" * len(marks))
    for label in summary:
        mine = [r for r in rows if r["preset"] == label]
        cells = [dci_at(mine, m) for m in marks]
        print(f"| {label} | " + " | ".join(cell(c) for c in cells) + " |")
    print(f"\n| run | steps/s | GFLOP/step | achieved GFLOP/s | of peak | final DCI | DCI vs baseline |"
          f"\n|---|---:|---:|---:|---:|---:|---:|")
    for preset, s in summary.items():
        achieved = s["gflop_per_step"] * s["steps_per_second"]
        ratio = s["dci"] / baseline["dci"] if s["dci"] is not None and baseline["dci"] else float("nan")
        print(f"| {preset} | {s['steps_per_second']:.2f} | {s['gflop_per_step']:.2f} | {achieved:.1f} | "
              f"{achieved / peak:.1%} | {cell(s['dci'])} | {ratio:.2f}x |")
    print(f"\nmatmul peak {peak:.1f} GFLOP/s float32 ({where}); {args.minutes:g} training minutes per preset; "
          f"wrote {out / 'time_to_disentanglement.csv'} and .png")
    return summary


if __name__ == "__main__":
    main()
