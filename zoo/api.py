"""The library's front door: list, create and load models by id, Hub ref or folder."""
from __future__ import annotations

import difflib
import fnmatch
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cards import FILE_RE, REPO_RE, Card, check_revision, read_card
from .errors import InputError, UnknownModelError, UnverifiedWeightsWarning, ZooError
from .plugins import registry
from .weights import (check_state, hub_download, load_into, load_weights, resolve_weights, sha256_file,
                      verified_hub_file)

if TYPE_CHECKING:  # torch is imported by the functions that build models, not by listing
    import torch

    from .model import LearnedTokenizer, Model

CARD_FILE = "card.toml"


def list_models(pattern: str = "*") -> list[str]:
    """Ids of the pretrained models (cards) of every installed plugin, matching a shell-style wildcard."""
    return sorted(i for i in registry().cards if fnmatch.fnmatch(i, pattern))


def list_architectures(pattern: str = "*") -> list[str]:
    """Names of everything `create` can build: model architectures and learned tokenizers."""
    return sorted(a for a in registry().architectures if fnmatch.fnmatch(a, pattern))


def list_tokenizers(pattern: str = "*") -> list[str]:
    """Names of the learned tokenizers (zoo.LearnedTokenizer) that `create` can build."""
    return sorted(a for a in registry().tokenizers if fnmatch.fnmatch(a, pattern))


def family_options() -> dict[str, list[tuple[str, str, Any, str]]]:
    """The log_prob options each installed architecture declares (its `Options` dataclass): name -> a list of
    (option, type, default, help). `zoo eval -o KEY=VALUE` help is written from it."""
    from .errors import PluginError
    from .model import describe_options
    reg, out = registry(), {}
    for arch in sorted(reg.architectures):
        try:
            _, cls = reg.architectures[arch]
        except PluginError:  # a "module:Class" entry that does not import: `zoo plugins` shows the error
            continue
        fields = describe_options(getattr(cls, "Options", None))
        if fields:
            out[arch] = fields
    return out


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    close += [c for c in choices if name and name in c and c not in close][: 3 - len(close)]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _failures_note(reg) -> str:
    """A sentence naming the plugins and cards that failed to load (one may have provided the missing id)."""
    if not reg.failures:
        return ""
    shown = "; ".join(f"{f.name}: {f.error[:300]}" for f in reg.failures[:3])
    more = f" and {len(reg.failures) - 3} more" if len(reg.failures) > 3 else ""
    return f" Note: {len(reg.failures)} plugin(s) or card(s) failed to load ({shown}{more}); see `zoo plugins`."


def get_card(model_id: str) -> Card:
    """The card of a pretrained model id; an unknown id suggests the closest ones."""
    reg = registry()
    if model_id in reg.conflicts:
        raise reg.conflict_error(model_id)
    if model_id not in reg.cards:
        known = sorted(reg.cards)
        raise UnknownModelError(f"unknown model '{model_id}'.{_suggest(model_id, known)} "
                                f"`zoo list` shows all {len(known)} models.{_failures_note(reg)}")
    return reg.cards[model_id]


def create(architecture: str, **config: Any) -> Model | LearnedTokenizer:
    """An untrained model (or learned tokenizer) of a registered architecture, built from its config."""
    reg = registry()
    if architecture in reg.conflicts:
        raise reg.conflict_error(architecture)
    if architecture not in reg.architectures:
        known = sorted(reg.architectures)
        raise UnknownModelError(f"unknown architecture '{architecture}'.{_suggest(architecture, known)} "
                                f"Installed: {', '.join(known) or 'none'}.{_failures_note(reg)}")
    _, cls = reg.architectures[architecture]
    _check_config_types(architecture, cls, config)
    try:
        model = cls(**config)
    except ZooError:
        raise
    except (Exception, MemoryError) as e:  # a config the constructor cannot build (wrong type, size, value)
        raise InputError(f"architecture '{architecture}': bad config {config}: {type(e).__name__}: {e}") from None
    return model  # model.config: the constructor's arguments, defaults included (recorded by zoo.Model)


def _kind(default: Any) -> tuple[str, Any] | None:
    """What a config value must be, judged by its constructor default: (words, test), or None (anything)."""
    if isinstance(default, bool):
        return "true or false", lambda v: isinstance(v, bool)
    if isinstance(default, int):
        return "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)
    if isinstance(default, float):
        return "a number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if isinstance(default, str):
        return "a string", lambda v: isinstance(v, str)
    if isinstance(default, (list, tuple)):
        return "a list", lambda v: isinstance(v, (list, tuple))
    return None


