#!/usr/bin/env python3
"""A run's measured learning curve in the figure users look at: the FID of the weights each epoch would have
shipped (kept by `zoo train --keep-epochs` as RUN/epochs/epoch-NNN.safetensors) against the CPU core-hours spent
to reach them (zoo.runs.core_hours, from metrics.jsonl). Each epoch becomes a run folder RUN/epochs/epoch-NNN/
and is measured as `zoo eval FOLDER --fid -n N --seed S` (with its card's preset); the figures are kept in
RUN/learning_curve.json, so a second call measures only new epochs. A run still training is measured too: its
recipe.toml, written at its start, stands in for the card.toml it writes at its end. Issue 23 asks for this curve
where a card cannot reach its bar on this machine.

    python scripts/learning_curve.py runs/queue/var-mnist-more2 --bar 15 -o docs/learning-curve-var-mnist.png

`--hours-before H` shifts the curve by the compute of the weights the run started from (a warm start, --init).
`--epochs 2 5 10` measures only those kept epochs (each FID at 2,048 is minutes of Inception on a CPU);
`--temperature T` samples every epoch at T instead of its card's preset (a run folder's card has none), so a
curve can be read at the temperature the shipped card samples with.

    python scripts/learning_curve.py runs/queue/made-cifar10-gray-curve --epochs 2 5 10 20 30 \
        --temperature 0.55 --bar 200 -o docs/learning-curve-made-cifar10-gray.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkpoint_weights import epoch_folder, run_card  # noqa: E402
from pick_run import fid_of  # noqa: E402


def epoch_hours(run: Path) -> dict[int, float]:
    """Core-hours of training at the end of each validated epoch of the run."""
    from zoo.runs import epoch_core_hours, read_metrics
    records = read_metrics(run)
    return epoch_core_hours(records, int(run_card(run).training["batch_size"]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a zoo train run folder trained with --keep-epochs")
    ap.add_argument("-n", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hours-before", type=float, default=0.0,
                    help="core-hours of the weights the run started from (added to every point)")
    ap.add_argument("--epochs", type=int, nargs="+", default=None,
                    help="measure only these kept epochs (default: every kept one)")
    ap.add_argument("--temperature", type=float, default=None,
                    help="sample each epoch at this temperature (default: its card's preset)")
    ap.add_argument("--bar", type=float, default=None, help="draw this FID as the bar to reach")
    ap.add_argument("-o", "--out", default=None, help="a PNG of the curve")
    a = ap.parse_args(argv)
    run = Path(a.run)
    kept = sorted(int(p.stem.split("-")[1]) for p in (run / "epochs").glob("epoch-*.safetensors"))
    if not kept:
        raise SystemExit(f"{run}/epochs/ holds no epoch weights: train the run with --keep-epochs")
    if a.epochs is not None:
        missing = sorted(set(a.epochs) - set(kept))
        if missing:
            raise SystemExit(f"{run}/epochs/ holds no weights of epoch {', '.join(map(str, missing))} "
                             f"(kept: {', '.join(map(str, kept))})")
        kept = sorted(set(a.epochs))
    extra = ("--temperature", f"{a.temperature:g}") if a.temperature is not None else ()
    run_card(run)  # a run folder, finished (card.toml) or still training (recipe.toml)
    saved = run / "learning_curve.json"
    done = {int(k): v for k, v in json.loads(saved.read_text()).items()} if saved.is_file() else {}
    hours = epoch_hours(run)
    for e in kept:
        if e in done and (done[e]["n"], done[e]["seed"], done[e].get("temperature")) == (a.n, a.seed, a.temperature):
            continue
        folder = run / "epochs" / f"epoch-{e:03d}"
        print(epoch_folder(run, e, folder), flush=True)
        done[e] = {"fid": fid_of(str(folder), a.n, a.seed, *extra), "n": a.n, "seed": a.seed,
                   "temperature": a.temperature, "core_hours": hours.get(e)}
        saved.write_text(json.dumps({str(k): v for k, v in sorted(done.items())}, indent=1) + "\n")
    rows = [(e, done[e]["core_hours"] + a.hours_before, done[e]["fid"]) for e in kept]
    print(f"{run}: {_what(a)} of each epoch's weights against core-hours")
    print("| epoch | core-hours | FID |\n|---|---|---|")
    for e, h, f in rows:
        print(f"| {e} | {h:.2f} | {f:.2f} |")
    if a.out:
        draw(rows, a, run)


def _what(a: argparse.Namespace) -> str:
    """The figure measured, as the table and the PNG title name it."""
    how = f", temperature {a.temperature:g}" if a.temperature is not None else ""
    return f"FID (n = {a.n:,}, seed {a.seed}{how})"


def draw(rows: list[tuple[int, float, float]], a: argparse.Namespace, run: Path) -> None:
    """FID against core-hours, each point labelled with its epoch, the bar (if given) dashed, as a PNG."""
    from PIL import Image, ImageDraw
    width, height, left, right, top, bottom = 640, 380, 60, 610, 34, 340
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    hs, fs = [h for _, h, _ in rows], [f for _, _, f in rows] + ([a.bar] if a.bar is not None else [])
    x0, x1 = min(hs + [a.hours_before]), max(hs) if max(hs) > min(hs + [a.hours_before]) else max(hs) + 1
    y0, y1 = min(fs) * 0.9, max(fs) * 1.05

    def at(h: float, f: float) -> tuple[float, float]:
        return left + (h - x0) / (x1 - x0) * (right - left), bottom - (f - y0) / (y1 - y0) * (bottom - top)

    d.rectangle([left, top, right, bottom], outline="black")
    d.text((left, 8), f"{run.name}: {_what(a)} of each epoch's weights", fill="black")
    d.text((left, bottom + 8), f"{x0:.2f}", fill="black")
    d.text((right - 30, bottom + 8), f"{x1:.2f}", fill="black")
    d.text(((left + right) // 2 - 60, bottom + 8), "CPU core-hours", fill="black")
    d.text((4, top - 14), "FID", fill="black")
    d.text((4, top), f"{y1:.1f}", fill="black")
    d.text((4, bottom - 10), f"{y0:.1f}", fill="black")
    if a.bar is not None:
        _, yb = at(x0, a.bar)
        for xs in range(left, right, 12):
            d.line([(xs, yb), (min(xs + 6, right), yb)], fill=(200, 40, 40))
        d.text((right - 60, yb - 14), f"bar {a.bar:g}", fill=(200, 40, 40))
    pts = [at(h, f) for _, h, f in rows]
    if len(pts) > 1:
        d.line(pts, fill=(30, 80, 200), width=2)
    for (px, py), (e, _, f) in zip(pts, rows):
        d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(30, 80, 200))
        d.text((px + 4 if px < right - 70 else px - 64, py - 14), f"{e}: {f:.1f}", fill="black")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    img.save(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
