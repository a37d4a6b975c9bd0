"""Training step time of the default model on larger images, with and without the automatic encoder strides.

    python -m bench.image_sizes                          # 32, 64 and 128 pixels, ~1 min
    python -m bench.image_sizes --resolutions 32 64 --steps 3

The default preset's model (`model.encoder_strides: auto`) at each resolution, against the same model with a
feature per pixel (`encoder_strides: null`, what the encoder did before `auto`), one optimiser step on a batch
of the default size (8 pairs = 16 images), in one process. Prints the median step time, the ratio to the 32x32
step and the speed-up of the automatic strides at each size.
"""
from __future__ import annotations

import argparse

import torch

from bench.speed import time_training
from training.build import build_model
from training.config import build_config, load_yaml, preset_path


def default_model(resolution: int, strides: str | None) -> torch.nn.Module:
    """The default preset's model for `resolution`-pixel images with these encoder strides."""
    config = build_config([load_yaml(preset_path("default")),
                           {"data": {"resolution": resolution}, "model": {"encoder_strides": strides}}])
    return build_model(config).train()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model and round")
    parser.add_argument("--images", type=int, default=16, help="images per step (the default run: 8 pairs)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    rows, reference = [], None
    for resolution in args.resolutions:
        images = torch.rand(args.images, 3, resolution, resolution) * 2 - 1
        models = {"auto": default_model(resolution, "auto"), "per pixel": default_model(resolution, None)}
        seconds = time_training(models, images, args.steps, rounds=2)
        reference = reference or seconds["auto"]
        grid = models["auto"].encoder.grid_size(resolution, resolution)
        rows.append((resolution, models["auto"].encoder.strides, grid, seconds["auto"], seconds["per pixel"],
                     reference))
        print(f"  {resolution}x{resolution} done", flush=True)
    print(f"\ntraining step of the default model, {args.images} images, {torch.get_num_threads()} threads")
    print("| image | strides (auto) | feature grid | s/step auto | vs first size | s/step per pixel | auto speed-up |")
    print("|---|---|---|---|---|---|---|")
    for resolution, strides, grid, auto, per_pixel, first in rows:
        print(f"| {resolution}x{resolution} | {list(strides)} | {grid[0]}x{grid[1]} | {auto:.3f} | {auto / first:.2f}x "
              f"| {per_pixel:.3f} | {per_pixel / auto:.2f}x |")


if __name__ == "__main__":
    main()
