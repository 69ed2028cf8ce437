"""Small classifiers trained on each built-in dataset family, used as feature spaces for a sample-quality metric
that costs seconds (`cfd`: the Fréchet distance of their penultimate features) and to check what class a
class-conditional model draws (`class_accuracy`).

Inception features are slow on these cores (minutes per thousand images) and a weak signal on 28x28 digits; a
classifier trained on the data itself is the feature space the TTUR authors suggest for such data. One network
serves a family: `mnist` (8-bit and binarized MNIST, trained on both), `cifar10` and `cifar10-gray` (the `cifar10`
recipe trains on colour and grey images and also writes the grey network, `gray_net`). Its weights
ship with zoo as safetensors, beside a TOML card with its test accuracy and the command that trained it.
"""
from __future__ import annotations

import math
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .errors import InputError

#: where the shipped classifiers live: <family>.safetensors and <family>.toml
HOME = Path(__file__).parent / "classifiers"
#: the dataset family whose classifier scores each built-in dataset
FAMILY = {"mnist": "mnist", "mnist-bin": "mnist", "cifar10-gray": "cifar10-gray", "cifar10": "cifar10"}
#: width of the penultimate features
DIMS = 128
#: the recipe of each family: the training split of `dataset`, epochs, batch, learning rate, augmentation
RECIPES = {
    "mnist": {"dataset": "mnist", "channels": 1, "epochs": 4, "batch_size": 128, "lr": 2e-3, "shift": 2,
              "flip": False, "binarize": 0.5},
    "cifar10-gray": {"dataset": "cifar10-gray", "channels": 1, "epochs": 12, "batch_size": 128, "lr": 2e-3,
                     "shift": 4, "flip": True, "binarize": 0.0},
    "cifar10": {"dataset": "cifar10", "channels": 3, "epochs": 12, "batch_size": 128, "lr": 2e-3, "shift": 4,
                "flip": True, "binarize": 0.0, "gray": 0.3},
}
#: ITU-R 601 luma, the grey of the cifar10-gray dataset
LUMA = (0.299, 0.587, 0.114)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FeatureNet(nn.Module):
    """A five-layer CNN for 28x28 or 32x32 images in [0, 1]: three stages (32, 64, 128 channels), global average
    pooling to 128 features, a linear layer to the classes. About 0.3 M parameters, ~25 MFLOP an image."""

    def __init__(self, channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.channels = channels
        self.body = nn.Sequential(_block(channels, 32), _block(32, 32), nn.MaxPool2d(2),
                                  _block(32, 64), _block(64, 64), nn.MaxPool2d(2),
                                  _block(64, DIMS))
        self.head = nn.Linear(DIMS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 128) of images in [0, 1]."""
        return self.body((x - 0.5) / 0.5).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass(frozen=True)
class Classifier:
    """A shipped classifier: its network (eval mode), family, and card (test accuracy, how it was trained)."""

    net: FeatureNet
    family: str
    card: dict

    @property
    def accuracy(self) -> float | None:
        return self.card.get("test_accuracy")

    def describe(self) -> str:
        acc = f", test accuracy {100 * self.accuracy:.2f}%" if self.accuracy is not None else ""
        return f"zoo classifier '{self.family}' ({DIMS}-d penultimate features{acc})"

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 100,
                 progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Penultimate features (N, 128, float64, CPU) of float images in [0, 1], a batch at a time."""
        return self._map(images, self.net.features, batch_size, progress)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
        """The predicted class of each image (N,)."""
        return self._map(images, lambda x: self.net(x).argmax(1), batch_size, None).long()

    def _map(self, images, fn, batch_size, progress):
        if images.ndim != 4 or images.shape[1] != self.net.channels:
            raise InputError(f"the {self.family} classifier takes (N, {self.net.channels}, H, W) images, got "
                             f"{tuple(images.shape)}")
        device = next(self.net.parameters()).device
        out = []
        for start in range(0, len(images), batch_size):
            x = images[start:start + batch_size].to(device, torch.float32).contiguous(memory_format=torch.channels_last)
            out.append(fn(x).double().cpu())
            if progress is not None:
                progress(len(x))
        return torch.cat(out) if out else torch.zeros(0, DIMS, dtype=torch.float64)


def family_of(dataset: str) -> str:
    """The classifier family that scores a dataset; a clear error for one zoo has no classifier for."""
    if dataset not in FAMILY:
        raise InputError(f"zoo has no classifier for dataset '{dataset}' (cfd and class_accuracy need one); "
                         f"classifiers exist for {', '.join(FAMILY)}")
    return FAMILY[dataset]


_LOADED: dict[tuple[str, str], Classifier] = {}


def load_file_state(family: str) -> dict[str, torch.Tensor]:
    """The state dict of a shipped classifier's plain network (for benchmarks and retraining)."""
    from safetensors.torch import load_file
    return load_file(str(HOME / f"{family}.safetensors"))


def load(dataset: str, path: str | Path | None = None, device: str | torch.device = "cpu") -> Classifier:
    """The classifier of a dataset's family, its weights verified finite and loaded, in eval mode (cached)."""
    from safetensors.torch import load_file
    family = family_of(dataset)
    weights = Path(path) if path else HOME / f"{family}.safetensors"
    key = (str(weights), str(device))
    if key in _LOADED:
        return _LOADED[key]
    if not weights.is_file():
        raise InputError(f"the {family} classifier's weights are missing ({weights}); train them with "
                         f"`python scripts/train_classifier.py {family}`")
    card_path = weights.with_suffix(".toml")
    card = tomllib.loads(card_path.read_text()) if card_path.is_file() else {}
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors' own errors do not name the file
        raise InputError(f"cannot read classifier weights {weights}: {e}") from e
    net = FeatureNet(RECIPES[family]["channels"])
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise InputError(f"{weights} does not hold a {family} classifier: {e}") from e
    if not all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()):
        raise InputError(f"{weights} holds non-finite values; train the classifier again")
    _LOADED[key] = c = Classifier(inference_net(net).to(device), family, card)
    return c


