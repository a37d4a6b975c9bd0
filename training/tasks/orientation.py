"""Orientation-search VAEs (the seed posts by Bidart; the Affine VAE): a VAE on voxel objects or glyphs whose
training may search each input's orientation over a finite group before the backward pass, so the latent
codes shape in one canonical pose and orientation leaves it. The report scores the posts' experiments on the
held-out objects: reconstruction with and without the search, test-time recovery of a rotated object's pose,
how consistently the search maps the rotations of one object to one pose, and whether the latent still
predicts the input's orientation."""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from torch import nn

from data import DataError
from data.oriented_objects import GlyphObjectSet, OrientedBatch, VoxelObjectSet, draw_batch
from data.voxel_shards import ensure_voxel_dataset, load_voxels
from orientation import all_planar_rotations, all_rotations, best_of_group, planar_angles
from training.config import ConfigError
from training.tasks.base import Task
from weak_supervision.orientation_vae import (GlyphVAE, OrientationSearch, VoxelVAE, orientation_vae_loss,
                                              per_sample_loss)


class OrientationTask(Task):
    name = "orientation"

    def __init__(self, config):
        super().__init__(config)
        options = config.orientation
        self.options = options
        self.search = OrientationSearch(group=options.search, planar_angles=options.planar_angles,
                                        refine_steps=options.refine_steps, refine_lr=options.refine_lr,
                                        chunk_size=options.search_chunk)
        self.objects: VoxelObjectSet | GlyphObjectSet | None = None

    # --- data -------------------------------------------------------------------------------------------
    def datasets(self, progress: bool = True) -> tuple[list[str], list[str], dict]:
        """Voxel shards (made or found in the cache; loaded now, so damage fails at start-up). Glyphs are the
        generator's whole factor grid, rendered in memory: no shards."""
        options, data = self.options, self.config.data
        if options.objects == "glyphs":
            return [], [], {"objects": "glyphs", "resolution": data.resolution}
        try:
            info = ensure_voxel_dataset(data.root, size=options.voxel_size, families=tuple(options.families),
                                        num_train=data.num_train, num_eval=data.num_eval, seed=data.seed,
                                        progress=progress)
            load_voxels(info.eval_shards)
        except DataError as error:
            raise ConfigError(f"orientation data: {error}") from None
        description = {"directory": str(info.root), "objects": "voxels", "size": options.voxel_size,
                       "families": list(options.families), "num_train": data.num_train, "num_eval": data.num_eval}
        return [str(u) for u in info.train_shards], [str(u) for u in info.eval_shards], description

    def object_set(self, urls: list[str]) -> VoxelObjectSet | GlyphObjectSet:
        if self.options.objects == "glyphs":
            return GlyphObjectSet(self.config.data.resolution)
        return VoxelObjectSet(load_voxels(urls))

    def train_batches(self, urls: list[str], start_step: int):
        """Batch `step` is a pure function of (seed, step, rank): resuming replays the same batches."""
        objects = self.object_set(urls)
        train, rank = self.config.train, PartialState().process_index
        step = start_step
        while True:
            yield draw_batch(objects, train.batch_size, train.seed, step, rank,
                             self.options.train_orientations == "all")
            step += 1

    # --- model and loss -----------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        options = self.options
        if options.objects == "voxels":
            return VoxelVAE(latent_dim=options.latent_dim, size=options.voxel_size, width=options.width)
        return GlyphVAE(latent_dim=options.latent_dim, resolution=self.config.data.resolution, width=options.width)

    def training_loss(self, model: nn.Module, batch: OrientedBatch, step: int):
        return orientation_vae_loss(model, batch.inputs, self.search, self.options.beta)

    # --- evaluation -----------------------------------------------------------------------------------------
    def eval_pose(self) -> int | None:
        """The pose every test object is shown in: the identity for a model trained on one orientation (its
        own distribution), else each object's recorded random pose."""
        return 0 if self.options.train_orientations == "one" else None

    def prepare_quick_eval(self, eval_urls: list[str]) -> None:
        self.eval_set = self.object_set(eval_urls)

    def group_candidates(self, inputs: torch.Tensor) -> torch.Tensor:
        """[G, B, ...]: every input under every element of the task's group."""
        if self.options.objects == "voxels":
            return all_rotations(inputs)
        return all_planar_rotations(inputs, planar_angles(self.eval_set.group_size, device=inputs.device))

    def deterministic_loss(self, model: nn.Module):
        beta = self.options.beta
        return lambda x: per_sample_loss(model, x, beta=beta, sample=False)[1]  # reconstruction, nats per object

    @torch.no_grad()
    def scored(self, model: nn.Module, objects: torch.Tensor, orientation: torch.Tensor, search: bool,
               chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction nats per object, chosen group element) of objects in the given poses, the group
        searched by brute force (every element scored, per-sample argmin) when `search`."""
        device = next(model.parameters()).device
        losses, chosen = [], []
        for index in range(0, len(objects), chunk):
            inputs = self.eval_set.oriented(objects[index:index + chunk], orientation[index:index + chunk]).to(device)
            if search:
                result = best_of_group(self.group_candidates(inputs), self.deterministic_loss(model),
                                       chunk_size=self.options.search_chunk)
                losses.append(result.loss.cpu())
                chosen.append(result.index.cpu())
            else:
                losses.append(self.deterministic_loss(model)(inputs).float().cpu())
                chosen.append(torch.zeros(len(inputs), dtype=torch.long))
        return torch.cat(losses), torch.cat(chosen)

    def eval_objects(self) -> torch.Tensor:
        return torch.arange(min(self.options.eval_objects, len(self.eval_set)))

    def quick_eval(self, model: nn.Module) -> dict[str, float]:
        start = time.time()
        was_training = model.training
        model.eval()
        objects = self.eval_objects()[:128]
        pose = self.eval_set.test_orientation[objects] if self.eval_pose() is None else torch.zeros_like(objects)
        loss, _ = self.scored(model, objects, pose, search=self.options.search != "none")
        model.train(was_training)
        return {"recon_loss": float(loss.mean()), "eval_seconds": time.time() - start}

    def report(self, model: nn.Module, run_dir: Path, eval_urls: list[str], summary: dict) -> dict:
        metrics = {**self.experiment_metrics(model, eval_urls), **summary,
                   "total_seconds": time.time() - summary["start_time"]}
        metrics.pop("start_time")
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print("  ".join(f"{key} {metrics[key]:.3f}" for key in (
            "recon_canonical", "recon_all", "recon_all_search", "recovery_accuracy", "consistency",
            "kind_agreement", "orientation_probe_accuracy")))
        print(f"after {summary['steps']} steps, {metrics['total_seconds'] / 60:.1f} min in all\nrun directory: {run_dir}")
        return metrics

    def experiment_metrics(self, model: nn.Module, eval_urls: list[str]) -> dict:
        """The posts' four experiments on the held-out objects (see the module docstring and
        docs/tasks/orientation.md); also what `python -m eval.orientation` rescores."""
        model.eval()
        self.prepare_quick_eval(eval_urls)
        objects = self.eval_objects()
        posed = self.eval_set.test_orientation[objects]
        searching = self.options.search != "none"
        recon_canonical, _ = self.scored(model, objects, torch.zeros_like(objects), search=False)
        recon_posed, _ = self.scored(model, objects, posed, search=False)
        recon_posed_search, chosen = self.scored(model, objects, posed, search=True)
        asymmetric = self.eval_set.asymmetric[objects]
        recovered = self.eval_set.compose(posed, chosen) == 0  # the search brought the input back to canonical
        families = [self.eval_set.families[int(o)] for o in objects]
        by_family = {family: float(recovered[[i for i, f in enumerate(families) if f == family and asymmetric[i]]]
                                   .float().mean()) for family in sorted(set(families))}
        return {
            "objects": self.options.objects, "train_orientations": self.options.train_orientations,
            "search": self.options.search, "latent_dim": self.options.latent_dim, "seed": self.config.train.seed,
            # experiment 1: reconstruction (Bernoulli nats per object, posterior mean)
            "recon_canonical": float(recon_canonical.mean()),
            "recon_all": float(recon_posed.mean()),
            "recon_all_search": float(recon_posed_search.mean()),
            # experiment 2: test-time recovery (exact return to the canonical pose, asymmetric objects), also
            # per family: a family drawn without a preferred pose (polycubes grow isotropically) has none to
            # recover, so only the furniture's figure measures the experiment
            "recovery_accuracy": float(recovered[asymmetric].float().mean()),
            "recovery_by_family": by_family,
            **self.consistency(model),
            **self.orientation_probe(model, searching),
        }

    @torch.no_grad()
    def consistency(self, model: nn.Module) -> dict[str, float]:
        """Experiment 3: each asymmetric object shown in all G poses, each pose searched: the fraction of
        objects whose G inputs all end in one pose; and across objects of a kind (e.g. every chair), the
        fraction whose preferred pose is the kind's most common one (does the model put all chairs the same
        way up?)."""
        candidates = torch.nonzero(self.eval_set.asymmetric).flatten()[: self.options.consistency_objects]
        if len(candidates) == 0:
            return {"consistency": float("nan"), "kind_agreement": float("nan")}
        group = self.eval_set.group_size
        objects = candidates.repeat_interleave(group)
        poses = torch.arange(group).repeat(len(candidates))
        _, chosen = self.scored(model, objects, poses, search=True)
        final = self.eval_set.compose(poses, chosen).reshape(len(candidates), group)
        consistent = (final == final[:, :1]).all(dim=1)
        preferred = torch.mode(final, dim=1).values
        kinds = [self.eval_set.kinds[int(o)] for o in candidates]
        agree = []
        for kind in sorted(set(kinds)):
            members = preferred[[i for i, k in enumerate(kinds) if k == kind]]
            if len(members) >= 2:
                agree += (members == torch.mode(members).values).tolist()
        return {"consistency": float(consistent.float().mean()),
                "kind_agreement": float(np.mean(agree)) if agree else float("nan"),
                "canonical_preferred": float((preferred == 0).float().mean())}

    @torch.no_grad()
    def orientation_probe(self, model: nn.Module, searching: bool, poses_per_object: int = 4) -> dict[str, float]:
        """Experiment 4: a random forest predicting the input's pose from the latent mean (of the searched
        input when the model trains with the search) on asymmetric objects, held-out accuracy against chance
        1/G: near chance means orientation left the latent."""
        from sklearn.ensemble import RandomForestClassifier

        objects = torch.nonzero(self.eval_set.asymmetric[self.eval_objects()]).flatten()
        if len(objects) < 4:
            return {"orientation_probe_accuracy": float("nan")}
        group, device = self.eval_set.group_size, next(model.parameters()).device
        rng = np.random.default_rng(self.config.train.seed)
        objects = objects.repeat_interleave(poses_per_object)
        poses = torch.from_numpy(rng.integers(group, size=len(objects)))
        latents = []
        for index in range(0, len(objects), 64):
            inputs = self.eval_set.oriented(objects[index:index + 64], poses[index:index + 64]).to(device)
            if searching:
                candidates = self.group_candidates(inputs)
                result = best_of_group(candidates, self.deterministic_loss(model))
                inputs = candidates[result.index, torch.arange(len(inputs))]
            latents.append(model.encode(inputs)[0].float().cpu())
        features, labels = torch.cat(latents).numpy(), poses.numpy()
        split = np.arange(len(objects)) // poses_per_object % 3 != 0  # held-out objects, not just poses
        with warnings.catch_warnings():  # 24 classes on a few hundred points: sklearn suspects a regression
            warnings.simplefilter("ignore", UserWarning)
            forest = RandomForestClassifier(n_estimators=100, random_state=0).fit(features[split], labels[split])
        accuracy = float((forest.predict(features[~split]) == labels[~split]).mean())
        return {"orientation_probe_accuracy": accuracy, "orientation_probe_chance": 1 / group}
