"""Memory (RSS) of a `zoo demo` server while 8 clients sample at once, and that each gets its own images.

Starts `zoo demo` in a fresh process (one thread), then, through gradio_client: 8 clients at once drawing n images
of one model with 8 seeds; then 8 clients at once, each on another model (every generative card loaded). The server's
resident set is read from /proc after start-up, after each round, and as its peak (VmHWM). Each client's images are
checked against `zoo.load(id).sample(n, seed=...)` in this process.

    python benchmarks/demo_clients.py                  # n = 64 per client
    python benchmarks/demo_clients.py -n 256 --port 7870
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def status_kb(pid: int, field: str) -> int:
    """A field of /proc/PID/status in kB (VmRSS: now, VmHWM: the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def wait_for_url(proc: subprocess.Popen, timeout: float = 180) -> str:
    """The URL `zoo demo` prints once it serves."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.startswith("zoo demo: "):
            return line.split()[2]
        if proc.poll() is not None:
            raise SystemExit(f"zoo demo exited ({proc.returncode}): {proc.stderr.read()}")
    raise SystemExit("zoo demo did not start in time")


def round_of(url: str, jobs: list[tuple[str, int]], n: int) -> tuple[float, list]:
    """8 clients at once, one (model, seed) each: (seconds, each client's image file)."""
    from gradio_client import Client

    def one(job: tuple[str, int]) -> str:
        model, seed = job
        return Client(url, verbose=False).predict(model=model, n=n, seed=seed, api_name="/sample")[0]

    start = time.time()
    with ThreadPoolExecutor(len(jobs)) as pool:
        files = list(pool.map(one, jobs))
    return time.time() - start, files


def check(jobs: list[tuple[str, int]], files: list, n: int) -> int:
    """How many clients got exactly the images of their own (model, seed)."""
    import numpy as np
    from PIL import Image

    import zoo
    from zoo.grid import make_grid
    ok = 0
    for (model, seed), path in zip(jobs, files):
        want = np.asarray(make_grid(zoo.load(model).sample(n, seed=seed)).convert("RGB"))
        ok += bool(np.array_equal(np.asarray(Image.open(path).convert("RGB")), want))
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=64, help="images per client")
    ap.add_argument("--port", type=int, default=0, help="default: a free port")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    import zoo
    port = args.port
    if not port:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", "demo", "--port", str(port), "--threads", "1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = wait_for_url(proc)
        rows = [("started (no model loaded)", status_kb(proc.pid, "VmRSS"))]
        one_model = [("made-mnist-bin", seed) for seed in range(8)]
        secs, files = round_of(url, one_model, args.n)
        rows.append((f"8 clients, made-mnist-bin, n={args.n} each ({secs:.1f} s)", status_kb(proc.pid, "VmRSS")))
        ok = check(one_model, files, args.n)
        models = [m for m in zoo.list_models() if not m.startswith("vqvae")][:8]
        spread = [(m, seed) for seed, m in enumerate(models)]
        secs, files = round_of(url, spread, args.n)
        rows.append((f"8 clients, {len(models)} models, n={args.n} each ({secs:.1f} s)",
                     status_kb(proc.pid, "VmRSS")))
        ok += check(spread, files, args.n)
        rows.append(("peak (VmHWM)", status_kb(proc.pid, "VmHWM")))
    finally:
        proc.terminate()
        proc.wait(30)
    for what, kb in rows:
        print(f"{what:<58} {kb / 1024:8.0f} MiB")
    print(f"{ok}/{len(one_model) + len(spread)} clients got exactly their own images")


if __name__ == "__main__":
    main()
