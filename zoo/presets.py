"""Sampling presets: a card's recommended way of sampling (its optional `[sampling]` table, a
`zoo.SamplingSettings` with the fields it sets).

`Model.sample` and `zoo sample` / `zoo eval --fid` use the preset by default; every argument given overrides
its key, and `preset=False` (`--no-preset`) samples from the model's own distribution (no filtering, no
guidance, the null class of a class-conditional model), as zoo did before presets existed.
"""
from __future__ import annotations

from typing import Any

from .errors import InputError
from .settings import CLASS_CHOICES, UNSET, SamplingSettings  # noqa: F401 - their home is zoo.settings

#: the preset keys, their TOML types, and the value used when neither the preset nor the caller sets one
#: (SamplingSettings' fields: a new setting is added there)
PRESET_KEYS: dict[str, tuple[tuple[type, ...], Any]] = {name: (s.toml, s.default)
                                                         for name, s in SamplingSettings.spec().items()}


def check_preset(table: Any, source: str = "<card>") -> dict[str, Any]:
    """Validate a card's [sampling] table (`SamplingSettings.from_preset`); errors name the card and the field."""
    SamplingSettings.from_preset(table, source)
    return table


def resolve(preset: dict[str, Any] | None, **given: Any) -> dict[str, Any]:
    """Every preset key's value: the caller's where given (not UNSET), else the preset's, else the default."""
    unknown = set(given) - set(PRESET_KEYS)
    if unknown:
        raise InputError(f"unknown sampling setting(s) {sorted(unknown)}; known: {', '.join(PRESET_KEYS)}")
    given_settings = SamplingSettings(**{k: v for k, v in given.items() if v is not UNSET})
    return given_settings.over(SamplingSettings(**(preset or {})).over(SamplingSettings.defaults())).given()


def describe(preset: dict[str, Any]) -> str:
    """One line for `zoo info`: the preset as key=value pairs, in the card's order."""
    return ", ".join(f"{k}={v}" for k, v in preset.items()) if preset else "none"
