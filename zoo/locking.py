"""Files and folders that several processes share, in one place: an exclusive OS file lock (fcntl on POSIX,
msvcrt on Windows) that the kernel releases when its process dies, with its owner (pid, host, start time)
recorded for the error message; atomic writes (a unique temporary file, fsync, rename); and a locked, atomic
read-modify-write of a shared file.

Every shared file zoo rewrites goes through here: a card under `--write-card`, the FID floors file, the FID
reference-statistics cache, the Inception weights download, the decoded image-folder cache; and a training run
folder is held by one process for the whole run (`hold_run_folder`).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import LockedError

#: how long a read-modify-write waits for another process's short update before it gives up (seconds)
UPDATE_TIMEOUT = 120.0
_POLL = 0.05


def _try_lock(fd: int) -> bool:
    """Take the OS lock on an open file without waiting; False if another process (or open file) holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        os.lseek(fd, 1 << 20, os.SEEK_SET)  # lock one byte past the owner text, so others can still read it
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except (BlockingIOError, PermissionError):
        return False


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt
        os.lseek(fd, 1 << 20, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)


def owner_record(purpose: str = "") -> dict:
    """Who holds a lock: pid, host, start time (UTC) and what for."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "purpose": purpose}


def describe_owner(lock_path: str | Path, wait: float = 0.0) -> str:
    """The owner recorded in a lock file, in words (or a note that it is not known yet). `wait`: how long to
    look for a record still being written (an owner writes it right after taking the lock)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            o = json.loads(Path(lock_path).read_text(encoding="utf-8"))
            return (f"process {o['pid']} on {o['host']}, started {o['started']}"
                    + (f" ({o['purpose']})" if o.get("purpose") else ""))
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "another process (its owner record is not written yet)"
            time.sleep(_POLL)


class FileLock:
    """An exclusive lock on `path` (a small lock file that is never deleted). The OS releases it when the
    process that holds it exits or dies, so a crash never leaves a folder locked. Not re-entrant: a second
    FileLock on the same path, even in the same process, waits or is refused."""

    def __init__(self, path: str | Path, purpose: str = "") -> None:
        self.path = Path(path)
        self.purpose = purpose
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float | None = None, what: str = "") -> "FileLock":
        """Take the lock: timeout=0 refuses at once if it is held, None waits as long as it takes. A refusal is a
        LockedError naming the owner."""
        if self._fd is not None:
            raise LockedError(f"{self.path}: this lock is already held by this object")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise LockedError(f"{what or self.path}: cannot create its lock file {self.path} ({e.strerror or e}); "
                              "is the folder writable?") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not _try_lock(fd):
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockedError(f"{what or self.path} is in use by {describe_owner(self.path, wait=2.0)}"
                                      + (f"; waited {timeout:g} s" if timeout else "")
                                      + ". Wait for it to finish (or stop it), then retry")
                time.sleep(_POLL)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        record = json.dumps(owner_record(self.purpose)).encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, record)
        return self

    def release(self) -> None:
        """Clear the owner record and release the lock (the lock file stays: deleting it would race)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_path_for(path: str | Path) -> Path:
    """The lock file that guards a shared file: a hidden `.NAME.lock` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def locked(path: str | Path, timeout: float | None = UPDATE_TIMEOUT, purpose: str = "") -> Iterator[FileLock]:
    """Hold the lock of a shared file for the block (waiting up to `timeout` s for another process)."""
    lock = FileLock(lock_path_for(path), purpose or f"updating {Path(path).name}")
    lock.acquire(timeout=timeout, what=str(path))
    try:
        yield lock
    finally:
        lock.release()


def atomic_write_bytes(path: str | Path, data: bytes | Callable[[Path], None]) -> Path:
    """Write a file so that readers see the old or the new content, never a mix: a temporary file of its own
    (two writers never share one), fsynced, then renamed over `path`. `data` is the bytes, or a function that
    writes the temporary file given its path (e.g. numpy's savez)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if callable(data):
            os.close(fd)
            fd = -1
            data(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            with os.fdopen(fd, "wb") as f:
                fd = -1
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def update_text(path: str | Path, change: Callable[[str | None], str], timeout: float | None = UPDATE_TIMEOUT) -> str:
    """Locked, atomic read-modify-write of a shared text file: `change(old text, or None if there is no file)`
    gives the new text. Concurrent updates run one after another, so none is lost."""
    path = Path(path)
    with locked(path, timeout):
        try:
            old = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = None
        new = change(old)
        atomic_write_text(path, new)
        return new


# ---- a run folder belongs to one process --------------------------------------------------------------------
RUN_LOCK_FILE = ".zoo-run.lock"
_held_runs: dict[str, list] = {}
_held_guard = threading.Lock()


@contextlib.contextmanager
def hold_run_folder(folder: str | Path, purpose: str = "training") -> Iterator[None]:
    """Hold a training run folder for this process (rank 0 of a torchrun job holds it for every rank) until
    the block ends. A second process, a second trainer or a `--resume` while the first runs, is refused at
    once with a LockedError naming the owner. Re-entrant within a process (train_card holds it around fit)."""
    from . import distributed as zdist
    folder = Path(folder)
    key = os.path.realpath(folder)
    with _held_guard:
        if key in _held_runs:
            _held_runs[key][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _held_guard:
                _held_runs[key][1] -= 1
        return
    lock, error = None, None
    created = not folder.exists()  # a folder made here only to hold the lock goes again if nothing is written
    if zdist.is_main():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            lock = FileLock(folder / RUN_LOCK_FILE, f"{purpose} in {folder}").acquire(
                timeout=0, what=f"the run folder {folder}")
        except LockedError as e:
            error = LockedError(f"{e}. A run folder belongs to one process: choose another --out, or --resume "
                                "after that process has ended")
    if not zdist.broadcast_flag(error is None):  # every rank learns rank 0's answer
        raise error or LockedError(f"the run folder {folder} is in use by another process (rank 0 was refused)")
    with _held_guard:
        _held_runs[key] = [lock, 1]
    try:
        yield
    finally:
        with _held_guard:
            _held_runs.pop(key, None)
        if lock is not None:
            lock.release()
            if created:  # a run refused before it wrote anything leaves no folder behind
                with contextlib.suppress(OSError):
                    if {p.name for p in folder.iterdir()} <= {RUN_LOCK_FILE}:
                        (folder / RUN_LOCK_FILE).unlink(missing_ok=True)
                        folder.rmdir()
