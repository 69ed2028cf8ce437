"""The contract test kit: `check_family` runs every promise a zoo family makes on a tiny config.

    from zoo.testing import check_family
    check_family("made")                                   # the architecture's own `check_config`
    check_family(MyModel, {"image_shape": [1, 2, 2]})      # a class and a config of your own

Each check is exact where it can be: the tiny config must have at most `MAX_SEQUENCES` token sequences, so the
distribution is enumerated. The checks: the config round-trips; exact normalisation (the probabilities of every
sequence sum to 1); the conditionals sum to log_prob; causality (a step's conditionals ignore the tokens of that
and later steps); the cached stepper gives the naive reference's logits at every step and draws the same tokens;
completion keeps the observed tokens and, where they come first in the generation order, follows the exact
conditional (a chi-squared test against the enumerated posterior); a mask that is not a prefix of the order gets
the same outcome from the cached and the naive path, the exact conditional or the same refusal; and a save/load
round trip through safetensors. Every parameter (biases included) and every buffer the family marks as learned
(`learned_buffers`) is redrawn at a visible scale first. The project's tests run it over every installed
architecture, and tests/test_testing_kit.py over deliberately broken families; a plugin's tests should run it
over theirs (CONTRIBUTING.md).
"""
from __future__ import annotations

import fnmatch
import itertools
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .completion import approximation, first_out_of_order
from .errors import InputError
from .logits import LogitProcessor
from .model import Model, Trainable, make_generator

#: the most token sequences (vocab ** T) a check config may have: every one of them is scored
MAX_SEQUENCES = 4096
#: log-probability agreement asked of float32 arithmetic (nats)
ATOL = 1e-4
#: a completion fails the exactness check when its chi-squared p-value is below this
P_VALUE = 1e-4
#: how far the cached stepper's log-probabilities (nats) or logit gaps may be from the naive reference's at a
#: step: float32 rounding, well below a drift of 1e-3 in one logit (which moves them by at least 5e-4)
LOGIT_ATOL = 1e-4


class ContractError(AssertionError):
    """A family that breaks the plugin contract: the message names the check, the config and what differed."""


@dataclass
class CheckReport:
    """What `check_family` checked (by name) and what it had to skip, with the reason."""

    architecture: str
    config: dict[str, Any]
    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    #: how a passed check passed, where there is more than one way (a non-prefix mask: refused or exact)
    notes: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        skipped = "".join(f"\n  skipped {k}: {v}" for k, v in self.skipped.items())
        notes = "".join(f"\n  {k}: {v}" for k, v in self.notes.items())
        return f"{self.architecture} {self.config}: passed {', '.join(self.passed)}{notes}{skipped}"


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
    randomise(model)
    return model.eval(), name, dict(config)


def randomise(model: Trainable, seed: int = 0) -> None:
    """Redraw every floating-point parameter, biases and other 1-D ones included, and every buffer the family
    marks as learned (`learned_buffers`) from N(0, 0.5^2): a zero-initialised path (a bias, adaLN-zero, a zeroed
    output layer) would hide a causality leak or a cache that ignores it."""
    g = torch.Generator().manual_seed(seed)
    learned = tuple(getattr(model, "learned_buffers", ()))
    tensors = [p for p in model.parameters() if p.is_floating_point()]
    tensors += [b for n, b in model.named_buffers()
                if b.is_floating_point() and any(fnmatch.fnmatchcase(n, pat) for pat in learned)]
    with torch.no_grad():
        for t in tensors:
            t.copy_(torch.randn(t.shape, generator=g) * 0.5)


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
    return first_out_of_order(model.generation_steps(mask), mask) is None


def _non_prefix(model: Model) -> torch.Tensor:
    """A completion mask (T,) that is no prefix of the default generation order: its second half of steps."""
    return ~_observed_prefix(model)


@dataclass
class _Outcome:
    """What a call did: its value, or the message of the InputError it refused with."""

    value: Any = None
    refusal: str | None = None

    def __str__(self) -> str:
        return "accepts it" if self.refusal is None else f"refuses it (InputError: {self.refusal})"


def _outcome(call: Callable[[], Any]) -> _Outcome:
    try:
        return _Outcome(value=call())
    except InputError as e:
        return _Outcome(refusal=str(e))


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


def _posterior_mismatch(model: Model, x0: torch.Tensor, mask: torch.Tensor, out: torch.Tensor) -> str | None:
    """Why completions `out` (N, T) of x0 under a (T,) mask are not draws from the exact conditional, enumerated
    from log_prob_tokens (a chi-squared test); None when they pass."""
    V, T = model.tokenizer.vocab_size, model.tokenizer.num_tokens
    hidden = (~mask).nonzero().flatten()
    cand = all_sequences(V, len(hidden)).to(model.device)
    full = x0.expand(len(cand), T).clone()
    full[:, hidden.to(model.device)] = cand
    post = model.log_prob_tokens(full).double().softmax(0)
    idx = (out[:, hidden.to(out.device)] * (V ** torch.arange(len(hidden) - 1, -1, -1, device=out.device))).sum(1)
    counts = torch.bincount(idx, minlength=len(cand)).double()
    n = len(out)
    stat, dof, p = _chi2_pvalue(counts.cpu(), (post * n).cpu())
    if p >= P_VALUE:
        return None
    tv = float((counts / n - post).abs().sum() / 2)
    return (f"{n} completions differ from the exact conditional: chi2 {stat:.1f} on {dof} dof (p = {p:.1e}), "
            f"total variation {tv:.3f}")


