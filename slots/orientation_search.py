"""Per-slot orientation search: each slot's frame gets the rotation under which the decoder draws that slot's
pixels best, chosen by brute force among R angles before the backward pass (the seed posts' orientation
search, applied per object beside the slot frames), so a decoder can learn each shape once, upright.

Position and scale leave a slot's latent through its frame (`slots.frames`); orientation leaves it the same
way once the frame carries an angle. The search needs no gradient: every candidate angle is rendered under
no-grad, each slot is scored on the pixels it owns (its attention, upsampled), and the slot keeps the best
angle (ties to the lowest, angle 0 first); optionally a few Adam steps refine each angle through the
rendering. The training loss then renders with the chosen angles, so the gradient reaches the decoder and the
slots through the chosen rendering only.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from orientation import planar_angles

#: renders every slot with the given angles [B, K] -> decoder outputs [B, K, C, H, W] (RGB, alpha logit,
#: and with C = 5 a silhouette logit)
Render = Callable[[torch.Tensor], torch.Tensor]


def ownership_maps(attention: torch.Tensor, grid_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """Attention [B, K, N] over the feature grid -> which slot owns each pixel [B, K, H, W] (bilinear, summing
    to 1 over slots): the pixels each slot's rendering is scored on."""
    maps = rearrange(attention, "b k (h w) -> b k h w", h=grid_size[0], w=grid_size[1])
    if tuple(grid_size) != tuple(image_size):
        maps = F.interpolate(maps, size=tuple(image_size), mode="bilinear", align_corners=False)
    return maps / maps.sum(dim=1, keepdim=True).clamp_min(1e-8)


def slot_scores(decoded: torch.Tensor, images: torch.Tensor, ownership: torch.Tensor) -> torch.Tensor:
    """[B, K]: how badly each slot's rendering [B, K, C, H, W] draws the pixels it owns ([B, K, H, W]) of the
    images [B, 3, H, W] in [-1, 1]: the owned pixels' squared colour error (mean over them) plus the binary
    cross-entropy of the slot's shape logit (the silhouette channel if the decoder has one, else the alpha
    logit) against its ownership (mean over the image). The colour term alone cannot tell a turned square of
    one colour from an upright one; the shape term can."""
    rgb, shape = decoded[:, :, :3], decoded[:, :, 4 if decoded.shape[2] > 4 else 3]
    weights = ownership.unsqueeze(2)
    colour = (weights * (rgb.float() - images.unsqueeze(1)).square()).sum(dim=(2, 3, 4))
    colour = colour / (3 * ownership.sum(dim=(2, 3))).clamp_min(1e-8)
    silhouette = F.binary_cross_entropy_with_logits(shape.float(), ownership.float(), reduction="none")
    return colour + silhouette.mean(dim=(2, 3))


class SlotOrientationSearch(nn.Module):
    """A part of `SlotAutoencoder` (no parameters): picks each slot's angle among `num_angles` over the full
    turn, then refines it with `refine_steps` Adam steps of size `refine_lr` (0: none)."""

    def __init__(self, num_angles: int = 16, refine_steps: int = 0, refine_lr: float = 0.05) -> None:
        super().__init__()
        if num_angles < 2:
            raise ValueError(f"an orientation search needs at least 2 angles, got {num_angles}")
        if refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
        self.num_angles, self.refine_steps, self.refine_lr = num_angles, refine_steps, refine_lr

    def scores(self, render: Render, images: torch.Tensor, ownership: torch.Tensor) -> torch.Tensor:
        """[R, B, K]: every slot scored under every candidate angle (no gradient)."""
        batch, num_slots = ownership.shape[:2]
        candidates = planar_angles(self.num_angles, images.device)
        with torch.no_grad():
            return torch.stack([slot_scores(render(angle.expand(batch, num_slots)), images, ownership)
                                for angle in candidates])

    def forward(self, render: Render, images: torch.Tensor, ownership: torch.Tensor) -> torch.Tensor:
        """The chosen angles [B, K], detached."""
        scores = self.scores(render, images, ownership)
        angles = planar_angles(self.num_angles, images.device)[scores.argmin(dim=0)]
        if self.refine_steps:
            angles = self.refine(render, images, ownership, angles)
        return angles.detach()

    def refine(self, render: Render, images: torch.Tensor, ownership: torch.Tensor, angles: torch.Tensor
               ) -> torch.Tensor:
        """A few Adam steps on every slot's angle, the score differentiated through the rendering's sampling
        grid only (the caller's parameters get no gradient)."""
        angle = angles.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([angle], lr=self.refine_lr)
        with torch.enable_grad():
            for _ in range(self.refine_steps):
                score = slot_scores(render(angle), images, ownership).sum()
                (gradient,) = torch.autograd.grad(score, angle)
                angle.grad = gradient
                optimizer.step()
        return angle.detach()

    def extra_repr(self) -> str:
        return f"num_angles={self.num_angles}, refine_steps={self.refine_steps}, refine_lr={self.refine_lr}"
