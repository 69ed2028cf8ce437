"""Plugin discovery through the entry-point group `zoo.plugins`, and the plugin contract.

A plugin is one `Plugin` object: its name, version, the model architectures and learned tokenizers it
provides, the folders of the cards and bundled weights it ships and the named datasets it reads (each a `Dataset`,
checked here by `check_dataset`). zoo's own four datasets are defined in `zoo.data` (`builtin_datasets`), which
the registry names as an entry point names a plugin and resolves when it is built: they come from zoo's built-in
plugin `zoo`, added first, always, through the same `Registry.add`, but not listed among the installed plugins.
The core never imports a family itself. A plugin that fails to load is recorded with its error (shown by
`zoo plugins`) and every other plugin still works. Two plugins claiming one id is refused.
Set `ZOO_LOAD_PLUGINS` to a comma-separated allow-list (empty: no plugins) to choose which load.
"""
from __future__ import annotations

import importlib
import os
import re
import traceback
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from .cards import Card, read_card
from .errors import CardError, PluginDependencyWarning, PluginError

GROUP = "zoo.plugins"
#: zoo 0.1's distribution name; since 0.2 zoo is published as `ar-zoo` (`zoo` on PyPI is another project)
OLD_DISTRIBUTION = "zoo"
#: zoo's own datasets, named as an entry point names a plugin (no import of zoo.data here: resolved by discover)
BUILTIN_DATASETS = "zoo.data:builtin_datasets"

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


@dataclass
class Plugin:
    """What a plugin hands the core. `architectures` maps a name to a zoo.Model subclass, `tokenizers` a name to
    a zoo.LearnedTokenizer subclass (cards name either as their `architecture`); either may instead be a
    "package.module:Class" string that the core imports on first use (so that listing cards never imports a
    family's code, or torch). `cards_dir` holds the cards it ships, `weights_dir` their bundled weights files
    (before 0.2 the core guessed `cards_dir/../weights`)."""

    name: str
    version: str
    architectures: dict[str, type] = field(default_factory=dict)
    cards_dir: Path | None = None
    description: str = ""
    tokenizers: dict[str, type] = field(default_factory=dict)
    weights_dir: Path | None = None
    #: named datasets the plugin ships (name -> zoo.Dataset): readers and layouts, found by `load_dataset`
    datasets: dict[str, Dataset] = field(default_factory=dict)

    def card_paths(self) -> list[Path]:
        """The TOML files of the cards the plugin ships."""
        if self.cards_dir is None or not Path(self.cards_dir).is_dir():
            return []
        return sorted(Path(self.cards_dir).glob("*.toml"))


@dataclass
class Failure:
    """A plugin (or one of its cards) that could not be loaded."""

    name: str
    source: str
    error: str
    detail: str = ""


_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _generative_model(cls: Any) -> bool:
    """Whether a registered class (already imported) is a model that samples, not a tokenizer."""
    from .model import Model
    return isinstance(cls, type) and issubclass(cls, Model) and bool(cls.generative)


def resolve_ref(ref: Any, where: str) -> type:
    """The class an architecture entry names: the class itself, or "module:attr" imported now."""
    if not isinstance(ref, str):
        return ref
    from .model import LearnedTokenizer, Model
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (Exception, SystemExit) as e:
        raise PluginError(f"{where}: cannot import {ref!r} ({type(e).__name__}: {e}); reinstall the plugin or "
                          "check its architectures") from None
    if not (isinstance(obj, type) and issubclass(obj, (Model, LearnedTokenizer))):
        raise PluginError(f"{where}: {ref!r} is not a zoo.Model or zoo.LearnedTokenizer subclass (got {obj!r})")
    return obj


