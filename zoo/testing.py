"""The contract test kit: `check_family` runs every promise a zoo family makes on a tiny config.

    from zoo.testing import check_family
    check_family("made")                                   # the architecture's own `check_config`
    check_family(MyModel, {"image_shape": [1, 2, 2]})      # a class and a config of your own

Each check is exact where it can be: the tiny config must have at most `MAX_SEQUENCES` token sequences, so the
distribution is enumerated. The checks: the config round-trips; exact normalisation (the probabilities of every
sequence sum to 1); the conditionals sum to log_prob; causality (a step's conditionals ignore the tokens of that
and later steps); the cached stepper draws the same tokens as the core's naive reference; completion keeps the
observed tokens and, where they come first in the generation order, follows the exact conditional (a chi-squared
test against the enumerated posterior); and a save/load round trip through safetensors. The project's tests run
it over every installed architecture; a plugin's tests should run it over theirs (CONTRIBUTING.md).
"""
from __future__ import annotations

import itertools
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import InputError
from .logits import LogitProcessor
from .model import Model, make_generator

#: the most token sequences (vocab ** T) a check config may have: every one of them is scored
MAX_SEQUENCES = 4096
#: log-probability agreement asked of float32 arithmetic (nats)
ATOL = 1e-4
#: a completion fails the exactness check when its chi-squared p-value is below this
P_VALUE = 1e-4


class ContractError(AssertionError):
    """A family that breaks the plugin contract: the message names the check, the config and what differed."""


@dataclass
class CheckReport:
    """What `check_family` checked (by name) and what it had to skip, with the reason."""

    architecture: str
    config: dict[str, Any]
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        skipped = "".join(f"\n  skipped {k}: {v}" for k, v in self.skipped.items())
        return f"{self.architecture} {self.config}: passed {', '.join(self.passed)}{skipped}"


def all_sequences(vocab: int, length: int) -> torch.Tensor:
    """Every token sequence of a length over a vocabulary, (vocab ** length, length), lexicographic."""
    return torch.tensor(list(itertools.product(range(vocab), repeat=length)), dtype=torch.long).reshape(-1, length)


def _build(architecture: str | type, config: dict[str, Any] | None) -> tuple[Model, str, dict[str, Any]]:
    if isinstance(architecture, str):
        from .api import create
        from .plugins import registry
        reg = registry()
        if architecture not in reg.architectures:
            create(architecture)  # raises the registry's UnknownModelError with suggestions
        cls = reg.architectures[architecture][1]
        name = architecture
    else:
        cls, name = architecture, architecture.__name__
    if config is None:
        config = cls.check_config() if hasattr(cls, "check_config") else None
        if config is None:
            raise InputError(f"{name} declares no check_config(); pass a tiny config with at most "
                             f"{MAX_SEQUENCES} token sequences, e.g. image_shape [1, 2, 2] and 2 levels")
    torch.manual_seed(0)
    model = cls(**config)
    # every weight matrix redrawn at a visible scale: a zero-initialised path (adaLN-zero, a zeroed output
    # layer) would hide a causality leak or a cache that ignores it
    g = torch.Generator().manual_seed(0)
    for p in model.parameters():
        if p.dim() > 1 and p.is_floating_point():
            p.data.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval(), name, dict(config)


def _fail(name: str, config: dict[str, Any], check: str, detail: str) -> ContractError:
    return ContractError(f"{name} {config}: {check}: {detail}")


def _classes(model: Model) -> list[torch.Tensor | None]:
    return [None] + ([torch.tensor(c) for c in range(min(model.num_classes, 2))] if model.num_classes else [])


def _labels(y: torch.Tensor | None, n: int, model: Model) -> torch.Tensor | None:
    return None if y is None else y.expand(n).to(model.device)


def _observed_prefix(model: Model) -> torch.Tensor:
    """A completion mask (T,) observing the first half of the default generation order's steps."""
    steps = model.generation_steps()
    mask = torch.zeros(model.tokenizer.num_tokens, dtype=torch.bool)
    for s in steps[:max(1, len(steps) // 2)]:
        mask[s] = True
    return mask


def _observed_first(model: Model, mask: torch.Tensor) -> bool:
    """Whether the family's order for this mask generates every observed token before any hidden one."""
    order = torch.cat(model.generation_steps(mask))
    k = int(mask.sum())
    return bool(mask[order][:k].all())


def _chi2_pvalue(observed: torch.Tensor, expected: torch.Tensor) -> tuple[float, int, float]:
    """Pearson's chi-squared of counts against expected counts, pooling cells expected below 5."""
    small = expected < 5
    obs = torch.cat([observed[~small], observed[small].sum().reshape(1)]) if small.any() else observed
    exp = torch.cat([expected[~small], expected[small].sum().reshape(1)]) if small.any() else expected
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    stat = float(((obs - exp) ** 2 / exp).sum())
    dof = max(1, len(exp) - 1)
    p = float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                      torch.tensor(stat / 2, dtype=torch.float64)))
    return stat, dof, p


