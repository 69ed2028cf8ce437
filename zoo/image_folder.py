"""Any folder of images as training and evaluation data (`zoo train ID --data DIR`, `zoo eval REF --data DIR`).

Layout: images at the top of DIR (unconditional), or one subfolder per class, DIR/<class>/**/image (labels are
the class names in sorted order). Files are .png .jpg .jpeg .bmp .gif .webp .tif .tiff .ppm .pgm .pbm; other
files and hidden names (starting with '.') are skipped.

The fitting rule, stated once (PREPROCESSING): EXIF orientation applied; decoded to 8-bit RGB (alpha dropped,
16-bit scaled to 8); the short side resized to cover the model's H x W (bicubic, PIL), then centre-cropped;
ITU-R 601 luma if the model has one channel; quantized to the model's levels: 256 as is, 2 by the same seeded
Bernoulli rule as mnist-bin (drawn afresh each batch for train, once with seed 1 for the held-out split), any
other L to round(v (L-1) / 255).

Split: an image is held out when the first 8 hex digits of the sha256 of its relative path, read as a fraction
of 16^8, fall below VAL_SHARE; each class keeps at least one image on each side. The rule depends on the path
alone, so adding images never moves another image across the split. There is no third split: the held-out
share is what validation chooses the best epoch on and what `zoo eval --data` reports.

The content hash is the sha256 of every file's relative path and sha256, in sorted order: a figure is tied to
the exact images. Decoded, fitted images are cached under ZOO_FOLDER_CACHE (default ~/.cache/zoo/folders),
keyed by that hash and the target shape, so a second run reads no image file twice (it still hashes them).
"""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .data import VAL_BINARIZATION_SEED, ImageData, binarize, interleave_classes, to_gray
from .errors import DataError, InputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
                            ".pbm"})
VAL_SHARE = 0.1
SPLITS = ("train", "val")
FIT_VERSION = 1  # bump when the fitting rule changes: old cache files are then ignored
PREPROCESSING = ("EXIF orientation applied; 8-bit RGB (alpha dropped, 16-bit scaled); short side resized to cover "
                 "H x W (bicubic), centre-cropped; luma 0.299R+0.587G+0.114B if C = 1")
SPLIT_RULE = (f"held out: images whose relative path's sha256, as a fraction, is below {VAL_SHARE} (at least one "
              "per class on each side); no separate test split")


