"""Benchmark: cached PixelCNN sampling (each layer's activation computed once per pixel) against the naive
sampler (the whole network recomputed for each of the H*W pixels), side by side on one model and seed.

    python benchmarks/pixelcnn_sampling.py                          # an untrained 28x28 gated PixelCNN
    python benchmarks/pixelcnn_sampling.py --model pixelcnn-mnist -n 16

Prints images/s of each and their ratio, and checks that both drew the same images. The naive sampler is
slow by design (minutes for 16 images): keep n small.
"""
from __future__ import annotations

import argparse
import time

import torch

import zoo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a pretrained id (default: an untrained gated 8x32 model)")
    ap.add_argument("-n", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        m = zoo.load(args.model)
    else:
        torch.manual_seed(0)
        m = zoo.create("pixelcnn", image_shape=[1, 28, 28], levels=256, kind="gated", hidden=32, layers=8).eval()
    name = args.model or "gated PixelCNN 8x32 (untrained)"
    print(f"{name}: {m.num_params / 1e6:.2f}M params, {m.image_shape}, n = {args.n}, {torch.get_num_threads()} threads")
    m.sample(2, seed=0)  # warm-up
    t = time.perf_counter()
    fast = m.sample(args.n, seed=0)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    naive = m.sample(args.n, seed=0, naive=True)
    t_naive = time.perf_counter() - t
    print(f"cached: {args.n / t_fast:10.2f} images/s  ({t_fast:.2f} s)")
    print(f"naive:  {args.n / t_naive:10.2f} images/s  ({t_naive:.2f} s)")
    print(f"ratio cached / naive: {t_naive / t_fast:.1f}x")
    print(f"same images under the same seed: {torch.equal(fast, naive)}")


if __name__ == "__main__":
    main()