@torch.no_grad()
def check_family(architecture: str | type, config: dict[str, Any] | None = None, *,
                 samples: int = 4000, seed: int = 0, exact_completion: bool | None = None) -> CheckReport:
    """Run the plugin contract on a tiny model of a family; raise ContractError naming the first broken promise.

    `architecture` is a registered name or a zoo.Model subclass; `config` defaults to the class's
    `check_config()`. `samples` completions are drawn for the exactness test. `exact_completion` None checks
    the exact conditional wherever the family's order puts the observed tokens first; False skips it.
    """
    model, name, config = _build(architecture, config)
    report = CheckReport(name, config)
    fail = lambda check, detail: _fail(name, config, check, detail)  # noqa: E731
    V, T = model.tokenizer.vocab_size, model.tokenizer.num_tokens
    if V ** T > MAX_SEQUENCES:
        raise InputError(f"{name} {config}: {V}^{T} token sequences is more than the {MAX_SEQUENCES} the checks "
                         "enumerate; pass a smaller config (fewer pixels, fewer levels or codes)")

    # the config: recorded with its defaults, and enough to build the same model again
    again = type(model)(**model.config)
    if again.config != model.config:
        raise fail("config", f"re-creating from model.config gives config {again.config}, not {model.config}")
    report.passed.append("config")

    # exact normalisation, and conditionals that add up to log_prob
    every = all_sequences(V, T).to(model.device)
    for y in _classes(model):
        yy = _labels(y, len(every), model)
        logp = model.log_prob_tokens(every, yy).double()
        total = float(torch.logsumexp(logp, 0))
        if abs(total) > ATOL:
            raise fail("normalisation", f"the {len(every)} sequences' probabilities sum to {math.exp(total):.6f} "
                       f"(log {total:.2e}), class {y}; log_prob_tokens must be exact")
        cond = model.conditionals_tokens(every, yy).double()
        if cond.shape != (len(every), T):
            raise fail("conditionals", f"shape {tuple(cond.shape)}, expected {(len(every), T)}")
        gap = float((cond.sum(1) - logp).abs().max())
        if gap > ATOL:
            raise fail("conditionals", f"rows sum to log_prob only within {gap:.2e} nats (class {y})")
    report.passed += ["normalisation", "conditionals"]

    # causality: the conditional of a token does not move when tokens after it (later steps, or the other
    # tokens of its own step) change; column j of the conditionals is the j-th position in generation order
    steps = model.generation_steps()
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(V, (8, T), generator=g).to(model.device)
    base = model.conditionals_tokens(a)
    start = 0
    for i, pos in enumerate(steps):
        pos = pos.to(model.device)
        for j, p in enumerate(pos.tolist()):
            change = torch.cat([pos[pos != p], *[s.to(model.device) for s in steps[i + 1:]]])
            if not len(change):
                continue
            b = a.clone()
            b[:, change] = torch.randint(V, (8, len(change)), generator=g).to(model.device)
            moved = float((model.conditionals_tokens(b)[:, start + j] - base[:, start + j]).abs().max())
            if moved > ATOL:
                raise fail("causality", f"the conditional of position {p} (step {i}) changes by {moved:.2e} nats "
                           "when only tokens generated with or after it change")
        start += len(pos)
    report.passed.append("causality")

    # the cached stepper draws what the naive reference draws, token for token
    processors = [LogitProcessor(), LogitProcessor(temperature=0.7, top_k=max(1, V - 1))]
    runs = [(None, p) for p in processors]
    if model.num_classes:
        runs.append((torch.tensor(1 % model.num_classes), LogitProcessor()))
    if model.guidance:
        runs += [(torch.tensor(0), LogitProcessor(cfg=2.0)), (None, LogitProcessor(cfg=2.0))]
    n = 64
    for y, proc in runs:
        yy = _labels(y, n, model)
        fast = model.generate_tokens(n, generator=make_generator(seed), processor=proc, y=yy)
        slow = model.generate_tokens(n, generator=make_generator(seed), processor=proc, y=yy, naive=True)
        if not torch.equal(fast, slow):
            rows = int((fast != slow).any(1).sum())
            raise fail("cached == naive", f"{rows} of {n} sequences differ ({proc}, class {y})")
    report.passed.append("cached == naive")

    # completion keeps the observed tokens and, where they come first, is the exact conditional
    mask = _observed_prefix(model)
    x0 = model.generate_tokens(1, generator=make_generator(seed + 1), processor=LogitProcessor())
    observed = x0.expand(samples, T).clone()
    flat = mask.expand(samples, T).to(model.device)
    out = model.generate_tokens(samples, generator=make_generator(seed + 2), processor=LogitProcessor(),
                                observed=observed, observed_mask=flat)
    if not torch.equal(out[flat], observed[flat]):
        raise fail("completion", "an observed token was changed")
    out_naive = model.generate_tokens(samples, generator=make_generator(seed + 2), processor=LogitProcessor(),
                                      observed=observed, observed_mask=flat, naive=True)
    if not torch.equal(out, out_naive):
        raise fail("completion", "cached and naive completions differ")
    report.passed.append("completion keeps observed")
    if exact_completion is False:
        report.skipped["exact completion"] = "exact_completion=False"
    elif not _observed_first(model, mask):
        report.skipped["exact completion"] = "the family's order does not put the observed tokens first"
    else:
        hidden = (~mask).nonzero().flatten()
        cand = all_sequences(V, len(hidden)).to(model.device)
        full = x0.expand(len(cand), T).clone()
        full[:, hidden] = cand
        post = model.log_prob_tokens(full).double().softmax(0)
        idx = (out[:, hidden] * (V ** torch.arange(len(hidden) - 1, -1, -1, device=out.device))).sum(1)
        counts = torch.bincount(idx, minlength=len(cand)).double()
        stat, dof, p = _chi2_pvalue(counts.cpu(), (post * samples).cpu())
        if p < P_VALUE:
            tv = float((counts / samples - post).abs().sum() / 2)
            raise fail("exact completion", f"{samples} completions differ from the exact conditional: chi2 "
                       f"{stat:.1f} on {dof} dof (p = {p:.1e}), total variation {tv:.3f}")
        report.passed.append("exact completion")

    # save / load round trip through safetensors, strictly
    from .weights import load_into, load_weights, save_weights
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        save_weights(model.state_dict(), path)
        torch.manual_seed(seed + 123)  # a different initialisation, which the weights must overwrite
        loaded = type(model)(**model.config).eval()
        load_into(loaded, load_weights(path), str(path))
    if not torch.equal(loaded.log_prob_tokens(every), model.log_prob_tokens(every)):
        raise fail("save/load", "log_prob_tokens changes after a safetensors round trip")
    if not torch.equal(loaded.generate_tokens(8, generator=make_generator(seed), processor=LogitProcessor()),
                       model.generate_tokens(8, generator=make_generator(seed), processor=LogitProcessor())):
        raise fail("save/load", "samples change after a safetensors round trip")
    report.passed.append("save/load")
    return report


