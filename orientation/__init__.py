"""Finite orientation groups and the brute-force search over them (the orientation-search VAEs of the seed
posts): the 24 rotations of the cube acting on voxel grids by exact index permutation, planar rotations of
images, and a per-sample argmin of a loss over every group element in one batched pass.

Pure tensor functions with no other project import, so the data generators (rotated objects), the slot
models (per-slot orientation) and the VAEs can all share them.
"""
from orientation.cube import (CUBE_GROUP_SIZE, all_rotations, check_cubic, compose_index, cube_rotations,
                              inverse_index, rotate_voxels,
                              rotation_index, symmetry_group, voxel_permutations)
from orientation.errors import OrientationError
from orientation.planar import all_planar_rotations, planar_angles, rotate_images
from orientation.search import SearchResult, best_of_group, refine_angles

__all__ = [
    "CUBE_GROUP_SIZE", "OrientationError", "all_rotations", "check_cubic", "SearchResult", "best_of_group", "compose_index", "cube_rotations",
    "inverse_index", "all_planar_rotations", "planar_angles", "refine_angles", "rotate_images", "rotate_voxels", "rotation_index",
    "symmetry_group", "voxel_permutations",
]
