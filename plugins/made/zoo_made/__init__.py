"""zoo's MADE plugin: masked autoencoders for distribution estimation (Germain et al. 2015)."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import zoo
from zoo.cards import first_party_cards_dir

__version__ = "0.3.0"

plugin = zoo.Plugin(
    name="made",
    version=__version__,
    architectures={"made": "zoo_made.model:MADE"},  # imported on first use: listing cards needs no torch
    cards_dir=first_party_cards_dir("made"),
    weights_dir=Path(__file__).parent / "weights",
    description="MADE: masked autoencoder for distribution estimation (arXiv 1502.03509)",
)


def __getattr__(name: str) -> Any:
    if name == "MADE":
        return importlib.import_module(".model", __name__).MADE
    raise AttributeError(f"module 'zoo_made' has no attribute '{name}'")


__all__ = ["MADE", "plugin"]
