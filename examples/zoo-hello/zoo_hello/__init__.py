"""zoo-hello: the smallest useful zoo plugin (a template for third-party plugins).

`plugin` is the object the entry point `hello = "zoo_hello:plugin"` points at: zoo imports this module
only when it discovers plugins, reads the architectures and the cards and weights folders, and does the rest.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import zoo

__version__ = "0.2.0"

plugin = zoo.Plugin(
    name="hello",  # must equal the entry-point name and the `plugin` field of every card shipped here
    version=__version__,
    # "module:Class": imported on first use, so `zoo list` and `zoo info` never import torch for this plugin
    architectures={"pixels": "zoo_hello.model:IndependentPixels"},
    cards_dir=Path(__file__).parent / "cards",      # the cards it ships
    weights_dir=Path(__file__).parent / "weights",  # their bundled weights files
    description="independent pixels: one learned categorical per sub-pixel (an example plugin)",
)


def __getattr__(name: str) -> Any:
    """`zoo_hello.IndependentPixels` still works: the class is imported when first asked for."""
    if name == "IndependentPixels":
        return importlib.import_module(".model", __name__).IndependentPixels
    raise AttributeError(f"module 'zoo_hello' has no attribute '{name}'")


__all__ = ["IndependentPixels", "plugin"]
