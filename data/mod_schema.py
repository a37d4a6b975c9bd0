"""The record schema of the DeepMind multi-object datasets, and a TensorFlow-free parser.

Facts from the readers of github.com/deepmind/multi_object_datasets: every record is a
``tf.train.Example``; ``image`` and ``mask`` (and CLEVR's ``color``, ``material``, ``shape``,
``size``) are ``FixedLenFeature(shape, tf.string)`` features that the readers turn into uint8
with ``decode_raw`` + ``squeeze``, i.e. a BytesList of prod(shape) one-byte strings; the other
factors are float32 lists. Masks are 0/255 per entity, entity 0 is the background, and they are
stored [E, H, W, 1] except in Multi-dSprites, which stores [H, W, E, 1] (its reader transposes).
Objects Room has no factors and no visibility; its first four entities are sky, floor and the
two wall halves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from einops import rearrange
from tfrecord import example_pb2

from data.errors import DataError

FeatureKind = Literal["bytes", "float"]
_LIST_FIELD = {"bytes": "bytes_list", "float": "float_list"}
_UNIT = {"bytes": "bytes", "float": "floats"}


@dataclass(frozen=True)
class FeatureSpec:
    """One fixed-length feature: its name, value type and shape (the reader's FixedLenFeature)."""

    name: str
    kind: FeatureKind
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class DatasetSchema:
    """What one dataset's records hold, and how the converter turns them into frames."""

    name: str
    image_size: tuple[int, int]
    channels: int
    max_entities: int
    mask_layout: Literal["e h w", "h w e"]  # axis order of the stored mask (before the trailing 1)
    factor_kinds: dict[str, tuple[FeatureKind, tuple[int, ...]]] = field(default_factory=dict)  # per entity
    has_visibility: bool = True
    crop: tuple[int, int, int, int] | None = None  # top, bottom, left, right (python slice bounds)
    resolution: int = 0  # output side; 0 = the (square) input size

    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(self.factor_kinds)

    @property
    def output_resolution(self) -> int:
        return self.resolution or self.image_size[0]

    def features(self) -> tuple[FeatureSpec, ...]:
        """Every feature the converter reads, with the shape the original reader declares."""
        height, width = self.image_size
        entities = self.max_entities
        mask_shape = (entities, height, width, 1) if self.mask_layout == "e h w" else (height, width, entities, 1)
        specs = [FeatureSpec("image", "bytes", (height, width, self.channels)),
                 FeatureSpec("mask", "bytes", mask_shape)]
        specs += [FeatureSpec(name, kind, (entities, *shape)) for name, (kind, shape) in self.factor_kinds.items()]
        if self.has_visibility:
            specs.append(FeatureSpec("visibility", "float", (entities,)))
        return tuple(specs)


def _multi_dsprites(variant: str, entities: int, channels: int) -> DatasetSchema:
    scalar: tuple[FeatureKind, tuple[int, ...]] = ("float", ())
    return DatasetSchema(
        name=f"multi_dsprites_{variant}", image_size=(64, 64), channels=channels, max_entities=entities,
        mask_layout="h w e",
        factor_kinds={"x": scalar, "y": scalar, "shape": scalar, "color": ("float", (channels,)),
                      "orientation": scalar, "scale": scalar},
    )


def _objects_room(name: str, entities: int) -> DatasetSchema:
    return DatasetSchema(name=name, image_size=(64, 64), channels=3, max_entities=entities, mask_layout="e h w",
                         has_visibility=False)


SCHEMAS: dict[str, DatasetSchema] = {
    schema.name: schema
    for schema in (
        DatasetSchema(
            name="clevr_with_masks", image_size=(240, 320), channels=3, max_entities=11, mask_layout="e h w",
            factor_kinds={"x": ("float", ()), "y": ("float", ()), "z": ("float", ()), "pixel_coords": ("float", (3,)),
                          "rotation": ("float", ()), "size": ("bytes", ()), "material": ("bytes", ()),
                          "shape": ("bytes", ()), "color": ("bytes", ())},
            crop=(29, 221, 64, 256), resolution=128,
        ),
        _multi_dsprites("binarized", entities=4, channels=1),
        _multi_dsprites("colored_on_grayscale", entities=6, channels=3),
        _multi_dsprites("colored_on_colored", entities=5, channels=3),
        DatasetSchema(
            name="tetrominoes", image_size=(35, 35), channels=3, max_entities=4, mask_layout="e h w",
            factor_kinds={"x": ("float", ()), "y": ("float", ()), "shape": ("float", ()), "color": ("float", (3,))},
        ),
        _objects_room("objects_room", entities=7),
        _objects_room("objects_room_six_objects", entities=10),
        _objects_room("objects_room_empty_room", entities=4),
        _objects_room("objects_room_identical_color", entities=10),
    )
}


def get_schema(name: str) -> DatasetSchema:
    if name not in SCHEMAS:
        raise DataError(f"unknown multi-object dataset {name!r}; known datasets: {', '.join(SCHEMAS)}")
    return SCHEMAS[name]


@dataclass(frozen=True)
class ParsedRecord:
    """One record's arrays in the readers' canonical layout."""

    image: np.ndarray  # uint8 [H, W, C]
    masks: np.ndarray  # uint8 [E, H, W], 0/255
    factors: dict[str, np.ndarray]  # name -> [E, ...] (float32, or uint8 codes for CLEVR's strings)
    visibility: np.ndarray | None  # float32 [E], None where the dataset has none


def _bytes_values(values: example_pb2.BytesList) -> np.ndarray:
    """The concatenated bytes of a BytesList as uint8.

    The files hold one byte per list element; joining a million one-byte Python objects is
    slow, so the list is re-serialised (in C) and the bytes are read from its wire format
    (tag 0x0A, length 1, byte) when every element has that form.
    """
    count = len(values.value)
    wire = np.frombuffer(values.SerializeToString(), dtype=np.uint8)
    if wire.size == 3 * count:
        triples = wire.reshape(count, 3)
        if (triples[:, 0] == 0x0A).all() and (triples[:, 1] == 1).all():
            return triples[:, 2].copy()
    return np.frombuffer(b"".join(values.value), dtype=np.uint8)


def _read_feature(features, spec: FeatureSpec, where: str) -> np.ndarray:
    if spec.name not in features:
        raise DataError(f"{where}: feature {spec.name!r} is missing (the record has {', '.join(sorted(features))})")
    feature = features[spec.name]
    got_kind, want_kind = feature.WhichOneof("kind"), _LIST_FIELD[spec.kind]
    if got_kind != want_kind:
        raise DataError(f"{where}: feature {spec.name!r} expected a {want_kind}, got {got_kind or 'an empty feature'}")
    if spec.kind == "bytes":
        values = _bytes_values(feature.bytes_list)
    else:
        values = np.asarray(feature.float_list.value, dtype=np.float32)
    if values.size != spec.size:
        count = f"{'*'.join(map(str, spec.shape))} = {spec.size}" if len(spec.shape) > 1 else str(spec.size)
        raise DataError(f"{where}: feature {spec.name!r} expected {count} {_UNIT[spec.kind]}, got {values.size}")
    return values.reshape(spec.shape)


def parse_record(payload: bytes, schema: DatasetSchema, where: str) -> ParsedRecord:
    """Validate one serialized ``tf.train.Example`` against ``schema``; ``where`` prefixes errors."""
    example = example_pb2.Example()
    try:
        example.ParseFromString(payload)
    except Exception as error:  # protobuf's DecodeError, whatever the backend
        raise DataError(f"{where}: not a tf.train.Example ({error})") from None
    features = example.features.feature
    arrays = {spec.name: _read_feature(features, spec, where) for spec in schema.features()}
    masks = rearrange(arrays.pop("mask"), f"{schema.mask_layout} 1 -> e h w")
    image = arrays.pop("image")
    visibility = arrays.pop("visibility", None)
    return ParsedRecord(image=image, masks=np.ascontiguousarray(masks), factors=arrays, visibility=visibility)
