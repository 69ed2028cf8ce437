"""Image grids: many images in one PNG, optionally in labelled rows (observed | masked | completed)."""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from .errors import InputError


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int = 2,
              pad_value: float = 1.0) -> Image.Image:
    """Tile images (N, C, H, W) in [0, 1] into one PIL image, `nrow` images per row (default: square)."""
    images = images.detach().float().cpu().clamp(0, 1)
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    canvas = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, k = divmod(i, nrow)
        canvas[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + k * (w + pad): pad + k * (w + pad) + w] = images[i]
    arr = (canvas * 255).round().byte().permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def labelled_rows(rows: list[tuple[str, torch.Tensor]], scale: int = 2) -> Image.Image:
    """Stack several image rows, each with a text label on the left (e.g. original / observed / completed)."""
    tiles = [make_grid(imgs, nrow=imgs.shape[0], scale=scale).convert("RGB") for _, imgs in rows]
    label_w = 90
    out = Image.new("RGB", (label_w + max(t.width for t in tiles), sum(t.height for t in tiles)), "white")
    draw = ImageDraw.Draw(out)
    y = 0
    for (label, _), tile in zip(rows, tiles):
        out.paste(tile, (label_w, y))
        draw.text((4, y + tile.height // 2 - 5), label, fill="black")
        y += tile.height
    return out


def captioned(img: Image.Image, text: str, width: int = 100) -> Image.Image:
    """The image with a text band under it (wrapped to `width` characters): a figure that says what it shows,
    e.g. that its model's weights are not the card's."""
    import textwrap
    lines = textwrap.wrap(text, width) or [""]
    band = 12 * len(lines) + 6
    out = Image.new("RGB", (max(img.width, 6 * width + 8), img.height + band), "white")
    out.paste(img.convert("RGB"), (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, img.height + 3 + 12 * i), line, fill=(200, 0, 0))
    return out


def check_output(path: str | Path, extra: tuple[str, ...] = ()) -> Path:
    """Check, before any work, that an image can be written to `path`: an extension PIL writes (or one of
    `extra`, e.g. '.pt') and a folder that exists or can be made and is writable. Creates the folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name such as {path / 'out.png'}")
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if ext not in extra and (fmt is None or fmt not in Image.SAVE):
        raise InputError(f"{path}: cannot write images with the extension '{ext or '(none)'}'; use .png"
                         + "".join(f" or {e}" for e in extra))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{path}: cannot create its folder ({e.strerror or e})") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"{path}: not writable")
    return path


def save_image(img: Image.Image, path: str | Path) -> Path:
    """Save a PIL image, creating parent folders."""
    path = check_output(path)
    try:
        img.save(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot write the image ({e})") from None
    return path


def show_masked(images: torch.Tensor, mask: torch.Tensor, fill: float = 0.5) -> torch.Tensor:
    """The observed part of images, with generated pixels shown as flat grey (a tint for colour)."""
    mask = mask.expand_as(images) if mask.shape != images.shape else mask
    return torch.where(mask.to(images.device), images, torch.full_like(images, fill))
