"""Evaluation, the one home of every figure zoo measures: exact likelihood (`nll`: nats per image, bits per
dimension), sample quality (`fid`, `kid` on Inception features; `cfd` on the features of zoo's own classifier for
the dataset; `class_accuracy` of a class-conditional model), a tokenizer's reconstructions (`reconstruction`,
`recon_fid`) and the training engine's validation figure.

Each evaluation takes a model (or images) and data and returns a result whose `metrics` are the card records
(zoo.records) of its figures, each with the `zoo eval` command that reproduces it. The CLI parses flags, calls
these and prints; a Python user gets the same figures the same way:

    from zoo.evaluate import nll, fid, kid, cfd, class_accuracy
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import torch

from . import distributed as zdist
from .cards import Metric
from .data import ImageData
from .errors import InputError
from .model import Model

#: a progress reporter for evaluations with several phases: (what, total) -> a callback advanced by counts
Tasks = Callable[[str, int], Callable[[int], None]]


def _task(tasks: Tasks | None, what: str, total: int) -> Callable[[int], None] | None:
    return tasks(what, total) if tasks is not None else None


@dataclass(frozen=True)
class NLLResult:
    """Mean negative log-likelihood over n images, with its standard error."""

    nats: float
    stderr: float
    n: int
    dims: int
    #: "pixels", or "tokens" for a likelihood of learned codes (VAR), which has no bits/dim
    likelihood: str = "pixels"
    #: the card record of this figure, with the `zoo eval` command that reproduces it (none for a model without
    #: a card and no `ref`)
    metrics: tuple[Metric, ...] = ()

    @property
    def unit(self) -> str:
        """The unit a card records: nats per image, of pixels or of the tokenizer's codes."""
        return "nats/image (tokens)" if self.likelihood == "tokens" else "nats/image"

    @property
    def bits_per_dim(self) -> float:
        return self.nats / (math.log(2) * self.dims)

    def __str__(self) -> str:
        if self.likelihood == "tokens":
            return (f"{self.nats:.2f} ± {self.stderr:.2f} nats/image (a likelihood of the tokenizer's codes, "
                    f"not of pixels: no bits/dim), n={self.n:,}")
        return (f"{self.nats:.2f} ± {self.stderr:.2f} nats/image ({self.bits_per_dim:.4f} bits/dim), "
                f"n={self.n:,}")


def _ref(model: Model, ref: str | None) -> str | None:
    """How a recorded command names the model: `ref` as given, else its card's id."""
    return ref or (model.card.id if getattr(model, "card", None) is not None else None)


def _data_flag(data: ImageData) -> str | None:
    """The --data name of an image folder's split (None for a named dataset's split)."""
    return data.extra.get("folder_flag")


@torch.no_grad()
def nll(model: Model, data: ImageData, n: int | None = None, batch_size: int = 500,
        progress: Callable[[int], None] | None = None, distributed: bool = False, *, ref: str | None = None,
        **log_prob_kwargs) -> NLLResult:
    """Exact test NLL of `model` on the first n images of `data` (all by default). With distributed=True, inside
    a torch.distributed process group, each rank scores its contiguous share and the per-image values are
    gathered in order, so every rank gets the result of one process (every rank must call it). `ref` names the
    model in the recorded command (default: its card's id); `log_prob_kwargs` are the family's options
    (`masks=1`), recorded as `-o` flags."""
    was_training = model.training
    model.eval()
    total = len(data) if n is None else min(n, len(data))
    lo, hi = zdist.shard(total) if distributed else (0, total)
    values = [torch.zeros(0, dtype=torch.float64)]
    for start in range(lo, hi, batch_size):
        idx = torch.arange(start, min(start + batch_size, hi))
        x, y = data.batch(idx)
        y = y.to(model.device) if model.num_classes else None
        values.append(-model.log_prob(x.to(model.device), y, **log_prob_kwargs).double().cpu())
        if progress is not None:
            progress(len(idx))
    model.train(was_training)
    v = torch.cat(values)
    if distributed:
        v = zdist.gather_cat(v)
    stderr = float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")
    r = NLLResult(float(v.mean()), stderr, len(v), model.num_dims, model.likelihood)
    name = _ref(model, ref)
    if name is None:
        return r
    from .records import eval_command, nll_metric
    cmd = eval_command(name, "nll", n=n, split=data.split, options=log_prob_kwargs, data=_data_flag(data))
    return replace(r, metrics=(nll_metric(name, r, data.split, n, data.describe(), log_prob_kwargs, cmd),))


