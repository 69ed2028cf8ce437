"""Evaluation over a dataset split: exact likelihood (nats per image, bits per dimension), the training
engine's validation figure, and a tokenizer's reconstruction quality (PSNR, codebook usage)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from . import distributed as zdist
from .data import ImageData
from .errors import InputError
from .model import Model


@dataclass(frozen=True)
class NLLResult:
    """Mean negative log-likelihood over n images, with its standard error."""

    nats: float
    stderr: float
    n: int
    dims: int
    #: "pixels", or "tokens" for a likelihood of learned codes (VAR), which has no bits/dim
    likelihood: str = "pixels"

    @property
    def unit(self) -> str:
        """The unit a card records: nats per image, of pixels or of the tokenizer's codes."""
        return "nats/image (tokens)" if self.likelihood == "tokens" else "nats/image"

    @property
    def bits_per_dim(self) -> float:
        return self.nats / (math.log(2) * self.dims)

    def __str__(self) -> str:
        if self.likelihood == "tokens":
            return (f"{self.nats:.2f} ± {self.stderr:.2f} nats/image (a likelihood of the tokenizer's codes, "
                    f"not of pixels: no bits/dim), n={self.n:,}")
        return (f"{self.nats:.2f} ± {self.stderr:.2f} nats/image ({self.bits_per_dim:.4f} bits/dim), "
                f"n={self.n:,}")


@torch.no_grad()
def nll(model: Model, data: ImageData, n: int | None = None, batch_size: int = 500,
        progress: Callable[[int], None] | None = None, distributed: bool = False, **log_prob_kwargs) -> NLLResult:
    """Exact test NLL of `model` on the first n images of `data` (all by default). With distributed=True, inside
    a torch.distributed process group, each rank scores its contiguous share and the per-image values are
    gathered in order, so every rank gets the result of one process (every rank must call it)."""
    was_training = model.training
    model.eval()
    total = len(data) if n is None else min(n, len(data))
    lo, hi = zdist.shard(total) if distributed else (0, total)
    values = [torch.zeros(0, dtype=torch.float64)]
    for start in range(lo, hi, batch_size):
        idx = torch.arange(start, min(start + batch_size, hi))
        x, y = data.batch(idx)
        y = y.to(model.device) if model.num_classes else None
        values.append(-model.log_prob(x.to(model.device), y, **log_prob_kwargs).double().cpu())
        if progress is not None:
            progress(len(idx))
    model.train(was_training)
    v = torch.cat(values)
    if distributed:
        v = zdist.gather_cat(v)
    stderr = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    return NLLResult(float(v.mean()), stderr, len(v), model.num_dims, model.likelihood)


@torch.no_grad()
def validate(model: Model, data: ImageData, n: int | None = None, batch_size: int = 500,
             distributed: bool = False) -> float:
    """Mean of the model's per-image validation figure (its NLL unless the family says otherwise). With
    distributed=True each rank scores its share and the per-image values are gathered in order (every rank must
    call it), so the figure is the one process's to float rounding."""
    was_training = model.training
    model.eval()
    total = len(data) if n is None else min(n, len(data))
    lo, hi = zdist.shard(total) if distributed else (0, total)
    values = [torch.zeros(0, dtype=torch.float64)]
    for start in range(lo, hi, batch_size):
        x, y = data.batch(torch.arange(start, min(start + batch_size, hi)))
        y = y.to(model.device) if model.num_classes else None
        values.append(model.validation_losses(x.to(model.device), y).double().cpu())
    model.train(was_training)
    v = torch.cat(values)
    if distributed:
        v = zdist.gather_cat(v)
    return float(v.sum()) / max(total, 1)


@dataclass(frozen=True)
class ReconResult:
    """How well a tokenizer reconstructs a split: PSNR of encode->decode and the share of codes used."""

    psnr: float
    mse: float
    codes_used: int
    codebook_size: int
    n: int

    @property
    def usage(self) -> float:
        return self.codes_used / self.codebook_size

    def __str__(self) -> str:
        return (f"PSNR {self.psnr:.2f} dB (MSE {self.mse:.5f} on [0, 1] pixels), codebook usage "
                f"{self.codes_used}/{self.codebook_size} ({100 * self.usage:.1f}%), n={self.n:,}")


@torch.no_grad()
def reconstruction(model: Model, data: ImageData, n: int | None = None, batch_size: int = 500,
                   progress: Callable[[int], None] | None = None) -> ReconResult:
    """Encode and decode a split with the model's learned tokenizer: PSNR over the split's pixels (from the
    mean MSE) and how many codebook entries the split uses."""
    tok = model.tokenizer
    if not hasattr(tok, "codebook_size"):
        raise InputError(f"{type(model).__name__} has no learned tokenizer to measure (its tokens are pixels)")
    total = len(data) if n is None else min(n, len(data))
    se, used = 0.0, torch.zeros(tok.codebook_size, dtype=torch.bool)
    for start in range(0, total, batch_size):
        x, _ = data.batch(torch.arange(start, min(start + batch_size, total)))
        x = x.to(model.device)
        tokens = tok.encode(x)
        se += float(((tok.decode(tokens).clamp(0, 1) - x) ** 2).double().mean(dim=(1, 2, 3)).sum())
        used[tokens.flatten().unique().cpu()] = True
        if progress is not None:
            progress(len(x))
    mse = se / max(total, 1)
    return ReconResult(10 * math.log10(1 / max(mse, 1e-12)), mse, int(used.sum()), tok.codebook_size, total)


@torch.no_grad()
def reconstructions(model: Model, data: ImageData, n: int | None = None, batch_size: int = 500) -> torch.Tensor:
    """decode(encode(x)) of the split's first n images (all by default), clamped to [0, 1] pixels, on the CPU: what
    a generator over the tokenizer's codes could at best reproduce of the data (its FID is the tokenizer's ceiling)."""
    tok = model.tokenizer
    if not hasattr(tok, "codebook_size"):
        raise InputError(f"{type(model).__name__} has no learned tokenizer to measure (its tokens are pixels)")
    total = len(data) if n is None else min(n, len(data))
    out = []
    for start in range(0, total, batch_size):
        x, _ = data.batch(torch.arange(start, min(start + batch_size, total)))
        out.append(tok.decode(tok.encode(x.to(model.device))).clamp(0, 1).cpu())
    return torch.cat(out)
