"""Several VAEs trained side by side from different initialisations, the one with the lowest training
reconstruction loss kept: unsupervised model selection inside one run.

Why: short weakly supervised runs settle early, and a third of them in a basin where a factor is coded in a
rotated basis of several latents (every latent moves for any change, so the adaptive threshold cannot tell
changed from shared dimensions); no schedule measured takes a run out of it. Locatello et al. (2020) select
weakly supervised models by their reconstruction loss, which correlates with disentanglement for them; here
the selection is made after `select_after` steps, on the mean training reconstruction of the last `window`
steps, and only the chosen member trains on. The tally and the choice are buffers, so a checkpoint holds
them and a resumed run chooses the same member. Measured on the `dsprites_vae` preset, the loss picks the
better basin in some runs and not in others (results/weak_study_candidates).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from weak_supervision.model import GaussianEncoderVAE


class VAECandidates(nn.Module):
    """`members` trained on the same batches until step `select_after`, then `chosen` alone.

    encode / decode / sample delegate to `chosen`, so the metrics, pictures and losses of a single VAE read a
    candidate set unchanged. Before the choice, `chosen` is the current leader of the tally (member 0 before
    the tally starts), so a run stopped early reports the member it would have kept.
    """

    def __init__(self, members: list[GaussianEncoderVAE], select_after: int, window: int):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"a candidate set needs at least 2 members, got {len(members)}")
        if not 0 < window <= select_after:
            raise ValueError(f"the selection window must be in [1, select_after={select_after}], got {window}")
        self.members = nn.ModuleList(members)
        self.select_after, self.window = select_after, window
        self.channels, self.latent_dim = members[0].channels, members[0].latent_dim
        self.register_buffer("recon_tally", torch.zeros(len(members), dtype=torch.float64))
        self.register_buffer("tallied_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("selected", torch.full((), -1, dtype=torch.long))

    @property
    def decided(self) -> bool:
        return int(self.selected) >= 0

    @property
    def chosen_index(self) -> int:
        if self.decided:
            return int(self.selected)
        return int(self.recon_tally.argmin()) if int(self.tallied_steps) else 0

    @property
    def chosen(self) -> GaussianEncoderVAE:
        return self.members[self.chosen_index]

    def training_members(self) -> list[GaussianEncoderVAE]:
        """The members whose loss this step trains: all of them before the choice, the chosen one after."""
        return [self.chosen] if self.decided else list(self.members)

    def record(self, step: int, recon_losses: list[float]) -> None:
        """Tally the members' training reconstruction at `step` (0-based: the step being taken) when it falls
        in the window, and choose once the step that ends the window is taken. With several processes the
        tallies are summed over them first, so every process keeps the same member."""
        if self.decided or step < self.select_after - self.window:
            return
        self.recon_tally += torch.tensor(recon_losses, dtype=torch.float64, device=self.recon_tally.device)
        self.tallied_steps += 1
        if step + 1 >= self.select_after:
            tally = self.recon_tally.clone()
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(tally)
            self.selected.fill_(int(tally.argmin()))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.chosen.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.chosen.decode(z)

    sample = staticmethod(GaussianEncoderVAE.sample)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.chosen(x, generator)

    def extra_repr(self) -> str:
        return f"select_after={self.select_after}, window={self.window}"