@torch.no_grad()
def validate(model: Model, data: ImageData, n: int | None = None, batch_size: int = 500,
             distributed: bool = False) -> float:
    """Mean of the model's per-image validation figure (its NLL unless the family says otherwise). With
    distributed=True each rank scores its share and the per-image values are gathered in order (every rank must
    call it), so the figure is the one process's to float rounding."""
    was_training = model.training
    model.eval()
    total = len(data) if n is None else min(n, len(data))
    lo, hi = zdist.shard(total) if distributed else (0, total)
    values = [torch.zeros(0, dtype=torch.float64)]
    for start in range(lo, hi, batch_size):
        x, y = data.batch(torch.arange(start, min(start + batch_size, hi)))
        y = y.to(model.device) if model.num_classes else None
        values.append(model.validation_losses(x.to(model.device), y).double().cpu())
    model.train(was_training)
    v = torch.cat(values)
    if distributed:
        v = zdist.gather_cat(v)
    return float(v.sum()) / max(total, 1)


@dataclass(frozen=True)
class ReconResult:
    """How well a tokenizer reconstructs a split: PSNR of encode->decode and the share of codes used."""

    psnr: float
    mse: float
    codes_used: int
    codebook_size: int
    n: int
    metrics: tuple[Metric, ...] = ()

    @property
    def usage(self) -> float:
        return self.codes_used / self.codebook_size

    def __str__(self) -> str:
        return (f"PSNR {self.psnr:.2f} dB (MSE {self.mse:.5f} on [0, 1] pixels), codebook usage "
                f"{self.codes_used}/{self.codebook_size} ({100 * self.usage:.1f}%), n={self.n:,}")


@torch.no_grad()
def reconstruction(model: Model, data: ImageData, n: int | None = None, batch_size: int = 500,
                   progress: Callable[[int], None] | None = None, *, ref: str | None = None) -> ReconResult:
    """Encode and decode a split with the model's learned tokenizer: PSNR over the split's pixels (from the
    mean MSE) and how many codebook entries the split uses."""
    tok = model.tokenizer
    if not hasattr(tok, "codebook_size"):
        raise InputError(f"{type(model).__name__} has no learned tokenizer to measure (its tokens are pixels)")
    total = len(data) if n is None else min(n, len(data))
    se, used = 0.0, torch.zeros(tok.codebook_size, dtype=torch.bool)
    for start in range(0, total, batch_size):
        x, _ = data.batch(torch.arange(start, min(start + batch_size, total)))
        x = x.to(model.device)
        tokens = tok.encode(x)
        se += float(((tok.decode(tokens).clamp(0, 1) - x) ** 2).double().mean(dim=(1, 2, 3)).sum())
        used[tokens.flatten().unique().cpu()] = True
        if progress is not None:
            progress(len(x))
    mse = se / max(total, 1)
    r = ReconResult(10 * math.log10(1 / max(mse, 1e-12)), mse, int(used.sum()), tok.codebook_size, total)
    name = _ref(model, ref)
    if name is None:
        return r
    from .records import eval_command, recon_metrics
    cmd = eval_command(name, "recon", n=n, split=data.split, data=_data_flag(data))
    return replace(r, metrics=tuple(recon_metrics(r, cmd, data.describe(), data.split)))


@torch.no_grad()
def reconstructions(model: Model, data: ImageData, n: int | None = None, batch_size: int = 500) -> torch.Tensor:
    """decode(encode(x)) of the split's first n images (all by default), clamped to [0, 1] pixels, on the CPU: what
    a generator over the tokenizer's codes could at best reproduce of the data (its FID is the tokenizer's ceiling)."""
    tok = model.tokenizer
    if not hasattr(tok, "codebook_size"):
        raise InputError(f"{type(model).__name__} has no learned tokenizer to measure (its tokens are pixels)")
    total = len(data) if n is None else min(n, len(data))
    out = []
    for start in range(0, total, batch_size):
        x, _ = data.batch(torch.arange(start, min(start + batch_size, total)))
        out.append(tok.decode(tok.encode(x.to(model.device))).clamp(0, 1).cpu())
    return torch.cat(out)


