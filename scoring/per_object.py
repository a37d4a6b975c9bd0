"""Per-object disentanglement: pair every true object with a slot by mask IoU, then score (slot latent,
that object's true factors) with the same metrics as the single-object VAEs.

Defined behaviour for the awkward cases (each tested):
- more objects than slots: the Hungarian matching pairs min(K, M) of them; the rest are counted in
  `unmatched_objects` and contribute no point;
- an empty frame (no object) contributes nothing;
- a true object with no visible pixel, or matched with IoU 0 (no slot covers any of it), contributes no point
  and counts as unmatched;
- a mask id with no entry in that frame's object list is a DataError naming the sample and frame.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from data import PairBatch, eval_batches
from data.errors import DataError
from data.sprites import FACTOR_SIZES as SPRITE_FACTOR_SIZES
from metrics.disentanglement import code_disentanglement, evaluate_arrays, factor_importance
from metrics.matching import hungarian_match, mask_iou
from scoring.slot_angles import points_angle_agreement

#: The observational metrics that score arrays of (representation, factors).
PER_OBJECT_METRICS = ("dci", "mig", "sap", "modularity")
#: Share of the matched objects (in eval-set order) the metrics are fitted on; the rest test them.
TRAIN_FRACTION = 2 / 3
#: Names of the frame entries `slot_representations` appends to a slot vector.
FRAME_CODES = ("frame_x", "frame_y", "frame_scale_x", "frame_scale_y")
#: a frame turned by an orientation search also says how: the angle as a point on the circle
ANGLE_CODES = ("frame_angle_cos", "frame_angle_sin")


@dataclass
class ObjectPoints:
    """One point per matched object: the slot's representation and the object's factor indices."""

    representations: list[np.ndarray] = field(default_factory=list)
    factors: list[np.ndarray] = field(default_factory=list)
    factor_names: tuple[str, ...] | None = None
    objects: int = 0
    unmatched_objects: int = 0
    ious: list[float] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.representations:
            raise DataError("no object was matched with a slot: nothing to score")
        return np.concatenate(self.representations), np.concatenate(self.factors)


def one_hot_objects(masks: torch.Tensor, num_objects: int) -> torch.Tensor:
    """Instance-id masks [B, H, W] (0 = background) -> bool [B, num_objects, H, W] for ids 1..num_objects."""
    ids = torch.arange(1, num_objects + 1, device=masks.device)
    return rearrange(masks, "b h w -> b 1 h w") == rearrange(ids, "m -> 1 m 1 1")


def hard_slot_masks(masks: torch.Tensor) -> torch.Tensor:
    """Soft masks [B, K, H, W] -> bool, each pixel to its most responsible slot (the predicted segmentation)."""
    return F.one_hot(masks.argmax(dim=1), masks.shape[1]).permute(0, 3, 1, 2).bool()


def object_factor_table(records: list[dict], frame: int, masks: torch.Tensor, keys: list[str]
                        ) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """Per image, the factor indices [num_objects, F] of `objects{frame}`; checks every mask id has an entry."""
    names = tuple(records[0]["factor_names"]) if records else ()
    tables = []
    for index, record in enumerate(records):
        objects = record.get(f"objects{frame}", [])
        if tuple(record["factor_names"]) != names:
            raise DataError(f"sample {keys[index]!r}: factor names {record['factor_names']} differ from the "
                            f"batch's {list(names)}")
        largest = int(masks[index].max())
        if largest > len(objects):
            raise DataError(f"sample {keys[index]!r}: mask{frame} has object id {largest} but factors.json lists "
                            f"{len(objects)} object(s) for frame {frame}; ids must be 1..{len(objects)}")
        tables.append(np.array([[obj[name] for name in names] for obj in objects], dtype=np.int64).reshape(
            len(objects), len(names)))
    return names, tables


def collect_points(model: torch.nn.Module, batches: Iterable[PairBatch], num_slots: int, frames: tuple[int, ...] = (0,),
                   seed: int = 0, max_images: int | None = None, with_frame: bool = True) -> ObjectPoints:
    """Run the model on eval frames and pair its slots with the true objects (Hungarian on mask IoU)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    points, seen = ObjectPoints(), 0
    model.eval()
    with torch.no_grad():
        for batch in batches:
            for frame in frames:
                images, masks = (batch.frame0, batch.mask0) if frame == 0 else (batch.frame1, batch.mask1)
                if max_images is not None:
                    images, masks = images[: max_images - seen], masks[: max_images - seen]
                names, tables = object_factor_table(batch.factors[: len(images)], frame, masks, batch.keys)
                if points.factor_names is None:
                    points.factor_names = names
                elif names != points.factor_names:
                    raise DataError(f"factor names {list(names)} differ from earlier batches' "
                                    f"{list(points.factor_names)}")
                output = model(images.to(device), num_slots=num_slots, generator=generator)
                add_matches(points, slot_representations(output, with_frame).float().cpu(),
                            hard_slot_masks(output.masks).cpu(), masks, tables)
            seen += len(images)
            if max_images is not None and seen >= max_images:
                break
    return points


