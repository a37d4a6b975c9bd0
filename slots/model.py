"""The Slot Attention autoencoder for unsupervised object discovery."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from slots.attention import SlotAttention
from slots.decoder import SpatialBroadcastDecoder
from slots.duplicates import merge_duplicate_masks
from slots.encoder import CNNEncoder
from slots.frames import InvariantSlotAttention, SlotFrames, frames_from_attention
from slots.init import GaussianSlotInit


SLOT_FRAMES = ("none", "translation", "translation_scale", "translation_isotropic")
# keys in slot frames: the paper's MLP encoding (slots start at the centre), or the cheap quadratic bias with
# slots starting at random positions, on the grid relative to each slot's position and scale, or to its
# position only (distances in image units, so a slot spread over two distant objects is not excused)
INVARIANT_ATTENTION = {"none": {}, "mlp": dict(key_encoding="mlp", initial_scale=0.1),
                       "quadratic": dict(key_encoding="quadratic", random_positions=True, initial_scale=0.2),
                       "quadratic_translation": dict(key_encoding="quadratic", random_positions=True,
                                                     initial_scale=0.2, scale_invariant=False)}
# what the decoder's alpha logits are added to before the softmax over slots
MASK_PRIORS = ("none", "attention")


def check_images(images: torch.Tensor, resolution: tuple[int, int]) -> None:
    """Refuse images a model was not built for, with the expected and the actual shape."""
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != tuple(resolution):
        raise ValueError(f"expected images of shape [B, 3, {resolution[0]}, {resolution[1]}], got {list(images.shape)}")


def composite(decoded: torch.Tensor, alpha_prior: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-slot decoder outputs [B, K, 4, H, W] -> (image [B, 3, H, W], masks [B, K, H, W], slot RGB):
    the alpha logits (plus `alpha_prior` [B, K, H, W] when given) compete over slots (softmax), and the
    image is the mask-weighted sum of slot RGB."""
    slot_rgb, alpha = decoded[:, :, :3], decoded[:, :, 3]
    masks = (alpha if alpha_prior is None else alpha + alpha_prior).softmax(dim=1)
    return (slot_rgb * masks.unsqueeze(2)).sum(dim=1), masks, slot_rgb


def log_attention_map(attention: torch.Tensor, grid_size: tuple[int, int], image_size: tuple[int, int],
                      eps: float = 1e-8) -> torch.Tensor:
    """Attention [B, K, N] over the feature grid -> its log [B, K, H, W] at image resolution (bilinear when
    the grid is coarser), the prior that `mask_prior="attention"` adds to the decoder's alpha logits."""
    log_attention = rearrange(torch.log(attention + eps), "b k (h w) -> b k h w", h=grid_size[0], w=grid_size[1])
    if tuple(grid_size) != tuple(image_size):
        log_attention = F.interpolate(log_attention, size=tuple(image_size), mode="bilinear", align_corners=False)
    return log_attention


@dataclass
class EncodedImages:
    """What Slot Attention reads from a batch of images: encoder features [B, N, C], the colour values
    [B, N, D] added to its values (or None) and the image size; sliceable along the batch, so a frame pair
    encoded in one pass can be attended to frame by frame."""

    features: torch.Tensor
    values: torch.Tensor | None
    image_size: tuple[int, int]

    def __getitem__(self, rows: slice) -> "EncodedImages":
        return EncodedImages(self.features[rows], None if self.values is None else self.values[rows],
                             self.image_size)

    def __len__(self) -> int:
        return self.features.shape[0]


@dataclass
class SlotAutoencoderOutput:
    """Everything a caller may want from one forward pass; masks sum to 1 over slots at every pixel."""

    reconstruction: torch.Tensor  # [B, 3, H, W]
    masks: torch.Tensor  # [B, K, H, W]
    slot_rgb: torch.Tensor  # [B, K, 3, H, W]
    slots: torch.Tensor  # [B, K, D]
    attention: torch.Tensor  # [B, K, H*W]
    frames: SlotFrames | None = None  # each slot's position and scale, when the decoder renders in them
    unmerged_masks: torch.Tensor | None = None  # [B, K, H, W] before duplicate slots were merged (if they were)
    # [B, K, H, W]: the masks (as logits over slots) a decoder with a silhouette head draws from the slots alone
    silhouette_logits: torch.Tensor | None = None


