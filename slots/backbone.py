"""A timm model as the image encoder: images in [-1, 1] -> a set of feature tokens on a grid.

CNNs (ResNet-style) give the feature map of one stage (timm's `forward_intermediates`, the same maps as
`features_only=True, out_indices=(i,)`, but the model keeps its own parameter names, so a state dict saved
from `timm.create_model(name, pretrained=True)` loads strictly); ViTs give `forward_features` with the
prefix (class / register) tokens dropped. Layers after the used stage and the classifier head are removed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from slots.backbone_weights import BackboneError, load_backbone_weights


def create_timm_model(name: str) -> nn.Module:
    """timm's model with random weights; weights only ever come from a local file (see backbone_weights)."""
    import timm

    try:
        return timm.create_model(name, pretrained=False)
    except RuntimeError as error:  # timm: "Unknown model (...)"
        raise BackboneError(f"backbone.name '{name}': {error}; see timm.list_models()") from None


class TimmBackbone(nn.Module):
    """Resize, normalise as the backbone was trained, and return tokens [B, N, C] on a fixed grid.

    `image_size` is the square size the backbone sees (images are resized to it, bilinear with
    antialiasing); a ViT's position embedding is resampled to that size, which must be a multiple of the
    patch size. With `frozen=True` the parameters get no gradient, the forward pass builds no graph, and the
    module stays in eval mode (batch-norm statistics and dropout fixed) even when its parent trains.
    """

    def __init__(self, name: str, image_size: int, weights: str | None = None, frozen: bool = True,
                 feature_index: int | None = None) -> None:
        super().__init__()
        model = create_timm_model(name)
        if weights is not None:
            load_backbone_weights(model, weights, name)
        self.name, self.image_size, self.frozen = name, image_size, frozen
        self.is_vit = hasattr(model, "num_prefix_tokens")
        if self.is_vit:
            self.feature_index = None
            self._adapt_vit(model, feature_index)
        else:
            self.feature_index = self._adapt_cnn(model, feature_index)
        self.model = model
        config = model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1), persistent=False)
        if frozen:
            self.requires_grad_(False)
        self.model.eval()  # the probe must not touch batch-norm statistics
        with torch.no_grad():
            probe = self.tokens_and_grid(torch.zeros(1, 3, image_size, image_size))
        self.grid: tuple[int, int] = probe[1]
        self.out_dim: int = probe[0].shape[-1]
        self.train()

    def _adapt_vit(self, model: nn.Module, feature_index: int | None) -> None:
        if feature_index is not None:
            raise BackboneError(f"backbone.feature_index applies to CNN backbones; the ViT '{self.name}' gives "
                                "its last block's tokens: leave it unset")
        patch = tuple(model.patch_embed.patch_size)
        if self.image_size % patch[0] or self.image_size % patch[1]:
            raise BackboneError(f"backbone.image_size {self.image_size} is not a multiple of the patch size "
                                f"{patch[0]} of '{self.name}'")
        if tuple(model.patch_embed.img_size) != (self.image_size, self.image_size):
            if not hasattr(model, "set_input_size"):
                raise BackboneError(f"'{self.name}' cannot change its input size: set backbone.image_size="
                                    f"{model.patch_embed.img_size[0]}")
            model.set_input_size(img_size=(self.image_size, self.image_size))
        if hasattr(model, "prune_intermediate_layers"):
            model.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)  # drop the head only
        else:
            model.reset_classifier(0)

    def _adapt_cnn(self, model: nn.Module, feature_index: int | None) -> int:
        if not hasattr(model, "forward_intermediates"):
            raise BackboneError(f"'{self.name}' has no forward_intermediates in this timm version: pick another "
                                "backbone (ResNet, ConvNeXt, EfficientNet, RegNet, ... have it)")
        stages = len(model.feature_info)
        index = stages - 1 if feature_index is None else feature_index
        if not 0 <= index < stages:
            raise BackboneError(f"backbone.feature_index must be in 0..{stages - 1} for '{self.name}' (strides "
                                f"{[info['reduction'] for info in model.feature_info]}), got {feature_index}")
        model.prune_intermediate_layers(indices=[index], prune_head=True)
        return index

    def train(self, mode: bool = True) -> TimmBackbone:
        """A frozen backbone never leaves eval mode."""
        return super().train(mode and not self.frozen)

    def tokens_and_grid(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Images [B, 3, H, W] in [-1, 1] -> (tokens [B, h*w, C], (h, w))."""
        if tuple(images.shape[-2:]) != (self.image_size, self.image_size):
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False, antialias=True)
        inputs = ((images + 1) / 2 - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.is_vit:
                tokens = self.model.forward_features(inputs)[:, self.model.num_prefix_tokens:]
                grid = tuple(self.model.patch_embed.grid_size)
            else:
                feature_map = self.model.forward_intermediates(inputs, indices=[self.feature_index],
                                                               intermediates_only=True)[0]
                tokens = rearrange(feature_map, "b c h w -> b (h w) c")
                grid = tuple(feature_map.shape[-2:])
        if tokens.shape[1] != grid[0] * grid[1]:
            raise BackboneError(f"'{self.name}' returned {tokens.shape[1]} tokens after dropping "
                                f"{self.model.num_prefix_tokens} prefix tokens, not a {grid[0]}x{grid[1]} grid")
        return tokens, grid

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> tokens [B, N, C] on the grid `self.grid`."""
        return self.tokens_and_grid(images)[0]
