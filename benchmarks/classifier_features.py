"""cfd's cost: the classifier's features of N images, the shipped inference path (batch norm folded, channels-last,
batches of 100) against the plain network it is built from (the reference it must match), side by side, and the
Inception features FID needs for the same images, on a few of them (it is ~1,000x slower).

    python benchmarks/classifier_features.py -n 10000 --threads 2
"""
from __future__ import annotations

import argparse
import time

import torch


def timed(fn, x: torch.Tensor, batch: int) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        t = time.perf_counter()
        out = torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)])
        return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--inception-n", type=int, default=32, help="images for the Inception comparison (0: skip)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from zoo import classifier as zclf
    clf = zclf.load("mnist")
    plain = zclf.FeatureNet(1)
    plain.load_state_dict(zclf.load_file_state("mnist"))
    plain.eval()
    x = torch.rand(a.n, 1, 28, 28).round()
    rows = {}
    for _ in range(a.repeats):  # alternated, so both see the same machine
        rows.setdefault("plain network, batch 500", []).append(timed(lambda b: plain.features(b).double(), x, 500))
        t = time.perf_counter()
        out = clf.features(x)
        rows.setdefault("zoo (folded, channels-last, batch 100)", []).append((time.perf_counter() - t, out))
    ref = rows["plain network, batch 500"][0][1]
    best = {k: min(t for t, _ in v) for k, v in rows.items()}
    for k, t in best.items():
        diff = float((rows[k][0][1] - ref).abs().max())
        print(f"{k:42s} {a.n / t:9.0f} images/s  ({a.n:,} in {t:.2f} s; max |diff| {diff:.1e})")
    print(f"ratio: {best['plain network, batch 500'] / best['zoo (folded, channels-last, batch 100)']:.2f}x")
    if a.inception_n:
        from zoo import fid as zfid
        net = zfid.load_inception()
        t = time.perf_counter()
        zfid.features(x[:a.inception_n], net)
        rate = a.inception_n / (time.perf_counter() - t)
        print(f"{'Inception (FID), for comparison':42s} {rate:9.1f} images/s ({a.n / rate / 60:.0f} min for "
              f"{a.n:,})")


if __name__ == "__main__":
    main()
