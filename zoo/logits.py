"""Logit processing written once for every family: temperature, top-k, top-p, classifier-free guidance."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InputError


@dataclass(frozen=True)
class LogitProcessor:
    """How logits become a categorical draw. The defaults sample from the model's own distribution."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    cfg: float | None = None

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise InputError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k is not None and (not isinstance(self.top_k, int) or isinstance(self.top_k, bool)
                                       or self.top_k < 1):
            raise InputError(f"top_k must be a positive integer, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.cfg is not None and not self.cfg >= 0:
            raise InputError(f"cfg must be >= 0, got {self.cfg}")

    def guide(self, cond: torch.Tensor, uncond: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance: uncond + cfg * (cond - uncond); cfg 1 is the conditional model."""
        scale = 1.0 if self.cfg is None else self.cfg
        return uncond + scale * (cond - uncond)

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply temperature, top-k and top-p to logits of shape (..., V); returns new logits."""
        logits = logits.float()
        if self.temperature not in (0, 1.0):
            logits = logits / self.temperature
        if self.top_k is not None and self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1:
            sorted_logits, idx = torch.sort(logits, dim=-1, descending=True)
            probs = sorted_logits.softmax(-1)
            # drop a token when the mass strictly before it already reaches top_p (the first always stays)
            drop = probs.cumsum(-1) - probs >= self.top_p
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.empty_like(logits).scatter_(-1, idx, sorted_logits)
        return logits
