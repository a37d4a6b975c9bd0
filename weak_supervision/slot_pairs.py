"""The per-object weak objective: Ada-GVAE / Ada-ML-VAE sharing between matched slots of a frame pair.

Frame 1's slots are put in correspondence with frame 0's by starting Slot Attention on both frames from
frame 0's slots (slot k refines slot k; see `correspond`), optionally followed by Hungarian matching on the
posterior means, which repairs slots that swapped objects. Each matched slot pair then gets the same adaptive sharing as the
image-level methods (`weak_supervision.aggregation`, applied on [B, K, Z]).

One difference from the image-level rule is deliberate: in a multi-object pair most objects do not change
at all, and for such a slot pair the midpoint threshold would still split its (noise-level) divergences in
two and keep half the dimensions apart. A dimension whose divergence is below `share_floor` nats therefore
always counts as shared; with `share_floor=0` the rule is exactly the paper's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from metrics.matching import hungarian_match
from weak_supervision.aggregation import adaptive_share_mask, aggregate_pair, kl_per_dim
from weak_supervision.outline import canonical_masks, outline_loss
from slots.frames import SlotFrames
from weak_supervision.slot_vae import SlotVAE

PairMethod = Literal["ada_gvae", "ada_mlvae", "slot_vae"]
Correspondence = Literal["init", "init_hungarian", "hungarian"]
PAIR_METHODS = ("ada_gvae", "ada_mlvae", "slot_vae")
CORRESPONDENCES = ("init", "init_hungarian", "hungarian")


@dataclass(frozen=True)
class SlotPairSettings:
    """How a pair is trained: `slot_vae` ignores the pairing (both frames on their own, the baseline)."""

    method: PairMethod = "ada_gvae"
    beta: float = 1.0
    correspondence: Correspondence = "init"
    share_floor: float = 0.1  # nats; see the module docstring
    recon_sigma: float = 0.1  # std of the Gaussian likelihood of a pixel value in [-1, 1]
    silhouette_weight: float = 0.0  # see `silhouette_divergence`; needs a model with a mask prior
    outline_weight: float = 0.0  # weight of the outline head's loss (weak_supervision.outline); needs the head

    def __post_init__(self) -> None:
        if self.method not in PAIR_METHODS:
            raise ValueError(f"unknown slot pair method {self.method!r}; expected one of {PAIR_METHODS}")
        if self.correspondence not in CORRESPONDENCES:
            raise ValueError(f"unknown correspondence {self.correspondence!r}; expected one of {CORRESPONDENCES}")
        if (self.beta < 0 or self.share_floor < 0 or self.recon_sigma <= 0 or self.silhouette_weight < 0
                or self.outline_weight < 0):
            raise ValueError(f"need beta >= 0, share_floor >= 0, recon_sigma > 0, silhouette_weight >= 0, "
                             f"outline_weight >= 0; got {self.beta}, {self.share_floor}, {self.recon_sigma}, "
                             f"{self.silhouette_weight}, {self.outline_weight}")


def match_slots(mu0: torch.Tensor, mu1: torch.Tensor) -> torch.Tensor:
    """Permutation [B, K]: slot `perm[b, k]` of frame 1 is matched with slot k of frame 0 (least total
    squared distance between posterior means)."""
    if mu0.shape != mu1.shape or mu0.ndim != 3:
        raise ValueError(f"slot means must both be [B, K, Z], got {list(mu0.shape)} and {list(mu1.shape)}")
    _, columns = hungarian_match(torch.cdist(mu0.detach().float(), mu1.detach().float()).square())
    return columns


def permute_slots(values: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """values [B, K, ...] reordered along K by perm [B, K] (batched gather, keeps gradients)."""
    batch = torch.arange(values.shape[0], device=values.device).unsqueeze(1)
    return values[batch, perm]


@dataclass
class SlotPosteriors:
    """One frame's slots: posterior (mu, logvar), each [B, K, Z], the attention [B, K, N] they came from
    (which places them and, with the mask prior, shapes their masks when rendered) and, with an orientation
    search, each slot's angle [B, K]."""

    mu: torch.Tensor
    logvar: torch.Tensor
    attention: torch.Tensor
    angles: torch.Tensor | None = None

    def permuted(self, perm: torch.Tensor) -> "SlotPosteriors":
        angles = None if self.angles is None else permute_slots(self.angles, perm)
        return SlotPosteriors(*(permute_slots(value, perm) for value in (self.mu, self.logvar, self.attention)),
                              angles)


