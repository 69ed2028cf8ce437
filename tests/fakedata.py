"""Small data the tests make themselves: IDX files in torchvision's MNIST layout (never the real dataset)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from zoo.data import ImageData


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


def make_mnist(root: Path, n_train: int = 5200, n_test: int = 200) -> Path:
    """A data root in torchvision's MNIST layout (the train split is n_train - 5,000 images)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for part, n in (("train", n_train), ("t10k", n_test)):
        images, labels = fake_digits(n, seed=1 if part == "train" else 2)
        write_idx(raw / f"{part}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{part}-labels-idx1-ubyte.gz", labels)
    return root


def tiny_data(n: int, split: str, dynamic: bool) -> ImageData:
    """n random 3x3 binary-MNIST-like images for training tests: dynamically binarized (train) or fixed 0/255."""
    g = torch.Generator().manual_seed(0 if split == "train" else 1)
    images = (torch.rand(n, 1, 3, 3, generator=g) * 255).to(torch.uint8)
    if not dynamic:
        images = (images > 127).to(torch.uint8) * 255
    return ImageData("mnist-bin", split, "synthetic", images, torch.zeros(n, dtype=torch.long), ("0",),
                     "test data", dynamic_binarization=dynamic)


def make_image_folder(root: Path, classes: tuple[str, ...] | None = ("bars", "blobs"), n: int = 10,
                      colour: bool = True, seed: int = 0, odd: bool = True) -> Path:
    """An image folder the tests make: n images per class subfolder (classes=None: n flat images), of mixed
    sizes and, with odd=True, mixed modes and formats (RGB, L, RGBA, P, 16-bit grey, JPEG)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for label, cls in enumerate(classes or ("",)):
        folder = root / cls if cls else root
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = (int(s) for s in rng.integers(9, 40, 2)) if odd else (16, 16)
            a = (rng.random((h, w, 3)) * 60).astype(np.uint8)
            if label % 2:
                a[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = (220, 60, 60)
            else:
                a[:, w // 3: w // 2] = (60, 200, 220)
            im = Image.fromarray(a if colour else a.mean(2).astype(np.uint8))
            kind = i % 6 if odd else 0
            if kind == 1:
                im = im.convert("L")
            elif kind == 2:
                im = im.convert("RGBA")
            elif kind == 3:
                im = im.convert("P")
            elif kind == 4:
                im = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)
            suffix = ".jpg" if kind == 5 else ".png"
            im.save(folder / f"img{i:03d}{suffix}", quality=95) if suffix == ".jpg" else im.save(folder / f"img{i:03d}.png")
    return root


def tiny_made_recipe(description: str = "a tiny MADE for the tests", **training) -> str:
    """A card recipe (TOML) of a tiny binary MADE on mnist-bin, with these [training] settings."""
    table = {"epochs": 2, "batch_size": 50, "lr": 0.01, "checkpoint_every": 2, "val_n": 20, **training}
    lines = [f"{k} = {v!r}" for k, v in table.items()]
    return (f'id = "tiny-made"\nplugin = "made"\narchitecture = "made"\ndescription = "{description}"\n\n'
            '[data]\ndataset = "mnist-bin"\n\n[config]\nimage_shape = [1, 28, 28]\nlevels = 2\nhidden = [8]\n'
            'num_masks = 1\nseed = 0\n\n[training]\n' + "\n".join(lines) + "\n")
