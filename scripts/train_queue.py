#!/usr/bin/env python3
"""The training queue (issue 23): run the plan file's trainings in the background, a few at a time, each
resumed from its run folder after any stop, and record which finished.

    nohup python scripts/train_queue.py [experiments/queue/plan.toml] > runs/queue/queue.log 2>&1 &

The plan lists runs in order: a `recipe` trained by `zoo train`, or a `command` (another training, such as a
classifier of scripts/train_classifier.py, that has no checkpoints: it starts over after a stop); `slots` of them
train at once with `threads` CPU threads each (OMP_NUM_THREADS for a command). A run whose folder already holds a
state.json is continued with --resume; one recorded as finished in the queue's record (`record`, by default
`finished.jsonl` beside the run folders) is skipped. Stop the queue with Ctrl-C or kill: every run keeps its last
checkpoint, and starting the queue again continues where each stopped. The plan is read again whenever a slot frees:
runs added to it while the queue works are taken up in plan order. A run with `after = [NAMES]` starts only once
those have finished (a ship-and-measure command after its training). `python scripts/train_queue.py --status` prints
where each run stands without starting anything.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One planned training: a recipe (card TOML or id), its run folder and extra `zoo train` flags; or a plain
    command line (`python` is this interpreter), finished when it exits 0."""

    name: str
    recipe: str
    out: Path
    args: list[str] = field(default_factory=list)
    threads: int = 1
    command: list[str] | None = None
    after: list[str] = field(default_factory=list)  # runs that must have finished before this one starts


def read_plan(path: Path) -> tuple[int, Path, list[Run], Path]:
    """The plan file: `slots`, `root` (where run folders go), its [[run]] tables in order, and `record`, the
    file of finished runs (default ROOT/finished.jsonl; a tracked file survives a new machine)."""
    plan = tomllib.loads(path.read_text())
    root = ROOT / plan.get("root", "runs/queue")
    record = ROOT / plan["record"] if "record" in plan else root / "finished.jsonl"
    threads = int(plan.get("threads", 1))
    runs = []
    for r in plan.get("run", []):
        if ("recipe" in r) == ("command" in r):
            sys.exit(f"{path}: each [[run]] needs a `recipe` or a `command` (one of them): {r}")
        if "command" in r and not r.get("name"):
            sys.exit(f"{path}: a [[run]] with a `command` needs a `name`: {r}")
        name = r.get("name") or Path(r["recipe"]).stem
        runs.append(Run(name, r.get("recipe", ""), root / name, list(r.get("args", [])),
                        int(r.get("threads", threads)), list(r["command"]) if "command" in r else None,
                        list(r.get("after", []))))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        sys.exit(f"{path}: two runs share a name; give each [[run]] its own `name`")
    for r in runs:
        unknown = [d for d in r.after if d not in names]
        if unknown:
            sys.exit(f"{path}: {r.name} comes `after` {unknown}, which the plan does not list")
    return int(plan.get("slots", 1)), root, runs, record


def finished(record: Path, root: Path) -> dict[str, dict]:
    """The queue's record of finished runs, by name (the last record of a name wins): the plan's `record` and,
    when that is elsewhere, the run root's own finished.jsonl (what a queue wrote before the plan named one)."""
    done: dict[str, dict] = {}
    for rec in dict.fromkeys([root / "finished.jsonl", record]):
        if rec.exists():
            for line in rec.read_text().splitlines():
                if line.strip():
                    d = json.loads(line)
                    done[d["name"]] = d
    return done


def state(run: Run) -> dict | None:
    """The run folder's training state (epoch, step, history), or None before its first checkpoint."""
    p = run.out / "state.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


#: the runs a working queue has started and not yet seen end, {name: {"pid", "since"}}, for --status
RUNNING = "running.json"


