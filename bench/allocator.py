"""Training-step time with freed memory kept in the process (training/allocator.py, what every CPU training run
does) against glibc's own behaviour, measured in one process.

    python -m bench.allocator                                   # three 64x64 presets, ~3 min on 2 cores
    python -m bench.allocator --cases dsprites_vae --steps 10 train.batch_size=32

One optimiser step (the task's training loss, backward, Adam) of each case's model on one batch of random frame
pairs, the two allocator settings taking turns over rounds on the same model. glibc maps every block above
32 MiB afresh and unmaps it on free, so its cost is the page faults of the large activations of each step.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from data import PairBatch
from training.allocator import keep_freed_memory, return_freed_memory
from training.config import build_config, load_yaml, parse_override, preset_path
from training.tasks import make_task

#: name -> (preset, overrides): the image VAE of the time-to-disentanglement issue, the per-object
#: disentanglement scenes' autoencoder and their pair objective with the orientation search (16 angles, 32-pixel
#: windows)
CASES = {
    "dsprites_vae": ("dsprites_vae", []),
    "discovery_64": ("discovery_64", []),
    "weak_slots_64_search": (
        "weak_slots_64", ["model.orientation_search=16", "model.orientation_window=32"]),
}


def step_seconds(preset: str, overrides: list[str], steps: int, rounds: int) -> dict[str, float]:
    """Median seconds per training step under glibc's default and with freed memory kept."""
    config = build_config([load_yaml(preset_path(preset)), *[parse_override(text) for text in overrides]])
    task = make_task(config)
    torch.manual_seed(0)
    model = task.build_model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    side, size = config.data.resolution, config.train.batch_size
    frames = torch.rand(size, 3, side, side) * 2 - 1
    factors = [{"factor_names": ["shape"], "changed": [[0, "shape"]]}] * size
    batch = PairBatch.from_frames(frames, frames.flip(-1), factors=factors)
    settings = {"glibc default": return_freed_memory, "freed memory kept": keep_freed_memory}
    durations: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(rounds):
        for name, apply in settings.items():
            apply()
            for step in range(steps + 1):
                start = time.perf_counter()
                loss = task.training_loss(model, batch, 10_000)[0]
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if step > 0:  # the first step after a switch settles the heap
                    durations[name].append(time.perf_counter() - start)
    keep_freed_memory()
    return {name: statistics.median(values) for name, values in durations.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE",
                        help=f"among: {', '.join(CASES)}")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every case")
    args = parser.parse_args(argv)
    if not return_freed_memory():
        parser.exit(2, "bench.allocator: glibc's mallopt is not available on this platform: nothing to compare\n")
    print(f"training step, {torch.get_num_threads()} threads")
    print("| case | glibc default s/step | freed memory kept s/step | speed-up |")
    print("|---|---|---|---|")
    for name in args.cases:
        preset, overrides = CASES[name]
        seconds = step_seconds(preset, [*overrides, *args.overrides], args.steps, args.rounds)
        default, kept = seconds["glibc default"], seconds["freed memory kept"]
        print(f"| {name} | {default:.3f} | {kept:.3f} | {default / kept:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
