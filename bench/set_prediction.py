"""What does Hungarian matching cost in a set-prediction training step? Measured in one process.

    python -m bench.set_prediction                 # the set_prediction preset's model and batch
    python -m bench.set_prediction --steps 20 --rounds 5

Times full training steps (forward, the preset's loss, backward, Adam) of the preset's model two ways,
taking turns: with Hungarian matching, and a baseline identical except that it takes a fixed (identity)
assignment instead of matching (same cost tensor, same loss terms). Also times the matching on its own
(cost to the host, scipy per image, indices back) and building the targets from factors.json, and prints
a table with the ratios. The matching-alone row is the precise figure: the difference between the two
step medians is within the noise of a shared machine.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
import torch

from metrics.matching import hungarian_match, pad_targets, pairwise_huber_cost
from training import set_loss
from training.config import build_config, load_yaml, parse_override, preset_path
from training.tasks.set_prediction import SetPredictionTask


def identity_match(cost: torch.Tensor, *, maximize: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The baseline's "matching": slot k paired with target row k, no host transfer, no scipy."""
    index = torch.arange(cost.shape[1], device=cost.device).expand(cost.shape[0], -1)
    return index, index


@contextlib.contextmanager
def matcher(function):
    """Swap the assignment the set losses use (everything else in the step stays identical)."""
    original = set_loss.hungarian_match
    set_loss.hungarian_match = function
    try:
        yield
    finally:
        set_loss.hungarian_match = original


def synthetic_factors(task: SetPredictionTask, batch_pairs: int, seed: int) -> list[dict]:
    """factors.json records with 2..max objects and random factor values on the layout's grids."""
    rng = np.random.default_rng(seed)
    sizes = dict(task.layout.coordinates + task.layout.discrete)
    records = []
    for _ in range(batch_pairs):
        frames = {}
        for key in ("objects0", "objects1"):
            count = int(rng.integers(2, task.config.model.num_slots))
            frames[key] = [{name: int(rng.integers(size)) for name, size in sizes.items()} for _ in range(count)]
        records.append({"factor_sizes": sizes, **frames})
    return records


def median_ms(function, repeats: int) -> float:
    durations = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        durations.append(time.perf_counter() - start)
    return float(np.median(durations)) * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="set_prediction")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in which the two variants take turns")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the preset's train.cpu_threads)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="e.g. model.num_slots=7")
    args = parser.parse_args(argv)

    config = build_config([load_yaml(preset_path(args.preset))] + [parse_override(o) for o in args.overrides])
    task = SetPredictionTask(config)
    threads = args.threads or config.train.cpu_threads
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    resolution, pairs = config.data.resolution, config.train.batch_size
    images = torch.rand(2 * pairs, 3, resolution, resolution) * 2 - 1
    factors = synthetic_factors(task, pairs, seed=0)
    targets = task.targets(factors)
    delta, weights = config.set_prediction.huber_delta, task.weights

    matchers = {"baseline: fixed assignment": identity_match, "Hungarian matching": hungarian_match}

    def train_step() -> None:
        loss = task.loss(model(images), targets, images).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_ms: dict[str, list[float]] = {name: [] for name in matchers}
    for round_index in range(args.rounds + 1):  # round 0 is warm-up
        for name, function in matchers.items():
            with matcher(function):
                duration = median_ms(train_step, args.steps if round_index else 1)
            if round_index:
                step_ms[name].append(duration)
    without, with_matching = (float(np.median(step_ms[name])) for name in matchers)

    with torch.no_grad():
        cost = pairwise_huber_cost(model(images).predictions, pad_targets(targets, config.model.num_slots), delta,
                                   weights)
    matching_ms = median_ms(lambda: hungarian_match(cost), 200)
    targets_ms = median_ms(lambda: task.targets(factors), 200)

    print(f"{resolution}x{resolution}, batch {2 * pairs} images, {config.model.num_slots} slots, "
          f"{task.layout.dim} properties, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} steps")
    print("| measure | ms per step | ratio |")
    print("|---|---:|---:|")
    print(f"| training step, baseline: fixed assignment (no matching) | {without:.1f} | 1.00x |")
    print(f"| training step, Hungarian-matched loss | {with_matching:.1f} | {with_matching / without:.3f}x |")
    print(f"| matching alone (cost to host, scipy per image, indices back) | {matching_ms:.3f} | "
          f"{100 * matching_ms / with_matching:.3g}% of the step |")
    print(f"| targets from factors.json | {targets_ms:.3f} | {100 * targets_ms / with_matching:.3g}% of the step |")
    print(f"matching overhead: {100 * matching_ms / with_matching:.3g}% of the training step (bar: < 5%)")


if __name__ == "__main__":
    main()
