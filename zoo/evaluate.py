"""Exact likelihood evaluation: nats per image and bits per dimension over a dataset split."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from . import distributed as zdist
from .data import ImageData
from .model import Model


@dataclass(frozen=True)
class NLLResult:
    """Mean negative log-likelihood over n images, with its standard error."""

    nats: float
    stderr: float
    n: int
    dims: int

    @property
    def bits_per_dim(self) -> float:
        return self.nats / (math.log(2) * self.dims)

    def __str__(self) -> str:
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
    return NLLResult(float(v.mean()), stderr, len(v), model.num_dims)