class SlotAutoencoder(nn.Module):
    """Encoder -> Slot Attention -> per-slot broadcast decoder -> alpha-composited image.

    `num_slots` and `num_iterations` default to the training values but can be changed per call,
    which is how the test-time slot sweep works. `encoder` replaces the CNN encoder (e.g. a
    `BackboneEncoder` around a timm model); the `encoder_*` sizes are then unused.

    `mask_prior="attention"` adds the log of each slot's attention to its alpha logits, so the masks start
    from Slot Attention's own per-pixel segmentation and the decoder refines it. The reconstruction error
    then reaches the attention (and through the keys the encoder) at every pixel: objects bind as soon as
    the features separate them, instead of after the decoder has learned to draw every shape from a slot
    vector, and mask edges are as sharp as the feature grid.

    `merge_duplicates=t` merges, outside training, slots whose masks have a cosine similarity above t
    (`slots.duplicates`): two slots that split one object's pixels are one object.
    """

    def __init__(
        self,
        resolution: tuple[int, int] = (32, 32),
        num_slots: int = 5,
        num_iterations: int = 3,
        slot_dim: int = 64,
        mlp_hidden_dim: int = 128,
        encoder_channels: int = 32,
        encoder_layers: int = 4,
        encoder_kernel: int = 5,
        encoder_strides: tuple[int, ...] | list[int] | None = None,
        decoder_channels: int = 32,
        decoder_layers: int = 3,
        decoder_kernel: int = 5,
        broadcast_size: int | None = None,
        implicit_grad: bool = True,
        slot_frames: str = "none",
        frame_scale_factor: float = 1.0,
        invariant_attention: str = "none",
        colour_values: bool = False,
        mask_prior: str = "none",
        merge_duplicates: float | None = None,
        encoder: nn.Module | None = None,
        decoder_input_dim: int | None = None,
        silhouette_head: bool = False,
    ) -> None:
        super().__init__()
        if num_slots < 1:
            raise ValueError(f"num_slots must be >= 1, got {num_slots}")
        if slot_frames not in SLOT_FRAMES:
            raise ValueError(f"slot_frames must be one of {SLOT_FRAMES}, got {slot_frames!r}")
        if mask_prior not in MASK_PRIORS:
            raise ValueError(f"mask_prior must be one of {MASK_PRIORS}, got {mask_prior!r}")
        self.mask_prior = mask_prior
        if mask_prior == "attention":  # a buffer, so a run that fades the prior out (weak_slots) saves how far
            self.register_buffer("mask_prior_weight", torch.ones(()))
        if merge_duplicates is not None and not 0 < merge_duplicates < 1:
            raise ValueError(f"merge_duplicates must be a cosine threshold in (0, 1) or None, got {merge_duplicates}")
        self.merge_duplicates = merge_duplicates
        self.slot_frames = slot_frames
        self.resolution = tuple(resolution)
        self.num_slots = num_slots
        self.num_iterations = num_iterations
        self.encoder = encoder if encoder is not None else CNNEncoder(
            encoder_channels, encoder_layers, encoder_kernel, strides=encoder_strides)
        self.slot_init = GaussianSlotInit(slot_dim)
        if invariant_attention not in INVARIANT_ATTENTION:
            raise ValueError(f"invariant_attention must be one of {tuple(INVARIANT_ATTENTION)}, "
                             f"got {invariant_attention!r}")
        self.slot_attention = (
            SlotAttention(self.encoder.out_dim, slot_dim, mlp_hidden_dim, implicit_grad=implicit_grad)
            if invariant_attention == "none" else
            InvariantSlotAttention(self.encoder.out_dim, slot_dim, mlp_hidden_dim, implicit_grad=implicit_grad,
                                   frame_scale_factor=frame_scale_factor, **INVARIANT_ATTENTION[invariant_attention]))
        self.decoder = SpatialBroadcastDecoder(  # a slot VAE decodes a latent of its own size, not the slot
            decoder_input_dim or slot_dim, self.resolution, decoder_channels, decoder_layers, decoder_kernel,
            broadcast_size, relative_positions=slot_frames != "none", frame_scale_factor=frame_scale_factor,
            out_channels=5 if silhouette_head else 4,
        )
        # a fifth decoder channel that draws each slot's mask from the slot alone (the alpha channel need not,
        # when the attention supplies the silhouettes); the rendering never reads it
        self.silhouette_head = silhouette_head
        # the pixels under each feature, linearly mapped into the values: the slots read colour directly
        self.colour_values = nn.Linear(3, slot_dim) if colour_values else None

    def forward(
        self,
        images: torch.Tensor,
        num_slots: int | None = None,
        num_iterations: int | None = None,
        generator: torch.Generator | None = None,
        initial_slots: torch.Tensor | None = None,
    ) -> SlotAutoencoderOutput:
        """Images [B, 3, H, W] in [-1, 1] -> reconstruction, masks and slots; `initial_slots` [B, K, D]
        replaces the sampled initialisation (then `num_slots` is ignored)."""
        slots, attention = self.attend(self.encode(images), num_slots, num_iterations, generator, initial_slots)
        return self.decode_slots(slots, attention, images.shape[-2:])

    def encode(self, images: torch.Tensor) -> EncodedImages:
        """Images [B, 3, H, W] -> what Slot Attention reads (computed once when a frame is attended twice)."""
        check_images(images, self.resolution)
        return EncodedImages(self.encoder(images), self.pixel_values(images), tuple(images.shape[-2:]))

    def attend(self, encoded: EncodedImages, num_slots: int | None = None, num_iterations: int | None = None,
               generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None,
               initial_frames: SlotFrames | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(slots [B, K, D], attention [B, K, N]) from `initial_slots` (and, with invariant attention,
        `initial_frames`) when given, else from fresh draws of the learned Gaussian."""
        iterations = self.num_iterations if num_iterations is None else num_iterations
        if initial_slots is None:
            initial_slots = self.slot_init(len(encoded), self.num_slots if num_slots is None else num_slots,
                                           generator)
        return self.bind(encoded, initial_slots, iterations, generator, initial_frames)

    def bind(self, encoded: EncodedImages, initial_slots: torch.Tensor, num_iterations: int,
             generator: torch.Generator | None = None, initial_frames: SlotFrames | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Slot Attention from `initial_slots` [B, K, D]: (slots [B, K, D], attention [B, K, N]).
        `initial_frames` (invariant attention only) replaces the drawn starting positions and scales, which is
        how a slot restarted on another frame keeps its place (`attention_frames` of its earlier attention)."""
        slot_dim = self.slot_init.mu.shape[-1]
        if initial_slots.ndim != 3 or initial_slots.shape[0] != len(encoded) or initial_slots.shape[-1] != slot_dim:
            raise ValueError(f"initial slots must have shape [{len(encoded)}, K, {slot_dim}], "
                             f"got {list(initial_slots.shape)}")
        if isinstance(self.slot_attention, InvariantSlotAttention):
            return self.slot_attention(encoded.features, initial_slots, num_iterations,
                                       grid_size=self.feature_grid(encoded.image_size), generator=generator,
                                       extra_values=encoded.values, initial_frames=initial_frames)
        return self.slot_attention(encoded.features, initial_slots, num_iterations, extra_values=encoded.values)

    def attention_frames(self, attention: torch.Tensor, image_size: tuple[int, int]) -> SlotFrames:
        """Each slot's position and scale from its attention [B, K, N]; with `slot_frames="translation_isotropic"`
        one scale for both axes (the geometric mean of the two), so that an object's aspect and the direction it
        is turned stay in the slot's own frame instead of its scales."""
        frames = frames_from_attention(attention, self.feature_grid(image_size))
        if self.slot_frames == "translation_isotropic":
            frames.scales = frames.scales.log().mean(dim=-1, keepdim=True).exp().expand_as(frames.scales)
        return frames

    def decode_slots(self, slots: torch.Tensor, attention: torch.Tensor, image_size: tuple[int, int]
                     ) -> SlotAutoencoderOutput:
        """Slots [B, K, D] (a slot VAE's latents [B, K, Z]) and their attention [B, K, N] -> decoded,
        alpha-composited output; frames and the mask prior come from the attention."""
        image_size = tuple(image_size)
        frames = self.frames(attention, image_size)
        prior = (self.mask_prior_weight * log_attention_map(attention, self.feature_grid(image_size), image_size)
                 if self.mask_prior == "attention" else None)
        decoded = self.decoder(slots, frames)
        reconstruction, masks, slot_rgb = composite(decoded[:, :, :4], prior)
        unmerged = None
        if self.merge_duplicates is not None and not self.training:
            unmerged, masks = masks, merge_duplicate_masks(masks, self.merge_duplicates)
            reconstruction = (slot_rgb * masks.unsqueeze(2)).sum(dim=1)
        return SlotAutoencoderOutput(reconstruction, masks, slot_rgb, slots, attention, frames, unmerged,
                                     decoded[:, :, 4] if self.silhouette_head else None)

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor | None:
        """The input pixels pooled to the feature grid and mapped to value vectors [B, N, D] (or None)."""
        if self.colour_values is None:
            return None
        pooled = F.adaptive_avg_pool2d(images, self.feature_grid(images.shape[-2:]))
        return self.colour_values(rearrange(pooled, "b c h w -> b (h w) c"))

    def feature_grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the feature grid the slots attend over."""
        if hasattr(self.encoder, "grid_size"):
            return tuple(self.encoder.grid_size(*image_size))
        return tuple(self.encoder.backbone.grid)

    def frames(self, attention: torch.Tensor, image_size: tuple[int, int]) -> SlotFrames | None:
        """Each slot's frame from its attention over the feature grid (None when rendering in image
        coordinates); "translation" keeps the position and fixes the scale at 1."""
        if self.slot_frames == "none":
            return None
        frames = self.attention_frames(attention, image_size)
        if self.slot_frames == "translation":
            frames.scales = torch.ones_like(frames.scales)
        return frames
