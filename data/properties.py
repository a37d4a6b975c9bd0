"""Per-object property vectors for set prediction, built from the factors stored with every frame.

Layout of one vector (dimension `PropertyLayout.dim`), in this order:

1. coordinates: one value per coordinate factor (default x, y), the grid index divided by
   (grid size - 1), so in [0, 1] over the range object centres can take;
2. one one-hot block per discrete factor (default shape 3, colour 12, scale 6);
3. the "is object" flag: 1 for a real object, 0 for a padding row.

A padding ("no object") row is all zeros, as in the official Slot Attention CLEVR targets. For the default
multi_dsprites data the vector has 2 + 3 + 12 + 6 + 1 = 24 entries. Orientation is left out by default:
squares and ellipses look the same under some rotations, so it is not a well-defined target.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from data.errors import DataError

#: The factors of each frame in a sample's factors.json.
FRAME_OBJECT_KEYS = ("objects0", "objects1")


@dataclass(frozen=True)
class PropertyLayout:
    """Where each property sits in the vector; built once from the generator's factor grid sizes."""

    coordinates: tuple[tuple[str, int], ...]  # (factor name, grid size)
    discrete: tuple[tuple[str, int], ...]

    @classmethod
    def from_factor_sizes(cls, factor_sizes: Mapping[str, int], coordinates: Sequence[str],
                          discrete: Sequence[str]) -> PropertyLayout:
        """Raises DataError when a named factor is not among `factor_sizes` or a coordinate has one value."""
        for name in [*coordinates, *discrete]:
            if name not in factor_sizes:
                raise DataError(f"set prediction: factor '{name}' is not produced by the data; "
                                f"its factors are {', '.join(factor_sizes)}")
        if not coordinates and not discrete:
            raise DataError("set prediction needs at least one coordinate or discrete factor")
        for name in coordinates:
            if factor_sizes[name] < 2:
                raise DataError(f"set prediction: coordinate factor '{name}' has {factor_sizes[name]} value(s); "
                                "a coordinate needs at least 2")
        return cls(tuple((n, int(factor_sizes[n])) for n in coordinates),
                   tuple((n, int(factor_sizes[n])) for n in discrete))

    @property
    def num_coordinates(self) -> int:
        return len(self.coordinates)

    @property
    def dim(self) -> int:
        return self.num_coordinates + sum(size for _, size in self.discrete) + 1

    @property
    def coordinate_slice(self) -> slice:
        return slice(0, self.num_coordinates)

    @property
    def discrete_slices(self) -> dict[str, slice]:
        slices, start = {}, self.num_coordinates
        for name, size in self.discrete:
            slices[name] = slice(start, start + size)
            start += size
        return slices

    @property
    def object_index(self) -> int:
        return self.dim - 1

    def describe(self) -> str:
        """One line, e.g. 'x, y in [0, 1] | shape one-hot 3 | ... | is-object 1' (written to metrics.json)."""
        parts = [f"{', '.join(n for n, _ in self.coordinates)} in [0, 1]"] if self.coordinates else []
        parts += [f"{name} one-hot {size}" for name, size in self.discrete]
        return " | ".join(parts + ["is-object 1"])

    def encode(self, objects: Sequence[Mapping[str, int]]) -> np.ndarray:
        """Property vectors [len(objects), dim] (float32) of one frame's objects."""
        vectors = np.zeros((len(objects), self.dim), dtype=np.float32)
        if not objects:
            return vectors
        rows = np.arange(len(objects))
        for column, (name, size) in enumerate(self.coordinates):
            vectors[:, column] = [obj[name] / (size - 1) for obj in objects]
        for (name, _), block in zip(self.discrete, self.discrete_slices.values()):
            vectors[rows, block.start + np.asarray([obj[name] for obj in objects])] = 1.0
        vectors[:, self.object_index] = 1.0
        return vectors

    def check(self, factor_sizes: Mapping[str, int], where: str) -> None:
        """Refuse data whose factor grids differ from the layout the model was built for."""
        for name, size in (*self.coordinates, *self.discrete):
            if factor_sizes.get(name) != size:
                raise DataError(f"{where}: factor '{name}' has {factor_sizes.get(name)} values in the data but the "
                                f"set-prediction layout expects {size}")


def object_targets(factors: Sequence[Mapping], layout: PropertyLayout, frame: int = 0,
                   num_rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets [B, num_rows, dim] and object counts [B] of one frame of each sample.

    Rows past an image's objects are all-zero "no object" rows. `num_rows` defaults to the largest count in
    the batch; a smaller `num_rows` than some image's count raises ValueError (the image and numbers named).
    """
    key = FRAME_OBJECT_KEYS[frame]
    encoded = []
    for index, record in enumerate(factors):
        if key not in record:
            raise DataError(f"sample {index} of the batch has no '{key}' in its factors.json")
        layout.check(record.get("factor_sizes", {}), f"sample {index} of the batch")
        encoded.append(layout.encode(record[key]))
    counts = torch.tensor([len(rows) for rows in encoded], dtype=torch.long)
    width = int(counts.max()) if num_rows is None and len(encoded) else (num_rows or 0)
    if len(encoded) and int(counts.max()) > width:
        image = int(counts.argmax())
        raise ValueError(f"image {image} of the batch has {int(counts[image])} objects but there are only {width} "
                         f"target rows (one per slot): set prediction needs at least as many slots as objects")
    targets = np.zeros((len(encoded), width, layout.dim), dtype=np.float32)
    for index, rows in enumerate(encoded):
        targets[index, : len(rows)] = rows
    return torch.from_numpy(targets), counts
