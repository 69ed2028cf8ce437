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


def test_a_command_run_is_started_with_this_python_and_recorded_once(tmp_path):
    """A [[run]] with a `command` (a classifier's training) runs as given, `python` being the queue's interpreter;
    a failed one is not recorded, a finished one is skipped when the queue starts again."""
    marker = tmp_path / "ran.txt"
    script = tmp_path / "job.py"
    script.write_text("import sys, pathlib\np = pathlib.Path(sys.argv[1])\n"
                      "p.write_text(p.read_text() + sys.executable + '\\n' if p.exists() else sys.executable + '\\n')\n"
                      "sys.exit(int(sys.argv[2]))\n")
    plan = tmp_path / "plan.toml"
    q = tmp_path / "q"

    def write(rc: int) -> None:
        plan.write_text(f'slots = 1\nroot = "{q}"\n\n[[run]]\nname = "job"\n'
                        f'command = ["python", "{script}", "{marker}", "{rc}"]\n')

    def queue() -> str:
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    write(3)
    assert "job exited 3" in queue() and not (q / "finished.jsonl").exists()
    write(0)
    queue()
    queue()  # recorded finished: not run a third time
    assert marker.read_text().splitlines() == [sys.executable, sys.executable]
    assert [json.loads(ln)["name"] for ln in (q / "finished.jsonl").read_text().splitlines()] == ["job"]


def test_a_run_needs_a_recipe_or_a_named_command(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'root = "{tmp_path}"\n[[run]]\ncommand = ["python", "-c", "pass"]\n')
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "needs a `name`" in out.stderr


def test_runs_added_to_the_plan_while_the_queue_works_are_taken_up(tmp_path):
    """The plan is read again whenever a slot frees: the first job appends a second [[run]] to it, and the same
    queue process runs that one too, with its `threads` as OMP_NUM_THREADS."""
    plan, q, log = tmp_path / "plan.toml", tmp_path / "q", tmp_path / "log.txt"
    second = (f'\n[[run]]\nname = "second"\nthreads = 3\ncommand = ["python", "-c", '
              f'"import os, pathlib; p = pathlib.Path({str(log)!r}); '
              f'p.write_text(p.read_text() + \'second \' + os.environ[\'OMP_NUM_THREADS\'])"]\n')
    first = tmp_path / "first.py"
    first.write_text(f"import pathlib\npathlib.Path({str(log)!r}).write_text('first ')\n"
                     f"with open({str(plan)!r}, 'a') as f:\n    f.write({second!r})\n")
    plan.write_text(f'slots = 1\nroot = "{q}"\n\n[[run]]\nname = "first"\ncommand = ["python", "{first}"]\n')
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert log.read_text() == "first second 3"
    assert [json.loads(ln)["name"] for ln in (q / "finished.jsonl").read_text().splitlines()] == ["first", "second"]


def test_a_run_waits_for_the_runs_it_comes_after(tmp_path):
    """`after`: a run listed first starts only once the runs it names have finished, and never when one of them
    failed; an `after` naming no run of the plan is refused."""
    log, plan, q = tmp_path / "log.txt", tmp_path / "plan.toml", tmp_path / "q"

    def job(name: str, rc: int = 0) -> str:
        return (f'command = ["python", "-c", "import pathlib, sys; p = pathlib.Path({str(log)!r}); '
                f'p.write_text((p.read_text() if p.exists() else \'\') + \'{name} \'); sys.exit({rc})"]\n')

    plan.write_text(f'slots = 2\nroot = "{q}"\n\n'
                    f'[[run]]\nname = "ship"\nafter = ["train"]\n{job("ship")}\n'
                    f'[[run]]\nname = "train"\n{job("train")}\n'
                    f'[[run]]\nname = "measure"\nafter = ["broken"]\n{job("measure")}\n'
                    f'[[run]]\nname = "broken"\n{job("broken", 3)}\n')
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    ran = log.read_text().split()
    assert sorted(ran) == ["broken", "ship", "train"] and ran.index("train") < ran.index("ship")
    assert "measure" in out.stdout and "did not finish" in out.stdout
    plan.write_text(f'root = "{q}"\n[[run]]\nname = "a"\nafter = ["nope"]\n{job("a")}')
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "nope" in bad.stderr