def inference_net(net: FeatureNet) -> FeatureNet:
    """An evaluation copy of a classifier, about 2.5x faster on a CPU with the same outputs to float rounding
    (2e-6): each batch norm folded into its convolution, channels-last memory. Batches of 100 suit it best
    (`benchmarks/classifier_features.py`)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval
    fast = copy.deepcopy(net).eval()
    fast.body = nn.Sequential(*[nn.Sequential(fuse_conv_bn_eval(m[0], m[1]), nn.ReLU(inplace=True))
                                if isinstance(m, nn.Sequential) else m for m in fast.body])
    return fast.to(memory_format=torch.channels_last)


def _augment(x: torch.Tensor, recipe: dict, g: torch.Generator) -> torch.Tensor:
    """Random shifts (zero padding), horizontal flips, Bernoulli binarization and grey images (luma in all three
    channels), per the recipe."""
    n, _, h, w = x.shape
    s = recipe["shift"]
    if s:
        padded = F.pad(x, (s, s, s, s))
        dx, dy = torch.randint(0, 2 * s + 1, (2,), generator=g).tolist()  # one shift per batch: cheap and enough
        x = padded[:, :, dy:dy + h, dx:dx + w]
    if recipe["flip"]:
        flip = torch.rand(n, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if recipe["binarize"]:
        b = torch.rand(n, generator=g) < recipe["binarize"]
        x = torch.where(b[:, None, None, None], torch.bernoulli(x, generator=g), x)
    if recipe.get("gray"):
        grey = torch.rand(n, generator=g) < recipe["gray"]
        luma = (x * torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
        x = torch.where(grey[:, None, None, None], luma, x)
    return x


def gray_net(net: FeatureNet) -> FeatureNet:
    """The one-channel network that gives a colour classifier's outputs on a grey image shown as three equal
    channels: its first convolution summed over the colour channels (exact up to float rounding)."""
    import copy
    grey = copy.deepcopy(net)
    conv = grey.body[0][0]
    one = nn.Conv2d(1, conv.out_channels, conv.kernel_size, padding=conv.padding, bias=False)
    with torch.no_grad():
        one.weight.copy_(conv.weight.sum(1, keepdim=True))
    grey.body[0][0] = one
    grey.channels = 1
    return grey


@torch.no_grad()
def accuracy(net: nn.Module, data, batch_size: int = 500) -> float:
    """Share of a split's images whose predicted class is their label."""
    net.eval()
    right = 0
    for start in range(0, len(data), batch_size):
        x, y = data.batch(torch.arange(start, min(start + batch_size, len(data))))
        right += int((net(x).argmax(1) == y).sum())
    return right / max(len(data), 1)


