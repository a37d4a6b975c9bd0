"""Speed of our implementation against straightforward baselines, measured in one process.

    python -m bench.speed                 # default training config, 32x32
    python -m bench.speed --resolution 64 --steps 5

Prints a table: training images/s (ours vs `bench.naive`, same architecture and weights; and the default
preset's model against the paper's, both ours) and FG-ARI images/s (our batched bincount ARI vs a
per-image scikit-learn loop), with ratios.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from bench.naive import NaiveSlotAutoencoder
from metrics.ari import adjusted_rand_index
from slots import build_autoencoder
from training.config import ModelConfig, TrainConfig, build_config, load_yaml, preset_path


def time_training(models: dict[str, torch.nn.Module], images: torch.Tensor, steps: int, rounds: int = 3) -> dict[str, float]:
    """Median seconds per optimiser step (forward, backward, Adam) of each model. The models take turns
    in several rounds so that neither profits from running first or last on a busy machine."""
    optimizers = {name: torch.optim.Adam(model.parameters(), lr=1e-4) for name, model in models.items()}
    durations: dict[str, list[float]] = {name: [] for name in models}
    for round_index in range(rounds):
        for name, model in models.items():
            for step in range(steps + 1):
                start = time.perf_counter()
                loss = F.mse_loss(model(images).reconstruction, images)
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
                if step > 0 or round_index > 0:  # the very first step of each model is warm-up
                    durations[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in durations.items()}


def sklearn_fg_ari(true_ids: np.ndarray, pred_ids: np.ndarray) -> np.ndarray:
    from sklearn.metrics import adjusted_rand_score

    scores = []
    for true, pred in zip(true_ids.reshape(len(true_ids), -1), pred_ids.reshape(len(pred_ids), -1)):
        foreground = true > 0
        scores.append(adjusted_rand_score(true[foreground], pred[foreground]))
    return np.asarray(scores)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per implementation and round")
    parser.add_argument("--ari-images", type=int, default=2000)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model_config = asdict(ModelConfig())
    batch = 2 * TrainConfig().batch_size
    images = torch.rand(batch, 3, args.resolution, args.resolution) * 2 - 1
    ours = build_autoencoder((args.resolution,) * 2, **model_config)
    naive = build_autoencoder((args.resolution,) * 2, model_class=NaiveSlotAutoencoder, **model_config)
    naive.load_state_dict(ours.state_dict())
    default_config = asdict(build_config([load_yaml(preset_path("default"))]).model)
    default = build_autoencoder((args.resolution,) * 2, **default_config)
    seconds = time_training({"naive": naive, "ours": ours, "default": default}, images, args.steps)
    naive_seconds, ours_seconds, default_seconds = seconds["naive"], seconds["ours"], seconds["default"]

    generator = torch.Generator().manual_seed(0)
    shape = (args.ari_images, args.resolution, args.resolution)
    true_ids = torch.randint(0, 5, shape, generator=generator)
    pred_ids = torch.randint(0, ours.num_slots, shape, generator=generator)
    start = time.perf_counter()
    sklearn_scores = sklearn_fg_ari(true_ids.numpy(), pred_ids.numpy())
    sklearn_seconds = time.perf_counter() - start
    adjusted_rand_index(true_ids[:8], pred_ids[:8], ignore_background=True)  # warm-up
    start = time.perf_counter()
    our_scores = adjusted_rand_index(true_ids, pred_ids, ignore_background=True)
    ari_seconds = time.perf_counter() - start
    max_difference = float(np.abs(our_scores.numpy() - sklearn_scores).max())

    rows = [
        ("train images/s", f"naive ({naive_seconds * 1000:.0f} ms/step)", batch / naive_seconds,
         f"ours ({ours_seconds * 1000:.0f} ms/step)", batch / ours_seconds),
        ("train images/s, default preset's model", f"the paper's model ({ours_seconds * 1000:.0f} ms/step)",
         batch / ours_seconds, f"default ({default_seconds * 1000:.0f} ms/step, {default_config['num_slots']} slots)",
         batch / default_seconds),
        ("FG-ARI images/s", "sklearn per image", args.ari_images / sklearn_seconds,
         "ours batched", args.ari_images / ari_seconds),
    ]
    print(f"{args.resolution}x{args.resolution}, batch {batch} images, {model_config['num_slots']} slots, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"| measure | baseline | baseline value | ours | ours value | ratio |")
    print(f"|---|---|---:|---|---:|---:|")
    for measure, base_name, base_value, our_name, our_value in rows:
        print(f"| {measure} | {base_name} | {base_value:,.1f} | {our_name} | {our_value:,.1f} | {our_value / base_value:.2f}x |")
    print(f"max |ours - sklearn| FG-ARI over {args.ari_images} images: {max_difference:.2e}")


if __name__ == "__main__":
    main()
