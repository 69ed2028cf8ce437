"""Shared test fixtures: small data that the tests make themselves (never the real datasets)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

from fakedata import fake_digits, make_mnist, write_idx  # noqa: E402,F401  (shared with tests/reliability.py)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A data root in torchvision's MNIST layout with 5,200 train and 200 test synthetic images."""
    return make_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture
def tiny_made():
    import zoo
    return zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[16, 16], num_masks=2, seed=3)
