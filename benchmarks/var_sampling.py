"""Benchmark: VAR's next-scale sampling against PixelCNN's raster sampling, and VAR's KV cache against a full
recompute, side by side in one run on the same machine.

    python benchmarks/var_sampling.py                       # var-mnist vs pixelcnn-mnist, n = 256
    python benchmarks/var_sampling.py -n 64 --threads 2

Prints images/s and FLOPs per image (counted by torch.utils.flop_counter over a whole sampling call, so the
tokenizer's decoder is included) for: var-mnist with its KV cache, var-mnist recomputing the whole prefix at
each scale, and pixelcnn-mnist with its cached sampler. Checks that cached and full-recompute VAR drew the same
images, and the largest logit difference between the two along one pass. VAR needs 6 sequential steps per image
where PixelCNN needs 784; on a CPU, throughput follows FLOPs more than step count, so read both columns.

The KV cache saves at most the ratio of the tokens a full recompute runs (the sum of the prefix lengths) to the
tokens the cache runs (T): 209 / 104 = 2.01 for the scales 1, 2, 3, 4, 5, 7, before the decoder's fixed cost.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import zoo


def flops_per_image(m: zoo.Model, n: int = 4, **kw) -> float:
    """FLOPs of sampling n images, divided by n (matmuls and convolutions; what FlopCounterMode counts)."""
    counter = FlopCounterMode(display=False)
    with counter:
        m.sample(n, seed=0, **kw)
    return counter.get_total_flops() / n


@torch.no_grad()
def max_logit_gap(m: zoo.Model, n: int = 8) -> float:
    """Largest |logit| difference between the cached and full-recompute steppers along one greedy pass."""
    fast, slow = m.stepper(n), m.reference_stepper(n)
    gap = 0.0
    for t in range(fast.num_steps):
        a, b = fast.logits(t), slow.logits(t)
        gap = max(gap, (a - b).abs().max().item())
        fast.advance(t, a.argmax(-1))
        slow.advance(t, a.argmax(-1))
    return gap


def timed(m: zoo.Model, n: int, **kw) -> tuple[torch.Tensor, float]:
    t = time.perf_counter()
    x = m.sample(n, seed=0, **kw)
    return x, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("--var", default="var-mnist")
    ap.add_argument("--pixelcnn", default="pixelcnn-mnist")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    var, pix = zoo.load(args.var), zoo.load(args.pixelcnn)
    print(f"n = {args.n}, batch 256, {torch.get_num_threads()} threads; "
          f"{args.var}: {var.num_params / 1e6:.2f}M params, {len(var.vqvae.scales)} steps per image; "
          f"{args.pixelcnn}: {pix.num_params / 1e6:.2f}M params, {pix.num_dims} steps per image")
    var.sample(4, seed=0)
    pix.sample(1, seed=0)  # warm-ups
    rows = []
    x_cache, t_cache = timed(var, args.n)
    rows.append((f"{args.var} (KV cache)", t_cache, flops_per_image(var)))
    x_full, t_full = timed(var, args.n, naive=True)
    rows.append((f"{args.var} (full recompute)", t_full, flops_per_image(var, naive=True)))
    _, t_pix = timed(pix, args.n)
    rows.append((f"{args.pixelcnn} (cached)", t_pix, flops_per_image(pix, n=1)))
    print(f"{'sampler':32s} {'images/s':>10s} {'seconds':>9s} {'GFLOPs/image':>13s}")
    for name, t, f in rows:
        print(f"{name:32s} {args.n / t:10.1f} {t:9.2f} {f / 1e9:13.3f}")
    same = int((x_cache == x_full).flatten(1).all(1).sum())
    prefix = sum(sl.stop for sl in var.slices)
    print(f"VAR KV cache vs full recompute: {t_full / t_cache:.2f}x faster, {rows[1][2] / rows[0][2]:.2f}x fewer "
          f"FLOPs (transformer bound {prefix}/{var.slices[-1].stop} = {prefix / var.slices[-1].stop:.2f}x); "
          f"identical images {same}/{args.n} (a float-rounding difference can flip one draw, and an image after "
          f"it); largest logit gap {max_logit_gap(var):.2e}")
    print(f"VAR (KV cache) vs PixelCNN (cached): {t_pix / t_cache:.2f}x faster, "
          f"{rows[2][2] / rows[0][2]:.2f}x fewer FLOPs per image")


if __name__ == "__main__":
    main()
