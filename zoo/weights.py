"""Weights: safetensors only, sha256-verified, resolved from an explicit path, the local Hub cache, the copy
bundled with the plugin, or the Hugging Face Hub (in that order).

The Hub client honours HF_ENDPOINT, HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE; we read them at call time
(huggingface_hub reads them at import) so that a change in the environment takes effect.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from pathlib import Path

from typing import TYPE_CHECKING

from .cache import user_cache
from .cards import Card
from .errors import WeightsError

if TYPE_CHECKING:
    import torch

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024


_HASHES: dict[tuple, str] = {}  # (path, inode, size, mtime in ns) -> sha256: each file is read once per process


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks, once per process for a file that has not changed since (same
    inode, size and modification time): loading a card verifies its weights once, however many steps ask."""
    st = os.stat(path)
    key = (str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def hub_cache_dir() -> str:
    """The huggingface_hub cache folder, from HF_HUB_CACHE or HF_HOME as set now."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(user_cache(), "huggingface")
    return os.path.join(home, "hub")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def hub_endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def hub_download(repo_id: str, filename: str, revision: str | None = None, force: bool = False) -> Path:
    """Download (or reuse from the cache) one file of a Hub repo; clear errors for every failure.

    `force` downloads again even when the cache has the file (to replace a corrupt copy)."""
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (EntryNotFoundError, LocalEntryNotFoundError,
                                            RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError:  # older huggingface_hub
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import (EntryNotFoundError, LocalEntryNotFoundError,  # type: ignore
                                           RepositoryNotFoundError, RevisionNotFoundError)
    where = f"hf://{repo_id}{'@' + revision if revision else ''}/{filename}"
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=hub_cache_dir(),
                                    endpoint=hub_endpoint(), local_files_only=hub_offline(),
                                    force_download=force and not hub_offline()))
    except RevisionNotFoundError:
        raise WeightsError(f"{where}: revision '{revision}' not found on the Hub") from None
    except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass of it
        raise WeightsError(f"{where}: not in the local cache ({hub_cache_dir()}) and the Hub cannot be reached"
                           f"{' (HF_HUB_OFFLINE is set)' if hub_offline() else ''}. Connect and retry, or "
                           "pass an explicit weights path") from None
    except EntryNotFoundError:
        raise WeightsError(f"{where}: the repo has no file '{filename}'") from None
    except RepositoryNotFoundError:
        raise WeightsError(f"{where}: repository '{repo_id}' not found on the Hub (or it is private: "
                           "log in with `hf auth login`)") from None
    except Exception as e:  # network errors, HTTP 5xx
        raise WeightsError(f"{where}: download failed: {type(e).__name__}: {e}") from None


def verified_hub_file(repo_id: str, filename: str, revision: str | None, sha256: str) -> Path:
    """A Hub file whose sha256 is `sha256`. A cached copy that does not match (a crash or a disk error left it
    corrupt) is never trusted: it is downloaded once more; if that copy does not match either, `load_weights`
    refuses it with an error naming the file."""
    path = hub_download(repo_id, filename, revision)
    if sha256_file(path) != sha256 and not hub_offline():
        path = hub_download(repo_id, filename, revision, force=True)
    return path


def hub_cached(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """The path of a file already in the local Hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(), revision=revision)
    return Path(found) if isinstance(found, str) else None


def weight_status(card: Card) -> str:
    """'bundled', 'cached', 'remote' or 'missing': where `resolve_weights` would find this card's weights."""
    bundled = card.weights_path()
    if card.hub_repo and hub_cached(card.hub_repo, card.weights_file, card.hub_revision):
        return "cached"
    if bundled is not None and bundled.is_file():
        return "bundled"
    return "remote" if card.hub_repo else "missing"


