"""Logit processing written once for every family: temperature, top-k, top-p, classifier-free guidance.

Guidance: zoo's `cfg = s` gives logits = uncond + s * (cond - uncond), so s = 1 is the conditional model and
s = 0 the unconditional one. The VAR reference code writes the same thing as cond + t * (cond - uncond): its
t is zoo's s - 1. With `cfg_schedule = "linear"` (the reference's ramp) the guidance of step k of K grows
with k: t_k = t * k / (K - 1), i.e. s_k = 1 + (s - 1) * k / (K - 1), so the first, coarsest steps that set the
layout are barely guided; `"constant"` uses s at every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .settings import CFG_SCHEDULES, check  # noqa: F401 - CFG_SCHEDULES lives in zoo.settings, and here as before

if TYPE_CHECKING:  # torch is imported by the methods that use it: parsing a card's preset needs none
    import torch

@dataclass(frozen=True)
class LogitProcessor:
    """How logits become a categorical draw. The defaults sample from the model's own distribution."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    cfg: float | None = None
    cfg_schedule: str = "constant"

    def __post_init__(self) -> None:
        for name in ("temperature", "top_k", "top_p", "cfg", "cfg_schedule"):
            check(name, getattr(self, name))  # the checks of zoo.settings, which every way in shares

    def guidance(self, step: int | None = None, num_steps: int | None = None) -> float:
        """The guidance scale s_k of step `step` of `num_steps`: cfg itself when constant (or when no step is
        given), 1 + (cfg - 1) * step / (num_steps - 1) when linear (the VAR reference's ramp)."""
        scale = 1.0 if self.cfg is None else float(self.cfg)
        if self.cfg_schedule == "constant" or step is None or num_steps is None or num_steps <= 1:
            return scale
        return 1.0 + (scale - 1.0) * step / (num_steps - 1)

    def guide(self, cond: torch.Tensor, uncond: torch.Tensor, step: int | None = None,
              num_steps: int | None = None) -> torch.Tensor:
        """Classifier-free guidance: uncond + s * (cond - uncond) with s = `guidance(step, num_steps)`; s = 1 is
        the conditional model (the reference's t = s - 1 = 0)."""
        return uncond + self.guidance(step, num_steps) * (cond - uncond)

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """Apply temperature, top-k and top-p to logits of shape (..., V); returns new logits."""
        import torch
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


class Guidance(float):
    """The classifier-free guidance a stepper is given as `cfg`: a float (the scale s, so a family that only
    reads the number keeps working) that also knows its schedule over the sampler's steps (`cfg_schedule`).
    A cached stepper guides with `guide(cond, uncond, step, num_steps)`, as the core's reference does."""

    schedule: str

    def __new__(cls, scale: float, schedule: str = "constant") -> "Guidance":
        obj = super().__new__(cls, scale)
        LogitProcessor(cfg=float(obj), cfg_schedule=schedule)  # the same checks as a sampling call
        obj.schedule = schedule
        return obj

    @classmethod
    def of(cls, cfg: float | None) -> "Guidance":
        """cfg as a Guidance (a plain number: constant; None: scale 1, the conditional model)."""
        if isinstance(cfg, Guidance):
            return cfg
        return cls(1.0 if cfg is None else float(cfg))

    def __repr__(self) -> str:
        return f"Guidance({float(self)!r}, schedule={self.schedule!r})"

    def __reduce__(self):
        return (Guidance, (float(self), self.schedule))

    def scale(self, step: int | None = None, num_steps: int | None = None) -> float:
        """The scale s_k of step `step` of `num_steps` (see the module docstring)."""
        return LogitProcessor(cfg=float(self), cfg_schedule=self.schedule).guidance(step, num_steps)

    def guide(self, cond: "torch.Tensor", uncond: "torch.Tensor", step: int | None = None,
              num_steps: int | None = None) -> "torch.Tensor":
        """uncond + s_k * (cond - uncond)."""
        return uncond + self.scale(step, num_steps) * (cond - uncond)

