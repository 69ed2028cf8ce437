#!/usr/bin/env python3
"""Pick among candidate weights of one model (run folders: a run's chosen checkpoint, another epoch's weights) by
the FID of their samples, as `zoo eval RUN --fid -n N --seed S` measures it (each with its card's preset), and
point a link at the best, for `scripts/ship_card.py LINK` to ship (issue 23: a run's own choice by the cfd of 500
validation samples is noisy). Prints every candidate's FID; FID on the test split, so read the pick as the best of
the candidates, not as a held-out figure.

    python scripts/pick_run.py runs/queue/pixelcnn-mnist-more runs/queue/pixelcnn-mnist-epoch8 \\
        --link runs/queue/pixelcnn-mnist-pick

A candidate may also be a bundled card's id, standing for the weights it ships: when that one wins, no link is
made and the exit status is 1, so that a chain `pick_run.py RUN ID --link L && ship_card.py L` ships a warm
start only when its samples beat the card's.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

FID_RE = re.compile(r": FID ([0-9.]+) \(n = ")


def fid_of(run: str, n: int, seed: int, *extra: str) -> float:
    """The FID `zoo eval` prints for one run folder or model id, with any further `zoo eval` options (its output
    passes through)."""
    cmd = [sys.executable, "-m", "zoo.cli", "eval", run, "--fid", "-n", str(n), "--seed", str(seed), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(out.stdout + out.stderr)
    m = FID_RE.search(out.stdout)
    if out.returncode or m is None:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {out.returncode}); its output is above")
    return float(m.group(1))


def is_card_id(name: str) -> bool:
    """Whether `name` is a card's id that zoo knows (a bundled or installed card), not a path."""
    import zoo
    try:
        zoo.get_card(name)
    except zoo.UnknownModelError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run folders (each with card.toml and its weights), or a bundled "
                                            "card's id (its shipped weights)")
    ap.add_argument("--link", required=True, help="a symbolic link made (or replaced) to point at the best run")
    ap.add_argument("-n", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    missing = [r for r in a.runs if not (Path(r) / "card.toml").is_file() and not is_card_id(r)]
    if missing:
        raise SystemExit(f"neither run folders (no card.toml) nor bundled cards' ids: {', '.join(missing)}")
    scores = {r: fid_of(r, a.n, a.seed) for r in a.runs}
    best = min(scores, key=scores.get)
    for r, v in scores.items():
        print(f"{r}: FID {v:.2f} (n = {a.n:,}, seed {a.seed})" + ("  <- picked" if r == best else ""))
    if not (Path(best) / "card.toml").is_file():
        raise SystemExit(f"the shipped card {best} has the lowest FID: it stays, and {a.link} is left as it was")
    link = Path(a.link)
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(Path(best).resolve(), target_is_directory=True)
    os.replace(tmp, link)


if __name__ == "__main__":
    main()