def slot_representations(output, with_frame: bool = True) -> torch.Tensor:
    """[B, K, R]: a slot's vector (a slot VAE's posterior mean), followed by its frame's position and scale
    when the model renders slots in their own frames: there position and size reach the decoder through the
    frame, not the vector, so the frame is part of what the slot represents. `with_frame=False` scores the
    vector alone (what the vector adds to the frame)."""
    frames = getattr(output, "frames", None)
    if frames is None or not with_frame:
        return output.slots
    parts = [output.slots, frames.positions, frames.scales]
    if frames.angles is not None:  # the orientation search's angle is part of the frame too
        parts += [frames.angles.cos().unsqueeze(-1), frames.angles.sin().unsqueeze(-1)]
    return torch.cat(parts, dim=-1)


def add_matches(points: ObjectPoints, slots: torch.Tensor, slot_masks: torch.Tensor, true_masks: torch.Tensor,
                tables: list[np.ndarray]) -> None:
    """Match slots [B, K, Z] (masks [B, K, H, W]) with objects (ids in true_masks [B, H, W]) and record
    one point per matched, visible object."""
    num_objects = max((len(t) for t in tables), default=0)
    points.objects += sum(len(t) for t in tables)
    if num_objects == 0:
        return
    objects = one_hot_objects(true_masks, num_objects)
    iou = mask_iou(slot_masks, objects)
    rows, cols = hungarian_match(iou, maximize=True)
    for image, table in enumerate(tables):
        matched = 0
        for slot, obj in zip(rows[image].tolist(), cols[image].tolist()):
            if obj < len(table) and iou[image, slot, obj] > 0:
                points.representations.append(slots[image, slot].numpy()[None])
                points.factors.append(table[obj][None])
                points.ious.append(float(iou[image, slot, obj]))
                matched += 1
        points.unmatched_objects += len(table) - matched


def score_points(train: ObjectPoints, test: ObjectPoints, metrics: Iterable[str] = PER_OBJECT_METRICS,
                 seed: int = 0, dci_importance_model: str = "random_forest") -> dict[str, float]:
    """The metrics on (slot latent, object factors), fitted on `train` and tested on `test` points;
    keys are prefixed `object_` and the matching statistics are included."""
    train_reps, train_factors = train.arrays()
    test_reps, test_factors = test.arrays()
    scores = evaluate_arrays(train_reps, train_factors, test_reps, test_factors, metrics=metrics,
                             rng=np.random.default_rng(seed), dci_importance_model=dci_importance_model)
    result = {f"object_{key}": value for key, value in scores.items()}
    total = train.objects + test.objects
    result["object_matched_fraction"] = 1.0 - (train.unmatched_objects + test.unmatched_objects) / max(total, 1)
    result["object_mean_iou"] = float(np.mean(train.ious + test.ious))
    return result


def split_points(points: ObjectPoints, train_fraction: float) -> tuple[ObjectPoints, ObjectPoints]:
    """Fit/test split in eval-set order (frames of one pair stay on one side, up to the boundary pair)."""
    cut = int(round(len(points.representations) * train_fraction))
    if cut < 1 or cut >= len(points.representations):
        raise DataError(f"{len(points.representations)} matched objects cannot be split {train_fraction:.2f} / "
                        f"{1 - train_fraction:.2f} into fit and test points; use more eval images")
    parts = []
    for rows in (slice(0, cut), slice(cut, None)):
        part = ObjectPoints(points.representations[rows], points.factors[rows], points.factor_names,
                            ious=points.ious[rows])
        parts.append(part)
    share = cut / len(points.representations)  # attribute the object counts in proportion
    parts[0].objects, parts[1].objects = round(points.objects * share), points.objects - round(points.objects * share)
    parts[0].unmatched_objects = round(points.unmatched_objects * share)
    parts[1].unmatched_objects = points.unmatched_objects - parts[0].unmatched_objects
    return parts[0], parts[1]


