"""Peak memory (RSS) of `zoo eval --fid`, `zoo eval --nll` and `zoo sample` as the work grows.

Each command runs in a fresh process (one thread) that reports its own peak resident set size at exit, so the
figures are the whole command's: Python, torch, the model, the dataset and the work.

    python benchmarks/memory.py --data-dir DIR            # FID (stand-in network), NLL, sample at two n
    python benchmarks/memory.py --data-dir DIR --real 100 200   # also `zoo fid` with the real Inception network

FID at large n costs CPU time here (Inception-v3 runs at about 6 images/s per core), so `zoo eval --fid` is
measured with a cheap STAND-IN network in Inception's place (a 2x2 average pool and a linear map to 2,048
features, on the 8-bit quantized images without the 299x299 resize): what grows with n (samples, features,
reference images) is the same; the fixed costs of the real network and of one resized batch (about 50 MB) are
not included. `--real N...` measures `zoo fid` on two folders
of N real test images each with the real network. `--held` adds, for comparison, FID through
`zoo.fid.sample_stats`, which holds all n samples at once (the path `zoo eval --fid` took before it streamed),
at the largest n.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
mode, args = sys.argv[1], sys.argv[2:]
import zoo.fid as zfid
if mode in ("stand-in", "held"):
    def stand_in(path=None):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(),
                                   torch.nn.Linear(12, zfid.DIMS)).eval()
    zfid.load_inception = stand_in
    # and no 299x299 resize: 8-bit quantization only (the resize's batch of 50 is a fixed ~50 MB, not a growth)
    zfid.preprocess = lambda x: ((x.float() * 255).round() / 255).expand(-1, 3, -1, -1)
if mode == "held":  # the pre-streaming path: all n samples drawn in one call, then their features
    def held(m, n, net, seed=0, progress=None, sample_progress=None, distributed=False, **kw):
        return zfid.sample_stats(lambda k, s: m.sample(k, seed=s), n, net, seed, progress=progress,
                                 distributed=distributed)
    zfid.model_sample_stats = held
from zoo.cli import main
try:
    main(args, standalone_mode=False)
finally:
    print("PEAK_RSS_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def peak_rss(args: list[str], mode: str = "plain", env: dict[str, str] | None = None) -> float:
    """Run `zoo ARGS` in a fresh process; its peak RSS in MiB."""
    r = subprocess.run([sys.executable, "-c", CHILD, mode, *args], capture_output=True, text=True,
                       env={**os.environ, **(env or {})})
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("PEAK_RSS_KIB")]
    if r.returncode != 0 or not lines:
        raise SystemExit(f"zoo {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return int(lines[-1].split()[1]) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="dataset root holding MNIST (ZOO_DATA_DIR layout)")
    ap.add_argument("--model", default="made-mnist-bin")
    ap.add_argument("-n", nargs="+", type=int, default=[2048, 10_000], help="sizes for eval --fid and --nll")
    ap.add_argument("--sample-n", nargs="+", type=int, default=[1_000, 10_000], help="sizes for zoo sample")
    ap.add_argument("--held", action="store_true", help="also FID holding all n samples (the old path)")
    ap.add_argument("--jobs", type=int, default=1, help="measurements run side by side")
    ap.add_argument("--real", nargs="*", type=int, default=[], help="`zoo fid` with the real network at these N")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="zoo-memory-") as tmp:
        # every command in a fresh process with a fresh FID cache (each computes the reference, the full test
        # split, as on a new machine); the processes run side by side (--jobs): peak RSS is per process
        common = ["--data-dir", args.data_dir, "--threads", "1"]
        jobs = []
        for n in args.n:
            for mode in ("stand-in", "held") if args.held and n == max(args.n) else ("stand-in",):
                cmd = ["eval", args.model, "--fid", "-n", str(n), *common]
                label = f"zoo {' '.join(cmd[:5])}" + (" (held: pre-streaming)" if mode == "held" else "")
                jobs.append((label, n, mode, cmd, {"ZOO_FID_CACHE": str(Path(tmp) / f"fid-{mode}-{n}")}))
        for n in args.n:
            cmd = ["eval", args.model, "--nll", "-n", str(n), *common]
            jobs.append((f"zoo {' '.join(cmd[:5])}", n, "", cmd, None))
        for n in args.sample_n:
            cmd = ["sample", args.model, "-n", str(n), "-o", str(Path(tmp) / f"s{n}.png"), "--threads", "1"]
            jobs.append((f"zoo sample {args.model} -n {n} -o grid.png", n, "", cmd, None))
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(args.jobs) as pool:
            peaks = list(pool.map(lambda j: peak_rss(j[3], j[2] or "plain", j[4]), jobs))
        rows += [(label, n, mode, mib) for (label, n, mode, _, _), mib in zip(jobs, peaks)]
        if args.real:
            sys.path.insert(0, str(ROOT))
            from PIL import Image

            import zoo.data
            test = zoo.data.load_dataset("mnist", "test", args.data_dir)
            for n in args.real:
                folders = []
                for part, lo in (("a", 0), ("b", n)):
                    d = Path(tmp) / f"real-{n}-{part}"
                    d.mkdir()
                    for i in range(lo, lo + n):
                        Image.fromarray(test.images[i, 0].numpy()).save(d / f"{i:05d}.png")
                    folders.append(str(d))
                cmd = ["fid", *folders, "--threads", "1"]
                rows.append((f"zoo fid A/ B/ (real Inception, {n} MNIST test images each)", n, "real",
                             peak_rss(cmd)))
                print(rows[-1], flush=True)
    print(f"\npeak RSS, one thread, {args.model}, MNIST from {args.data_dir} (FID vs the full test split, "
          "n = 10,000; 'stand-in' = cheap network in Inception's place, see the docstring)")
    print(f"{'command':66s} {'n':>7s} {'network':>9s} {'peak RSS':>10s}")
    for cmd, n, mode, mib in rows:
        print(f"{cmd:66s} {n:>7,d} {mode:>9s} {mib:>7.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
