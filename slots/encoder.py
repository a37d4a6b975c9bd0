"""CNN encoder with a soft position embedding, producing the feature set Slot Attention attends to."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def coordinate_grid(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """The four-channel grid [x, y, 1-x, 1-y] in [0, 1], shape [H, W, 4] (as in the official code)."""
    ys = torch.linspace(0.0, 1.0, height, device=device)
    xs = torch.linspace(0.0, 1.0, width, device=device)
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y, 1.0 - x, 1.0 - y], dim=-1)


class SoftPositionEmbed(nn.Module):
    """A learned linear map of the coordinate grid, added to features so slots can bind by position."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(4, channels)

    def forward(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """Position features [H*W, C] for a height x width grid."""
        return rearrange(self.proj(coordinate_grid(height, width, device)), "h w c -> (h w) c")


#: `encoder_strides: auto` halves the feature grid in the first layers while it is this wide or wider
AUTO_STRIDE_FROM = 64


def auto_strides(resolution: int, num_layers: int) -> tuple[int, ...]:
    """Strides that keep Slot Attention's feature grid between 32 and 63 wide: stride 2 in the first layers
    while the grid would be >= 64 (64x64 images: 2, 1, 1, 1; 128x128: 2, 2, 1, 1), all 1 up to 63x63. Above
    that the encoder's cost and the attention's N grow with the pixel count, not the object count."""
    strides, size = [], resolution
    for _ in range(num_layers):
        halve = size >= AUTO_STRIDE_FROM
        strides.append(2 if halve else 1)
        size = (size + 1) // 2 if halve else size
    return tuple(strides)


class CNNEncoder(nn.Module):
    """Stride-1 convolutions keep one feature per pixel; then position embedding, LayerNorm and MLP.

    `strides` (one per layer, default all 1) lets a layer downsample, as the official set-prediction
    encoder does: fewer features for Slot Attention to attend over; the position embedding follows the
    feature map's size.
    """

    def __init__(self, channels: int = 64, num_layers: int = 4, kernel_size: int = 5, in_channels: int = 3,
                 strides: tuple[int, ...] | list[int] | None = None) -> None:
        super().__init__()
        strides = tuple(strides) if strides is not None else (1,) * num_layers
        if len(strides) != num_layers or any(s < 1 for s in strides):
            raise ValueError(f"strides must hold {num_layers} integers >= 1 (one per layer), got {list(strides)}")
        layers: list[nn.Module] = []
        for index in range(num_layers):
            layers += [
                nn.Conv2d(in_channels if index == 0 else channels, channels, kernel_size, stride=strides[index],
                          padding=kernel_size // 2),
                nn.ReLU(),
            ]
        self.convs = nn.Sequential(*layers)
        self.strides, self.kernel_size = strides, kernel_size
        self.position = SoftPositionEmbed(channels)
        self.norm = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, channels), nn.ReLU(), nn.Linear(channels, channels))
        self.out_dim = channels

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the output feature grid for an image of that size."""
        pad = self.kernel_size // 2
        for stride in self.strides:
            height = (height + 2 * pad - self.kernel_size) // stride + 1
            width = (width + 2 * pad - self.kernel_size) // stride + 1
        return height, width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] -> feature set [B, H'*W', C] (H' = H, W' = W without strides)."""
        feature_map = self.convs(images)
        features = rearrange(feature_map, "b c h w -> b (h w) c")
        features = features + self.position(feature_map.shape[-2], feature_map.shape[-1], images.device)
        return self.mlp(self.norm(features))


class BackboneEncoder(nn.Module):
    """A pretrained backbone's tokens -> the feature set Slot Attention attends to (LayerNorm + MLP, as
    after the CNN). A CNN's feature map also gets our soft position embedding, since convolutions keep no
    absolute position; a ViT's tokens already carry its own position embedding.

    `encode` also returns the raw tokens: DINOSAUR reconstructs them.
    """

    def __init__(self, backbone: nn.Module, channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        dim = backbone.out_dim
        self.position = None if backbone.is_vit else SoftPositionEmbed(dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, channels), nn.ReLU(), nn.Linear(channels, channels))
        self.out_dim = channels

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the token grid: the backbone resizes every image to its own input size, so the
        grid is the same whatever the image size."""
        return tuple(self.backbone.grid)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [B, 3, H, W] in [-1, 1] -> (backbone tokens [B, N, C_backbone], features [B, N, channels])."""
        tokens = self.backbone(images)
        features = tokens
        if self.position is not None:
            features = features + self.position(*self.backbone.grid, images.device).to(tokens.dtype)
        return tokens, self.mlp(self.norm(features))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)[1]


class ColourValues(nn.Linear):
    """The input pixels pooled to the feature grid and linearly mapped to value vectors [B, N, D], which Slot
    Attention adds to its values: the slots read colour directly (random ReLU convolutions all but erase it),
    while the keys, and so how slots bind, stay the encoder's.

    A `Linear` itself rather than a module holding one, so its parameters keep the names `colour_values.weight`
    and `colour_values.bias` that checkpoints have."""

    def __init__(self, value_dim: int) -> None:
        super().__init__(3, value_dim)

    def forward(self, images: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:
        """Images [B, 3, H, W] -> values [B, h*w, D] on the (h, w) feature grid."""
        pooled = F.adaptive_avg_pool2d(images, grid_size)  # [B, 3, h, w]
        return super().forward(rearrange(pooled, "b c h w -> b (h w) c"))
