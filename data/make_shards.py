"""Command line: write WebDataset shards of frame pairs from an embedded generator.

Example::

    python -m data.make_shards --generator multi_dsprites --num-pairs 20000 \\
        --resolution 64 --changed-factors random --out-dir shards/mds64
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from data.errors import DataError
from data.pairs import parse_changed_factors
from data.registry import GENERATORS, make_generator
from data.shards import write_split


def _option(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE parsed as JSON when possible (so numbers stay numbers)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.make_shards",
        description="Write WebDataset tar shards of seeded frame pairs (one sample = one pair).",
    )
    parser.add_argument("--generator", default="multi_dsprites", help=f"one of: {', '.join(sorted(GENERATORS))}")
    parser.add_argument("--num-pairs", type=int, default=20_000, help="number of frame pairs to write")
    parser.add_argument(
        "--resolution", type=int, default=None, help="image side in pixels (multi_dsprites; default 32)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="dataset seed; pair i is a pure function of (seed, split, i)"
    )
    parser.add_argument("--pairs-per-shard", type=int, default=1_000, help="pairs per tar shard")
    parser.add_argument(
        "--changed-factors", default="1",
        help="(object, factor) entries changed between the frames: an int, 'random' or 'dlib' (data/pairs.py)"
    )
    parser.add_argument("--split", default="train", help="split name; shards are named SPLIT-000000.tar, ...")
    parser.add_argument("--out-dir", required=True, help="directory to write the shards into")
    parser.add_argument(
        "--option", action="append", type=_option, default=[], metavar="KEY=VALUE",
        help="extra generator parameter, e.g. --option max_objects=5 (repeatable)",
    )
    parser.add_argument("--num-workers", type=int, default=None, help="generation processes (default: up to 2)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        kwargs: dict[str, Any] = dict(args.option)
        kwargs["changed_factors"] = parse_changed_factors(args.changed_factors)
        # Generators without a resolution parameter (tetrominoes) have a fixed image size.
        fixed_size = (
            args.generator in GENERATORS
            and "resolution" not in inspect.signature(GENERATORS[args.generator]).parameters
        )
        if args.resolution is not None and not fixed_size:
            kwargs["resolution"] = args.resolution
        generator = make_generator(args.generator, **kwargs)
        if args.resolution is not None and args.resolution != generator.resolution:
            raise DataError(
                f"{generator.name} makes {generator.resolution}x{generator.resolution} images; "
                f"--resolution {args.resolution} is not supported for it"
            )
        started = time.perf_counter()
        paths = write_split(
            generator, args.out_dir, args.split, args.num_pairs, args.pairs_per_shard, args.seed,
            progress=not args.no_progress, num_workers=args.num_workers,
        )
        elapsed = time.perf_counter() - started
    except (DataError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.num_pairs} {generator.name} pairs ({generator.resolution}x{generator.resolution}) "
        f"in {len(paths)} shards to {args.out_dir} in {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
