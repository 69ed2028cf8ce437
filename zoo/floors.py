"""The real-vs-real FID floors zoo ships (zoo/fid_floors.toml): read without importing torch, so that `zoo list`
and `zoo info` can print them beside model FIDs."""
from __future__ import annotations

import tomllib
from pathlib import Path

from .errors import InputError

FLOORS_FILE = Path(__file__).with_name("fid_floors.toml")


FLOORS_HEADER = ("# Real-vs-real FID floors: the first n train images against the whole test split, measured with\n"
                 "# the command given. `zoo list` and `zoo info` print them beside model FIDs of the same n.\n\n")


def _parse_floors(text: str, path: Path) -> dict[tuple[str, int], dict]:
    try:
        entries = tomllib.loads(text).get("floor", [])
        return {(e["dataset"], int(e["n"])): e for e in entries}
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(f"{path}: not a floors file ({type(e).__name__}: {e}); restore it from version "
                         "control") from None


def known_floors(path: str | Path | None = None) -> dict[tuple[str, int], dict]:
    """Measured floors, keyed by (dataset, n): value, command, note."""
    path = Path(path or FLOORS_FILE)
    if not path.is_file():
        return {}
    return _parse_floors(path.read_text(encoding="utf-8"), path)
