"""The Model interface: an autoregressive distribution over a tokenizer's tokens.

A family implements `logits_all` (the logits of every token given its predecessors, one teacher-forced pass).
From it the core derives the exact `log_prob_tokens`, the per-position `conditionals` and the naive reference
stepper that every cached stepper must match. A family may override `log_prob_tokens` (exact, nats per image),
`generation_steps` (its order, and which completion masks it accepts), `stepper` (its cached generation pass),
`training_loss`, and declare its log_prob options as an `Options` dataclass. Sampling, completion and
validation are written here once. See CONTRIBUTING.md, "The plugin contract".
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import os
import typing
import warnings
from typing import Any

import torch
from torch import nn

from .errors import InputError
from . import completion
from .logits import Guidance, LogitProcessor
from .settings import UNSET, SamplingSettings
from .sampling import FullRecomputeStepper, Sampler, Stepper, as_steps
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


def plain_config(value: Any) -> Any:
    """A config value as a card stores it: tuples become lists (TOML has no tuples), recursively."""
    if isinstance(value, (list, tuple)):
        return [plain_config(v) for v in value]
    if isinstance(value, dict):
        return {k: plain_config(v) for k, v in value.items()}
    return value


def record_config(cls: type) -> None:
    """Wrap cls.__init__ so that the outermost constructor call records its arguments, defaults included, as
    `self.config` (the one config mechanism: a model is re-created with `create(arch, **model.config)`)."""
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_zoo_records_config", False):
        return
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        depth = self.__dict__.get("_zoo_init_depth", 0)
        self.__dict__["_zoo_init_depth"] = depth + 1
        try:
            init(self, *args, **kwargs)
        finally:
            self.__dict__["_zoo_init_depth"] = depth
        if depth == 0:
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            config: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:
                kind = sig.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(value)
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    config[name] = value
            self.__dict__["config"] = plain_config(config)

    __init__._zoo_records_config = True  # type: ignore[attr-defined]
    cls.__init__ = __init__  # type: ignore[method-assign]


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _matches(value: Any, tp: Any) -> bool:
    """Whether a value fits a simple annotation: int, float, str, bool, None, unions and Literal of those."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        return any(_matches(value, a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if tp is type(None) or tp is None:
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def describe_options(options: type | None) -> list[tuple[str, str, Any, str]]:
    """(name, type, default, help) of each field of a family's Options dataclass (help from field metadata)."""
    if options is None:
        return []
    hints = typing.get_type_hints(options)
    out = []
    for f in dataclasses.fields(options):
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append((f.name, _type_name(hints.get(f.name, Any)), default, f.metadata.get("help", "")))
    return out


def check_options(options: type | None, given: dict[str, Any], owner: str) -> dict[str, Any]:
    """Validate log_prob options against a family's Options dataclass: known names, values of the declared
    types. Returns the given options (the family's defaults fill the rest)."""
    fields = describe_options(options)
    known = {name: tp for name, tp, _, _ in fields}
    unknown = sorted(set(given) - set(known))
    if unknown:
        takes = ", ".join(f"{n} ({t})" for n, t, _, _ in fields) or "none"
        raise InputError(f"unknown log_prob option(s) {unknown} for {owner}; it takes {takes}")
    hints = typing.get_type_hints(options) if options is not None else {}
    for name, value in given.items():
        if not _matches(value, hints.get(name, Any)):
            raise InputError(f"log_prob option {name}={value!r} for {owner} must be {known[name]}, "
                             f"got {type(value).__name__}")
    return dict(given)


def deprecated(cls: type, message: str) -> None:
    """A DeprecationWarning naming the family and the new call (the 0.x compatibility path of the contract)."""
    warnings.warn(f"{cls.__module__}.{cls.__qualname__}: {message}", DeprecationWarning, stacklevel=3)


