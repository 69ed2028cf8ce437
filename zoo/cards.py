"""Model cards: one TOML file per pretrained model, the single source of truth about it.

A card names its plugin and architecture, the constructor config, the data and preprocessing, the
weights (file, sha256, optional Hub repo), every metric with the `zoo eval` command that measured it, and
optionally a `[sampling]` preset: the recommended way to sample it (zoo/presets.py).
"""
from __future__ import annotations

import datetime
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import CardError
from .presets import check_preset

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
SHA_RE = re.compile(r"^[0-9a-f]{64}$")
FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.safetensors$")
REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
REV_RE = re.compile(r"^[\w.-]+(/[\w.-]+)*$")
BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def first_party_cards_dir(plugin: str) -> Path:
    """The folder of a first-party plugin's cards: cards/<plugin>/ in a checkout (or an editable install), or
    zoo_cards/<plugin>/ beside the installed zoo package (the wheel ships the top-level cards/ as zoo_cards)."""
    root = Path(__file__).resolve().parent.parent
    for folder in (root / "cards" / plugin, root / "zoo_cards" / plugin):
        if folder.is_dir():
            return folder
    return root / "cards" / plugin  # missing: the registry then finds no cards, and `zoo list` shows none


def check_revision(rev: str, source: str, error: type[Exception] = CardError) -> str:
    """A Hub revision (branch, tag, commit or refs/pr/N): no '..', no absolute path, no odd characters."""
    if not REV_RE.match(rev) or any(part in (".", "..") for part in rev.split("/")) or len(rev) > 200:
        raise error(f"{source}: revision {rev!r} must be a branch, tag or commit (letters, digits, '.', '_', "
                        "'-', '/'; no '..')")
    return rev


@dataclass(frozen=True)
class Metric:
    """One measured figure and how to reproduce it."""

    name: str
    value: float
    unit: str
    split: str
    n: int
    command: str
    note: str = ""


@dataclass
class Card:
    """A validated model card. `path` is where it was read from (None for cards built in memory)."""

    id: str
    plugin: str
    architecture: str
    description: str
    dataset: str
    data: dict[str, Any]
    config: dict[str, Any]
    weights_file: str
    sha256: str
    hub_repo: str | None = None
    hub_revision: str | None = None
    params: int | None = None  # parameter count of the model the card builds ([weights] params; optional)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    path: Path | None = None
    #: where the plugin that ships the card keeps its bundled weights (set by the registry; None: not bundled)
    weights_dir: Path | None = field(default=None, compare=False)
    #: the recommended sampling settings ([sampling] table; empty when the card has none)
    sampling: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str) -> Metric | None:
        """The first metric with this name, or None."""
        return next((m for m in self.metrics if m.name == name), None)

    def weights_path(self) -> Path | None:
        """The bundled weights file: in the `weights_dir` of the plugin that ships the card (None if it has none)."""
        if self.weights_dir is not None:
            return Path(self.weights_dir) / self.weights_file
        if self.path is None:
            return None
        return self.path.parent.parent / "weights" / self.weights_file  # a card read by hand: the 0.1 layout

    def to_dict(self) -> dict[str, Any]:
        """The card as TOML-ready data (the inverse of `parse_card`)."""
        out: dict[str, Any] = {
            "id": self.id, "plugin": self.plugin, "architecture": self.architecture,
            "description": self.description,
            "data": {"dataset": self.dataset, **{k: v for k, v in self.data.items() if k != "dataset"}},
            "config": self.config,
            "weights": {"file": self.weights_file, "sha256": self.sha256},
        }
        if self.hub_repo:
            out["weights"]["hub_repo"] = self.hub_repo
        if self.hub_revision:
            out["weights"]["hub_revision"] = self.hub_revision
        if self.params is not None:
            out["weights"]["params"] = self.params
        if self.training:
            out["training"] = self.training
        if self.sampling:
            out["sampling"] = self.sampling
        if self.metrics:
            out["metrics"] = [{k: v for k, v in m.__dict__.items() if not (k == "note" and not v)}
                              for m in self.metrics]
        return out


def _get(table: dict, key: str, typ: type | tuple[type, ...], where: str, source: str, required: bool = True):
    if key not in table:
        if required:
            raise CardError(f"{source}: missing field '{where}{key}'")
        return None
    value = table[key]
    if isinstance(value, bool) and typ in (int, float, (int, float)):
        raise CardError(f"{source}: field '{where}{key}' must be {typ}, got a boolean")
    if not isinstance(value, typ):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise CardError(f"{source}: field '{where}{key}' must be {names}, got {type(value).__name__} {value!r}")
    return value


