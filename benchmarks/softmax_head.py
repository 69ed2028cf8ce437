"""The softmax head's log-probabilities over rows of contiguous logits (zoo.heads.SoftmaxHead.log_prob) against
the cross-entropy over a moved class dimension it replaced, forward and backward, side by side in one run.

    python benchmarks/softmax_head.py                  # CIFAR-10 grey: 100 images x 1,024 pixels x 256 levels
    python benchmarks/softmax_head.py --pixels 784 --repeats 5

The moved form (logits (N, P, 1, L) -> (N, L, P, 1), the layout F.cross_entropy reads for images) reduced across
strides and copied; a factorized-softmax MADE's training step spent most of its head's time there. Both give the
same figures (printed: the largest difference, float32 rounding).
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from zoo.heads import make_head  # noqa: E402


def moved(params: torch.Tensor, values: torch.Tensor, levels: int) -> torch.Tensor:
    """The previous form: cross-entropy over the class dimension moved to position 1."""
    logits = params.unflatten(-1, (values.shape[-1], levels))
    return -F.cross_entropy(logits.movedim(-1, 1), values, reduction="none")


def best_of(fn, params: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        p = params.detach().requires_grad_()
        t = time.perf_counter()
        fn(p).sum().backward()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--pixels", type=int, default=1024)
    ap.add_argument("--levels", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.manual_seed(0)
    head = make_head("softmax", a.levels)
    params = torch.randn(a.batch, a.pixels, a.levels)
    values = torch.randint(0, a.levels, (a.batch, a.pixels, 1))
    diff = (head.log_prob(params, values) - moved(params, values, a.levels)).abs().max().item()
    t_new = t_old = float("inf")
    for _ in range(2):  # alternately, so that a noisy machine moves both alike
        t_old = min(t_old, best_of(lambda p: moved(p, values, a.levels), params, a.repeats))
        t_new = min(t_new, best_of(lambda p: head.log_prob(p, values), params, a.repeats))
    print(f"softmax head log_prob + backward, {a.batch} x {a.pixels} x {a.levels} levels, "
          f"{torch.get_num_threads()} thread(s): contiguous rows {t_new * 1000:.0f} ms, moved class dimension "
          f"{t_old * 1000:.0f} ms: {t_old / t_new:.2f}x (largest difference {diff:.1e})")


if __name__ == "__main__":
    main()
