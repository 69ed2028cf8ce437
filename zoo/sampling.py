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
    order the sampler calls `logits(t)` once, then `advance(t, tokens)` with the drawn or observed tokens.

    Optional, for two-level tokens: an attribute `logit_gaps`, a callable t -> (N, P) giving
    logits(t)[..., 1] - logits(t)[..., 0] (or None). The sampler calls it instead of `logits(t)` where a draw
    needs no more than the gap (no observed tokens, no top-k/top-p): one product fewer a step."""

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


def draw(probs: torch.Tensor, generator: torch.Generator | None, u: torch.Tensor | None = None) -> torch.Tensor:
    """Inverse-CDF draw from probs (..., V), unnormalised weights allowed: one uniform per row, so two samplers
    that see the same probabilities (up to float rounding) draw the same tokens from the same generator.
    `u`: the rows' uniforms (float64, one per row), already drawn; None draws them from `generator`."""
    flat = probs.reshape(-1, probs.shape[-1]).double()
    if u is None:
        device = generator.device if generator is not None else flat.device
        u = torch.rand(flat.shape[0], 1, generator=generator, device=device, dtype=torch.float64).to(flat.device)
    cdf = flat.cumsum(-1)
    # the first index whose cumulative weight exceeds u * total (searchsorted: one call, no tiny reductions)
    idx = torch.searchsorted(cdf, u.reshape(-1, 1) * cdf[:, -1:], right=True).clamp_(max=flat.shape[-1] - 1)
    return idx.reshape(probs.shape[:-1])


def draw_logits(logits: torch.Tensor, generator: torch.Generator | None,
                u: torch.Tensor | None = None) -> torch.Tensor:
    """`draw` from softmax(logits) without a softmax call (slow over a short last axis, e.g. 2 levels):
    exp(log_softmax) gives the same weights."""
    return draw(logits.log_softmax(-1).exp_(), generator, u)


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


def binary_thresholds(u: torch.Tensor, temperature: float) -> torch.Tensor:
    """The uniforms u of two-level draws as thresholds on l1 - l0: u >= sigmoid((l0 - l1) / T) exactly when
    l1 - l0 >= T log((1 - u) / u), so a step's draw is one comparison (`Sampler` draws a whole pass's uniforms
    at once, then converts them once). The ratio is formed in float64, its log in float32 (the logits' own
    precision: a threshold moves by about 1e-7, as a logit's rounding does)."""
    return torch.log(((1 - u) / u).float()).mul_(temperature)


class _PassUniforms:
    """Every uniform of one unobserved pass, drawn in one call at its start: step t's rows (n * its positions)
    in step order. On CPU these are the very numbers one call per step would draw; anywhere, the naive and the
    cached stepper of a model see the same ones, so they still draw the same tokens."""

    def __init__(self, n: int, sizes: list[int], generator: torch.Generator | None, device: torch.device | str,
                 temperature: float) -> None:
        gen_device = generator.device if generator is not None else device
        total = n * sum(sizes)
        self.u = torch.rand(total, generator=generator, device=gen_device, dtype=torch.float64).to(device)
        self.n, self.sizes, self.temperature = n, sizes, temperature
        self.steps = self.u.split([n * s for s in sizes])
        self.thresholds: list[torch.Tensor] | tuple[torch.Tensor, ...] | None = None
        self.columns: list[torch.Tensor] | tuple[torch.Tensor, ...] | None = None   # u as (n, positions, 1)
        self.diff: torch.Tensor | None = None  # (-1, 1): logits @ diff = l1 - l0 in one call

    def _per_step(self, values: torch.Tensor, trailing: tuple[int, ...] = ()) -> list[torch.Tensor] | tuple:
        """`values` (one per uniform) cut into steps, each shaped (n, positions, *trailing)."""
        if len(set(self.sizes)) == 1:  # raster steps: one view
            return values.view(len(self.sizes), self.n, self.sizes[0], *trailing).unbind(0)
        return [part.view(self.n, s, *trailing)
                for part, s in zip(values.split([self.n * s for s in self.sizes]), self.sizes)]

    def _thresholds(self) -> list[torch.Tensor] | tuple[torch.Tensor, ...]:
        """Each step's thresholds shaped as its tokens (n, positions)."""
        return self._per_step(binary_thresholds(self.u, self.temperature))

    def pick(self, t: int, logits: torch.Tensor) -> torch.Tensor:
        """Step t's draw from logits (N, P, V), no top-k/top-p: two levels by one product and one comparison
        against the step's thresholds, more by `choose_levels`."""
        if logits.shape[-1] != 2:
            return self.choose_levels(t, logits)
        diff = self.diff
        if diff is None or diff.dtype != logits.dtype or diff.device != logits.device:
            diff = self.diff = torch.tensor([-1.0, 1.0], dtype=logits.dtype, device=logits.device)
            if self.thresholds is None:
                self.thresholds = self._thresholds()
        return torch.ge(logits @ diff, self.thresholds[t]).long()

    def pick_gap(self, t: int, gaps: torch.Tensor) -> torch.Tensor:
        """Step t's two-level draw from the gaps l1 - l0 (N, P): one comparison, as `pick` makes it."""
        if self.thresholds is None:
            self.thresholds = self._thresholds()
        return torch.ge(gaps, self.thresholds[t]).long()

    def choose_levels(self, t: int, logits: torch.Tensor) -> torch.Tensor:
        """Step t's inverse-CDF draw from logits (N, P, V) at temperature T, no top-k/top-p: the first level whose
        cumulative probability (softmax in float64) exceeds u, as `draw` finds it, in four calls."""
        if self.columns is None:
            self.columns = self._per_step(self.u, (1,))
        if self.temperature != 1.0:
            logits = logits / self.temperature
        cdf = torch.softmax(logits, -1, dtype=torch.float64).cumsum_(-1)
        return torch.searchsorted(cdf, self.columns[t], right=True).clamp_(max=logits.shape[-1] - 1).squeeze(-1)


