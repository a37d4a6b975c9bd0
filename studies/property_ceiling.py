"""How well can *any* set-prediction model name an object's properties on this data?

At 32x32 an object is 6-12 pixels across and may be up to 70% hidden, so some shapes and scales cannot be
told apart from the pixels at all. This estimates that ceiling with an oracle: a supervised CNN that is
handed the true visible mask of one object (as a fourth input channel, next to the image) and classifies
its discrete properties. It never has to find, separate or count objects, so its held-out accuracy estimates
the best a slot model can reach. A prediction with any property wrong is a false positive at every
threshold, so with one prediction per object AP-inf is at most the fraction of objects whose properties are
all right (and equals it under a perfect confidence ranking).

    python -m studies.property_ceiling --out results/property_ceiling [--train-pairs 20000 --epochs 6 --threads 1]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from tqdm import tqdm

from data.registry import make_generator
from data.pairs import SceneGenerator

#: Bins of the visible fraction of an object's own silhouette, for the breakdown.
VISIBILITY_BINS = (0.3, 0.5, 0.7, 0.9, 1.0001)


@dataclass
class ObjectExamples:
    """One row per object: the image with that object's visible mask, and its true discrete properties."""

    inputs: torch.Tensor  # [N, 4, C, C]: RGB in [-1, 1] and the visible mask in {0, 1}, cropped around the object
    labels: dict[str, torch.Tensor]  # property -> [N] class index
    visible_fraction: torch.Tensor  # [N]: visible pixels / pixels of the object's own silhouette


def crop_around(channels: np.ndarray, object_mask: np.ndarray, size: int) -> np.ndarray:
    """A `size` x `size` window of [C, H, W] `channels` centred on the object's visible bounding box (zero
    outside the image): the network then sees every object at the same place and at its true pixel size."""
    rows, cols = np.nonzero(object_mask)
    centre_row, centre_col = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    half = size // 2
    padded = np.pad(channels, ((0, 0), (half, half), (half, half)))
    return padded[:, centre_row:centre_row + size, centre_col:centre_col + size]


def object_examples(generator: SceneGenerator, seed: int, num_pairs: int, properties: tuple[str, ...],
                    crop: int) -> ObjectExamples:
    """Both frames of `num_pairs` generated pairs, split into one example per object (every object is visible:
    the generator guarantees it)."""
    inputs, visible, labels = [], [], {name: [] for name in properties}
    for index in tqdm(range(num_pairs), desc=f"pairs (seed {seed})", leave=False, mininterval=2.0):
        pair = generator.pair(seed, index)
        for image, mask, objects in ((pair.frame0, pair.mask0, pair.factors["objects0"]),
                                     (pair.frame1, pair.mask1, pair.factors["objects1"])):
            own_area = generator.object_masks(objects).sum(axis=(1, 2))
            rgb = rearrange(image.astype(np.float32) / 127.5 - 1.0, "h w c -> c h w")
            for object_id, factors in enumerate(objects, start=1):
                object_mask = (mask == object_id).astype(np.float32)
                inputs.append(crop_around(np.concatenate([rgb, object_mask[None]]), object_mask, crop))
                visible.append(object_mask.sum() / max(own_area[object_id - 1], 1))
                for name in properties:
                    labels[name].append(factors[name])
    return ObjectExamples(torch.from_numpy(np.stack(inputs)),
                          {name: torch.tensor(values) for name, values in labels.items()},
                          torch.tensor(visible, dtype=torch.float32))


class PropertyOracle(nn.Module):
    """A plain strided CNN with one linear head per property; position matters, so no global pooling."""

    def __init__(self, crop: int, class_counts: dict[str, int], width: int = 48):
        super().__init__()
        halved_twice = ((crop + 1) // 2 + 1) // 2  # side after the two stride-2 convolutions (padding 1)
        self.features = nn.Sequential(
            nn.Conv2d(4, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * halved_twice ** 2, 256), nn.ReLU(),
        )
        self.heads = nn.ModuleDict({name: nn.Linear(256, count) for name, count in class_counts.items()})

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.features(inputs)
        return {name: head(hidden) for name, head in self.heads.items()}


def train_oracle(model: PropertyOracle, train: ObjectExamples, epochs: int, batch_size: int = 128,
                 learning_rate: float = 1e-3, seed: int = 0) -> None:
    """Adam on the summed cross-entropies, the learning rate annealed to zero (cosine) over all steps."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    if len(train.inputs) < batch_size:
        raise SystemExit(f"error: {len(train.inputs)} training objects, fewer than one batch of {batch_size}: "
                         "use more --train-pairs")
    steps = epochs * (len(train.inputs) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    started = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(train.inputs), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batch = order[start:start + batch_size]
            logits = model(train.inputs[batch])
            loss = sum(F.cross_entropy(logits[name], train.labels[name][batch]) for name in logits)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, {time.perf_counter() - started:.0f} s", flush=True)


@torch.no_grad()
def oracle_accuracy(model: PropertyOracle, test: ObjectExamples, batch_size: int = 512) -> dict[str, float | dict]:
    """Per-property and all-properties accuracy on held-out objects, overall and by visible fraction."""
    model.eval()
    predictions = {name: [] for name in test.labels}
    for start in range(0, len(test.inputs), batch_size):
        for name, logits in model(test.inputs[start:start + batch_size]).items():
            predictions[name].append(logits.argmax(dim=1))
    correct = {name: torch.cat(predictions[name]) == test.labels[name] for name in test.labels}
    all_right = torch.stack(list(correct.values())).all(dim=0)
    result: dict[str, float | dict] = {f"accuracy_{name}": float(hits.float().mean()) for name, hits in correct.items()}
    result["accuracy_all"] = float(all_right.float().mean())
    by_visibility = {}
    for low, high in zip(VISIBILITY_BINS[:-1], VISIBILITY_BINS[1:]):
        inside = (test.visible_fraction >= low) & (test.visible_fraction < high)
        if inside.any():
            by_visibility[f"{low:.1f}-{min(high, 1.0):.1f}"] = {
                "objects": int(inside.sum()), "accuracy_all": float(all_right[inside].float().mean()),
                **{f"accuracy_{name}": float(hits[inside].float().mean()) for name, hits in correct.items()}}
    result["by_visible_fraction"] = by_visibility
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--generator", default="multi_dsprites")
    parser.add_argument("--properties", nargs="+", default=["shape", "colour", "scale"])
    parser.add_argument("--train-pairs", type=int, default=20000)
    parser.add_argument("--test-pairs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--crop", type=int, default=20, help="window around each object (pixels); objects are at most 13 across")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    generator = make_generator(args.generator)
    for name in args.properties:
        if name not in generator.factor_sizes:
            parser.error(f"property '{name}' is not a factor of {args.generator}: {', '.join(generator.factor_sizes)}")
    train = object_examples(generator, seed=1, num_pairs=args.train_pairs, properties=tuple(args.properties), crop=args.crop)
    test = object_examples(generator, seed=2, num_pairs=args.test_pairs, properties=tuple(args.properties), crop=args.crop)
    print(f"{len(train.inputs)} training objects, {len(test.inputs)} held-out objects", flush=True)
    model = PropertyOracle(args.crop, {n: generator.factor_sizes[n] for n in args.properties})
    train_oracle(model, train, args.epochs)
    result = {"generator": args.generator, "train_objects": len(train.inputs), "test_objects": len(test.inputs),
              "epochs": args.epochs, **oracle_accuracy(model, test)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "property_ceiling.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