def _runs(model: Model) -> list[tuple[torch.Tensor | None, LogitProcessor]]:
    """The (class, logit processing) pairs the cached stepper is compared under."""
    V = model.tokenizer.vocab_size
    runs = [(None, LogitProcessor()), (None, LogitProcessor(temperature=0.7, top_k=max(1, V - 1)))]
    if model.num_classes:
        runs.append((torch.tensor(1 % model.num_classes), LogitProcessor()))
    if model.guidance:
        runs += [(torch.tensor(0), LogitProcessor(cfg=2.0)), (None, LogitProcessor(cfg=2.0))]
    return runs


def _largest_gap(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want|, where equal values (infinities included) count 0 and a NaN counts as infinite."""
    diff = torch.where(got == want, torch.zeros_like(got), (got - want).abs())
    return float(diff.nan_to_num(nan=math.inf).max()) if diff.numel() else 0.0


def _stepper_mismatch(model: Model, n: int, y: torch.Tensor | None, processor: LogitProcessor, seed: int,
                      gaps: bool) -> str | None:
    """Where the cached stepper's log-probabilities (or, with `gaps`, its `logit_gaps`) leave the naive
    reference's, both driven through the same random tokens; None when they agree at every step."""
    V, T = model.tokenizer.vocab_size, model.tokenizer.num_tokens
    fast = model.make_stepper(n, y=y, generator=make_generator(seed), processor=processor)
    slow = model.make_stepper(n, y=y, generator=make_generator(seed), processor=processor, naive=True)
    if gaps and not callable(getattr(fast, "logit_gaps", None)):
        return None
    if fast.num_steps != slow.num_steps:
        return f"the cached stepper has {fast.num_steps} steps, the naive reference {slow.num_steps}"
    what = "logit gaps l1 - l0" if gaps else "log-probabilities"
    tokens = torch.randint(V, (n, T), generator=torch.Generator().manual_seed(seed + 7)).to(model.device)
    for t in range(slow.num_steps):
        pos = torch.as_tensor(slow.positions(t)).reshape(-1).cpu()
        if not torch.equal(torch.as_tensor(fast.positions(t)).reshape(-1).cpu(), pos):
            return f"at step {t} the cached stepper fills positions {fast.positions(t)}, the naive reference {pos}"
        want = slow.logits(t).double().log_softmax(-1)
        got = fast.logit_gaps(t).double() if gaps else fast.logits(t).double().log_softmax(-1)
        if gaps:
            want = want[..., 1] - want[..., 0]
        if got.shape != want.shape:
            return f"at step {t} its {what} have shape {tuple(got.shape)}, the naive reference's {tuple(want.shape)}"
        worst = _largest_gap(got, want)
        if worst > LOGIT_ATOL:
            return (f"at step {t} (positions {pos.tolist()}) the cached stepper's {what} differ from the naive "
                    f"reference's by up to {worst:.2e} (at most {LOGIT_ATOL:.0e} allowed), class {y}: they must "
                    "agree to float32 rounding, or the two draw differently whenever a uniform falls in between")
        step_tokens = tokens[:, pos.to(tokens.device)]
        slow.advance(t, step_tokens)
        fast.advance(t, step_tokens)
    return None


def _check_cached(model: Model, fail: Callable[[str, str], ContractError], seed: int) -> None:
    """The cached stepper gives the naive reference's logits (and logit gaps) at every step, teacher-forced
    through the same tokens, and draws the same tokens from the same generator."""
    n, compared = 64, set()
    for y, proc in _runs(model):
        key = (None if y is None else int(y), None if y is None else proc.cfg)  # what the logits depend on
        for gaps in ([] if key in compared else [False, True] if model.tokenizer.vocab_size == 2 else [False]):
            problem = _stepper_mismatch(model, 16, _labels(y, 16, model), proc, seed, gaps)
            if problem is not None:
                raise fail("cached == naive", f"{problem} ({proc})")
        compared.add(key)
        yy = _labels(y, n, model)
        fast = model.generate_tokens(n, generator=make_generator(seed), processor=proc, y=yy)
        slow = model.generate_tokens(n, generator=make_generator(seed), processor=proc, y=yy, naive=True)
        if not torch.equal(fast, slow):
            rows = int((fast != slow).any(1).sum())
            raise fail("cached == naive", f"{rows} of {n} sequences differ ({proc}, class {y})")


def _own_steppers_agree(model: Model, mask: torch.Tensor, where: str, seed: int) -> str | None:
    """Why the family's `stepper` and `reference_stepper`, built directly (as zoo 0.2 and 0.3 build them, without
    the core's decision), disagree on accepting a mask; None when both build or both refuse."""
    cached, naive = [_outcome(lambda naive=naive: model._build_stepper(
        4, observed_mask=mask.to(model.device), naive=naive, generator=make_generator(seed)))
        for naive in (False, True)]
    if (cached.refusal is None) == (naive.refusal is None):
        return None
    return (f"given {where}, stepper() {cached} but the naive reference {naive}: a cached stepper must refuse "
            "exactly the masks generation_steps refuses (call self.generation_steps(observed_mask) first), or zoo "
            "0.2 and 0.3, which build it without asking, complete them inexactly")


def _order_accepts_out_of_order(model: Model, mask: torch.Tensor, where: str) -> tuple[bool, str | None]:
    """(whether generation_steps accepts the mask, why its order cannot complete it exactly or None)."""
    order = _outcome(lambda: model.generation_steps(mask))
    if order.refusal is not None:
        return False, None
    bad = first_out_of_order(order.value, mask)
    if bad is None or getattr(model, "approximate_completion", ""):
        return True, None
    return True, (f"generation_steps accepts {where} but generates token {bad[0]} (hidden) before token {bad[1]} "
                  "(observed), so the completion is not the exact conditional: return an order that generates the "
                  "observed tokens first, or raise zoo.InputError naming the masks the family completes")


def _check_non_prefix(model: Model, fail: Callable[[str, str], ContractError], report: CheckReport, samples: int,
                      seed: int, exact_completion: bool | None) -> None:
    """A completion mask that is no prefix of the order (its second half of steps observed): the family's own
    steppers, its order and the core's two paths must agree, on the exact conditional or on one refusal."""
    check = "non-prefix completion"
    T, device = model.tokenizer.num_tokens, model.device
    mask = _non_prefix(model)
    if not bool(mask.any()) or bool(mask.all()):
        report.skipped[check] = "the order has a single step, so every mask is a prefix of it"
        return
    where = f"a mask observing positions {mask.nonzero().flatten().tolist()} (no prefix of the order)"
    accepted, problem = _order_accepts_out_of_order(model, mask, where)
    problem = _own_steppers_agree(model, mask, where, seed) or problem
    if problem is not None:
        raise fail(check, problem)
    approximate = getattr(model, "approximate_completion", "")
    exact = accepted and not approximate and exact_completion is not False
    m = samples if exact else 64
    x0 = model.generate_tokens(1, generator=make_generator(seed + 1), processor=LogitProcessor())
    observed, flat = x0.expand(m, T).clone(), mask.expand(m, T).to(device)
    with approximation(True):  # a family's documented approximation is accepted here, and checked cached == naive
        fast, slow = [_outcome(lambda naive=naive: model.generate_tokens(
            m, generator=make_generator(seed + 3), processor=LogitProcessor(), observed=observed, observed_mask=flat,
            naive=naive)) for naive in (False, True)]
    if fast.refusal is not None or slow.refusal is not None:
        if fast.refusal != slow.refusal:
            raise fail(check, f"given {where}, the cached path {fast} but the naive path {slow}: both must "
                       "complete it exactly or refuse it alike")
        report.notes[check] = f"refused on both paths: {fast.refusal}"
    elif not torch.equal(fast.value[flat], observed[flat]):
        raise fail(check, f"given {where}, an observed token was changed")
    elif not torch.equal(fast.value, slow.value):
        rows = int((fast.value != slow.value).any(1).sum())
        raise fail(check, f"given {where}, {rows} of {m} cached and naive completions differ")
    elif approximate:
        report.skipped["exact non-prefix completion"] = f"the family declares it approximate: {approximate}"
    elif exact_completion is False:
        report.skipped["exact non-prefix completion"] = "exact_completion=False"
    else:
        problem = _posterior_mismatch(model, x0, mask, fast.value)
        if problem is not None:
            raise fail(check, f"given {where}, {problem}")
        report.notes[check] = "the exact conditional (chi-squared against the enumerated posterior)"
    report.passed.append(check)


@torch.no_grad()
def check_family(architecture: str | type, config: dict[str, Any] | None = None, *,
                 samples: int = 4000, seed: int = 0, exact_completion: bool | None = None) -> CheckReport:
    """Run the plugin contract on a tiny model of a family; raise ContractError naming the first broken promise.

    `architecture` is a registered name or a zoo.Model subclass; `config` defaults to the class's
    `check_config()`. `samples` completions are drawn for each exactness test. `exact_completion` None checks
    the exact conditional wherever the family's order puts the observed tokens first (a prefix mask, and a mask
    that is no prefix when the family accepts it); False skips both (the other checks still run).
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

    # the cached stepper gives the naive reference's logits at every step, and draws what it draws
    _check_cached(model, fail, seed)
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
        problem = _posterior_mismatch(model, x0, mask, out)
        if problem is not None:
            raise fail("exact completion", problem)
        report.passed.append("exact completion")

    # a mask that is no prefix of the order: the same outcome on both paths, exact or refused alike
    _check_non_prefix(model, fail, report, samples, seed, exact_completion)

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


__all__ = ["CheckReport", "ContractError", "MAX_SEQUENCES", "all_sequences", "check_family", "check_tokenizer",
           "randomise"]
