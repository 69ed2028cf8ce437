"""Errors that zoo raises: each says what was wrong and what to do about it."""
from __future__ import annotations


class ZooError(Exception):
    """Base class of every error zoo raises on purpose (the CLI prints these without a traceback)."""


class UnknownModelError(ZooError, KeyError):
    """A model id or architecture that no installed plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CardError(ZooError):
    """A model card that is missing a field, has a wrong type, or cannot be parsed."""


class WeightsError(ZooError):
    """Weights that cannot be found, are corrupt, or do not match their card."""


class DataError(ZooError):
    """A dataset that is missing or malformed."""


class InputError(ZooError, ValueError):
    """Images, masks or arguments of the wrong shape, type or range."""


class PluginError(ZooError):
    """A plugin that failed to load, or two plugins claiming one id."""


class LockedError(ZooError):
    """A run folder or shared file that another process holds (the message names it: pid, host, start)."""


class UnverifiedWeightsWarning(UserWarning):
    """An explicit weights file whose sha256 is not the card's was loaded: the model is not the card's model."""


class PluginDependencyWarning(UserWarning):
    """An installed plugin whose metadata requires `zoo`, zoo 0.1's distribution name (zoo is published as
    ar-zoo): it loads, but installing it anew does not resolve. The message says the one line to change."""