class Sampler:
    """Drives a Stepper from first to last step, drawing tokens through one LogitProcessor."""

    def __init__(self, processor: LogitProcessor | None = None) -> None:
        self.processor = processor or LogitProcessor()

    def _binary(self, logits: torch.Tensor) -> bool:
        return logits.shape[-1] == 2 and self.processor.top_k is None and self.processor.top_p is None

    def choose(self, logits: torch.Tensor, generator: torch.Generator | None,
               u: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens (...) drawn from logits (..., V) through the processor; `u`: the rows' uniforms, if drawn."""
        if self.processor.temperature == 0:
            return logits.argmax(-1)
        if u is None and self._binary(logits):
            return draw_binary(logits, self.processor.temperature, generator)
        return draw_logits(self.processor.process(logits), generator, u)

    @torch.no_grad()
    def run(self, stepper: Stepper, n: int, num_tokens: int, *, generator: torch.Generator | None = None,
            observed: torch.Tensor | None = None, observed_mask: torch.Tensor | None = None,
            device: torch.device | str = "cpu", on_step: Callable[[int], None] | None = None) -> torch.Tensor:
        """Return tokens (n, num_tokens). Where observed_mask (n, num_tokens) is True, observed is kept.

        A pass without observed tokens draws all its uniforms at its start (`_PassUniforms`); a completion
        draws step by step, only where a step has something to draw."""
        steps = []
        for t in range(stepper.num_steps):
            pos = stepper.positions(t)
            steps.append(pos if isinstance(pos, torch.Tensor) and pos.dim() == 1
                         else torch.as_tensor(pos, dtype=torch.long).reshape(-1))  # an int, a 0-d tensor, a list
        chosen_steps: list[torch.Tensor] = []
        if observed_mask is None and self.processor.temperature != 0:
            # the common pass, in a loop with nothing else in it: a CPU step costs a few microseconds a call
            pass_u = _PassUniforms(n, [len(p) for p in steps], generator, device, self.processor.temperature)
            logits_of, advance, keep = stepper.logits, stepper.advance, chosen_steps.append
            if self.processor.top_k is not None or self.processor.top_p is not None:
                pick = lambda t, logits: self.choose(logits, generator, pass_u.steps[t])  # noqa: E731
            elif callable(getattr(stepper, "logit_gaps", None)):
                logits_of, pick = stepper.logit_gaps, pass_u.pick_gap
            else:
                pick = pass_u.pick
            for t in range(len(steps)):
                chosen = pick(t, logits_of(t))
                keep(chosen)
                advance(t, chosen)
                if on_step is not None:
                    on_step(t)
        else:
            for t, pos in enumerate(steps):
                logits = stepper.logits(t)  # always: a step's logits are part of the pass, observed or not
                if observed_mask is not None:
                    keep_t = observed_mask[:, pos]
                    if bool(keep_t.all()):
                        chosen = observed[:, pos]
                    else:
                        chosen = torch.where(keep_t, observed[:, pos], self.choose(logits, generator))
                else:
                    chosen = self.choose(logits, generator)
                chosen_steps.append(chosen)
                stepper.advance(t, chosen)
                if on_step is not None:
                    on_step(t)
        tokens = torch.zeros(n, num_tokens, dtype=torch.long, device=device)
        if steps:
            tokens[:, torch.cat(steps).to(device)] = torch.cat(chosen_steps, 1).to(device)
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