# ---- classifier feature space: cfd and class_accuracy ------------------------------------------------------
@dataclass(frozen=True)
class CFDResult:
    """The classifier Fréchet distance (cfd) of n images against a split, with the real-vs-real floor at the same
    n: n training-split images against the same reference (what a model that draws real images would score). Its
    scale is the classifier's own: compare cfd with cfd, never with FID."""

    value: float
    n: int
    ref_n: int
    floor: float | None
    classifier: str
    source: str
    reference: str
    metrics: tuple[Metric, ...] = ()

    def __str__(self) -> str:
        floor = f", floor {self.floor:.3f} (real vs real at n={self.n:,})" if self.floor is not None else ""
        return f"cfd {self.value:.3f}{floor}, n={self.n:,}  [{self.source} vs {self.reference}]"


def _sample_images(model: Model, n: int, seed: int | None, batch_size: int,
                   progress: Callable[[int], None] | None, **sample_kwargs) -> torch.Tensor:
    return model.sample(n, seed=seed, batch_size=batch_size, progress=progress, **sample_kwargs).cpu()


_REF_FEATURES: dict[tuple, torch.Tensor] = {}


def classifier_features(images: "torch.Tensor | ImageData", dataset: str | None = None,
                        classifier_path=None) -> torch.Tensor:
    """Penultimate features (N, 128, float64) of zoo's classifier for the dataset's family: of float images in
    [0, 1], or of every image of a split (a dynamically binarized split gets one fixed draw, seed 0)."""
    from . import classifier as zclf
    if isinstance(images, ImageData):
        dataset = dataset or images.name
        images, _ = images.batch(torch.arange(len(images)), generator=torch.Generator().manual_seed(0))
    if dataset is None:
        raise InputError("classifier features of an image tensor need the dataset whose classifier scores them "
                         "(dataset='mnist', ...)")
    return zclf.load(dataset, classifier_path).features(images.detach().float().cpu())


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """The Fréchet distance between Gaussians fitted to two feature sets (N, D), as FID computes it."""
    from .fid import Stats, frechet_distance
    sa, sb = Stats.from_features(a.numpy()), Stats.from_features(b.numpy())
    return frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)


def classifier_reference(dataset: str, split: str = "test", data_dir=None, n: int | None = None,
                         classifier_path=None) -> tuple[torch.Tensor, str]:
    """Classifier features of a split's first n images (all by default), computed once per process, and what
    they are of."""
    from .data import load_dataset
    d = load_dataset(dataset, split, data_dir)
    k = len(d) if n is None else min(n, len(d))
    key = (dataset, split, str(data_dir), k, str(classifier_path))
    if key not in _REF_FEATURES:
        x, _ = d.batch(torch.arange(k), generator=torch.Generator().manual_seed(0))
        _REF_FEATURES[key] = classifier_features(x, dataset, classifier_path)
    desc = d.describe() if k == len(d) else f"{d.describe()}; first {k:,}"
    return _REF_FEATURES[key], desc


def cfd(samples: "Model | torch.Tensor", dataset: str | None = None, *, n: int = 10_000, seed: int | None = 0,
        split: str = "test", data_dir=None, floor: bool = True, batch_size: int = 256,
        classifier_path=None, progress: Callable[[int], None] | None = None, ref: str | None = None,
        sampling_flags: str = "", **sample_kwargs) -> CFDResult:
    """Classifier Fréchet distance (not FID): the Fréchet distance between the penultimate features of zoo's
    classifier for the dataset's family, of n images (a model's samples, drawn with `seed` and `sample_kwargs`,
    or an image tensor in [0, 1]) against the whole split; with floor=True, the real-vs-real floor at the same n
    beside it. Seconds for 10,000 images, where Inception takes half an hour."""
    from . import classifier as zclf
    from .records import eval_command, metric
    model = None
    if isinstance(samples, torch.Tensor):
        if dataset is None:
            raise InputError("cfd of an image tensor needs the dataset it is compared with (dataset='mnist', ...)")
        images, source = samples.detach().float().cpu(), f"{len(samples):,} images"
    else:
        model, dataset = samples, dataset or samples.card.dataset
        zclf.family_of(dataset)  # no classifier: refused before any sampling
        n = _positive(n, "n")
        images = _sample_images(model, n, seed, batch_size, progress, **sample_kwargs)
        source = f"{n:,} samples (seed {seed})"
    if len(images) < 2:
        raise InputError(f"cfd needs at least 2 images, got {len(images)}")
    clf = zclf.load(dataset, classifier_path)
    ref_feats, ref_desc = classifier_reference(dataset, split, data_dir, classifier_path=classifier_path)
    value = frechet(clf.features(images), ref_feats)
    low = cfd_floor(dataset, len(images), split, data_dir, classifier_path) if floor else None
    name = _ref(model, ref) if model is not None else None
    metrics = ()
    if name is not None:
        how = sampling_note(model, sample_kwargs)
        floor_note = f"real-vs-real floor {low:.3f} at this n; " if low is not None else ""
        metrics = (metric("cfd", value, "CFD", split, len(images),
                          eval_command(name, "cfd", n=n, split=split, seed=seed, extra=sampling_flags),
                          f"{floor_note}{source} vs {ref_desc}" + (f"; samples: {how}" if how else "")
                          + f"; {clf.describe()}"),)
    return CFDResult(value, len(images), len(ref_feats), low, clf.describe(), source, ref_desc, metrics)


