"""Set prediction: Slot Attention with a per-slot MLP head predicts every object's properties (position,
shape, colour, scale, is-object); trained on both frames of each pair with a loss on the pairs that
Hungarian matching on a Huber cost makes, scored by AP at the official distance thresholds, also with
other slot counts at test time."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data import DataError, PairBatch, eval_batches, make_generator
from data.properties import PropertyLayout, object_targets
from scoring.set_prediction import AP_KEYS, format_table, load_property_eval_set, sweep, write_sweep
from metrics.average_precision import DISTANCE_SCALE, DISTANCE_UNIT
from slots.set_prediction import SetPredictionOutput, SlotSetPredictor
from training.build import build_model
from training.config import ConfigError, RunConfig
from training.options.set_prediction import validate as validate_options
from training.set_loss import (SetLoss, attention_compactness_loss, attention_segmentation_loss,
                                hungarian_classification_loss, hungarian_huber_loss)
from training.tasks.base import Task


def property_layout(config: RunConfig) -> tuple[PropertyLayout, int]:
    """The property vector layout and the most objects per scene, from the configured generator (the
    layout is checked against every batch's factors.json, so shards of another generator are refused)."""
    options = config.set_prediction
    try:
        generator = make_generator(config.data.generator, **dict(config.data.generator_kwargs))
        layout = PropertyLayout.from_factor_sizes(generator.factor_sizes, options.coordinate_factors,
                                                  options.discrete_factors)
    except DataError as error:
        raise ConfigError(str(error)) from None
    return layout, generator.max_objects


class SetPredictionTask(Task):
    name = "set_prediction"
    needs_object_factors = True

    def __init__(self, config: RunConfig):
        super().__init__(config)
        options = config.set_prediction
        validate_options(config)  # run at config build time too; again here for a config changed since
        self.layout, max_objects = property_layout(config)
        if config.model.num_slots < max_objects:
            raise ConfigError(f"set prediction needs model.num_slots >= {max_objects} (the most objects in a "
                              f"{config.data.generator} scene: one slot per object), got {config.model.num_slots}")
        weights = torch.full((self.layout.dim,), float(options.discrete_weight))
        weights[self.layout.coordinate_slice] = options.coordinate_weight
        weights[self.layout.object_index] = options.object_weight
        if float(weights.sum()) <= 0:
            raise ConfigError("set_prediction: the loss weights are all 0")
        self.weights = weights

    def build_model(self) -> nn.Module:
        model, options = self.config.model, self.config.set_prediction
        strides = tuple(options.encoder_strides) if options.encoder_strides is not None else None
        autoencoder = build_model(self.config) if options.reconstruction_weight > 0 else None
        return SlotSetPredictor(
            self.layout.num_coordinates, [size for _, size in self.layout.discrete], num_slots=model.num_slots,
            num_iterations=model.num_iterations, slot_dim=model.slot_dim, mlp_hidden_dim=model.mlp_hidden_dim,
            encoder_channels=model.encoder_channels, encoder_layers=model.encoder_layers,
            encoder_kernel=model.encoder_kernel, encoder_strides=strides, head_hidden_dim=options.head_hidden_dim,
            implicit_grad=model.implicit_grad, input_skip=options.input_skip, slot_geometry=options.slot_geometry,
            attention_coordinates=options.attention_coordinates, glimpse_size=options.glimpse_size,
            glimpse_channels=options.glimpse_channels, autoencoder=autoencoder, head_masks=options.head_masks,
        )

    def targets(self, factors: list[dict]) -> torch.Tensor:
        """Targets [2B, K, P] of both frames (frame 0s first, as the images), padded to the slot count."""
        num_slots = self.config.model.num_slots
        return torch.cat([object_targets(factors, self.layout, frame, num_slots)[0] for frame in (0, 1)])

    def loss(self, output: SetPredictionOutput, targets: torch.Tensor, images: torch.Tensor) -> SetLoss:
        """The configured matched loss plus, if weighted, the attention segmentation loss."""
        options = self.config.set_prediction
        weights = self.weights.to(targets.device)
        if options.loss == "huber":
            result = hungarian_huber_loss(output.predictions.float(), targets, options.huber_delta, weights)
        else:
            result = hungarian_classification_loss(
                output.logits.float(), output.predictions.float(), targets, self.layout.num_coordinates,
                tuple(size for _, size in self.layout.discrete), options.huber_delta, weights)
        if options.segmentation_weight > 0:
            segmentation = attention_segmentation_loss(output.attention.float(), images, output.grid_size)
            result.loss = result.loss + options.segmentation_weight * segmentation
            result.parts["segmentation"] = segmentation.detach()
        if options.reconstruction_weight > 0:
            reconstruction = F.mse_loss(output.reconstruction.float(), images)
            result.loss = result.loss + options.reconstruction_weight * reconstruction
            result.parts["reconstruction"] = reconstruction.detach()
        if options.compactness_weight > 0:
            compactness = attention_compactness_loss(output.geometry.float(), result.pred_idx, result.matched_targets)
            result.loss = result.loss + options.compactness_weight * compactness
            result.parts["compactness"] = compactness.detach()
        return result

    def training_loss(self, model: nn.Module, batch: PairBatch, step: int
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = batch.frames
        targets = self.targets(batch.factors).to(images.device)
        result = self.loss(model(images), targets, images)
        return result.loss, {"loss": result.loss.detach(), **result.parts}

    def prepare_quick_eval(self, eval_urls: list[str]) -> None:
        config = self.config
        self.quick_set = load_property_eval_set(
            eval_batches(eval_urls, config.eval.batch_size, config.data.resolution), self.layout,
            config.train.eval_images)

    def quick_eval(self, model: nn.Module) -> dict[str, float]:
        model_config = self.config.model
        row = sweep(model, self.quick_set, self.layout, [model_config.num_slots], [model_config.num_iterations],
                    seed=self.config.eval.seed)[0]
        return {key: value for key, value in row.items() if key.startswith(("ap_", "accuracy_", "distance_"))}

    def report(self, model: nn.Module, run_dir: Path, eval_urls: list[str], summary: dict) -> dict:
        """Whole eval split: AP at every threshold, the test-time slot sweep (CSV + plot), metrics.json."""
        config = self.config
        eval_set = load_property_eval_set(eval_batches(eval_urls, config.eval.batch_size, config.data.resolution),
                                          self.layout)
        num_slots, iterations = config.model.num_slots, config.model.num_iterations
        slot_counts = sorted(set(config.eval.sweep_slots) | {num_slots})
        iteration_counts = sorted(set(config.eval.sweep_iterations) | {iterations})
        rows = sweep(model, eval_set, self.layout, slot_counts, iteration_counts, seed=config.eval.seed)
        write_sweep(rows, run_dir, num_slots)
        main = next(r for r in rows if (r["num_slots"], r["num_iterations"]) == (num_slots, iterations))
        metrics = {
            **{key: value for key, value in main.items() if key.startswith(("ap_", "accuracy_", "distance_"))},
            "eval_images": main["images"],
            "eval_objects": main["objects"],
            "num_slots": num_slots,
            "num_iterations": iterations,
            "property_layout": self.layout.describe(),
            "distance_unit": DISTANCE_UNIT,
            "distance_scale": DISTANCE_SCALE,
            **summary,
            "total_seconds": time.time() - summary["start_time"],
            "seed": config.train.seed,
            "slot_sweep": [{k: row[k] for k in ("num_slots", "num_iterations", *AP_KEYS)} for row in rows],
        }
        metrics.pop("start_time")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"\nset prediction AP, test-time slot sweep ({main['images']} eval images, {main['objects']} objects):")
        print(format_table(rows))
        print(f"\nAP@inf {metrics['ap_inf']:.3f}  AP@1 {metrics['ap_1']:.3f}  AP@0.5 {metrics['ap_0.5']:.3f}  "
              f"AP@0.25 {metrics['ap_0.25']:.3f}  AP@0.125 {metrics['ap_0.125']:.3f}  after {summary['steps']} steps, "
              f"{metrics['total_seconds'] / 60:.1f} min in all")
        print(f"run directory: {run_dir}")
        return metrics
