"""The 24 proper rotations of the cube and their exact action on voxel grids.

Each rotation is a signed permutation matrix, so rotating a D x D x D grid about its centre moves every
voxel onto another voxel: an index permutation, with no interpolation and no loss. Rotation g maps the
voxel at centred coordinate p to g @ p, i.e. rotated[q] = grid[g.T @ q].
"""
from __future__ import annotations

from functools import lru_cache

import torch
from einops import rearrange

from orientation.errors import OrientationError

CUBE_GROUP_SIZE = 24


@lru_cache(maxsize=1)
def _rotation_table() -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Every product of the 90-degree turns about x and y (they generate the group), identity first, then in
    the order a breadth-first closure finds them: a fixed order, so rotation indices mean the same everywhere."""
    turn_x = ((1, 0, 0), (0, 0, -1), (0, 1, 0))
    turn_y = ((0, 0, 1), (0, 1, 0), (-1, 0, 0))

    def matmul(a, b):
        return tuple(tuple(sum(a[i][k] * b[k][j] for k in range(3)) for j in range(3)) for i in range(3))

    identity = ((1, 0, 0), (0, 1, 0), (0, 0, 1))
    found, frontier = [identity], [identity]
    while frontier:
        grown = []
        for element in frontier:
            for generator in (turn_x, turn_y):
                product = matmul(generator, element)
                if product not in found:
                    found.append(product)
                    grown.append(product)
        frontier = grown
    assert len(found) == CUBE_GROUP_SIZE
    return tuple(found)


def cube_rotations() -> torch.Tensor:
    """[24, 3, 3] int64 rotation matrices, index 0 the identity."""
    return torch.tensor(_rotation_table(), dtype=torch.int64)


def rotation_index(matrix: torch.Tensor) -> int:
    """The index of a 3x3 rotation matrix in `cube_rotations()`."""
    key = tuple(tuple(int(v) for v in row) for row in torch.as_tensor(matrix).round().long().tolist())
    table = _rotation_table()
    if key not in table:
        raise OrientationError(f"matrix {key} is not one of the 24 rotations of the cube")
    return table.index(key)


@lru_cache(maxsize=1)
def _composition() -> torch.Tensor:
    rotations = cube_rotations()
    table = torch.empty(CUBE_GROUP_SIZE, CUBE_GROUP_SIZE, dtype=torch.int64)
    for a in range(CUBE_GROUP_SIZE):
        for b in range(CUBE_GROUP_SIZE):
            table[a, b] = rotation_index(rotations[a] @ rotations[b])
    return table


def compose_index(first: int | torch.Tensor, then: int | torch.Tensor) -> torch.Tensor:
    """Index of the rotation `then` applied after `first` (matrix then @ first); broadcasts over tensors."""
    return _composition()[torch.as_tensor(then), torch.as_tensor(first)]


def inverse_index(rotation: int | torch.Tensor) -> torch.Tensor:
    """Index of each rotation's inverse (its transpose)."""
    inverses = (_composition() == 0).long().argmax(dim=1)  # inverse of a: the b with b @ a = identity
    return inverses[torch.as_tensor(rotation)]


@lru_cache(maxsize=8)
def _permutations(size: int) -> torch.Tensor:
    rotations = cube_rotations()
    axis = torch.arange(size, dtype=torch.int64) * 2 - (size - 1)  # doubled centred coordinates: integers
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)  # [N, 3] output q
    source = torch.einsum("gji,nj->gni", rotations, grid)  # g.T @ q for every rotation: [24, N, 3]
    index = (source + (size - 1)) // 2
    return (index[..., 0] * size + index[..., 1]) * size + index[..., 2]


def voxel_permutations(size: int) -> torch.Tensor:
    """[24, size**3] int64: rotation g of a flattened grid is `flat[..., table[g]]` (C order, axes x, y, z)."""
    if size < 1:
        raise OrientationError(f"voxel grid size must be >= 1, got {size}")
    return _permutations(size)


def rotate_voxels(grids: torch.Tensor, rotation: int | torch.Tensor) -> torch.Tensor:
    """Rotate voxel grids [..., D, D, D] exactly: by one rotation index (every grid the same way) or by a [B]
    tensor of indices (grid b, along the leading dimension, by rotation[b]). Every rotation at once:
    `all_rotations`."""
    size = check_cubic(grids)
    table = voxel_permutations(size).to(grids.device)
    flat = rearrange(grids, "... x y z -> ... (x y z)")
    rotation = torch.as_tensor(rotation, device=grids.device)
    if rotation.dim() == 0:
        out = flat[..., table[rotation]]
    else:
        if rotation.shape[0] != grids.shape[0]:
            raise OrientationError(f"one rotation per grid expected: {grids.shape[0]} grids, {rotation.shape[0]} "
                                   "rotations")
        index = table[rotation].reshape(rotation.shape[0], *([1] * (flat.dim() - 2)), -1).expand_as(flat)
        out = torch.gather(flat, -1, index)
    return rearrange(out, "... (x y z) -> ... x y z", x=size, y=size)


def all_rotations(grids: torch.Tensor) -> torch.Tensor:
    """[B, ..., D, D, D] -> [24, B, ..., D, D, D]: every grid under every rotation, one gather."""
    size = check_cubic(grids)
    table = voxel_permutations(size).to(grids.device)
    flat = rearrange(grids, "... x y z -> ... (x y z)")
    out = flat[..., table]  # [..., 24, N]
    out = torch.movedim(out, -2, 0)
    return rearrange(out, "g ... (x y z) -> g ... x y z", x=size, y=size)


def symmetry_group(grid: torch.Tensor) -> list[int]:
    """Indices of the rotations that leave a grid unchanged (its rotational symmetries; [0] when none)."""
    rotated = all_rotations(grid.unsqueeze(0))[:, 0]
    return [g for g in range(CUBE_GROUP_SIZE) if torch.equal(rotated[g], grid)]


def check_cubic(grids: torch.Tensor) -> int:
    """The side of a cubic grid [..., D, D, D]; one clear error otherwise."""
    if grids.dim() < 3:
        raise OrientationError(f"voxel grids must have shape [..., D, D, D], got {tuple(grids.shape)}")
    x, y, z = grids.shape[-3:]
    if not x == y == z:
        raise OrientationError(f"voxel grid must be cubic (D x D x D), got {x} x {y} x {z}")
    return x
