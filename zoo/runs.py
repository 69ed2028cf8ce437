"""Run folders at a glance (`zoo runs`): where each training run stands, its best figure and an ETA, read from
the folder alone (state.json, metrics.jsonl), and a learning-curve PNG of one run. Reads files only: no torch."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

STATE_FILE, METRICS_FILE = "state.json", "metrics.jsonl"


@dataclass(frozen=True)
class RunStatus:
    """One run folder: progress, best validation figures, speed and what is left."""

    folder: Path
    step: int
    total: int | None
    epoch: int
    epochs: int | None
    best_nll: float | None
    best_cfd: float | None
    best_epoch: int
    images_per_s: float | None
    updated: float
    finished: bool
    batch_size: int | None = None

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the last measured speed (None when unknown or finished)."""
        if self.finished or not self.total or not self.images_per_s or not self.batch_size:
            return None
        return max(self.total - self.step, 0) * self.batch_size / self.images_per_s


def _read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def read_metrics(folder: str | Path) -> list[dict]:
    """The run's metrics.jsonl records (step records and validation records, `"val": true`), in order."""
    path = Path(folder) / METRICS_FILE
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a kill
    return out


def status(folder: str | Path) -> RunStatus:
    """Where the run in `folder` stands (an InputError when the folder holds no run)."""
    folder = Path(folder)
    state = _read_state(folder)
    if not state:
        raise InputError(f"{folder} holds no training run (no readable {STATE_FILE})")
    records = read_metrics(folder)
    speeds = [r["images_per_s"] for r in records if not r.get("val") and r.get("images_per_s")]
    history = state.get("history", [])
    best = next((h for h in history if h.get("epoch") == state.get("best_epoch")), {})
    total = state.get("total_steps")
    epochs = (state.get("sized_epochs") or state.get("epochs")
              or state.get("run", {}).get("train_config", {}).get("epochs"))
    step = state.get("global_step", 0)
    if total is None and history and epochs:  # folders from before total_steps was recorded
        total = epochs * (history[0]["step"] // max(history[0]["epoch"], 1))
    mtime = max((folder / f).stat().st_mtime for f in (STATE_FILE, METRICS_FILE) if (folder / f).exists())
    return RunStatus(folder, step, total, state.get("epoch", 0), epochs, state.get("best_val_nll"),
                     best.get("val_cfd"), state.get("best_epoch", -1),
                     sorted(speeds[-5:])[len(speeds[-5:]) // 2] if speeds else None, mtime,  # a validation's pause
                     bool(total) and step >= total or bool(epochs) and state.get("epoch", 0) >= epochs,
                     state.get("batch_size") or state.get("run", {}).get("train_config", {}).get("batch_size"))


def find_runs(root: str | Path) -> list[Path]:
    """Run folders (holding a state.json) at `root` or up to two levels below it, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (zoo train writes run folders under runs/ by default)")
    found = {p.parent for depth in ("", "*/", "*/*/") for p in root.glob(depth + STATE_FILE)}
    return sorted(found)


def nothing_to_resume(out: Path) -> bool:
    """Whether a --resume of `out` has nothing to continue: no checkpoint record, and no trainer has ever held the
    folder (no lock file). A folder whose trainer is starting right now, before its first checkpoint, has a lock
    file: the resume goes on, to be refused as "in use" naming that trainer. Checked without taking the lock, so a
    refused resume never keeps another trainer out."""
    from .locking import RUN_LOCK_FILE
    return not (out / STATE_FILE).is_file() and not (out / RUN_LOCK_FILE).exists()


def no_run_to_resume(out: Path) -> str:
    """The error of a --resume with no run in `out`: which run folders there are to resume instead."""
    seen: list[str] = []
    for root in dict.fromkeys([out.parent, Path("runs")]):
        if root.is_dir():
            seen += [str(p) for p in find_runs(root) if str(p) not in seen and p != out]
    where = (f"run folders here: {', '.join(seen[:10])}" + (" ..." if len(seen) > 10 else "")) if seen else \
        "no run folders were found beside it or under runs/"
    return (f"--resume: {out} holds no training run (no {STATE_FILE}), so there is nothing to continue; {where}. "
            "Pass the right --out, or leave out --resume to start a new run")


def describe_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def core_hours(records: list[dict], batch_size: int) -> tuple[list[tuple[int, float]], bool]:
    """Cumulative compute of a run's training steps, [(step, core-hours)], from its step records: each record's
    steps took (steps x batch) / images_per_s seconds (validations and pauses between sessions are not counted),
    times the threads and processes that ran them. Records written before zoo logged the thread count count one
    thread: the second value says whether every record carried it."""
    out, hours, prev, known = [(0, 0.0)], 0.0, 0, True
    for r in records:
        if r.get("val") or "step" not in r or not r.get("images_per_s"):
            continue
        if r["step"] <= prev:  # a resumed run writes the records past its checkpoint again
            out = [(s, h) for s, h in out if s < r["step"]]
            prev, hours = out[-1]
        known = known and "threads" in r
        cores = r.get("threads", 1) * r.get("processes", 1)
        hours += (r["step"] - prev) * batch_size / r["images_per_s"] * cores / 3600
        out.append((r["step"], hours))
        prev = r["step"]
    return out, known


def epoch_core_hours(records: list[dict], batch_size: int) -> dict[int, float]:
    """Core-hours of training (see core_hours) at the end of each validated epoch of a run, {epoch: hours}: the x
    axis of a learning curve in FID (scripts/learning_curve.py)."""
    points, _ = core_hours(records, batch_size)
    return {r["epoch"]: _at(points, r["step"]) for r in records if r.get("val") and "epoch" in r and "step" in r}


def _at(points: list[tuple[int, float]], step: int) -> float:
    """The cumulative figure at `step`, linear between the recorded steps (the last one past them)."""
    for (s0, h0), (s1, h1) in zip(points, points[1:]):
        if step <= s1:
            return h0 + (h1 - h0) * (step - s0) / max(s1 - s0, 1)
    return points[-1][1]


def curve_png(folder: str | Path, out: str | Path, width: int = 720, height: int = 420, x_axis: str = "step") -> Path:
    """Draw the run's learning curve: training loss (smoothed) and validation NLL against the step, or with
    x_axis="core-hours" against the compute spent (see core_hours), on one chart with two scales, as a PNG. The
    validation cfd, when recorded, is printed beside each point."""
    from PIL import Image, ImageDraw
    if x_axis not in ("step", "core-hours"):
        raise InputError(f"the curve's x axis is 'step' or 'core-hours', not {x_axis!r}")
    records = read_metrics(folder)
    train = [(r["step"], r.get("loss_avg", r.get("loss"))) for r in records if not r.get("val") and "step" in r]
    val = [(r["step"], r["val_nll"], r.get("val_cfd")) for r in records if r.get("val") and "val_nll" in r]
    if not train and not val:
        raise InputError(f"{folder} has no metrics yet ({METRICS_FILE} is empty or missing)")
    label = "step"
    if x_axis == "core-hours":
        state = _read_state(Path(folder))
        batch = state.get("batch_size") or state.get("run", {}).get("train_config", {}).get("batch_size")
        if not batch:
            raise InputError(f"{folder}: its {STATE_FILE} does not say the batch size, so its compute is unknown")
        hours, known = core_hours(records, batch)
        train = [(_at(hours, s), v) for s, v in train]
        val = [(_at(hours, s), v, c) for s, v, c in val]
        label = "core-hours" + ("" if known else " (threads not logged: one assumed)")
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 70, width - 70, 30, height - 40
    steps = [s for s, _ in train] + [s for s, _, _ in val]
    x0, x1 = min(steps), max(max(steps), min(steps) + (1 if label == "step" else 1e-6))

    def x(s: float) -> float:
        return left + (s - x0) / (x1 - x0) * (right - left)

    def scale(values: list[float]):
        lo, hi = min(values), max(values)
        hi = hi if hi > lo else lo + 1
        return lambda v: bottom - (v - lo) / (hi - lo) * (bottom - top), lo, hi

    d.rectangle([left, top, right, bottom], outline="black")
    d.text((left, 8), f"{Path(folder).name}: training loss (blue, left) and validation NLL (red, right)", fill="black")
    if label == "step":
        d.text((left, bottom + 8), f"step {x0:,}", fill="black")
        d.text((right - 80, bottom + 8), f"step {x1:,}", fill="black")
    else:
        d.text((left, bottom + 8), f"{x0:.2f}", fill="black")
        d.text((right - 40, bottom + 8), f"{x1:.2f}", fill="black")
        d.text(((left + right) // 2 - 80, bottom + 8), label, fill="black")
    if train:
        y, lo, hi = scale([v for _, v in train if v is not None and math.isfinite(v)])
        d.line([(x(s), y(v)) for s, v in train if v is not None and math.isfinite(v)], fill=(30, 80, 200), width=2)
        d.text((4, top), f"{hi:.4g}", fill=(30, 80, 200))
        d.text((4, bottom - 10), f"{lo:.4g}", fill=(30, 80, 200))
    if val:
        y, lo, hi = scale([v for _, v, _ in val])
        pts = [(x(s), y(v)) for s, v, _ in val]
        if len(pts) > 1:
            d.line(pts, fill=(200, 40, 40), width=2)
        for (px, py), (_, _, c) in zip(pts, val):
            d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=(200, 40, 40))
            if c is not None:
                d.text((px + 4, py - 14), f"cfd {c:.3g}", fill=(120, 0, 120))
        d.text((right + 4, top), f"{hi:.5g}", fill=(200, 40, 40))
        d.text((right + 4, bottom - 10), f"{lo:.5g}", fill=(200, 40, 40))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def age(updated: float) -> str:
    """How long ago a run folder last changed, in words."""
    s = max(0.0, time.time() - updated)
    return f"{s:.0f} s ago" if s < 120 else f"{s / 60:.0f} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"