class Architectures(dict):
    """name -> (plugin, class). Entries given as "module:Class" are imported on first access and kept."""

    def __getitem__(self, name: str) -> tuple[Plugin, type]:
        plugin, ref = super().__getitem__(name)
        if isinstance(ref, str):
            ref = resolve_ref(ref, f"plugin '{plugin.name}', architecture '{name}'")
            super().__setitem__(name, (plugin, ref))
        return plugin, ref

    def get(self, name, default=None):
        return self[name] if name in self else default

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]

    def pop(self, name, *default):
        value = self[name] if name in self else None
        super().pop(name, *default)
        return value if value is not None else (default[0] if default else None)


@dataclass
class Registry:
    """Everything the installed plugins provide, keyed for lookup."""

    plugins: dict[str, Plugin] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    architectures: Architectures = field(default_factory=Architectures)  # models and tokenizers
    tokenizers: Architectures = field(default_factory=Architectures)     # the tokenizers alone
    cards: dict[str, Card] = field(default_factory=dict)
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    datasets: dict[str, tuple[Plugin, Dataset]] = field(default_factory=dict)
    #: entry-point name -> what is wrong with its distribution's metadata (a dependency on `zoo`, 0.1's name)
    notes: dict[str, str] = field(default_factory=dict)

    def add(self, plugin: Plugin, source: str = "", listed: bool = True) -> None:
        """Register a plugin's architectures, cards and datasets, refusing any id another plugin already claims.
        listed=False registers zoo's own built-in plugin without listing it among the installed plugins."""
        if not isinstance(plugin, Plugin):
            raise PluginError(f"entry point {source or '?'} must give a zoo.Plugin, got {type(plugin).__name__}")
        check_plugin(plugin, source)  # before anything is registered: a bad plugin leaves no half of itself
        if plugin.name in self.plugins:
            raise PluginError(f"two plugins are named '{plugin.name}' ({source}); uninstall one of them")
        if listed:
            self.plugins[plugin.name] = plugin
        for arch, cls in [*plugin.architectures.items(), *plugin.tokenizers.items()]:
            self._claim(self.architectures, arch, (plugin, cls), plugin.name, lambda v: v[0].name)
            # a string under tokenizers is a tokenizer; a string under architectures is not looked into (that
            # would import the family); a class given directly is a tokenizer when it cannot sample
            if arch in plugin.tokenizers or (not isinstance(cls, str) and not _generative_model(cls)):
                self.tokenizers[arch] = (plugin, cls)
        for name, ds in plugin.datasets.items():
            self._claim(self.datasets, name, (plugin, ds), plugin.name, lambda v: v[0].name)
        weights_dir = None if plugin.weights_dir is None else Path(plugin.weights_dir)
        if weights_dir is None and plugin.cards_dir is not None and plugin.card_paths():
            weights_dir = Path(plugin.cards_dir).parent / "weights"
            warnings.warn(f"plugin '{plugin.name}': set zoo.Plugin(weights_dir=...) to the folder of its bundled "
                          f"weights; zoo still guesses {weights_dir} (cards_dir/../weights), as 0.2 did, through 0.x",
                          DeprecationWarning, stacklevel=2)
        for path in plugin.card_paths():
            try:
                card = read_card(path)
            except CardError as e:  # one broken card hides only itself
                self.failures.append(Failure(plugin.name, source, f"card error: {e}"))
                continue
            card.weights_dir = weights_dir
            if card.id in self.cards and self.cards[card.id].plugin == plugin.name:
                self.failures.append(Failure(plugin.name, source, f"{path}: id '{card.id}' is used by two of "
                                             "this plugin's cards"))
                continue
            if card.plugin != plugin.name:
                self.failures.append(Failure(plugin.name, source, f"{card.path}: field 'plugin' is "
                                             f"'{card.plugin}' but the card ships with plugin '{plugin.name}'"))
                continue
            self._claim(self.cards, card.id, card, plugin.name, lambda c: c.plugin)

    def _claim(self, table: dict, key: str, value: Any, owner: str, owner_of) -> None:
        if key in self.conflicts:
            self.conflicts[key].append(owner)
        elif key in table:
            self.conflicts[key] = [owner_of(table.pop(key)), owner]
        else:
            table[key] = value

    def conflict_error(self, key: str) -> PluginError:
        owners = ", ".join(sorted(self.conflicts[key]))
        return PluginError(f"'{key}' is claimed by several plugins ({owners}); zoo refuses to pick one. "
                           "Uninstall all but one, or choose with ZOO_LOAD_PLUGINS=name")