def parse_card(data: dict[str, Any], source: str = "<card>", recipe: bool = False) -> Card:
    """Validate card data (as read from TOML); errors name the source and the field.

    A recipe is a card not trained yet: its [weights] table may be absent (`zoo train` writes it)."""
    if not isinstance(data, dict):
        raise CardError(f"{source}: a card must be a TOML table")
    cid = _get(data, "id", str, "", source)
    if not ID_RE.match(cid):
        raise CardError(f"{source}: field 'id' = {cid!r} must be lowercase letters, digits, '.', '_' or '-'")
    plugin = _get(data, "plugin", str, "", source)
    arch = _get(data, "architecture", str, "", source)
    desc = _get(data, "description", str, "", source, required=False) or ""
    dtab = _get(data, "data", dict, "", source)
    dataset = _get(dtab, "dataset", str, "data.", source)
    config = _get(data, "config", dict, "", source)
    wtab = _get(data, "weights", dict, "", source, required=not recipe)
    if wtab is None:
        wtab = {"file": f"{cid}.safetensors", "sha256": "0" * 64}
    wfile = _get(wtab, "file", str, "weights.", source)
    if not FILE_RE.match(wfile):
        raise CardError(f"{source}: field 'weights.file' = {wfile!r} must be a plain file name ending in "
                        ".safetensors (no folders, no '..')")
    sha = _get(wtab, "sha256", str, "weights.", source)
    if not SHA_RE.match(sha):
        raise CardError(f"{source}: field 'weights.sha256' must be 64 lowercase hex digits, got {sha!r}")
    hub = _get(wtab, "hub_repo", str, "weights.", source, required=False)
    if hub is not None and (not REPO_RE.match(hub) or ".." in hub or "--" in hub):
        raise CardError(f"{source}: field 'weights.hub_repo' = {hub!r} must look like 'org/name' (no '..' or '--')")
    rev = _get(wtab, "hub_revision", str, "weights.", source, required=False)
    if rev is not None:
        check_revision(rev, f"{source}: field 'weights.hub_revision'")
    params = _get(wtab, "params", int, "weights.", source, required=False)
    if params is not None and params < 0:
        raise CardError(f"{source}: field 'weights.params' must be a parameter count (>= 0), got {params}")
    training = _get(data, "training", dict, "", source, required=False) or {}
    sampling = check_preset(data["sampling"], source) if "sampling" in data else {}
    metrics = []
    for i, m in enumerate(_get(data, "metrics", list, "", source, required=False) or []):
        where = f"metrics[{i}]."
        if not isinstance(m, dict):
            raise CardError(f"{source}: 'metrics[{i}]' must be a table")
        metrics.append(Metric(
            name=_get(m, "name", str, where, source), value=float(_get(m, "value", (int, float), where, source)),
            unit=_get(m, "unit", str, where, source), split=_get(m, "split", str, where, source),
            n=_get(m, "n", int, where, source), command=_get(m, "command", str, where, source),
            note=_get(m, "note", str, where, source, required=False) or ""))
        cmd = metrics[-1].command
        if not (cmd.startswith("zoo ") or (cmd.startswith("torchrun ") and " -m zoo.cli " in cmd)):
            raise CardError(f"{source}: field '{where}command' must be the zoo command that measured it (`zoo ...`, "
                            "or `torchrun ... -m zoo.cli ...` for several processes)")
    return Card(id=cid, plugin=plugin, architecture=arch, description=desc, dataset=dataset, data=dtab,
                config=config, weights_file=wfile, sha256=sha, hub_repo=hub, hub_revision=rev,
                params=params, training=training, metrics=metrics, sampling=sampling)


def read_card(path: str | Path, recipe: bool = False) -> Card:
    """Read and validate one TOML card file (a recipe may lack its [weights])."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CardError(f"{path}: card file not found") from None
    except OSError as e:
        raise CardError(f"{path}: cannot read card: {e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise CardError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:
        raise CardError(f"{path}: not a card: its TOML is nested too deeply") from None
    card = parse_card(data, str(path), recipe=recipe)
    card.path = path
    return card


def dump_card(card: Card) -> str:
    """Serialize a card to TOML text."""
    return _toml(card.to_dict())


def _toml_string(v: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, plus DEL, which TOML does not allow raw."""
    return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_key(k: str) -> str:
    return k if BARE_KEY_RE.match(k) else _toml_string(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def dump_toml(data: dict[str, Any]) -> str:
    """TOML text for card-like data: scalars, then [tables], then [[arrays of tables]] (a card's metrics, the
    FID floors). The one TOML writer of zoo: every string is escaped, so any text round-trips."""
    lines: list[str] = []
    for k, v in data.items():
        if not isinstance(v, dict) and not _is_table_array(v):
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"\n[{_toml_key(k)}]")
            lines.extend(f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items())
    for k, v in data.items():
        if _is_table_array(v):
            for item in v:
                lines.append(f"\n[[{_toml_key(k)}]]")
                lines.extend(f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in item.items())
    return "\n".join(lines).lstrip("\n") + "\n"


_toml = dump_toml


def with_metric(card: Card, metric: Metric) -> Card:
    """A copy of the card with `metric` added, replacing any metric of the same name and command."""
    kept = [m for m in card.metrics if not (m.name == metric.name and m.command == metric.command)]
    return Card(**{**card.__dict__, "metrics": kept + [metric]})


def write_card(card: Card, path: str | Path) -> Path:
    """Write a card as TOML atomically (a temporary file of its own, fsynced, renamed)."""
    from .locking import atomic_write_text
    return atomic_write_text(path, dump_card(card))


def update_card(path: str | Path, change: Callable[[Card], Card]) -> Card:
    """Locked read-modify-write of a card file (what `--write-card` does): read the card as it is now, apply
    `change`, write it atomically. Several processes recording metrics in one card at once all keep theirs."""
    from .locking import atomic_write_text, locked
    path = Path(path)
    with locked(path):
        new = change(read_card(path))
        atomic_write_text(path, dump_card(new))
    new.path = path
    return new
