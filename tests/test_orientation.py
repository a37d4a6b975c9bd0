"""The finite orientation groups and the batched search (orientation/): group axioms checked on the matrices,
the voxel action checked against the matrices on a hand-made object, the planar action against rot90, the
search against hand-made losses whose argmin is known."""
from __future__ import annotations

import math

import pytest
import torch

from orientation import (CUBE_GROUP_SIZE, OrientationError, all_planar_rotations, all_rotations, best_of_group,
                         compose_index, cube_rotations, inverse_index, planar_angles, refine_angles, rotate_images,
                         rotate_voxels, rotation_index, symmetry_group)


def asymmetric_object(size: int = 5) -> torch.Tensor:
    """Four voxels along three different arm lengths from a corner: no rotation maps it onto itself."""
    grid = torch.zeros(size, size, size)
    for point in [(0, 0, 0), (1, 0, 0), (2, 0, 0), (0, 1, 0), (0, 0, 2)]:
        grid[point] = 1
    return grid


def rotate_by_matrix(grid: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """The reference action: move each occupied voxel's centred coordinate p to matrix @ p."""
    size = grid.shape[-1]
    points = grid.nonzero() * 2 - (size - 1)
    moved = (points @ matrix.T + (size - 1)) // 2
    out = torch.zeros_like(grid)
    out[moved[:, 0], moved[:, 1], moved[:, 2]] = 1
    return out


def test_cube_rotations_form_the_group():
    rotations = cube_rotations()
    assert rotations.shape == (CUBE_GROUP_SIZE, 3, 3)
    assert len({tuple(r.flatten().tolist()) for r in rotations}) == 24, "24 distinct elements"
    assert all(round(float(torch.det(r.double()))) == 1 for r in rotations), "proper rotations only"
    assert torch.equal(rotations[0], torch.eye(3, dtype=torch.int64)), "identity first"
    for a in rotations:
        assert torch.equal(a @ a.T, torch.eye(3, dtype=torch.int64))
        for b in rotations:
            rotation_index(a @ b)  # closed: raises if the product is not in the group


def test_compose_and_inverse_index_agree_with_the_matrices():
    rotations = cube_rotations()
    for a in range(24):
        assert torch.equal(rotations[int(inverse_index(a))], rotations[a].T)
        for b in range(24):
            assert torch.equal(rotations[int(compose_index(a, b))], rotations[b] @ rotations[a])


def test_rotation_by_permutation_equals_rotation_by_matrix():
    grid = asymmetric_object(5)
    for index, matrix in enumerate(cube_rotations()):
        assert torch.equal(rotate_voxels(grid, index), rotate_by_matrix(grid, matrix)), f"rotation {index}"


def test_voxel_rotation_composes_and_batches():
    grid = asymmetric_object(6)  # even side: centred coordinates are half-integers
    for a, b in [(3, 5), (7, 19), (23, 1)]:
        twice = rotate_voxels(rotate_voxels(grid, a), b)
        assert torch.equal(twice, rotate_voxels(grid, int(compose_index(a, b))))
    batch = torch.stack([grid, grid.flip(0)])
    per_sample = rotate_voxels(batch, torch.tensor([4, 9]))
    assert torch.equal(per_sample[0], rotate_voxels(grid, 4))
    assert torch.equal(per_sample[1], rotate_voxels(grid.flip(0), 9))
    every = all_rotations(batch)
    assert every.shape == (24, 2, 6, 6, 6)
    assert torch.equal(every[11, 1], rotate_voxels(grid.flip(0), 11))


def test_symmetry_group_of_symmetric_and_asymmetric_objects():
    assert symmetry_group(asymmetric_object()) == [0]
    centred_cube = torch.zeros(6, 6, 6)
    centred_cube[1:5, 1:5, 1:5] = 1
    assert symmetry_group(centred_cube) == list(range(24))
    rod = torch.zeros(5, 5, 5)
    rod[2, 2, :] = 1  # a rod along z: the 4 turns about z and the 4 half-turns that flip it
    assert len(symmetry_group(rod)) == 8


def test_bad_voxel_input_gives_one_clear_error():
    with pytest.raises(OrientationError, match="cubic"):
        rotate_voxels(torch.zeros(4, 4, 5), 0)
    with pytest.raises(OrientationError, match="one rotation per grid"):
        rotate_voxels(torch.zeros(3, 4, 4, 4), torch.tensor([0, 1]))
    with pytest.raises(OrientationError, match="not one of the 24"):
        rotation_index(torch.eye(3) * 2)


def test_planar_rotation_matches_rot90_and_composes():
    images = torch.rand(3, 2, 8, 8)
    assert torch.allclose(rotate_images(images, math.pi / 2), torch.rot90(images, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(rotate_images(images, math.pi), torch.rot90(images, 2, dims=(-2, -1)), atol=1e-5)
    angles = planar_angles(4)
    assert torch.allclose(angles, torch.tensor([0, math.pi / 2, math.pi, 3 * math.pi / 2]))
    every = all_planar_rotations(images, angles)
    assert every.shape == (4, 3, 2, 8, 8)
    for k in range(4):
        assert torch.allclose(every[k], torch.rot90(images, k, dims=(-2, -1)), atol=1e-5)
    with pytest.raises(OrientationError, match="one angle per image"):
        rotate_images(images, torch.zeros(2))


def test_best_of_group_picks_the_known_argmin_per_sample():
    canonical = asymmetric_object(5)
    rotations = torch.tensor([0, 6, 13, 21])
    inputs = rotate_voxels(torch.stack([canonical] * 4), rotations)

    def loss(batch: torch.Tensor) -> torch.Tensor:  # distance to the canonical pose
        return (batch - canonical).abs().flatten(1).sum(1)

    result = best_of_group(all_rotations(inputs), loss, chunk_size=7)
    assert torch.equal(result.index, inverse_index(rotations))
    assert torch.equal(result.loss, torch.zeros(4))
    assert result.losses.shape == (24, 4)
    permutation = torch.tensor([2, 0, 3, 1])  # the search is per sample: input order only permutes the answer
    assert torch.equal(best_of_group(all_rotations(inputs[permutation]), loss).index, result.index[permutation])


def test_best_of_group_breaks_ties_towards_the_identity_and_checks_the_loss():
    symmetric = torch.ones(1, 4, 4, 4)
    result = best_of_group(all_rotations(symmetric), lambda b: b.flatten(1).sum(1) * 0)
    assert int(result.index) == 0
    with pytest.raises(OrientationError, match="one loss per sample"):
        best_of_group(all_rotations(symmetric), lambda b: b.sum().reshape(1))


def test_refine_angles_moves_towards_the_best_angle_without_touching_a_model():
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 7:9, 2:14] = 1  # a bar: its loss against the vertical bar is smooth in the angle
    target = rotate_images(image, torch.tensor([math.pi / 2]))
    weight = torch.nn.Parameter(torch.ones(()))

    def loss(batch: torch.Tensor) -> torch.Tensor:
        return ((batch * weight - target) ** 2).flatten(1).sum(1)

    start = torch.tensor([math.pi / 2 - 0.3])
    refined = refine_angles(image, start, loss, steps=30, lr=0.03)
    assert abs(float(refined) - math.pi / 2) < 0.1 < 0.3
    assert weight.grad is None and not refined.requires_grad
