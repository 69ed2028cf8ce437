"""The generation loop shared by every family: a Stepper says what each step predicts, the Sampler drives it.

A step predicts a set of token positions at once: one sub-pixel for raster models, a whole scale for VAR.
Observed tokens (completion) are teacher-forced: the sampler writes them instead of a draw, so every
observed token is kept exactly. The sampler calls `logits(t)` then `advance(t, tokens)` at every step, observed
or not, so a stepper never has to track which steps were skipped (and a mixture can weigh its components by the
observed tokens' probabilities).
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch

from .logits import LogitProcessor


class Stepper(Protocol):
    """One generation pass over a batch: `positions(t)` are the flat token indices step t fills. For every t in
    order the sampler calls `logits(t)` once, then `advance(t, tokens)` with the drawn or observed tokens."""

    num_steps: int

    def positions(self, t: int) -> torch.Tensor:
        """LongTensor (P,) of token indices predicted at step t."""
        ...

    def logits(self, t: int) -> torch.Tensor:
        """Logits (N, P, V) for the positions of step t, given every token set by earlier steps."""
        ...

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        """Record the tokens (N, P) chosen at step t."""
        ...


def draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Inverse-CDF draw from probs (..., V), unnormalised weights allowed: one uniform per row, so two samplers
    that see the same probabilities (up to float rounding) draw the same tokens from the same generator."""
    flat = probs.reshape(-1, probs.shape[-1]).double()
    device = generator.device if generator is not None else flat.device
    u = torch.rand(flat.shape[0], 1, generator=generator, device=device, dtype=torch.float64).to(flat.device)
    cdf = flat.cumsum(-1)
    # the first index whose cumulative weight exceeds u * total (searchsorted: one call, no tiny reductions)
    idx = torch.searchsorted(cdf, u.mul_(cdf[:, -1:]), right=True).clamp_(max=flat.shape[-1] - 1)
    return idx.reshape(probs.shape[:-1])


def draw_logits(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """`draw` from softmax(logits) without a softmax call (slow over a short last axis, e.g. 2 levels):
    exp(log_softmax) gives the same weights."""
    return draw(logits.log_softmax(-1).exp_(), generator)


def draw_binary(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """A draw from two levels (..., 2) in a few calls: level 1 when u >= p0 = sigmoid((l0 - l1) / T), one uniform
    per row as in `draw` (the same comparison, up to float rounding)."""
    d = logits[..., 0] - logits[..., 1]
    if temperature != 1.0:
        d = d / temperature
    p0 = torch.sigmoid(d.double())
    device = generator.device if generator is not None else p0.device
    u = torch.rand(p0.shape, generator=generator, device=device, dtype=torch.float64).to(p0.device)
    return u.ge_(p0).long()


class Sampler:
    """Drives a Stepper from first to last step, drawing tokens through one LogitProcessor."""

    def __init__(self, processor: LogitProcessor | None = None) -> None:
        self.processor = processor or LogitProcessor()

    def choose(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if self.processor.temperature == 0:
            return logits.argmax(-1)
        if logits.shape[-1] == 2 and self.processor.top_k is None and self.processor.top_p is None:
            return draw_binary(logits, self.processor.temperature, generator)
        return draw_logits(self.processor.process(logits), generator)

    @torch.no_grad()
    def run(self, stepper: Stepper, n: int, num_tokens: int, *, generator: torch.Generator | None = None,
            observed: torch.Tensor | None = None, observed_mask: torch.Tensor | None = None,
            device: torch.device | str = "cpu", on_step: Callable[[int], None] | None = None) -> torch.Tensor:
        """Return tokens (n, num_tokens). Where observed_mask (n, num_tokens) is True, observed is kept."""
        tokens = torch.zeros(n, num_tokens, dtype=torch.long, device=device)
        for t in range(stepper.num_steps):
            pos = stepper.positions(t)
            one = int(pos) if pos.numel() == 1 and observed_mask is None else None
            logits = stepper.logits(t)  # always: a step's logits are part of the pass, observed or not
            if observed_mask is not None:
                keep = observed_mask[:, pos]
                if bool(keep.all()):
                    chosen = observed[:, pos]
                else:
                    chosen = torch.where(keep, observed[:, pos], self.choose(logits, generator))
            else:
                chosen = self.choose(logits, generator)
            if one is None:
                tokens[:, pos] = chosen
            else:  # one position: a plain column copy (cheaper than an indexed assignment)
                tokens[:, one] = chosen[:, 0]
            stepper.advance(t, chosen)
            if on_step is not None:
                on_step(t)
        return tokens


def as_steps(order: Sequence[int] | torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Normalise a generation order to a list of LongTensors, the token positions of each step: a flat order
    (one position per step) or a list of position groups (several per step, as VAR's scales)."""
    if isinstance(order, torch.Tensor):
        return list(order.to(torch.long).reshape(-1, 1).cpu())
    steps = []
    for s in order:
        s = torch.as_tensor(s, dtype=torch.long).cpu()
        steps.append(s.reshape(-1))
    return steps


class FullRecomputeStepper:
    """The naive reference: recompute the whole network at every step. Any cached stepper must match it.

    `logits_all(tokens)` gives logits (N, T, V) of every position given the tokens set so far; `order` is a flat
    generation order (one position per step) or a list of position groups, one per step."""

    def __init__(self, logits_all: Callable[[torch.Tensor], torch.Tensor],
                 order: Sequence[int] | torch.Tensor | Sequence[torch.Tensor],
                 n: int, num_tokens: int, device: torch.device | str = "cpu") -> None:
        self.logits_all = logits_all
        self.steps = as_steps(order)
        self.num_steps = len(self.steps)
        self.tokens = torch.zeros(n, num_tokens, dtype=torch.long, device=device)

    @property
    def order(self) -> torch.Tensor:
        """Every position, in generation order."""
        return torch.cat(self.steps)

    def positions(self, t: int) -> torch.Tensor:
        return self.steps[t]

    def logits(self, t: int) -> torch.Tensor:
        return self.logits_all(self.tokens)[:, self.steps[t].to(self.tokens.device)]

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        self.tokens[:, self.steps[t].to(self.tokens.device)] = tokens
