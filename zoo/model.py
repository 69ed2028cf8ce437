"""The Model interface: an autoregressive distribution over a tokenizer's tokens.

A family implements `log_prob_tokens` (exact, nats per image), `stepper` (its generation order and cache)
and optionally `training_loss`. Sampling, completion and validation are written here once.
"""
from __future__ import annotations

import inspect
import math
import os
import warnings
from typing import Any

import torch
from torch import nn

from .errors import InputError
from . import presets
from .logits import LogitProcessor
from .presets import UNSET
from .sampling import Sampler, Stepper
from .tokenizers import Tokenizer, check_images

MAX_SAMPLES = 1_000_000
#: the share of the device's available memory that one call's result may take
MEMORY_FRACTION = 0.5


def check_seed(seed: Any) -> int:
    """A seed torch accepts: an integer in [-2**63, 2**64); anything else is an InputError."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not -2**63 <= seed < 2**64:
        raise InputError(f"a seed must be an integer in [-2**63, 2**64), got {seed!r}")
    return seed


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator on `device`, seeded with `seed` (a fresh random seed when None)."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(check_seed(seed))
    return g


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes of memory free for new tensors on a device (None when it cannot be told)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


class Model(nn.Module):
    """Base class of every zoo model. Subclasses set `tokenizer`, `image_shape` and `num_classes`."""

    tokenizer: Tokenizer
    image_shape: tuple[int, int, int]
    num_classes: int = 0
    #: the card the model was loaded from (None for an untrained `zoo.create` model)
    card: Any = None
    #: set when `zoo.load(..., weights=PATH)` loaded a file that is not the card's (sha256 differs): says whose
    #: weights these are; every output made from the model should carry it ("" for verified weights)
    weights_note: str = ""
    #: the constructor config, so that the model can be saved and re-created
    config: dict[str, Any]
    #: False for a learned tokenizer shipped as its own card (it encodes/decodes, it does not sample)
    generative: bool = True
    #: "pixels" when log_prob is a likelihood of the image's pixels, "tokens" when it is of learned codes
    likelihood: str = "pixels"
    #: the name and unit of the figure the training engine validates on (lower is better)
    val_metric: tuple[str, str] = ("val_nll", "nats/image")

    # ---- to implement in a family -------------------------------------------------------------
    def log_prob_tokens(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-likelihood in nats of each token sequence (N, T) -> (N,)."""
        raise NotImplementedError

    def stepper(self, n: int, *, y: torch.Tensor | None = None,
                observed_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
                processor: LogitProcessor | None = None, naive: bool = False) -> Stepper:
        """A fresh generation pass for n images. `observed_mask` (T,) marks tokens that will be
        teacher-forced, so the family can pick an order that puts them first (or refuse the mask)."""
        raise NotImplementedError

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean negative log-likelihood in nats per image of a training batch (override for tricks)."""
        return -self.log_prob(x, y).mean()

    def validation_losses(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image validation figure (N,) that training minimizes and checkpoints on: the NLL by default."""
        return -self.log_prob(x, y)

    def before_training(self) -> None:
        """Called by `zoo train` on a freshly created model: a family may load pretrained parts here."""

    # ---- written once ---------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters()), torch.empty(0)).device

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def num_dims(self) -> int:
        return math.prod(self.image_shape)

    def _labels(self, y: torch.Tensor | int | None, n: int) -> torch.Tensor | None:
        if y is None:
            return None
        if not self.num_classes:
            raise InputError("this model is not class-conditional; do not pass a class")
        y = torch.as_tensor(y, dtype=torch.long, device=self.device)
        if y.dim() == 0:
            y = y.expand(n)
        if y.shape != (n,) or (y < 0).any() or (y >= self.num_classes).any():
            raise InputError(f"classes must be {n} integers in [0, {self.num_classes - 1}]")
        return y

    def _require_generative(self, what: str) -> None:
        if not self.generative:
            name = self.card.id if self.card is not None else type(self).__name__
            raise InputError(f"{name} is a tokenizer, not a generative model: it cannot {what}. Use a model "
                             "built on it (see `zoo list`), or its encode/decode methods")

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Exact log-likelihood in nats of each image in x (N, C, H, W), float in [0, 1]."""
        self._require_generative("compute a likelihood")
        tokens = self.tokenizer.encode(check_images(x, self.image_shape).to(self.device))
        y = self._labels(y, tokens.shape[0])
        if not kwargs:
            return self.log_prob_tokens(tokens, y)
        params = inspect.signature(self.log_prob_tokens).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        known = [k for k, p in params.items()
                 if k not in ("tokens", "y") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(kwargs) - set(known)) if not takes_any else []
        if unknown:
            raise InputError(f"unknown log_prob option(s) {unknown} for {type(self).__name__}; it takes "
                             f"{known or 'none'}")
        try:
            return self.log_prob_tokens(tokens, y, **kwargs)
        except (TypeError, ValueError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"bad log_prob option(s) {kwargs} for {type(self).__name__}: {e}") from None

    def bits_per_dim(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """-log_prob in bits divided by the number of sub-pixels."""
        return -self.log_prob(x, y) / (math.log(2) * self.num_dims)

    def _check_n(self, n: int) -> int:
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
            raise InputError(f"the number of samples must be a positive integer, got {n!r}")
        if n > MAX_SAMPLES:
            raise InputError(f"{n} samples is more than zoo generates in one call ({MAX_SAMPLES}); "
                             "loop over smaller calls")
        return n

    def _check_memory(self, n: int, batch_size: int) -> None:
        """Refuse a call whose result (n float32 images) and batch work would not fit the device's memory."""
        per_image = 4 * self.num_dims  # the float32 result
        need = n * per_image + min(n, batch_size) * self.tokenizer.num_tokens * 8 * 2  # + one batch of tokens
        free = available_memory(self.device)
        if free is not None and need > MEMORY_FRACTION * free:
            fits = max(1, int(MEMORY_FRACTION * free // max(1, per_image + 16 * self.tokenizer.num_tokens)))
            raise InputError(f"{n:,} images of shape {tuple(self.image_shape)} need about {_gib(need)} on "
                             f"{self.device}, more than half of the {_gib(free)} available; sample at most about "
                             f"{fits:,} per call (or save each call's images before the next)")

    @torch.no_grad()
    def generate_tokens(self, n: int, *, generator: torch.Generator, processor: LogitProcessor,
                        y: torch.Tensor | None = None, observed: torch.Tensor | None = None,
                        observed_mask: torch.Tensor | None = None, naive: bool = False) -> torch.Tensor:
        """Run one batch through the family's stepper and the core sampler -> tokens (n, T)."""
        shared_mask = None
        if observed_mask is not None:
            if not bool((observed_mask == observed_mask[:1]).all()):
                raise InputError("a batch given to generate_tokens must share one observed mask")
            shared_mask = observed_mask[0]
        stepper = self.stepper(n, y=y, observed_mask=shared_mask, generator=generator,
                               processor=processor, naive=naive)
        return Sampler(processor).run(stepper, n, self.tokenizer.num_tokens, generator=generator,
                                      observed=observed, observed_mask=observed_mask, device=self.device)

    @property
    def sampling_preset(self) -> dict[str, Any]:
        """The card's recommended sampling settings ([sampling]; empty for a model without a card or preset)."""
        return dict(getattr(self.card, "sampling", None) or {})

    def sampling_settings(self, n: int, *, generator: torch.Generator, preset: bool = True, temperature: Any = UNSET,
                          top_k: Any = UNSET, top_p: Any = UNSET, cfg: Any = UNSET, cfg_schedule: Any = UNSET,
                          y: Any = UNSET) -> tuple[LogitProcessor, torch.Tensor | None]:
        """The logit processor and the classes (n,) or None of one `sample` call: each argument given wins,
        then the card's preset (when `preset`), then the plain defaults. y may be a class, n classes,
        "uniform" (one class per image, drawn from `generator`) or "null" (the unconditional model)."""
        s = presets.resolve(self.sampling_preset if preset else {}, temperature=temperature, top_k=top_k,
                            top_p=top_p, cfg=cfg, cfg_schedule=cfg_schedule)
        classes = s.pop("classes")
        if y is UNSET:
            y = classes
        elif y is None and self.num_classes:
            warnings.warn("sample(y=None) on a class-conditional model is deprecated: pass y='null' for the null "
                          "class (unconditional), or leave y out for the card's preset (classes drawn uniformly "
                          "on the VAR cards)", DeprecationWarning, stacklevel=3)
        labels = None
        if isinstance(y, str):
            if y not in presets.CLASS_CHOICES:
                raise InputError(f"a class must be an integer, {n} integers, 'uniform' or 'null'; got {y!r}")
            if y == "uniform":
                if not self.num_classes:
                    raise InputError("this model is not class-conditional; 'uniform' classes need one")
                labels = torch.randint(self.num_classes, (n,), generator=generator,
                                       device=generator.device).to(self.device)
            elif s["cfg"] is not None:  # the null class has nothing to guide towards
                if cfg is not UNSET:
                    raise InputError("classifier-free guidance needs a class: give a class or 'uniform', not "
                                     "'null', with cfg")
                s["cfg"] = None
        else:
            labels = self._labels(y, n)
        return LogitProcessor(**s), labels

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, temperature: float = UNSET, top_k: int | None = UNSET,
               top_p: float | None = UNSET, cfg: float | None = UNSET, cfg_schedule: str = UNSET,
               y: torch.Tensor | int | str | None = UNSET, preset: bool = True, batch_size: int = 256,
               naive: bool = False, generator: torch.Generator | None = None, progress: Any = None) -> torch.Tensor:
        """Draw n images, float in [0, 1], shape (n, C, H, W). Same seed, same images.

        Settings not given come from the card's sampling preset (`sampling_preset`), else the model's own
        distribution (temperature 1, no top-k/top-p, no guidance); preset=False ignores the preset. y: a class,
        n classes, "uniform" or "null" (the null class); not given: the preset's classes, else the null class.
        cfg = s gives uncond + s * (cond - uncond) (the VAR reference's t is s - 1); cfg_schedule "constant"
        or "linear" (s grows from 1 at the first step to s at the last, as the VAR reference does)."""
        self._require_generative("sample")
        n = self._check_n(n)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        generator = generator or make_generator(seed, self.device)
        processor, labels = self.sampling_settings(n, generator=generator, preset=preset, temperature=temperature,
                                                   top_k=top_k, top_p=top_p, cfg=cfg, cfg_schedule=cfg_schedule,
                                                   y=y)
        self._check_memory(n, batch_size)
        out = torch.empty((n, *self.image_shape), device=self.device)
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            yb = None if labels is None else labels[start:start + b]
            tokens = self.generate_tokens(b, generator=generator, processor=processor, y=yb, naive=naive)
            out[start:start + b] = self.tokenizer.decode(tokens).clamp_(0, 1)
            if progress is not None:
                progress(b)
        return out

    @torch.no_grad()
    def complete(self, x: torch.Tensor, mask: torch.Tensor, *, seed: int | None = None, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, y: torch.Tensor | int | None = None,
                 naive: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Keep every observed pixel of x (mask True) exactly and sample the rest from the model."""
        self._require_generative("complete images")
        x = check_images(x, self.image_shape).to(self.device)
        n = x.shape[0]
        try:
            mask = torch.as_tensor(mask, device=self.device)
        except (TypeError, ValueError, RuntimeError):
            raise InputError(f"a mask must be a bool tensor (True = observed), got {type(mask).__name__}") from None
        if mask.dtype != torch.bool:
            raise InputError(f"a mask must be a bool tensor (True = observed), got dtype {mask.dtype}")
        shape = tuple(self.image_shape)
        if tuple(mask.shape) in (shape, shape[1:]):
            mask = mask.expand(n, *shape)
        elif tuple(mask.shape) == (n, *shape[1:]):
            mask = mask.unsqueeze(1).expand(n, *shape)
        if tuple(mask.shape) != (n, *shape):
            raise InputError(f"the mask has shape {tuple(mask.shape)}; expected {shape[1:]}, {shape} or "
                             f"({n}, {', '.join(map(str, shape))}) for these images")
        # hidden pixels are zeroed before encoding, so no observed token can carry what the mask hides
        tokens = self.tokenizer.encode(torch.where(mask, x, torch.zeros_like(x)))
        flat = self.tokenizer.token_mask(mask)
        processor = LogitProcessor(temperature, top_k, top_p)
        generator = generator or make_generator(seed, self.device)
        labels = self._labels(y, n)
        out = torch.empty_like(tokens)
        # rows that share a mask share a generation order: run each group as one batch
        uniq, inverse = torch.unique(flat, dim=0, return_inverse=True)
        for g in range(uniq.shape[0]):
            rows = (inverse == g).nonzero().flatten()
            out[rows] = self.generate_tokens(
                len(rows), generator=generator, processor=processor,
                y=None if labels is None else labels[rows], observed=tokens[rows], observed_mask=flat[rows],
                naive=naive)
        return torch.where(mask, x, self.tokenizer.decode(out).clamp_(0, 1))