def _check_config_types(architecture: str, cls: type, config: dict[str, Any]) -> None:
    """Refuse a config value of another kind than its constructor default (a card's `levels = "two"`), with the
    field's name, before the family's code meets it (where it fails with a TypeError that names nothing)."""
    import inspect
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        return
    for key, value in config.items():
        p = params.get(key)
        kind = None if p is None or p.default is inspect.Parameter.empty else _kind(p.default)
        if kind is not None and not kind[1](value):
            raise InputError(f"architecture '{architecture}': bad config: field '{key}' = {value!r} must be "
                             f"{kind[0]} (its default is {p.default!r})")


def _split_ref(ref: str) -> tuple[str, str, str]:
    """("hub", repo, revision), ("folder", path, "") or ("id", id, "") for a model reference."""
    if ref.startswith("hf://"):
        repo, _, rev = ref[len("hf://"):].partition("@")
        if not REPO_RE.match(repo) or ".." in repo or "--" in repo:
            raise InputError(f"'{ref}': a Hub reference looks like hf://org/name or hf://org/name@revision")
        if rev:
            check_revision(rev, repr(ref), InputError)
        return "hub", repo, rev
    local = ref[len("local-dir:"):] if ref.startswith("local-dir:") else ref
    if ref.startswith("local-dir:") or Path(local).is_dir():
        return "folder", local, ""
    return "id", ref, ""


def card_of(ref: str) -> Card:
    """The card of any model reference `load` takes (an id, `hf://org/name@rev`, `local-dir:PATH` or a folder),
    read without its weights: what `zoo info` shows."""
    kind, where, rev = _split_ref(ref)
    if kind == "hub":
        return read_card(hub_download(where, CARD_FILE, rev or None))
    return _folder_card_file(Path(where).expanduser()) if kind == "folder" else get_card(where)


def _folder_card_file(folder: Path) -> Card:
    """The card of a `zoo export` / `zoo train` folder, with an error that says what such a folder holds."""
    if not (folder / CARD_FILE).is_file():
        what = "does not exist" if not folder.exists() else (
            "is empty" if folder.is_dir() and not any(folder.iterdir()) else f"has no {CARD_FILE}")
        raise InputError(f"{folder} {what}: a model folder holds {CARD_FILE} (the card) and the weights file it "
                         "names (ID.safetensors), as `zoo export ID DIR` and `zoo train ID --out DIR` write them")
    return read_card(folder / CARD_FILE)


def _card_from_ref(ref: str) -> tuple[Card, Path | None]:
    """Resolve a model reference to (card, weights path if the reference implies one)."""
    kind, where, rev = _split_ref(ref)
    card = card_of(ref)
    if kind == "hub":
        return card, verified_hub_file(where, card.weights_file, rev or None, card.sha256)
    if kind == "folder":
        return card, Path(where).expanduser() / card.weights_file
    return card, None


def load(ref: str, weights: str | Path | None = None, device: str | torch.device | None = None) -> Model | LearnedTokenizer:
    """A pretrained model, weights verified and loaded, in eval mode.

    `ref` is a model id (`made-mnist-bin`), a Hub reference (`hf://org/name@rev`) or a folder written by
    `zoo export` (`local-dir:./out` or just the path). `weights` overrides the weights file: one whose sha256
    is the card's loads as the card's model; any other loads with an UnverifiedWeightsWarning, and the model's
    card and `weights_note` say whose weights they are (the card's metrics are dropped).
    """
    import torch
    card, implied = _card_from_ref(ref)
    if card.plugin not in registry().plugins:
        raise UnknownModelError(f"'{ref}' is a model of the zoo plugin '{card.plugin}', which is not installed "
                                f"(installed: {', '.join(sorted(registry().plugins)) or 'none'}); install the "
                                "package that provides it, then retry")
    note = ""
    if weights is not None:
        path = resolve_weights(card, weights)
        actual = sha256_file(path)
        if actual != card.sha256:
            # the user's own file (e.g. a training run of this architecture): loaded, but never presented as the
            # card's model: a warning now, a card without the card's metrics, and a note for every output
            note = (f"weights {path} (sha256 {actual[:12]}) are not {card.id}'s (sha256 {card.sha256[:12]}): "
                    f"this is the {card.architecture} architecture with other weights; {card.id}'s metrics do "
                    "not apply")
            warnings.warn(UnverifiedWeightsWarning(note), stacklevel=2)
            card = replace(card, sha256=actual, metrics=[], path=None, hub_repo=None, hub_revision=None,
                           weights_file=path.name if FILE_RE.match(path.name) else card.weights_file,
                           description=f"[not the card's weights] {note}. {card.description}")
    else:
        path = implied if implied is not None else resolve_weights(card)
    state = load_weights(path, card.sha256)
    with torch.device("meta"):  # check the shapes before allocating: a hostile config may ask for terabytes
        check_state(create(card.architecture, **card.config), state, str(path))
    model = create(card.architecture, **card.config)
    load_into(model, state, str(path), checked=True)  # checked above on the meta model: once each
    model.card = card
    model.weights_note = note
    return model.to(device or "cpu").eval()
