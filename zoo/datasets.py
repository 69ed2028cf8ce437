"""Datasets as a plugin point, the lookup side: `get_dataset` and `list_datasets` find every named dataset
through the registry, the four built-in ones included; `zoo.data.load_dataset` reads a split of one.

Where things live: the contract (`Dataset`, `NAME_RE`, `FOLDER_DATASET`, `check_dataset`) is the registry's, in
`zoo.plugins`, and re-exported here; the built-ins (`mnist`, `mnist-bin`, `cifar10`, `cifar10-gray`: names,
shapes, classes, layouts, presence checks and readers) live in `zoo.data`, and come from zoo's own first-party
plugin `zoo`, which the registry adds through the same `Registry.add` as any installed plugin (before them,
whatever ZOO_LOAD_PLUGINS says, and without listing it as an installed plugin): a third-party dataset has
exactly their standing. This module never imports `zoo.data`.
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any

from .errors import DataError
from .plugins import FOLDER_DATASET, NAME_RE, Dataset, builtin_plugin, check_dataset  # noqa: F401 - re-exported

#: the built-in constants this module held in 0.2 and 0.3; they live in zoo.data (read through __getattr__)
_MOVED = ("NAMES", "CIFAR_CLASSES", "IMAGE_SHAPES", "MNIST_FILES", "DESCRIPTIONS", "mnist_present",
          "cifar_present")


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


def __getattr__(name: str) -> Any:
    """zoo.datasets.NAMES and the other built-in constants of 0.2/0.3: still readable, from zoo.data, with a
    DeprecationWarning (through 0.x). Resolved by name, so that this module imports no zoo.data."""
    if name not in _MOVED:
        raise AttributeError(f"module 'zoo.datasets' has no attribute '{name}'")
    warnings.warn(f"zoo.datasets.{name} moved to zoo.data.{name} (zoo 0.4); this name still works through 0.x",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module("zoo.data"), name)
