"""`zoo export`: a folder ready to upload to the Hugging Face Hub (card.toml, weights, README.md).

`zoo.load("hf://org/name@rev")` and `zoo.load("local-dir:FOLDER")` read exactly this layout back.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from .api import CARD_FILE
from .cards import Card, dump_card
from .errors import InputError
from .weights import load_weights, resolve_weights, sha256_file


def hub_readme(card: Card) -> str:
    """A Hub model card (YAML front matter + markdown) generated from a zoo card."""
    lines = ["---", "library_name: zoo", "tags:", "- autoregressive", "- image-generation", f"- {card.plugin}",
             f"- {card.dataset}", "---", "", f"# {card.id}", "", card.description, "",
             f"Load it with `zoo.load(\"hf://{card.hub_repo or 'ORG/NAME'}\")` after `pip install zoo` "
             f"(needs the `{card.plugin}` plugin).", "", "## Data", ""]
    lines += [f"- **{k}**: {v}" for k, v in card.data.items()]
    if card.metrics:
        lines += ["", "## Metrics", "", "| metric | value | unit | split | n | command |", "|---|---|---|---|---|---|"]
        lines += [f"| {m.name} | {m.value:.4g} | {m.unit} | {m.split} | {m.n} | `{m.command}` |" for m in card.metrics]
    return "\n".join(lines) + "\n"


def export(model_id: str, out: str | Path, repo: str | None = None, overwrite: bool = False) -> Path:
    """Write card.toml, the verified weights file and README.md into `out`. `model_id` is an id or any reference
    `zoo.load` takes (a run folder of `zoo train`: `local-dir:runs/mine`)."""
    from .api import _card_from_ref
    card, implied = _card_from_ref(model_id)
    out = Path(out)
    if implied is not None and implied.parent.resolve() == out.resolve():
        raise InputError(f"{out} is where {model_id} already lives; export it to another folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out} is not empty; choose an empty folder or pass --overwrite")
    src = implied if implied is not None else resolve_weights(card)
    load_weights(src, card.sha256)  # verify before publishing (and before creating anything)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out / card.weights_file)
    new = dataclasses.replace(card, hub_repo=repo or card.hub_repo, hub_revision=None, path=None)
    new.sha256 = sha256_file(out / card.weights_file)
    (out / CARD_FILE).write_text(dump_card(new), encoding="utf-8")
    (out / "README.md").write_text(hub_readme(new), encoding="utf-8")
    return out
