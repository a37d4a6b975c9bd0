"""Orientation-search VAEs (weak_supervision/orientation_vae.py): the models' shapes, the loss against a hand
computation, the search against stub models whose best orientation is known, the exact shortcut of the cube
search against the plain 24 forward passes, where the gradient goes, and the posts' test-time experiment on a
tiny fixture (a model trained on one orientation recovers a rotated copy's rotation)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from orientation import (all_planar_rotations, all_rotations, compose_index, inverse_index, planar_angles,
                         rotate_images, rotate_voxels, symmetry_group)
from weak_supervision import (GlyphVAE, OrientationSearch, VoxelVAE, orientation_vae_loss, per_sample_loss,
                              recover_orientation, scoring_loss, search_orientation)

FP32 = dict(precision="fp32")


@pytest.fixture(autouse=True)
def _one_thread():
    """These models are tiny: one thread is as fast as two, and on a busy 2-core machine two OpenMP threads
    that wait for each other made the training test 25x slower (2 s -> 50 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def polycube(cells: list[tuple[int, int, int]], size: int = 16, edge: int = 2) -> torch.Tensor:
    """[size]^3 grid of unit cubes of `edge` voxels at the given cell coordinates, roughly centred."""
    grid = torch.zeros(size, size, size)
    extent = [max(c[i] for c in cells) + 1 for i in range(3)]
    offset = [(size - e * edge) // 2 for e in extent]
    for cell in cells:
        x, y, z = (offset[i] + cell[i] * edge for i in range(3))
        grid[x:x + edge, y:y + edge, z:z + edge] = 1
    return grid


#: chiral, no rotational symmetry: arms of lengths 3, 2 and 1 along x, y, z, plus one off-axis cube
ASYMMETRIC = [(0, 0, 0), (1, 0, 0), (2, 0, 0), (3, 0, 0), (0, 1, 0), (0, 2, 0), (0, 0, 1), (3, 1, 1)]
#: a different asymmetric object: a staircase
STAIRS = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2), (0, 0, 1)]


