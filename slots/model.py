"""The Slot Attention autoencoder for unsupervised object discovery, put together from parts.

The encoder, slot initialiser, grouping (Slot Attention, or invariant slot attention), decoder and the
optional parts (mask prior, colour values, slot frames) are modules built outside and passed in;
`slots.build` is the one place that turns the model options of a run into parts. The model only wires them,
so a part can be swapped without touching it (and without a switch for it in here).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slots.encoder import ColourValues
from slots.frames import AttentionFrames, SlotFrames, frames_from_attention
from slots.mask_prior import log_attention_map  # noqa: F401  (re-exported: the prior `composite` is given)
from slots.orientation_search import SlotOrientationSearch, ownership_maps
from slots.protocol import Grouping, SlotDecoder, SlotEncoder, SlotInitialiser


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
    # [B, K, H, W] before duplicate slots were merged (`slots.duplicates.MergeDuplicates`, outside training)
    unmerged_masks: torch.Tensor | None = None
    # [B, K, H, W]: the masks (as logits over slots) a decoder with a silhouette head draws from the slots alone
    silhouette_logits: torch.Tensor | None = None


class SlotAutoencoder(nn.Module):
    """Encoder -> Slot Attention -> per-slot decoder -> alpha-composited image (Locatello et al. 2020).

    Parts (`slots.protocol`): `encoder` (images -> features on a grid), `slot_init` (draws the starting slots;
    its `num_slots` is the training slot count), `slot_attention` (the grouping), `decoder` (slots -> RGB and
    alpha logit per slot). Optional parts, each None to leave it out:

    - `alpha_prior` (`slots.mask_prior`): added, times `mask_prior_weight`, to the decoder's alpha logits, so
      the masks start from Slot Attention's own segmentation;
    - `colour_values` (`slots.encoder.ColourValues`): the pixels under each feature added to the values;
    - `slot_frames` (`slots.frames.AttentionFrames`): the frames a decoder with relative positions renders in;
    - `orientation_search` (`slots.orientation_search`): turns each slot's frame to the angle under which the
      decoder draws the slot's pixels best, chosen per call among a grid of angles (needs `slot_frames`).

    `num_slots` and `num_iterations` default to the training values but can be changed per call, which is how
    the test-time slot sweep works. Duplicate merging at evaluation wraps the model from outside
    (`slots.duplicates.MergeDuplicates`). The attribute names are the state dict's key prefixes: checkpoints
    written before the model was built from parts load unchanged.
    """

    def __init__(
        self,
        encoder: SlotEncoder,
        slot_init: SlotInitialiser,
        slot_attention: Grouping,
        decoder: SlotDecoder,
        resolution: tuple[int, int],
        num_iterations: int = 3,
        *,
        alpha_prior: nn.Module | None = None,
        colour_values: ColourValues | None = None,
        slot_frames: AttentionFrames | None = None,
        orientation_search: SlotOrientationSearch | None = None,
    ) -> None:
        super().__init__()
        if orientation_search is not None and slot_frames is None:
            raise ValueError("an orientation search turns each slot's frame: the model needs slot_frames")
        relative = getattr(decoder, "relative_positions", None)
        if relative is not None and relative != (slot_frames is not None):
            raise ValueError("a decoder renders in slot frames exactly when the model has slot_frames: "
                             f"decoder relative_positions={relative}, slot_frames={slot_frames}")
        self.resolution = tuple(resolution)
        self.num_iterations = num_iterations
        self.encoder = encoder
        self.slot_init = slot_init
        self.slot_attention = slot_attention
        self.decoder = decoder
        self.colour_values = colour_values
        self.slot_frames = slot_frames
        self.orientation_search = orientation_search
        self.alpha_prior = alpha_prior
        if alpha_prior is not None:  # a buffer, so a run that fades the prior out (weak_slots) saves how far
            self.register_buffer("mask_prior_weight", torch.ones(()))

    @property
    def num_slots(self) -> int:
        """The training slot count: the initialiser's."""
        return self.slot_init.num_slots

    @property
    def mask_prior(self) -> str:
        """The model.mask_prior option this model was built with ("none" without a prior)."""
        if self.alpha_prior is None:
            return "none"
        return getattr(self.alpha_prior, "option", type(self.alpha_prior).__name__)

    @property
    def silhouette_head(self) -> bool:
        """Whether the decoder draws a fifth channel: each slot's mask from the slot alone, which the rendering
        never reads (the alpha channel need not draw silhouettes when the attention supplies them)."""
        return self.decoder.out_channels > 4

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
        # features [B, N, C] on the (h, w) grid, colour values [B, N, D] or None
        encoded = self.encode(images)
        # slots [B, K, D], attention [B, K, N] (softmax over slots)
        slots, attention = self.attend(encoded, num_slots, num_iterations, generator, initial_slots)
        # reconstruction [B, 3, H, W], masks [B, K, H, W], slot RGB [B, K, 3, H, W]
        return self.decode_slots(slots, attention, images.shape[-2:], images=images)

    def encode(self, images: torch.Tensor) -> EncodedImages:
        """Images [B, 3, H, W] -> what Slot Attention reads (computed once when a frame is attended twice)."""
        check_images(images, self.resolution)
        features = self.encoder(images)  # [B, N, C]
        values = self.pixel_values(images)  # [B, N, D] or None
        return EncodedImages(features, values, tuple(images.shape[-2:]))

    def attend(self, encoded: EncodedImages, num_slots: int | None = None, num_iterations: int | None = None,
               generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None,
               initial_frames: SlotFrames | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(slots [B, K, D], attention [B, K, N]) from `initial_slots` (and, with invariant attention,
        `initial_frames`) when given, else from fresh draws of the slot initialiser."""
        iterations = self.num_iterations if num_iterations is None else num_iterations
        if initial_slots is None:
            initial_slots = self.slot_init(len(encoded), num_slots, generator)  # [B, K, D]
        return self.bind(encoded, initial_slots, iterations, generator, initial_frames)

    def bind(self, encoded: EncodedImages, initial_slots: torch.Tensor, num_iterations: int,
             generator: torch.Generator | None = None, initial_frames: SlotFrames | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The grouping from `initial_slots` [B, K, D]: (slots [B, K, D], attention [B, K, N]).
        `initial_frames` (invariant attention only) replaces the drawn starting positions and scales, which is
        how a slot restarted on another frame keeps its place (`attention_frames` of its earlier attention)."""
        slot_dim = self.slot_init.slot_dim
        if initial_slots.ndim != 3 or initial_slots.shape[0] != len(encoded) or initial_slots.shape[-1] != slot_dim:
            raise ValueError(f"initial slots must have shape [{len(encoded)}, K, {slot_dim}], "
                             f"got {list(initial_slots.shape)}")
        return self.slot_attention(encoded.features, initial_slots, num_iterations,
                                   grid_size=self.feature_grid(encoded.image_size), generator=generator,
                                   extra_values=encoded.values, initial_frames=initial_frames)

    def decode_slots(self, slots: torch.Tensor, attention: torch.Tensor, image_size: tuple[int, int],
                     images: torch.Tensor | None = None, angles: torch.Tensor | None = None
                     ) -> SlotAutoencoderOutput:
        """Slots [B, K, D] (a slot VAE's latents [B, K, Z]) and their attention [B, K, N] -> decoded,
        alpha-composited output; frames and the mask prior come from the attention. Each frame is turned by
        `angles` [B, K] when given, else, with an orientation search and the `images` [B, 3, H, W] the slots
        came from, by the best angle the search finds."""
        image_size = tuple(image_size)
        frames = self.frames(attention, image_size)  # positions, scales [B, K, 2], or None: image coordinates
        if angles is not None:
            frames.angles = angles
        elif self.orientation_search is not None and images is not None:
            frames.angles = self.orient(slots, frames, attention, images)  # [B, K], no gradient
        prior = self.prior_logits(attention, image_size)  # [B, K, H, W] or None
        decoded = self.decoder(slots, frames)  # [B, K, 4 (+1), H, W]: RGB, alpha logit (, silhouette logit)
        # [B, 3, H, W], [B, K, H, W] (softmax over slots), [B, K, 3, H, W]
        reconstruction, masks, slot_rgb = composite(decoded[:, :, :4], prior)
        silhouettes = decoded[:, :, 4] if self.silhouette_head else None  # [B, K, H, W] or None
        return SlotAutoencoderOutput(reconstruction, masks, slot_rgb, slots, attention, frames,
                                     silhouette_logits=silhouettes)

    def orient(self, slots: torch.Tensor, frames: SlotFrames, attention: torch.Tensor, images: torch.Tensor
               ) -> torch.Tensor:
        """Each slot's angle [B, K] from the orientation search: every candidate rendered from the detached
        slots and frames, scored on the pixels the slot's attention owns."""
        ownership = ownership_maps(attention.detach(), self.feature_grid(images.shape[-2:]), images.shape[-2:])
        slots, positions, scales = slots.detach(), frames.positions.detach(), frames.scales.detach()
        return self.orientation_search(
            lambda angles, window: self.decoder(slots, SlotFrames(positions, scales, angles), window),
            images, ownership, positions)

    def prior_logits(self, attention: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor | None:
        """What the alpha logits [B, K, H, W] are added to before the softmax over slots (None: nothing)."""
        if self.alpha_prior is None:
            return None
        return self.mask_prior_weight * self.alpha_prior(attention, self.feature_grid(image_size), image_size)

    def pixel_values(self, images: torch.Tensor) -> torch.Tensor | None:
        """The input pixels pooled to the feature grid and mapped to value vectors [B, N, D] (or None)."""
        if self.colour_values is None:
            return None
        return self.colour_values(images, self.feature_grid(images.shape[-2:]))

    def feature_grid(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the feature grid the slots attend over."""
        return tuple(self.encoder.grid_size(*image_size))

    def attention_frames(self, attention: torch.Tensor, image_size: tuple[int, int]) -> SlotFrames:
        """Each slot's position and scale from its attention [B, K, N] (isotropic when the model renders in
        isotropic frames): where a slot is, whether or not the decoder renders in frames."""
        grid = self.feature_grid(image_size)
        if self.slot_frames is None:
            return frames_from_attention(attention, grid)
        return self.slot_frames.measure(attention, grid)

    def frames(self, attention: torch.Tensor, image_size: tuple[int, int]) -> SlotFrames | None:
        """Each slot's frame to render in, from its attention over the feature grid (None when rendering in
        image coordinates)."""
        if self.slot_frames is None:
            return None
        return self.slot_frames(attention, self.feature_grid(image_size))
