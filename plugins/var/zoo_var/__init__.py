"""zoo's VAR plugin: a multi-scale residual VQ-VAE tokenizer and next-scale prediction (arXiv 2404.02905)."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import zoo
from zoo.cards import first_party_cards_dir

__version__ = "0.3.0"

plugin = zoo.Plugin(
    name="var",
    version=__version__,
    # imported on first use: listing cards needs no torch
    architectures={"var": "zoo_var.var:VAR"},
    tokenizers={"vqvae": "zoo_var.vqvae:VQVAE"},
    cards_dir=first_party_cards_dir("var"),
    weights_dir=Path(__file__).parent / "weights",
    description="VQ-VAE + VAR: visual autoregressive modeling by next-scale prediction (arXiv 2404.02905)",
)

_LAZY = {"VAR": "var", "ScaleStepper": "var", "VQVAE": "vqvae", "MultiScaleTokenizer": "vqvae"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'zoo_var' has no attribute '{name}'")


__all__ = ["MultiScaleTokenizer", "ScaleStepper", "VAR", "VQVAE", "plugin"]
