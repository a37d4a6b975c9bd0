"""Score a trained VAE run with every disentanglement metric at disentanglement_lib's sample sizes.

    python -m eval.disentangle --run runs/<name>                      # all metrics, dlib sizes
    python -m eval.disentangle --run runs/<name> --metrics mig dci

Training reports the observational metrics (MIG, DCI, SAP, modularity/explicitness) itself; the
intervention scores (BetaVAE, FactorVAE) need ~2M encoder calls at dlib's sizes (several minutes on a
laptop CPU), so they are computed here, on demand. Scores are merged into the run's metrics.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from eval.disentanglement.evaluate import ALL_METRICS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory written by train_slots.py (task vae)")
    parser.add_argument("--metrics", nargs="+", default=list(ALL_METRICS), choices=ALL_METRICS)
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory (default: the run's latest)")
    parser.add_argument("--importance-model", default=None, help="DCI importance model (default: the run's)")
    parser.add_argument("--seed", type=int, default=None, help="metric sampling seed (default: the run's)")
    args = parser.parse_args(argv)

    from data import DataError
    from eval.disentanglement import MetricInputError, evaluate_all
    from training.build import load_weights
    from training.checkpoint import list_checkpoints
    from training.config import ConfigError, load_run_config
    from training.tasks import make_task

    try:
        if not (args.run / "config.yaml").is_file():
            raise ConfigError(f"{args.run} is not a run directory (no config.yaml)")
        config = load_run_config(args.run)
        if config.task != "vae":
            raise ConfigError(f"{args.run} is a '{config.task}' run; disentanglement metrics score 'vae' runs")
        checkpoint = args.checkpoint or (list_checkpoints(args.run) or [None])[-1]
        if checkpoint is None:
            raise ConfigError(f"{args.run} has no checkpoints yet")
        task = make_task(config)
        model = task.build_model()
        load_weights(model, checkpoint)
        model.eval()
        start = time.time()
        scores = evaluate_all(task.source, task.representation_fn(model),
                              np.random.default_rng(config.vae.metric_seed if args.seed is None else args.seed),
                              metrics=args.metrics, sizes=config.vae.metric_sizes or None,
                              dci_importance_model=args.importance_model or config.vae.dci_importance_model)
    except (ConfigError, DataError, FileNotFoundError, MetricInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metrics_path = args.run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    metrics.update(scores)
    metrics_path.write_text(json.dumps(metrics, indent=2))
    width = max(map(len, scores))
    print("\n".join(f"{key:<{width}}  {value:.4f}" for key, value in scores.items()))
    print(f"checkpoint {checkpoint}; {(time.time() - start) / 60:.1f} min; merged into {metrics_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
