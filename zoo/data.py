"""The built-in datasets, `mnist`, `mnist-bin`, `cifar10`, `cifar10-gray`: their one home (names, shapes,
classes, layouts, presence checks, readers, `builtin_datasets` for the registry), and `ImageData`, `data_root`
and `load_dataset`, which reads a split of any registered dataset (the lookup is `zoo.datasets`; the `Dataset`
contract is `zoo.plugins`'). The registry imports this module (by name) to list datasets, so it imports neither
torch nor numpy at module level: the readers import them when a split is read.

Root folder: `--data-dir`, else `ZOO_DATA_DIR`, else ~/.cache/zoo/data. Layouts read:
  MNIST     ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]   (torchvision's)
  CIFAR-10  ROOT/cifar-10-batches-py/                 (torchvision's; the original data)  -> copy "cifar10"
            ROOT/cifar10/{train,test}/<class>/*.png   (image folder of the original)      -> copy "cifar10"
            ROOT/cifar10-jpeg/{train,test}/<class>/*  (the JPEG re-encoded offline copy)  -> copy "cifar10-jpeg"
Splits: `train` is the training file less its last 5,000 images, `val` is those 5,000, `test` is the test file.
Binarized MNIST (`mnist-bin`): train batches are binarized afresh each time (dynamic Bernoulli); val and test
are binarized once, Bernoulli(pixel/255) with a fixed torch.Generator seed (val 1, test 0), in file order.
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import zoo_cache
from .datasets import get_dataset
from .errors import DataError
from .plugins import Dataset

if TYPE_CHECKING:  # the readers import numpy and torch: listing datasets needs neither
    import numpy as np
    import torch

# ---- the four built-in datasets: names, shapes, classes, layouts (no torch needed) ----------------
NAMES = ("mnist", "mnist-bin", "cifar10", "cifar10-gray")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
IMAGE_SHAPES = {"mnist": (1, 28, 28), "mnist-bin": (1, 28, 28), "cifar10": (3, 32, 32), "cifar10-gray": (1, 32, 32)}
MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
DESCRIPTIONS = {"mnist": "MNIST digits, 8-bit, 10 classes",
                "mnist-bin": "MNIST digits binarized: dynamic Bernoulli (train), seeded (val 1, test 0)",
                "cifar10": "CIFAR-10, colour, 10 classes (or its JPEG copy, labelled cifar10-jpeg)",
                "cifar10-gray": "CIFAR-10 as ITU-R 601 luma, 10 classes"}
MNIST_LAYOUT = "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
CIFAR_LAYOUT = "cifar-10-batches-py/, cifar10/{train,test}/<class>/ or cifar10-jpeg/{train,test}/<class>/"
SPLITS = ("train", "val", "test")
VAL_SIZE = 5000
TEST_BINARIZATION_SEED = 0
VAL_BINARIZATION_SEED = 1


def data_root(data_dir: str | Path | None = None) -> Path:
    """The dataset root: explicit, else ZOO_DATA_DIR, else ~/.cache/zoo/data."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("ZOO_DATA_DIR"):
        return Path(os.environ["ZOO_DATA_DIR"]).expanduser()
    return zoo_cache("data")