def check_plugin(plugin: Plugin, source: str = "") -> None:
    """Refuse a Plugin whose fields have the wrong types: a str name and version, architectures mapping names to
    zoo.Model subclasses, tokenizers to zoo.LearnedTokenizer subclasses (either may be a "module:Class" string,
    checked when first used), cards_dir and weights_dir paths or None, datasets to zoo.Dataset. A 0.1 plugin
    listing a tokenizer class (a Model with generative = False) under architectures gets a DeprecationWarning."""
    where = f"plugin '{plugin.name}' ({source or '?'})" if isinstance(plugin.name, str) else f"entry point {source}"
    if not isinstance(plugin.name, str) or not plugin.name or not isinstance(plugin.version, str):
        raise PluginError(f"{where}: name and version must be non-empty strings, got {plugin.name!r}, "
                          f"{plugin.version!r}")
    if not isinstance(plugin.architectures, dict):
        raise PluginError(f"{where}: architectures must be a dict of name -> zoo.Model subclass, got "
                          f"{type(plugin.architectures).__name__}")
    if not isinstance(plugin.tokenizers, dict):
        raise PluginError(f"{where}: tokenizers must be a dict of name -> zoo.LearnedTokenizer subclass, got "
                          f"{type(plugin.tokenizers).__name__}")
    for arch, cls in plugin.architectures.items():
        if isinstance(cls, str):
            if not isinstance(arch, str) or not _REF.fullmatch(cls):
                raise PluginError(f"{where}: architecture {arch!r} must name a zoo.Model subclass or a "
                                  f"'package.module:Class' string, got {cls!r}")
            continue
        from .model import LearnedTokenizer, Model  # a class: its plugin imported torch already
        if isinstance(arch, str) and isinstance(cls, type) and issubclass(cls, LearnedTokenizer):
            warnings.warn(f"{where}: list the tokenizer {arch!r} under Plugin(tokenizers=...), not architectures "
                          "(zoo 0.2); it still works through 0.x", DeprecationWarning, stacklevel=3)
            continue
        if not isinstance(arch, str) or not (isinstance(cls, type) and issubclass(cls, Model)):
            raise PluginError(f"{where}: architecture {arch!r} must name a zoo.Model subclass or a "
                              f"'package.module:Class' string, got {cls!r}")
        if not cls.generative:
            warnings.warn(f"{where}: {arch!r} is a tokenizer written as a zoo.Model with generative = False; "
                          "subclass zoo.LearnedTokenizer and list it under Plugin(tokenizers=...) (zoo 0.2). It "
                          "still works through 0.x", DeprecationWarning, stacklevel=3)
    for arch, cls in plugin.tokenizers.items():
        if isinstance(cls, str):
            ok = isinstance(arch, str) and _REF.fullmatch(cls) is not None
        else:
            from .model import LearnedTokenizer
            ok = isinstance(arch, str) and isinstance(cls, type) and issubclass(cls, LearnedTokenizer)
        if not ok:
            raise PluginError(f"{where}: tokenizer {arch!r} must name a zoo.LearnedTokenizer subclass or a "
                              f"'package.module:Class' string, got {cls!r}")
    for name in ("cards_dir", "weights_dir"):
        value = getattr(plugin, name)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise PluginError(f"{where}: {name} must be a folder path or None, got {type(value).__name__}")
    if not isinstance(plugin.datasets, dict):
        raise PluginError(f"{where}: datasets must be a dict of name -> zoo.Dataset, got "
                          f"{type(plugin.datasets).__name__}")
    for name, ds in plugin.datasets.items():
        check_dataset(name, ds, where)


