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


def builtin_plugin():
    """zoo's first-party datasets plugin: mnist, mnist-bin, cifar10, cifar10-gray (readers in zoo.data)."""
    from . import data
    from .plugins import Plugin
    datasets = {}
    for name in data.NAMES:
        mnist = name.startswith("mnist")
        datasets[name] = Dataset(
            name=name,
            load=lambda split, root, download, _n=name: data.load_builtin(_n, split, root, download),
            present=data.mnist_present if mnist else data.cifar_present,
            image_shape=data.IMAGE_SHAPES[name],
            classes=tuple(str(i) for i in range(10)) if mnist else data.CIFAR_CLASSES,
            layout=("MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]" if mnist else
                    "cifar-10-batches-py/, cifar10/{train,test}/<class>/ or cifar10-jpeg/{train,test}/<class>/"),
            description=data.DESCRIPTIONS[name])
    return Plugin(name="zoo", version=_version(), datasets=datasets, description="zoo's built-in datasets")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("zoo")
    except PackageNotFoundError:
        return "0.1.0"
