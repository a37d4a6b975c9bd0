"""Step cost of the per-slot orientation search (slots/orientation_search.py), measured in one process.

    python -m bench.slot_orientation                      # discovery_64's model, 8 pairs of 64x64 images, ~3 min
    python -m bench.slot_orientation --angles 8 16 24 --refine 0 5 --windows 0 24 32 --steps 3
    python -m bench.slot_orientation --preset weak_slots_64 --refine 0 --scores render outline   # the slot VAE

One optimiser step (forward with the search, backward, Adam) of the preset's model with `model.orientation_search`
at each angle count (and refinement steps), against the same model without the search, the models taking turns
over rounds. The search renders every slot once per candidate angle without gradient, so its cost grows with
the angle count times the decoder's share of a step, and with `model.orientation_window` (pixels; 0: the whole
image) with the share of the image each slot's window covers; the slot VAE's outline score
(`weak_slots.orientation_score=outline`) renders nothing, whatever the window.
"""
from __future__ import annotations

import argparse

import torch

from bench.speed import time_training
from training.allocator import keep_freed_memory
from training.config import build_config, load_yaml, parse_override, preset_path
from training.tasks import make_task


def preset_model(preset: str, angles: int, refine: int, window: int, overrides: list[dict], score: str = "render"
                 ) -> torch.nn.Module:
    """The preset's model with `angles` candidate angles per slot (0: no search), `refine` Adam steps, windows
    of `window` pixels and, for a slot VAE (task weak_slots), the search's `score`."""
    search = [{"model": {"orientation_search": angles, "orientation_refine_steps": refine,
                         "orientation_window": window}}]
    if score != "render":
        search.append({"weak_slots": {"orientation_score": score}})
    config = build_config([load_yaml(preset_path(preset)), *overrides, *search])
    return make_task(config).build_model().train()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="discovery_64", help="a discovery preset with slot frames")
    parser.add_argument("--angles", type=int, nargs="+", default=[16, 24])
    parser.add_argument("--refine", type=int, nargs="+", default=[0, 5], help="refinement steps to time")
    parser.add_argument("--windows", type=int, nargs="+", default=[0, 32],
                        help="window sides in pixels to time (0: the whole image)")
    parser.add_argument("--scores", nargs="+", default=["render"], choices=["render", "outline"],
                        help="what the search scores by (outline: a weak_slots preset's slot VAE only)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model and round")
    parser.add_argument("--images", type=int, default=16, help="images per step (8 pairs)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to every model")
    args = parser.parse_args(argv)
    overrides = [parse_override(text) for text in args.overrides]
    keep_freed_memory()  # as a training run does (training/allocator.py)
    torch.manual_seed(0)
    models = {"no search": preset_model(args.preset, 0, 0, 0, overrides)}
    for angles in args.angles:
        for refine in args.refine:
            for score in args.scores:
                for window in args.windows if score == "render" else [0]:
                    name = (f"{angles} angles" + (f", {refine} refinement steps" if refine else "")
                            + (f", {window} px windows" if window else "") + (f", {score} score" if score != "render" else ""))
                    models[name] = preset_model(args.preset, angles, refine, window, overrides, score)
    resolution = next(iter(models.values())).resolution[0]
    images = torch.rand(args.images, 3, resolution, resolution) * 2 - 1
    seconds = time_training(models, images, args.steps, rounds=2)
    baseline = seconds["no search"]
    print(f"\n{args.preset}: training step, {args.images} images {resolution}x{resolution}, "
          f"{torch.get_num_threads()} threads")
    print("| model | s/step | vs no search |")
    print("|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value:.3f} | {value / baseline:.2f}x |")


if __name__ == "__main__":
    main()
