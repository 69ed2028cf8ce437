"""zoo's PixelCNN plugin: masked convolutions (mask A/B) and gated PixelCNN stacks with cached sampling."""
from __future__ import annotations

from pathlib import Path

import zoo
from zoo.cards import first_party_cards_dir

from .model import CachedStepper, PixelCNN

__version__ = "0.2.0"

plugin = zoo.Plugin(
    name="pixelcnn",
    version=__version__,
    architectures={"pixelcnn": PixelCNN},
    cards_dir=first_party_cards_dir("pixelcnn"),
    weights_dir=Path(__file__).parent / "weights",
    description="PixelCNN and Gated PixelCNN (arXiv 1601.06759, 1606.05328)",
)

__all__ = ["CachedStepper", "PixelCNN", "plugin"]
