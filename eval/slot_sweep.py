"""How does object discovery move as the slot count (and iteration count) changes at test time?

    python -m eval.slot_sweep --run runs/<name> --num-slots 2 3 4 5 6 8 --iterations 3 5

Loads the run's config and last checkpoint, evaluates every (slots, iterations) setting on the run's
eval split, prints a table and writes slot_sweep.csv and slot_sweep.png (into the run directory
unless --out is given).
"""
from __future__ import annotations

import sys

from data import DataError, eval_batches
from eval.run_loading import load_trained_run, sweep_parser
from scoring.discovery import load_eval_set
from scoring.slot_sweep import format_table, sweep, write_sweep
from training.build import dataset_urls
from training.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__, "run directory written by train_slots.py")
    parser.add_argument("--seed", type=int, default=None, help="slot-initialisation seed (default: the run's eval seed)")
    args = parser.parse_args(argv)

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