def train(family: str, data_dir: str | Path | None = None, out: str | Path | None = None, epochs: int | None = None,
          seed: int = 0, log: Callable[[str], None] = print) -> dict:
    """Train a family's classifier by its recipe on the training split (validation split to report, test split
    for the card), write <out>/<family>.safetensors and its .toml card, and return the card."""
    from .data import load_dataset
    recipe = dict(RECIPES[family])
    if epochs is not None:
        recipe["epochs"] = epochs
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    train_data = load_dataset(recipe["dataset"], "train", data_dir)
    val_data = load_dataset(recipe["dataset"], "val", data_dir)
    test_data = load_dataset(recipe["dataset"], "test", data_dir)
    net = FeatureNet(recipe["channels"])
    steps = recipe["epochs"] * math.ceil(len(train_data) / recipe["batch_size"])
    opt = torch.optim.AdamW(net.parameters(), lr=recipe["lr"], weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps, pct_start=0.15)
    started = time.time()
    for epoch in range(recipe["epochs"]):
        net.train()
        order = torch.randperm(len(train_data), generator=g)
        total = 0.0
        for i in range(0, len(order), recipe["batch_size"]):
            x, y = train_data.batch(order[i:i + recipe["batch_size"]])
            loss = F.cross_entropy(net(_augment(x, recipe, g)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(y)
        log(f"epoch {epoch + 1}/{recipe['epochs']}: train loss {total / len(train_data):.4f}, val accuracy "
            f"{100 * accuracy(net, val_data):.2f}% ({time.time() - started:.0f} s)")
    net.eval()
    card = {"family": family, "dataset": recipe["dataset"], "test_accuracy": round(accuracy(net, test_data), 5),
            "val_accuracy": round(accuracy(net, val_data), 5), "test": test_data.describe(),
            "train": train_data.describe(), "epochs": recipe["epochs"], "seed": seed,
            "params": sum(p.numel() for p in net.parameters()),
            "command": f"python scripts/train_classifier.py {family}"
                       + (f" --epochs {epochs}" if epochs is not None else "") + (f" --seed {seed}" if seed else ""),
            "recipe": {k: v for k, v in recipe.items() if k != "dataset"}}
    if family == "mnist":
        bin_test = load_dataset("mnist-bin", "test", data_dir)
        card["test_accuracy_binarized"] = round(accuracy(net, bin_test), 5)
    out = Path(out) if out else HOME
    _save(net, card, out, family, log)
    if family == "cifar10" and recipe.get("gray"):
        # trained on grey images too, so the same network serves cifar10-gray (one training, two feature spaces)
        grey, grey_data = gray_net(net), load_dataset("cifar10-gray", "test", data_dir)
        grey_card = {**card, "family": "cifar10-gray", "dataset": "cifar10-gray",
                     "test_accuracy": round(accuracy(grey, grey_data), 5),
                     "val_accuracy": round(accuracy(grey, load_dataset("cifar10-gray", "val", data_dir)), 5),
                     "test": grey_data.describe(), "colour_test_accuracy": card["test_accuracy"],
                     "derived_from": "cifar10: its first convolution summed over the colour channels"}
        _save(grey, grey_card, out, "cifar10-gray", log)
    return card


def _save(net: FeatureNet, card: dict, out: Path, family: str, log: Callable[[str], None]) -> None:
    from safetensors.torch import save_file
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / f"{family}.safetensors"))
    (out / f"{family}.toml").write_text(_toml(card))
    log(f"{family}: test accuracy {100 * card['test_accuracy']:.2f}%; wrote {out / (family + '.safetensors')}")


def _toml(card: dict) -> str:
    lines = ["# A zoo classifier (feature space of cfd, judge of class_accuracy); written by scripts/train_classifier.py"]
    for k, v in card.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_value(v)}")
    for k, v in card.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]", *(f"{kk} = {_value(vv)}" for kk, vv in v.items())]
    return "\n".join(lines) + "\n"


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
