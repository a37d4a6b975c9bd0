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
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from orientation import planar_angles
from slots.windows import PixelWindows

#: renders every slot with the given angles [B, K], on the whole image (window None) or on each slot's window
#: -> decoder outputs [B, K, C, H, W] or [B, K, C, S, S] (RGB, alpha logit and, with C = 5, a silhouette logit)
Render = Callable[[torch.Tensor, PixelWindows | None], torch.Tensor]
#: angles [B, K] -> how badly each slot is drawn under them [B, K] (lower is better)
Score = Callable[[torch.Tensor], torch.Tensor]


def ownership_maps(attention: torch.Tensor, grid_size: tuple[int, int], image_size: tuple[int, int]) -> torch.Tensor:
    """Attention [B, K, N] over the feature grid -> which slot owns each pixel [B, K, H, W] (bilinear, summing
    to 1 over slots): the pixels each slot's rendering is scored on."""
    maps = rearrange(attention, "b k (h w) -> b k h w", h=grid_size[0], w=grid_size[1])
    if tuple(grid_size) != tuple(image_size):
        maps = F.interpolate(maps, size=tuple(image_size), mode="bilinear", align_corners=False)
    return maps / maps.sum(dim=1, keepdim=True).clamp_min(1e-8)


@dataclass
class ScoredPixels:
    """What each slot's renderings are scored against: the image [B, 1, 3, H, W] (or each slot's window of it
    [B, K, 3, S, S]), the slot's ownership of those pixels [B, K, H, W] (or [B, K, S, S]), which of them are
    image pixels (None: all), each slot's ownership summed over the whole image [B, K] and the image's pixel
    count: so that a window's score is the image's score less what lies outside the window."""

    images: torch.Tensor
    ownership: torch.Tensor
    inside: torch.Tensor | None
    owned: torch.Tensor
    image_pixels: int
    window: PixelWindows | None = None

    @classmethod
    def of(cls, images: torch.Tensor, ownership: torch.Tensor, window: PixelWindows | None = None
           ) -> ScoredPixels:
        """The whole images [B, 3, H, W] and ownership [B, K, H, W], or only each slot's `window` of them."""
        owned, image_pixels = ownership.sum(dim=(2, 3)), ownership.shape[-2] * ownership.shape[-1]
        if window is None:
            return cls(images.unsqueeze(1), ownership, None, owned, image_pixels)
        return cls(window.crop_images(images), window.crop(ownership), window.inside(), owned, image_pixels,
                   window)


def slot_scores(decoded: torch.Tensor, pixels: ScoredPixels) -> torch.Tensor:
    """[B, K]: how badly each slot's rendering [B, K, C, H, W] (of its window: [B, K, C, S, S]) draws the pixels
    it owns: the owned pixels' squared colour error (mean over them) plus the binary cross-entropy of the slot's
    shape logit (the silhouette channel if the decoder has one, else the alpha logit) against its ownership
    (mean over the image). The colour term alone cannot tell a turned square of one colour from an upright
    one; the shape term can. On windows, the terms of the pixels outside them are left out: they hardly change
    with the angle of an object that lies inside its window."""
    rgb, shape = decoded[:, :, :3], decoded[:, :, 4 if decoded.shape[2] > 4 else 3]
    weights = pixels.ownership.unsqueeze(2)
    colour = (weights * (rgb.float() - pixels.images).square()).sum(dim=(2, 3, 4))
    colour = colour / (3 * pixels.owned).clamp_min(1e-8)
    silhouette = F.binary_cross_entropy_with_logits(shape.float(), pixels.ownership.float(), reduction="none")
    if pixels.inside is not None:
        silhouette = silhouette * pixels.inside
    return colour + silhouette.sum(dim=(2, 3)) / pixels.image_pixels


class SlotOrientationSearch(nn.Module):
    """A part of `SlotAutoencoder` (no parameters): picks each slot's angle among `num_angles` over the full
    turn, then refines it with `refine_steps` Adam steps of size `refine_lr` (0: none). With `window` > 0 every
    candidate is rendered and scored only on a square of that many pixels around the slot's position (the
    rendering there is exact; what lies outside is left out of the score), which costs (window / image side)^2
    of the whole image's rendering."""

    def __init__(self, num_angles: int = 16, refine_steps: int = 0, refine_lr: float = 0.05, window: int = 0
                 ) -> None:
        super().__init__()
        if num_angles < 2:
            raise ValueError(f"an orientation search needs at least 2 angles, got {num_angles}")
        if refine_steps < 0:
            raise ValueError(f"refine_steps must be >= 0, got {refine_steps}")
        if window < 0:
            raise ValueError(f"window must be >= 0 pixels (0: the whole image), got {window}")
        self.num_angles, self.refine_steps, self.refine_lr, self.window = num_angles, refine_steps, refine_lr, window

    def scored_pixels(self, images: torch.Tensor, ownership: torch.Tensor, positions: torch.Tensor | None
                      ) -> ScoredPixels:
        """The whole image, or each slot's window around its position [B, K, 2] (needed with a window)."""
        if not self.window:
            return ScoredPixels.of(images, ownership)
        if positions is None:
            raise ValueError("a windowed orientation search needs each slot's position")
        return ScoredPixels.of(images, ownership, PixelWindows.around(positions, self.window, images.shape[-2:]))

    def forward(self, render: Render, images: torch.Tensor, ownership: torch.Tensor,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        """The chosen angles [B, K], detached, for the slots that own `ownership` [B, K, H, W] of the images
        [B, 3, H, W] and sit at `positions` [B, K, 2] (x, y in [-1, 1]; used with a window): scored by how
        well each slot's rendering draws its pixels."""
        pixels = self.scored_pixels(images, ownership, positions)
        return self.best(lambda angles: slot_scores(render(angles, pixels.window), pixels), ownership.shape[:2],
                         images.device)

    def best(self, score: Score, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
        """The angles [B, K] (`shape`) that minimise `score` among the candidates (no gradient), refined by
        Adam steps on `score` when `refine_steps` > 0; detached. Any per-slot score will do: a rendering's
        pixel error (`forward`) or, in the slot VAE, its outline head's (`SlotVAE.outline_scores`)."""
        candidates = planar_angles(self.num_angles, device)
        with torch.no_grad():
            scores = torch.stack([score(angle.expand(*shape)) for angle in candidates])  # [R, B, K]
        angles = candidates[scores.argmin(dim=0)]
        if self.refine_steps:
            angles = self.refine(score, angles)
        return angles.detach()

    def refine(self, score: Score, angles: torch.Tensor) -> torch.Tensor:
        """A few Adam steps on every slot's angle, the score differentiated through the angle only (the
        caller's parameters get no gradient)."""
        angle = angles.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([angle], lr=self.refine_lr)
        with torch.enable_grad():
            for _ in range(self.refine_steps):
                (gradient,) = torch.autograd.grad(score(angle).sum(), angle)
                angle.grad = gradient
                optimizer.step()
        return angle.detach()

    def extra_repr(self) -> str:
        return (f"num_angles={self.num_angles}, refine_steps={self.refine_steps}, refine_lr={self.refine_lr}, "
                f"window={self.window}")
