"""Score a trained VAE run's DCI disentanglement from only N labelled points, over several draws of them.

    python -m eval.few_labels --run runs/<name> --labels 100 1000 --draws 10

Draw d of N points is the same for every run (seeded by --seed + d), as one labelled set would be for every
model a user compares. The scores are merged into the run's metrics.json as `few_label_dci`
({"100": [score of draw 0, ...], ...}); `python -m studies.weak_vae --labels 100,1000` compares them across
runs (metrics.disentanglement.few_labels).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from data import DataError
from eval.run_loading import load_trained_run, merge_metrics, positive_int
from metrics.disentanglement import MetricInputError, sample_representations
from metrics.disentanglement.few_labels import few_label_dci
from training.config import ConfigError

#: Seed of draw 0 when --seed is not given; apart from the run's metric seed so few labels are fresh points.
DEFAULT_SEED = 1000


def score_draws(source, represent, num_labels: int, draws: int, seed: int, importance_model: str) -> list[float]:
    """DCI disentanglement from `num_labels` fresh labelled points, once per draw."""
    scores = []
    for draw in range(draws):
        rng = np.random.default_rng(seed + draw)
        reps, factors = sample_representations(source, represent, num_labels, rng, 256)
        scores.append(few_label_dci(reps, factors, importance_model, rng)["dci_disentanglement"])
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory written by train_slots.py (task vae)")
    parser.add_argument("--labels", type=positive_int, nargs="+", default=[100, 1000], help="labelled points")
    parser.add_argument("--draws", type=positive_int, default=10, help="draws of the labelled points per N")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of draw 0 (draw d: seed + d)")
    parser.add_argument("--importance-model", default=None, help="DCI importance model (default: the run's)")
    args = parser.parse_args(argv)
    try:
        trained = load_trained_run(args.run, tasks=["vae"])
        task, model = trained.task, trained.model
        importance = args.importance_model or trained.config.vae.dci_importance_model
        represent = task.representation_fn(model)
        scores = {str(n): score_draws(task.source, represent, n, args.draws, args.seed, importance)
                  for n in args.labels}
    except (ConfigError, DataError, FileNotFoundError, MetricInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    path = merge_metrics(args.run, {"few_label_dci": scores})
    for n, values in scores.items():
        print(f"{n:>5} labels: DCI disentanglement median {np.median(values):.3f} "
              f"(range {min(values):.3f}-{max(values):.3f}, {len(values)} draws)")
    print(f"merged into {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