class FixedDecoder(nn.Module):
    """A stub "VAE": posterior N(0, I) for every input (KL 0), decoder always the same logits. Its loss is
    smallest for the input that matches `canonical`, so the search must rotate every input back to it."""

    def __init__(self, canonical: torch.Tensor, sharpness: float = 6.0):
        super().__init__()
        self.register_buffer("logits", sharpness * (2 * canonical - 1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(x.shape[0], 2, device=x.device)
        return zeros, zeros

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(z.shape[0], *self.logits.shape)


class EncodeDecodeOnly:
    """A model seen through the two-method interface only: the search takes its generic path."""

    def __init__(self, model: nn.Module):
        self.encode, self.decode = model.encode, model.decode


def random_objects(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """Blobby random binary grids [count, 1, size, size, size] (no rotational symmetry, in practice)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = (torch.rand(count, 1, size // 4, size // 4, size // 4, generator=generator) < 0.3).float()
    return F.interpolate(coarse, scale_factor=4, mode="nearest")


def test_models_map_to_the_right_shapes_and_refuse_bad_sizes():
    for size, width in [(32, 32), (16, 8)]:
        vae = VoxelVAE(latent_dim=5, size=size, width=width)
        x = torch.rand(3, 1, size, size, size)
        mean, logvar = vae.encode(x)
        assert mean.shape == logvar.shape == (3, 5) and mean.dtype == torch.float32
        assert vae.decode(mean).shape == (3, 1, size, size, size)
    for channels in (1, 3):
        glyphs = GlyphVAE(latent_dim=4, resolution=32, channels=channels)
        mean, logvar = glyphs.encode(torch.rand(2, channels, 32, 32))
        assert mean.shape == logvar.shape == (2, 4)
        assert glyphs.decode(mean).shape == (2, channels, 32, 32)
    with pytest.raises(ValueError, match="divisible by 8"):
        VoxelVAE(size=20)
    with pytest.raises(ValueError, match="divisible by 8"):
        GlyphVAE(resolution=30)
    with pytest.raises(ValueError, match="group"):
        OrientationSearch(group="octahedral")


def test_per_sample_loss_equals_the_bernoulli_and_gaussian_formulas():
    class Linear(nn.Module):  # encode: fixed posterior; decode: logits linear in z, so sampling matters
        def encode(self, x):
            return torch.tensor([[0.5, -1.0], [2.0, 0.0]]), torch.tensor([[0.0, -2.0], [1.0, 0.5]])

        def decode(self, z):
            return torch.stack([z[:, 0] - z[:, 1], 2 * z[:, 1], z.sum(1)], dim=1)

    vae, target = Linear(), torch.tensor([[1.0, 0.0, 0.3], [0.0, 1.0, 1.0]])
    mean, logvar = vae.encode(target)
    kl = 0.5 * (mean**2 + logvar.exp() - logvar - 1).sum(1)
    for sample in (False, True):
        torch.manual_seed(3)
        total, recon, kl_out = per_sample_loss(vae, target, beta=4.0, sample=sample)
        torch.manual_seed(3)
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean) if sample else mean
        probability = torch.sigmoid(vae.decode(z))
        by_hand = -(target * probability.log() + (1 - target) * (1 - probability).log()).sum(1)
        assert torch.allclose(recon, by_hand, atol=1e-5)
        assert torch.allclose(kl_out, kl) and torch.allclose(total, by_hand + 4.0 * kl, atol=1e-5)
    assert torch.allclose(scoring_loss(vae, target, beta=4.0), per_sample_loss(vae, target, 4.0, sample=False)[0])


def test_the_search_score_is_the_deterministic_loss():
    torch.manual_seed(0)
    voxels, images = (torch.rand(4, 1, 16, 16, 16) < 0.2).float(), torch.rand(4, 1, 32, 32)  # grey targets too
    for vae, x in [(VoxelVAE(size=16, width=8), voxels), (GlyphVAE(), images)]:
        with torch.no_grad():
            assert torch.allclose(scoring_loss(vae, x, 2.0), per_sample_loss(vae, x, 2.0, sample=False)[0], rtol=1e-5)


@pytest.mark.parametrize("logit_shift", [0.0, 90.0])  # 90: logits above the softplus ceiling of the shortcut
def test_the_cube_shortcut_equals_24_forward_passes(logit_shift):
    torch.manual_seed(1)
    vae = VoxelVAE(latent_dim=4, size=16, width=8)
    with torch.no_grad():
        for parameter in vae.parameters():
            parameter.mul_(3)  # a less trivial function than the initialisation
        vae.unpatch.bias.add_(logit_shift)
    x = random_objects(3, 16)
    with torch.no_grad():
        plain = torch.stack([per_sample_loss(vae, rotated, 0.5, sample=False)[0] for rotated in all_rotations(x)])
        for chunk in (None, 7, 48):
            fast = vae.cube_losses(x, 0.5, chunk_size=chunk)
            assert fast.shape == (24, 3)
            assert torch.allclose(fast, plain, rtol=2e-5), (fast - plain).abs().max()
    assert torch.equal(search_orientation(vae, x, OrientationSearch("cube", **FP32))[1], plain.argmin(0))


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_cube_search_rotates_every_input_back_to_the_canonical_pose(precision):
    canonical = polycube(ASYMMETRIC)
    assert symmetry_group(canonical) == [0]
    rotations = torch.arange(24)
    inputs = rotate_voxels(canonical.expand(24, 1, 16, 16, 16), rotations)  # input b = canonical under rotation b
    chosen_x, chosen = search_orientation(FixedDecoder(canonical[None]), inputs,
                                          OrientationSearch("cube", precision=precision, chunk_size=100))
    assert torch.equal(chosen, inverse_index(rotations))  # compose(r, g) = identity
    assert torch.equal(compose_index(rotations, chosen), torch.zeros(24, dtype=torch.long))
    assert torch.equal(chosen_x, canonical.expand(24, 1, 16, 16, 16))
    recovered = recover_orientation(FixedDecoder(canonical[None]), inputs, OrientationSearch("cube"))
    assert torch.equal(inverse_index(recovered), rotations)  # the input's own rotation


def test_planar_search_and_refinement_find_the_angle_back():
    image = torch.zeros(1, 1, 32, 32)  # an "F": no rotational symmetry
    image[..., 8:25, 11:14] = 1
    image[..., 8:11, 11:22] = 1
    image[..., 15:18, 11:19] = 1
    image = F.avg_pool2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), 3, stride=1)  # smooth: grey, resamplable
    stub = FixedDecoder(image[0], sharpness=8.0)
    steps = torch.tensor([3, 11, 20, 31])  # input k = image rotated by 10 k degrees
    angles = planar_angles(36)
    inputs = rotate_images(image.expand(4, 1, 32, 32), angles[steps])
    chosen_x, chosen = search_orientation(stub, inputs, OrientationSearch("planar", **FP32))
    assert torch.allclose(chosen, angles[(36 - steps) % 36])  # the angle that undoes each rotation
    assert (chosen_x - image).abs().mean() < 0.05
    # off the grid: the refinement (Adam on the angle) must get closer than the grid's best. (Not from a multiple
    # of 90 degrees: there the bilinear resampling adds no blur, a cusp of the loss that holds the angle.)
    truth = angles[steps] + math.radians(4)
    off_grid = rotate_images(image.expand(4, 1, 32, 32), truth)
    grid_only = search_orientation(stub, off_grid, OrientationSearch("planar", **FP32))[1]
    refining = OrientationSearch("planar", refine_steps=20, refine_lr=0.01, **FP32)
    refined = search_orientation(stub, off_grid, refining)[1]

    def error(angle):  # distance of angle + truth from a full turn
        return torch.remainder(angle + truth + math.pi, 2 * math.pi).sub(math.pi).abs()

    assert torch.allclose(error(grid_only), torch.tensor(math.radians(4)), atol=1e-4)
    assert (error(refined) < math.radians(1.5)).all()


def test_cached_planar_grids_give_exactly_the_rotations_of_the_orientation_package():
    from weak_supervision.orientation_vae import _planar_candidates

    images = torch.rand(3, 2, 16, 24)
    for count in (4, 36):
        assert torch.equal(_planar_candidates(images, count), all_planar_rotations(images, planar_angles(count)))


def test_gradient_reaches_the_model_only_through_the_chosen_orientation():
    torch.manual_seed(2)
    vae, x = VoxelVAE(size=16, width=8), random_objects(4, 16, seed=1)
    search = OrientationSearch("cube", **FP32)
    chosen_x, chosen = search_orientation(vae, x, search)
    assert chosen_x.grad_fn is None and not chosen_x.requires_grad  # the search builds no graph
    assert all(p.grad is None for p in vae.parameters())
    torch.manual_seed(5)
    loss, logs = orientation_vae_loss(vae, x, search, beta=2.0)
    loss.backward()
    grads = [p.grad.clone() for p in vae.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    assert set(logs) == {"recon", "kl", "orientation"} and all(v.dim() == 0 for v in logs.values())
    assert torch.isclose(logs["orientation"], chosen.float().mean())
    # the same as training plainly on the chosen rotations, noise included
    vae.zero_grad()
    torch.manual_seed(5)
    reference = per_sample_loss(vae, rotate_voxels(x, chosen), beta=2.0, sample=True)[0].mean()
    reference.backward()
    assert torch.allclose(loss, reference)
    assert all(torch.allclose(g, p.grad) for g, p in zip(grads, vae.parameters()))
    # an input that needs a gradient gets it through the chosen rotation only
    x_grad = x.clone().requires_grad_(True)
    chosen_x, chosen = search_orientation(vae, x_grad, search)
    chosen_x.sum().backward()
    assert torch.equal(x_grad.grad, torch.ones_like(x))  # a rotation is a permutation: each voxel used once


def test_the_search_is_per_sample_and_the_generic_path_agrees():
    torch.manual_seed(3)
    vae, x = VoxelVAE(size=16, width=8), random_objects(6, 16, seed=2)
    permutation = torch.tensor([4, 0, 5, 2, 1, 3])
    for precision in ("fp32", "auto"):
        search = OrientationSearch("cube", precision=precision, chunk_size=30)
        chosen = search_orientation(vae, x, search)[1]
        assert torch.equal(search_orientation(vae, x[permutation], search)[1], chosen[permutation])
    generic = search_orientation(EncodeDecodeOnly(vae), x, OrientationSearch("cube", **FP32))[1]
    assert torch.equal(generic, search_orientation(vae, x, OrientationSearch("cube", **FP32))[1])
    glyphs, images = GlyphVAE(), torch.rand(5, 1, 32, 32)
    search = OrientationSearch("planar", planar_angles=12, **FP32)
    angles = search_orientation(glyphs, images, search)[1]
    assert torch.equal(search_orientation(glyphs, images[[3, 1, 4, 0, 2]], search)[1], angles[[3, 1, 4, 0, 2]])


def test_no_search_trains_on_the_input_as_it_is():
    vae, x = VoxelVAE(size=16, width=8), random_objects(2, 16)
    chosen_x, chosen = search_orientation(vae, x, OrientationSearch("none"))
    assert chosen_x is x and torch.equal(chosen, torch.zeros(2, dtype=torch.long))


def test_a_model_trained_on_one_orientation_recovers_a_rotated_copys_rotation():
    """The posts' test-time experiment on a tiny fixture: two asymmetric objects, each only ever seen in its
    canonical pose; every one of their 24 rotations must be searched back to it exactly."""
    torch.manual_seed(0)
    canonical = torch.stack([polycube(ASYMMETRIC), polycube(STAIRS)])[:, None]
    assert all(symmetry_group(c[0]) == [0] for c in canonical)
    vae = VoxelVAE(latent_dim=4, size=16, width=16)
    optimizer = torch.optim.Adam(vae.parameters(), lr=3e-3)
    batch = canonical.repeat(4, 1, 1, 1, 1)
    for _ in range(150):
        loss, _ = orientation_vae_loss(vae, batch, OrientationSearch("none"), beta=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    rotations = torch.arange(24).repeat(2)
    inputs = rotate_voxels(canonical.repeat_interleave(24, dim=0), rotations)
    recovered = recover_orientation(vae, inputs, OrientationSearch("cube"), beta=0.1)
    assert torch.equal(recovered, inverse_index(rotations))
    assert vae.training  # recovery scores in eval mode and restores the mode


def test_the_benchmark_prints_its_table_and_writes_the_csv(tmp_path, capsys):
    from bench import orientation_search

    csv_path = tmp_path / "search.csv"
    orientation_search.main(["--batch", "2", "--steps", "1", "--rounds", "1", "--size", "16", "--width", "8",
                             "--angles", "4", "--csv", str(csv_path)])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| voxels", "| glyphs"))]
    assert len(rows) == 4 and all(row.rstrip().endswith("x |") for row in rows)
    # 24 inference passes against one forward and backward: the voxel search counts several times the FLOPs
    voxel_flop_ratio = float(rows[0].split("|")[-2].strip().rstrip("x"))
    assert voxel_flop_ratio > 4
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("case,plain_step_fp32,") and len(lines) == 5
