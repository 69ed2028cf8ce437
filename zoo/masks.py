"""Completion masks: bool tensors, True where a pixel is observed (kept), False where it is generated.

Each builder takes an image batch or an image shape (C, H, W) and returns a mask of shape (C, H, W), which
`Model.complete` broadcasts over the batch (`random` returns one mask per image).
"""
from __future__ import annotations

import math

import torch

from .errors import InputError
from .mask_specs import split_spec
from .model import check_seed


def _shape(x: torch.Tensor | tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(x.shape[-3:]) if isinstance(x, torch.Tensor) else tuple(x)
    if len(shape) != 3:
        raise InputError(f"masks are built for (C, H, W) images, got shape {shape}")
    return shape  # type: ignore[return-value]


def _rows_cols(x) -> tuple[int, int, int, torch.Tensor]:
    c, h, w = _shape(x)
    return c, h, w, torch.zeros(c, h, w, dtype=torch.bool)


def top_half(x) -> torch.Tensor:
    """Observe the top rows (H // 2 of them), generate the bottom."""
    c, h, w, m = _rows_cols(x)
    m[:, : h // 2] = True
    return m


def bottom_half(x) -> torch.Tensor:
    """Observe the bottom rows, generate the top."""
    return top_half(x).flip(1)


def left_half(x) -> torch.Tensor:
    """Observe the left columns (W // 2 of them), generate the right."""
    c, h, w, m = _rows_cols(x)
    m[:, :, : w // 2] = True
    return m


def right_half(x) -> torch.Tensor:
    """Observe the right columns, generate the left."""
    return left_half(x).flip(2)


def first_k(x, k: int) -> torch.Tensor:
    """Observe the first k pixels in raster order (all channels of each), generate the rest."""
    c, h, w, m = _rows_cols(x)
    if not 0 <= k <= h * w:
        raise InputError(f"first_k needs 0 <= k <= {h * w}, got {k}")
    m.view(c, -1)[:, :k] = True
    return m


def box(x, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """Generate a box (rows top..top+height, cols left..left+width), observe everything else."""
    c, h, w, m = _rows_cols(x)
    if not (0 <= top < h and 0 <= left < w and height > 0 and width > 0):
        raise InputError(f"box ({top}, {left}, {height}, {width}) does not fit a {h}x{w} image")
    m[:] = True
    m[:, top: top + height, left: left + width] = False
    return m


def center(x) -> torch.Tensor:
    """Generate the central box of half the height and width."""
    c, h, w = _shape(x)
    return box(x, h // 4, w // 4, h // 2, w // 2)


def random(x, fraction: float, seed: int = 0, n: int | None = None) -> torch.Tensor:
    """Observe a random `fraction` of pixels (same pixels in every channel), one mask per image."""
    if not 0 <= fraction <= 1:
        raise InputError(f"fraction must be in [0, 1], got {fraction}")
    c, h, w = _shape(x)
    n = n if n is not None else (x.shape[0] if isinstance(x, torch.Tensor) and x.dim() == 4 else 1)
    g = torch.Generator().manual_seed(check_seed(seed))
    keep = torch.rand(n, h * w, generator=g).argsort(1) < math.floor(fraction * h * w)
    return keep.view(n, 1, h, w).expand(n, c, h, w).clone()


BUILDERS = {
    "top-half": top_half, "bottom-half": bottom_half, "left-half": left_half, "right-half": right_half,
    "center": center,
}


def parse_mask(spec: str, x: torch.Tensor) -> torch.Tensor:
    """A mask from a CLI spec: top-half, bottom-half, left-half, right-half, center, first:K, random:F[:SEED],
    box:TOP,LEFT,H,W (the grammar: `zoo.mask_specs`, which the CLI checks before torch is imported)."""
    name, args = split_spec(spec)
    try:
        if name in BUILDERS:
            return BUILDERS[name](x)
        if name == "first":
            return first_k(x, *args)
        if name == "random":
            return random(x, args[0], args[1])
        return box(x, *args)
    except InputError:
        raise  # a known mask with a bad argument: its own message says what is wrong
    except (ValueError, OverflowError, RuntimeError):  # a seed torch cannot take
        raise InputError(f"mask '{spec}': a number is out of range ({', '.join(map(str, args))})") from None