def _find(raw: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (raw / name).is_file():
            return raw / name
    return None


def mnist_present(root: Path) -> bool:
    """Whether the MNIST IDX files (train and test) are under the data root."""
    raw = Path(root) / "MNIST" / "raw"
    return all(_find(raw, s) for stems in MNIST_FILES.values() for s in stems)


def cifar_present(root: Path) -> bool:
    """Whether one of the CIFAR-10 layouts (train and test) is under the data root."""
    root = Path(root)
    return (root / "cifar-10-batches-py").is_dir() or any(
        all((root / sub / part).is_dir() for part in ("train", "test")) for sub in ("cifar10", "cifar10-jpeg"))


def builtin_datasets() -> dict[str, Dataset]:
    """zoo's own datasets (name -> Dataset), which the registry adds as the first-party plugin `zoo`."""
    out = {}
    for name in NAMES:
        mnist = name.startswith("mnist")
        out[name] = Dataset(
            name=name, load=functools.partial(load_builtin, name),
            present=mnist_present if mnist else cifar_present, image_shape=IMAGE_SHAPES[name],
            classes=tuple(str(i) for i in range(10)) if mnist else CIFAR_CLASSES,
            layout=MNIST_LAYOUT if mnist else CIFAR_LAYOUT, description=DESCRIPTIONS[name])
    return out


def binarize(x: torch.Tensor, seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli binarization of float images in [0, 1]: each pixel is 1 with probability its intensity."""
    import torch
    if generator is None and seed is not None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    return torch.bernoulli(x, generator=generator)


@dataclass
class ImageData:
    """One split of a dataset in memory: uint8 images (N, C, H, W), labels, and what the data is."""

    name: str
    split: str
    copy: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    preprocessing: str
    dynamic_binarization: bool = False
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def batch(self, index: torch.Tensor | slice, generator: torch.Generator | None = None):
        """Float images in [0, 1] and labels for the given indices (dynamic binarization drawn here)."""
        x = self.images[index].float() / 255.0
        if self.dynamic_binarization:
            x = binarize(x, generator=generator)
        return x, self.labels[index]

    def describe(self) -> str:
        return f"{self.name} {self.split} ({len(self):,} images; {self.copy}; {self.preprocessing})"


# ---- MNIST ----------------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    import numpy as np
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        dims = struct.unpack(">" + "I" * ndim, data[4: 4 + 4 * ndim])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        return arr.reshape(dims).copy()
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise DataError(f"{path}: not a readable MNIST IDX file ({e}); replace it with the original") from None


def _mnist(root: Path, part: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    raw = root / "MNIST" / "raw"
    stems = MNIST_FILES[part]
    if download and not all(_find(raw, s) for s in stems):
        try:
            import torchvision
            torchvision.datasets.MNIST(str(root), train=part == "train", download=True)
        except Exception as e:
            raise DataError(f"MNIST download failed: {e}") from None
    paths = [_find(raw, s) for s in stems]
    if not all(paths):
        missing = [s for s, p in zip(stems, paths) if p is None]
        raise DataError(f"MNIST ({part}) not found: put {', '.join(m + '[.gz]' for m in missing)} in {raw}/ "
                        "(torchvision's layout), or pass --download when online, or point --data-dir / "
                        "ZOO_DATA_DIR at a folder that has them")
    images, labels = _read_idx(paths[0]), _read_idx(paths[1])
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(f"{paths[0]}: expected N x 28 x 28 images with N labels, got {images.shape} / {labels.shape}")
    return images[:, None], labels


# ---- CIFAR-10 -------------------------------------------------------------------------------------
def _image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    from PIL import Image
    images, labels = [], []
    for label, cls in enumerate(CIFAR_CLASSES):
        files = sorted(p for p in (folder / cls).glob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
        for p in files:
            with Image.open(p) as im:
                arr = np.asarray(im.convert("RGB"))
            if arr.shape != (32, 32, 3):
                raise DataError(f"{p}: CIFAR-10 images are 32x32 RGB, this one is {arr.shape}")
            images.append(arr)
            labels.append(label)
    if not images:
        raise DataError(f"{folder}: no images in <class>/ subfolders named {', '.join(CIFAR_CLASSES)}")
    return np.stack(images).transpose(0, 3, 1, 2).copy(), np.asarray(labels, dtype=np.int64)


def interleave_classes(labels: np.ndarray) -> np.ndarray:
    """An order that takes the first image of each class, then the second of each, and so on. Image folders list
    images class by class; without this, 'the last 5,000 of the training file' would be one class (trucks),
    missing from training and alone in validation."""
    import numpy as np
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        rank[idx] = np.arange(len(idx))
    return np.lexsort((labels, rank))


def _cached_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode an image folder once, in class-interleaved order; keep the decoded arrays beside it (if writable)
    for the next time."""
    images, labels = _decoded_folder(folder, split)
    order = interleave_classes(labels)
    return images[order], labels[order]


def _decoded_folder(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np
    cache = folder / f".zoo-decoded-{split}.npz"
    src = folder / split
    stamp = str(sum(1 for _ in src.rglob("*")))
    if cache.is_file():
        try:
            with np.load(cache) as z:
                if str(z["stamp"]) == stamp:
                    return z["images"], z["labels"]
        except Exception:
            pass
    images, labels = _image_folder(src)
    try:  # atomic, with a temporary file of its own: two processes decoding at once never corrupt the cache
        from .locking import atomic_write_bytes

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, images=images, labels=labels, stamp=np.array(stamp))
        atomic_write_bytes(cache, write)
    except OSError:
        pass
    return images, labels


def _cifar(root: Path, part: str, download: bool) -> tuple[np.ndarray, np.ndarray, str, str]:
    import numpy as np
    if download and not (root / "cifar-10-batches-py").is_dir():
        try:
            import torchvision
            torchvision.datasets.CIFAR10(str(root), train=part == "train", download=True)
        except Exception as e:
            raise DataError(f"CIFAR-10 download failed: {e}") from None
    if (root / "cifar-10-batches-py").is_dir():
        import torchvision
        ds = torchvision.datasets.CIFAR10(str(root), train=part == "train", download=False)
        return ds.data.transpose(0, 3, 1, 2).copy(), np.asarray(ds.targets, dtype=np.int64), "cifar10", ""
    for sub, copy in (("cifar10", "cifar10"), ("cifar10-jpeg", "cifar10-jpeg")):
        if (root / sub / part).is_dir():
            images, labels = _cached_folder(root / sub, part)
            return images, labels, copy, ", image folders with classes interleaved"
    raise DataError(f"CIFAR-10 ({part}) not found under {root}: expected cifar-10-batches-py/ (torchvision's "
                    f"layout), cifar10/{part}/<class>/ or cifar10-jpeg/{part}/<class>/ image folders. Pass "
                    "--download when online, or point --data-dir / ZOO_DATA_DIR at a folder that has them")


def to_gray(images: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma, L = (299 R + 587 G + 114 B) / 1000 rounded, as PIL's convert('L') (N, 3, H, W) -> (N, 1, H, W)."""
    import numpy as np
    rgb = images.astype(np.int32)
    luma = (299 * rgb[:, 0] + 587 * rgb[:, 1] + 114 * rgb[:, 2] + 500) // 1000
    return luma[:, None].astype(np.uint8)


def load_dataset(name: str, split: str = "train", data_dir: str | Path | None = None,
                 download: bool = False) -> ImageData:
    """One split of a named dataset (any installed plugin's, the four built-ins included) as uint8 tensors,
    read from the data root."""
    import torch
    ds = get_dataset(name)
    if split not in ds.splits:
        raise DataError(f"unknown split '{split}' of {name}; use one of {', '.join(ds.splits)}")
    data = ds.load(split, data_root(data_dir), download)
    if not isinstance(data, ImageData) or data.images.dtype != torch.uint8 or data.image_shape != ds.image_shape:
        got = (f"{tuple(data.images.shape)} {data.images.dtype}" if isinstance(data, ImageData)
               else type(data).__name__)
        raise DataError(f"dataset '{name}' ({split}) gave {got}; its plugin must return zoo.data.ImageData with "
                        f"uint8 images of shape (N, {', '.join(map(str, ds.image_shape))})")
    return data


def load_builtin(name: str, split: str, root: Path, download: bool = False) -> ImageData:
    """One split of a built-in dataset (mnist, mnist-bin, cifar10, cifar10-gray) from the data root."""
    import numpy as np
    import torch
    root = Path(root)
    part = "test" if split == "test" else "train"
    order = ""
    if name.startswith("mnist"):
        images, labels = _mnist(root, part, download)
        copy, classes = "MNIST (IDX files)", tuple(str(i) for i in range(10))
    else:
        images, labels, copy, order = _cifar(root, part, download)
        classes = CIFAR_CLASSES
        if name == "cifar10-gray":
            images = to_gray(images)
    if split != "test":
        if len(images) <= VAL_SIZE:
            raise DataError(f"{name}: the training file has only {len(images)} images, fewer than the "
                            f"{VAL_SIZE} held out for validation")
        sl = slice(None, -VAL_SIZE) if split == "train" else slice(-VAL_SIZE, None)
        images, labels = images[sl], labels[sl]
    x = torch.from_numpy(np.ascontiguousarray(images))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    split_note = {"train": f"training file less its last {VAL_SIZE:,}", "val": f"last {VAL_SIZE:,} of the training file",
                  "test": "test file"}[split]
    split_note += order
    prep, dynamic = f"8-bit, {split_note}", False
    if name == "cifar10-gray":
        prep = f"8-bit luma 0.299R+0.587G+0.114B, {split_note}"
    if name == "mnist-bin":
        if split == "train":
            prep, dynamic = f"dynamic Bernoulli binarization, {split_note}", True
        else:
            seed = TEST_BINARIZATION_SEED if split == "test" else VAL_BINARIZATION_SEED
            x = (binarize(x.float() / 255.0, seed=seed) * 255).to(torch.uint8)
            prep = f"fixed Bernoulli binarization (seed {seed}), {split_note}"
    return ImageData(name, split, copy, x, y, classes, prep, dynamic)