def cfd_floor(dataset: str, n: int, split: str = "test", data_dir=None, classifier_path=None) -> float:
    """cfd of n real images (the training split's first n, or all of it when smaller) against the whole split:
    the figure a model that draws real images would get at this n."""
    real, _ = classifier_reference(dataset, "train", data_dir, n=n, classifier_path=classifier_path)
    ref, _ = classifier_reference(dataset, split, data_dir, classifier_path=classifier_path)
    return frechet(real, ref)


@dataclass(frozen=True)
class ClassAccuracyResult:
    """Share of the images drawn for each class that zoo's classifier assigns to that class."""

    per_class: tuple[float, ...]
    n_per_class: int
    settings: str
    classifier: str
    metrics: tuple[Metric, ...] = ()

    @property
    def value(self) -> float:
        return sum(self.per_class) / len(self.per_class)

    def __str__(self) -> str:
        worst = min(range(len(self.per_class)), key=self.per_class.__getitem__)
        return (f"class accuracy {100 * self.value:.2f}% ({self.n_per_class:,} images per class; worst class {worst}: "
                f"{100 * self.per_class[worst]:.1f}%; {self.settings})")


def class_accuracy(model: Model, n_per_class: int = 100, *, seed: int | None = 0, batch_size: int = 256,
                   classifier_path=None, progress: Callable[[int], None] | None = None, ref: str | None = None,
                   sampling_flags: str = "", **sample_kwargs) -> ClassAccuracyResult:
    """Draw n_per_class images for each class of a class-conditional model and measure the share the classifier
    assigns to the class asked for: measured with guidance (cfg=...) and without, it says whether guidance works."""
    from . import classifier as zclf
    from .records import eval_command, metric
    if not model.num_classes:
        raise InputError(f"{_ref(model, ref) or type(model).__name__} is not class-conditional: class_accuracy "
                         "needs a model with classes")
    n_per_class = _positive(n_per_class, "n_per_class")
    if "y" in sample_kwargs:
        raise InputError("class_accuracy draws every class itself; leave out y (--class)")
    clf = zclf.load(model.card.dataset if model.card else "", classifier_path)
    y = torch.arange(model.num_classes).repeat_interleave(n_per_class)
    images = _sample_images(model, len(y), seed, batch_size, progress, y=y.to(model.device), **sample_kwargs)
    pred = clf.predict(images)
    per = tuple(float((pred[y == c] == c).double().mean()) for c in range(model.num_classes))
    settings = sampling_note(model, {**sample_kwargs, "y": 0})
    settings = settings.split(", ", 1)[1] if ", " in settings else settings  # the class is each in turn
    r = ClassAccuracyResult(per, n_per_class, settings, clf.describe())
    name = _ref(model, ref)
    if name is None:
        return r
    cmd = eval_command(name, "class-accuracy", n=n_per_class * model.num_classes, seed=seed, extra=sampling_flags)
    return replace(r, metrics=(metric("class_accuracy", r.value, "fraction", "samples", len(y), cmd,
                                      f"{n_per_class:,} samples per class judged by {clf.describe()}; {settings}; "
                                      f"worst class {min(range(len(per)), key=per.__getitem__)}: "
                                      f"{min(per):.3f}", digits=4),))


def _positive(n, what: str) -> int:
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise InputError(f"{what} must be a positive integer, got {n!r}")
    return n


