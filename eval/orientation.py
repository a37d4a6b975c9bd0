"""Score a trained orientation-search VAE run again: the four experiments of its report (reconstruction with
and without the search, test-time recovery by family, consistency, the orientation probe), merged into the
run's metrics.json. For runs scored before a metric existed, or from another checkpoint.

    python -m eval.orientation --run runs/<name> [--checkpoint runs/<name>/checkpoints/step_00003000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from data import DataError
from eval.run_loading import load_trained_run, merge_metrics
from training.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory written by train_slots.py (task orientation)")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory (default: the run's latest)")
    args = parser.parse_args(argv)
    start = time.time()
    try:
        trained = load_trained_run(args.run, args.checkpoint, tasks=["orientation"])
        _, eval_urls, _ = trained.task.datasets(progress=False)
        scores = trained.task.experiment_metrics(trained.model, eval_urls)
    except (ConfigError, DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = merge_metrics(args.run, scores)
    print(json.dumps(scores, indent=2))
    print(f"checkpoint {trained.checkpoint}; {(time.time() - start) / 60:.1f} min; merged into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
