"""Benchmark: incremental MADE sampling (each hidden unit computed once per image) against the naive sampler
(the whole network recomputed for each of the D pixels), side by side in one run on the same model and seed.

    python benchmarks/made_sampling.py                 # 1,000 images of made-mnist-bin
    python benchmarks/made_sampling.py -n 200 --model made-mnist

Prints images/s of each and their ratio, and checks that both drew the same images.
"""
from __future__ import annotations

import argparse
import time

import torch

import zoo


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="made-mnist-bin")
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    m = zoo.load(args.model)
    print(f"{args.model}: {m.num_params / 1e6:.2f}M params, D = {m.num_dims}, n = {args.n}, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads")
    m.sample(8, seed=0)  # warm-up
    fast, t_fast = timed(lambda: m.sample(args.n, seed=0, batch_size=args.batch_size))
    naive, t_naive = timed(lambda: m.sample(args.n, seed=0, batch_size=args.batch_size, naive=True))
    print(f"incremental: {args.n / t_fast:10.1f} images/s  ({t_fast:.2f} s)")
    print(f"naive:       {args.n / t_naive:10.1f} images/s  ({t_naive:.2f} s)")
    print(f"ratio incremental / naive: {t_naive / t_fast:.1f}x")
    print(f"same images under the same seed: {torch.equal(fast, naive)}")


if __name__ == "__main__":
    main()
