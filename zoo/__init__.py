"""zoo: a plugin-based zoo of autoregressive image models.

    import zoo
    m = zoo.load("made-mnist-bin")      # weights verified and loaded, eval mode
    x = m.sample(64, seed=0)            # float images in [0, 1], (64, 1, 28, 28)
    m.log_prob(x)                       # exact, nats per image
    m.complete(x, zoo.masks.top_half(x))

Names are imported on first use (PEP 562), so `import zoo` and the commands that only read cards (`zoo list`,
`info`, `plugins`, `--help`) never pay for importing torch.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .cards import Card, Metric, read_card
from .datasets import Dataset, list_datasets
from .errors import (CardError, DataError, InputError, LockedError, PluginDependencyWarning, PluginError,
                     UnknownModelError, UnverifiedWeightsWarning, WeightsError, ZooError)
from .plugins import Plugin

__version__ = "0.4.0"

# public name -> the submodule that defines it (imported, with torch, when first asked for)
_LAZY = {
    "create": "api", "get_card": "api", "list_architectures": "api", "list_models": "api", "load": "api",
    "list_tokenizers": "api",
    "LogitProcessor": "logits", "Model": "model", "make_generator": "model", "LearnedTokenizer": "model",
    "Trainable": "model", "SamplingSettings": "settings",
    "FullRecomputeStepper": "sampling", "Sampler": "sampling", "Stepper": "sampling",
    "PixelTokenizer": "tokenizers", "Tokenizer": "tokenizers",
}
_SUBMODULES = {"masks", "api", "cards", "data", "distributed", "evaluate", "export", "fid", "grid", "logits",
               "model", "plugins", "sampling", "tokenizers", "train", "weights", "errors", "threads", "floors", "presets",
               "image_folder", "datasets", "locking", "heads", "testing", "records", "cache", "completion",
               "settings"}

if TYPE_CHECKING:  # for type checkers and IDEs: the names as if imported eagerly
    from . import masks  # noqa: F401
    from .api import create, get_card, list_architectures, list_models, list_tokenizers, load  # noqa: F401
    from .logits import LogitProcessor  # noqa: F401
    from .model import LearnedTokenizer, Model, Trainable, make_generator  # noqa: F401
    from .sampling import FullRecomputeStepper, Sampler, Stepper  # noqa: F401
    from .settings import SamplingSettings  # noqa: F401
    from .tokenizers import PixelTokenizer, Tokenizer  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'zoo' has no attribute '{name}'")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    "Card", "CardError", "DataError", "Dataset", "FullRecomputeStepper", "InputError", "LearnedTokenizer",
    "LockedError", "LogitProcessor", "Metric", "Model", "PixelTokenizer", "Plugin", "PluginDependencyWarning",
    "PluginError", "Sampler", "SamplingSettings",
    "Stepper", "Tokenizer", "Trainable", "UnknownModelError", "UnverifiedWeightsWarning", "WeightsError", "ZooError",
    "create", "get_card", "heads", "list_architectures", "list_datasets", "list_models", "list_tokenizers", "load",
    "make_generator", "masks", "read_card",
]
