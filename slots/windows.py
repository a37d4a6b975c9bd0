"""Square pixel windows, one per slot: the part of the image a slot is rendered and scored on when the rest
cannot change the answer (the per-slot orientation search turns one object at a time, and an object covers a
fifth of a 64x64 image or less), so each candidate costs the window's pixels instead of the image's.

A window is a square of `size` pixels whose top-left pixel is `origins` (row, column); it may reach past the
image's edges, where it holds no pixels (`inside` is False and crops read zeros). Its grid uses the image's own
pixel-centre coordinates (`slots.frames.centred_grid`), so a decoder rendering on it draws exactly the pixels
of the full rendering that the window covers (see `SpatialBroadcastDecoder.forward`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange


@dataclass
class PixelWindows:
    """origins [B, K, 2] (row, column of each window's top-left pixel, long), the window side `size` in pixels
    and the (H, W) of the image the windows are cut from."""

    origins: torch.Tensor
    size: int
    image_size: tuple[int, int]

    @classmethod
    def around(cls, positions: torch.Tensor, size: int, image_size: tuple[int, int]) -> PixelWindows:
        """Windows of `size` pixels centred (to the nearest pixel) on positions [B, K, 2] (x, y in [-1, 1],
        a slot frame's position)."""
        if size < 1:
            raise ValueError(f"a window needs at least one pixel, got size {size}")
        height, width = image_size
        scale = torch.tensor([width, height], device=positions.device, dtype=positions.dtype)
        centres = (positions.detach() + 1) / 2 * scale - 0.5  # (x, y) in pixel indices
        corners = torch.round(centres - (size - 1) / 2).long()
        return cls(corners.flip(-1), size, (height, width))

    def grown(self, margin: int) -> PixelWindows:
        """The same windows with `margin` more pixels on every side."""
        return PixelWindows(self.origins - margin, self.size + 2 * margin, self.image_size)

    def pixel_indices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows [B, K, S], columns [B, K, S]) of the image pixels each window covers (may be out of range)."""
        steps = torch.arange(self.size, device=self.origins.device)
        return self.origins[..., 0, None] + steps, self.origins[..., 1, None] + steps

    def inside(self) -> torch.Tensor:
        """[B, K, S, S] bool: which window pixels are pixels of the image."""
        rows, columns = self.pixel_indices()
        height, width = self.image_size
        row_ok, column_ok = (rows >= 0) & (rows < height), (columns >= 0) & (columns < width)
        return rearrange(row_ok, "b k s -> b k s 1") & rearrange(column_ok, "b k s -> b k 1 s")

    def grid(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """[B, K, S, S, 2]: the (x, y) pixel-centre coordinates in [-1, 1] of every window pixel, the image's
        grid continued past its edges."""
        rows, columns = self.pixel_indices()
        height, width = self.image_size
        y = rearrange((rows + 0.5) / height * 2 - 1, "b k s -> b k s 1")
        x = rearrange((columns + 0.5) / width * 2 - 1, "b k s -> b k 1 s")
        return torch.stack(torch.broadcast_tensors(x, y), dim=-1).to(dtype or torch.get_default_dtype())

    def crop(self, maps: torch.Tensor) -> torch.Tensor:
        """Per-slot maps [B, K, H, W] -> each slot's window of its own map [B, K, S, S] (zeros outside the
        image)."""
        if maps.ndim != 4 or tuple(maps.shape[-2:]) != tuple(self.image_size):
            raise ValueError(f"expected maps [B, K, {self.image_size[0]}, {self.image_size[1]}], got "
                             f"{list(maps.shape)}")
        rows, columns = self._clamped()
        batch, slots = self.origins.shape[:2]
        b = torch.arange(batch, device=maps.device).view(batch, 1, 1, 1)
        k = torch.arange(slots, device=maps.device).view(1, slots, 1, 1)
        return maps[b, k, rows, columns] * self.inside().to(maps.dtype)

    def crop_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, C, H, W] -> what each slot's window sees [B, K, C, S, S] (zeros outside the image)."""
        if images.ndim != 4 or tuple(images.shape[-2:]) != tuple(self.image_size):
            raise ValueError(f"expected images [B, C, {self.image_size[0]}, {self.image_size[1]}], got "
                             f"{list(images.shape)}")
        rows, columns = self._clamped()
        b = torch.arange(len(images), device=images.device).view(-1, 1, 1, 1)
        pixels = rearrange(images, "b c h w -> b h w c")[b, rows, columns]  # [B, K, S, S, C]
        pixels = pixels * self.inside().unsqueeze(-1).to(images.dtype)
        return rearrange(pixels, "b k s t c -> b k c s t")

    def _clamped(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Row and column indices [B, K, S, 1], [B, K, 1, S] clamped into the image (reads that `inside`
        then zeroes)."""
        rows, columns = self.pixel_indices()
        height, width = self.image_size
        return (rearrange(rows.clamp(0, height - 1), "b k s -> b k s 1"),
                rearrange(columns.clamp(0, width - 1), "b k s -> b k 1 s"))