@torch.no_grad()
def check_tokenizer(architecture: str | type, config: dict[str, Any] | None = None, *, seed: int = 0) -> CheckReport:
    """Run the contract of a learned tokenizer (zoo.LearnedTokenizer) on a small config: the config round-trips;
    encode gives (N, T) tokens in [0, vocab); decode gives images of the right shape; token_mask marks (N, T);
    a save/load round trip keeps encode and decode."""
    model, name, config = _build(architecture, config)
    report = CheckReport(name, config)
    fail = lambda check, detail: _fail(name, config, check, detail)  # noqa: E731
    again = type(model)(**model.config)
    if again.config != model.config:
        raise fail("config", f"re-creating from model.config gives config {again.config}, not {model.config}")
    report.passed.append("config")
    tok, shape = model.tokenizer, tuple(model.image_shape)
    x = torch.rand((4, *shape), generator=torch.Generator().manual_seed(seed)).to(model.device)
    tokens = model.encode(x)
    if tokens.shape != (4, tok.num_tokens) or tokens.dtype != torch.long:
        raise fail("encode", f"tokens {tuple(tokens.shape)} {tokens.dtype}, expected (4, {tok.num_tokens}) long")
    if int(tokens.min()) < 0 or int(tokens.max()) >= tok.vocab_size:
        raise fail("encode", f"tokens outside [0, {tok.vocab_size})")
    images = model.decode(tokens)
    if tuple(images.shape) != (4, *shape):
        raise fail("decode", f"images {tuple(images.shape)}, expected {(4, *shape)}")
    if tuple(tok.token_mask(torch.ones((4, *shape), dtype=torch.bool)).shape) != (4, tok.num_tokens):
        raise fail("token_mask", "a pixel mask must map to a (N, T) token mask")
    report.passed += ["encode", "decode", "token_mask"]
    from .weights import load_into, load_weights, save_weights
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.safetensors"
        save_weights(model.state_dict(), path)
        torch.manual_seed(seed + 123)
        loaded = type(model)(**model.config).eval()
        load_into(loaded, load_weights(path), str(path))
    if not (torch.equal(loaded.encode(x), tokens) and torch.equal(loaded.decode(tokens), images)):
        raise fail("save/load", "encode or decode changes after a safetensors round trip")
    report.passed.append("save/load")
    return report


__all__ = ["CheckReport", "ContractError", "MAX_SEQUENCES", "all_sequences", "check_family", "check_tokenizer"]