# ---- Inception: FID and KID of one sample set, and a tokenizer's reconstruction FID ----------------------------
@dataclass(frozen=True)
class SampleEvaluation:
    """FID and/or KID of one set of n samples against a split, from one Inception pass over the samples, with the
    real-vs-real FID floor at the same n where zoo has measured it (zoo/fid_floors.toml)."""

    fid: "object | None"  # zoo.fid.FIDResult
    kid: "object | None"  # zoo.kid.KIDResult
    n: int
    seed: int | None
    reference: str
    floor: float | None = None
    metrics: tuple[Metric, ...] = ()

    def __str__(self) -> str:
        lines = []
        if self.fid is not None:
            floor = f"; real-vs-real floor at n={self.n:,}: {self.floor:.3f}" if self.floor is not None else ""
            lines.append(f"{self.fid}{floor}  [samples seed {self.seed} vs {self.reference}]")
        if self.kid is not None:
            lines.append(f"{self.kid}  [samples seed {self.seed} vs {self.reference}]")
        return "\n".join(lines)


def sampling_note(model: Model, sample_kwargs: dict) -> str:
    """How a sample set was drawn, for a card: the settings `sample` resolves from these keyword arguments and
    the model's preset (classes, guidance, temperature, top-k/top-p; `SamplingSettings.note`)."""
    from .settings import SamplingSettings
    given = SamplingSettings.from_sample_kwargs(**sample_kwargs)
    return given.note(model.num_classes, model.sampling_preset if sample_kwargs.get("preset", True) else None)


def fid_cost(inception, n: int, data: ImageData, ref_n: int | None, data_dir=None,
             what: str = "samples") -> str:
    """What an FID evaluation is about to do and cost here, said before the work (the reference statistics of a
    whole split are the long part the first time)."""
    from . import fid as zfid
    ref_data = _reference(data)
    cached, count, path = zfid.reference_cached(ref_data, data.split, data_dir, ref_n)
    images = n + (0 if cached else count)
    rate = zfid.images_per_second(inception, tuple(data.image_shape))
    ref = (f"the cached statistics of {count:,} {data.name} {data.split} images ({path})" if cached else
           f"the statistics of {count:,} {data.name} {data.split} images, computed first and cached in {path}")
    return (f"FID: Inception features of {n:,} {what}, against {ref}: {images:,} images at about {rate:.1f} "
            f"images/s here, about {images / rate / 60:.0f} min" + (", plus sampling." if what == "samples" else ".")
            + ("" if cached or ref_n or not isinstance(ref_data, str) else " Use --ref-n N for fewer reference "
               f"images, or precompute them once with `zoo fid-stats {data.name}`."))


def _reference(data: ImageData) -> "str | ImageData":
    """What the FID cache knows a split by: a named dataset's name, or an image folder's split itself."""
    return data if _data_flag(data) is not None or "cache_key" in data.extra else data.name


def _resume_key(model: Model, ref: str | None, seed: int | None, sample_kwargs: dict) -> str | None:
    """The identity of a seeded draw whose statistics may be saved between chunks: the model's weights (by hash),
    seed and sampling settings (not n: a draw of 2,048 is the start of one of 10,000). None when the draw cannot
    be repeated (no seed, no card, several processes). The card's preset is part of it when the draw uses one: a
    preset changed on the same weights (scripts/pick_guidance.py) is another draw."""
    card = getattr(model, "card", None)
    if seed is None or card is None or zdist.world_size() > 1:
        return None
    settings = sorted((k, repr(v.tolist() if isinstance(v, torch.Tensor) else v)) for k, v in sample_kwargs.items())
    key = f"{ref}|{card.sha256}|{seed}|{settings}|{model.device}"
    preset = model.sampling_preset if sample_kwargs.get("preset", True) else {}
    return key + (f"|preset {sorted(preset.items())}" if preset else "")  # (no preset: the key of zoo 0.3)


