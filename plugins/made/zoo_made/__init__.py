"""zoo's MADE plugin: masked autoencoders for distribution estimation (Germain et al. 2015)."""
from __future__ import annotations

from pathlib import Path

import zoo
from zoo.cards import first_party_cards_dir

from .model import MADE

__version__ = "0.2.0"

plugin = zoo.Plugin(
    name="made",
    version=__version__,
    architectures={"made": MADE},
    cards_dir=first_party_cards_dir("made"),
    weights_dir=Path(__file__).parent / "weights",
    description="MADE: masked autoencoder for distribution estimation (arXiv 1502.03509)",
)

__all__ = ["MADE", "plugin"]
