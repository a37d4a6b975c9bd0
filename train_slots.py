"""Train a Slot Attention autoencoder on frame-pair shards, then evaluate and report.

    accelerate launch train_slots.py                              # default preset, embedded data
    accelerate launch train_slots.py --preset tetrominoes train.max_steps=3000
    accelerate launch train_slots.py --resume runs/<name>         # continue exactly where it stopped

The same script runs on one CPU, one GPU (bf16 via `accelerate launch --mixed_precision bf16`) or many
processes: Accelerate decides, the code does not change.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from data import DataError
from training.config import ConfigError
from training.loop import run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None,
                        help="name of a YAML file in configs/ (default: default, or the --config file's base)")
    parser.add_argument("--config", type=Path, help="a YAML file applied on top of the preset")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="e.g. train.max_steps=200 model.num_slots=7")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args.preset, args.config, args.resume, args.overrides, start_time=time.time())
    except (ConfigError, DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: resume with --resume <run dir>", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