def _sample_evaluation(model: Model, data: ImageData, n: int, *, want_fid: bool, want_kid: bool, seed: int | None,
                       ref_n: int | None, kid_ref_n: int | None, data_dir, inception, fid_weights, distributed: bool,
                       tasks: Tasks | None, announce: Callable[[str], None] | None, ref: str | None,
                       sampling_flags: str, sample_kwargs: dict) -> SampleEvaluation:
    from . import fid as zfid
    from .floors import known_floors
    from .records import eval_command, metric
    n = _positive(n, "n")
    if kid_ref_n is not None and kid_ref_n < 2:
        raise InputError(f"kid_ref_n must be at least 2, got {kid_ref_n}")
    if ref_n is not None and ref_n < 2:
        raise InputError(f"ref_n must be at least 2 reference images, got {ref_n}")
    net = inception if inception is not None else zfid.load_inception(fid_weights).to(model.device)
    ref_data, split = _reference(data), data.split
    if announce is not None and want_fid and zdist.is_main():
        announce(fid_cost(net, n, data, ref_n, data_dir))
    lo, hi = zdist.shard(n) if distributed else (0, n)
    sampled = _task(tasks, f"sampling {hi - lo:,} images", hi - lo)
    passed = _task(tasks, "Inception features of the samples", hi - lo)
    feats = stats = ref_feats = None
    if want_kid:  # KID needs every feature: one set of features serves KID and FID
        feats = zfid.sample_features(lambda k, s: model.sample(k, seed=s, progress=sampled, **sample_kwargs), n,
                                     net, seed, progress=passed, distributed=distributed)
        if zdist.is_main() or not distributed:
            if isinstance(ref_data, str):
                k = min(kid_ref_n or len(data), len(data))
                ref_feats = zfid.reference_features(ref_data, split, net, data_dir, n=kid_ref_n,
                                                    progress=_task(tasks, f"reference features of {data.name} "
                                                                          f"{split}", k))
            else:
                raise InputError("KID is measured against a named dataset's split; use FID with an image folder")
        if want_fid:
            stats = zfid.Stats.from_features(feats, f"{n:,} samples, seed {seed}")
    else:  # streamed, and with a seed saved between chunks: a killed evaluation resumes where it stopped
        stats = zfid.model_sample_stats(model, n, net, seed, progress=passed, sample_progress=sampled,
                                        distributed=distributed,
                                        resume_key=_resume_key(model, ref, seed, sample_kwargs), **sample_kwargs)
    fid_r = reference = None
    if want_fid:
        k = min(ref_n or len(data), len(data))
        lo, hi = zdist.shard(k) if distributed else (0, k)
        refs = zfid.reference_stats(ref_data, split, net, data_dir, n=ref_n, distributed=distributed,
                                    progress=_task(tasks, f"reference statistics of {data.name} {split}", hi - lo))
        fid_r, reference = zfid.fid(stats, refs), refs.source
    kid_r = None
    if want_kid and ref_feats is not None:
        from .kid import kid as kid_of
        kid_r = kid_of(feats, ref_feats)
        reference = reference or f"{data.describe()}; first {len(ref_feats):,}"
    floor = None
    if isinstance(ref_data, str) and ref_n is None and fid_r is not None:
        entry = known_floors().get((data.name, n))
        floor = entry["value"] if entry else None
    name = _ref(model, ref)
    metrics: list[Metric] = []
    if name is not None and zdist.is_main():
        how = sampling_note(model, sample_kwargs)
        how = f"samples: {how}; " if how else ""
        folder = _data_flag(data)
        if fid_r is not None:
            cmd = eval_command(name, "fid", n=n, split=split, seed=seed, data=folder, ref_n=ref_n,
                               extra=sampling_flags)
            metrics.append(metric("fid", fid_r.value, "FID", split, n, cmd,
                                  f"{n:,} samples vs {reference}; {how}{zfid.PREPROCESSING}"))
        if kid_r is not None:
            cmd = eval_command(name, "kid", n=n, split=split, seed=seed, flags={"--kid-ref-n": kid_ref_n},
                               extra=sampling_flags)
            metrics.append(metric("kid", kid_r.mean, "KID", split, n, cmd,
                                  f"std {kid_r.std:.6f} over {kid_r.subsets} subsets of {kid_r.subset_size:,}; "
                                  f"{n:,} samples vs {data.describe()}; first {len(ref_feats):,}; {how}"
                                  f"{zfid.PREPROCESSING}", digits=6))
    return SampleEvaluation(fid_r, kid_r, n, seed, reference or "", floor, tuple(metrics))


