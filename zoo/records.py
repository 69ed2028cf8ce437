"""One home for recording a measured figure with the command that reproduces it (CLI and training alike).

Every metric on a card carries its exact command: `zoo eval ...` for evaluations, and for training figures the
`zoo train ...` command line as it was typed (`command_line`, from the real arguments; torchrun's launcher
when several processes trained).
"""
from __future__ import annotations

import shlex
from typing import Any

from .cards import Card, Metric, with_metric


def launcher() -> str:
    """`zoo`, or the torchrun line that starts as many processes as this run has (their draws differ)."""
    from . import distributed as zdist  # torch: only when a figure is recorded, never for listing
    w = zdist.world_size()
    return f"torchrun --nproc-per-node {w} -m zoo.cli" if w > 1 else "zoo"


_ARGV: list[str] = []  # the arguments of this CLI invocation, as typed (set by the zoo command)


def set_argv(args: list[str]) -> None:
    """Remember the arguments of the running zoo command, so that a card can record the command that ran."""
    _ARGV[:] = [str(a) for a in args]


def command_line() -> str:
    """The command line that is running, as a user would type it again (torchrun's launcher included)."""
    return " ".join([launcher(), shlex.join(_ARGV)]) if _ARGV else launcher()


def _value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def command(*words: Any, flags: dict[str, Any] | None = None) -> str:
    """A zoo command line: the launcher, the words, then each flag that is set (`{"--epochs": 3}`; None or
    False: left out; True: a bare switch), quoted for a POSIX shell."""
    parts = [str(w) for w in words]
    for flag, v in (flags or {}).items():
        if v is None or v is False:
            continue
        parts += [flag] if v is True else [flag, _value(v)]
    return " ".join([launcher(), *(shlex.quote(p) for p in parts)])


def eval_command(model_id: str, metric: str, *, n: int | None = None, split: str = "test", seed: int | None = None,
                 options: dict[str, Any] | None = None, data: str | None = None, ref_n: int | None = None,
                 flags: dict[str, Any] | None = None, extra: str = "") -> str:
    """The `zoo eval` line that reproduces a figure: `metric` is nll, fid, kid or recon. `data` is an image
    folder given with --data (it replaces --split); `flags` are the metric's own (`{"--kid-ref-n": 10}`), `extra`
    further flags already written out (sampling settings)."""
    words: list[Any] = ["eval", model_id, f"--{metric}"]
    given = flags
    flags = {"-n": n, "--seed": seed, **(given or {})}
    if data is not None:
        flags["--data"] = data
    flags["--split"] = split if split != "test" and data is None else None
    flags["--ref-n"] = ref_n
    for k, v in (options or {}).items():
        words += ["-o", f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"]
    cmd = command(*words[:3], flags=flags)
    return " ".join([cmd, *(shlex.quote(w) for w in words[3:])]) + (f" {extra.strip()}" if extra.strip() else "")


def train_command(card_id: str, overrides: dict[str, Any] | None = None, *, device: str = "cpu", amp: bool = False,
                  compile: bool = False, data: Any = None) -> str:
    """A `zoo train` line equivalent to a library call (the CLI records `command_line()`, as typed instead): the
    card id (or recipe path), the image folder, every override, device and switch."""
    flags: dict[str, Any] = {"--data": None if data is None else str(data)}
    flags.update({f"--{k.replace('_', '-')}": v for k, v in (overrides or {}).items()})
    flags.update({"--device": str(device) if str(device) != "cpu" else None, "--amp": amp, "--compile": compile})
    return command("train", card_id, flags=flags)


def nll_metric(model_id: str, r: Any, split: str, n: int | None, data_note: str,
               options: dict[str, Any] | None = None, command: str | None = None) -> Metric:
    """The record of an exact NLL (an evaluate.NLLResult, in its unit), named nll or nll_<options>; `command`
    defaults to the `zoo eval` line that reproduces it."""
    name = "nll" if not options else "nll_" + "_".join(f"{k}{v}" for k, v in options.items())
    return Metric(name, round(r.nats, 4), getattr(r, "unit", "nats/image"), split, r.n,
                  command or eval_command(model_id, "nll", n=n, split=split, options=options),
                  (f"stderr {r.stderr:.3f}, a likelihood of the tokenizer's codes (no bits/dim)"
                   if getattr(r, "likelihood", "pixels") == "tokens" else
                   f"{r.bits_per_dim:.4f} bits/dim, stderr {r.stderr:.3f}") + f"; {data_note}")


def record_nll(card: Card, model_id: str, r: Any, split: str, n: int | None, data_note: str,
               options: dict[str, Any] | None = None, command: str | None = None) -> Card:
    """The card with an exact NLL (see nll_metric)."""
    return with_metric(card, nll_metric(model_id, r, split, n, data_note, options, command))


def with_metrics(card: Card, metrics: Any) -> Card:
    """The card with each of the metrics added (see cards.with_metric)."""
    for m in metrics:
        card = with_metric(card, m)
    return card


def record_fid(card: Card, model_id: str, value: float, split: str, n: int, seed: int, note: str,
               command: str | None = None) -> Card:
    """The card with an FID of n samples drawn with a seed; `command` defaults to the `zoo eval` line."""
    return with_metric(card, Metric("fid", round(value, 3), "FID", split, n,
                                    command or eval_command(model_id, "fid", n=n, split=split, seed=seed), note))


def recon_metrics(r: Any, command: str, note: str, split: str = "test") -> list[Metric]:
    """The records of a tokenizer's reconstruction figures (PSNR, codebook usage) and their command."""
    return [Metric("psnr", round(r.psnr, 3), "dB", split, r.n, command, note),
            Metric("codebook_usage", round(r.usage, 4), "fraction of codes", split, r.n, command,
                   f"{r.codes_used} of {r.codebook_size} codes used")]


def record_recon(card: Card, r: Any, command: str, note: str, split: str = "test") -> Card:
    """The card with a tokenizer's reconstruction figures (see recon_metrics)."""
    return with_metrics(card, recon_metrics(r, command, note, split))


def metric(name: str, value: float, unit: str, split: str, n: int, command: str, note: str = "",
           digits: int = 3) -> Metric:
    """One figure's record, rounded to `digits` decimals: the one constructor every evaluation uses."""
    return Metric(name, round(float(value), digits), unit, split, n, command, note)
