"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of the
squared maximum mean discrepancy between two feature sets under the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over random subsets, with its standard deviation over the subsets.

It is computed as torch-fidelity and clean-fid compute it: `subsets` draws (default 100) of `subset_size`
features from each set (default 1000, or fewer when a set is smaller), without replacement within a draw;
for each draw, with m = subset_size,

    MMD^2_u = sum_{i!=j} k(x_i, x_j) / (m(m-1)) + sum_{i!=j} k(y_i, y_j) / (m(m-1)) - 2 sum_{i,j} k(x_i, y_j) / m^2

Unlike FID it is unbiased at any n, so small-n figures of two models compare fairly. It uses the same
Inception pool features as FID (zoo.fid.features).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError

SUBSETS = 100
SUBSET_SIZE = 1000
SEED = 0


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """k(x, y) = (x.y / d + 1)^3 for every pair of rows of x (m, d) and y (n, d), in float64."""
    d = x.shape[1]
    # the products are taken in the features' dtype (float32 halves the time of the 2048-d products); the
    # cube and every sum are float64, where the cancellation between the three terms of MMD^2 happens
    return (x @ y.T).double().div_(d).add_(1).pow_(3)


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased MMD^2 between two equal-size samples x, y (m, d) under the cubic polynomial kernel."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise InputError(f"MMD^2 needs two samples of the same size m >= 2, got {x.shape[0]} and {y.shape[0]}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


@dataclass(frozen=True)
class KIDResult:
    """KID's mean and standard deviation over `subsets` subsets of `subset_size` features of each set."""

    mean: float
    std: float
    n_a: int
    n_b: int
    subset_size: int
    subsets: int

    def __str__(self) -> str:
        return (f"KID {self.mean:.5f} ± {self.std:.5f} (x1000: {1000 * self.mean:.2f} ± {1000 * self.std:.2f}; "
                f"n = {self.n_a:,} vs {self.n_b:,}, {self.subsets} subsets of {self.subset_size:,})")


def kid(feats_a: np.ndarray | torch.Tensor, feats_b: np.ndarray | torch.Tensor, subsets: int = SUBSETS,
        subset_size: int = SUBSET_SIZE, seed: int = SEED) -> KIDResult:
    """KID between two feature sets (N, d) and (M, d): the mean and standard deviation of the unbiased MMD^2
    over `subsets` random subsets of min(subset_size, N, M) features of each, drawn with a seeded generator."""
    a, b = (torch.as_tensor(np.asarray(f)) if not isinstance(f, torch.Tensor) else f for f in (feats_a, feats_b))
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"KID needs two feature sets (N, d) of one d, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise InputError("KID: the features hold NaN or infinite values")
    if subsets < 1:
        raise InputError(f"KID needs at least one subset, got {subsets}")
    m = min(subset_size, a.shape[0], b.shape[0])
    if m < 2:
        raise InputError(f"KID needs at least 2 images in each set, got {a.shape[0]} and {b.shape[0]}")
    a, b = a.float(), b.float()
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        ia = torch.randperm(a.shape[0], generator=g)[:m]
        ib = torch.randperm(b.shape[0], generator=g)[:m]
        values.append(mmd2_unbiased(a[ia], b[ib]))
    v = np.asarray(values)
    return KIDResult(float(v.mean()), float(v.std()), int(a.shape[0]), int(b.shape[0]), m, subsets)