def with_true_codes(points: ObjectPoints, factors: Iterable[str], frame_entries: int) -> ObjectPoints:
    """The same objects, each represented by the true values of `factors` (one entry each) followed by the
    last `frame_entries` entries of its slot's representation (its frame): a perfect vector for those
    factors, scored with everything else as the model had it."""
    factors = list(factors)
    unknown = [name for name in factors if name not in (points.factor_names or ())]
    if unknown or not factors:
        raise DataError(f"true codes {factors} must be a non-empty subset of the factors "
                        f"{list(points.factor_names or ())}")
    columns = [points.factor_names.index(name) for name in factors]
    representations = [np.concatenate([true[:, columns].astype(np.float32), rep[:, rep.shape[1] - frame_entries:]],
                                      axis=1) for rep, true in zip(points.representations, points.factors)]
    return ObjectPoints(representations, list(points.factors), points.factor_names, points.objects,
                        points.unmatched_objects, list(points.ious))


def code_names(vector_dim: int, representation_dim: int) -> list[str]:
    """Names of the representation's entries: the slot vector's `z0..`, then the frame's (when present)."""
    frame = list(FRAME_CODES + ANGLE_CODES)
    if representation_dim not in (vector_dim, vector_dim + len(FRAME_CODES), vector_dim + len(frame)):
        raise ValueError(f"a representation of {representation_dim} entries is neither the {vector_dim}-entry "
                         f"slot vector nor the vector with its {len(FRAME_CODES)} frame entries (or "
                         f"{len(frame)} with an angle)")
    return [f"z{i}" for i in range(vector_dim)] + frame[: representation_dim - vector_dim]


def factor_readout(train: ObjectPoints, test: ObjectPoints, names: list[str], seed: int = 0,
                   importance_model: str = "random_forest") -> tuple[list[dict], list[dict]]:
    """Two views of DCI's importance matrix, from one fit of its classifiers.

    Per true factor: how well the classifier reads it from the representation (test accuracy against always
    guessing the most common value), which share of its importance lies on the frame entries, and its most
    important entry: which factors a slot holds, and where. Per representation entry: its weight in DCI
    disentanglement (share of all importance), its own score (1 - entropy over the factors), their product
    (its contribution: the contributions sum to the score) and its importance for each factor: which entries
    hold the score down, and which factors they mix.
    """
    train_reps, train_factors = train.arrays()
    test_reps, test_factors = test.arrays()
    if len(names) != train_reps.shape[1]:
        raise ValueError(f"{len(names)} code names for {train_reps.shape[1]} representation entries")
    importance, _, test_accuracy = factor_importance(train_reps, train_factors, test_reps, test_factors,
                                                     importance_model, np.random.default_rng(seed))
    factor_names = list(train.factor_names or [f"factor{k}" for k in range(train_factors.shape[1])])
    frame = np.array([name.startswith("frame_") for name in names])
    factor_rows = []
    for k, factor in enumerate(factor_names):
        column = importance[:, k]
        majority = np.bincount(train_factors[:, k].astype(np.int64)).argmax()
        factor_rows.append({
            "factor": factor,
            "test_accuracy": float(test_accuracy[k]),
            "majority_accuracy": float(np.mean(test_factors[:, k] == majority)),
            "frame_share": float(column[frame].sum() / max(column.sum(), 1e-12)),
            "top_code": names[int(column.argmax())],
        })
    weights, scores = code_disentanglement(importance)
    code_rows = [{"code": name, "weight": float(weights[j]), "score": float(scores[j]),
                  "contribution": float(weights[j] * scores[j]),
                  "importance": {factor: float(importance[j, k]) for k, factor in enumerate(factor_names)}}
                 for j, name in enumerate(names)]
    return factor_rows, code_rows


def format_readout(rows: list[dict]) -> str:
    """The per-factor readout as a plain-text table."""
    lines = [f"{'factor':<14} {'test acc':>9} {'majority':>9} {'frame share':>12}  top code"]
    lines += [f"{r['factor']:<14} {r['test_accuracy']:>9.3f} {r['majority_accuracy']:>9.3f} "
              f"{r['frame_share']:>12.3f}  {r['top_code']}" for r in rows]
    return "\n".join(lines)


