"""Set-prediction evaluation of a slot model: AP at every distance threshold, for any test-time slot count.

    python -m eval.set_prediction --run runs/<name> --num-slots 2 3 4 5 6 8 --iterations 3 5

loads a set-prediction run's config and last checkpoint, prints the AP table and writes
set_prediction_sweep.csv / .png (into the run directory unless --out is given).
"""
from __future__ import annotations

import sys

from data import DataError, eval_batches
from eval.run_loading import load_trained_run, sweep_parser
from scoring.set_prediction import format_table, load_property_eval_set, sweep, write_sweep
from training.build import dataset_urls
from training.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = sweep_parser(__doc__, "run directory of a set-prediction run")
    args = parser.parse_args(argv)

    try:
        trained = load_trained_run(args.run, args.checkpoint, tasks=["set_prediction"])
        config, task, model, checkpoint = trained.config, trained.task, trained.model, trained.checkpoint
        _, eval_urls, _ = dataset_urls(config, progress=False)
        eval_set = load_property_eval_set(eval_batches(eval_urls, config.eval.batch_size, config.data.resolution),
                                          task.layout, args.max_images)
    except (ConfigError, DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    iterations = args.iterations or [config.model.num_iterations]
    rows = sweep(model, eval_set, task.layout, args.num_slots, iterations, seed=config.eval.seed)
    print(f"checkpoint {checkpoint}, {rows[0]['images']} eval images, {rows[0]['objects']} objects")
    print(format_table(rows))
    csv_path, png_path = write_sweep(rows, args.out or args.run, config.model.num_slots)
    print(f"wrote {csv_path} and {png_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