def test_runs_failing_one_after_another_at_their_start_halt_the_queue(tmp_path):
    """Two runs in a row that fail within a minute (a missing dataset fails every run) stop the queue from starting
    the rest, which stay pending for the next start; a single failure does not."""
    log, plan, q = tmp_path / "log.txt", tmp_path / "plan.toml", tmp_path / "q"

    def job(name: str, rc: int = 0) -> str:
        return (f'[[run]]\nname = "{name}"\ncommand = ["python", "-c", "import pathlib, sys; '
                f'p = pathlib.Path({str(log)!r}); p.write_text((p.read_text() if p.exists() else \'\') + '
                f'\'{name} \'); sys.exit({rc})"]\n\n')

    plan.write_text(f'slots = 1\nroot = "{q}"\n\n' + job("ok") + job("one", 2) + job("ok2") + job("two", 2)
                    + job("three", 2) + job("never"))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert log.read_text().split() == ["ok", "one", "ok2", "two", "three"]
    assert "2 runs in a row failed" in out.stdout and "ZOO_DATA_DIR" in out.stdout
    status = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan), "--status"],
                            capture_output=True, text=True, timeout=120).stdout
    assert [ln.split()[0] for ln in status.splitlines() if "pending" in ln] == ["one", "two", "three", "never"]


def test_the_plan_s_record_of_finished_runs_survives_a_new_machine(tmp_path):
    """`record` names a tracked file: a run it lists is not started again when the run folders are gone (a new
    machine), and a run that finishes is appended to it."""
    log, plan, record = tmp_path / "log.txt", tmp_path / "plan.toml", tmp_path / "repo" / "finished.jsonl"
    record.parent.mkdir()
    record.write_text(json.dumps({"name": "old", "rc": 0}) + "\n")
    job = (f'command = ["python", "-c", "import pathlib; p = pathlib.Path({str(log)!r}); '
           f'p.write_text((p.read_text() if p.exists() else \'\') + \'ran \')"]\n')
    plan.write_text(f'root = "{tmp_path / "fresh"}"\nrecord = "{record}"\n\n[[run]]\nname = "old"\n{job}\n'
                    f'[[run]]\nname = "new"\n{job}')
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert log.read_text() == "ran " and "start new" in out.stdout and "start old" not in out.stdout
    assert [json.loads(ln)["name"] for ln in record.read_text().splitlines()] == ["old", "new"]
    assert not (tmp_path / "fresh" / "finished.jsonl").exists()


def test_status_names_the_runs_a_working_queue_has_started(tmp_path):
    """`--status` from another shell says which runs are running now (and since when), not "pending"; once the
    queue is gone they are no longer called running."""
    import time
    flag, plan, q = tmp_path / "go", tmp_path / "plan.toml", tmp_path / "q"
    plan.write_text(f'slots = 1\nroot = "{q}"\n\n[[run]]\nname = "slow"\ncommand = ["python", "-c", "import '
                    f'pathlib, time\\nwhile not pathlib.Path({str(flag)!r}).exists(): time.sleep(0.2)"]\n\n'
                    f'[[run]]\nname = "next"\ncommand = ["python", "-c", "pass"]\n')

    def status() -> dict[str, str]:
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan), "--status"],
                             capture_output=True, text=True, timeout=120).stdout
        return {ln.split()[0]: ln for ln in out.splitlines()}

    queue = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train_queue.py"), str(plan)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while "running since" not in status().get("slow", "") and time.time() < deadline:
            time.sleep(0.5)
        now = status()
        assert "running since" in now["slow"] and "pending" not in now["slow"], now
        assert now["next"].split()[1] == "pending"
        flag.write_text("")
        assert queue.wait(timeout=60) == 0
    finally:
        queue.kill()
    done = status()
    assert "finished" in done["slow"] and "finished" in done["next"]
    assert "running" not in done["slow"]