def format_code_readout(rows: list[dict]) -> str:
    """The per-entry view as a plain-text table: weight, score, contribution, then importance per factor."""
    factors = list(rows[0]["importance"]) if rows else []
    lines = [f"{'code':<14} {'weight':>7} {'score':>6} {'contrib':>8}  " + " ".join(f"{f[:11]:>11}" for f in factors)]
    lines += [f"{r['code']:<14} {r['weight']:>7.3f} {r['score']:>6.3f} {r['contribution']:>8.3f}  "
              + " ".join(f"{r['importance'][f]:>11.3f}" for f in factors) for r in rows]
    lines.append(f"{'sum':<14} {sum(r['weight'] for r in rows):>7.3f} {'':>6} "
                 f"{sum(r['contribution'] for r in rows):>8.3f}  (= DCI disentanglement)")
    return "\n".join(lines)


def per_object_scores(model: torch.nn.Module, batches: Iterable[PairBatch], num_slots: int, seed: int = 0,
                      max_images: int | None = None, train_fraction: float = TRAIN_FRACTION,
                      metrics: Iterable[str] = PER_OBJECT_METRICS, dci_importance_model: str = "random_forest",
                      with_frame: bool = True) -> dict[str, float]:
    """Per-object disentanglement of any slot model whose output has `masks` and `slots`, on both frames
    of the eval pairs: the representation of a slot model is its slot vector (a slot VAE's: the mean), with
    its frame when it has one (`slot_representations`)."""
    points = collect_points(model, batches, num_slots, frames=(0, 1), seed=seed, max_images=max_images,
                            with_frame=with_frame)
    return points_scores(points, train_fraction, metrics, seed, dci_importance_model)


def points_scores(points: ObjectPoints, train_fraction: float = TRAIN_FRACTION,
                  metrics: Iterable[str] = PER_OBJECT_METRICS, seed: int = 0,
                  dci_importance_model: str = "random_forest") -> dict[str, float]:
    """`score_points` on the fit/test split of `points`, with the number of points."""
    train, test = split_points(points, train_fraction)
    scores = score_points(train, test, metrics, seed=seed, dci_importance_model=dci_importance_model)
    scores["object_points"] = len(points.representations)
    return scores


def run_object_points(model: torch.nn.Module, config, eval_urls: list[str], max_images: int | None = None,
                      with_frame: bool = True) -> ObjectPoints:
    """The matched (slot, object) points of a run's model on its eval split, with the run's settings."""
    batches = eval_batches(eval_urls, config.eval.batch_size, config.data.resolution)
    return collect_points(model, batches, config.model.num_slots, frames=(0, 1), seed=config.weak_slots.metric_seed,
                          max_images=max_images, with_frame=with_frame)


def run_object_scores(model: torch.nn.Module, config, eval_urls: list[str], max_images: int | None = None,
                      with_frame: bool = True, points: ObjectPoints | None = None) -> dict[str, float]:
    """Per-object scores of a run's model on its eval split, with the run's settings (`weak_slots.*`);
    `points` from `run_object_points` are reused instead of running the model again."""
    options = config.weak_slots
    if points is None:
        points = run_object_points(model, config, eval_urls, max_images, with_frame)
    scores = points_scores(points, metrics=options.object_metrics, seed=options.metric_seed,
                           dci_importance_model=options.dci_importance_model)
    if with_frame and config.model.orientation_search and config.data.generator == "multi_dsprites":
        representations, factors = points.arrays()
        scores.update(points_angle_agreement(representations, factors, points.factor_names,
                                             SPRITE_FACTOR_SIZES["orientation"], config.model.orientation_search))
    return scores


def frame_entries(config, with_frame: bool = True) -> int:
    """How many entries at the end of a run's slot representations are its frame (0 without slot frames)."""
    if not with_frame or config.model.slot_frames == "none":
        return 0
    return len(FRAME_CODES) + (len(ANGLE_CODES) if config.model.orientation_search else 0)


def run_object_readout(points: ObjectPoints, config, with_frame: bool = True) -> tuple[list[dict], list[dict]]:
    """`factor_readout` of a run's points (`run_object_points`), on the same fit/test split as its scores."""
    options = config.weak_slots
    train, test = split_points(points, TRAIN_FRACTION)
    dim = train.arrays()[0].shape[1]
    names = code_names(dim - frame_entries(config, with_frame), dim)
    return factor_readout(train, test, names, seed=options.metric_seed,
                          importance_model=options.dci_importance_model)