@dataclass(frozen=True)
class ImageFolder:
    """A scanned image folder: its files (sorted relative paths), labels, classes and content hash."""

    root: Path
    files: tuple[str, ...]
    labels: tuple[int, ...]
    classes: tuple[str, ...]
    sha256: str
    skipped: int = 0

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def conditional(self) -> bool:
        """Whether the folder has class subfolders (labels for a class-conditional model)."""
        return bool(self.classes)

    def held_out(self) -> np.ndarray:
        """Boolean (N,) mask of the held-out images (see the module's split rule)."""
        frac = np.array([int(hashlib.sha256(f.encode("utf-8")).hexdigest()[:8], 16) / 16**8 for f in self.files])
        val = frac < VAL_SHARE
        labels = np.asarray(self.labels)
        for c in np.unique(labels):
            idx = np.nonzero(labels == c)[0]
            if not val[idx].any():
                val[idx[np.argmin(frac[idx])]] = True
            if val[idx].all():
                val[idx[np.argmax(frac[idx])]] = False
        return val

    def describe(self) -> str:
        kind = f"{len(self.classes)} classes" if self.classes else "no classes"
        return f"image folder '{self.name}' ({len(self.files):,} images, {kind}, sha256 {self.sha256[:16]})"


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _images_under(folder: Path) -> tuple[list[Path], int]:
    """Image files under folder (recursive, hidden names skipped) and the number of other files skipped."""
    found, skipped = [], 0
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            p = Path(dirpath) / f
            if _is_image(p):
                found.append(p)
            elif not f.startswith("."):
                skipped += 1
    return found, skipped


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan(folder: str | Path) -> ImageFolder:
    """List and hash an image folder (flat, or one subfolder per class); a clear error for an empty folder, a
    mix of top-level images and class subfolders, a class of one image, or an unreadable file."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: --data must be a folder of images (or of class subfolders of images); "
                        f"{'it is a file' if root.exists() else 'it does not exist'}")
    top = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    top_images = [p for p in top if not p.is_dir() and _is_image(p)]  # a dangling link is named, not skipped
    skipped = sum(1 for p in top if not p.is_dir() and not _is_image(p))
    class_dirs = []
    per_class: list[list[Path]] = []
    for d in (p for p in top if p.is_dir()):
        images, other = _images_under(d)
        skipped += other
        if images:
            class_dirs.append(d.name)
            per_class.append(sorted(images))
    if top_images and class_dirs:
        raise DataError(f"{root}: has {len(top_images)} image(s) at its top level (e.g. {top_images[0].name}) and "
                        f"class subfolders ({', '.join(class_dirs[:5])}); move the top-level images into a class "
                        "subfolder, or the subfolders' images up for unconditional data")
    if not top_images and not class_dirs:
        raise DataError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}, at the top "
                        f"level or in class subfolders{f'; skipped {skipped} other file(s)' if skipped else ''})")
    if class_dirs:
        files = [(p, label) for label, images in enumerate(per_class) for p in images]
    else:
        files = [(p, 0) for p in top_images]
    rel = [p.relative_to(root).as_posix() for p, _ in files]
    counts = np.bincount([label for _, label in files])
    if (counts < 2).any():
        which = [class_dirs[i] if class_dirs else root.name for i in np.nonzero(counts < 2)[0]]
        raise DataError(f"{root}: {', '.join(repr(w) for w in which[:5])} ha{'s' if len(which) == 1 else 've'} "
                        "only one image; each class needs at least 2 (one is held out for validation)")
    h = hashlib.sha256()
    unreadable = []
    for r, (p, _) in zip(rel, files):
        try:
            digest = _file_sha256(p)
        except OSError as e:
            unreadable.append(f"{r} ({e.strerror or e})")
            continue
        h.update(f"{r}\0{digest}\n".encode("utf-8", "surrogateescape"))
    if unreadable:
        raise DataError(_listing(root, "cannot be read", unreadable))
    return ImageFolder(root, tuple(rel), tuple(label for _, label in files), tuple(class_dirs), h.hexdigest(),
                       skipped)


def _listing(root: Path, what: str, items: list[str]) -> str:
    shown = "; ".join(items[:10]) + (f"; and {len(items) - 10} more" if len(items) > 10 else "")
    return (f"{root}: {len(items)} file(s) {what}, so nothing was started: {shown}. Repair or remove them "
            "(or move them out of the folder), then run again")


def _to_rgb(im) -> np.ndarray:
    """A PIL image as (H, W, 3) uint8: EXIF orientation applied, 16-bit scaled to 8, alpha dropped."""
    from PIL import Image, ImageOps
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I") or im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        if im.mode != "F" and (im.mode.startswith("I;16") or a.max(initial=0) > 255):
            a = a / 257.0
        im = Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8), "L")
    return np.asarray(im.convert("RGB"))


def fit_image(rgb: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (C, H, W) uint8 by the stated rule: short side resized to cover H x W (bicubic),
    centre-cropped, luma if C = 1."""
    from PIL import Image
    c, H, W = shape
    h, w = rgb.shape[:2]
    scale = max(H / h, W / w)
    nh, nw = max(H, round(h * scale)), max(W, round(w * scale))
    im = Image.fromarray(rgb)
    if (nh, nw) != (h, w):
        im = im.resize((nw, nh), Image.BICUBIC)
    top, left = (nh - H) // 2, (nw - W) // 2
    out = np.asarray(im.crop((left, top, left + W, top + H))).transpose(2, 0, 1)
    return to_gray(out[None])[0] if c == 1 else np.ascontiguousarray(out)


def cache_dir() -> Path:
    """Where decoded, fitted folders are kept: ZOO_FOLDER_CACHE, else ~/.cache/zoo/folders."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.environ.get("ZOO_FOLDER_CACHE") or Path(cache) / "zoo" / "folders")


def decode(folder: ImageFolder, shape: tuple[int, int, int],
           progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Every image of the folder fitted to `shape`, (N, C, H, W) uint8 in the folder's file order; read from the
    cache when this content and shape were decoded before. Every file is tried before any error: the error
    names each one that cannot be decoded."""
    from PIL import Image
    c, H, W = (int(s) for s in shape)
    if c not in (1, 3):
        raise InputError(f"an image folder can be fitted to 1 (grey) or 3 (RGB) channels; this model has {c}")
    path = cache_dir() / f"{folder.sha256[:32]}-{c}x{H}x{W}-v{FIT_VERSION}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                images = z["images"]
            if images.shape == (len(folder.files), c, H, W) and images.dtype == np.uint8:
                return images
        except Exception:  # a damaged cache file is decoded again, never trusted
            pass
    images = np.zeros((len(folder.files), c, H, W), dtype=np.uint8)
    broken = []
    for i, rel in enumerate(folder.files):
        try:
            with Image.open(folder.root / rel) as im:
                im.load()
                images[i] = fit_image(_to_rgb(im), (c, H, W))
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
            broken.append(f"{rel} ({type(e).__name__}: {e})")
        if progress is not None:
            progress(1)
    if broken:
        raise DataError(_listing(folder.root, "cannot be decoded as images", broken))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, images=images)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the next run a decode
    return images


