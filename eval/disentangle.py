"""Score a trained VAE run with every disentanglement metric at disentanglement_lib's sample sizes.

    python -m eval.disentangle --run runs/<name>                      # all metrics, dlib sizes
    python -m eval.disentangle --run runs/<name> --metrics mig dci

Training reports the observational metrics (MIG, DCI, SAP, modularity/explicitness) itself; the
intervention scores (BetaVAE, FactorVAE) need ~2M encoder calls at dlib's sizes (several minutes on a
laptop CPU), so they are computed here, on demand. Scores are merged into the run's metrics.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from data import DataError
from eval.run_loading import load_trained_run, merge_metrics
from metrics.disentanglement import ALL_METRICS, MetricInputError, evaluate_all
from training.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory written by train_slots.py (task vae)")
    parser.add_argument("--metrics", nargs="+", default=list(ALL_METRICS), choices=ALL_METRICS)
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory (default: the run's latest)")
    parser.add_argument("--importance-model", default=None, help="DCI importance model (default: the run's)")
    parser.add_argument("--seed", type=int, default=None, help="metric sampling seed (default: the run's)")
    args = parser.parse_args(argv)

    try:
        trained = load_trained_run(args.run, args.checkpoint, tasks=["vae"])
        config, task, model, checkpoint = trained.config, trained.task, trained.model, trained.checkpoint
        start = time.time()
        scores = evaluate_all(task.source, task.representation_fn(model),
                              np.random.default_rng(config.vae.metric_seed if args.seed is None else args.seed),
                              metrics=args.metrics, sizes=config.vae.metric_sizes or None,
                              dci_importance_model=args.importance_model or config.vae.dci_importance_model)
    except (ConfigError, DataError, FileNotFoundError, MetricInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metrics_path = merge_metrics(args.run, scores)
    width = max(map(len, scores))
    print("\n".join(f"{key:<{width}}  {value:.4f}" for key, value in scores.items()))
    print(f"checkpoint {checkpoint}; {(time.time() - start) / 60:.1f} min; merged into {metrics_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
