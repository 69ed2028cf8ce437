"""How a card's figures read in a table: parameters, NLL, FID with its floor, the dataset, the output head. Shared
by `zoo list` / `zoo info` (zoo.cli) and the demo's catalogue (zoo.demo), so that neither imports the other."""
from __future__ import annotations

import math
from typing import Any

from .errors import ZooError


def params(card: Any) -> int:
    """The card's recorded parameter count, else the values in its local weights file (header only), else -1."""
    if card.params is not None:
        return card.params
    from .weights import tensor_count
    path = card.weights_path()
    try:
        return tensor_count(path) if path is not None and path.is_file() else -1
    except ZooError:
        return -1


def head_text(card: Any) -> str | None:
    """What the card's model outputs per pixel (its zoo.heads head, softmax unless the config names another), or
    None for a model with no per-pixel levels (VAR, a tokenizer). Read from the config: no model is built."""
    from .heads import make_head
    config = card.config
    if "levels" not in config or "image_shape" not in config:
        return None
    try:
        return make_head(config.get("head", "softmax"), int(config["levels"]), int(config["image_shape"][0]),
                         config.get("mixtures")).describe()
    except (ZooError, TypeError, ValueError, IndexError):
        return None


def nll_text(m: Any, card: Any) -> str:
    """A test NLL metric: nats per image, and bits per dimension where the data is not binary."""
    if "token" in m.unit:
        return f"{m.value:.2f} nats (tokens)"
    dims = math.prod(card.config.get("image_shape", [1]))
    bpd = f" ({m.value / (dims * math.log(2)):.2f} bpd)" if card.dataset != "mnist-bin" else ""
    return f"{m.value:.2f} nats{bpd}"


def dataset_text(card: Any) -> str:
    """The dataset a card names, marked when it was measured on a stand-in copy (cifar10-jpeg)."""
    copy = str(card.data.get("copy", ""))
    return f"{card.dataset}*" if "jpeg" in copy.lower() else card.dataset


def fid_text(m: Any, card: Any, short: bool = False) -> str:
    """An FID metric with its n and the dataset's real-vs-real floor at that n, where one is known."""
    from .floors import known_floors
    floor = known_floors().get((card.dataset, m.n))
    if short:
        return f"{m.value:.1f} ({m.n:,}" + (f"; {floor['value']:.1f})" if floor else ")")
    return f"{m.value:.1f} (n={m.n:,}" + (f"; floor {floor['value']:.1f})" if floor else ")")


def nll_short(m: Any, card: Any) -> str:
    """A test NLL for the compact table: nats on binary data, else bits per dimension."""
    if "token" in m.unit:
        return f"{m.value:.1f} tok"
    dims = math.prod(card.config.get("image_shape", [1]))
    return f"{m.value:.2f}" if card.dataset == "mnist-bin" else f"{m.value / (dims * math.log(2)):.2f} bpd"
