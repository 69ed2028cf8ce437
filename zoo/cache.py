"""The one home of the cache root: `$XDG_CACHE_HOME` (default `~/.cache`), with zoo's files under `zoo/`.

Datasets (`zoo/data`), the Inception weights and FID statistics (`zoo/fid`) live under `zoo_cache()`; the Hub
cache follows huggingface_hub (`HF_HUB_CACHE`, `HF_HOME`, else `user_cache()/huggingface`).
"""
from __future__ import annotations

import os
from pathlib import Path


def user_cache() -> Path:
    """The user's cache folder: $XDG_CACHE_HOME, else ~/.cache (read at each call)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"))


def zoo_cache(*parts: str) -> Path:
    """A folder (or file) under zoo's cache: user_cache()/zoo/parts..."""
    return user_cache().joinpath("zoo", *parts)
