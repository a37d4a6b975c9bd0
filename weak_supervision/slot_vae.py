"""Slot Attention with a Gaussian latent per slot: the model the per-object weak objective trains.

Each slot is mapped to a diagonal Gaussian posterior q(z_k | x) of `latent_dim` dimensions and the per-slot
spatial-broadcast decoder renders RGB + alpha from a sample z_k. Everything else is the autoencoder's, with
all of its discovery options: the masks can start from the attention (`mask_prior`), the slots can read
colour (`colour_values`), attend in and be rendered in their own frames (`invariant_attention`,
`slot_frames`), and duplicates can be merged at evaluation by the wrapper its builder attaches
(`slots.build.with_duplicate_merging`). With slot frames a slot's position and scale come from its attention,
not from its latent, so its representation (what the per-object metrics score) is the posterior mean together
with that frame, just as dlib scores a VAE's mean.
Slot Attention can start from given slots and frames, which is how the two frames of a pair are put in
correspondence (see `weak_supervision.slot_pairs`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from slots.build import autoencoder_parts
from slots.frames import SlotFrames
from slots.glimpse import SlotGlimpse
from slots.model import SlotAutoencoder, SlotAutoencoderOutput
from slots.orientation_search import ownership_maps
from slots.set_prediction import attention_geometry
from slots.windows import PixelWindows
from weak_supervision.outline import OutlineHead, canonical_masks

#: what the orientation search scores each candidate angle by: the decoder's rendering of the slot's pixels
#: (`slots.orientation_search.slot_scores`) or the outline head's drawing of its outline (`outline_scores`)
ORIENTATION_SCORES = ("render", "outline")


@dataclass
class SlotVAEOutput(SlotAutoencoderOutput):
    """The autoencoder's fields (so every discovery evaluation reads it; `slots` holds the posterior means,
    the per-object representation) plus each slot's posterior and Slot Attention state."""

    mu: torch.Tensor | None = None  # [B, K, Z]
    logvar: torch.Tensor | None = None  # [B, K, Z]
    slot_states: torch.Tensor | None = None  # [B, K, D]: Slot Attention's output, what frame 1 may start from


