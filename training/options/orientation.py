"""Options of `task: orientation` (see training/tasks/orientation.py): a VAE on voxel objects (the 24 rotations
of the cube) or on glyph images (planar angles) whose training may search each input's orientation before
the backward pass. Every combination that cannot work is refused here, when the config is built."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from training.errors import ConfigError

if TYPE_CHECKING:
    from training.config import RunConfig

OBJECTS = ("voxels", "glyphs")
TRAIN_ORIENTATIONS = ("one", "all")
SEARCHES = {"voxels": ("none", "cube"), "glyphs": ("none", "planar")}


@dataclass
class OrientationConfig:
    """Options of `task: orientation`."""

    objects: str = "voxels"  # voxels: 3D objects (data/voxels.py) | glyphs: 2D glyphs (data/glyphs.py)
    voxel_size: int = 32  # side of the voxel grid
    families: list = field(default_factory=lambda: ["polycube", "furniture"])  # voxel object families
    # one: every object in its canonical pose; all: a random group element each time an object is drawn
    train_orientations: str = "all"
    search: str = "cube"  # none | cube (voxels, the 24 rotations) | planar (glyphs, `planar_angles` angles)
    planar_angles: int = 36  # planar search grid (10-degree steps: the glyph orientations)
    refine_steps: int = 0  # planar: Adam steps on each chosen angle after the grid search (the Affine VAE's)
    refine_lr: float = 0.01
    search_chunk: int | None = None  # candidates per no-grad search pass (None: the measured default per group)
    latent_dim: int = 8
    beta: float = 1.0
    width: int = 32  # channels of the coarsest convolution (the full-resolution layers have width / 2)
    eval_objects: int = 256  # objects scored at the end (reconstruction, recovery, invariance)
    consistency_objects: int = 32  # asymmetric objects whose 24 rotations are searched for the consistency score


#: restricted model options this task honours: none (its VAEs have no slots)
MODEL_OPTIONS: tuple[str, ...] = ()


def model_options(config: RunConfig) -> tuple[str, ...]:
    return MODEL_OPTIONS


def validate(config: RunConfig) -> None:
    """The object kind, the training orientations and the search must fit together."""
    options = config.orientation
    if options.objects not in OBJECTS:
        raise ConfigError(f"orientation.objects must be one of {', '.join(OBJECTS)}, got {options.objects!r}")
    if options.train_orientations not in TRAIN_ORIENTATIONS:
        raise ConfigError(f"orientation.train_orientations must be one of {', '.join(TRAIN_ORIENTATIONS)}, "
                          f"got {options.train_orientations!r}")
    allowed = SEARCHES[options.objects]
    if options.search not in allowed:
        raise ConfigError(f"orientation.search={options.search!r} does not act on {options.objects}; "
                          f"use one of {', '.join(allowed)}")
    for key, minimum in (("voxel_size", 8), ("planar_angles", 1), ("latent_dim", 1), ("width", 1),
                         ("eval_objects", 1), ("consistency_objects", 0), ("refine_steps", 0)):
        if getattr(options, key) < minimum:
            raise ConfigError(f"orientation.{key} must be >= {minimum}, got {getattr(options, key)}")
    if options.search_chunk is not None and options.search_chunk < 1:
        raise ConfigError(f"orientation.search_chunk must be >= 1 or null, got {options.search_chunk}")
    if options.beta < 0:
        raise ConfigError(f"orientation.beta must be >= 0, got {options.beta}")
    if options.objects == "glyphs" and config.data.generator != "glyphs":
        raise ConfigError("orientation.objects=glyphs renders its images with the glyphs generator: "
                          f"set data.generator=glyphs (got {config.data.generator!r})")


__all__ = ["MODEL_OPTIONS", "OBJECTS", "OrientationConfig", "SEARCHES", "TRAIN_ORIENTATIONS", "model_options",
           "validate"]
