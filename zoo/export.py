"""`zoo export`: a folder ready to upload to the Hugging Face Hub (card.toml, weights, README.md), which also runs as
a Gradio Space of the demo for that model (app.py, requirements.txt).

`zoo.load("hf://org/name@rev")` and `zoo.load("local-dir:FOLDER")` read exactly this layout back. The README's YAML
header follows the Hub's model-card conventions: pipeline_tag, license, datasets and a model-index of the card's
metrics (written by huggingface_hub's ModelCardData).
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from .api import CARD_FILE
from .cards import Card, dump_card
from .errors import InputError
from .weights import load_weights, resolve_weights, sha256_file


#: the Hub datasets behind zoo's built-in dataset names (a plugin's or a folder's dataset has none)
HUB_DATASETS = {"mnist": "ylecun/mnist", "mnist-bin": "ylecun/mnist", "cifar10": "uoft-cs/cifar10",
                "cifar10-gray": "uoft-cs/cifar10"}
#: zoo's own license, which the exported card states (change it in the README if your weights have another)
LICENSE = "mit"
#: the plugins that ship inside ar-zoo: a Space of any other needs its package too
FIRST_PARTY = ("made", "pixelcnn", "var")
PIPELINE_TAG = "unconditional-image-generation"
#: the first ar-zoo release with `zoo.demo`
DEMO_SINCE = "0.4.0"


def _eval_results(card: Card) -> list:
    """The card's metrics as the Hub's model-index entries (one per metric; unverified, with n and command)."""
    from huggingface_hub import EvalResult
    dataset = HUB_DATASETS.get(card.dataset, card.dataset)
    return [EvalResult(task_type=PIPELINE_TAG, dataset_type=dataset, dataset_name=card.dataset, dataset_split=m.split,
                       metric_type=m.name, metric_value=m.value, metric_name=f"{m.name} ({m.unit}, n={m.n:,})",
                       metric_args={"n": m.n, "command": m.command}) for m in card.metrics]


def hub_header(card: Card) -> str:
    """The README's YAML header: the Hub's model-card metadata, and the Space settings that run app.py."""
    from importlib.metadata import PackageNotFoundError, version

    from huggingface_hub import ModelCardData
    space = {"sdk": "gradio", "app_file": "app.py"}
    try:
        space["sdk_version"] = version("gradio")  # the Gradio the page was exported (and tested) with
    except PackageNotFoundError:
        pass  # the Hub picks a Gradio; requirements.txt asks for the demo extra's
    data = ModelCardData(library_name="zoo", license=LICENSE, pipeline_tag=PIPELINE_TAG,
                         datasets=[HUB_DATASETS[card.dataset]] if card.dataset in HUB_DATASETS else None,
                         tags=["autoregressive", "image-generation", card.plugin, card.dataset],
                         model_name=card.id, eval_results=_eval_results(card) or None, **space)
    return f"---\n{data.to_yaml()}\n---"


def hub_readme(card: Card) -> str:
    """A Hub model card (YAML front matter + markdown) generated from a zoo card."""
    repo = card.hub_repo or "ORG/NAME"
    lines = [hub_header(card), "", f"# {card.id}", "", card.description, "",
             f"Install zoo with `pip install ar-zoo` (the `zoo` package on PyPI is an unrelated project), then load "
             f"it with `zoo.load(\"hf://{repo}\")` (needs the `{card.plugin}` plugin"
             + (", which ships with ar-zoo)." if card.plugin in FIRST_PARTY else ")."), "",
             "## Demo", "",
             "This folder is also a Gradio Space of zoo's demo for this model (sample, complete a painted mask, exact "
             "likelihoods): `pip install -r requirements.txt && python app.py` serves it at http://127.0.0.1:7860, "
             f"and `hf upload {repo} . --repo-type space` publishes it as a Space.", "",
             f"License: {LICENSE.upper()}, zoo's license (change the `license` field if your weights have another).",
             "", "## Data", ""]
    lines += [f"- **{k}**: {v}" for k, v in card.data.items()]
    if card.metrics:
        lines += ["", "## Metrics", "", "| metric | value | unit | split | n | command |", "|---|---|---|---|---|---|"]
        lines += [f"| {m.name} | {m.value:.4g} | {m.unit} | {m.split} | {m.n} | `{m.command}` |" for m in card.metrics]
    return "\n".join(lines) + "\n"


def space_app(card: Card) -> str:
    """app.py: the demo page for this folder's model (read from the folder, sha256-checked, never downloaded)."""
    return f'''"""zoo's demo page for {card.id}, written by `zoo export`: a Gradio Space on the Hub, or a local page.

Here: `pip install -r requirements.txt && python app.py`, then open http://127.0.0.1:7860. The model is this folder's
card.toml and weights (sha256-checked against the card), never a download.
"""
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from zoo.demo import build_app, run  # noqa: E402

demo = build_app([f"local-dir:{{Path(__file__).resolve().parent}}"], title="{card.id}")

if __name__ == "__main__":
    run(demo)  # on a Space, GRADIO_SERVER_NAME and GRADIO_SERVER_PORT say where to listen
'''


def space_requirements(card: Card) -> str:
    """requirements.txt of the Space: ar-zoo with its demo extra (and a third-party plugin's package, by name)."""
    lines = ["# the demo of this model as a Hugging Face Space: zoo (ar-zoo on PyPI) with its demo extra",
             f"ar-zoo[demo]>={DEMO_SINCE}"]
    if card.plugin not in FIRST_PARTY:
        lines.append(f"# and the package that provides the zoo plugin '{card.plugin}' (add its name below)")
    return "\n".join(lines) + "\n"


def export(model_id: str, out: str | Path, repo: str | None = None, overwrite: bool = False) -> Path:
    """Write card.toml, the verified weights file, README.md, app.py and requirements.txt into `out`. `model_id` is
    an id or any reference `zoo.load` takes (a run folder of `zoo train`: `local-dir:runs/mine`)."""
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
    (out / "app.py").write_text(space_app(new), encoding="utf-8")
    (out / "requirements.txt").write_text(space_requirements(new), encoding="utf-8")
    return out
