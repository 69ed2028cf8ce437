"""Datasets as a plugin point: a plugin names datasets (`Plugin.datasets`) with their layout and reader, and
`load_dataset` finds every named dataset through the registry, the four built-in ones included.

The built-ins (`mnist`, `mnist-bin`, `cifar10`, `cifar10-gray`) are the datasets of zoo's own first-party
plugin, `zoo`, which the registry adds through the same `Registry.add` as any installed plugin (before them,
whatever ZOO_LOAD_PLUGINS says, and without listing it as an installed plugin): a third-party dataset has
exactly their standing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import DataError

#: a dataset name: lowercase letters, digits, '.', '_' or '-' (like a model id)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
#: the `data.dataset` of a card trained on an image folder (`zoo train --data DIR`): reserved, never registered
FOLDER_DATASET = "image-folder"


@dataclass(frozen=True)
class Dataset:
    """A named dataset a plugin provides.

    `load(split, root, download)` returns that split as a `zoo.data.ImageData` (uint8 images of `image_shape`),
    reading it from `root`, the data root (`--data-dir`, `ZOO_DATA_DIR` or ~/.cache/zoo/data); it raises
    `zoo.DataError` naming the missing files when they are not there. `present(root)` says, without reading
    the images, whether the files are there. `layout` tells a user where to put them.
    """

    name: str
    load: Callable[..., object] = field(repr=False)
    present: Callable[[Path], bool] = field(repr=False)
    image_shape: tuple[int, int, int]
    classes: tuple[str, ...] = ()
    layout: str = ""
    description: str = ""
    splits: tuple[str, ...] = ("train", "val", "test")


def check_dataset(name: object, ds: object, where: str) -> None:
    """Refuse a dataset entry with the wrong types or a name that is not an id (raised as PluginError)."""
    from .errors import PluginError
    if not isinstance(ds, Dataset):
        raise PluginError(f"{where}: dataset {name!r} must be a zoo.Dataset, got {type(ds).__name__}")
    if not isinstance(name, str) or name != ds.name or not NAME_RE.match(name) or name == FOLDER_DATASET:
        raise PluginError(f"{where}: dataset key {name!r} must equal its Dataset.name ({ds.name!r}), be lowercase "
                          f"letters, digits, '.', '_' or '-', and not be the reserved '{FOLDER_DATASET}'")
    if not (callable(ds.load) and callable(ds.present)):
        raise PluginError(f"{where}: dataset '{name}' needs callable load(split, root, download) and present(root)")
    shape = ds.image_shape
    if not (isinstance(shape, tuple) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
        raise PluginError(f"{where}: dataset '{name}' image_shape must be a tuple (C, H, W) of positive ints, "
                          f"got {shape!r}")


def get_dataset(name: str) -> Dataset:
    """The registered dataset of this name; an unknown name lists the installed ones."""
    from .plugins import registry
    reg = registry()
    if name == FOLDER_DATASET:
        raise DataError(f"'{FOLDER_DATASET}' is the data of a model trained on an image folder: pass the folder "
                        "with --data DIR (the card's data.folder and data.content_sha256 say which)")
    if name in reg.conflicts:
        raise reg.conflict_error(name)
    if name not in reg.datasets:
        raise DataError(f"unknown dataset '{name}'; installed: {', '.join(sorted(reg.datasets)) or 'none'} "
                        "(`zoo datasets` lists them; a plugin that provides it may have failed: `zoo plugins`)")
    return reg.datasets[name][1]


def list_datasets() -> list[tuple[str, Dataset]]:
    """(plugin name, dataset) of every installed dataset, by name."""
    from .plugins import registry
    return [(p.name, ds) for _, (p, ds) in sorted(registry().datasets.items())]



# ---- the four built-in datasets: names, shapes, classes and on-disk layouts (no torch needed) ----
NAMES = ("mnist", "mnist-bin", "cifar10", "cifar10-gray")

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

IMAGE_SHAPES = {"mnist": (1, 28, 28), "mnist-bin": (1, 28, 28), "cifar10": (3, 32, 32), "cifar10-gray": (1, 32, 32)}


def _find(raw: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (raw / name).is_file():
            return raw / name
    return None


MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

DESCRIPTIONS = {"mnist": "MNIST digits, 8-bit, 10 classes",
                "mnist-bin": "MNIST digits binarized: dynamic Bernoulli (train), seeded (val 1, test 0)",
                "cifar10": "CIFAR-10, colour, 10 classes (or its JPEG copy, labelled cifar10-jpeg)",
                "cifar10-gray": "CIFAR-10 as ITU-R 601 luma, 10 classes"}


def mnist_present(root: Path) -> bool:
    """Whether the MNIST IDX files (train and test) are under the data root."""
    raw = Path(root) / "MNIST" / "raw"
    return all(_find(raw, s) for stems in MNIST_FILES.values() for s in stems)


def cifar_present(root: Path) -> bool:
    """Whether one of the CIFAR-10 layouts (train and test) is under the data root."""
    root = Path(root)
    return (root / "cifar-10-batches-py").is_dir() or any(
        all((root / sub / part).is_dir() for part in ("train", "test")) for sub in ("cifar10", "cifar10-jpeg"))


def builtin_plugin():
    """zoo's first-party datasets plugin: mnist, mnist-bin, cifar10, cifar10-gray (readers in zoo.data)."""
    from .plugins import Plugin

    def load(split, root, download, _n):
        from .data import load_builtin  # the readers need torch: imported when a split is read
        return load_builtin(_n, split, root, download)
    datasets = {}
    for name in NAMES:
        mnist = name.startswith("mnist")
        datasets[name] = Dataset(
            name=name,
            load=lambda split, root, download, _n=name: load(split, root, download, _n),
            present=mnist_present if mnist else cifar_present,
            image_shape=IMAGE_SHAPES[name],
            classes=tuple(str(i) for i in range(10)) if mnist else CIFAR_CLASSES,
            layout=("MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]" if mnist else
                    "cifar-10-batches-py/, cifar10/{train,test}/<class>/ or cifar10-jpeg/{train,test}/<class>/"),
            description=DESCRIPTIONS[name])
    return Plugin(name="zoo", version=_version(), datasets=datasets, description="zoo's built-in datasets")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ar-zoo")
    except PackageNotFoundError:
        return "0.1.0"
