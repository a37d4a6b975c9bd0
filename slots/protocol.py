"""What a slot model and the parts of the autoencoder look like to the code that uses them.

Every slot model (the pixel autoencoder, DINOSAUR, the set predictor, the slot VAE) is called the same way,
so the slot sweep, the evaluations and the pictures treat them alike; the autoencoder's parts are whatever
modules honour the part protocols, so a new initialiser, grouping or decoder plugs in without touching it.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from slots.frames import SlotFrames


@runtime_checkable
class SlotModel(Protocol):
    """Images [B, 3, H, W] in [-1, 1] -> an output with at least `slots` [B, K, D]. The slot count and the
    number of iterations default to the training values (`num_slots`, `num_iterations`) and can change per
    call (the test-time slot sweep); `initial_slots` [B, K, D] replaces the drawn initialisation."""

    num_slots: int
    num_iterations: int

    def forward(self, images: torch.Tensor, num_slots: int | None = None, num_iterations: int | None = None,
                generator: torch.Generator | None = None, initial_slots: torch.Tensor | None = None) -> Any: ...


@runtime_checkable
class SlotInitialiser(Protocol):
    """Draws [B, K, D] starting slots; validates K (`slots.init.check_num_slots`)."""

    num_slots: int
    slot_dim: int

    def __call__(self, batch_size: int, num_slots: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor: ...


@runtime_checkable
class Grouping(Protocol):
    """Refines slots [B, K, D] against features [B, N, C]: (slots [B, K, D], attention [B, K, N] summing to 1
    over slots). `grid_size` is the (h, w) feature grid, `generator` draws anything random (starting positions),
    `extra_values` [B, N, D] are added to the values only, `initial_frames` restart each slot where it was."""

    def __call__(self, inputs: torch.Tensor, slots: torch.Tensor, num_iterations: int, *,
                 grid_size: tuple[int, int] | None = None, generator: torch.Generator | None = None,
                 extra_values: torch.Tensor | None = None, initial_frames: SlotFrames | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class SlotEncoder(Protocol):
    """Images [B, 3, H, W] -> features [B, h*w, out_dim] on an (h, w) grid."""

    out_dim: int

    def grid_size(self, height: int, width: int) -> tuple[int, int]: ...

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class SlotDecoder(Protocol):
    """Slots [B, K, D] (in their frames, when it renders in them) -> [B, K, C, H, W]: RGB, the alpha logit and,
    with C = 5, a silhouette logit that the rendering never reads."""

    out_channels: int

    def __call__(self, slots: torch.Tensor, frames: SlotFrames | None = None) -> torch.Tensor: ...
