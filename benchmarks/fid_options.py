"""Benchmark: ways to run FID's Inception feature extraction faster, each against zoo's path on the same images,
side by side in one run, with the largest feature difference (a way is kept only if >= 1.2x faster and within 1e-4).

    python benchmarks/fid_options.py -n 32 --threads 1 --repeats 2

Ways tried: zoo's path (TorchScript, channels_last, inference_mode); without channels_last; oneDNN fusion
(torch.jit.freeze + torch.jit.optimize_for_inference); other batch sizes. torch.compile does not apply: the
weights ship as a TorchScript module, which torch.compile cannot trace.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from zoo import fid as zfid


@torch.inference_mode()
def run(model, images: torch.Tensor, batch_size: int, channels_last: bool) -> np.ndarray:
    out = []
    for start in range(0, len(images), batch_size):
        x = zfid.preprocess(images[start:start + batch_size])
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
        out.append(model(x).reshape(x.shape[0], -1).double().numpy())
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="rounds over every way (alternating); best of them")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images = torch.rand(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = zfid.load_inception()
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(zfid.load_inception().eval()))
    ways = [("zoo: channels_last, batch 50", model, 50, True),
            ("contiguous (no channels_last), batch 50", model, 50, False),
            ("oneDNN fusion (freeze + optimize_for_inference), batch 50", frozen, 50, True),
            ("zoo path, batch 8", model, 8, True),
            ("zoo path, batch 16", model, 16, True),
            ("zoo path, batch 100", model, 100, True)]
    for _, m, b, cl in ways:  # warm-up (the frozen graph is specialised on its first calls)
        run(m, images[:2], b, cl)
        run(m, images[:2], b, cl)
    best = [float("inf")] * len(ways)
    feats: list[np.ndarray | None] = [None] * len(ways)
    for _ in range(args.repeats):  # round by round, so that a machine that drifts moves every way alike
        for i, (_, m, b, cl) in enumerate(ways):
            start = time.perf_counter()
            feats[i] = run(m, images, b, cl)
            best[i] = min(best[i], time.perf_counter() - start)
    print(f"n = {args.n} random 28x28 images, {torch.get_num_threads()} thread(s), best of {args.repeats} round(s)")
    for (name, *_), t, f in zip(ways, best, feats):
        diff = float(np.abs(f - feats[0]).max())
        print(f"{name:60s} {args.n / t:6.2f} images/s  {best[0] / t:5.2f}x  max |feature diff| {diff:.1e}")


if __name__ == "__main__":
    main()
