"""Shared test fixtures: small data that the tests make themselves (never the real datasets)."""
from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an (optionally gzipped) IDX file, the MNIST format."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)


def fake_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 'digits': a bright bar at a label-dependent position on a dark background, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    for i, y in enumerate(labels):
        images[i, 4:24, 2 + 2 * y: 5 + 2 * y] = 230
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory) -> Path:
    """A data root in torchvision's MNIST layout with 5,200 train and 200 test synthetic images."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for part, n in (("train", 5200), ("t10k", 200)):
        images, labels = fake_digits(n, seed=1 if part == "train" else 2)
        write_idx(raw / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{part}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture
def tiny_made():
    import zoo
    return zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[16, 16], num_masks=2, seed=3)
