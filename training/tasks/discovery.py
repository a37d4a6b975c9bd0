"""Object discovery: a Slot Attention autoencoder trained to reconstruct both frames of each pair,
scored by FG-ARI (and ARI, mBO, mIoU) with a sweep over test-time slot and iteration counts."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data import PairBatch, eval_batches
from scoring.discovery import evaluate_discovery, is_labelled, load_eval_set
from scoring.slot_sweep import format_table, sweep, write_sweep
from viz.slot_grid import save_slot_grid
from slots import SlotAutoencoderOutput
from training.build import build_model
from training.config import RunConfig
from training.options.backbone import check_backbone_weights
from training.tasks.base import Task


class DiscoveryTask(Task):
    """Also the base of every task whose model returns per-pixel `masks` and takes num_slots /
    num_iterations per call (DINOSAUR): quick evaluation, slot sweep and report are shared."""

    name = "discovery"

    def __init__(self, config: RunConfig):
        super().__init__(config)
        check_backbone_weights(config)  # run at config build time too; again here for a config changed since

    def build_model(self) -> nn.Module:
        return build_model(self.config)

    def slot_picture_output(self, model: nn.Module, images: torch.Tensor,
                            generator: torch.Generator) -> SlotAutoencoderOutput:
        """What slots.png shows for these images: the autoencoder's own output."""
        return model(images, generator=generator)

    def training_loss(self, model: nn.Module, batch: PairBatch, step: int
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, _ = batch.images_and_masks()
        loss = F.mse_loss(model(images).reconstruction.float(), images)
        return loss, {"loss": loss.detach()}

    def prepare_quick_eval(self, eval_urls: list[str]) -> None:
        config = self.config
        self.quick_set = load_eval_set(eval_batches(eval_urls, config.eval.batch_size, config.data.resolution),
                                       config.train.eval_images)

    def quick_eval(self, model: nn.Module) -> dict[str, float]:
        metrics = evaluate_discovery(model, self.quick_set, self.config.model.num_slots,
                                     self.config.model.num_iterations, seed=self.config.eval.seed)
        return {key: metrics[key] for key in ("fg_ari", "ari", "fg_ari_unmerged", "mse") if key in metrics}

    def report(self, model: nn.Module, run_dir: Path, eval_urls: list[str], summary: dict) -> dict:
        """Whole eval split: metrics.json, the slot sweep (CSV + plot) and the slot picture. Eval images
        without masks (a user's imported images) get the reconstruction error and the pictures only."""
        config = self.config
        eval_set = load_eval_set(eval_batches(eval_urls, config.eval.batch_size, config.data.resolution))
        labelled = is_labelled(eval_set)
        num_slots, iterations = config.model.num_slots, config.model.num_iterations
        slot_counts = sorted(set(config.eval.sweep_slots) | {num_slots})
        iteration_counts = sorted(set(config.eval.sweep_iterations) | {iterations})
        rows = sweep(model, eval_set, slot_counts, iteration_counts, seed=config.eval.seed)
        write_sweep(rows, run_dir, num_slots)
        main = next(r for r in rows if (r["num_slots"], r["num_iterations"]) == (num_slots, iterations))

        images, masks = eval_set[0][0][: config.eval.num_visualise], eval_set[0][1][: config.eval.num_visualise]
        device = next(model.parameters()).device
        model.eval()
        with torch.no_grad():
            generator = torch.Generator(device=device).manual_seed(config.eval.seed)
            output = self.slot_picture_output(model, images.to(device), generator)
        save_slot_grid(images, output, run_dir / "slots.png", true_masks=masks if labelled else None)

        metrics = {
            **{key: main[key] for key in ("fg_ari", "ari", "mbo", "miou", "fg_ari_unmerged", "mse") if key in main},
            **({"fg_ari_undefined_images": main["fg_ari_undefined"]} if labelled else {}),
            "labelled": labelled,
            "eval_images": main["images"],
            "num_slots": num_slots,
            "num_iterations": iterations,
            **summary,
            "total_seconds": time.time() - summary["start_time"],
            "seed": config.train.seed,
            "slot_sweep": [{k: row[k] for k in ("num_slots", "num_iterations", "fg_ari", "ari", "mbo",
                                                "fg_ari_unmerged", "mse") if k in row} for row in rows],
        }
        metrics.pop("start_time")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"\nslot sweep ({main['images']} eval images):\n{format_table(rows)}")
        print(f"\n{result_line(metrics)}  after {summary['steps']} steps, {metrics['total_seconds'] / 60:.1f} min in all")
        print(f"run directory: {run_dir}")
        return metrics


def result_line(metrics: dict) -> str:
    """The headline scores; on images without masks the reconstruction error and where to look instead."""
    if not metrics["labelled"]:
        error = f"reconstruction MSE {metrics['mse']:.4f} " if "mse" in metrics else ""
        return f"{error}(the eval images have no masks, so there is no segmentation score: see slots.png)"
    unmerged = (f" ({metrics['fg_ari_unmerged']:.3f} before merging duplicate slots)"
                if "fg_ari_unmerged" in metrics else "")
    return f"FG-ARI {metrics['fg_ari']:.3f}{unmerged}  ARI {metrics['ari']:.3f}  mBO {metrics['mbo']:.3f}"