class SlotVAE(SlotAutoencoder):
    """Encoder -> Slot Attention -> per-slot Gaussian latent -> per-slot broadcast decoder.

    The autoencoder's parts, built from the model options (`slots.build.autoencoder_parts`, with a decoder
    that reads the latent), plus `latent_dim` and the posterior head. Duplicate merging is not an option of
    the model: whoever builds it wraps it from outside (`slots.build.with_duplicate_merging`), as for the
    autoencoder. `num_slots`, `num_iterations` and the starting slots are call arguments, so the test-time
    slot sweep and the frame-pair correspondence use the same module as training.
    """

    def __init__(self, latent_dim: int = 10, initial_logvar: float = -4.0, glimpse_size: int = 0,
                 outline_size: int = 0, outline_input: bool = False, orientation_score: str = "render",
                 **model_options) -> None:
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if orientation_score not in ORIENTATION_SCORES:
            raise ValueError(f"orientation_score must be one of {', '.join(ORIENTATION_SCORES)}, got "
                             f"{orientation_score!r}")
        if orientation_score == "outline" and not (outline_size and outline_input):
            raise ValueError("orientation_score 'outline' scores the outline head on the slot's outline: it needs "
                             "outline_size and outline_input")
        super().__init__(**autoencoder_parts(**model_options, decoder_input_dim=latent_dim))
        self.latent_dim = latent_dim
        slot_dim = self.slot_init.slot_dim
        # A slot is a weighted mean of features, which keeps colour but little of an object's outline; a
        # glimpse (the pixels and the slot's attention around its centroid, slots/glimpse.py) lets the
        # posterior read shape too.
        self.glimpse = SlotGlimpse(glimpse_size, out_dim=slot_dim) if glimpse_size else None
        # or (cheaper) the slot's attention resampled in its own frame, the outline head's grid
        if outline_input and not outline_size:
            raise ValueError("outline_input reads the slot's attention on the outline grid: set outline_size")
        self.outline_input = outline_input
        head_in = slot_dim * (2 if glimpse_size else 1) + (outline_size**2 if outline_input else 0)
        self.to_posterior = nn.Sequential(nn.LayerNorm(head_in), nn.Linear(head_in, 2 * latent_dim))
        # draws each slot's outline in its own frame from its latent (weak_supervision.outline)
        self.outline_head = OutlineHead(latent_dim, outline_size) if outline_size else None
        self.orientation_score = orientation_score
        self._start_with_small_variance(initial_logvar)

    @torch.no_grad()
    def _start_with_small_variance(self, initial_logvar: float) -> None:
        """Posterior std starts at exp(initial_logvar / 2) instead of ~1: with unit noise on latents of
        scale ~0.5 the decoder cannot learn to reconstruct, and a slot VAE that cannot reconstruct never
        binds objects. The KL term raises the variances where they carry no information."""
        head = self.to_posterior[1]
        head.weight[self.latent_dim:].mul_(0.1)
        head.bias[self.latent_dim:].fill_(initial_logvar)

    def infer_slots(self, images: torch.Tensor, num_slots: int | None = None, num_iterations: int | None = None,
                    generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and attend: (slot states [B, K, D], attention [B, K, N])."""
        return self.attend(self.encode(images), num_slots, num_iterations, generator, initial_slots)

    def posterior(self, slot_states: torch.Tensor, images: torch.Tensor | None = None,
                  attention: torch.Tensor | None = None, angles: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each [B, K, Z]; a model with a glimpse also reads the images [B, 3, H, W] around each
        slot's attention [B, K, N], one with `outline_input` that attention resampled in the slot's frame
        (turned by `angles` [B, K] when given: the orientation search's, so the posterior reads each object
        upright)."""
        inputs = slot_states
        if self.glimpse is not None:
            if images is None or attention is None:
                raise ValueError("this slot VAE reads a glimpse of each slot: pass the images and the attention")
            grid = self.feature_grid(images.shape[-2:])
            centres = attention_geometry(attention, *grid)[..., 1:3]
            inputs = torch.cat([slot_states, self.glimpse(images, attention, centres, grid)], dim=-1)
        if self.outline_input:
            if attention is None:
                raise ValueError("this slot VAE reads each slot's attention in its own frame: pass the attention")
            grid = self.feature_grid(self.resolution)
            maps = rearrange(attention, "b k (h w) -> b k h w", h=grid[0], w=grid[1])
            frames = self.attention_frames(attention, self.resolution)
            frames.angles = angles
            outline = canonical_masks(maps, frames, self.outline_head.size)
            inputs = torch.cat([inputs, rearrange(outline, "b k h w -> b k (h w)")], dim=-1)
        mu, logvar = self.to_posterior(inputs).chunk(2, dim=-1)
        return mu, logvar

    def choose_angles(self, slot_states: torch.Tensor, attention: torch.Tensor, images: torch.Tensor
                      ) -> torch.Tensor | None:
        """Each slot's angle [B, K] from the orientation search (None without one): every candidate angle turns
        the slot's frame both for the posterior (its outline input) and for the decoder, and the slot keeps the
        angle whose rendering of the posterior mean draws its pixels best."""
        if self.orientation_search is None:
            return None
        frames = self.frames(attention, self.resolution)
        positions, scales = frames.positions.detach(), frames.scales.detach()
        states, attention = slot_states.detach(), attention.detach()

        def render(angles: torch.Tensor, window: PixelWindows | None) -> torch.Tensor:
            mu = self.posterior(states, images, attention, angles)[0]
            return self.decoder(mu, SlotFrames(positions, scales, angles), window)

        ownership = ownership_maps(attention, self.feature_grid(self.resolution), self.resolution)
        if self.orientation_score == "outline":
            return self.orientation_search.best(
                lambda angles: self.outline_scores(states, images, attention, ownership,
                                                   SlotFrames(positions, scales, angles)),
                attention.shape[:2], images.device)
        return self.orientation_search(render, images, ownership, positions)

    def outline_scores(self, slot_states: torch.Tensor, images: torch.Tensor, attention: torch.Tensor,
                       ownership: torch.Tensor, frames: SlotFrames) -> torch.Tensor:
        """[B, K]: how badly the outline head draws, from the posterior mean of the slot's outline read in the
        turned `frames`, the pixels the slot owns ([B, K, H, W]) read in those frames (binary cross-entropy
        per outline cell, averaged): the seed posts' criterion, the orientation under which the model
        reconstructs the object's shape best, on the part of the model that codes shape. An 8x8 outline costs
        next to nothing against a rendering."""
        mu = self.posterior(slot_states, images, attention, frames.angles)[0]
        targets = canonical_masks(ownership, frames, self.outline_head.size).clamp(0, 1)
        return F.binary_cross_entropy_with_logits(self.outline_head(mu).float(), targets.float(),
                                                  reduction="none").mean(dim=(2, 3))

    def render(self, latents: torch.Tensor, attention: torch.Tensor, angles: torch.Tensor | None = None
               ) -> SlotAutoencoderOutput:
        """Latents [B, K, Z] with the attention [B, K, N] they came from (frames and mask prior) and, with an
        orientation search, each slot's angle [B, K] -> the composited image, masks (softmax of alphas over
        slots) and per-slot RGB."""
        return self.decode_slots(latents, attention, self.resolution, angles=angles)

    def forward(self, images: torch.Tensor, num_slots: int | None = None, num_iterations: int | None = None,
                generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None
                ) -> SlotVAEOutput:
        """Deterministic pass decoding the posterior means: what evaluation and pictures use."""
        states, attention = self.infer_slots(images, num_slots, num_iterations, generator, initial_slots)
        angles = self.choose_angles(states, attention, images)
        mu, logvar = self.posterior(states, images, attention, angles)
        out = self.render(mu, attention, angles)
        return SlotVAEOutput(out.reconstruction, out.masks, out.slot_rgb, mu, attention, out.frames,
                             mu=mu, logvar=logvar, slot_states=states)
