"""Which masks a model completes exactly: the core's one decision, taken before any stepper is built.

A completion teacher-forces the observed tokens and draws the others in the family's generation order. That is
the exact conditional p(hidden | observed) only when no hidden token is drawn before an observed one: the order
must generate the observed tokens first. The tokens of one step are drawn independently given the earlier
steps, so a step may mix observed and hidden tokens when every earlier step is wholly observed.

`completion_steps` is what every completion path calls (`Model.make_stepper`, `Model.complete`, hence the CLI):
the family's `generation_steps(observed_mask)` answers first and may refuse the mask; an order that does not put
the observed tokens first is then refused, unless the family declares its completion a documented
approximation (`Model.approximate_completion`, VAR's zero-shot scheme).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from .errors import InputError

if TYPE_CHECKING:
    from .model import Model


def is_prefix(mask: torch.Tensor) -> bool:
    """Whether the observed tokens of a (T,) mask are exactly the first K tokens (K = its count)."""
    mask = mask.reshape(-1).bool()
    return bool(mask[: int(mask.sum())].all())


def first_out_of_order(steps: Sequence[torch.Tensor], mask: torch.Tensor) -> tuple[int, int] | None:
    """(a hidden token, an observed token generated at a later step) when the order does not put the observed
    tokens of a (T,) mask first; None when it does."""
    mask = mask.reshape(-1).bool().cpu()
    hidden = None
    for step in steps:
        step = torch.as_tensor(step).reshape(-1).cpu()
        seen = mask[step]
        if hidden is not None and bool(seen.any()):
            return hidden, int(step[seen][0])
        if hidden is None and not bool(seen.all()):
            hidden = int(step[~seen][0])
    return None


def any_mask_models() -> list[str]:
    """Ids of the installed models whose family says they complete any mask (`completes_any_mask`): exactly, or
    by the approximation the family documents (`approximate_completion`)."""
    from .api import list_models
    from .plugins import registry
    reg, ids = registry(), []
    for model_id in list_models():
        card = reg.cards[model_id]
        try:
            cls = reg.architectures[card.architecture][1]
            if bool(getattr(cls, "completes_any_mask", lambda config: False)(card.config)):
                ids.append(model_id)
        except Exception:  # noqa: BLE001 - a plugin that does not import must not break an error message
            continue
    return ids


def any_mask_hint() -> str:
    """The sentence a refusal ends with: which installed models complete any mask."""
    ids = any_mask_models()
    if not ids:
        return "No installed model declares that it completes any mask."
    return f"Models that complete any mask: {', '.join(ids)}."


def _name(model: Model) -> str:
    return model.card.id if getattr(model, "card", None) is not None else type(model).__name__


def raster_refusal(model: Model) -> str:
    """The refusal of a mask that is not a raster prefix by a family that generates in raster order."""
    return (f"{_name(model)} generates its tokens in raster order, so it completes only masks whose observed "
            "tokens come first in that order (top-half or first:K on one-channel images); this mask is not one. "
            f"{any_mask_hint()}")


def completion_steps(model: Model, observed_mask: torch.Tensor | None) -> list[torch.Tensor]:
    """The generation steps of a completion with this (T,) observed mask, or an InputError saying why the model
    cannot complete it exactly and which models can."""
    steps = model.generation_steps(observed_mask)
    if observed_mask is None or getattr(model, "approximate_completion", ""):
        return steps
    bad = first_out_of_order(steps, observed_mask)
    if bad is not None:
        hidden, observed = bad
        raise InputError(f"{_name(model)} would generate token {hidden} (hidden) before token {observed} "
                         "(observed) for this mask, so its completion would not be the exact conditional; it "
                         "completes masks whose observed pixels come first in its generation order. "
                         f"{any_mask_hint()}")
    return steps


__all__ = ["any_mask_hint", "any_mask_models", "completion_steps", "first_out_of_order", "is_prefix",
           "raster_refusal"]
