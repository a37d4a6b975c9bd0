"""Orientation-search VAEs (the seed posts by Bidart; the Affine VAE, arXiv 1905.05300): before each backward
pass every input's orientation is searched over a finite group by brute force, without gradient, and the VAE
trains on each input's best orientation, so the latent codes one canonical pose and orientation leaves it.

Two models share one interface (`encode(x) -> (mean, logvar)`, `decode(z) -> Bernoulli logits`):
`VoxelVAE` on D^3 binary voxel objects under the 24 rotations of the cube, and `GlyphVAE` on grey images under
planar rotations (a grid of angles, optionally refined by a few Adam steps on each angle, as the Affine VAE).

The search scores each candidate with the deterministic loss (posterior mean, no sampling), in one batched
no-grad pass, as the authors did. It is the hot loop of training (24 or 36 forward passes per sample), so it
runs under `torch.inference_mode`, in bf16 where the device computes it natively, with the Bernoulli
reconstruction written as sum(softplus(logits)) - <logits, target> (the same number as
`binary_cross_entropy_with_logits`, one pass fewer over the voxels); `VoxelVAE` adds an exact shortcut for the
cube group (`VoxelVAE.cube_losses`). Measured with `python -m bench.orientation_search` (batch 32, shared 2-core
CPU with AMX, ratios from one process): the 24-way search pass costs 3.6-4.1x a float32 training step and
4.7-5.3x a bf16 one (1 and 2 threads), against 17-18x for the straightforward batched float32 pass; the 3x
target is not met.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from einops.layers.torch import Rearrange
from torch import Tensor, nn

from orientation import (CUBE_GROUP_SIZE, OrientationError, all_rotations, best_of_group, planar_angles, refine_angles,
                         rotate_images, rotate_voxels, voxel_permutations)

Group = Literal["none", "cube", "planar"]
Precision = Literal["auto", "bf16", "fp32"]


class GaussianVAE(Protocol):
    """What the search and the losses need of a model (the tests use stubs with just these two methods)."""

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]: ...

    def decode(self, z: Tensor) -> Tensor: ...


#: side of the voxel blocks the patch layers of VoxelVAE map to one cell
PATCH = 4


def _autocast_off(device: torch.device):
    """A context without autocast on `device` (nothing to do where autocast does not exist)."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


#: exp() of logits up to this stays finite in float32; larger ones are added as relu(l - c) (see _sum_softplus_)
SOFTPLUS_CEILING = 80.0


def _sum_softplus_(logits: Tensor, bounded: bool = False, ceiling: float = SOFTPLUS_CEILING) -> Tensor:
    """sum(softplus(logits)) over dim 1 of a float32 [n, m] tensor that it overwrites, as
    log(1 + exp(min(l, c))) + relu(l - c): torch's softplus kernel is about 3x slower on CPU than exp and log,
    and this sum is the search's one full-resolution pass. exp(80) is still finite in float32, and
    log(1 + exp(l)) loses nothing that matters (absolute error below 1e-7 per voxel where exp(l) < 1e-7).
    `bounded`: the caller knows every logit is below the ceiling, so the check (one pass) is skipped."""
    excess = (logits - ceiling).clamp_(min=0.0).sum(dim=1) if not bounded and logits.max() > ceiling else 0.0
    return logits.clamp_(max=ceiling).exp_().add_(1.0).log_().sum(dim=1) + excess


