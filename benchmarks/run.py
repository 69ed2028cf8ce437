"""Every speed figure of issue 12, measured side by side in one run, printed as one table.

    python benchmarks/run.py                  # every row, 1 thread (about 5 minutes on a quiet CPU core)
    python benchmarks/run.py --threads 2      # more threads
    python benchmarks/run.py --only made,fid  # some rows: made, pixelcnn, var, list, train, fid
    python benchmarks/run.py --device cuda    # the sampler rows on a GPU

Each row is a ratio of two timings taken in this process, one right after the other (best of --repeats), so
that a shared, noisy machine moves both alike. Models are untrained unless a card id is named: speed does not
depend on the weights. Sizes are the issue's: MADE 784-1000-1000-784 at batch 200, alone and as an ensemble of 8
masks (made-mnist-bin's until 2026-12-06, made-mnist-bin-agnostic's),
a gated PixelCNN with 15 layers of 64 channels and 256 levels on 1x28x28 at batch 16 and 1, var-mnist at 256
images, MADE 784-H-784 training steps at batch 100, 2048-d Frechet distances.
"""
from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv() -> int:
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            return int(sys.argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 1


# BLAS thread pools read these once, when numpy and torch load
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = str(_threads_from_argv())

import copy  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import zoo  # noqa: E402

ROWS: list[tuple[str, str, str, str]] = []  # measure, figure, bar, verdict


def best(fn, repeats: int) -> float:
    """The shortest of `repeats` timings of fn() (the least disturbed by other jobs)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def side_by_side(fa, fb, repeats: int) -> tuple[float, float]:
    """The shortest of `repeats` timings of fa() and of fb(), taken alternately (a, b, a, b, ...), so that a
    machine that speeds up or slows down during the run moves both alike."""
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(best(fa, 1))
        tb.append(best(fb, 1))
    return min(ta), min(tb)


def row(measure: str, ratio: float, bar: str, ok: bool, detail: str = "") -> None:
    ROWS.append((measure, f"{ratio:.2f}x" + (f" ({detail})" if detail else ""), bar, "yes" if ok else "NO"))
    print(f"  {measure}: {ratio:.2f}x {detail}  bar {bar}", flush=True)


# ---- MADE --------------------------------------------------------------------------------------------
def made_rows(repeats: int, device: str) -> None:
    torch.manual_seed(0)
    one = zoo.create("made", image_shape=[1, 28, 28], levels=2, hidden=[1000, 1000], num_masks=1).to(device)
    x = (torch.rand(200, 1, 28, 28) < 0.3).float().to(device)
    with torch.no_grad():
        one.sample(200, seed=0, batch_size=200)                          # builds the sampler's per-mask plan
        t_fwd, t_one = side_by_side(lambda: one.log_prob(x), lambda: one.sample(200, seed=0, batch_size=200),
                                    repeats)
    row("MADE 784-1000-1000-784, 1 mask: sample / batched log_prob, batch 200", t_one / t_fwd, "<= 3x",
        t_one / t_fwd <= 3, f"{t_one * 1e3:.0f} ms vs {t_fwd * 1e3:.1f} ms")

    ens = zoo.create("made", image_shape=[1, 28, 28], levels=2, hidden=[1000, 1000], num_masks=8).to(device)
    with torch.no_grad():
        ens.sample(200, seed=0, batch_size=200)
        t_fwd1, t_ens = side_by_side(lambda: ens.log_prob(x, masks=1),
                                     lambda: ens.sample(200, seed=0, batch_size=200), repeats)
    row("MADE 784-1000-1000-784, 8 masks: sample / one-mask log_prob, batch 200", t_ens / t_fwd1, "<= 4x",
        t_ens / t_fwd1 <= 4, f"{t_ens * 1e3:.0f} ms vs {t_fwd1 * 1e3:.1f} ms")

    # naive sampler against a plain loop: D full passes of the same 1-mask network, one pixel drawn per pass
    c = one.connectivity(0)
    w = one.masked_weights(c)
    net = [(w[0], one.layers[0].bias), (w[1], one.layers[1].bias)]

    @torch.no_grad()
    def plain(n: int) -> torch.Tensor:
        g = torch.Generator(device=device).manual_seed(0)
        xs = torch.zeros(n, one.num_dims, device=device)
        for d in range(one.num_dims):
            h = xs
            for wl, bl in net:
                h = torch.relu(torch.nn.functional.linear(h, wl, bl))
            logit = torch.nn.functional.linear(h, w[2], one.out.bias) + torch.nn.functional.linear(xs, w[3])
            xs[:, d] = torch.bernoulli(torch.sigmoid(logit[:, d]), generator=g)
        return xs

    n = 200
    with torch.no_grad():
        t_naive, t_plain = side_by_side(lambda: one.sample(n, seed=0, batch_size=n, naive=True),
                                        lambda: plain(n), max(1, repeats - 1))
    row(f"MADE naive sampler / a plain {one.num_dims}-pass loop, same 1-mask network, batch {n}",
        t_naive / t_plain, "<= 1x (no slower)", t_naive / t_plain <= 1.05,
        f"{t_naive:.2f} s vs {t_plain:.2f} s")


# ---- PixelCNN ----------------------------------------------------------------------------------------
def pixelcnn_rows(repeats: int, device: str) -> None:
    torch.manual_seed(0)
    m = zoo.create("pixelcnn", image_shape=[1, 28, 28], levels=256, kind="gated", hidden=64, layers=15).to(device)
    for n, bar in ((16, 2), (1, 6)):
        x = torch.rand(n, 1, 28, 28).to(device)
        with torch.no_grad():
            m.log_prob(x)
            t_fwd, t_s = side_by_side(lambda: m.log_prob(x), lambda: m.sample(n, seed=0), repeats)
        row(f"gated PixelCNN 15x64, 256 levels, 1x28x28: sample / batched log_prob, batch {n}", t_s / t_fwd,
            f"<= {bar}x", t_s / t_fwd <= bar, f"{t_s / n:.2f} s/image vs {t_fwd * 1e3:.0f} ms")


# ---- VAR ---------------------------------------------------------------------------------------------
def var_rows(repeats: int, device: str, n: int = 256) -> None:
    m = zoo.load("var-mnist", device=device)
    m.sample(8, seed=0)
    t_cache, t_full = side_by_side(lambda: m.sample(n, seed=0), lambda: m.sample(n, seed=0, naive=True), repeats)
    row(f"var-mnist, {n} images: full recompute / KV cache", t_full / t_cache, ">= 1.7x", t_full / t_cache >= 1.7,
        f"{t_cache:.2f} s vs {t_full:.2f} s")


# ---- start-up ----------------------------------------------------------------------------------------
def list_rows(repeats: int) -> None:
    def run(cmd: list[str]) -> float:
        return best(lambda: subprocess.run(cmd, check=True, capture_output=True), repeats)

    zoo_cmd = [sys.executable, "-c", "import sys; from zoo.cli import main; sys.argv = ['zoo', 'list']; main()"]
    t_list = run(zoo_cmd)
    t_torch = run([sys.executable, "-c", "import torch"])
    row("`zoo list` / `python -c \"import torch\"` (whole process)", t_list / t_torch, "<= 1.3x",
        t_list / t_torch <= 1.3, f"{t_list:.2f} s vs {t_torch:.2f} s")


# ---- training ----------------------------------------------------------------------------------------
def train_rows(repeats: int) -> None:
    from zoo.data import ImageData
    from zoo.train import TrainConfig, fit

    for hidden, steps in ((500, 60), (8000, 12)):
        g = torch.Generator().manual_seed(0)
        n = (steps + 1) * 100

        def data(count: int, split: str) -> ImageData:
            images = (torch.rand(count, 1, 28, 28, generator=g) * 255).to(torch.uint8)
            return ImageData("mnist-bin", split, "synthetic", images, torch.zeros(count, dtype=torch.long), ("0",),
                             "benchmark", dynamic_binarization=True)

        train, val = data(n, "train"), data(100, "test")
        torch.manual_seed(0)
        base = zoo.create("made", image_shape=[1, 28, 28], levels=2, hidden=[hidden], num_masks=1)

        def zoo_fit(k: int) -> float:
            m = copy.deepcopy(base)
            cfg = TrainConfig(epochs=1, batch_size=100, lr=1e-3, max_steps=k, checkpoint_every=0)
            with tempfile.TemporaryDirectory() as d:
                start = time.perf_counter()
                fit(m, train, val, cfg, d, progress=False)
                return time.perf_counter() - start

        def plain(k: int) -> float:
            m = copy.deepcopy(base).train()
            opt = torch.optim.Adam(m.parameters(), lr=1e-3)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
            start = time.perf_counter()
            for s in range(k):
                gen = torch.Generator().manual_seed(s)
                x, _ = train.batch(order[s * 100:(s + 1) * 100], generator=gen)
                loss = m.training_loss(x, generator=gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
            return time.perf_counter() - start

        few = max(2, steps // 4)
        # fit's fixed costs (validation, checkpoint, best weights) cancel in the difference of two runs
        t_zoo = min((zoo_fit(steps) - zoo_fit(few)) / (steps - few) for _ in range(max(1, repeats - 1)))
        t_plain = min(plain(steps) / steps for _ in range(max(1, repeats - 1)))
        row(f"`zoo train` step vs a plain loop (same MADE 784-{hidden}-784, loss, Adam), batch 100: speed ratio",
            t_plain / t_zoo, ">= 0.95x", t_plain / t_zoo >= 0.95,
            f"{t_zoo * 1e3:.0f} ms vs {t_plain * 1e3:.0f} ms a step")


# ---- FID ---------------------------------------------------------------------------------------------
def fid_rows() -> None:
    from zoo import fid as zfid

    def stats(seed: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        f = rng.normal(size=(4096, 2048)) @ (rng.normal(size=(2048, 2048)) * 0.05)
        return f.mean(0), np.cov(f, rowvar=False)

    a, b = stats(0), stats(1)
    start = time.perf_counter()
    fast = zfid.frechet_distance(*a, *b)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    ref = zfid.frechet_distance_sqrtm(*a, *b)
    t_ref = time.perf_counter() - start
    rel = abs(fast - ref) / abs(ref)
    row("Frechet distance, 2048-d: scipy.linalg.sqrtm / eigvalsh form", t_ref / t_fast, ">= 5x, same to 1e-6",
        t_ref / t_fast >= 5 and rel <= 1e-6, f"{t_fast:.1f} s vs {t_ref:.1f} s, relative difference {rel:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="device of the sampler rows (made, pixelcnn, var)")
    ap.add_argument("--only", default="made,pixelcnn,var,list,train,fid")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    only = set(args.only.split(","))
    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} thread(s), sampler device {args.device}", flush=True)
    if "made" in only:
        made_rows(args.repeats, args.device)
    if "pixelcnn" in only:
        pixelcnn_rows(args.repeats, args.device)
    if "var" in only:
        var_rows(args.repeats, args.device)
    if "list" in only:
        list_rows(args.repeats)
    if "train" in only:
        train_rows(args.repeats)
    if "fid" in only:
        fid_rows()
    print()
    print("| measure | ratio (timings) | bar | met |")
    print("|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
