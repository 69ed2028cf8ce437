"""How many threads torch uses: one home for the rule every command applies.

An explicit `--threads N` wins. Otherwise OMP_NUM_THREADS (or ZOO_THREADS), when set, is honoured. Otherwise zoo
uses the cores that are free now: the cores this process may run on less the 1-minute load average, at least
one. On a busy machine more threads than free cores is much slower than one thread (measured here: sampling at
4.8 against 30 images/s on 2 cores with another job running), so the default never oversubscribes.
"""
from __future__ import annotations

import os


def free_cores() -> int:
    """Cores this process may use, less the ones the 1-minute load average says are busy (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


def default_threads() -> int:
    """The thread count zoo picks when none is given (see the module's docstring)."""
    for var in ("ZOO_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return free_cores()


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count to n, or to `default_threads()`; returns the count set."""
    import torch
    count = n if n else default_threads()
    torch.set_num_threads(count)
    return count
