"""zoo's VAR plugin: a multi-scale residual VQ-VAE tokenizer and next-scale prediction (arXiv 2404.02905)."""
from __future__ import annotations

from pathlib import Path

import zoo
from zoo.cards import first_party_cards_dir

from .var import VAR, ScaleStepper
from .vqvae import VQVAE, MultiScaleTokenizer

__version__ = "0.2.0"

plugin = zoo.Plugin(
    name="var",
    version=__version__,
    architectures={"var": VAR},
    tokenizers={"vqvae": VQVAE},
    cards_dir=first_party_cards_dir("var"),
    weights_dir=Path(__file__).parent / "weights",
    description="VQ-VAE + VAR: visual autoregressive modeling by next-scale prediction (arXiv 2404.02905)",
)

__all__ = ["MultiScaleTokenizer", "ScaleStepper", "VAR", "VQVAE", "plugin"]
