"""A user's own image files: finding them, reading them as RGB, and fitting them to a model's square input.

Shared by segmentation with a trained run (`eval.segment`) and by the shard importer (`data.from_images`), so a
picture is prepared the same way for training and for inference: the largest centred square is cropped and
resized to the run's resolution with Pillow's antialiasing (Lanczos). Grey-scale, palette and 16-bit images are
made RGB and an alpha channel is composited on black (the generators' background); the caller reports how many
were converted in one line. Anything that is not a readable image is a one-line `DataError` naming the file.
"""
from __future__ import annotations

import glob
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Pillow modes that are already 8-bit RGB (nothing to report).
RGB_MODES = ("RGB",)
_DIGITS = re.compile(r"(\d+)")


def natural_key(path: Path) -> list:
    """frame2.png before frame10.png: numbered frames in the order they were taken."""
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(str(path))]


def list_images(spec: str | Path) -> list[Path]:
    """The image files named by `spec`: a directory (its files with an image suffix, not recursive), a glob
    pattern, or one file; in natural order. DataError when nothing matches."""
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise DataError(f"no image files in {path} (looked for {', '.join(IMAGE_SUFFIXES)})")
    elif path.is_file():
        files = [path]
    elif glob.has_magic(text):
        files = [Path(p) for p in glob.glob(text) if Path(p).is_file()]
        if not files:
            raise DataError(f"no files match {text}")
    else:
        raise DataError(f"{text} is not a directory, a file or a glob pattern that matches files")
    return sorted(files, key=natural_key)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> uint8 [H, W, 3]; alpha composited on black, 16-bit and float scaled to 8 bits."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode != "RGB" and ("A" in image.mode or "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        return (rgba[:, :, :3] * (rgba[:, :, 3:] / 255.0) + 0.5).astype(np.uint8)
    return np.asarray(image.convert("RGB"))


def read_rgb(path: Path) -> tuple[np.ndarray, str]:
    """(uint8 RGB pixels [H, W, 3], the file's Pillow mode); DataError naming the file if it is not an image."""
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image), image.mode
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as error:
        reason = "not an image file" if isinstance(error, UnidentifiedImageError) else str(error)
        raise DataError(f"{path}: not a readable image ({reason})") from None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding the pixels; DataError if unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as error:
        reason = "not an image file" if isinstance(error, UnidentifiedImageError) else str(error)
        raise DataError(f"{path}: not a readable image ({reason})") from None


@dataclass(frozen=True)
class CropBox:
    """The centred square of an image that a model sees: its corner and side in the file's pixels."""

    left: int
    top: int
    size: int

    @classmethod
    def centred(cls, width: int, height: int) -> CropBox:
        size = min(width, height)
        return cls((width - size) // 2, (height - size) // 2, size)


def fit_square(pixels: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 [H, W, 3] -> the centred square resized to [resolution, resolution, 3] (antialiased)."""
    height, width = pixels.shape[:2]
    box = CropBox.centred(width, height)
    square = pixels[box.top: box.top + box.size, box.left: box.left + box.size]
    if box.size == resolution:
        return np.ascontiguousarray(square)
    resized = Image.fromarray(np.ascontiguousarray(square)).resize((resolution, resolution), Image.LANCZOS)
    return np.asarray(resized)


def conversion_note(modes: Iterable[str]) -> str | None:
    """One line saying which images were not 8-bit RGB and what was done to them (None when all were)."""
    counts = Counter(mode for mode in modes if mode not in RGB_MODES)
    if not counts:
        return None
    kinds = ", ".join(f"{count} {mode}" for mode, count in sorted(counts.items()))
    return (f"note: {sum(counts.values())} image(s) were not 8-bit RGB ({kinds} by Pillow mode): grey-scale and "
            "palette images made RGB, alpha composited on black, 16-bit scaled to 8 bits")


def size_note(sizes: Iterable[tuple[int, int]], resolution: int) -> str | None:
    """One line when the images do not all have one size: each is centre-cropped and resized on its own."""
    counts = Counter(sizes)
    if len(counts) <= 1:
        return None
    common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in counts.most_common(3))
    more = f" and {len(counts) - 3} more" if len(counts) > 3 else ""
    return (f"note: the images have {len(counts)} different sizes ({common}{more}); each is centre-cropped to a "
            f"square and resized to {resolution}x{resolution} on its own")
