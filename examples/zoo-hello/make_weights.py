"""Fit the hello-mnist-bin weights and write zoo_hello/weights/hello-mnist-bin.safetensors.

Independent pixels have a closed-form maximum-likelihood fit: the frequency of each value at each sub-pixel.
For mnist-bin the training images are binarized afresh each epoch (Bernoulli(pixel/255)), so the expected
frequency of a 1 is the mean intensity; add-one (Laplace) smoothing keeps every probability above zero.

    ZOO_DATA_DIR=/path/to/data python make_weights.py     # prints the sha256 that goes in the card

Without the data (zoo.DataError) it writes uniform logits instead and says so: those are not the card's weights.
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import torch

import zoo
import zoo.data
import zoo.weights

HERE = Path(__file__).resolve().parent
CARD = HERE / "zoo_hello" / "cards" / "hello-mnist-bin.toml"


def fit_binary(images: torch.Tensor) -> torch.Tensor:
    """Logits (T, 2) of per-sub-pixel Bernoullis fitted to uint8 images (N, C, H, W) in expectation."""
    ones = images.flatten(1).double().sum(0) / 255.0  # expected number of 1s after Bernoulli binarization
    p = (ones + 1.0) / (images.shape[0] + 2.0)        # Laplace smoothing
    return torch.stack([torch.log1p(-p), torch.log(p)], 1).float()


def main() -> int:
    card = tomllib.loads(CARD.read_text(encoding="utf-8"))
    config = card["config"]
    if card["data"]["dataset"] != "mnist-bin" or config["levels"] != 2:
        raise SystemExit("this script fits binary data only (dataset mnist-bin, levels = 2)")
    model = zoo.create(card["architecture"], **config) if "pixels" in zoo.list_architectures() else None
    shape = tuple(config["image_shape"])
    try:
        train = zoo.data.load_dataset("mnist-bin", "train")
        logits = fit_binary(train.images)
        print(f"fitted to {train.describe()}")
    except zoo.DataError as e:
        logits = torch.zeros(torch.Size(shape).numel(), 2)
        print(f"warning: {e}\n  -> wrote uniform logits (p = 0.5 everywhere), not the card's weights", file=sys.stderr)
    state = {"logits": logits}
    if model is not None:  # the hello plugin is installed: check the file loads strictly into the model
        zoo.weights.load_into(model, state, "make_weights.py")
    out = HERE / "zoo_hello" / "weights" / card["weights"]["file"]
    sha = zoo.weights.save_weights(state, out, metadata={"fit": "per-pixel Bernoulli MLE, Laplace smoothing"})
    print(f"wrote {out.relative_to(HERE)}\nsha256 = \"{sha}\"")
    if sha != card["weights"]["sha256"]:
        print(f"note: {CARD.relative_to(HERE)} has sha256 {card['weights']['sha256']}: put the line above in its "
              "[weights] table", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
