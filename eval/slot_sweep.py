"""How does object discovery move as the slot count (and iteration count) changes at test time?

    python -m eval.slot_sweep --run runs/<name> --num-slots 2 3 4 5 6 8 --iterations 3 5

Loads the run's config and last checkpoint, evaluates every (slots, iterations) setting on the run's
eval split, prints a table and writes slot_sweep.csv and slot_sweep.png (into the run directory
unless --out is given).
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import torch

from eval.discovery import evaluate_discovery, load_eval_set
from eval.plots import plot_slot_sweep
from eval.run_loading import load_trained_run, sweep_parser

COLUMNS = ("num_slots", "num_iterations", "fg_ari", "ari", "mbo", "miou")
#: reported too by a model that merges duplicate slots: FG-ARI of its masks before merging
UNMERGED = "fg_ari_unmerged"


def columns(rows: list[dict]) -> tuple[str, ...]:
    return COLUMNS + ((UNMERGED,) if rows and UNMERGED in rows[0] else ())


def sweep(
    model: torch.nn.Module,
    eval_set: list[tuple[torch.Tensor, torch.Tensor]],
    slot_counts: list[int],
    iteration_counts: list[int],
    seed: int = 0,
    progress: bool = False,
) -> list[dict]:
    """One row of metrics per (slot count, iteration count): every key of `evaluate_discovery`."""
    rows = []
    for iterations in iteration_counts:
        for num_slots in slot_counts:
            metrics = evaluate_discovery(model, eval_set, num_slots, iterations, seed=seed)
            rows.append(metrics)
            if progress:
                print(f"  slots={num_slots} iterations={iterations} fg_ari={metrics['fg_ari']:.3f}", file=sys.stderr)
    return rows


def format_table(rows: list[dict]) -> str:
    names = columns(rows)
    header = " | ".join(f"{c:>15}" for c in names)
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(" | ".join(f"{row[c]:>15}" if isinstance(row[c], int) else f"{row[c]:>15.4f}" for c in names))
    return "\n".join(lines)


def write_sweep(rows: list[dict], out_dir: Path, train_slots: int | None = None) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / "slot_sweep.csv", out_dir / "slot_sweep.png"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns(rows), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    plot_slot_sweep(rows, png_path, train_slots)
    return csv_path, png_path


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__, "run directory written by train_slots.py")
    parser.add_argument("--seed", type=int, default=None, help="slot-initialisation seed (default: the run's eval seed)")
    args = parser.parse_args(argv)

    from data import DataError, eval_batches
    from training.build import dataset_urls
    from training.config import ConfigError

    try:
        trained = load_trained_run(args.run, args.checkpoint, tasks=["discovery", "dinosaur", "weak_slots"])
        config, model, checkpoint = trained.config, trained.model, trained.checkpoint
        _, eval_urls, _ = dataset_urls(config, progress=False)
        eval_set = load_eval_set(
            eval_batches(eval_urls, config.eval.batch_size, resolution=config.data.resolution), args.max_images
        )
    except (ConfigError, DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    iterations = args.iterations or [config.model.num_iterations]
    seed = config.eval.seed if args.seed is None else args.seed
    print(f"checkpoint {checkpoint}, {sum(len(i) for i, _ in eval_set)} eval images", file=sys.stderr)
    rows = sweep(model, eval_set, args.num_slots, iterations, seed=seed, progress=True)
    print(format_table(rows))
    csv_path, png_path = write_sweep(rows, args.out or args.run, config.model.num_slots)
    print(f"wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
