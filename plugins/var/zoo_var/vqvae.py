"""Multi-scale residual VQ-VAE: VAR's stage-1 tokenizer (Tian et al. 2024, arXiv 2404.02905).

The encoder maps an image to a latent f (C, h, w). Residual quantization over a schedule of scales
(e.g. 1, 2, 3, 4, 5, 7 for a 7x7 latent) writes f as a sum of upsampled, refined code maps: at scale k the
residual f - f_hat is area-downsampled to k x k, each cell snapped to its nearest code in one shared codebook,
the code map upsampled back (bicubic) and passed through a small refinement convolution phi_k, and added to
f_hat. The decoder maps f_hat back to an image. A token sequence is the concatenation of the code maps,
coarse to fine; `MultiScaleTokenizer` exposes it through the core's Tokenizer interface.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo import distributed as zdist
from zoo.errors import InputError
from zoo.model import LearnedTokenizer
from zoo.tokenizers import Tokenizer, check_images


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, plus the identity."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
                                  _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Phi(nn.Module):
    """VAR's refinement after upsampling a code map: h <- (1 - r) h + r conv3x3(h)."""

    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mul(1 - self.ratio) + self.conv(h).mul_(self.ratio)


class VQVAE(LearnedTokenizer):
    """Encoder / multi-scale residual quantizer / decoder. `training_loss` is reconstruction MSE plus the
    codebook and commitment terms; codes unused for a while are re-seeded from the batch's residuals."""

    @classmethod
    def check_config(cls) -> dict:
        return {"image_shape": [1, 8, 8], "channels": 8, "latent_dim": 4, "codebook_size": 4, "scales": [1, 2]}

    def __init__(self, image_shape: Sequence[int] = (1, 28, 28), channels: int = 64, latent_dim: int = 32,
                 codebook_size: int = 512, scales: Sequence[int] = (1, 2, 3, 4, 5, 7), beta: float = 0.25,
                 phi_ratio: float = 0.5, usage_decay: float = 0.99, dead_threshold: float = 0.03) -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        if h % 4 or w % 4 or h != w:
            raise InputError(f"the VQ-VAE downsamples square images by 4; image_shape {tuple(image_shape)} "
                             "is not square with sides divisible by 4")
        self.image_shape = (c, h, w)
        self.latent_size = h // 4
        scales = [int(s) for s in scales]
        if scales != sorted(set(scales)) or scales[0] < 1 or scales[-1] != self.latent_size:
            raise InputError(f"scales must increase strictly and end at the latent size {self.latent_size}; "
                             f"got {scales}")
        self.scales = scales
        self.codebook_size = int(codebook_size)
        self.latent_dim = int(latent_dim)
        self.beta, self.usage_decay, self.dead_threshold = float(beta), float(usage_decay), float(dead_threshold)
        ch = int(channels)
        self.encoder = nn.Sequential(
            nn.Conv2d(c, ch, 3, padding=1), ResBlock(ch),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), ResBlock(2 * ch),
            nn.Conv2d(2 * ch, 2 * ch, 4, stride=2, padding=1), ResBlock(2 * ch), ResBlock(2 * ch),
            _norm(2 * ch), nn.SiLU(), nn.Conv2d(2 * ch, latent_dim, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_dim, 2 * ch, 3, padding=1), ResBlock(2 * ch), ResBlock(2 * ch),
            nn.ConvTranspose2d(2 * ch, 2 * ch, 4, stride=2, padding=1), ResBlock(2 * ch),
            nn.ConvTranspose2d(2 * ch, ch, 4, stride=2, padding=1), ResBlock(ch),
            _norm(ch), nn.SiLU(), nn.Conv2d(ch, c, 3, padding=1))
        self.codebook = nn.Embedding(self.codebook_size, latent_dim)
        nn.init.uniform_(self.codebook.weight, -1 / self.codebook_size, 1 / self.codebook_size)
        self.phis = nn.ModuleList(Phi(latent_dim, phi_ratio) for _ in scales)
        # exponential moving average of how often each code is chosen during training (sums to ~1)
        self.register_buffer("usage", torch.full((self.codebook_size,), 1.0 / self.codebook_size))
        self.tokenizer = MultiScaleTokenizer(self)

    # ---- the quantizer, written once for encoding, training and generation -----------------------------
    @property
    def token_slices(self) -> list[slice]:
        """Where each scale's code map lies in the flat token sequence."""
        out, start = [], 0
        for s in self.scales:
            out.append(slice(start, start + s * s))
            start += s * s
        return out

    def _lookup(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest code (squared L2) of each vector in z (M, D) -> (M,)."""
        w = self.codebook.weight
        d = z.pow(2).sum(1, keepdim=True) - 2 * z @ w.t() + w.pow(2).sum(1)[None]
        return d.argmin(1)

    def embed_scale(self, idx: torch.Tensor, k: int) -> torch.Tensor:
        """Code map of scale k, (N, s*s) token ids -> its refined contribution to f_hat (N, D, h, h)."""
        return self.refine(self.codebook(idx), k)

    def refine(self, codes: torch.Tensor, k: int) -> torch.Tensor:
        """Code vectors of scale k (N, s*s, D) -> upsampled to the latent size and refined by phi_k."""
        s = self.scales[k]
        h = codes.transpose(1, 2).reshape(codes.shape[0], self.latent_dim, s, s)
        if s != self.latent_size:
            h = F.interpolate(h, size=(self.latent_size,) * 2, mode="bicubic", align_corners=False)
        return self.phis[k](h)

    def next_input(self, f_hat: torch.Tensor, k: int) -> torch.Tensor:
        """What the transformer reads to predict scale k+1: f_hat area-downsampled to that scale,
        flattened (N, s*s, D)."""
        s = self.scales[k + 1]
        x = f_hat if s == self.latent_size else F.adaptive_avg_pool2d(f_hat, s)
        return x.flatten(2).transpose(1, 2)

    def quantize(self, f: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Residual quantization of latents f (N, D, h, h) -> (f_hat, token maps, codebook + commitment loss)."""
        f_hat = torch.zeros_like(f)
        rest = f.detach().clone()
        maps, loss = [], f.new_zeros(())
        for k, s in enumerate(self.scales):
            down = rest if s == self.latent_size else F.adaptive_avg_pool2d(rest, s)
            idx = self._lookup(down.permute(0, 2, 3, 1).reshape(-1, self.latent_dim)).view(f.shape[0], s * s)
            h = self.embed_scale(idx, k)
            f_hat = f_hat + h
            rest = rest - h.detach()
            maps.append(idx)
            loss = loss + F.mse_loss(f_hat, f.detach()) + self.beta * F.mse_loss(f_hat.detach(), f)
        return f_hat, maps, loss / len(self.scales)

    def encode_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Token maps of images (N, C, H, W) in [0, 1], coarse to fine: a list of (N, s*s) LongTensors."""
        return self.quantize(self.encoder(images * 2 - 1))[1]

    def f_hat_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """The quantized latent that a flat token sequence (N, T) stands for."""
        f_hat = 0
        for k, sl in enumerate(self.token_slices):
            f_hat = f_hat + self.embed_scale(tokens[:, sl], k)
        return f_hat

    def decode_latent(self, f_hat: torch.Tensor) -> torch.Tensor:
        """Decoder output as images in [0, 1] (unclamped)."""
        return (self.decoder(f_hat) + 1) / 2

    # ---- training -----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Reconstruction of x, its token maps, the VQ loss and the encoder's latent f."""
        f = self.encoder(x * 2 - 1)
        f_hat, maps, vq_loss = self.quantize(f)
        f_st = f + (f_hat - f).detach()  # straight-through: the decoder's gradient reaches the encoder
        return self.decode_latent(f_st), maps, vq_loss, f

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Reconstruction MSE (on [-1, 1] pixels) plus the VQ terms; tracks code usage and re-seeds dead codes.
        Under torchrun the counts and the re-seeding latents are those of the global batch, so every rank keeps
        the same codebook (DDP syncs gradients, not in-place edits) and W processes follow one."""
        recon, maps, vq_loss, f = self(x)
        with torch.no_grad():
            counts = torch.bincount(torch.cat(maps, 1).flatten(), minlength=self.codebook_size).float()
            counts = zdist.all_reduce_sum(counts)
            self.usage.mul_(self.usage_decay).add_(counts / counts.sum(), alpha=1 - self.usage_decay)
            self._reseed_dead(f.detach(), generator)
        return F.mse_loss(recon * 2 - 1, x * 2 - 1) + vq_loss

    @torch.no_grad()
    def _reseed_dead(self, f: torch.Tensor, generator: torch.Generator | None) -> None:
        """Codes whose usage fell below dead_threshold / codebook_size move onto random latent vectors of the
        batch (a known VQ failure is a codebook collapsing onto few codes)."""
        dead = (self.usage < self.dead_threshold / self.codebook_size).nonzero().flatten()
        if not len(dead):
            return
        z = zdist.gather_cat(f).permute(0, 2, 3, 1).reshape(-1, self.latent_dim)
        pick = torch.randint(len(z), (len(dead),), generator=generator).to(z.device)
        self.codebook.weight[dead] = z[pick] + 1e-3 * torch.randn(len(dead), self.latent_dim,
                                                                  generator=generator).to(z.device)
        self.usage[dead] = 1.0 / self.codebook_size

    def validation_losses(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image reconstruction MSE on [0, 1] pixels after quantization."""
        return (self.tokenizer.decode(self.tokenizer.encode(x)).clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3))


