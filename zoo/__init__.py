"""zoo: a plugin-based zoo of autoregressive image models.

    import zoo
    m = zoo.load("made-mnist-bin")      # weights verified and loaded, eval mode
    x = m.sample(64, seed=0)            # float images in [0, 1], (64, 1, 28, 28)
    m.log_prob(x)                       # exact, nats per image
    m.complete(x, zoo.masks.top_half(x))
"""
from __future__ import annotations

from . import heads, masks
from .api import create, get_card, list_architectures, list_models, load
from .cards import Card, Metric, read_card
from .errors import (CardError, DataError, InputError, PluginError, UnknownModelError, WeightsError,
                     ZooError)
from .logits import LogitProcessor
from .model import Model, make_generator
from .plugins import Plugin
from .sampling import FullRecomputeStepper, Sampler, Stepper
from .tokenizers import PixelTokenizer, Tokenizer

__version__ = "0.1.0"

__all__ = [
    "Card", "CardError", "DataError", "FullRecomputeStepper", "InputError", "LogitProcessor", "Metric", "Model",
    "PixelTokenizer", "Plugin", "PluginError", "Sampler", "Stepper", "Tokenizer", "UnknownModelError",
    "WeightsError", "ZooError", "create", "get_card", "heads", "list_architectures", "list_models", "load",
    "make_generator", "masks", "read_card",
]