class _GuidedReference(FullRecomputeStepper):
    """The naive reference with classifier-free guidance: the class and the null-class logits of the whole
    sequence at every step, guided with the step's scale (`Guidance`, its ramp included)."""

    def __init__(self, cond: Any, uncond: Any, guidance: Guidance, order: Any, n: int, num_tokens: int,
                 device: torch.device | str) -> None:
        super().__init__(cond, order, n, num_tokens, device)
        self.uncond, self.guidance = uncond, guidance

    def logits(self, t: int) -> torch.Tensor:
        pos = self.steps[t].to(self.tokens.device)
        return self.guidance.guide(self.logits_all(self.tokens)[:, pos], self.uncond(self.tokens)[:, pos], t,
                                   self.num_steps)


class Trainable(nn.Module):
    """What a card can describe and `zoo train` can fit: a model or a learned tokenizer. The core records the
    constructor's arguments (defaults included) as `config`, so it is re-created with `zoo.create(name, **config)`."""

    image_shape: tuple[int, int, int]
    num_classes: int = 0
    #: the card it was loaded from (None for an untrained `zoo.create` one)
    card: Any = None
    #: set when `zoo.load(..., weights=PATH)` loaded a file that is not the card's (sha256 differs): says whose
    #: weights these are; every output made from the model should carry it ("" for verified weights)
    weights_note: str = ""
    #: the constructor's arguments, defaults included, recorded by the core when it is built (never set by hand)
    config: dict[str, Any]
    #: True for a Model (it samples), False for a LearnedTokenizer (it encodes and decodes)
    generative: bool = True
    #: the name and unit of the figure the training engine validates on (lower is better)
    val_metric: tuple[str, str] = ("val_nll", "nats/image")
    #: names (shell-style patterns, as `named_buffers` gives them) of buffers that hold learned values (running
    #: statistics, an EMA codebook): `zoo.testing` randomises them with the parameters
    learned_buffers: tuple[str, ...] = ()

    @classmethod
    def check_config(cls) -> dict[str, Any] | None:
        """A config small enough for `zoo.testing` to enumerate (vocab ** tokens at most 4096): the project's
        tests check every installed architecture and tokenizer with it. None: the family declares none."""
        return None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        record_config(cls)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean loss of a training batch (a scalar that `zoo train` minimises)."""
        raise NotImplementedError

    def validation_losses(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image validation figure (N,) that training checkpoints on (lower is better)."""
        raise NotImplementedError

    def before_training(self) -> None:
        """Called by `zoo train` on a freshly created model: a family may load pretrained parts here."""

    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters()), torch.empty(0)).device

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def num_dims(self) -> int:
        return math.prod(self.image_shape)


