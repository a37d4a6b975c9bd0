"""Objects in a canonical pose plus a finite group acting on them: what the orientation-search VAEs train on.

Two sets share one interface: voxel objects (data/voxels.py, read from voxel shards) under the 24 rotations of
the cube, and glyphs (data/glyphs.py) under the 36 rendered orientations of their factor grid. A batch names
each sample's object and group element, so training can draw a fresh orientation every step (the data
are tiny and resident in memory) and evaluation knows the pose it has to recover.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from einops import rearrange

from data.glyphs import FACTOR_SIZES as GLYPH_FACTOR_SIZES
from data.glyphs import GLYPH_NAMES, Glyphs
from data.voxel_shards import VoxelSet
from orientation import CUBE_GROUP_SIZE, compose_index, rotate_voxels


@dataclass(frozen=True)
class OrientedBatch:
    """B objects, each under one group element: inputs [B, 1, D, D, D] (voxels) or [B, 1, H, W] (images) in
    [0, 1]; `orientation` [B] the group element applied to the canonical object; `objects` [B] their indices."""

    inputs: torch.Tensor
    orientation: torch.Tensor
    objects: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> OrientedBatch:
        return replace(self, inputs=self.inputs.to(device), orientation=self.orientation.to(device),
                       objects=self.objects.to(device))


class VoxelObjectSet:
    """Voxel objects under the cube group: element g is `rotate_voxels(canonical, g)` (exact)."""

    group_size = CUBE_GROUP_SIZE

    def __init__(self, voxels: VoxelSet):
        self.canonical = voxels.canonical  # bool [N, D, D, D]
        self.test_orientation = voxels.rotation  # each object's recorded pose for the test set
        self.asymmetric = voxels.asymmetric
        self.kinds = list(voxels.kinds)
        self.families = list(voxels.families)

    def __len__(self) -> int:
        return self.canonical.shape[0]

    def oriented(self, objects: torch.Tensor, orientation: torch.Tensor) -> torch.Tensor:
        """[B, 1, D, D, D] float: object b under group element orientation[b]."""
        grids = rotate_voxels(self.canonical[objects], orientation)
        return rearrange(grids, "b x y z -> b 1 x y z").float()

    @staticmethod
    def compose(first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
        """The group element `then` applied after `first`."""
        return compose_index(first, then)


class GlyphObjectSet:
    """Every (glyph, scale) of the glyphs generator, rendered at each of its 36 orientations (exactly, by the
    renderer, not resampled): element k is the glyph turned by 2 pi k / 36. The set is the whole factor grid
    (24 objects), so training and evaluation see the same objects: the experiments measure orientation, not
    generalisation to new shapes."""

    group_size = GLYPH_FACTOR_SIZES["orientation"]

    def __init__(self, resolution: int):
        generator = Glyphs(resolution=resolution)
        glyph, scale, turn = np.meshgrid(*(np.arange(n) for n in GLYPH_FACTOR_SIZES.values()), indexing="ij")
        rows = np.stack([glyph.ravel(), scale.ravel(), turn.ravel()], axis=1)
        grey = torch.from_numpy(generator.render_batch(rows)).float() / 255
        self.images = rearrange(grey, "(o k) h w -> o k 1 h w", k=self.group_size)  # [objects, 36, 1, H, W]
        objects = len(self.images)
        self.test_orientation = torch.from_numpy(np.random.default_rng(0).integers(self.group_size, size=objects))
        self.asymmetric = torch.ones(objects, dtype=torch.bool)  # tests/test_glyphs.py: no glyph is symmetric
        self.kinds = [GLYPH_NAMES[o // GLYPH_FACTOR_SIZES["scale"]] for o in range(objects)]
        self.families = ["glyphs"] * objects

    def __len__(self) -> int:
        return self.images.shape[0]

    def oriented(self, objects: torch.Tensor, orientation: torch.Tensor) -> torch.Tensor:
        return self.images[objects, orientation]

    def compose(self, first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
        return (torch.as_tensor(first) + torch.as_tensor(then)) % self.group_size


def draw_batch(objects: VoxelObjectSet | GlyphObjectSet, batch_size: int, seed: int, step: int, rank: int,
               all_orientations: bool) -> OrientedBatch:
    """Training batch `step` of process `rank`: a pure function of its arguments, so a resumed run replays
    exactly the batches an uninterrupted one would have drawn. Objects are drawn with replacement; each gets a
    uniform group element (or the identity when training on one orientation)."""
    rng = np.random.default_rng([seed, step, rank])
    chosen = torch.from_numpy(rng.integers(len(objects), size=batch_size))
    turns = rng.integers(objects.group_size, size=batch_size) if all_orientations else np.zeros(batch_size, int)
    orientation = torch.from_numpy(turns).long()
    return OrientedBatch(objects.oriented(chosen, orientation), orientation, chosen)