def frame_posteriors(model: SlotVAE, states: torch.Tensor, images: torch.Tensor, attention: torch.Tensor
                     ) -> SlotPosteriors:
    """A frame's slots from Slot Attention's states: the orientation search's angles first (none without it),
    then the posterior read in each slot's turned frame."""
    angles = model.choose_angles(states, attention, images)
    return SlotPosteriors(*model.posterior(states, images, attention, angles), attention, angles)


def joined_angles(first: SlotPosteriors, second: SlotPosteriors) -> torch.Tensor | None:
    """Both frames' angles [2B, K], frame 0s first (None without an orientation search)."""
    return None if first.angles is None else torch.cat([first.angles, second.angles])


def correspond(model: SlotVAE, frame0: torch.Tensor, frame1: torch.Tensor, correspondence: Correspondence,
               num_slots: int | None = None, generator: torch.Generator | None = None
               ) -> tuple[SlotPosteriors, SlotPosteriors]:
    """The slots of both frames, frame 1's aligned with frame 0's.

    "init": Slot Attention on frame 0 from random slots binds the objects; then *both* frames are refined
    from those slots (and, with invariant attention, from the frames they ended in), so slot k of either
    frame continues the same object, and identical frames give identical posteriors (every dimension
    shared). "hungarian": both frames from independent random slots, matched afterwards by `match_slots`;
    "init_hungarian": "init" followed by that matching.
    """
    encoded = model.encode(torch.cat([frame0, frame1]))
    encoded0, encoded1 = encoded[: len(frame0)], encoded[len(frame0):]
    if correspondence in ("init", "init_hungarian"):
        start, attention = model.attend(encoded0, num_slots, generator=generator)
        place = model.attention_frames(attention, model.resolution)
        both = SlotFrames(torch.cat([place.positions, place.positions]), torch.cat([place.scales, place.scales]))
        states, attention = model.attend(encoded, initial_slots=torch.cat([start, start]), initial_frames=both)
        (states0, states1), (attention0, attention1) = states.chunk(2), attention.chunk(2)
    else:
        states0, attention0 = model.attend(encoded0, num_slots, generator=generator)
        states1, attention1 = model.attend(encoded1, states0.shape[1], generator=generator)
    slots0 = frame_posteriors(model, states0, frame0, attention0)
    slots1 = frame_posteriors(model, states1, frame1, attention1)
    if correspondence in ("init_hungarian", "hungarian"):
        slots1 = slots1.permuted(match_slots(slots0.mu, slots1.mu))
    return slots0, slots1


def share_mask(mu0: torch.Tensor, logvar0: torch.Tensor, mu1: torch.Tensor, logvar1: torch.Tensor,
               share_floor: float) -> torch.Tensor:
    """Bool [B, K, Z]: the adaptive (midpoint) rule per slot pair, plus 'below share_floor nats is shared'."""
    adaptive = adaptive_share_mask(mu0, logvar0, mu1, logvar1)
    return adaptive | (kl_per_dim(mu0, logvar0, mu1, logvar1).detach() < share_floor)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q || N(0, I)) summed over slots and latent dimensions: [B]."""
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2))


def sample(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None,
           noise_scale: float = 1.0) -> torch.Tensor:
    noise = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
    return mu + noise_scale * (0.5 * logvar).exp() * noise


def silhouette_divergence(silhouette_logits: torch.Tensor, masks: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KL(rendered masks || masks the silhouette head draws), nats per pixel: logits [B, K, H, W] and the
    rendered masks [B, K, H, W] (held fixed), both over slots.

    Why: with the attention mask prior the silhouettes come from the attention and the decoder never needs
    the latent to say what shape (or how turned) an object is, so the latent codes colour alone and sharing
    between matched slots has nothing to separate. A decoder channel that must redraw the rendered masks
    from the latents (in the slot's frame) puts shape into the latent; the rendering never reads it, so the
    segmentation stays the prior's.
    """
    if silhouette_logits.shape != masks.shape:
        raise ValueError(f"silhouette logits and masks differ in shape: {list(silhouette_logits.shape)} vs "
                         f"{list(masks.shape)}")
    target = masks.detach().float()
    drawn = silhouette_logits.float().log_softmax(dim=1)
    return (target * (torch.log(target + eps) - drawn)).sum(dim=1).mean()


