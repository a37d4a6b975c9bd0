"""Per-object disentanglement of a trained run (scoring/per_object.py: how objects are matched and scored).

Runs of task weak_slots are scored at the end of training; any slot run (the plain autoencoder too) can be
scored afterwards, merged into its metrics.json:

    python -m eval.per_object --run runs/<name> [--max-images 500] [--vector-only] [--readout]

`--readout` adds, per true factor, how well DCI's classifier reads it and whether from the slot vector or
from the slot's frame, and per representation entry its weight and score in DCI disentanglement and which
factors it mixes: where a score comes from, not only how high it is. `--true-codes shape,colour` scores
the same matched objects with the slot vector replaced by those true factors (the frame kept): what the
scores would be if the vector coded exactly those factors, the reach of a better latent on this data.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data.errors import DataError
from eval.run_loading import load_trained_run, merge_metrics, positive_int
from metrics.disentanglement import MetricInputError
from scoring.per_object import (format_code_readout, format_readout, frame_entries, run_object_points,
                                run_object_readout, run_object_scores, with_true_codes)
from training.build import dataset_urls
from training.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory of a discovery or weak_slots run")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory (default: the run's latest)")
    parser.add_argument("--max-images", type=positive_int, help="use the first N eval pairs only")
    parser.add_argument("--vector-only", action="store_true",
                        help="score the slot vectors without their frames; written as object_vector_* keys")
    parser.add_argument("--true-codes", type=lambda text: [name for name in text.split(",") if name],
                        help="comma-separated factors: also score the matched objects with the slot vector "
                             "replaced by these true factors (frame kept); printed and written to "
                             "object_true_codes.json in the run")
    parser.add_argument("--readout", action="store_true",
                        help="also print, per true factor, how well it is read from the slots and whether from "
                             "the vector or the frame, and per entry its weight and score in DCI "
                             "disentanglement; written to object_readout[_vector].json and "
                             "object_codes[_vector].json in the run")
    args = parser.parse_args(argv)

    try:
        trained = load_trained_run(args.run, args.checkpoint, tasks=["discovery", "weak_slots"])
        _, eval_urls, _ = dataset_urls(trained.config, progress=False)
        points = run_object_points(trained.model, trained.config, eval_urls, args.max_images,
                                   with_frame=not args.vector_only)
        scores = run_object_scores(trained.model, trained.config, eval_urls, with_frame=not args.vector_only,
                                   points=points)
        readout = run_object_readout(points, trained.config, with_frame=not args.vector_only) if args.readout else None
        true_scores = None
        if args.true_codes:
            true_points = with_true_codes(points, args.true_codes,
                                          frame_entries(trained.config, with_frame=not args.vector_only))
            true_scores = run_object_scores(trained.model, trained.config, eval_urls,
                                            with_frame=not args.vector_only, points=true_points)
    except (ConfigError, DataError, FileNotFoundError, MetricInputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.vector_only:
        scores = {key.replace("object_", "object_vector_", 1): value for key, value in scores.items()}
    metrics_path = merge_metrics(args.run, scores)
    print("\n".join(f"{key:<34} {value:.4f}" for key, value in scores.items()))
    print(f"checkpoint {trained.checkpoint}; merged into {metrics_path}")
    if true_scores is not None:
        true_path = args.run / "object_true_codes.json"
        true_path.write_text(json.dumps({"true_codes": args.true_codes, "with_frame": not args.vector_only,
                                         **true_scores}, indent=2))
        print(f"\nwith the slot vector replaced by the true {', '.join(args.true_codes)}:\n"
              + "\n".join(f"{key:<34} {value:.4f}" for key, value in true_scores.items())
              + f"\nwritten to {true_path}")
    if readout is not None:
        suffix = "_vector" if args.vector_only else ""
        factor_rows, code_rows = readout
        readout_path, codes_path = args.run / f"object_readout{suffix}.json", args.run / f"object_codes{suffix}.json"
        readout_path.write_text(json.dumps(factor_rows, indent=2))
        codes_path.write_text(json.dumps(code_rows, indent=2))
        print(f"\nper-factor readout (DCI's classifiers, fitted on 2/3 of the matched objects):\n"
              f"{format_readout(factor_rows)}\nwritten to {readout_path}")
        print(f"\nper entry: weight in DCI disentanglement, its own score (1 - entropy over the factors), their "
              f"product, and its importance for each factor:\n{format_code_readout(code_rows)}\n"
              f"written to {codes_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
