"""The torch.distributed glue, in one place: a process group from torchrun's environment, rank helpers,
collectives that are no-ops in a single process, and how work is split across ranks.

Launched by `torchrun`, a process finds RANK, WORLD_SIZE and LOCAL_RANK in its environment and `setup` joins
the process group (NCCL for CUDA devices, gloo otherwise). Launched any other way nothing is initialised,
world_size() is 1 and every helper below returns its input unchanged, so single-process runs are exactly as
they were.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist

from .errors import InputError


def launched_by_torchrun() -> bool:
    """True when torchrun (or another launcher following its convention) set RANK and WORLD_SIZE."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_initialized() -> bool:
    """True when this process belongs to a torch.distributed process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """Number of processes in the group (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    """This process's index on its node (torchrun's LOCAL_RANK; 0 without one)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """True on rank 0, the process that writes files and prints."""
    return rank() == 0


def rank_device(device: str | torch.device = "cpu") -> torch.device:
    """The device this rank uses: under torchrun an unnumbered "cuda" becomes cuda:LOCAL_RANK."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None and launched_by_torchrun():
        device = torch.device("cuda", local_rank())
    return device


def setup(device: str | torch.device = "cpu") -> torch.device:
    """Join torchrun's process group if launched by torchrun (NCCL for a CUDA device, else gloo); return
    `rank_device(device)`. Without torchrun nothing is initialised and `device` is returned as it is."""
    device = rank_device(device)
    if not launched_by_torchrun() or not dist.is_available():
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda, but torch sees no CUDA device on this node")
        torch.cuda.set_device(device)
    if not is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend, **kwargs)
    return device


def teardown() -> None:
    """Leave the process group (if any)."""
    if is_initialized():
        import gc
        gc.collect()  # free DDP reducers that still hold the group before it is destroyed
        dist.destroy_process_group()


@contextmanager
def session(device: str | torch.device = "cpu") -> Iterator[torch.device]:
    """`setup` on entry, `teardown` on exit: wrap a command's body."""
    try:
        yield setup(device)
    finally:
        teardown()


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current CUDA device for NCCL, the CPU for gloo."""
    if is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_initialized():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of `t` over ranks, as a new tensor on t's device (t itself in one process)."""
    if not is_initialized():
        return t
    buf = t.detach().to(_comm_device(), copy=True)
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def all_agree(flag: bool) -> bool:
    """True only if `flag` is true on every rank: one decision that all ranks take together."""
    if not is_initialized():
        return bool(flag)
    t = torch.tensor([0 if flag else 1], dtype=torch.int64)
    return int(all_reduce_sum(t)) == 0


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's value of `flag`, on every rank (so a decision rank 0 took, e.g. on a clock, is shared)."""
    if not is_initialized():
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, src=0)
    return bool(t.item())


def broadcast_int(value: int) -> int:
    """Rank 0's `value` on every rank (a number rank 0 chose on its clock, e.g. a schedule's length)."""
    if not is_initialized():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, src=0)
    return int(t.item())


def shard(n: int, r: int | None = None, w: int | None = None) -> tuple[int, int]:
    """The contiguous [start, stop) slice of n items that rank r of w owns; sizes differ by at most one and
    rank order is item order, so concatenating the shards in rank order gives range(n)."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's `t` (same shape but for dim 0) in rank order, on every rank."""
    if not is_initialized():
        return t
    dev = _comm_device()
    sizes = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([t.shape[0]], dtype=torch.int64, device=dev))
    counts = [int(s) for s in sizes]
    longest = max(counts)
    padded = torch.zeros((longest, *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[:t.shape[0]] = t.detach()
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts)]).to(t.device)


def rank_seed(seed: int | None, r: int | None = None, w: int | None = None) -> int | None:
    """The seed rank r uses for its share of a seeded job: `seed` itself in one process, else a
    deterministic mix of (seed, r) (None stays None: fresh randomness on every rank)."""
    r = rank() if r is None else r
    w = world_size() if w is None else w
    if seed is None or w == 1:
        return seed
    return (int(seed) * 1_000_003 + 7_919 * (r + 1)) % (2**63 - 1)


def sample(model, n: int, seed: int | None = 0, **kwargs) -> torch.Tensor:
    """n images of `model` (a zoo.Model), the work split across ranks: rank r draws its share with
    rank_seed(seed), and the images are gathered in rank order on every rank. In one process this is
    exactly model.sample(n, seed=seed); with W processes the images depend on (seed, W)."""
    if world_size() == 1:
        return model.sample(n, seed=seed, **kwargs)
    lo, hi = shard(n)
    if hi > lo:
        x = model.sample(hi - lo, seed=rank_seed(seed), **kwargs)
    else:
        x = torch.zeros((0, *model.image_shape), device=model.device)
    return gather_cat(x)
