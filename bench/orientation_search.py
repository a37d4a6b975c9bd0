"""Cost of the orientation search against a plain training step, measured in one process.

    python -m bench.orientation_search                    # batch 32, 32^3 voxels, 32x32 glyphs
    python -m bench.orientation_search --steps 5 --csv search.csv

The orientation-search VAEs (weak_supervision/orientation_vae.py) score every input under every group element
before each backward pass. Rows: the voxel VAE with the 24 rotations of the cube (the exact shortcut
`VoxelVAE.cube_losses`, and the straightforward batched pass over `all_rotations` for comparison) and the glyph
VAE with 36 planar angles, without and with 5 Adam refinement steps on the angle. Columns: a plain training
step (forward, backward, Adam; no search) in float32 and in bf16 autocast (what `mixed_precision: auto` trains
with where the CPU has native bf16), the search pass alone, search + training step, the search's cost in
plain steps, and its FLOP ratio: the search's matmul and convolution FLOPs over a plain float32 step's
(torch's FlopCounterMode), what the time ratio would be at one FLOP rate. Every variant takes turns with the
others over several rounds after a warm-up and the median is reported, so a busy machine slows them alike; the
absolute seconds still move with the load, the ratios much less. Inputs are random box unions (voxels) and
random strokes (glyphs): the cost does not depend on them.
"""
from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from orientation import all_rotations, best_of_group, rotate_voxels
from weak_supervision.orientation_vae import (GlyphVAE, OrientationSearch, VoxelVAE, native_bf16, per_sample_loss,
                                              scoring_loss, search_orientation)


