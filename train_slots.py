"""Train a Slot Attention autoencoder on frame-pair shards, then evaluate and report.

    accelerate launch train_slots.py                              # default preset, embedded data
    accelerate launch train_slots.py --preset tetrominoes train.max_steps=3000
    accelerate launch train_slots.py --resume runs/<name>         # continue exactly where it stopped
    accelerate launch train_slots.py --resume runs/<name> train.max_steps=6000   # ... and train longer

The same script runs on one CPU, one GPU (bf16 via `accelerate launch --mixed_precision bf16`) or many
processes: Accelerate decides, the code does not change.

On --resume, only settings that do not change what was already trained may differ from the run's
config.yaml (train.max_steps, time limit, log/eval/checkpoint intervals, eval.*); each change is printed
and saved, any other is refused. Checkpoints are verified against their checksums; a damaged newest one
falls back to the previous intact one. A run directory is used by one training process at a time.

Exit status:
    0    trained, evaluated and reported
    2    unusable settings or data, a run directory in use by another process, no intact checkpoint,
         or damaged RNG state without --resume-inexact (one line on stderr names the key or file)
    3    the loss or gradients became NaN/infinite (more often than train.max_nonfinite_steps allows):
         no report is written; the checkpoints are those written before, all with finite weights
    130  interrupted (Ctrl-C); resume from the last checkpoint with the command printed
    143  terminated (SIGTERM, e.g. by a job scheduler): a checkpoint of the current step was saved; resume
         with the command printed
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data import DataError
from training.config import ConfigError
from training.loop import EXIT_INTERRUPTED, TrainingStopped, run
from training.run_lock import RunLockError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None,
                        help="name of a YAML file in configs/ (default: default, or the --config file's base)")
    parser.add_argument("--config", type=Path, help="a YAML file applied on top of the preset")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its last intact checkpoint")
    parser.add_argument("--resume-inexact", action="store_true",
                        help="resume even if the checkpoint's RNG state is missing or damaged (the run then no "
                             "longer matches an uninterrupted one)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="e.g. train.max_steps=200 model.num_slots=7")
    args = parser.parse_args(argv)
    if args.resume_inexact and args.resume is None:
        parser.error("--resume-inexact applies only with --resume RUN_DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args.preset, args.config, args.resume, args.overrides, start_time=time.time(),
            resume_inexact=args.resume_inexact)
    except (ConfigError, DataError, FileNotFoundError, RunLockError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingStopped as stop:
        if stop.show:
            print(stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:  # before the run directory was chosen
        print("interrupted before training started", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main())