def quantize(images: torch.Tensor, levels: int) -> torch.Tensor:
    """uint8 images quantized to `levels` evenly spaced values (as uint8): round(v (L-1) / 255) * 255 / (L-1)."""
    if levels >= 256:
        return images
    q = (images.double() * (levels - 1) / 255).round()
    return (q * 255 / (levels - 1)).round().to(torch.uint8)


def slug(name: str) -> str:
    """A folder name as a piece of a model id (lowercase letters, digits, '.', '_', '-')."""
    s = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return s[:40] or "folder"


def load_folder(folder: str | Path | ImageFolder, split: str, image_shape: tuple[int, int, int], levels: int = 256,
                progress: Callable[[int], None] | None = None) -> ImageData:
    """One split (`train`, or `val`: the held-out share) of an image folder, fitted to a model's image shape and
    quantized to its levels (2 levels: Bernoulli binarization as mnist-bin: dynamic for train, seed 1 held out).
    Scans and decodes the whole folder (cached), so a broken file is an error whichever split is asked for."""
    if split not in SPLITS:
        raise DataError(f"an image folder has the splits train and val (the held-out share); got '{split}'")
    f = folder if isinstance(folder, ImageFolder) else scan(folder)
    images = decode(f, tuple(image_shape), progress)
    held = f.held_out()
    keep = np.nonzero(held if split == "val" else ~held)[0]
    labels = np.asarray(f.labels, dtype=np.int64)[keep]
    order = keep[interleave_classes(labels)]  # classes interleaved: the first n images cover every class
    x = quantize(torch.from_numpy(images[order]), levels)
    y = torch.from_numpy(np.asarray(f.labels, dtype=np.int64)[order])
    note = "train share" if split == "train" else f"held-out share ({VAL_SHARE:.0%} by path hash)"
    prep, dynamic = f"8-bit, {note}", False
    if levels == 2:
        if split == "train":
            prep, dynamic = f"dynamic Bernoulli binarization, {note}", True
        else:
            x = (binarize(x.float() / 255.0, seed=VAL_BINARIZATION_SEED) * 255).to(torch.uint8)
            prep = f"fixed Bernoulli binarization (seed {VAL_BINARIZATION_SEED}), {note}"
    elif levels < 256:
        prep = f"quantized to {levels} levels, {note}"
    data = ImageData(f"folder:{f.name}", split, f"image folder '{f.name}' sha256 {f.sha256[:16]}", x, y,
                     f.classes or ("all",), prep, dynamic,
                     extra={"folder": f, "cache_key": f"folder-{f.sha256[:32]}-{'x'.join(map(str, image_shape))}"
                                                      f"-L{levels}-{split}"})
    return data


def model_split(model, folder: str | Path, split: str = "val") -> ImageData:
    """A folder's split fitted to a loaded model (its image shape and levels) for `zoo eval --data`: a
    class-conditional model needs as many class subfolders as it has classes (the same names, if its card
    lists them). A note is printed when the folder's content differs from the one the card was trained on."""
    import warnings

    from .datasets import FOLDER_DATASET
    f = scan(folder)
    card = getattr(model, "card", None)
    trained = card.data if card is not None and card.dataset == FOLDER_DATASET else {}
    if model.num_classes:
        names = trained.get("classes")
        if len(f.classes) != model.num_classes or (names and list(f.classes) != list(names)):
            want = f"the classes {', '.join(names)}" if names else f"{model.num_classes} classes"
            raise DataError(f"{f.root}: this model is class-conditional with {want}; the folder has "
                            f"{', '.join(f.classes) or 'no class subfolders'}. Give it one subfolder per class, "
                            "named as in training")
    if trained.get("content_sha256") and trained["content_sha256"] != f.sha256:
        warnings.warn(f"{f.root}: its content (sha256 {f.sha256[:16]}) differs from the folder the model was "
                      f"trained on ({trained.get('folder')}, sha256 {trained['content_sha256'][:16]}): the held-out "
                      "share may not be the one held out in training", stacklevel=2)
    levels = int(getattr(model.tokenizer, "levels", 256))
    return load_folder(f, split, tuple(int(s) for s in model.image_shape), levels)
