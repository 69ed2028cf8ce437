"""Independent pixels: p(x) = prod_d p_d(x_d), one learned categorical per sub-pixel.

The simplest autoregressive model there is (each conditional ignores the past), so it shows exactly what a
zoo family has to implement: a tokenizer and `logits_all`, the logits of every token given the tokens before it.
zoo derives the rest from it: the exact log_prob, the per-token conditionals, and a (naive) sampler. A family
with an expensive network adds a cached `stepper` that must draw what the naive one draws; `zoo.testing`
checks that, and every other promise, on the tiny model of `check_config` (see tests/test_contract.py).
"""
from __future__ import annotations

import torch
from torch import nn

import zoo


class IndependentPixels(zoo.Model):
    """One categorical over `levels` values for each of the C*H*W sub-pixels: parameter `logits` (T, levels)."""

    @classmethod
    def check_config(cls) -> dict:
        """A model small enough for zoo.testing to enumerate: 2x3 binary images, 64 token sequences."""
        return {"image_shape": [1, 2, 3], "levels": 2}

    @classmethod
    def completes_any_mask(cls, config: dict) -> bool:
        """Any mask: see generation_steps."""
        return True

    def __init__(self, image_shape=(1, 28, 28), levels: int = 2) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.tokenizer = zoo.PixelTokenizer(levels, self.image_shape)
        self.levels = int(levels)
        self.logits = nn.Parameter(torch.zeros(self.tokenizer.num_tokens, self.levels))

    def logits_all(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, T, levels) of every position given the tokens (N, T): here they ignore the tokens."""
        return self.logits.expand(tokens.shape[0], -1, -1)

    def generation_steps(self, observed_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Raster order, one sub-pixel per step; for a completion, the observed sub-pixels first. The pixels
        ignore each other, so every order is exact and any mask is completed as the exact conditional."""
        order = torch.arange(self.tokenizer.num_tokens)
        if observed_mask is not None:
            seen = observed_mask.reshape(-1).bool().cpu()
            order = torch.cat([order[seen], order[~seen]])
        return list(order.reshape(-1, 1))
