"""Independent pixels: p(x) = prod_d p_d(x_d), one learned categorical per sub-pixel.

The simplest autoregressive model there is (each conditional ignores the past), so it shows exactly what a
zoo family has to implement: a tokenizer, `log_prob_tokens` (exact, nats per image) and `stepper`.
"""
from __future__ import annotations

import torch
from torch import nn

import zoo


class IndependentPixels(zoo.Model):
    """One categorical over `levels` values for each of the C*H*W sub-pixels: parameter `logits` (T, levels)."""

    def __init__(self, image_shape=(1, 28, 28), levels: int = 2) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.tokenizer = zoo.PixelTokenizer(levels, self.image_shape)
        self.levels = int(levels)
        self.logits = nn.Parameter(torch.zeros(self.tokenizer.num_tokens, self.levels))

    def logits_all(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (N, T, levels) of every position given the tokens (N, T): here they ignore the tokens."""
        return self.logits.expand(tokens.shape[0], -1, -1)

    def log_prob_tokens(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) in nats of each token sequence (N, T) -> (N,)."""
        logp = self.logits.log_softmax(-1)  # (T, levels)
        return logp.gather(1, tokens.t()).sum(0)

    def stepper(self, n: int, *, y=None, observed_mask=None, generator=None, processor=None, naive=False):
        """Raster order, one sub-pixel per step. The pixels are independent, so any observed mask can be
        teacher-forced in this order (the core sampler writes the observed tokens)."""
        order = torch.arange(self.tokenizer.num_tokens)
        return zoo.FullRecomputeStepper(self.logits_all, order, n, self.tokenizer.num_tokens, self.device)
