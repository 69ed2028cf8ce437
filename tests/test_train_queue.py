"""scripts/train_queue.py: runs the plan's trainings, resumes a run stopped by a time limit until its schedule is
done, and records it finished once (issue 23)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fakedata import tiny_made_recipe  # noqa: E402  (tests/ is on sys.path: conftest)

ROOT = Path(__file__).resolve().parent.parent

RECIPE = tiny_made_recipe(seed=0)


def test_a_time_limited_run_is_resumed_until_its_schedule_is_done(tmp_path, mnist_dir):
    (tmp_path / "tiny.toml").write_text(RECIPE)
    (tmp_path / "plan.toml").write_text(
        f'slots = 1\nthreads = 1\nroot = "{tmp_path / "q"}"\n\n[[run]]\nrecipe = "{tmp_path / "tiny.toml"}"\n'
        'args = ["--time-limit", "0", "--no-test", "--val-cfd", "0"]\n')
    env = {**os.environ, "ZOO_DATA_DIR": str(mnist_dir), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(tmp_path / "plan.toml")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "queued again to continue" in out.stdout  # stopped by the time limit at least once, then resumed
    state = json.loads((tmp_path / "q" / "tiny" / "state.json").read_text())
    assert state["global_step"] == state["total_steps"] == 8 and state["epoch"] == 2
    done = [json.loads(ln) for ln in (tmp_path / "q" / "finished.jsonl").read_text().splitlines()]
    assert [d["name"] for d in done] == ["tiny"] and done[0]["rc"] == 0
    # started again, the queue has nothing left to do
    again = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(tmp_path / "plan.toml"),
                            "--status"], capture_output=True, text=True, env=env, timeout=120)
    assert "finished" in again.stdout