class MultiScaleTokenizer(Tokenizer):
    """The VQ-VAE through the core's Tokenizer interface: tokens are the code maps of every scale, concatenated
    coarse to fine (T = sum of s*s)."""

    def __init__(self, vqvae: VQVAE) -> None:
        self._vq = [vqvae]  # a list, so the tokenizer does not register the VQ-VAE as a submodule twice
        self.image_shape = vqvae.image_shape
        self.vocab_size = vqvae.codebook_size
        self.codebook_size = vqvae.codebook_size

    @property
    def vqvae(self) -> VQVAE:
        return self._vq[0]

    @property
    def num_tokens(self) -> int:
        return sum(s * s for s in self.vqvae.scales)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = check_images(images, self.image_shape).to(self.vqvae.codebook.weight.device)
        return torch.cat(self.vqvae.encode_maps(images), 1)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] != self.num_tokens:
            raise InputError(f"tokens must have shape (N, {self.num_tokens}), got {tuple(tokens.shape)}")
        return self.vqvae.decode_latent(self.vqvae.f_hat_of(tokens))

    def token_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """A token is observed when every latent cell that its scale's area-downsampling averages is observed,
        and a latent cell when every pixel of its 4x4 patch is (in all channels)."""
        m = -F.max_pool2d(-mask.all(dim=1, keepdim=True).float(), 4)
        parts = [(-F.adaptive_max_pool2d(-m, s)).flatten(1) > 0.5 for s in self.vqvae.scales]
        return torch.cat(parts, 1)