def _wide(t: Tensor) -> Tensor:
    """float32 for a half-precision tensor (autocast output), the tensor itself otherwise (float32 or 64)."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


# --- models ---------------------------------------------------------------------------------------------------


class VoxelVAE(nn.Module):
    """Gaussian VAE on binary voxel grids [B, 1, D, D, D] (D divisible by 8), Bernoulli logits out.

    Encoder: a "patch" convolution (4^3 kernel, stride 4: D -> D/4, each 4^3 block of voxels to `width // 2`
    features), a 3^3 convolution across blocks, a strided 4^3 convolution (D/4 -> D/8, `width` channels), a linear
    layer to mean and log-variance. The decoder mirrors it and ends in the transposed patch convolution: each
    block's 64 logits are a linear function of its cell's features. Why this shape: on CPU the full-resolution
    layers dominate a 3D VAE's cost, so only the two patch layers touch the D^3 grid. On the polycubes and
    furniture of data/voxels.py (canonical poses, 3000 steps of batch 32, bf16) it reached 1056 nats and IoU
    0.677 on held-out objects, against 1107 nats and 0.671 for a 32 -> 16 -> 8 -> 4 stack of stride-2 4^3
    convolutions (8/16/32 channels) in 2.5x the time. And because each rotation of the cube maps 4^3 blocks
    onto 4^3 blocks, the 24-way search has an exact shortcut (`cube_losses`).
    """

    def __init__(self, latent_dim: int = 8, size: int = 32, width: int = 32):
        super().__init__()
        if size % 8 or size < 8:
            raise ValueError(f"VoxelVAE needs a grid side divisible by 8, got {size}")
        if width < 2:
            raise ValueError(f"VoxelVAE width must be >= 2, got {width}")
        self.latent_dim, self.size, self.width = latent_dim, size, width
        coarse, half = size // 8, width // 2
        self.patch = nn.Conv3d(1, half, PATCH, stride=PATCH)  # D^3 -> (D/4)^3 cells of 4^3 voxels
        self.encoder_body = nn.Sequential(
            nn.ReLU(inplace=True), nn.Conv3d(half, half, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv3d(half, width, 4, stride=2, padding=1), nn.ReLU(inplace=True),  # (D/4)^3 -> (D/8)^3
            Rearrange("b c x y z -> b (x y z c)"), nn.Linear(width * coarse**3, 2 * latent_dim),
        )  # fmt: skip
        self.decoder_body = nn.Sequential(
            nn.Linear(latent_dim, width * coarse**3), nn.ReLU(inplace=True),
            Rearrange("b (x y z c) -> b c x y z", c=width, x=coarse, y=coarse),
            nn.ConvTranspose3d(width, half, 4, stride=2, padding=1), nn.ReLU(inplace=True),  # (D/8)^3 -> (D/4)^3
            nn.Conv3d(half, half, 3, padding=1), nn.ReLU(inplace=True),
        )  # fmt: skip
        # the transposed patch convolution as a linear map of each cell's features to its block's 64 logits
        # (the same function as ConvTranspose3d(half, 1, 4, stride=4), which runs several times slower on CPU)
        self.unpatch = nn.Linear(half, PATCH**3)

    def _patch(self, x: Tensor) -> Tensor:
        """The patch convolution in float32 even under autocast: with one input channel it is cheap, and
        oneDNN's bf16 kernel for it is several times slower than the float32 one."""
        with _autocast_off(x.device):
            return self.patch(x.to(self.patch.weight.dtype).contiguous(memory_format=torch.channels_last_3d))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar) [B, latent_dim] in float32 (also under bf16 autocast)."""
        mean, logvar = _wide(self.encoder_body(self._patch(x))).chunk(2, dim=-1)
        return mean, logvar

    def _features(self, z: Tensor) -> Tensor:
        """The decoder up to its last layer, channels last: [B, (D/4)^3, width // 2]."""
        return rearrange(self.decoder_body(z), "b c x y z -> b (x y z) c")

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits [B, 1, D, D, D] in float32."""
        cells = self.size // PATCH
        logits = _wide(self.unpatch(self._features(z)))
        return rearrange(logits, "b (x y z) (i j k) -> b 1 (x i) (y j) (z k)", x=cells, y=cells, i=PATCH, j=PATCH)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logits of the posterior mean, mean, logvar): the deterministic reconstruction."""
        mean, logvar = self.encode(x)
        return self.decode(mean), mean, logvar

    def cube_losses(self, x: Tensor, beta: float = 1.0, chunk_size: int | None = None) -> Tensor:
        """[24, B]: `scoring_loss` of every input under every rotation of the cube (`rotate_voxels(x, g)`), by an
        exact shortcut that never builds the 24 rotated grids. Call it under no-grad or inference mode.

        A rotation g moves the 4^3 block at cell q to cell g q and rotates its contents by g. So the patch
        convolution of the rotated grid is the patch convolution of the original blocks with g-permuted
        weights, moved to the rotated cells: one matmul of the B x (D/4)^3 blocks with the 24 permuted weight
        sets, then a gather at cell resolution (64 times fewer entries than the grids). The target's part of
        the reconstruction loss, <logits, rotated grid>, is an inner product with the transposed patch layer's
        output, so it equals <features, V^T block> + <bias, block> (V the layer's weight): the same matmul
        gives it, also at cell resolution. Only sum(softplus(logits)) is left at full resolution."""
        cells, volume, half = self.size // PATCH, PATCH**3, self.width // 2
        batch, device = x.shape[0], x.device
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else torch.float32
        within = voxel_permutations(PATCH).to(device)  # [24, 64]: block rotated by g = block[..., within[g]]
        moved = voxel_permutations(cells).to(device)  # [24, cells^3]: rotated grid's cell p is cell moved[g, p]

        def permuted(rows: Tensor, fixed: Tensor) -> Tensor:
            """[64, k] per-voxel rows -> [24, 65, k]: out[g, within[g, q]] = rows[q]; row 64 (the blocks'
            constant-one column) = fixed, the same for every g."""
            out = rows.new_zeros(CUBE_GROUP_SIZE, volume + 1, rows.shape[1])
            index = within[:, :, None].expand(-1, -1, rows.shape[1])
            out[:, :volume].scatter_(1, index, rows.expand(CUBE_GROUP_SIZE, -1, -1))
            out[:, volume] = fixed
            return out.to(dtype)

        # the patch convolution with its bias; V^T block and <unpatch bias, block> (the target's loss terms)
        patch = permuted(self.patch.weight.reshape(half, volume).T.float(), self.patch.bias.float())
        target = permuted(torch.cat([self.unpatch.weight, self.unpatch.bias[:, None]], dim=1).float(),
                          torch.zeros(half + 1, device=device))
        blocks = rearrange(x, "b 1 (x i) (y j) (z k) -> (b x y z) (i j k)", i=PATCH, j=PATCH, k=PATCH)
        blocks = torch.cat([blocks, blocks.new_ones(len(blocks), 1)], dim=1).to(dtype)
        step = max(1, (chunk_size or CUBE_GROUP_SIZE * batch) // batch)
        losses = []
        for first in range(0, CUBE_GROUP_SIZE, step):
            rotations = range(first, min(first + step, CUBE_GROUP_SIZE))

            def gathered(weights: Tensor) -> Tensor:  # [(g b), cells^3, k]
                """Rotation g's cell p holds what the input's cell moved[g, p] gives with g-permuted weights."""
                out = blocks.new_empty(len(rotations), batch, cells**3, weights.shape[-1])
                for slot, g in enumerate(rotations):
                    per_cell = rearrange(blocks @ weights[g], "(b p) k -> b p k", b=batch)
                    torch.index_select(per_cell, 1, moved[g], out=out[slot])
                return rearrange(out, "g b p k -> (g b) p k")

            losses.append(self._cube_chunk(gathered(patch), gathered(target), beta))
        return rearrange(torch.cat(losses), "(g b) -> g b", b=batch)

    def _cube_chunk(self, conv: Tensor, target: Tensor, beta: float, cache_bytes: int = 1 << 20) -> Tensor:
        """Scores of n candidates from their patch convolution [n, cells^3, half] and target terms
        [n, cells^3, half + 1] (see `cube_losses`)."""
        half, cells = self.width // 2, self.size // PATCH
        conv = rearrange(conv, "n (x y z) c -> n c x y z", x=cells, y=cells)  # channels last, what oneDNN wants
        mean, logvar = _wide(self.encoder_body(conv)).chunk(2, dim=-1)
        features = rearrange(self.decoder_body(mean), "n c x y z -> n (x y z) c").float()
        target = target.float()
        target_term = (features * target[..., :half]).sum(dim=(1, 2)) + target[..., half].sum(dim=1)
        # sum(softplus(logits)) in pieces that stay in cache, one reused buffer: the only full-resolution work
        weight, bias = self.unpatch.weight.float().T, self.unpatch.bias.float()
        # |logit| <= max|feature| * max column L1 norm of the weight + max|bias|: when that is below the ceiling
        # (the usual case), no logit needs checking
        bound = features.abs().max() * weight.abs().sum(dim=0).max() + bias.abs().max()
        rows = max(1, cache_bytes // (4 * weight.shape[1] * cells**3))  # whole samples per piece
        buffer = features.new_empty(min(rows, len(features)) * cells**3, weight.shape[1])
        softplus = []
        bounded = bool(bound < SOFTPLUS_CEILING)
        with _autocast_off(features.device):
            for piece in features.split(rows):
                flat = rearrange(piece, "n p c -> (n p) c")
                logits = torch.addmm(bias, flat, weight, out=buffer[: len(flat)])
                softplus.append(_sum_softplus_(rearrange(logits, "(n p) v -> n (p v)", p=cells**3), bounded=bounded))
        return torch.cat(softplus) - target_term + beta * _kl(mean, logvar)


class GlyphVAE(nn.Module):
    """Gaussian VAE on grey images [B, C, R, R] (R divisible by 8), Bernoulli logits out.

    Encoder: strided 4x4 convolutions R -> R/2 -> R/4 -> R/8 (`width // 2`, `width // 2`, `width` channels), a
    linear layer to mean and log-variance. Decoder: a linear layer, stride-2 4x4 transposed convolutions R/8 ->
    R/4 -> R/2, and a last upsampling written as a 3x3 convolution to 4 C channels and a pixel shuffle: the
    same family of maps as a stride-2 4x4 transposed convolution (which it contains), 2-4x faster on CPU in
    bf16, where the 36-angle search spends most of its time in this layer. Activations run channels last.
    """

    def __init__(self, latent_dim: int = 8, resolution: int = 32, channels: int = 1, width: int = 32):
        super().__init__()
        if resolution % 8 or resolution < 8:
            raise ValueError(f"GlyphVAE needs a resolution divisible by 8, got {resolution}")
        if width < 2:
            raise ValueError(f"GlyphVAE width must be >= 2, got {width}")
        self.latent_dim, self.resolution, self.channels, self.width = latent_dim, resolution, channels, width
        coarse, half = resolution // 8, width // 2
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, half, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(half, width, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            Rearrange("b c h w -> b (h w c)"), nn.Linear(width * coarse**2, 2 * latent_dim),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, width * coarse**2), nn.ReLU(inplace=True),
            Rearrange("b (h w c) -> b c h w", c=width, h=coarse),
            nn.ConvTranspose2d(width, half, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(half, half, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(half, 4 * channels, 3, padding=1), nn.PixelShuffle(2),
        )  # fmt: skip

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar) [B, latent_dim] in float32 (also under bf16 autocast)."""
        mean, logvar = _wide(self.encoder(x.contiguous(memory_format=torch.channels_last))).chunk(2, dim=-1)
        return mean, logvar

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits [B, C, R, R] in float32."""
        return _wide(self.decoder(z))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logits of the posterior mean, mean, logvar)."""
        mean, logvar = self.encode(x)
        return self.decode(mean), mean, logvar


# --- losses ---------------------------------------------------------------------------------------------------


def _kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over the latents: [B]."""
    return 0.5 * (mean.square() + logvar.exp() - logvar - 1.0).sum(dim=-1)


def per_sample_loss(vae: GaussianVAE, x: Tensor, beta: float = 1.0, *,
                    sample: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(total, reconstruction, KL), each [B]: Bernoulli negative log-likelihood summed over voxels / pixels
    (targets in [0, 1]) + beta * KL(q(z|x) || N(0, I)) summed over latents. `sample=False` decodes the posterior
    mean (the deterministic loss the search scores with), `sample=True` a reparameterised sample (training)."""
    mean, logvar = vae.encode(x)
    mean, logvar = _wide(mean), _wide(logvar)
    z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
    logits = _wide(vae.decode(z))
    bce = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
    recon = rearrange(bce, "b ... -> b (...)").sum(dim=1)
    kl = _kl(mean, logvar)
    return recon + beta * kl, recon, kl


def _scoring_nll(logits: Tensor, target: Tensor) -> Tensor:
    """Bernoulli NLL summed per sample, as sum(softplus(l)) - sum(l t): the same number as
    binary_cross_entropy_with_logits (softplus(l) - l t elementwise) for any target in [0, 1], in fewer passes."""
    logits = rearrange(logits, "b ... -> b (...)").float()
    target = rearrange(target, "b ... -> b (...)")
    return _sum_softplus_(logits.clone()) - (logits * target).sum(dim=1, dtype=torch.float32)


def scoring_loss(vae: GaussianVAE, x: Tensor, beta: float = 1.0) -> Tensor:
    """The search's score [B]: the deterministic loss (posterior mean) of `per_sample_loss`, computed with the
    cheaper reconstruction form; call it under no-grad or inference mode."""
    mean, logvar = vae.encode(x)
    mean, logvar = _wide(mean), _wide(logvar)
    return _scoring_nll(vae.decode(mean), x) + beta * _kl(mean, logvar)


# --- the search -------------------------------------------------------------------------------------------------


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls and convolutions are native (not emulated) on `device`: CUDA GPUs with bf16, CPUs
    with AMX or AVX512-bf16. Elsewhere bf16 would be slower than float32, so the search stays in float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    checks = (getattr(torch.cpu, "_is_amx_tile_supported", None),
              getattr(torch.cpu, "_is_avx512_bf16_supported", None))
    return any(check is not None and check() for check in checks)


@dataclass(frozen=True)
class OrientationSearch:
    """Which group the search tries on each input and how.

    group: "none" (train on the input as it is), "cube" (the 24 rotations of voxel grids), "planar" (the
    `planar_angles` angles 2 pi k / R of images, then `refine_steps` Adam steps of rate `refine_lr` on each
    chosen angle). chunk_size: candidates per forward pass of the search (None: a measured default per group;
    it only trades memory for speed). precision: "auto" scores in bf16 where the device computes it natively,
    "fp32" always in float32 (exact ties, reproducible across machines), "bf16" always in bf16."""

    group: Group = "cube"
    planar_angles: int = 36
    refine_steps: int = 0
    refine_lr: float = 0.01
    chunk_size: int | None = None
    precision: Precision = "auto"

    def __post_init__(self):
        if self.group not in ("none", "cube", "planar"):
            raise ValueError(f"OrientationSearch.group must be none, cube or planar, got {self.group!r}")
        if self.planar_angles < 1 or self.refine_steps < 0 or (self.chunk_size is not None and self.chunk_size < 1):
            raise ValueError(f"invalid OrientationSearch {self}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"OrientationSearch.precision must be auto, bf16 or fp32, got {self.precision!r}")


#: Candidates per forward pass when `chunk_size` is None. On the 2-core machine this was measured on, passes
#: whose activations outgrow the 2 MB L2 cache slow down several-fold (memory bandwidth is low); between these
#: sizes and 4x larger the search time is flat within noise.
DEFAULT_CHUNK = {"cube": 96, "planar": 256}


def _precision_context(device: torch.device, precision: Precision):
    """bf16 autocast for the search pass where it pays (see `native_bf16`), else float32: an enclosing
    autocast (a bf16 training step) is switched off, so "fp32" means float32."""
    use_bf16 = precision == "bf16" or (precision == "auto" and native_bf16(device))
    if not use_bf16 or device.type not in ("cpu", "cuda"):
        return _autocast_off(device)
    return torch.autocast(device.type, dtype=torch.bfloat16)


@lru_cache(maxsize=8)
def _planar_grid(count: int, height: int, width: int, device: torch.device) -> Tensor:
    """[count, H, W, 2] sampling grids of the `planar_angles(count)` rotations: the grids
    `orientation.rotate_images` builds per image (the same theta, counter-clockwise as displayed), built once."""
    angles = planar_angles(count, device=device)
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    theta = rearrange(torch.stack([cos, -sin, zero, sin, cos, zero], dim=-1), "r (i j) -> r i j", i=2)
    return F.affine_grid(theta, [count, 1, height, width], align_corners=False)


def _planar_candidates(x: Tensor, count: int) -> Tensor:
    """[count, B, C, H, W]: `all_planar_rotations(x, planar_angles(count))`, bit for bit, from the cached grids
    (rebuilding them per image and step was a third of the 36-angle search)."""
    grid = _planar_grid(count, x.shape[-2], x.shape[-1], x.device).to(x.dtype)
    grid = repeat(grid, "r h w two -> (r b) h w two", b=x.shape[0])
    images = repeat(x, "b c h w -> (r b) c h w", r=count)
    rotated = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return rearrange(rotated, "(r b) c h w -> r b c h w", r=count)


def _score(vae: GaussianVAE, beta: float):
    return lambda batch: scoring_loss(vae, batch, beta)


def search_orientation(vae: GaussianVAE, x: Tensor, search: OrientationSearch,
                       beta: float = 1.0) -> tuple[Tensor, Tensor]:
    """(x_chosen [B, ...], chosen [B]): each input under its best group element by the deterministic loss.

    cube: chosen = rotation index g, x_chosen = rotate_voxels(x, g); planar: chosen = angle in radians,
    x_chosen = rotate_images(x, angle); none: x itself and zeros. No autograd graph reaches the model: the
    scores run under inference mode and x_chosen is a fresh rotation of x (differentiable in x only)."""
    if search.group == "none":
        return x, torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    chunk = search.chunk_size or DEFAULT_CHUNK[search.group]
    if search.group == "cube":
        with torch.inference_mode(), _precision_context(x.device, search.precision):
            fast = getattr(vae, "cube_losses", None)
            if fast is not None:
                index = fast(x, beta, chunk_size=chunk).argmin(dim=0)
            else:
                index = best_of_group(all_rotations(x.detach()), _score(vae, beta), chunk).index
        index = index.clone()  # a normal tensor again, usable in autograd
        return rotate_voxels(x, index), index
    if x.dim() != 4:
        raise OrientationError(f"planar search acts on images [B, C, H, W], got {tuple(x.shape)}")
    angles = planar_angles(search.planar_angles, device=x.device)
    with torch.inference_mode(), _precision_context(x.device, search.precision):
        index = best_of_group(_planar_candidates(x.detach(), search.planar_angles), _score(vae, beta), chunk).index
    angle = angles[index.clone()]
    if search.refine_steps:  # Adam on the angle through the resampling; the model's weights get no gradient
        with _precision_context(x.device, search.precision):
            angle = refine_angles(x.detach(), angle, lambda images: per_sample_loss(vae, images, beta, sample=False)[0],
                                  search.refine_steps, search.refine_lr)
        angle = torch.remainder(angle, 2 * torch.pi)
    return rotate_images(x, angle), angle


def orientation_vae_loss(vae: GaussianVAE, x: Tensor, search: OrientationSearch,
                         beta: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
    """(loss, logs): the sampled VAE loss (per_sample_loss, sample=True) on each input's chosen orientation,
    averaged over the batch; the gradient reaches the model through the chosen orientation only. logs, detached
    scalars: recon, kl (batch means) and orientation (the mean chosen rotation index, or angle in radians)."""
    chosen_x, chosen = search_orientation(vae, x, search, beta)
    total, recon, kl = per_sample_loss(vae, chosen_x, beta, sample=True)
    logs = {"recon": recon.mean().detach(), "kl": kl.mean().detach(), "orientation": chosen.float().mean()}
    return total.mean(), logs


def recover_orientation(vae: GaussianVAE, x: Tensor, search: OrientationSearch, beta: float = 1.0) -> Tensor:
    """The group element that brings each input back to the model's canonical pose (test-time recovery by a
    model trained on one orientation): [B] rotation indices ("cube") or angles ("planar").

    Convention: if x = rotate_voxels(canonical, r), the answer g makes rotate_voxels(x, g) = canonical, i.e.
    compose_index(r, g) = 0 and g = inverse_index(r), up to the object's own symmetries (any g with
    compose_index(r, g) in `symmetry_group(canonical)` is as good). For images rotated by angle a the answer is
    -a modulo 2 pi. The input's own rotation is therefore inverse_index(g), respectively -g."""
    was_training = getattr(vae, "training", False)
    if isinstance(vae, nn.Module):
        vae.eval()
    try:
        return search_orientation(vae, x, search, beta)[1]
    finally:
        if isinstance(vae, nn.Module):
            vae.train(was_training)


__all__ = ["DEFAULT_CHUNK", "GlyphVAE", "OrientationSearch", "VoxelVAE", "native_bf16", "orientation_vae_loss",
           "per_sample_loss", "recover_orientation", "scoring_loss", "search_orientation"]
