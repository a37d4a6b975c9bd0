"""What does the per-object weak objective cost over the autoencoder it extends? Measured in one process.

    python -m bench.weak_slots                  # the default and weak_slots presets' models and batch
    python -m bench.weak_slots --steps 10 --rounds 5

Times full training steps (forward, loss, backward, Adam) on the same batch of frame pairs, taking turns in
several rounds: the default run's autoencoder (both frames as independent images, the baseline), the slot
VAE without pairing, and the pair objective with each correspondence (`init`: frame 0 is attended twice,
once to bind and once to refine both frames; `hungarian`: scipy matching on the posterior means instead;
`init_hungarian`: both). Also times the matching on its own. Prints a table with ratios to the baseline.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from bench.set_prediction import median_ms
from training.config import build_config, load_yaml, parse_override, preset_path
from training.tasks.discovery import DiscoveryTask
from training.tasks.weak_slots import WeakSlotsTask, build_slot_vae
from weak_supervision.slot_pairs import match_slots, slot_pair_loss

#: name -> (method, correspondence) of each timed slot VAE variant; the rest is the preset's (the table marks
#: the variant the preset trains)
VARIANTS = {
    "slot VAE, no pairing": ("slot_vae", "hungarian"),
    "Ada-GVAE, correspondence init": ("ada_gvae", "init"),
    "Ada-GVAE, init_hungarian": ("ada_gvae", "init_hungarian"),
    "Ada-GVAE, hungarian": ("ada_gvae", "hungarian"),
    "Ada-ML-VAE, hungarian": ("ada_mlvae", "hungarian"),
}


def training_step(model: torch.nn.Module, loss: Callable[[], torch.Tensor]) -> Callable[[], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        value = loss()
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in which the variants take turns")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="applied to both presets")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = [parse_override(o) for o in args.overrides]
    default = build_config([load_yaml(preset_path("default"))] + overrides)
    weak = build_config([load_yaml(preset_path("weak_slots"))] + overrides)

    torch.manual_seed(0)
    resolution, pairs = weak.data.resolution, weak.train.batch_size
    frame0, frame1 = (torch.rand(pairs, 3, resolution, resolution) * 2 - 1 for _ in range(2))
    images = torch.cat([frame0, frame1])
    autoencoder = DiscoveryTask(default).build_model().train()
    steps = {"baseline: autoencoder, both frames": training_step(
        autoencoder, lambda: F.mse_loss(autoencoder(images).reconstruction, images))}
    preset = WeakSlotsTask(weak).settings  # beta, the outline head's weight, ...: as the preset trains
    for name, (method, correspondence) in VARIANTS.items():
        settings = replace(preset, method=method, correspondence=correspondence)
        model = build_slot_vae(weak).train()
        steps[name] = training_step(model, lambda m=model, s=settings: slot_pair_loss(m, frame0, frame1, s)[0])

    step_ms: dict[str, list[float]] = {name: [] for name in steps}
    for round_index in range(args.rounds + 1):  # round 0 is warm-up
        for name, step in steps.items():
            duration = median_ms(step, args.steps if round_index else 1)
            if round_index:
                step_ms[name].append(duration)
        print(f"round {round_index}/{args.rounds} done", flush=True)
    medians = {name: float(np.median(values)) for name, values in step_ms.items()}
    latent = torch.randn(pairs, weak.model.num_slots, weak.weak_slots.latent_dim)
    matching = median_ms(lambda: match_slots(latent, latent + 0.1 * torch.randn_like(latent)), 200)

    baseline = medians["baseline: autoencoder, both frames"]
    print(f"{resolution}x{resolution}, batch {pairs} pairs ({2 * pairs} images), {weak.model.num_slots} slots, "
          f"latent {weak.weak_slots.latent_dim}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps} steps")
    print("| training step | ms per step | ratio to the autoencoder |")
    print("|---|---:|---:|")
    trained = (preset.method, preset.correspondence)
    for name, value in medians.items():
        mark = " (preset)" if VARIANTS.get(name) == trained else ""
        print(f"| {name}{mark} | {value:.1f} | {value / baseline:.2f}x |")
    print(f"| slot matching alone (cdist, scipy per image, indices back) | {matching:.2f} | "
          f"{matching / baseline:.3f}x |")


if __name__ == "__main__":
    main()
