"""zoo's PixelCNN plugin: masked convolutions (mask A/B) and gated PixelCNN stacks with cached sampling."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import zoo
from zoo.cards import first_party_cards_dir

__version__ = "0.3.0"

plugin = zoo.Plugin(
    name="pixelcnn",
    version=__version__,
    architectures={"pixelcnn": "zoo_pixelcnn.model:PixelCNN"},  # imported on first use: listing needs no torch
    cards_dir=first_party_cards_dir("pixelcnn"),
    weights_dir=Path(__file__).parent / "weights",
    description="PixelCNN and Gated PixelCNN (arXiv 1601.06759, 1606.05328)",
)


def __getattr__(name: str) -> Any:
    if name in ("CachedStepper", "PixelCNN", "widen_kernels"):
        return getattr(importlib.import_module(".model", __name__), name)
    raise AttributeError(f"module 'zoo_pixelcnn' has no attribute '{name}'")


__all__ = ["CachedStepper", "PixelCNN", "plugin", "widen_kernels"]
