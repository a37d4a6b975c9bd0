"""dlib's 64x64 convolutional Gaussian encoder / deconvolutional decoder, a spatial broadcast decoder beside it,
and the FactorVAE discriminator.

Layer sizes follow dlib's `conv_encoder` / `deconv_decoder` (row 3 of Table 1 of the beta-VAE paper).
Note dlib's encoder uses kernel 4 for its first two convolutions and kernel 2 for the last two (all stride
2, TF "same" padding); `encoder_kernels` keeps that default. TF's "same" padding is exactly padding 1 for
kernel 4 / stride 2 and padding 0 for kernel 2 / stride 2 on even sizes, so 64 -> 32 -> 16 -> 8 -> 4.
Weights use Glorot-uniform with zero biases, TF's default, so early training behaves like dlib's.
"""
from __future__ import annotations

import torch
from einops import repeat
from einops.layers.torch import Rearrange
from torch import Tensor, nn


def _glorot_(module: nn.Module) -> None:
    """TF layers' default initialisation (PyTorch's default differs)."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


class ConvEncoder(nn.Module):
    """Image [B, C, 64, 64] -> (mu, logvar) [B, latent_dim]."""

    def __init__(self, channels: int = 1, latent_dim: int = 10, encoder_kernels: tuple[int, ...] = (4, 4, 2, 2)):
        super().__init__()
        if len(encoder_kernels) != 4 or any(k < 2 or k % 2 for k in encoder_kernels):
            raise ValueError(f"encoder_kernels must be 4 even sizes (TF 'same' padding), got {encoder_kernels}")
        layers: list[nn.Module] = []
        in_ch = channels
        for out_ch, kernel in zip((32, 32, 64, 64), encoder_kernels, strict=True):
            layers += [nn.Conv2d(in_ch, out_ch, kernel, stride=2, padding=(kernel - 2) // 2), nn.ReLU()]
            in_ch = out_ch
        self.body = nn.Sequential(*layers, Rearrange("b c h w -> b (c h w)"), nn.Linear(64 * 4 * 4, 256), nn.ReLU())
        self.mean = nn.Linear(256, latent_dim)
        self.logvar = nn.Linear(256, latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.body(x)
        return self.mean(h), self.logvar(h)


class DeconvDecoder(nn.Module):
    """Latent [B, latent_dim] -> Bernoulli logits [B, C, 64, 64]."""

    def __init__(self, channels: int = 1, latent_dim: int = 10):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 1024), nn.ReLU(),
            Rearrange("b (c h w) -> b c h w", c=64, h=4, w=4),
            nn.ConvTranspose2d(64, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(32, channels, 4, stride=2, padding=1),
        )  # fmt: skip

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class BroadcastDecoder(nn.Module):
    """Latent [B, latent_dim] -> Bernoulli logits [B, C, 64, 64] by a spatial broadcast (Watters et al. 2019):
    z tiled over a `grid` x `grid` map beside two coordinate channels, two 3x3 convolutions, then transposed
    convolutions up to 64x64. Why: a position is then a comparison of a latent with a coordinate channel, not a
    pattern the first dense layers must lay out, so x and y each fit one latent direction; dlib's dense
    decoder lets a run code position in a rotated basis of several latents, which the adaptive sharing cannot
    split. Broadcasting at 8x8 rather than 64x64 keeps the cost near the deconvolutional decoder's."""

    def __init__(self, channels: int = 1, latent_dim: int = 10, grid: int = 8, width: int = 64):
        super().__init__()
        ups = {8: 3, 16: 2}.get(grid)
        if ups is None:
            raise ValueError(f"BroadcastDecoder grid must be 8 or 16 (upsampled to 64 by stride-2 steps), got {grid}")
        axis = torch.linspace(-1, 1, grid)
        self.register_buffer("coords", torch.stack(torch.meshgrid(axis, axis, indexing="ij"))[None], persistent=False)
        layers: list[nn.Module] = [nn.Conv2d(latent_dim + 2, width, 3, padding=1), nn.ReLU(),
                                   nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        widths = [width, width, width // 2, width // 2][: ups] + [channels]
        for i in range(ups):
            layers.append(nn.ConvTranspose2d(widths[i], widths[i + 1], 4, stride=2, padding=1))
            if i < ups - 1:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        grid = self.coords.shape[-1]
        tiled = repeat(z, "b l -> b l h w", h=grid, w=grid)
        coords = self.coords.to(z.dtype).expand(z.shape[0], -1, -1, -1)
        return self.net(torch.cat([tiled, coords], dim=1))


#: `vae.decoder` names -> decoder classes (each built as cls(channels, latent_dim))
DECODERS: dict[str, type[nn.Module]] = {"deconv": DeconvDecoder, "broadcast": BroadcastDecoder}


class GaussianEncoderVAE(nn.Module):
    """Encoder and decoder of every VAE-family method here; the methods differ only in their losses.
    `decoder`: "deconv" (dlib's) or "broadcast" (`BroadcastDecoder`)."""

    def __init__(self, channels: int = 1, latent_dim: int = 10, encoder_kernels: tuple[int, ...] = (4, 4, 2, 2),
                 decoder: str = "deconv"):
        super().__init__()
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {tuple(DECODERS)}, got {decoder!r}")
        self.channels, self.latent_dim = channels, latent_dim
        self.encoder = ConvEncoder(channels, latent_dim, encoder_kernels)
        self.decoder = DECODERS[decoder](channels, latent_dim)
        self.apply(_glorot_)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of q(z|x) in float32 even under bf16 autocast (the KLs and the sharing threshold
        compare small differences); mu is the representation the disentanglement metrics score."""
        mu, logvar = self.encoder(x)
        return mu.float(), logvar.float()

    def decode(self, z: Tensor) -> Tensor:
        """Bernoulli logits, same shape as the images, in float32 (the loss sums 4096 pixels per image)."""
        return self.decoder(z).float()

    @staticmethod
    def sample(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised sample; pass a generator for reproducible noise (None uses torch's default)."""
        noise = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * noise

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(logits, mu, logvar, z) for one batch of images."""
        mu, logvar = self.encode(x)
        z = self.sample(mu, logvar, generator)
        return self.decode(z), mu, logvar, z


class FactorDiscriminator(nn.Module):
    """FactorVAE's discriminator: 6 x 1000 LeakyReLU(0.2) layers, logits [B, 2] (0 = joint, 1 = permuted)."""

    def __init__(self, latent_dim: int = 10, hidden: int = 1000, depth: int = 6):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Linear(latent_dim if i == 0 else hidden, hidden), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, 2))
        self.apply(_glorot_)

    def forward(self, z: Tensor) -> Tensor:
        """Logits [..., 2] for codes [..., latent_dim] (leading dims free, e.g. [B] or [B, K])."""
        return self.net(z)
