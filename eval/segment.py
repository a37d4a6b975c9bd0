"""Segment a folder of your own images with a trained run.

    python -m eval.segment --run runs/<name> --images photos/ --out segments/ --num-slots 5

Each image is prepared as the run's training data were: the centred square is cropped and resized to the run's
resolution (Lanczos); grey-scale, palette and 16-bit images are made RGB and alpha is composited on black (one
line says how many). Written into --out, per image (named after the file, `.png`):

    ids/NAME.png          instance ids: each pixel's slot (0..K-1), 8-bit grey
    overlay/NAME.png      the image tinted with each slot's colour, slot boundaries in white
    masks/NAME/slot_K.png each slot's soft mask (255 = the slot owns the pixel)
    segments.jsonl        one line per image: file, crop box, and per slot its area and centroid
    info.json             the run, checkpoint, slot count and resolution used

at the run's resolution, or with `--size crop` at the size of the cropped square in the file (masks upsampled
bilinearly, so they still sum to 1). Centroids are (x, y) in the file's pixel coordinates. Everything is
written into a temporary directory that is renamed to --out at the end: an error or Ctrl-C leaves nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from tqdm import tqdm

from data.errors import DataError
from data.images import CropBox, conversion_note, list_images, read_rgb, size_note
from data.staging import staging_dir
from eval.segmenter import Segmentation, Segmenter, load_run
from training.config import ConfigError
from viz.overlay import colour_overlay, mask_image


@dataclass(frozen=True)
class ImageFile:
    """An input file as found before any pixel is decoded: its output name, size and Pillow mode."""

    path: Path
    name: str  # relative output path without suffix, e.g. "holiday/beach"
    width: int
    height: int
    mode: str


def survey(files: list[Path]) -> list[ImageFile]:
    """Every file's header (a non-image fails here, before anything is written) and a unique output name."""
    root = Path(os.path.commonpath([str(p.parent.resolve()) for p in files]))
    found, names = [], {}
    for path in files:
        try:
            with Image.open(path) as image:
                width, height, mode = *image.size, image.mode
        except Exception as error:  # Pillow raises many unrelated types for a non-image
            raise DataError(f"{path}: not a readable image ({type(error).__name__}: {error})") from None
        name = str(path.resolve().relative_to(root).with_suffix(""))
        if name in names:
            raise DataError(f"{names[name]} and {path} would both be written as {name}.png; rename one")
        names[name] = path
        found.append(ImageFile(path, name, width, height, mode))
    return found


def batches(items: list[ImageFile], size: int) -> Iterator[list[ImageFile]]:
    for start in range(0, len(items), size):
        yield items[start: start + size]


def save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def masks_at(result: Segmentation, index: int, crop: CropBox, size: str) -> torch.Tensor:
    """One image's masks [K, S, S] at the output size (bilinear weights are convex: they still sum to 1)."""
    masks = result.masks[index]
    if size == "model" or crop.size == masks.shape[-1]:
        return masks
    return F.interpolate(masks[None], size=(crop.size, crop.size), mode="bilinear", align_corners=False)[0]


def write_image(item: ImageFile, result: Segmentation, index: int, staging: Path, size: str) -> dict:
    """The three pictures of one image; returns its segments.jsonl record."""
    crop = result.crops[index]
    masks = masks_at(result, index, crop, size)
    if size == "model":
        picture = (rearrange(result.inputs[index], "c h w -> h w c").numpy() * 255 + 0.5).astype(np.uint8)
    else:
        pixels = read_rgb(item.path)[0]
        picture = pixels[crop.top: crop.top + crop.size, crop.left: crop.left + crop.size]
    masks_np = masks.numpy()
    save_png(masks_np.argmax(axis=0).astype(np.uint8), staging / "ids" / f"{item.name}.png")
    save_png(colour_overlay(picture, masks_np), staging / "overlay" / f"{item.name}.png")
    for slot, mask in enumerate(masks_np):
        save_png(mask_image(mask), staging / "masks" / item.name / f"slot_{slot:02d}.png")
    areas, centroids = result.areas()[index], result.centroids()[index]
    slots = []
    for slot in range(len(areas)):
        x, y = centroids[slot].tolist()
        centre = None if np.isnan(x) else [round(crop.left + x * crop.size - 0.5, 2),
                                              round(crop.top + y * crop.size - 0.5, 2)]
        slots.append({"slot": slot, "area": round(float(areas[slot]), 6),
                      "area_pixels": round(float(areas[slot]) * crop.size ** 2, 1), "centroid": centre})
    return {"file": str(item.path), "name": item.name, "width": item.width, "height": item.height,
            "crop": {"left": crop.left, "top": crop.top, "size": crop.size}, "num_slots": len(slots),
            "slots": slots}


def segment_folder(segmenter: Segmenter, items: list[ImageFile], out: Path, num_slots: int,
                   num_iterations: int | None, batch_size: int, size: str, seed: int, progress: bool) -> int:
    """Segment every image into a staging directory, then rename it to `out`; returns the image count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with staging_dir(out.parent, out.name) as staging:
        records = []
        with tqdm(total=len(items), desc="segmenting", unit="image", disable=not progress) as bar:
            for chunk in batches(items, batch_size):
                result = segmenter.segment([item.path for item in chunk], num_slots=num_slots,
                                           num_iterations=num_iterations, seed=seed)
                records += [write_image(item, result, i, staging, size) for i, item in enumerate(chunk)]
                bar.update(len(chunk))
        (staging / "segments.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        info = {"run": str(segmenter.run_dir),
                "checkpoint": str(segmenter.run.checkpoint), "num_slots": num_slots,
                "num_iterations": num_iterations or segmenter.run.config.model.num_iterations,
                "resolution": segmenter.resolution, "size": size, "seed": seed, "images": len(records)}
        (staging / "info.json").write_text(json.dumps(info, indent=2))
        if out.exists():
            out.rmdir()  # empty: checked before
        os.rename(staging, out)
    return len(records)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.segment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="run directory written by train_slots.py")
    parser.add_argument("--images", required=True, help="a folder of images, a glob pattern or one file")
    parser.add_argument("--out", type=Path, required=True, help="directory to create (must not hold anything)")
    parser.add_argument("--num-slots", type=int, help="slots per image (default: the run's training count)")
    parser.add_argument("--iterations", type=int, help="Slot Attention iterations (default: the training value)")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint directory (default: the run's latest)")
    parser.add_argument("--size", choices=("model", "crop"), default="model",
                        help="pictures at the run's resolution, or at the size of the cropped square in the file")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="slot-initialisation seed")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: a GPU if there is one)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def check_arguments(args: argparse.Namespace) -> None:
    for option, value in (("--num-slots", args.num_slots), ("--iterations", args.iterations),
                          ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{option} must be >= 1, got {value}")
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise ConfigError(f"--out {args.out} exists and is not empty; choose another directory or remove it")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)
        items = survey(list_images(args.images))
        segmenter = load_run(args.run, args.checkpoint, device=args.device)
        num_slots = args.num_slots or segmenter.num_slots
        for note in (conversion_note(item.mode for item in items),
                     size_note(((item.width, item.height) for item in items), segmenter.resolution)):
            if note:
                print(note, file=sys.stderr)
        count = segment_folder(segmenter, items, args.out, num_slots, args.iterations, args.batch_size,
                               args.size, args.seed, progress=not args.no_progress)
    except (ConfigError, DataError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{count} images segmented into {num_slots} slots: {args.out}/ (ids/, overlay/, masks/, segments.jsonl)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