def allowed_plugins() -> set[str] | None:
    """The ZOO_LOAD_PLUGINS allow-list, or None when every installed plugin may load."""
    raw = os.environ.get("ZOO_LOAD_PLUGINS")
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _project(requirement: str) -> str:
    """The normalised project name a requirement string names (PEP 503: lower case, runs of -_. as one -)."""
    m = re.match(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)", requirement)
    return re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else ""


def old_dependency(dist: Any) -> str | None:
    """The requirement on `zoo` (zoo 0.1's distribution name) in an installed distribution's metadata, if any."""
    for requirement in (getattr(dist, "requires", None) or []):
        if _project(requirement) == OLD_DISTRIBUTION:
            return requirement.split(";")[0].strip()
    return None


def dependency_note(ep: Any) -> str | None:
    """What to change in a plugin whose installed metadata requires `zoo` instead of `ar-zoo`; None when it
    does not (or its distribution cannot be read)."""
    dist = getattr(ep, "dist", None)
    try:
        requirement = old_dependency(dist)
    except Exception:  # noqa: BLE001 - unreadable metadata must not break discovery
        return None
    if requirement is None:
        return None
    fixed = re.sub(r"^\s*zoo\b", "ar-zoo", requirement, flags=re.IGNORECASE)
    return (f"plugin '{ep.name}' ({dist.name} {dist.version}) requires '{requirement}', zoo 0.1's distribution "
            "name: zoo is published as ar-zoo, and pip reads 'zoo' as an unrelated project on PyPI, so the plugin "
            f"does not install anew with zoo. Its dependency line should say '{fixed}' instead")


def builtin_plugin() -> Plugin:
    """zoo's first-party datasets plugin `zoo`: mnist, mnist-bin, cifar10, cifar10-gray, defined in zoo.data and
    imported here by name (BUILTIN_DATASETS), as an entry point is."""
    module, _, attr = BUILTIN_DATASETS.partition(":")
    datasets = getattr(importlib.import_module(module), attr)()
    return Plugin(name="zoo", version=_zoo_version(), datasets=datasets, description="zoo's built-in datasets")


def _zoo_version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ar-zoo")
    except PackageNotFoundError:
        return "0.1.0"


def discover() -> Registry:
    """Load every entry point in `zoo.plugins` (subject to ZOO_LOAD_PLUGINS) into a new Registry."""
    reg = Registry()
    # zoo's own datasets, through the same checks and claims as any plugin's; part of zoo, so not listed as an
    # installed plugin and not subject to ZOO_LOAD_PLUGINS
    reg.add(builtin_plugin(), source=BUILTIN_DATASETS, listed=False)
    allow = allowed_plugins()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        if allow is not None and ep.name not in allow:
            continue
        note = dependency_note(ep)
        if note is not None:
            reg.notes[ep.name] = note
            warnings.warn(note, PluginDependencyWarning, stacklevel=2)
        try:
            obj = ep.load()
            plugin = obj() if callable(obj) and not isinstance(obj, Plugin) else obj
            if isinstance(plugin, Plugin) and plugin.name != ep.name:
                raise PluginError(f"the entry point is named '{ep.name}' but its plugin calls itself "
                                  f"'{plugin.name}'; they must match (ZOO_LOAD_PLUGINS and cards use the name)")
            reg.add(plugin, source=ep.value)
        except (Exception, SystemExit) as e:  # a broken plugin must not break the others
            reg.failures.append(Failure(ep.name, ep.value, f"{type(e).__name__}: {e}",
                                        traceback.format_exc(limit=5)))
    return reg


_REGISTRY: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, discovered on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = discover()
    return _REGISTRY


def reset() -> None:
    """Forget the discovered plugins (tests, or after installing a plugin at run time)."""
    global _REGISTRY
    _REGISTRY = None
