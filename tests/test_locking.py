"""zoo/locking.py: the OS lock (owner named, released when its process dies), atomic writes, locked updates,
and the run-folder lock that `zoo train` holds. The several-processes-at-once cases are in tests/reliability.py
(category `concurrency`)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from zoo import LockedError
from zoo.locking import FileLock, atomic_write_text, hold_run_folder, lock_path_for, update_text


def test_a_held_lock_refuses_a_second_holder_and_names_the_owner(tmp_path):
    path = tmp_path / ".x.lock"
    a = FileLock(path, "testing").acquire(timeout=0)
    try:
        with pytest.raises(LockedError) as e:
            FileLock(path).acquire(timeout=0, what="the thing")
        msg = str(e.value)
        assert f"the thing is in use by process {os.getpid()} on {socket.gethostname()}, started 20" in msg
        assert "(testing)" in msg
        t0 = time.monotonic()
        with pytest.raises(LockedError, match="waited 0.2 s"):
            FileLock(path).acquire(timeout=0.2)
        assert time.monotonic() - t0 >= 0.2
    finally:
        a.release()
    assert path.read_text() == ""  # the owner record is cleared on release
    FileLock(path).acquire(timeout=0).release()


def test_the_lock_is_released_when_its_process_dies(tmp_path):
    path = tmp_path / ".x.lock"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path[:0] = sys.argv[2:]\n"
        "from zoo.locking import FileLock\n"
        "FileLock(sys.argv[1]).acquire(timeout=0); print('held', flush=True); time.sleep(600)"),
        str(path), *sys.path], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"process {child.pid} on"):
            FileLock(path).acquire(timeout=0)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        FileLock(path).acquire(timeout=5).release()  # no stale lock: the kernel released it
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_atomic_writes_and_locked_updates_leave_no_temporary_files(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "a")
    assert update_text(path, lambda old: old + "b") == "ab" and path.read_text() == "ab"
    assert update_text(tmp_path / "new.txt", lambda old: "fresh" if old is None else "?") == "fresh"
    with pytest.raises(ZeroDivisionError):  # a failing change leaves the file as it was
        update_text(path, lambda old: str(1 / 0))
    assert path.read_text() == "ab"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["f.txt", "new.txt", lock_path_for(path).name, lock_path_for(tmp_path / "new.txt").name])


def test_a_run_folder_held_elsewhere_refuses_training_before_any_work(tmp_path):
    from fakedata import tiny_data

    import zoo
    from zoo.train import TrainConfig, fit
    out = tmp_path / "run"
    out.mkdir()
    other = FileLock(out / ".zoo-run.lock", "training in run").acquire(timeout=0)  # as another trainer would
    try:
        model = zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[8], num_masks=1)
        with pytest.raises(LockedError, match=r"the run folder .* is in use by process \d+ .* --resume after"):
            fit(model, tiny_data(20, "train", True), tiny_data(10, "val", False), TrainConfig(epochs=1), out,
                progress=False)
        assert sorted(p.name for p in out.iterdir()) == [".zoo-run.lock"]  # nothing written
    finally:
        other.release()
    with hold_run_folder(out):
        with hold_run_folder(out):  # re-entrant in one process (train_card holds it around fit)
            pass
        with pytest.raises(LockedError):  # still held after the inner block
            FileLock(out / ".zoo-run.lock").acquire(timeout=0)
    FileLock(out / ".zoo-run.lock").acquire(timeout=0).release()