class Model(Trainable):
    """Base class of every zoo model. Subclasses set `tokenizer`, `image_shape` and `num_classes`."""

    tokenizer: Tokenizer
    #: "pixels" when log_prob is a likelihood of the image's pixels, "tokens" when it is of learned codes
    likelihood: str = "pixels"
    #: True when `logits_all(tokens, None)` is the unconditional model (a null class trained with class
    #: dropout), so classifier-free guidance (`cfg`) applies; zoo refuses `cfg` for other families
    guidance: bool = False

    #: the family's log_prob options (a dataclass whose fields are the options, with types and defaults), or
    #: None when log_prob takes none. `zoo eval -o KEY=VALUE` lists and checks them.
    Options: type | None = None
    #: non-empty only for a family whose completion of some masks is a documented approximation (VAR: the paper's
    #: zero-shot scheme; an order-agnostic MADE: another order's network): one sentence saying what it does. The
    #: core then accepts a mask even when the order does not generate its observed tokens first, and
    #: `zoo.testing` checks cached == naive instead of the exact conditional for a mask that is no prefix. Empty
    #: (the default): the core refuses every mask whose observed tokens the order does not generate first
    approximate_completion: str = ""

    @classmethod
    def completes_any_mask(cls, config: dict[str, Any]) -> bool:
        """Whether a model of this family built from `config` accepts every completion mask (exactly, or by its
        `approximate_completion`): refusals name the installed models that do. False by default."""
        return False

    # ---- to implement in a family -------------------------------------------------------------
    def logits_all(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, T, V) of every token of each sequence (N, T) given the tokens before it in the generation
        order (`generation_steps`), in one teacher-forced pass. Everything else can be derived from it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement logits_all(tokens, y=None), which "
                                  "the zoo contract requires since 0.2 (see CONTRIBUTING.md)")

    def log_prob_tokens(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-likelihood in nats of each token sequence (N, T) -> (N,): by default the sum of the
        log-softmax of `logits_all` at the tokens. Override for mixtures or when a cheaper exact form exists."""
        logp = self._logits(tokens, y).float().log_softmax(-1)
        return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(1)

    def _logits(self, tokens: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """logits_all, called without y when there is none (a 0.1 family may define logits_all(tokens))."""
        return self.logits_all(tokens) if y is None else self.logits_all(tokens, y)

    def generation_steps(self, observed_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The token positions each generation step fills, in order: raster, one token per step, by default.
        `observed_mask` (T,) marks tokens a completion will teacher-force: return an order that generates them
        first, or raise an InputError saying which masks the family completes. The default accepts raster
        prefixes (the observed tokens are the first K) and refuses every other mask."""
        if observed_mask is not None and not completion.is_prefix(observed_mask):
            if type(self).generation_steps is Model.generation_steps:
                deprecated(type(self), "keeps zoo's default generation_steps, which before zoo 0.4 accepted every "
                           "completion mask and completed it in raster order, not as the exact conditional; it now "
                           "refuses a mask that is not a raster prefix, like this one. If the family completes "
                           "other masks exactly, override generation_steps(observed_mask) to return an order that "
                           "generates the observed tokens first (CONTRIBUTING.md, 'The plugin contract'). The "
                           "refusal stays; this warning goes in 1.0")
            raise InputError(completion.raster_refusal(self))
        return as_steps(torch.arange(self.tokenizer.num_tokens))

    def completes_exactly(self, observed_mask: torch.Tensor, steps: list[torch.Tensor]) -> bool:
        """Whether completing this (T,) mask in these steps (from `generation_steps`) is the exact conditional of
        the distribution `log_prob` scores: by default, when the steps generate the observed tokens first. A
        family whose order is not the whole story (an order-agnostic MADE reads its network in another order)
        overrides it; a mask it answers False is refused, or completed by `approximate_completion` when the
        caller accepts that."""
        return completion.first_out_of_order(steps, observed_mask) is None

    def completion_steps(self, observed_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """The steps of a completion with this (T,) observed mask, or an InputError when the model cannot complete
        it exactly: `generation_steps(observed_mask)` answers first, then the core refuses an order that does
        not generate the observed tokens first (unless `approximate_completion`). Every completion path asks."""
        return completion.completion_steps(self, observed_mask)

    def stepper(self, n: int, *, y: torch.Tensor | None = None, observed_mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None, cfg: float | None = None) -> Stepper:
        """A fresh generation pass for n images: override with a cached stepper that matches
        `reference_stepper` draw for draw. `cfg` is the classifier-free guidance scale (None: no guidance;
        given only with a class y); `generator` is for a family's own random choices (a mixture component)."""
        return self.reference_stepper(n, y=y, observed_mask=observed_mask, generator=generator, cfg=cfg)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean negative log-likelihood in nats per image of a training batch (override for tricks)."""
        return -self.log_prob(x, y).mean()

    def validation_losses(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Per-image validation figure (N,) that training minimizes and checkpoints on: the NLL by default."""
        return -self.log_prob(x, y)

    # ---- written once ---------------------------------------------------------------------------
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

    def reference_stepper(self, n: int, *, y: torch.Tensor | None = None,
                          observed_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
                          cfg: float | None = None) -> Stepper:
        """The naive reference, built by the core: recompute `logits_all` over the whole sequence at every step,
        in the order of `generation_steps`; with a class and `cfg`, guided against the unconditional logits."""
        steps = self.generation_steps(observed_mask)
        if y is not None and cfg is not None:
            return _GuidedReference(lambda t: self._logits(t, y), lambda t: self._logits(t, None), Guidance.of(cfg),
                                    steps, n, self.tokenizer.num_tokens, self.device)
        return FullRecomputeStepper(lambda t: self._logits(t, y), steps, n, self.tokenizer.num_tokens, self.device)

    def _legacy_stepper(self) -> bool:
        """Whether `stepper` has the 0.1 signature (processor=, naive=): still served, with a DeprecationWarning."""
        params = inspect.signature(self.stepper).parameters
        return "naive" in params or "processor" in params

    def make_stepper(self, n: int, *, y: torch.Tensor | None = None, observed_mask: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, processor: LogitProcessor | None = None,
                     naive: bool = False) -> Stepper:
        """The stepper the sampler drives: the family's cached one, or the core's naive reference. A completion
        mask the model cannot complete exactly is refused first (`completion_steps`), on both paths."""
        if observed_mask is not None:
            self.completion_steps(observed_mask)
        return self._build_stepper(n, y=y, observed_mask=observed_mask, generator=generator, processor=processor,
                                   naive=naive)

    def _build_stepper(self, n: int, *, y: torch.Tensor | None = None, observed_mask: torch.Tensor | None = None,
                       generator: torch.Generator | None = None, processor: LogitProcessor | None = None,
                       naive: bool = False) -> Stepper:
        """The family's cached stepper or the naive reference, built as asked, without the core's completion
        decision (`make_stepper` takes it first): for `zoo.testing`, which holds a family's own steppers to its
        `generation_steps`."""
        processor = processor or LogitProcessor()
        # the guidance scale as a float that also carries its ramp over the steps (zoo.logits.Guidance)
        guided = y is not None and processor.cfg is not None
        cfg = Guidance(processor.cfg, processor.cfg_schedule) if guided else None
        if self._legacy_stepper():
            deprecated(type(self), "stepper(n, *, y, observed_mask, generator, processor, naive) is the zoo 0.1 "
                       "contract; implement logits_all(tokens, y=None) and stepper(n, *, y=None, "
                       "observed_mask=None, generator=None, cfg=None): zoo builds the naive reference "
                       "(Model.reference_stepper). The old signature works through 0.x")
            return self.stepper(n, y=y, observed_mask=observed_mask, generator=generator, processor=processor,
                                naive=naive)
        make = self.reference_stepper if naive else self.stepper
        return make(n, y=y, observed_mask=observed_mask, generator=generator, cfg=cfg)

    def _log_prob_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Check log_prob options against the family's Options (or, for a 0.1 family, its signature)."""
        owner = type(self).__name__
        if self.Options is not None or not kwargs:
            return check_options(self.Options, kwargs, owner)
        params = inspect.signature(self.log_prob_tokens).parameters
        known = [k for k, p in params.items()
                 if k not in ("tokens", "y") and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if known:
            deprecated(type(self), f"log_prob options {known} are read from log_prob_tokens' signature; declare "
                       "them as a dataclass `Options` on the model class (zoo 0.2). The signature works through 0.x")
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise InputError(f"unknown log_prob option(s) {unknown} for {owner}; it takes {known or 'none'}")
        return kwargs

    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        """Exact log-likelihood in nats of each image in x (N, C, H, W), float in [0, 1]. Keyword options are
        the family's `Options` (e.g. MADE's masks=1)."""
        self._require_generative("compute a likelihood")
        tokens = self.tokenizer.encode(check_images(x, self.image_shape).to(self.device))
        y = self._labels(y, tokens.shape[0])
        if not kwargs:
            return self.log_prob_tokens(tokens, y)
        kwargs = self._log_prob_options(kwargs)
        try:
            return self.log_prob_tokens(tokens, y, **kwargs)
        except (TypeError, ValueError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"bad log_prob option(s) {kwargs} for {type(self).__name__}: {e}") from None

    def conditionals_tokens(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probabilities (N, T) of each token given the tokens before it, in generation order (column i is
        the i-th position of `torch.cat(generation_steps())`). They sum to `log_prob_tokens`."""
        logp = self._logits(tokens, y).float().log_softmax(-1)
        per = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return per[:, torch.cat(self.generation_steps()).to(per.device)]

    @torch.no_grad()
    def conditionals(self, x: torch.Tensor, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """Log-probabilities in nats (N, T) of every token of each image given its predecessors, in generation
        order: row sums equal `log_prob(x)`. For analysis (where a model is surprised) and for tests."""
        self._require_generative("compute conditionals")
        tokens = self.tokenizer.encode(check_images(x, self.image_shape).to(self.device))
        return self.conditionals_tokens(tokens, self._labels(y, tokens.shape[0]))

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
        if processor.cfg is not None and not self.guidance and not self._legacy_stepper():
            raise InputError(f"{type(self).__name__} has no unconditional (null-class) model, so classifier-free "
                             "guidance does not apply; drop cfg (use a VAR model for guided sampling)")
        if processor.cfg is not None and y is None and self.num_classes:
            # guidance needs a class: draw one per image, as the VAR reference sampler does
            y = torch.randint(self.num_classes, (n,), generator=generator, device=generator.device).to(self.device)
        stepper = self.make_stepper(n, y=y, observed_mask=shared_mask, generator=generator,
                                    processor=processor, naive=naive)
        return Sampler(processor).run(stepper, n, self.tokenizer.num_tokens, generator=generator,
                                      observed=observed, observed_mask=observed_mask, device=self.device)

    @property
    def sampling_preset(self) -> dict[str, Any]:
        """The card's recommended sampling settings ([sampling]; empty for a model without a card or preset)."""
        return dict(getattr(self.card, "sampling", None) or {})

    def sampling_settings(self, n: int, *, generator: torch.Generator, preset: bool = True, temperature: Any = UNSET,
                          top_k: Any = UNSET, top_p: Any = UNSET, cfg: Any = UNSET, cfg_schedule: Any = UNSET,
                          y: Any = UNSET, settings: SamplingSettings | None = None,
                          ) -> tuple[LogitProcessor, torch.Tensor | None]:
        """The logit processor and the classes (n,) or None of one `sample` call: each argument given wins, then
        `settings`' fields, then the card's preset (when `preset`), then the defaults (`SamplingSettings`). y may
        be a class, n classes, "uniform" (one class per image, drawn from `generator`) or "null" (the
        unconditional model)."""
        given = SamplingSettings.from_sample_kwargs(settings, temperature=temperature, top_k=top_k, top_p=top_p,
                                                    cfg=cfg, cfg_schedule=cfg_schedule, y=y)
        if given.classes is None and self.num_classes:
            warnings.warn("sample(y=None) on a class-conditional model is deprecated: pass y='null' for the null "
                          "class (unconditional), or leave y out for the card's preset (classes drawn uniformly "
                          "on the VAR cards)", DeprecationWarning, stacklevel=3)
        source = self.card.id if self.card is not None else "<card>"
        s = given.resolved(SamplingSettings.from_preset(self.sampling_preset, source) if preset else None)
        labels = None
        if s.classes == "uniform":
            if not self.num_classes:
                raise InputError("this model is not class-conditional; 'uniform' classes need one")
            labels = torch.randint(self.num_classes, (n,), generator=generator,
                                   device=generator.device).to(self.device)
        elif s.classes != "null":
            labels = self._labels(s.classes, n)
        return s.processor(), labels

    @torch.no_grad()
    def sample(self, n: int, *, seed: int | None = None, temperature: float = UNSET, top_k: int | None = UNSET,
               top_p: float | None = UNSET, cfg: float | None = UNSET, cfg_schedule: str = UNSET,
               y: torch.Tensor | int | str | None = UNSET, preset: bool = True, batch_size: int = 256,
               naive: bool = False, generator: torch.Generator | None = None, progress: Any = None,
               settings: SamplingSettings | None = None) -> torch.Tensor:
        """Draw n images, float in [0, 1], shape (n, C, H, W). Same seed, same images.

        Settings not given come from the card's sampling preset (`sampling_preset`), else the model's own
        distribution (temperature 1, no top-k/top-p, no guidance); preset=False ignores the preset. y: a class,
        n classes, "uniform" or "null" (the null class); not given: the preset's classes, else the null class.
        cfg = s gives uncond + s * (cond - uncond) (the VAR reference's t is s - 1); cfg_schedule "constant"
        or "linear" (s grows from 1 at the first step to s at the last, as the VAR reference does).
        `settings` (a zoo.SamplingSettings) gives the same settings as one object; a keyword given overrides
        its field."""
        self._require_generative("sample")
        n = self._check_n(n)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        generator = generator or make_generator(seed, self.device)
        processor, labels = self.sampling_settings(n, generator=generator, preset=preset, temperature=temperature,
                                                   top_k=top_k, top_p=top_p, cfg=cfg, cfg_schedule=cfg_schedule,
                                                   y=y, settings=settings)
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
                 naive: bool = False, generator: torch.Generator | None = None,
                 approximate: bool | None = None) -> torch.Tensor:
        """Keep every observed pixel of x (mask True) exactly and sample the rest from the model: the exact
        conditional, or an InputError (before anything is drawn) for a mask the model cannot complete exactly,
        naming the models that can. A family with `approximate_completion` (VAR, an order-agnostic MADE) completes
        other masks by the approximation it names when approximate=True; approximate=False refuses them; None
        (the 0.x default) accepts them with a FutureWarning, and zoo 1.0 will refuse them."""
        with completion.approximation(approximate):
            return self._complete(x, mask, seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, y=y,
                                  naive=naive, generator=generator)

    def _complete(self, x: torch.Tensor, mask: torch.Tensor, *, seed: int | None, temperature: float,
                  top_k: int | None, top_p: float | None, y: torch.Tensor | int | None, naive: bool,
                  generator: torch.Generator | None) -> torch.Tensor:
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
        for g in range(uniq.shape[0]):  # every mask is decided (and warned about) once, before any group is drawn
            self.completion_steps(uniq[g])
        with completion.approximation(True):  # every mask was accepted above (and warned about there, if at all)
            for g in range(uniq.shape[0]):
                rows = (inverse == g).nonzero().flatten()
                out[rows] = self.generate_tokens(
                    len(rows), generator=generator, processor=processor,
                    y=None if labels is None else labels[rows], observed=tokens[rows], observed_mask=flat[rows],
                    naive=naive)
        return torch.where(mask, x, self.tokenizer.decode(out).clamp_(0, 1))


class LearnedTokenizer(Trainable):
    """A tokenizer with weights (the VQ-VAE that VAR builds on), shipped as its own card and trained by
    `zoo train`. It provides `tokenizer` (a zoo.Tokenizer: encode, decode, token_mask) and its training losses;
    it does not sample. Plugins register it under `Plugin.tokenizers`."""

    tokenizer: Tokenizer
    generative = False
    val_metric = ("val_recon_mse", "MSE per pixel in [0, 1]")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] -> tokens (N, T)."""
        return self.tokenizer.encode(images)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens (N, T) -> images (N, C, H, W) in [0, 1]."""
        return self.tokenizer.decode(tokens)

    def _not_generative(self, what: str):
        name = self.card.id if self.card is not None else type(self).__name__
        raise InputError(f"{name} is a tokenizer, not a generative model: it cannot {what}. Use a model built on "
                         "it (see `zoo list`), or its encode/decode methods")

    def sample(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._not_generative("sample")

    def complete(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._not_generative("complete images")

    def log_prob(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._not_generative("compute a likelihood")

    def conditionals(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        self._not_generative("compute conditionals")
