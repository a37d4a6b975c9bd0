"""The VAE family of disentanglement_lib on frame pairs: weakly supervised (Ada-GVAE, Ada-ML-VAE, GVAE,
ML-VAE) and unsupervised baselines (beta-VAE, beta-TCVAE, FactorVAE, DIP-VAE-I/II, AnnealedVAE), scored
with the disentanglement metrics against a ground-truth source (the procedural dSprites grid or the
original dSprites .npz)."""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from data import DSprites, PairBatch, eval_batches
from data.ground_truth import DSpritesSource, NpzDSpritesSource
from metrics.disentanglement import dci, evaluate_all, mig, sample_representations
from viz.traversal import save_latent_traversal
from training.config import ConfigError
from training.options.vae import method_config, warmed_beta
from training.tasks.base import Task
from weak_supervision import (FactorDiscriminator, GaussianEncoderVAE, VAECandidates, bernoulli_reconstruction,
                              method_info, vae_loss)


class VAEWithDiscriminator(nn.Module):
    """The VAE plus FactorVAE's discriminator when the method has one, so one optimiser, one prepare()
    and one checkpoint hold every trained network."""

    def __init__(self, vae: GaussianEncoderVAE, discriminator: nn.Module | None):
        super().__init__()
        self.vae, self.discriminator = vae, discriminator


def frames_for_vae(frames: torch.Tensor, grayscale: bool) -> torch.Tensor:
    """Loader frames (RGB in [-1, 1]) -> Bernoulli targets in [0, 1], one channel when grayscale."""
    images = (frames + 1) / 2
    images = images.mean(dim=1, keepdim=True) if grayscale else images
    return images.contiguous(memory_format=torch.channels_last)


def changed_labels(factor_records: list[dict]) -> torch.Tensor:
    """bool [B, F]: which factors changed in each pair, for the label-based GVAE / ML-VAE."""
    names = factor_records[0]["factor_names"]
    labels = torch.zeros(len(factor_records), len(names), dtype=torch.bool)
    for row, record in enumerate(factor_records):
        for _, name in record["changed"]:
            labels[row, names.index(name)] = True
    return labels