def slot_pair_loss(model: SlotVAE, frame0: torch.Tensor, frame1: torch.Tensor, settings: SlotPairSettings,
                   generator: torch.Generator | None = None, warmup: float = 1.0
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative ELBO of both frames with the matched slots' shared dimensions aggregated.

    Scaled by 2σ²/(3·H·W) so the reconstruction term is the pixel MSE the plain autoencoder minimises and
    the same learning rate and gradient clipping apply: loss = MSE + β·2σ²·KL / (3·H·W).

    `warmup` in [0, 1] scales both β and the sampling noise: at 0 the model is a deterministic autoencoder of
    the posterior means (with β = 0 the ELBO has no use for posterior noise either), at 1 the full objective.
    Slots bind only while the decoder learns from clean latents; noise from the first step stops that.
    The logged negative ELBO always uses the full KL.
    """
    if frame0.shape != frame1.shape:
        raise ValueError(f"the two frames of a pair differ in shape: {list(frame0.shape)} vs {list(frame1.shape)}")
    if settings.method == "slot_vae":  # the baseline: two independent images, no correspondence
        both = torch.cat([frame0, frame1])
        states, attention = model.infer_slots(both, generator=generator)
        slots = frame_posteriors(model, states, both, attention)
        angles = (None, None) if slots.angles is None else slots.angles.chunk(2)
        slots0, slots1 = (SlotPosteriors(*parts) for parts in zip(slots.mu.chunk(2), slots.logvar.chunk(2),
                                                                  slots.attention.chunk(2), angles))
        shared = torch.zeros_like(slots0.mu, dtype=torch.bool)
        posterior0, posterior1 = (slots0.mu, slots0.logvar), (slots1.mu, slots1.logvar)
    else:
        slots0, slots1 = correspond(model, frame0, frame1, settings.correspondence, generator=generator)
        shared = share_mask(slots0.mu, slots0.logvar, slots1.mu, slots1.logvar, settings.share_floor)
        kind = "gvae" if settings.method == "ada_gvae" else "mlvae"
        posterior0, posterior1 = aggregate_pair(slots0.mu, slots0.logvar, slots1.mu, slots1.logvar, shared, kind)
    latents = torch.cat([sample(*posterior0, generator, warmup), sample(*posterior1, generator, warmup)])
    attention = torch.cat([slots0.attention, slots1.attention])
    angles = joined_angles(slots0, slots1)
    rendered = model.render(latents, attention, angles)
    reconstruction, target = rendered.reconstruction, torch.cat([frame0, frame1])
    mse = F.mse_loss(reconstruction.float(), target)
    kl = torch.cat([kl_to_prior(*posterior0), kl_to_prior(*posterior1)]).mean()
    values_per_image = target[0].numel()
    loss = mse + warmup * settings.beta * 2 * settings.recon_sigma**2 * kl / values_per_image
    logs = {}
    if settings.silhouette_weight > 0:
        if rendered.silhouette_logits is None:
            raise ValueError("silhouette_weight > 0 needs a model built with silhouette_head=True")
        silhouette = silhouette_divergence(rendered.silhouette_logits, rendered.masks)
        loss = loss + settings.silhouette_weight * silhouette
        logs["silhouette"] = silhouette.detach()
    if settings.outline_weight > 0:
        if model.outline_head is None:
            raise ValueError("outline_weight > 0 needs a model built with an outline head (outline_size > 0)")
        frames = model.attention_frames(attention, model.resolution)
        frames.angles = angles  # the outline is drawn upright, in the frame the slot was rendered in
        targets = canonical_masks(rendered.masks, frames, model.outline_head.size)
        outline = outline_loss(model.outline_head(latents), targets)
        loss = loss + settings.outline_weight * outline
        logs["outline"] = outline.detach()
    nll = mse * values_per_image / (2 * settings.recon_sigma**2) + 0.5 * values_per_image * math.log(
        2 * math.pi * settings.recon_sigma**2)
    return loss, {"loss": loss.detach(), "mse": mse.detach(), "kl": kl.detach(), "neg_elbo": (nll + kl).detach(),
                  "shared_fraction": shared.float().mean().detach(), **logs}
