"""Sampling presets: a card's recommended way of sampling (its optional `[sampling]` table).

`Model.sample` and `zoo sample` / `zoo eval --fid` use the preset by default; every argument given overrides
its key, and `preset=False` (`--no-preset`) samples from the model's own distribution (no filtering, no
guidance, the null class of a class-conditional model), as zoo did before presets existed.
"""
from __future__ import annotations

from typing import Any

from .errors import CardError, InputError
from .logits import CFG_SCHEDULES, LogitProcessor

#: how a class-conditional model picks classes when none is given: one per image, uniformly (the VAR paper's
#: evaluation), or the null class (the unconditional model that class dropout trains)
CLASS_CHOICES = ("uniform", "null")

#: the preset keys, their TOML types, and the value used when neither the preset nor the caller sets one
PRESET_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {
    "temperature": ((int, float), 1.0),
    "top_k": ((int,), None),
    "top_p": ((int, float), None),
    "cfg": ((int, float), None),
    "cfg_schedule": ((str,), "constant"),
    "classes": ((str,), None),
}


class _Unset:
    """The default of a sampling argument that was not given (so that None can mean "off")."""

    _instance: "_Unset | None" = None

    def __new__(cls) -> "_Unset":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


#: marks an argument the caller did not give: the preset's value (or the plain default) is used
UNSET: Any = _Unset()


def check_preset(table: Any, source: str = "<card>") -> dict[str, Any]:
    """Validate a card's [sampling] table; errors name the card and the field."""
    if not isinstance(table, dict):
        raise CardError(f"{source}: 'sampling' must be a table")
    for key, value in table.items():
        if key not in PRESET_KEYS:
            raise CardError(f"{source}: unknown field 'sampling.{key}'; a sampling preset takes "
                            f"{', '.join(PRESET_KEYS)}")
        types = PRESET_KEYS[key][0]
        if isinstance(value, bool) or not isinstance(value, types):
            raise CardError(f"{source}: field 'sampling.{key}' must be {' or '.join(t.__name__ for t in types)}, "
                            f"got {type(value).__name__} {value!r}")
    if "classes" in table and table["classes"] not in CLASS_CHOICES:
        raise CardError(f"{source}: field 'sampling.classes' must be one of {', '.join(map(repr, CLASS_CHOICES))}, "
                        f"got {table['classes']!r}")
    if table.get("cfg_schedule", "constant") not in CFG_SCHEDULES:
        raise CardError(f"{source}: field 'sampling.cfg_schedule' must be one of "
                        f"{', '.join(map(repr, CFG_SCHEDULES))}, got {table['cfg_schedule']!r}")
    try:
        LogitProcessor(**{k: v for k, v in table.items() if k != "classes"})
    except InputError as e:
        raise CardError(f"{source}: bad [sampling] preset: {e}") from None
    return table


def resolve(preset: dict[str, Any] | None, **given: Any) -> dict[str, Any]:
    """Every preset key's value: the caller's where given (not UNSET), else the preset's, else the default."""
    preset = preset or {}
    unknown = set(given) - set(PRESET_KEYS)
    if unknown:
        raise InputError(f"unknown sampling setting(s) {sorted(unknown)}; known: {', '.join(PRESET_KEYS)}")
    return {k: given[k] if given.get(k, UNSET) is not UNSET else preset.get(k, default)
            for k, (_, default) in PRESET_KEYS.items()}


def describe(preset: dict[str, Any]) -> str:
    """One line for `zoo info`: the preset as key=value pairs."""
    return ", ".join(f"{k}={v}" for k, v in preset.items()) if preset else "none"