def box_objects(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """[count, 1, D, D, D] unions of 3 to 6 random boxes (furniture-like occupancy, a few percent)."""
    grids = torch.zeros(count, 1, size, size, size)
    for grid in grids:
        for _ in range(int(torch.randint(3, 7, (), generator=generator))):
            extent = torch.randint(1, size // 2, (3,), generator=generator)
            start = (torch.rand(3, generator=generator) * (size - extent)).long()
            grid[0, start[0]:start[0] + extent[0], start[1]:start[1] + extent[1], start[2]:start[2] + extent[2]] = 1
    return grids


def stroke_images(count: int, resolution: int, generator: torch.Generator) -> torch.Tensor:
    """[count, 1, R, R] grey glyph-like images: 2 to 4 thick random strokes, slightly blurred."""
    axis = torch.linspace(-1, 1, resolution)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    images = torch.zeros(count, 1, resolution, resolution)
    for image in images:
        for _ in range(int(torch.randint(2, 5, (), generator=generator))):
            a, b = torch.rand(2, 2, generator=generator) * 1.2 - 0.6
            direction = b - a
            t = (((xs - a[0]) * direction[0] + (ys - a[1]) * direction[1]) / direction.square().sum()).clamp(0, 1)
            distance = torch.hypot(xs - a[0] - t * direction[0], ys - a[1] - t * direction[1])
            image[0] = torch.maximum(image[0], (distance < 0.08).float())
    return F.avg_pool2d(images, 3, stride=1, padding=1)


@dataclass
class Case:
    """One row: a model, its inputs, and `choose`, the search (returns each input in its chosen orientation)."""

    name: str
    model: nn.Module
    inputs: torch.Tensor
    choose: Callable[[], torch.Tensor]


def straightforward_cube_search(model: nn.Module, inputs: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The baseline: all 24 rotated grids built and scored in one batched no-grad float32 pass."""

    def choose() -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            index = best_of_group(all_rotations(inputs), lambda batch: scoring_loss(model, batch)).index
        return rotate_voxels(inputs, index)

    return choose


def library_search(model: nn.Module, inputs: torch.Tensor, search: OrientationSearch) -> Callable[[], torch.Tensor]:
    return lambda: search_orientation(model, inputs, search)[0]


def counted_flops(run: Callable[[], object]) -> int:
    """Matmul and convolution FLOPs of one call (torch's FlopCounterMode; elementwise work is not counted)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def flop_ratio(case: Case) -> float:
    """The search pass's FLOPs over a plain float32 training step's (forward and backward) on the same batch:
    what the time ratio would be if both ran at the same FLOP rate."""
    def plain_step() -> None:
        per_sample_loss(case.model, case.inputs, sample=True)[0].mean().backward()

    step = counted_flops(plain_step)
    case.model.zero_grad(set_to_none=True)
    return counted_flops(case.choose) / step


def time_cases(cases: list[Case], steps: int, rounds: int, bf16: bool) -> dict[str, dict[str, float]]:
    """Median seconds of each measure of each case; all measures of all cases take turns in every round, and
    the first call of each (warm-up: oneDNN primitive creation, allocator) is left out."""
    optimizers = {case.name: torch.optim.Adam(case.model.parameters(), lr=1e-4) for case in cases}

    def plain_step(case: Case, autocast: bool) -> Callable[[], None]:
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = per_sample_loss(case.model, case.inputs, sample=True)[0].mean()
            optimizers[case.name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[case.name].step()
        return run

    def search_and_step(case: Case) -> Callable[[], None]:
        """The training step of an orientation-search VAE (what orientation_vae_loss does), in the precision
        training uses."""
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = per_sample_loss(case.model, case.choose(), sample=True)[0].mean()
            optimizers[case.name].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[case.name].step()
        return run

    measures: dict[tuple[str, str], Callable[[], object]] = {}
    for case in cases:
        measures[case.name, "plain_fp32"] = plain_step(case, False)
        if bf16:
            measures[case.name, "plain_bf16"] = plain_step(case, True)
        measures[case.name, "search"] = case.choose
        measures[case.name, "search_step"] = search_and_step(case)
    durations: dict[tuple[str, str], list[float]] = {key: [] for key in measures}
    for key, run in measures.items():
        run()  # warm-up
    for _ in range(rounds):
        for key, run in measures.items():
            for _ in range(steps):
                start = time.perf_counter()
                run()
                durations[key].append(time.perf_counter() - start)
    table: dict[str, dict[str, float]] = {case.name: {} for case in cases}
    for (name, measure), values in durations.items():
        table[name][measure] = float(np.median(values))
    return table


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed calls per measure and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=32, help="voxel grid side")
    parser.add_argument("--resolution", type=int, default=32, help="glyph image side")
    parser.add_argument("--width", type=int, default=32, help="the VAEs' width (VoxelVAE / GlyphVAE)")
    parser.add_argument("--angles", type=int, default=36, help="planar search grid")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="search precision; auto: bf16 where the CPU computes it natively")
    parser.add_argument("--csv", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    bf16 = native_bf16(torch.device("cpu"))
    voxels = box_objects(args.batch, args.size, generator)
    glyphs = stroke_images(args.batch, args.resolution, generator)
    voxel_model = VoxelVAE(size=args.size, width=args.width)
    baseline_model = VoxelVAE(size=args.size, width=args.width)
    cube = OrientationSearch("cube", precision=args.precision)
    cases = [
        Case("voxels, 24 rotations (shortcut)", voxel_model, voxels, library_search(voxel_model, voxels, cube)),
        Case("voxels, 24 rotations (plain batched fp32)", baseline_model, voxels,
             straightforward_cube_search(baseline_model, voxels)),
    ]
    for refine in (0, 5):
        model = GlyphVAE(resolution=args.resolution, width=args.width)
        search = OrientationSearch("planar", planar_angles=args.angles, refine_steps=refine, precision=args.precision)
        cases.append(Case(f"glyphs, {args.angles} angles" + (f" + {refine} refine steps" if refine else ""), model,
                          glyphs, library_search(model, glyphs, search)))
    flops = {case.name: flop_ratio(case) for case in cases}
    table = time_cases(cases, args.steps, args.rounds, bf16)

    print(f"batch {args.batch}, voxels {args.size}^3, glyphs {args.resolution}^2, width {args.width}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, native bf16 {'yes' if bf16 else 'no'}, "
          f"search precision {args.precision}; median of {args.rounds} x {args.steps} calls, seconds")
    columns = ["plain step fp32", "plain step bf16", "search pass", "search + step", "search / plain fp32",
               "search / plain bf16", "FLOP ratio"]
    print("| case | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    rows = []
    for name, times in table.items():
        plain_bf16 = times.get("plain_bf16", float("nan"))
        values = [times["plain_fp32"], plain_bf16, times["search"], times["search_step"],
                  times["search"] / times["plain_fp32"], times["search"] / plain_bf16, flops[name]]
        rows.append([name, *values])
        cells = [f"{v:.4f}" for v in values[:4]] + [f"{v:.2f}x" for v in values[4:6]] + [f"{values[6]:.1f}x"]
        cells = ["-" if cell.startswith("nan") else cell for cell in cells]  # no bf16 step where it is not native
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["case", *[c.replace(" ", "_").replace("/", "per").replace("+", "and") for c in columns]])
            writer.writerows(rows)
    return table


if __name__ == "__main__":
    main()