def write_running(root: Path, active: dict) -> None:
    """Record the runs now started (their process ids and start times) for `--status` in another shell."""
    tmp = root / (RUNNING + ".tmp")
    tmp.write_text(json.dumps({name: {"pid": p.pid, "since": time.strftime("%H:%M:%S", time.localtime(t0))}
                               for name, (_, p, t0) in active.items()}))
    os.replace(tmp, root / RUNNING)


def running(root: Path) -> dict[str, dict]:
    """The runs a queue started that are still alive (their process exists), from its RUNNING record."""
    try:
        rec = json.loads((root / RUNNING).read_text())
    except (OSError, ValueError):
        return {}
    alive = {}
    for name, r in rec.items():
        try:
            os.kill(int(r["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        alive[name] = r
    return alive


def describe(run: Run, done: dict[str, dict], now: dict[str, dict] | None = None) -> str:
    """One status line: finished, running (since when) or stopped at epoch e of E with the best validation figure,
    or pending."""
    s = state(run)
    if run.name in done:
        d = done[run.name]
        return f"{run.name:28s} finished {d['when']} (rc {d['rc']}; best {d.get('best')})"
    live = (now or {}).get(run.name)
    head = f"{run.name:28s} running since {live['since']} (pid {live['pid']})" if live else f"{run.name:28s}"
    if s is None:
        return head if live else f"{head} pending"
    hist = s.get("history", [])
    tc = s.get("run", {}).get("train_config", {})
    return (f"{head}{';' if live else ''} epoch {s.get('epoch')} step {s.get('global_step')} best val "
            f"{s.get('best_val_nll')} (epoch {s.get('best_epoch')}), {len(hist)} validations; batch "
            f"{tc.get('batch_size')}")


def complete(run: Run) -> bool:
    """Whether a run's schedule is done (all its epochs, or stopped early by patience): a run that exits 0 at a
    time limit is not, and is resumed. Run folders from before `total_steps` was recorded count as done."""
    if run.command is not None:
        return True
    s = state(run) or {}
    epochs = s.get("sized_epochs") or s.get("epochs")
    if s.get("total_steps") is None:
        return True
    return s.get("global_step", 0) >= s["total_steps"] or (epochs is not None and s.get("epoch", 0) >= epochs)


def command(run: Run) -> list[str]:
    """The `zoo train` command line of a run: --resume when its folder already holds a run (or its own command)."""
    if run.command is not None:
        return [sys.executable if run.command[0] == "python" else run.command[0], *run.command[1:]]
    recipe = str(ROOT / run.recipe) if run.recipe.endswith(".toml") else run.recipe
    cmd = [sys.executable, "-m", "zoo.cli", "train", recipe, "--out", str(run.out), "--threads", str(run.threads),
           *run.args]
    if state(run) is not None:
        cmd.append("--resume")
    return cmd


#: runs in a row failing within QUICK_FAILURE_S seconds halt the queue: without it, a missing dataset failed every
#: run of the plan one after another in a minute (a ship chain half done among them)
QUICK_FAILURES = 2
QUICK_FAILURE_S = 60


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plan", nargs="?", default=str(ROOT / "experiments/queue/plan.toml"))
    ap.add_argument("--status", action="store_true", help="print where each run stands and exit")
    ap.add_argument("--slots", type=int, default=None, help="runs at once (default: the plan's `slots`), e.g. 1 "
                                                              "while an evaluation holds the other core")
    a = ap.parse_args()
    slots, root, runs, record = read_plan(Path(a.plan))
    slots = a.slots or slots
    root.mkdir(parents=True, exist_ok=True)
    if a.status:
        done, now = finished(record, root), running(root)
        for r in runs:
            print(describe(r, done, now))
        return
    active: dict[str, tuple[Run, subprocess.Popen, float]] = {}
    failed: set[str] = set()  # exited with an error this time: not retried until the queue is started again
    quick_failures = 0  # runs in a row that failed within QUICK_FAILURE_S of their start
    halted = False  # set after QUICK_FAILURES of them: something every run needs is missing; start no more

    def waiting() -> list[Run]:
        """The plan's runs still to start, in order. The plan is read again each time a slot frees, so runs
        added to it (or reordered) while the queue works are taken up without a restart."""
        nonlocal runs
        try:
            runs = read_plan(Path(a.plan))[2]  # (root and record stay those the queue started with)
        except (OSError, ValueError, SystemExit) as e:  # a plan being edited: keep the last good one
            print(f"{time.strftime('%H:%M:%S')} plan unreadable ({e}); keeping the last one read", flush=True)
        done = finished(record, root)
        return [r for r in runs if r.name not in done and r.name not in active and r.name not in failed
                and all(d in done for d in r.after)]

    started_at: dict[str, int] = {}  # each run's step when it was (re)started: a stop that made no progress ends

    def stop(signum, frame):  # the children checkpoint on SIGINT and exit; the queue follows
        for _, p, _ in active.values():
            p.send_signal(signal.SIGINT)
        for _, p, _ in active.values():
            p.wait()
        sys.exit(130)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    while True:
        pending = waiting() if len(active) < slots and not halted else []
        if not pending and not active:
            blocked = [r.name for r in runs if r.name not in finished(record, root) and r.after]
            if blocked:
                print(f"{time.strftime('%H:%M:%S')} not started, as a run they come after did not finish: "
                      f"{', '.join(blocked)}", flush=True)
            break
        while pending and len(active) < slots:
            r = pending.pop(0)
            r.out.parent.mkdir(parents=True, exist_ok=True)
            log = open(root / f"{r.name}.log", "a")
            cmd = command(r)
            started_at[r.name] = (state(r) or {}).get("global_step", 0)
            shown = " ".join(cmd[1:] if r.command else cmd[2:])
            print(f"{time.strftime('%H:%M:%S')} start {r.name}: {shown}", flush=True)
            log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
            log.flush()
            # a `command` gets its `threads` through the OpenMP variables (`zoo train` also gets --threads):
            # an unbounded evaluation beside a one-thread training would take both cores from it
            threads = {k: str(r.threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
            active[r.name] = (r, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                                  env={**env, **threads}), time.time())
            write_running(root, active)
        time.sleep(5)
        for name in list(active):
            r, p, t0 = active[name]
            rc = p.poll()
            if rc is None:
                continue
            del active[name]
            write_running(root, active)
            s = state(r) or {}
            rec = {"name": name, "rc": rc, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "seconds": round(time.time() - t0), "epochs": s.get("epoch"), "steps": s.get("global_step"),
                   "best": s.get("best_val_nll")}
            print(f"{time.strftime('%H:%M:%S')} {name} exited {rc} after {rec['seconds']} s "
                  f"(epoch {rec['epochs']}, best {rec['best']})", flush=True)
            if rc == 0 and not complete(r) and (state(r) or {}).get("global_step", 0) > started_at[name]:
                # a --time-limit or --time-budget stop: its checkpoint is kept, and it goes back in the queue
                print(f"  {name} stopped before the end of its schedule (step {s.get('global_step')} of "
                      f"{s.get('total_steps')}); queued again to continue", flush=True)
            elif rc == 0:
                record.parent.mkdir(parents=True, exist_ok=True)
                with open(record, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            else:
                failed.add(name)
                print(f"  see {root / (name + '.log')}; start the queue again to resume it", flush=True)
            quick_failures = quick_failures + 1 if rc != 0 and rec["seconds"] < QUICK_FAILURE_S else 0
            if quick_failures >= QUICK_FAILURES and not halted:
                halted = True
                print(f"{time.strftime('%H:%M:%S')} {quick_failures} runs in a row failed within "
                      f"{QUICK_FAILURE_S} s of their start: something they all need is missing (a dataset: set "
                      "ZOO_DATA_DIR; a folder; a package). Starting nothing more; the running ones go on. Read "
                      "their logs, mend it and start the queue again", flush=True)


if __name__ == "__main__":
    main()
