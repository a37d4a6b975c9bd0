"""Frame pair <-> WebDataset sample (a dict of bytes), with validation on the way back.

One sample = one frame pair, stored under keys without dots so WebDataset groups them:
``frame0.png``/``frame1.png`` (uint8 RGB), ``mask0.png``/``mask1.png`` (uint8 L-mode
instance ids) and ``factors.json``. Decoding checks everything a later stage would
otherwise trip over deep inside a model (missing keys, sizes, modes) and raises a
DataError that names the shard and sample.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from PIL import Image

from data.errors import DataError
from data.scene import FramePair

FRAME_KEYS = ("frame0.png", "frame1.png")
MASK_KEYS = ("mask0.png", "mask1.png")
FACTORS_KEY = "factors.json"
SAMPLE_KEYS = FRAME_KEYS + MASK_KEYS + (FACTORS_KEY,)
#: PNG compression level: these images are tiny, so fast encoding beats a few saved bytes.
PNG_COMPRESS_LEVEL = 1


def encode_png(array: np.ndarray) -> bytes:
    """uint8 [H,W,3] -> RGB PNG, uint8 [H,W] -> L PNG (lossless, so masks stay exact)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def encode_pair(pair: FramePair, key: str) -> dict[str, Any]:
    """The WebDataset sample (``__key__`` plus encoded files) for one frame pair."""
    if "." in key:
        raise DataError(f"sample key {key!r} must not contain dots (WebDataset splits keys at the first dot)")
    return {
        "__key__": key,
        "frame0.png": encode_png(pair.frame0),
        "frame1.png": encode_png(pair.frame1),
        "mask0.png": encode_png(pair.mask0),
        "mask1.png": encode_png(pair.mask1),
        FACTORS_KEY: json.dumps(pair.factors, sort_keys=True).encode("utf-8"),
    }


def _where(sample: dict[str, Any]) -> str:
    return f"sample {sample.get('__key__', '?')!r} of shard {sample.get('__url__', '?')}"


def _decode_png(sample: dict[str, Any], key: str, mode: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(sample[key])) as image:
            image.load()
            got_mode = image.mode
            array = np.asarray(image)
    except Exception as error:  # PIL raises many unrelated types for bad bytes
        raise DataError(f"{_where(sample)}: key {key!r} is not a readable PNG ({error})") from None
    if got_mode != mode:
        raise DataError(f"{_where(sample)}: key {key!r} expected a {mode}-mode uint8 image, got mode {got_mode}")
    return array


def decode_sample(sample: dict[str, Any], resolution: int | None) -> dict[str, Any]:
    """Validated numpy arrays and factors from one raw sample.

    ``resolution`` is the expected side length (None skips that one check). Returns a dict
    with ``frame0``/``frame1`` (uint8 [H,W,3]), ``mask0``/``mask1`` (uint8 [H,W]),
    ``factors`` (dict) and ``__key__``/``__url__``.
    """
    missing = [key for key in SAMPLE_KEYS if key not in sample]
    if missing:
        present = sorted(k for k in sample if not k.startswith("__"))
        raise DataError(f"{_where(sample)}: missing key(s) {missing}; expected {list(SAMPLE_KEYS)}, got {present}")
    frames = [_decode_png(sample, key, "RGB") for key in FRAME_KEYS]
    masks = [_decode_png(sample, key, "L") for key in MASK_KEYS]
    expected = frames[0].shape[:2] if resolution is None else (resolution, resolution)
    for key, frame in zip(FRAME_KEYS, frames):
        if frame.shape[:2] != expected:
            raise DataError(
                f"{_where(sample)}: key {key!r} expected an image of size {expected}, got {frame.shape[:2]}"
            )
    for key, mask in zip(MASK_KEYS, masks):
        if mask.shape != expected:
            raise DataError(
                f"{_where(sample)}: key {key!r} expected a mask of shape {expected} (the images'), got {mask.shape}"
            )
    try:
        factors = json.loads(sample[FACTORS_KEY])
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{_where(sample)}: key {FACTORS_KEY!r} is not valid JSON ({error})") from None
    if not isinstance(factors, dict):
        raise DataError(f"{_where(sample)}: key {FACTORS_KEY!r} expected a JSON object, got {type(factors).__name__}")
    return {
        "__key__": sample.get("__key__"),
        "__url__": sample.get("__url__"),
        "frame0": frames[0],
        "frame1": frames[1],
        "mask0": masks[0],
        "mask1": masks[1],
        "factors": factors,
    }
