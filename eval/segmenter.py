"""A trained run as a segmenter of anyone's images, from Python:

    from eval import load_run
    model = load_run("runs/default-20261206-0900")
    result = model.segment(["photo.jpg", "frame_0001.png"], num_slots=5)
    result.masks.shape  # [2, 5, 32, 32]: soft masks, summing to 1 over slots at every pixel
    result.ids          # [2, 32, 32]: the slot that owns each pixel

Images are prepared as the run's training data were (`data.images`): the centred square is cropped and resized
to the run's resolution, so what a model sees of a photo does not depend on the call. The slot count is a
per-call argument, as everywhere in the project.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np
import torch
from einops import rearrange
from PIL import Image

from data.images import CropBox, fit_square, read_rgb
from eval.run_loading import TrainedRun, load_trained_run
from training.config import ConfigError

#: tasks whose models return per-pixel masks over slots
SEGMENTING_TASKS = ("discovery", "dinosaur", "weak_slots")
ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


@dataclass
class Segmentation:
    """One batch segmented: everything on the CPU, at the run's resolution R."""

    masks: torch.Tensor  # [B, K, R, R] soft masks, summing to 1 over slots
    inputs: torch.Tensor  # [B, 3, R, R] in [0, 1]: what the model saw
    reconstruction: torch.Tensor | None  # [B, 3, R, R] in [0, 1] (None for a model that reconstructs features)
    crops: list[CropBox | None] = field(default_factory=list)  # where each input lies in its file (None: tensor)

    @property
    def ids(self) -> torch.Tensor:
        """[B, R, R] int64: the slot with the largest mask at each pixel."""
        return self.masks.argmax(dim=1)

    def areas(self) -> torch.Tensor:
        """[B, K]: each slot's share of the image (soft masks, so the shares sum to 1)."""
        return self.masks.mean(dim=(2, 3))

    def centroids(self) -> torch.Tensor:
        """[B, K, 2] (x, y) in [0, 1] of the square the model saw, mask-weighted pixel centres; NaN for a slot
        with no mass."""
        resolution = self.masks.shape[-1]
        centres = (torch.arange(resolution, dtype=torch.float64) + 0.5) / resolution
        masks = self.masks.double()
        mass = masks.sum(dim=(2, 3))
        x = (masks * centres).sum(dim=(2, 3)) / mass
        y = (masks * rearrange(centres, "h -> h 1")).sum(dim=(2, 3)) / mass
        return torch.stack([x, y], dim=-1)


class Segmenter:
    """A loaded run that segments images: `segment(images, num_slots=K)`."""

    def __init__(self, trained: TrainedRun, device: torch.device | str | None = None,
                 run_dir: Path | None = None) -> None:
        self.run = trained
        self.run_dir = run_dir
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = trained.model.to(self.device).eval()
        self.resolution = trained.config.data.resolution

    @property
    def num_slots(self) -> int:
        """The training slot count (the default of `segment`)."""
        return self.run.config.model.num_slots

    def prepare(self, images: ImageInput | Sequence[ImageInput] | torch.Tensor
                ) -> tuple[torch.Tensor, list[CropBox | None]]:
        """Files, Pillow images, uint8 [H, W, 3] arrays or a float tensor [B, 3, H, W] in [0, 1] -> the model's
        input [B, 3, R, R] in [-1, 1] and each image's crop box in its own pixels."""
        if isinstance(images, torch.Tensor):
            return self._prepare_tensor(images)
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)):
            images = [images]
        pixels, crops = [], []
        for image in images:
            array = self._rgb(image)
            crops.append(CropBox.centred(array.shape[1], array.shape[0]))
            pixels.append(fit_square(array, self.resolution))
        if not pixels:
            raise ValueError("no images to segment")
        batch = torch.from_numpy(np.stack(pixels))
        return rearrange(batch, "b h w c -> b c h w").float() / 127.5 - 1.0, crops

    def _rgb(self, image: ImageInput) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            return read_rgb(Path(image))[0]
        if isinstance(image, Image.Image):
            return np.asarray(image.convert("RGB"))
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
            return image
        raise ValueError(f"expected an image file, a Pillow image or a uint8 array [H, W, 3], got "
                         f"{type(image).__name__}{list(getattr(image, 'shape', []))} "
                         f"{getattr(image, 'dtype', '')}".rstrip())

    def _prepare_tensor(self, images: torch.Tensor) -> tuple[torch.Tensor, list[CropBox | None]]:
        if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"expected a float tensor [B, 3, H, W] in [0, 1], got {images.dtype} {list(images.shape)}")
        if images.min() < 0 or images.max() > 1:
            raise ValueError(f"expected pixel values in [0, 1], got [{images.min():.3g}, {images.max():.3g}]")
        if tuple(images.shape[-2:]) == (self.resolution, self.resolution):
            return images.float() * 2 - 1, [None] * len(images)
        arrays = (rearrange(images, "b c h w -> b h w c").cpu().numpy() * 255 + 0.5).astype(np.uint8)
        return self.prepare(list(arrays))[0], [None] * len(images)

    @torch.no_grad()
    def segment(self, images: ImageInput | Sequence[ImageInput] | torch.Tensor, num_slots: int | None = None,
                num_iterations: int | None = None, seed: int = 0) -> Segmentation:
        """Masks of `num_slots` slots (default: the training count) for one batch of images; the slot
        initialisation is drawn from a generator seeded with `seed`, so a call is reproducible."""
        num_slots = self.num_slots if num_slots is None else num_slots
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        inputs, crops = self.prepare(images)
        generator = torch.Generator(device=self.device).manual_seed(seed)
        output = self.model(inputs.to(self.device), num_slots=num_slots, num_iterations=num_iterations,
                            generator=generator)
        reconstruction = getattr(output, "reconstruction", None)
        if reconstruction is not None and reconstruction.shape == inputs.shape:
            reconstruction = ((reconstruction.float().cpu() + 1) / 2).clamp(0, 1)
        else:
            reconstruction = None
        return Segmentation(output.masks.float().cpu(), (inputs + 1) / 2, reconstruction, crops)


def load_run(run: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
             device: torch.device | str | None = None) -> Segmenter:
    """The run's model (its latest checkpoint unless `checkpoint` is given) ready to segment images; a
    ConfigError naming the problem if `run` is not a run directory of a segmenting task or has no checkpoint."""
    trained = load_trained_run(Path(run), Path(checkpoint) if checkpoint is not None else None,
                               tasks=SEGMENTING_TASKS)
    return Segmenter(trained, device, run_dir=Path(run))


__all__ = ["ConfigError", "Segmentation", "Segmenter", "load_run"]