def resolve_weights(card: Card, explicit: str | Path | None = None) -> Path:
    """Find the weights file for a card: explicit path, Hub cache, bundled copy, then Hub download."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found")
        return path
    cached = None
    if card.hub_repo:
        cached = hub_cached(card.hub_repo, card.weights_file, card.hub_revision)
        if cached is not None and sha256_file(cached) == card.sha256:
            return cached
        # a cached copy that does not match the card (corrupt) is not trusted: the bundled copy or a new
        # download replaces it
    bundled = card.weights_path()
    if bundled is not None and bundled.is_file():
        return bundled
    if card.hub_repo:
        return hub_download(card.hub_repo, card.weights_file, card.hub_revision, force=cached is not None)
    raise WeightsError(f"{card.id}: weights '{card.weights_file}' are neither bundled "
                       f"({bundled}) nor published on the Hub; pass an explicit weights path")


def tensor_count(path: str | Path) -> int:
    """The number of values stored in a safetensors file, from its header alone (no torch, no data read)."""
    return sum(math.prod(v["shape"]) for k, v in _check_safetensors_header(Path(path)).items()
               if k != "__metadata__")


def _check_safetensors_header(path: Path) -> dict:
    """Refuse pickles and truncated files before handing them to safetensors, with a message naming the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        plausible = 0 < n <= SAFETENSORS_MAX_HEADER and 8 + n <= size
        if not plausible and (head[:2] == b"PK" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03",
                                                                                          b"\x04", b"\x05"))):
            raise WeightsError(f"{path}: this is a pickle / torch.save file; zoo loads safetensors only and never "
                               "unpickles. Convert it with safetensors.torch.save_file(state_dict, 'x.safetensors')")
        if len(head) < 8:
            raise WeightsError(f"{path}: not a safetensors file (only {size} bytes)")
        if not plausible:
            raise WeightsError(f"{path}: corrupt or truncated safetensors file (header of {n} bytes, file of {size})")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise WeightsError(f"{path}: corrupt safetensors file (unreadable header)") from None
    try:
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (AttributeError, KeyError, TypeError, IndexError, ValueError):
        raise WeightsError(f"{path}: corrupt safetensors file (malformed header)") from None
    if 8 + n + end != size:
        raise WeightsError(f"{path}: truncated or corrupt safetensors file (expected {8 + n + end} bytes, "
                           f"found {size}); delete it and fetch it again")
    return header


def load_weights(path: str | Path, sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file into a state dict, after checking its sha256 when one is given."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if sha256 is not None:
        actual = sha256_file(path)
        if actual != sha256:
            raise WeightsError(f"{path}: sha256 mismatch (expected {sha256}, got {actual}); the file is corrupt or "
                               "not the one the card describes. A downloaded or cached copy: delete it and fetch it "
                               "again. A folder of your own (zoo export, zoo train --out): write it again with that "
                               "command, since the card beside it records the weights' sha256")
    _check_safetensors_header(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read safetensors file: {e}") from None


def save_weights(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> str:
    """Write a state dict as safetensors atomically (temp file, then rename); returns its sha256."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return sha256_file(path)


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse a state dict that does not fit the model: missing, unexpected or mis-shaped tensors, a dtype of
    another kind (integer where the model has floats), or parameters that are NaN or infinite. The model may be
    on the 'meta' device (nothing allocated), so a card's config is checked against its file before it is built."""
    import torch
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        if wrong:
            parts.append(f"wrong shapes {wrong[:5]}")
        raise WeightsError(f"{source}: weights do not match the model's config: " + "; ".join(parts))
    kinds = [f"{k}: file {state[k].dtype} vs model {own[k].dtype}" for k in own
             if (state[k].is_floating_point(), state[k].is_complex()) != (own[k].is_floating_point(),
                                                                         own[k].is_complex())]
    if kinds:
        raise WeightsError(f"{source}: tensors of the wrong kind of dtype: {kinds[:5]}")
    params = {name for name, _ in model.named_parameters()}
    bad = [k for k in sorted(params & set(state))
           if state[k].is_floating_point() and not bool(torch.isfinite(state[k]).all())]
    if bad:
        raise WeightsError(f"{source}: parameters with NaN or infinite values: {bad[:5]}; the file is corrupt")


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str, checked: bool = False) -> None:
    """Load a state dict strictly: missing, unexpected or mis-shaped tensors are an error naming the file.
    checked=True: `check_state` has passed this state for this config already (it is not scanned twice)."""
    if not checked:
        check_state(model, state, source)
    model.load_state_dict(state, strict=True)
