#!/usr/bin/env python3
"""A gated PixelCNN's weights with wider kernels, as a model folder (card.toml + safetensors) that `zoo train
--init` starts from: the new taps are zero, so it computes the same function (checked here on test images) and
training can grow its receptive field. An 8-layer 3x3 PixelCNN on 28x28 sees 241 of the bottom-centre pixel's 770
predecessors; with 5x5 kernels after the first layer, 518 (issue 23: pixelcnn-mnist-bin was widened so).

    python scripts/widen_pixelcnn.py pixelcnn-mnist --kernel 5 --out runs/queue/pixelcnn-mnist-k5-init
    zoo train experiments/queue/pixelcnn-mnist-k5.toml --init runs/queue/pixelcnn-mnist-k5-init ...
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch


def widen(ref: str, kernel: int, out: Path) -> str:
    """Write `ref`'s weights widened to `kernel` into the folder `out`; returns a line that says what it wrote."""
    import zoo
    from zoo.api import card_of
    from zoo.cards import write_card
    from zoo.weights import save_weights
    from zoo_pixelcnn import widen_kernels

    card = card_of(ref)
    if card.architecture != "pixelcnn" or card.config.get("kind", "gated") != "gated":
        raise SystemExit(f"{ref} is a {card.architecture} ({card.config.get('kind')}): only gated PixelCNNs widen")
    small = zoo.load(ref)
    config = {**card.config, "kernel": kernel}
    wide = zoo.create("pixelcnn", **config)
    wide.load_state_dict(widen_kernels({k: v.float() for k, v in small.state_dict().items()}, kernel))
    small.float()
    c, h, w = small.image_shape
    x = torch.rand(8, c, h, w, generator=torch.Generator().manual_seed(0))
    x = (x > 0.5).float() if small.levels == 2 else (x * 255).round() / 255
    y = torch.arange(8) % small.num_classes if small.num_classes else None
    with torch.no_grad():
        gap = (wide.log_prob(x, y=y) - small.log_prob(x, y=y)).abs().max().item()
    if gap > 1e-3:
        raise SystemExit(f"the widened model's log-likelihoods differ from {ref}'s by {gap:.3g} nats: not written")
    out.mkdir(parents=True, exist_ok=True)
    sha = save_weights(wide.state_dict(), out / card.weights_file)
    note = (f" Widened from {ref} ({card.sha256[:12]}): kernels {card.config.get('kernel', 3)} -> {kernel} after the "
            f"first layer, new taps zero (`python scripts/widen_pixelcnn.py {ref} --kernel {kernel}`).")
    write_card(dataclasses.replace(card, config=config, sha256=sha, params=sum(p.numel() for p in wide.parameters()),
                                   description=card.description + note, metrics=[], path=None), out / "card.toml")
    probe = zoo.create("pixelcnn", **config)  # random weights: which predecessors the new taps can reach
    seen, before = probe.receptive_field()
    return (f"{out}: {ref} with {kernel}x{kernel} kernels, the same log-likelihoods (largest gap {gap:.2g} nats); "
            f"the bottom-centre pixel can now depend on {seen} of its {before} predecessors "
            f"({small.receptive_field()[0]} before)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", help="a gated PixelCNN: model id, run folder or hf:// ref")
    ap.add_argument("--kernel", type=int, required=True, help="the new kernel size (odd, larger than the model's)")
    ap.add_argument("--out", required=True, help="the folder to write (card.toml and weights)")
    a = ap.parse_args(argv)
    print(widen(a.ref, a.kernel, Path(a.out)))


if __name__ == "__main__":
    main()
