"""Slot Attention with a Gaussian latent per slot: the model the per-object weak objective trains.

Each slot is mapped to a diagonal Gaussian posterior q(z_k | x) of `latent_dim` dimensions and the per-slot
spatial-broadcast decoder renders RGB + alpha from a sample z_k. The posterior mean is the slot's
representation (the one the per-object disentanglement metrics score), just as dlib scores a VAE's mean.
Slot Attention can start from given slots (`initial_slots`), which is how the two frames of a pair are put
in correspondence (see `weak_supervision.slot_pairs`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from slots.model import SlotAutoencoder, check_images, composite


@dataclass
class SlotVAEOutput:
    """The autoencoder's fields (so every discovery evaluation reads it) plus each slot's posterior."""

    reconstruction: torch.Tensor  # [B, 3, H, W]
    masks: torch.Tensor  # [B, K, H, W], sum to 1 over slots
    slot_rgb: torch.Tensor  # [B, K, 3, H, W]
    slots: torch.Tensor  # [B, K, Z]: the posterior means, the per-object representation
    attention: torch.Tensor  # [B, K, H*W]
    mu: torch.Tensor  # [B, K, Z]
    logvar: torch.Tensor  # [B, K, Z]
    slot_states: torch.Tensor  # [B, K, D]: Slot Attention's output, what frame 1 may start from


@dataclass
class Rendering:
    reconstruction: torch.Tensor
    masks: torch.Tensor
    slot_rgb: torch.Tensor


UNSUPPORTED_OPTIONS = {"slot_frames": "none", "invariant_attention": "none", "colour_values": False,
                       "mask_prior": "none", "merge_duplicates": None}


class SlotVAE(SlotAutoencoder):
    """Encoder -> Slot Attention -> per-slot Gaussian latent -> per-slot broadcast decoder.

    The autoencoder's parts and arguments, plus `latent_dim` and the posterior head; `num_slots`,
    `num_iterations` and the starting slots are call arguments, so the test-time slot sweep and the
    frame-pair correspondence use the same module as training.
    """

    def __init__(self, latent_dim: int = 10, initial_logvar: float = -4.0, **autoencoder_kwargs) -> None:
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        unsupported = {key: autoencoder_kwargs[key] for key, default in UNSUPPORTED_OPTIONS.items()
                       if autoencoder_kwargs.get(key, default) != default}
        if unsupported:
            raise ValueError(f"the slot VAE does not support {unsupported} (it decodes latents in image "
                             "coordinates and attends with plain Slot Attention)")
        super().__init__(**autoencoder_kwargs, decoder_input_dim=latent_dim)
        self.latent_dim = latent_dim
        slot_dim = self.slot_init.mu.shape[-1]
        self.to_posterior = nn.Sequential(nn.LayerNorm(slot_dim), nn.Linear(slot_dim, 2 * latent_dim))
        self._start_with_small_variance(initial_logvar)

    @torch.no_grad()
    def _start_with_small_variance(self, initial_logvar: float) -> None:
        """Posterior std starts at exp(initial_logvar / 2) instead of ~1: with unit noise on latents of
        scale ~0.5 the decoder cannot learn to reconstruct, and a slot VAE that cannot reconstruct never
        binds objects. The KL term raises the variances where they carry no information."""
        head = self.to_posterior[1]
        head.weight[self.latent_dim:].mul_(0.1)
        head.bias[self.latent_dim:].fill_(initial_logvar)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The encoder's feature set [B, N, C]; computed once when a frame is attended to twice."""
        check_images(images, self.resolution)
        return self.encoder(images)

    def attend(self, features: torch.Tensor, num_slots: int | None = None, num_iterations: int | None = None,
               generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(slot states [B, K, D], attention [B, K, N]); starts from `initial_slots` when given, else from
        fresh draws of the learned Gaussian."""
        iterations = self.num_iterations if num_iterations is None else num_iterations
        if initial_slots is None:
            initial_slots = self.slot_init(features.shape[0], self.num_slots if num_slots is None else num_slots,
                                           generator)
        elif initial_slots.ndim != 3 or initial_slots.shape[0] != features.shape[0]:
            raise ValueError(f"initial_slots must have shape [{features.shape[0]}, K, D], "
                             f"got {list(initial_slots.shape)}")
        return self.slot_attention(features, initial_slots, iterations)

    def infer_slots(self, images: torch.Tensor, num_slots: int | None = None, num_iterations: int | None = None,
                    generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and attend: (slot states [B, K, D], attention [B, K, N])."""
        return self.attend(self.features(images), num_slots, num_iterations, generator, initial_slots)

    def posterior(self, slot_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each [B, K, Z]."""
        mu, logvar = self.to_posterior(slot_states).chunk(2, dim=-1)
        return mu, logvar

    def render(self, latents: torch.Tensor) -> Rendering:
        """Latents [B, K, Z] -> composited image, masks (softmax of alphas over slots) and per-slot RGB."""
        return Rendering(*composite(self.decoder(latents)))

    def forward(self, images: torch.Tensor, num_slots: int | None = None, num_iterations: int | None = None,
                generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None
                ) -> SlotVAEOutput:
        """Deterministic pass decoding the posterior means: what evaluation and pictures use."""
        states, attention = self.infer_slots(images, num_slots, num_iterations, generator, initial_slots)
        mu, logvar = self.posterior(states)
        rendering = self.render(mu)
        return SlotVAEOutput(rendering.reconstruction, rendering.masks, rendering.slot_rgb, mu, attention, mu,
                             logvar, states)
