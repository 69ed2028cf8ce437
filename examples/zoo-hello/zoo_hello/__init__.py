"""zoo-hello: the smallest useful zoo plugin (a template for third-party plugins).

`plugin` is the object the entry point `hello = "zoo_hello:plugin"` points at: zoo imports this module
only when it discovers plugins, reads the architectures and the cards and weights folders, and does the rest.
"""
from __future__ import annotations

from pathlib import Path

import zoo

from .model import IndependentPixels

__version__ = "0.2.0"

plugin = zoo.Plugin(
    name="hello",  # must equal the entry-point name and the `plugin` field of every card shipped here
    version=__version__,
    architectures={"pixels": IndependentPixels},
    cards_dir=Path(__file__).parent / "cards",      # the cards it ships
    weights_dir=Path(__file__).parent / "weights",  # their bundled weights files
    description="independent pixels: one learned categorical per sub-pixel (an example plugin)",
)

__all__ = ["IndependentPixels", "plugin"]