def fid(model: Model, data: ImageData, n: int = 10_000, *, seed: int | None = 0, kid: bool = False,
        ref_n: int | None = None, kid_ref_n: int | None = None, data_dir=None, inception=None, fid_weights=None,
        distributed: bool = False, tasks: Tasks | None = None, announce: Callable[[str], None] | None = None,
        ref: str | None = None, sampling_flags: str = "", **sample_kwargs) -> SampleEvaluation:
    """FID of n samples of `model` (drawn with `seed` and `sample_kwargs`, e.g. temperature=0.9) against the
    split `data` (all of it, or its first ref_n images; its statistics are cached). With kid=True the same
    samples' features also give KID. A seeded single-process evaluation saves its running statistics after every
    chunk, so one killed part-way finishes only the rest when run again. `ref` names the model in the recorded
    command (default its card id); `sampling_flags` are the CLI flags that gave `sample_kwargs`."""
    return _sample_evaluation(model, data, n, want_fid=True, want_kid=kid, seed=seed, ref_n=ref_n,
                              kid_ref_n=kid_ref_n, data_dir=data_dir, inception=inception, fid_weights=fid_weights,
                              distributed=distributed, tasks=tasks, announce=announce, ref=ref,
                              sampling_flags=sampling_flags, sample_kwargs=sample_kwargs)


def kid(model: Model, data: ImageData, n: int = 10_000, *, seed: int | None = 0, fid: bool = False,
        kid_ref_n: int | None = None, data_dir=None, inception=None, fid_weights=None, distributed: bool = False,
        tasks: Tasks | None = None, announce: Callable[[str], None] | None = None, ref: str | None = None,
        sampling_flags: str = "", **sample_kwargs) -> SampleEvaluation:
    """KID (unbiased MMD^2, cubic kernel, mean and std over 100 subsets) of n samples against a named dataset's
    split (its first kid_ref_n images, or all); with fid=True the same features also give FID."""
    return _sample_evaluation(model, data, n, want_fid=fid, want_kid=True, seed=seed, ref_n=None,
                              kid_ref_n=kid_ref_n, data_dir=data_dir, inception=inception, fid_weights=fid_weights,
                              distributed=distributed, tasks=tasks, announce=announce, ref=ref,
                              sampling_flags=sampling_flags, sample_kwargs=sample_kwargs)


@dataclass(frozen=True)
class ReconFIDResult:
    """FID of a tokenizer's reconstructions of a split's first n images against the whole split: the ceiling its
    codes put on a generator's FID."""

    fid: "object"  # zoo.fid.FIDResult
    n: int
    reference: str
    metrics: tuple[Metric, ...] = ()

    def __str__(self) -> str:
        return f"reconstruction {self.fid}  [first {self.n:,} images encoded and decoded, vs {self.reference}]"


def recon_fid(model: Model, data: ImageData, n: int | None = None, *, batch_size: int = 500, data_dir=None,
              inception=None, fid_weights=None, tasks: Tasks | None = None,
              announce: Callable[[str], None] | None = None, ref: str | None = None) -> ReconFIDResult:
    """FID of the model's tokenizer's reconstructions (encode, decode) of the first n images of `data` (all by
    default) against the whole split (VQ-VAE, VAR)."""
    from . import fid as zfid
    from .records import eval_command, metric
    net = inception if inception is not None else zfid.load_inception(fid_weights).to(model.device)
    k = min(n or len(data), len(data))
    if announce is not None:
        announce(fid_cost(net, k, data, None, data_dir, "reconstructions"))
    recon = reconstructions(model, data, n=k, batch_size=batch_size)
    fake = zfid.Stats.from_features(zfid.features(recon, net, progress=_task(
        tasks, "Inception features of the reconstructions", len(recon))),
        f"{len(recon):,} reconstructions of {data.name} {data.split}")
    refs = zfid.reference_stats(_reference(data), data.split, net, data_dir,
                                progress=_task(tasks, f"reference statistics of {data.name} {data.split}", len(data)))
    r = zfid.fid(fake, refs)
    name = _ref(model, ref)
    metrics = ()
    if name is not None:
        cmd = eval_command(name, "recon-fid", n=n, split=data.split, data=_data_flag(data))
        metrics = (metric("recon_fid", r.value, "FID", data.split, len(recon), cmd,
                          f"reconstructions (encode, decode) of the first {len(recon):,} images vs {refs.source}; "
                          f"{zfid.PREPROCESSING}"),)
    return ReconFIDResult(r, len(recon), refs.source, metrics)
