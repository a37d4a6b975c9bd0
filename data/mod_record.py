"""One parsed multi-object record -> an RGB frame, an instance-id mask and per-object factors.

Instance ids: pixel id = argmax over the entity masks, so id 0 is entity 0 (the background)
and id e is entity e; the files' masks are disjoint, ties (malformed files only) go to the
lower entity. Every foreground entity is kept, in record order, as object e - 1 (the id
convention of ``FramePair``), null entities included: they are flagged ``visible: 0``
instead of dropped, so ids and entity indices never drift apart. ``pixels`` counts an
object's pixels in the converted mask (0 when null, fully occluded or cropped away).

CLEVR is cropped to rows 29:221, columns 64:256 and resized to 128x128 as in the Slot
Attention code: bilinear with half-pixel centres and no antialiasing for the image (rounded to
the nearest integer, ties to even), nearest neighbour with half-pixel centres for the ids.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from einops import repeat

from data.mod_schema import DatasetSchema, ParsedRecord


def instance_ids(masks: np.ndarray) -> np.ndarray:
    """uint8 [E, H, W] entity masks -> uint8 [H, W] ids (argmax over entities)."""
    return np.argmax(masks, axis=0).astype(np.uint8)


def _source_positions(in_size: int, out_size: int) -> np.ndarray:
    """Half-pixel-centre sample positions of the output pixels in input coordinates."""
    return (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5


def _bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] interpolation matrix (rows sum to 1; positions clamped at the borders)."""
    position = np.clip(_source_positions(in_size, out_size), 0, in_size - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, in_size - 1)
    frac = position - low
    weights = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    np.add.at(weights, (rows, low), 1 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [size, size, C], bilinear, half-pixel centres, no antialiasing."""
    rows = _bilinear_weights(image.shape[0], size)
    cols = _bilinear_weights(image.shape[1], size)
    out = np.einsum("ph,hwc,qw->pqc", rows, image.astype(np.float64), cols, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_nearest(ids: np.ndarray, size: int) -> np.ndarray:
    """[H, W] -> [size, size], nearest neighbour with half-pixel centres (ids stay ids)."""
    row = np.minimum(np.floor((np.arange(size) + 0.5) * ids.shape[0] / size).astype(int), ids.shape[0] - 1)
    col = np.minimum(np.floor((np.arange(size) + 0.5) * ids.shape[1] / size).astype(int), ids.shape[1] - 1)
    return ids[np.ix_(row, col)]


def _json_value(value: np.ndarray) -> Any:
    """float32 -> float (exact), uint8 code -> int, vectors -> lists."""
    if value.ndim:
        return [_json_value(v) for v in value]
    return int(value) if value.dtype == np.uint8 else float(value)


def frame_and_ids(record: ParsedRecord, schema: DatasetSchema) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB [R, R, 3], uint8 ids [R, R]) after the dataset's crop and resize."""
    image = record.image if schema.channels == 3 else repeat(record.image, "h w 1 -> h w c", c=3)
    ids = instance_ids(record.masks)
    if schema.crop is not None:
        top, bottom, left, right = schema.crop
        image, ids = image[top:bottom, left:right], ids[top:bottom, left:right]
    size = schema.output_resolution
    if image.shape[:2] != (size, size):
        image, ids = resize_bilinear(image, size), resize_nearest(ids, size)
    return np.ascontiguousarray(image), np.ascontiguousarray(ids)


def visible_flags(record: ParsedRecord) -> np.ndarray:
    """bool [E]: the record's visibility, or (Objects Room) whether the entity's mask is non-empty."""
    if record.visibility is not None:
        return record.visibility > 0
    return record.masks.reshape(record.masks.shape[0], -1).any(axis=1)


def entity_records(record: ParsedRecord, schema: DatasetSchema, ids: np.ndarray) -> list[dict[str, Any]]:
    """Per entity (background first): its factors, ``visible`` (0/1) and ``pixels`` in ``ids``."""
    pixels = np.bincount(ids.ravel(), minlength=schema.max_entities)
    visible = visible_flags(record)
    entities = []
    for entity in range(schema.max_entities):
        values = {name: _json_value(record.factors[name][entity]) for name in schema.factor_names}
        entities.append({**values, "visible": int(visible[entity]), "pixels": int(pixels[entity])})
    return entities
