"""Which masks a model completes exactly: the core's one decision, taken before any stepper is built.

A completion teacher-forces the observed tokens and draws the others in the family's generation order. That is
the exact conditional p(hidden | observed) only when no hidden token is drawn before an observed one: the order
must generate the observed tokens first. The tokens of one step are drawn independently given the earlier
steps, so a step may mix observed and hidden tokens when every earlier step is wholly observed.

`completion_steps` is what every completion path calls (`Model.make_stepper`, `Model.complete`, hence the CLI):
the family's `generation_steps(observed_mask)` answers first and may refuse the mask; an order that does not put
the observed tokens first is then refused. A family may declare its completion of such masks a documented
approximation (`Model.approximate_completion`, VAR's zero-shot scheme): the caller then accepts it by name
(`Model.complete(..., approximate=True)`, `zoo complete --approximate`); `approximate=False` refuses it, and
not saying (`None`) accepts it with a FutureWarning, as zoo before 0.4 did silently, until 1.0 refuses it.
"""
from __future__ import annotations

import contextlib
import warnings
from contextvars import ContextVar
from typing import TYPE_CHECKING, Iterator, Sequence

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
    return (f"Models that complete any mask: {', '.join(ids)} (where not exactly, by an approximation each names, "
            "accepted with approximate=True or zoo complete --approximate).")


def _name(model: Model) -> str:
    return model.card.id if getattr(model, "card", None) is not None else type(model).__name__


def raster_refusal(model: Model) -> str:
    """The refusal of a mask that is not a raster prefix by a family that generates in raster order."""
    return (f"{_name(model)} generates its tokens in raster order, so it completes only masks whose observed "
            "tokens come first in that order (top-half or first:K on one-channel images); this mask is not one. "
            f"{any_mask_hint()}")


#: whether the completion being drawn accepts a family's documented approximation (True), refuses it (False)
#: or did not say (None); set by `approximation` around a completion, per thread and task
_APPROXIMATE: ContextVar[bool | None] = ContextVar("zoo_approximate_completion", default=None)


@contextlib.contextmanager
def approximation(allowed: bool | None) -> Iterator[None]:
    """Within the block, completions accept (True) or refuse (False) a family's documented approximation;
    None keeps the 0.x default (accepted with a FutureWarning). `Model.complete(approximate=...)` uses it."""
    if allowed is not None and not isinstance(allowed, bool):
        raise InputError(f"approximate must be True, False or None, got {allowed!r}")
    token = _APPROXIMATE.set(allowed)
    try:
        yield
    finally:
        _APPROXIMATE.reset(token)


def completion_steps(model: Model, observed_mask: torch.Tensor | None) -> list[torch.Tensor]:
    """The generation steps of a completion with this (T,) observed mask, or an InputError saying why the model
    cannot complete it exactly and which models can. A family's documented approximation is used only as
    `approximation` allows (see the module docstring)."""
    steps = model.generation_steps(observed_mask)
    if observed_mask is None:
        return steps
    if model.completes_exactly(observed_mask, steps):
        return steps
    bad = first_out_of_order(steps, observed_mask)
    approx, allowed = getattr(model, "approximate_completion", ""), _APPROXIMATE.get()
    if approx and allowed:
        return steps
    if approx and allowed is None:
        warnings.warn(f"{_name(model)} cannot complete this mask exactly; it completes it by an approximation "
                      f"({approx}). Pass approximate=True to accept that (zoo complete --approximate), "
                      "approximate=False to refuse it; zoo 1.0 refuses it unless approximate=True",
                      FutureWarning, stacklevel=2)
        return steps
    if approx:
        raise InputError(f"{_name(model)} cannot complete this mask as the exact conditional; it completes it only by "
                         f"an approximation ({approx}). Accept that with approximate=True in Python, or zoo complete "
                         "--approximate.")
    if bad is None:
        raise InputError(f"{_name(model)} says its completion of this mask would not be the exact conditional "
                         f"(completes_exactly). {any_mask_hint()}")
    hidden, observed = bad
    why = (f"{_name(model)} would generate token {hidden} (hidden) before token {observed} (observed) for this "
           "mask, so its completion would not be the exact conditional; it completes exactly the masks whose "
           "observed pixels come first in its generation order.")
    raise InputError(f"{why} {any_mask_hint()}")


__all__ = ["any_mask_hint", "any_mask_models", "approximation", "completion_steps", "first_out_of_order",
           "is_prefix", "raster_refusal"]
