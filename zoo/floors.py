"""The real-vs-real FID floors zoo ships (zoo/fid_floors.toml): read without importing torch, so that `zoo list`
and `zoo info` can print them beside model FIDs."""
from __future__ import annotations

import tomllib
from pathlib import Path

FLOORS_FILE = Path(__file__).with_name("fid_floors.toml")


def known_floors(path: str | Path | None = None) -> dict[tuple[str, int], dict]:
    """Measured floors, keyed by (dataset, n): value, command, note."""
    path = Path(path or FLOORS_FILE)
    if not path.is_file():
        return {}
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("floor", [])
    return {(e["dataset"], int(e["n"])): e for e in entries}
