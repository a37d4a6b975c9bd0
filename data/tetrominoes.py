"""Tetrominoes-like scenes: 3 non-overlapping pieces of 5x5-pixel blocks on a 7x7 block grid.

Factors per piece: shape 19 (the 7 free tetrominoes in all their distinct rotations),
colour 6, x 7 and y 7 (block column/row of the piece's bounding-box corner). A placement
whose piece leaves the grid or overlaps another piece breaks the rules and is redrawn,
so the position grids are the same for every shape.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from data.errors import DataError
from data.palette import TETROMINO_COLOURS
from data.pairs import ChangedFactors, ObjectFactors, SceneGenerator

#: The 7 free tetrominoes as (row, col) cells; I, O, T, S, Z, J, L.
FREE_TETROMINOES = (
    ((0, 0), (0, 1), (0, 2), (0, 3)),
    ((0, 0), (0, 1), (1, 0), (1, 1)),
    ((0, 0), (0, 1), (0, 2), (1, 1)),
    ((0, 1), (0, 2), (1, 0), (1, 1)),
    ((0, 0), (0, 1), (1, 1), (1, 2)),
    ((0, 0), (1, 0), (1, 1), (1, 2)),
    ((0, 2), (1, 0), (1, 1), (1, 2)),
)


def _normalise(cells: np.ndarray) -> tuple[tuple[int, int], ...]:
    cells = cells - cells.min(axis=0)
    return tuple(sorted(map(tuple, cells.tolist())))


@lru_cache(maxsize=1)
def fixed_tetrominoes() -> tuple[np.ndarray, ...]:
    """The 19 fixed tetrominoes (each a [4, 2] array of (row, col) cells), in a stable order."""
    shapes: list[tuple[tuple[int, int], ...]] = []
    for free in FREE_TETROMINOES:
        cells = np.array(free)
        for _ in range(4):
            normalised = _normalise(cells)
            if normalised not in shapes:
                shapes.append(normalised)
            cells = np.stack([cells[:, 1], -cells[:, 0]], axis=1)  # rotate by 90 degrees
    if len(shapes) != 19:
        raise AssertionError(f"expected 19 fixed tetrominoes, built {len(shapes)}")
    return tuple(np.array(s) for s in shapes)


class Tetrominoes(SceneGenerator):
    """Seeded Tetrominoes-like frame-pair generator (35x35 with the defaults)."""

    name = "tetrominoes"
    version = 1

    def __init__(
        self,
        num_pieces: int = 3,
        changed_factors: ChangedFactors = 1,
        block_size: int = 5,
        grid_blocks: int = 7,
    ):
        if not 1 <= num_pieces <= grid_blocks * grid_blocks // 4:
            raise DataError(
                f"tetrominoes: num_pieces={num_pieces} does not fit a {grid_blocks}x{grid_blocks} block grid"
            )
        if block_size < 1 or grid_blocks < 4:
            raise DataError(f"tetrominoes: need block_size >= 1 and grid_blocks >= 4, got {block_size}, {grid_blocks}")
        self.num_pieces = int(num_pieces)
        self.block_size = int(block_size)
        self.grid_blocks = int(grid_blocks)
        self._factor_sizes = {
            "shape": len(fixed_tetrominoes()),
            "colour": len(TETROMINO_COLOURS),
            "x": self.grid_blocks,
            "y": self.grid_blocks,
        }
        super().__init__(changed_factors, self.num_pieces)

    @property
    def factor_sizes(self) -> dict[str, int]:
        return dict(self._factor_sizes)

    @property
    def resolution(self) -> int:
        return self.block_size * self.grid_blocks

    @property
    def max_objects(self) -> int:
        return self.num_pieces

    def config(self) -> dict[str, Any]:
        return {
            "num_pieces": self.num_pieces,
            "changed_factors": self.changed_factors,
            "block_size": self.block_size,
            "grid_blocks": self.grid_blocks,
        }

    def sample_objects(self, rng: np.random.Generator) -> list[ObjectFactors]:
        values = rng.integers(0, list(self._factor_sizes.values()), size=(self.num_pieces, len(self._factor_sizes)))
        return [dict(zip(self._factor_sizes, map(int, row))) for row in values]

    def block_grid(self, objects: list[ObjectFactors]) -> np.ndarray | None:
        """Instance ids on the block grid, or None if a piece leaves the grid or overlaps."""
        grid = np.zeros((self.grid_blocks, self.grid_blocks), dtype=np.uint8)
        for object_id, obj in enumerate(objects, start=1):
            cells = fixed_tetrominoes()[obj["shape"]] + np.array([obj["y"], obj["x"]])
            if cells.max() >= self.grid_blocks:
                return None
            rows, cols = cells[:, 0], cells[:, 1]
            if grid[rows, cols].any():
                return None
            grid[rows, cols] = object_id
        return grid

    def render(self, objects: list[ObjectFactors]) -> tuple[np.ndarray, np.ndarray] | None:
        grid = self.block_grid(objects)
        if grid is None:
            return None
        mask = np.kron(grid, np.ones((self.block_size, self.block_size), dtype=np.uint8))
        lookup = np.zeros((len(objects) + 1, 3), dtype=np.uint8)
        lookup[1:] = TETROMINO_COLOURS[[o["colour"] for o in objects]]
        return lookup[mask], mask