class VAETask(Task):
    name = "vae"
    needs_object_factors = True

    def __init__(self, config):
        super().__init__(config)
        self.method = method_config(config)  # checked at config build time too; again for a config changed since
        self.info = method_info(config.vae.method)
        self.channels = 1 if config.vae.grayscale else 3
        self.source = self._ground_truth_source()

    def _ground_truth_source(self):
        """Where the metrics draw observations from: must be the distribution the model was trained on."""
        if self.config.vae.npz:
            return NpzDSpritesSource(self.config.vae.npz)
        if self.config.data.generator != DSprites.name or self.config.data.train_shards:
            raise ConfigError("task vae scores against a ground-truth source: train on data.generator=dsprites, "
                              "or set vae.npz=<dsprites .npz> for shards converted with data.convert_dsprites")
        return DSpritesSource(resolution=self.config.data.resolution)

    #: several candidate VAEs stop training once one is chosen: data-parallel runs must expect unused weights
    @property
    def has_unused_parameters(self) -> bool:
        return self.config.vae.candidates > 1

    def build_model(self) -> nn.Module:
        options = self.config.vae
        members = [GaussianEncoderVAE(channels=self.channels, latent_dim=options.latent_dim, decoder=options.decoder)
                   for _ in range(options.candidates)]
        vae = members[0] if len(members) == 1 else VAECandidates(members, options.candidate_steps,
                                                                 options.candidate_window)
        discriminator = FactorDiscriminator(self.config.vae.latent_dim) if self.info.needs_discriminator else None
        # channels_last: the CPU convolution kernels for this model are faster in NHWC (docs/benchmarks.md)
        return VAEWithDiscriminator(vae, discriminator).to(memory_format=torch.channels_last)

    def param_groups(self, model: nn.Module) -> list[dict]:
        groups = [{"params": list(model.vae.parameters())}]
        if model.discriminator is not None:
            groups.append({"params": list(model.discriminator.parameters()), "lr": self.config.vae.discriminator_lr,
                           "betas": (0.5, 0.9)})
        return groups

    def training_loss(self, model: nn.Module, batch: PairBatch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        frame0 = frames_for_vae(batch.frame0, self.config.vae.grayscale)
        frame1 = frames_for_vae(batch.frame1, self.config.vae.grayscale)
        changed = changed_labels(batch.factors).to(batch.frame0.device) if self.info.uses_labels else None
        warmup_steps = self.config.vae.beta_warmup_steps
        method = replace(self.method, beta=warmed_beta(self.method.beta, warmup_steps, step)) if warmup_steps \
            else self.method
        extra = {"beta": method.beta} if warmup_steps else {}
        if not isinstance(model.vae, VAECandidates):
            loss, logs = vae_loss(model.vae, model.discriminator, method, frame0, frame1, changed, step=step)
            return loss, {**logs, **extra}
        candidates = model.vae
        members = candidates.training_members()
        results = [vae_loss(member, None, method, frame0, frame1, changed, step=step) for member in members]
        candidates.record(step, [logs["recon_loss"] for _, logs in results])
        # the members' losses are summed, not averaged: each keeps its gradient scale, so Adam's step does not
        # jump when the others stop; the logged loss is that sum, the other scalars the leading member's
        chosen = candidates.chosen_index
        shown = results[0 if len(members) == 1 else chosen][1]
        return sum(loss for loss, _ in results), {**shown, **extra, "candidate": float(chosen),
                                                  "candidates_training": float(len(members))}

    def representation_fn(self, model: nn.Module):
        """observations [n, 1, H, W] in [0, 1] -> posterior means [n, D], the representation dlib scores."""
        vae = model.vae
        device = next(vae.parameters()).device

        @torch.no_grad()
        def represent(observations: np.ndarray) -> np.ndarray:
            images = torch.from_numpy(np.ascontiguousarray(observations, dtype=np.float32)).to(device)
            if images.shape[1] != self.channels:
                images = images.expand(-1, self.channels, -1, -1)
            return vae.encode(images)[0].double().cpu().numpy()

        return represent

    def prepare_quick_eval(self, eval_urls: list[str]) -> None:
        batches = eval_batches(eval_urls, self.config.eval.batch_size, self.config.data.resolution)
        frames = [frames_for_vae(b.frames, self.config.vae.grayscale) for b in batches]
        self.quick_images = torch.cat(frames)[: self.config.train.eval_images]

    @torch.no_grad()
    def eval_reconstruction(self, model: nn.Module, images: torch.Tensor) -> float:
        """Bernoulli reconstruction loss (nats per image) of the posterior means."""
        vae = model.vae
        device = next(vae.parameters()).device
        total = 0.0
        for chunk in images.split(256):
            chunk = chunk.to(device)
            total += float(bernoulli_reconstruction(vae.decode(vae.encode(chunk)[0]), chunk)) * len(chunk)
        return total / len(images)

    def quick_eval(self, model: nn.Module) -> dict[str, float]:
        """Held-out reconstruction loss, MIG and (with `vae.quick_dci_points`) DCI, and the seconds they took
        (so time-to-disentanglement curves can leave the scoring out)."""
        start, options = time.time(), self.config.vae
        was_training = model.training
        model.eval()
        rng = np.random.default_rng(options.metric_seed)
        represent = self.representation_fn(model)
        reps, factors = sample_representations(self.source, represent, options.quick_mig_points, rng, 256, False)
        metrics = {"recon_loss": self.eval_reconstruction(model, self.quick_images), "mig": mig(reps, factors)["mig"]}
        if options.quick_dci_points:
            train = sample_representations(self.source, represent, options.quick_dci_points, rng, 256, False)
            test = sample_representations(self.source, represent, max(options.quick_dci_points // 2, 1), rng, 256, False)
            metrics["dci"] = dci(*train, *test, options.dci_importance_model, rng)["dci_disentanglement"]
        model.train(was_training)
        return metrics | {"eval_seconds": time.time() - start}

    def report(self, model: nn.Module, run_dir: Path, eval_urls: list[str], summary: dict) -> dict:
        """metrics.json (every metric, reconstruction losses) and latents.png (a latent traversal)."""
        config = self.config
        model.eval()
        self.prepare_quick_eval(eval_urls)
        eval_images = self.quick_images
        print(f"scoring {config.vae.method} with {', '.join(config.vae.metrics)} (dlib sample sizes unless "
              "vae.metric_sizes says otherwise)")
        scores = evaluate_all(self.source, self.representation_fn(model), np.random.default_rng(config.vae.metric_seed),
                              metrics=config.vae.metrics, sizes=config.vae.metric_sizes or None,
                              dci_importance_model=config.vae.dci_importance_model)
        metrics = {
            "method": config.vae.method,
            "beta": config.vae.beta,
            "seed": config.train.seed,
            **scores,
            "train_recon_loss": train_reconstruction(run_dir / "train_log.jsonl", summary["steps"]),
            "eval_recon_loss": self.eval_reconstruction(model, eval_images),
            **candidate_summary(model.vae),
            **summary,
            "total_seconds": time.time() - summary["start_time"],
        }
        metrics.pop("start_time")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        save_latent_traversal(model.vae, eval_images[0].to(next(model.parameters()).device), run_dir / "latents.png")
        shown = {k: metrics[k] for k in ("dci_disentanglement", "mig", "beta_vae_eval_accuracy",
                                         "factor_vae_eval_accuracy", "sap", "modularity") if k in metrics}
        print("\n" + "  ".join(f"{k} {v:.3f}" for k, v in shown.items()))
        print(f"train recon loss {metrics['train_recon_loss']:.2f}, after {summary['steps']} steps, "
              f"{metrics['total_seconds'] / 60:.1f} min in all\nrun directory: {run_dir}")
        return metrics


def candidate_summary(vae: nn.Module) -> dict:
    """Which candidate the run kept and each one's mean training reconstruction over the selection window
    (empty for a single VAE), so a report shows how clear the choice was."""
    if not isinstance(vae, VAECandidates):
        return {}
    steps = max(int(vae.tallied_steps), 1)
    return {"candidate": vae.chosen_index, "candidate_window_recon": [float(t) / steps for t in vae.recon_tally]}


def train_reconstruction(log_path: Path, steps: int, fraction: float = 0.1) -> float:
    """Mean training reconstruction loss over the last `fraction` of the run: the unsupervised number the
    paper uses for model selection (it correlates with disentanglement for weakly supervised models)."""
    records = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.is_file() else []
    tail = [r["recon_loss"] for r in records if "recon_loss" in r and r["step"] > steps * (1 - fraction)]
    return float(np.mean(tail)) if tail else float("nan")
