"""Per-object weak supervision: a slot VAE trained on frame pairs with Ada-GVAE / Ada-ML-VAE sharing between
matched slots (or, as the baseline, on both frames independently), scored like the autoencoder (FG-ARI on
both frames, slot sweep) plus per-object disentanglement (slots matched to true objects by mask IoU)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from scoring.per_object import run_object_scores
from data import PairBatch
from slots.build import with_duplicate_merging
from training.build import model_option_errors
from training.config import RunConfig
from training.options.weak_slots import pair_settings, validate as validate_options
from training.schedule import linear_ramp
from training.tasks.discovery import DiscoveryTask
from weak_supervision.slot_pairs import slot_pair_loss
from weak_supervision.slot_vae import SlotVAE


def build_slot_vae(config: RunConfig) -> SlotVAE:
    """The run's slot VAE, wrapped in duplicate merging at evaluation when model.merge_duplicates is set (the
    same wrapper as the autoencoder's, training/build.py)."""
    options = config.weak_slots
    model_options = asdict(config.model)
    merge_duplicates = model_options.pop("merge_duplicates")
    with model_option_errors():
        model = SlotVAE(options.latent_dim, options.initial_logvar, options.glimpse_size,
                        options.outline_size if options.outline_weight > 0 else 0,
                        options.outline_input and options.outline_weight > 0, options.orientation_score,
                        resolution=(config.data.resolution, config.data.resolution),
                        silhouette_head=options.silhouette_weight > 0, **model_options)
        return with_duplicate_merging(model, merge_duplicates)


class WeakSlotsTask(DiscoveryTask):
    name = "weak_slots"
    needs_object_factors = True

    def __init__(self, config: RunConfig):
        super().__init__(config)
        validate_options(config)  # run at config build time too; again here for a config changed since
        self.settings = pair_settings(config)

    def build_model(self) -> nn.Module:
        return build_slot_vae(self.config)

    def training_loss(self, model: nn.Module, batch: PairBatch, step: int
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.config.weak_slots.mask_prior_fade_steps > 0:
            model.mask_prior_weight.fill_(self.mask_prior_weight(step))
        return slot_pair_loss(model, batch.frame0, batch.frame1, self.settings,
                              warmup=self.warmup(step))

    def warmup(self, step: int) -> float:
        """The fraction of beta and of the sampling noise applied at `step`: 0 (a deterministic autoencoder
        of the posterior means) up to `warmup_start`, then rising linearly to 1 over `warmup_steps`."""
        return linear_ramp(step, self.config.weak_slots.warmup_start, self.config.weak_slots.warmup_steps)

    def mask_prior_weight(self, step: int) -> float:
        """1 up to `mask_prior_fade_start`, then falling linearly to `mask_prior_floor` over
        `mask_prior_fade_steps` (0 steps: it stays 1)."""
        options = self.config.weak_slots
        if options.mask_prior_fade_steps <= 0:
            return 1.0
        fall = linear_ramp(step, options.mask_prior_fade_start, options.mask_prior_fade_steps)
        return 1.0 - (1.0 - options.mask_prior_floor) * fall

    def report(self, model: nn.Module, run_dir: Path, eval_urls: list[str], summary: dict) -> dict:
        metrics = super().report(model, run_dir, eval_urls, summary)
        scores = run_object_scores(model, self.config, eval_urls)
        metrics.update(scores)
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print("per-object: " + "  ".join(f"{key.removeprefix('object_')} {value:.3f}"
                                         for key, value in scores.items() if key != "object_points"))
        return metrics
