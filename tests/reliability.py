"""Every bad input and fault the reliability suite tries, in one table (the one home of the cases).

A case names an entry point, feeds it one bad input (or injects one fault), and says how it must end: an
exception of the expected zoo error class whose message contains a given phrase (a clear error), and, where
something could be lost, an `after` check (the output file was not written, the last checkpoint is intact, a
corrupt download is not in the cache, the other plugins still work). A fault case with no expected error must
end in a correct resume (the same weights as a run that was never interrupted).

`tests/test_reliability.py` runs every case under pytest; `python scripts/reliability_report.py` runs the same
cases and prints the count per category. The fuzz properties at the end are shared the same way.
"""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import pickle
import random as _random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

import zoo  # noqa: E402
import zoo.plugins  # noqa: E402
import zoo.weights  # noqa: E402
from zoo.cards import dump_card, parse_card, read_card  # noqa: E402
from zoo.errors import (CardError, InputError, PluginError, UnknownModelError,  # noqa: E402
                        WeightsError, ZooError)

from fakedata import fake_digits, make_mnist, write_idx  # noqa: E402


# ---- the table ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bad input or fault: run it, expect `error` with `match` in its message (None: it must succeed, e.g.
    a resume), then `after` checks that nothing was lost."""

    category: str
    name: str
    run: Callable[["Ctx"], Any]
    error: type[BaseException] | None
    match: str = ""
    after: Callable[["Ctx"], None] | None = None
    slow: bool = False

    @property
    def id(self) -> str:
        return f"{self.category}/{self.name}"


@dataclass
class Ctx:
    """What a case may use: its own empty folder and the run's shared, lazily built resources."""

    tmp: Path
    shared: "Shared"
    notes: dict[str, Any] = field(default_factory=dict)


class Shared:
    """Resources built once per run (fake MNIST, the uninterrupted training reference)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Any] = {}

    def get(self, key: str, build: Callable[[Path], Any]) -> Any:
        if key not in self._cache:
            folder = self.root / key
            folder.mkdir(parents=True, exist_ok=True)
            self._cache[key] = build(folder)
        return self._cache[key]

    @property
    def mnist(self) -> Path:
        return self.get("mnist", make_mnist)


@dataclass
class Outcome:
    case: Case
    ok: bool
    detail: str
    seconds: float


class CliError(ZooError):
    """The CLI exited non-zero with its one-line error (no traceback); the message is its output."""


CASES: list[Case] = []



def _files(folder: Path) -> dict[str, bytes]:
    """Every file under a run folder (samples/ included), by relative path: what "untouched" compares."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

def case(category: str, name: str, error: type[BaseException] | None, match: str = "",
         after: Callable[[Ctx], None] | None = None, slow: bool = False):
    """Register the decorated function as a case."""
    def register(fn: Callable[[Ctx], Any]) -> Callable[[Ctx], Any]:
        CASES.append(Case(category, name, fn, error, match, after, slow))
        return fn
    return register


def add(category: str, name: str, run: Callable[[Ctx], Any], error: type[BaseException] | None, match: str = "",
        after: Callable[[Ctx], None] | None = None) -> None:
    """Register a one-line case."""
    CASES.append(Case(category, name, run, error, match, after))


# ---- running a case -------------------------------------------------------------------------------------------
@contextlib.contextmanager
def environ(**values: str | None) -> Iterator[None]:
    """Set (or, with None, remove) environment variables for the block, then restore them."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_case(c: Case, tmp: Path, shared: Shared) -> Outcome:
    """Run one case in an isolated environment (its own Hub cache, offline, no data, only first-party plugins)."""
    tmp.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(tmp, shared)
    t0 = time.time()
    with environ(HF_HOME=str(tmp / "hf"), HF_HUB_CACHE=None, HF_HUB_OFFLINE="1", HF_ENDPOINT=None,
                 ZOO_DATA_DIR=str(tmp / "no-data"), XDG_CACHE_HOME=str(tmp / "cache"), ZOO_FID_CACHE=None,
                 ZOO_FOLDER_CACHE=None,
                 ZOO_LOAD_PLUGINS="made,pixelcnn"):
        zoo.plugins.reset()
        try:
            ok, detail = _judge(c, ctx)
        finally:
            zoo.plugins.reset()
    return Outcome(c, ok, detail, time.time() - t0)


def _judge(c: Case, ctx: Ctx) -> tuple[bool, str]:
    try:
        # a case's warnings on the way to its error (an explicit weights file that is not the card's warns, then
        # fails to load) are part of its outcome, not the test run's: kept in ctx.notes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                c.run(ctx)
            finally:
                ctx.notes["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    except BaseException as e:  # noqa: BLE001 - judged below, KeyboardInterrupt re-raised
        if isinstance(e, KeyboardInterrupt):
            raise
        if c.error is None:
            return False, f"expected success, got {type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
        if not isinstance(e, c.error):
            return False, f"expected {c.error.__name__}, got {type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
        if not isinstance(e, ZooError):
            return False, f"{type(e).__name__} is not one of zoo's errors: {e}"
        if c.match.lower() not in str(e).lower():
            return False, f"the {type(e).__name__} does not say {c.match!r}: {e}"
        result = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    else:
        if c.error is not None:
            return False, f"expected {c.error.__name__} ({c.match!r}), but it succeeded"
        result = ctx.notes.get("result", "succeeded")
    if c.after is not None:
        try:
            c.after(ctx)
        except AssertionError as e:
            return False, f"{result}; but something was lost: {e}"
    return True, result


def cli(*args: Any, input: str | None = None) -> str:
    """Run the zoo CLI in-process; a non-zero exit is a CliError with its output, a traceback is re-raised."""
    from click.testing import CliRunner

    from zoo.cli import main
    r = CliRunner().invoke(main, [str(a) for a in args], input=input)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    if r.exit_code != 0:
        assert "Traceback" not in r.output, r.output
        raise CliError(" ".join(r.output.split()))  # one line: the terminal wrapping undone
    return r.output


# ---- small things the cases are made of -----------------------------------------------------------------------
TINY = dict(image_shape=[1, 3, 3], levels=2, hidden=[8], num_masks=1)
WFILE = "made-tiny.safetensors"


def tiny_model(seed: int = 1, **overrides: Any) -> zoo.Model:
    """A tiny MADE with weights drawn from `seed`."""
    model = zoo.create("made", **{**TINY, **overrides})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


def card_data(**weights: Any) -> dict[str, Any]:
    """A valid tiny card as TOML data."""
    return {"id": "made-tiny", "plugin": "made", "architecture": "made", "description": "tiny",
            "data": {"dataset": "mnist-bin"}, "config": dict(TINY),
            "weights": {"file": WFILE, "sha256": "0" * 64, **weights},
            "metrics": [{"name": "nll", "value": 5.0, "unit": "nats/image", "split": "test", "n": 10,
                         "command": "zoo eval made-tiny --nll"}]}


def folder(ctx: Ctx, state: dict[str, torch.Tensor] | None = None, config: dict | None = None,
           raw: bytes | None = None, sha: str | None = None) -> Path:
    """An export-layout folder (card.toml + weights) in ctx.tmp; the card's sha256 is the file's unless given."""
    out = ctx.tmp / "model"
    out.mkdir(parents=True, exist_ok=True)
    wpath = out / WFILE
    if raw is not None:
        wpath.write_bytes(raw)
    else:
        zoo.weights.save_weights(state if state is not None else tiny_model().state_dict(), wpath)
    data = card_data(sha256=sha or zoo.weights.sha256_file(wpath))
    if config is not None:
        data["config"] = config
    (out / "card.toml").write_text(dump_card(parse_card(data)), encoding="utf-8")
    return out


def write_card_text(ctx: Ctx, text: str | bytes) -> Path:
    path = ctx.tmp / "card.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def edited_card(edit: Callable[[dict], None]) -> Callable[[Ctx], Any]:
    """A case body: write the tiny card with one edit, then read it."""
    def run(ctx: Ctx) -> Any:
        data = card_data()
        edit(data)
        return read_card(write_card_text(ctx, toml_text(data)))
    return run


def toml_text(data: dict) -> str:
    """TOML for card-like data without validation (so broken cards can be written)."""
    from zoo.cards import _toml, _toml_value
    metrics = data.get("metrics")
    if metrics is not None and not (isinstance(metrics, list) and all(isinstance(m, dict) for m in metrics)):
        return f"metrics = {_toml_value(metrics)}\n" + _toml({k: v for k, v in data.items() if k != "metrics"})
    return _toml(data)


def safetensors_bytes(state: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save
    return save({k: v.contiguous() for k, v in state.items()})


class Touch:
    """Unpickling this creates a marker file: proof that a loader ran pickle code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def no_marker(ctx: Ctx) -> None:
    assert not (ctx.tmp / "pwned").exists(), "the pickle was unpickled (its payload ran)"


def made_bin() -> zoo.Model:
    return zoo.load("made-mnist-bin")


def others_still_work(ctx: Ctx) -> None:
    assert zoo.get_card("made-mnist-bin").plugin == "made", "the first-party plugin stopped working"


# ---- 1. cards ----------------------------------------------------------------------------------------------------
def _drop(*path: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        for p in path[:-1]:
            d = d[p]
        del d[path[-1]]
    return edit


def _set(value: Any, *path: str | int) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        for p in path[:-1]:
            d = d[p]
        d[path[-1]] = value
    return edit


for _name, _edit, _match in [
    ("missing id", _drop("id"), "missing field 'id'"),
    ("missing plugin", _drop("plugin"), "missing field 'plugin'"),
    ("missing architecture", _drop("architecture"), "missing field 'architecture'"),
    ("missing [data]", _drop("data"), "missing field 'data'"),
    ("missing data.dataset", _drop("data", "dataset"), "missing field 'data.dataset'"),
    ("missing [config]", _drop("config"), "missing field 'config'"),
    ("missing [weights]", _drop("weights"), "missing field 'weights'"),
    ("missing weights.file", _drop("weights", "file"), "missing field 'weights.file'"),
    ("missing weights.sha256", _drop("weights", "sha256"), "missing field 'weights.sha256'"),
    ("missing metric command", _drop("metrics", 0, "command"), "missing field 'metrics[0].command'"),
    ("id is an integer", _set(7, "id"), "field 'id' must be str"),
    ("id with capitals and spaces", _set("My Model", "id"), "field 'id'"),
    ("id of 101 characters", _set("a" * 101, "id"), "field 'id'"),
    ("config is a string", _set("hidden=8", "config"), "field 'config' must be dict"),
    ("data is a list", _set(["mnist-bin"], "data"), "field 'data' must be dict"),
    ("weights is a string", _set("made.safetensors", "weights"), "field 'weights' must be dict"),
    ("sha256 too short", _set("abc", "weights", "sha256"), "64 lowercase hex"),
    ("sha256 in capitals", _set("A" * 64, "weights", "sha256"), "64 lowercase hex"),
    ("metrics is a number", _set(3, "metrics"), "field 'metrics' must be list"),
    ("metric is a string", _set(["nll"], "metrics"), "'metrics[0]' must be a table"),
    ("metric value is text", _set("five", "metrics", 0, "value"), "metrics[0].value"),
    ("metric value is a boolean", _set(True, "metrics", 0, "value"), "got a boolean"),
    ("metric n is a float", _set(1.5, "metrics", 0, "n"), "metrics[0].n"),
    ("metric command is not zoo's", _set("python eval.py", "metrics", 0, "command"), "the zoo command"),
    ("description is a number", _set(3, "description"), "field 'description' must be str"),
    ("hub_repo is a number", _set(3, "weights", "hub_repo"), "weights.hub_repo"),
    # path traversal and other hostile names
    ("weights file ../../etc/passwd", _set("../../etc/passwd", "weights", "file"), "plain file name"),
    ("weights file ../../x.safetensors", _set("../../x.safetensors", "weights", "file"), "plain file name"),
    ("weights file absolute", _set("/etc/x.safetensors", "weights", "file"), "plain file name"),
    ("weights file in a subfolder", _set("sub/x.safetensors", "weights", "file"), "plain file name"),
    ("weights file with backslashes", _set("..\\..\\x.safetensors", "weights", "file"), "plain file name"),
    ("weights file home-relative", _set("~/.ssh/x.safetensors", "weights", "file"), "plain file name"),
    ("weights file hidden", _set(".safetensors", "weights", "file"), "plain file name"),
    ("weights file is a pickle name", _set("model.pt", "weights", "file"), "ending in .safetensors"),
    ("weights file with a NUL byte", _set("x.safetensors\0.txt", "weights", "file"), "plain file name"),
    ("hub_repo climbs folders", _set("../../etc", "weights", "hub_repo"), "weights.hub_repo"),
    ("hub_repo named ..", _set("org/..", "weights", "hub_repo"), "weights.hub_repo"),
    ("hub_revision climbs folders", _set("../../../tmp/x", "weights", "hub_revision"), "revision"),
    ("hub_revision absolute", _set("/etc/passwd", "weights", "hub_revision"), "revision"),
]:
    add("cards", _name, edited_card(_edit), CardError, _match)

add("cards", "not TOML", lambda ctx: read_card(write_card_text(ctx, "id = [unclosed")), CardError, "not valid TOML")
add("cards", "not UTF-8", lambda ctx: read_card(write_card_text(ctx, b'id = "\xff\xfe"')), CardError, "not valid TOML")
add("cards", "empty file", lambda ctx: read_card(write_card_text(ctx, "")), CardError, "missing field 'id'")
add("cards", "file missing", lambda ctx: read_card(ctx.tmp / "nope.toml"), CardError, "not found")
add("cards", "path is a folder", lambda ctx: read_card(ctx.tmp), CardError, "cannot read card")
add("cards", "nested 5,000 deep", lambda ctx: read_card(write_card_text(ctx, "a = " + "[" * 5000 + "]" * 5000)),
    CardError, "nested too deeply")
add("cards", "not a table", lambda ctx: parse_card(["id", "x"]), CardError, "must be a TOML table")


@case("cards", "config the constructor rejects (zoo.load)", InputError, "bad config")
def _(ctx: Ctx) -> Any:
    return zoo.load(str(folder(ctx, config={**TINY, "hidden": [-1]})))


@case("cards", "config asking for terabytes (zoo.load, checked before allocating)", WeightsError, "do not match")
def _(ctx: Ctx) -> Any:
    t0 = time.time()
    try:
        return zoo.load(str(folder(ctx, config={"image_shape": [1, 1000, 1000], "levels": 2, "hidden": [100_000]})))
    finally:
        ctx.notes["seconds"] = time.time() - t0


@case("cards", "unknown architecture (zoo.load)", UnknownModelError, "unknown architecture")
def _(ctx: Ctx) -> Any:
    out = folder(ctx)
    (out / "card.toml").write_text((out / "card.toml").read_text().replace('architecture = "made"',
                                                                           'architecture = "wavenet"'))
    return zoo.load(str(out))


@case("cards", "config with an unknown keyword (zoo.load)", InputError, "unexpected keyword")
def _(ctx: Ctx) -> Any:
    return zoo.load(str(folder(ctx, config={**TINY, "layers": 3})))


# ---- 2. weights --------------------------------------------------------------------------------------------------
def _truncated(ctx: Ctx) -> tuple[Path, Path]:
    out = folder(ctx)
    w = out / WFILE
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return out, w


add("weights", "truncated file (card sha256)", lambda ctx: zoo.load(str(_truncated(ctx)[0])), WeightsError,
    "sha256 mismatch")
add("weights", "truncated file (explicit path)", lambda ctx: zoo.load(str(folder(ctx)), weights=_truncated(ctx)[1]),
    WeightsError, "truncated")
add("weights", "empty file", lambda ctx: zoo.load(str(folder(ctx, raw=b""))), WeightsError, "not a safetensors")
add("weights", "random bytes", lambda ctx: zoo.load(str(folder(ctx, raw=bytes(range(256)) * 8))), WeightsError,
    "corrupt")
add("weights", "header length 2**63", lambda ctx: zoo.load(str(folder(ctx, raw=struct.pack("<Q", 2**63) + b"{}"))),
    WeightsError, "corrupt")
add("weights", "header is a JSON list",
    lambda ctx: zoo.load(str(folder(ctx, raw=struct.pack("<Q", 2) + b"[]"))), WeightsError, "corrupt")
def _st(header: bytes, body: bytes = b"") -> bytes:
    """A safetensors-shaped file: 8-byte header length, the header, the body."""
    return struct.pack("<Q", len(header)) + header + body


add("weights", "offsets past the end of the file",
    lambda ctx: zoo.load(str(folder(ctx, raw=_st(b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 9999]}}',
                                                 b"\0" * 16)))), WeightsError, "truncated")
add("weights", "unknown dtype in the header",
    lambda ctx: zoo.load(str(folder(ctx, raw=_st(b'{"w": {"dtype": "NOPE", "shape": [2], "data_offsets": [0, 8]}}',
                                                 b"\0" * 8)))), WeightsError, "cannot read")


def _pickle_case(protocol: int | None, explicit: bool) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        payload = {"w": Touch(ctx.tmp / "pwned")}
        path = ctx.tmp / "evil.safetensors"
        if protocol is None:
            torch.save(payload, path)
        else:
            path.write_bytes(pickle.dumps(payload, protocol=protocol))
        if explicit:
            return zoo.load(str(folder(ctx)), weights=path)
        return zoo.load(str(folder(ctx, raw=path.read_bytes())))  # the card's sha256 matches the pickle
    return run


for _proto in (None, 2, 4, 5):
    for _explicit in (False, True):
        add("weights", f"{'torch.save' if _proto is None else f'pickle protocol {_proto}'} given as safetensors "
            f"({'explicit path' if _explicit else 'sha256 matches the card'})",
            _pickle_case(_proto, _explicit), WeightsError, "never unpickles", no_marker)

add("weights", "tensor shapes do not match the card",
    lambda ctx: zoo.load(str(folder(ctx, state=tiny_model(hidden=[16]).state_dict()))), WeightsError, "wrong shapes")
add("weights", "a tensor is missing",
    lambda ctx: zoo.load(str(folder(ctx, state={k: v for k, v in tiny_model().state_dict().items()
                                                if k != "skip.weight"}))), WeightsError, "missing ['skip.weight']")
add("weights", "an extra tensor",
    lambda ctx: zoo.load(str(folder(ctx, state={**tiny_model().state_dict(), "extra": torch.zeros(2)}))),
    WeightsError, "unexpected ['extra']")
add("weights", "NaN in a parameter",
    lambda ctx: zoo.load(str(folder(ctx, state={k: (v.fill_(float("nan")) if k == "skip.weight" else v)
                                                for k, v in tiny_model().state_dict().items()}))),
    WeightsError, "NaN")
add("weights", "integer tensors for float parameters",
    lambda ctx: zoo.load(str(folder(ctx, state={k: v.long() for k, v in tiny_model().state_dict().items()}))),
    WeightsError, "kind of dtype")
add("weights", "one flipped byte (card sha256)",
    lambda ctx: zoo.load(str(_flipped(folder(ctx)))), WeightsError, "sha256 mismatch")
add("weights", "explicit path is a folder", lambda ctx: zoo.load("made-mnist-bin", weights=ctx.tmp), WeightsError,
    "not found")
add("weights", "file named by the card is absent",
    lambda ctx: (folder(ctx) / WFILE).unlink() or zoo.load(str(ctx.tmp / "model")), WeightsError, "not found")


def _flipped(out: Path) -> Path:
    data = bytearray((out / WFILE).read_bytes())
    data[-2] ^= 0x10
    (out / WFILE).write_bytes(bytes(data))
    return out


# ---- 3. images ---------------------------------------------------------------------------------------------------
def _images(x: Any, method: str = "log_prob") -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        m = made_bin()
        if method == "complete":
            return m.complete(x() if callable(x) else x, zoo.masks.top_half((1, 28, 28)), seed=0)
        return m.log_prob(x() if callable(x) else x)
    return run


for _name, _x, _match in [
    ("wrong size 27x28", lambda: torch.zeros(2, 1, 27, 28), "shape"),
    ("wrong channels (RGB)", lambda: torch.zeros(2, 3, 28, 28), "shape"),
    ("no channel axis (H, W)", lambda: torch.zeros(28, 28), "shape"),
    ("five axes", lambda: torch.zeros(1, 2, 1, 28, 28), "shape"),
    ("a numpy array", lambda: np.zeros((2, 1, 28, 28), np.float32), "torch.Tensor"),
    ("a list", lambda: [[0.0] * 28] * 28, "torch.Tensor"),
    ("int64 dtype", lambda: torch.zeros(2, 1, 28, 28, dtype=torch.long), "dtype"),
    ("bool dtype", lambda: torch.zeros(2, 1, 28, 28, dtype=torch.bool), "dtype"),
    ("complex dtype", lambda: torch.zeros(2, 1, 28, 28, dtype=torch.complex64), "dtype"),
    ("floats in [0, 255]", lambda: torch.full((2, 1, 28, 28), 255.0), "[0, 1]"),
    ("negative values", lambda: torch.full((2, 1, 28, 28), -0.5), "[0, 1]"),
    ("NaN", lambda: torch.full((2, 1, 28, 28), float("nan")), "NaN"),
    ("one NaN pixel", lambda: torch.zeros(2, 1, 28, 28).index_put_((torch.tensor([1]), torch.tensor([0]),
                                                                    torch.tensor([5]), torch.tensor([5])),
                                                                   torch.tensor(float("nan"))), "NaN"),
    ("infinity", lambda: torch.full((2, 1, 28, 28), float("inf")), "[0, 1]"),
    ("empty batch", lambda: torch.zeros(0, 1, 28, 28), "empty"),
    ("on the meta device", lambda: torch.zeros(2, 1, 28, 28, device="meta"), "meta"),
    ("grey values for a binary model", lambda: torch.full((2, 1, 28, 28), 0.5), "binary"),
    ("uint8 128 for a binary model", lambda: torch.full((2, 1, 28, 28), 128, dtype=torch.uint8), "binary"),
]:
    add("images", f"log_prob: {_name}", _images(_x), InputError, _match)
for _name, _x, _match in [("NaN", lambda: torch.full((2, 1, 28, 28), float("nan")), "NaN"),
                          ("wrong size", lambda: torch.zeros(2, 1, 32, 32), "shape"),
                          ("floats in [0, 255]", lambda: torch.full((2, 1, 28, 28), 255.0), "[0, 1]"),
                          ("empty batch", lambda: torch.zeros(0, 1, 28, 28), "empty")]:
    add("images", f"complete: {_name}", _images(_x, "complete"), InputError, _match)


def _fid_images(x: Callable[[], Any]) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        from zoo import fid as zfid
        return zfid.preprocess(x())
    return run


for _name, _x, _match in [("NaN", lambda: torch.full((2, 1, 8, 8), float("nan")), "[0, 1]"),
                          ("floats in [0, 255] (would be clamped white)", lambda: torch.full((2, 3, 8, 8), 200.0),
                           "[0, 1]"),
                          ("two channels", lambda: torch.zeros(2, 2, 8, 8), "1 or 3"),
                          ("int64 dtype", lambda: torch.zeros(2, 1, 8, 8, dtype=torch.long), "dtype")]:
    add("images", f"FID preprocess: {_name}", _fid_images(_x), InputError, _match)


# ---- 4. masks ----------------------------------------------------------------------------------------------------
def _complete_with(mask: Callable[[], Any], model: str = "made-mnist-bin-agnostic") -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        return zoo.load(model).complete(torch.zeros(2, 1, 28, 28), mask(), seed=0)
    return run


for _name, _mask, _match in [
    ("float mask", lambda: torch.ones(1, 28, 28), "bool"),
    ("int mask", lambda: torch.ones(1, 28, 28, dtype=torch.long), "bool"),
    ("uint8 mask", lambda: torch.ones(1, 28, 28, dtype=torch.uint8), "bool"),
    ("NaN mask", lambda: torch.full((1, 28, 28), float("nan")), "bool"),
    ("mask of 29x28", lambda: torch.ones(1, 29, 28, dtype=torch.bool), "shape"),
    ("mask for 3 images, 2 given", lambda: torch.ones(3, 1, 28, 28, dtype=torch.bool), "shape"),
    ("mask with 5 axes", lambda: torch.ones(1, 2, 1, 28, 28, dtype=torch.bool), "shape"),
    ("1-D mask", lambda: torch.ones(784, dtype=torch.bool), "shape"),
    ("mask is None", lambda: None, "bool tensor"),
    ("mask is a string", lambda: "top-half", "bool tensor"),
]:
    add("masks", f"complete: {_name}", _complete_with(_mask), InputError, _match)
add("masks", "raster MADE given a non-prefix mask", _complete_with(lambda: zoo.masks.left_half((1, 28, 28)),
                                                                  "made-mnist-bin"), InputError, "ordering")

for _spec, _match in [("diagonal", "unknown mask"), ("", "unknown mask"), ("top-half:3", "unknown mask"),
                      ("first:-1", "0 <= k"), ("first:abc", "unknown mask"), ("first:785", "0 <= k"),
                      ("first:99999999999999999999999", "0 <= k"), ("random:2", "fraction"),
                      ("random:nan", "fraction"), ("random:-0.1", "fraction"), ("random:0.5:abc", "unknown mask"),
                      ("random:0.5:99999999999999999999999", "seed"), ("box:1,2,3", "unknown mask"),
                      ("box:28,0,1,1", "does not fit"), ("box:0,0,0,1", "does not fit"),
                      ("box:a,b,c,d", "unknown mask"), ("box:-1,0,2,2", "does not fit")]:
    add("masks", f"parse_mask {_spec!r}", lambda ctx, s=_spec: zoo.masks.parse_mask(s, torch.zeros(2, 1, 28, 28)),
        InputError, _match)
add("masks", "mask built for a 2-D shape", lambda ctx: zoo.masks.top_half((28, 28)), InputError, "(C, H, W)")


# ---- 5. sampling and likelihood arguments ------------------------------------------------------------------------
def _sample(**kw: Any) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        n = kw.pop("n", 2)
        return made_bin().sample(n, **kw)
    return run


for _name, _kw, _match in [
    ("n = 0", dict(n=0), "positive integer"), ("n = -1", dict(n=-1), "positive integer"),
    ("n = 1.5", dict(n=1.5), "positive integer"), ("n = True", dict(n=True), "positive integer"),
    ("n = '4'", dict(n="4"), "positive integer"), ("n over MAX_SAMPLES", dict(n=1_000_001), "in one call"),
    ("batch_size = 0", dict(batch_size=0), "batch_size"), ("batch_size = -1", dict(batch_size=-1), "batch_size"),
    ("batch_size = 2.5", dict(batch_size=2.5), "batch_size"),
    ("temperature = -1", dict(temperature=-1.0), "temperature"),
    ("temperature = NaN", dict(temperature=float("nan")), "temperature"),
    ("top_k = 0", dict(top_k=0), "top_k"), ("top_k = 1.5", dict(top_k=1.5), "top_k"),
    ("top_k = 'a'", dict(top_k="a"), "top_k"),
    ("top_p = 0", dict(top_p=0.0), "top_p"), ("top_p = 1.5", dict(top_p=1.5), "top_p"),
    ("top_p = NaN", dict(top_p=float("nan")), "top_p"), ("cfg = -1", dict(cfg=-1.0), "cfg"),
    ("cfg = NaN", dict(cfg=float("nan")), "cfg"),
    ("seed = 'abc'", dict(seed="abc"), "seed"), ("seed = 2**70", dict(seed=2**70), "seed"),
    ("seed = 1.5", dict(seed=1.5), "seed"),
    ("a class for an unconditional model", dict(y=3), "not class-conditional"),
]:
    add("sampling", f"sample: {_name}", _sample(**_kw), InputError, _match)


@case("sampling", "sample: n whose images do not fit in memory (estimated, refused)", InputError, "available")
def _(ctx: Ctx) -> Any:
    # 999,999 images of 4096x4096: far more than any machine has, below MAX_SAMPLES, refused before any work
    with torch.device("meta"):
        m = zoo.create("pixelcnn", image_shape=[1, 4096, 4096], levels=2)
    m.to_empty(device="cpu")
    return m.sample(999_999)


add("sampling", "log_prob: unknown option", lambda ctx: made_bin().log_prob(torch.zeros(1, 1, 28, 28), foo=1),
    InputError, "unknown log_prob option")
add("sampling", "log_prob: option of the wrong type",
    lambda ctx: made_bin().log_prob(torch.zeros(1, 1, 28, 28), masks="abc"), InputError, "masks")
add("sampling", "log_prob: option out of range",
    lambda ctx: made_bin().log_prob(torch.zeros(1, 1, 28, 28), masks=0), InputError, "masks")
add("sampling", "create: config with a negative layer size",
    lambda ctx: zoo.create("made", image_shape=[1, 3, 3], hidden=[-1]), InputError, "bad config")
add("sampling", "create: config with text for numbers",
    lambda ctx: zoo.create("made", image_shape="abc"), InputError, "bad config")


# ---- 6. the command line -----------------------------------------------------------------------------------------
def _not_written(name: str) -> Callable[[Ctx], None]:
    def after(ctx: Ctx) -> None:
        assert not (ctx.tmp / name).exists(), f"{name} was written"
    return after


add("cli", "zoo sample: unknown id", lambda ctx: cli("sample", "made-mnist-bn", "-o", ctx.tmp / "s.png"), CliError,
    "did you mean 'made-mnist-bin'")
add("cli", "zoo sample: -n 0", lambda ctx: cli("sample", "made-mnist-bin", "-n", 0, "-o", ctx.tmp / "s.png"),
    CliError, "positive integer", _not_written("s.png"))
add("cli", "zoo sample: -n -3", lambda ctx: cli("sample", "made-mnist-bin", "-n", -3, "-o", ctx.tmp / "s.png"),
    CliError, "positive integer", _not_written("s.png"))
add("cli", "zoo sample: -n is text", lambda ctx: cli("sample", "made-mnist-bin", "-n", "many"), CliError,
    "not a valid integer")
add("cli", "zoo sample: --batch-size 0",
    lambda ctx: cli("sample", "made-mnist-bin", "-n", 2, "--batch-size", 0, "-o", ctx.tmp / "s.png"), CliError,
    "batch_size")
add("cli", "zoo sample: --top-p 2", lambda ctx: cli("sample", "made-mnist-bin", "--top-p", 2, "-o", ctx.tmp / "s.png"),
    CliError, "top_p")
add("cli", "zoo sample: --class on an unconditional model",
    lambda ctx: cli("sample", "made-mnist-bin", "-n", 2, "--class", 3, "-o", ctx.tmp / "s.png"), CliError,
    "not class-conditional")
add("cli", "zoo sample: unknown output extension (checked before sampling)",
    lambda ctx: cli("sample", "made-mnist-bin", "-n", 2, "-o", ctx.tmp / "s.xyz"), CliError, "extension",
    _not_written("s.xyz"))
add("cli", "zoo sample: output is a folder", lambda ctx: cli("sample", "made-mnist-bin", "-n", 2, "-o", ctx.tmp),
    CliError, "is a folder")
add("cli", "zoo sample: --weights is a pickle",
    lambda ctx: (torch.save({"w": Touch(ctx.tmp / "pwned")}, ctx.tmp / "m.pt"),
                 cli("sample", "made-mnist-bin", "--weights", ctx.tmp / "m.pt", "-o", ctx.tmp / "s.png")),
    CliError, "never unpickles", no_marker)
add("cli", "zoo sample: --weights truncated",
    lambda ctx: cli("sample", "made-mnist-bin", "--weights", _truncated(ctx)[1].with_name(WFILE), "-o",
                    ctx.tmp / "s.png"), CliError, "truncated")
add("cli", "zoo sample: hf:// revision that climbs folders",
    lambda ctx: cli("sample", "hf://org/name@../../../tmp/x", "-o", ctx.tmp / "s.png"), CliError, "revision")
add("cli", "zoo sample: hf:// repo '..'", lambda ctx: cli("sample", "hf://org/..", "-o", ctx.tmp / "s.png"),
    CliError, "hf://org/name")
add("cli", "zoo info: unknown id", lambda ctx: cli("info", "../../etc/passwd"), CliError, "unknown model")
add("cli", "zoo complete: unknown mask", lambda ctx: cli("complete", "made-mnist-bin-agnostic", "--mask", "diagonal",
                                                         "-n", 2, "-o", ctx.tmp / "c.png"), CliError, "unknown mask",
    _not_written("c.png"))
add("cli", "zoo complete: raster model, non-prefix mask",
    lambda ctx: cli("complete", "made-mnist-bin", "--mask", "left-half", "-n", 2, "--from-samples",
                    "-o", ctx.tmp / "c.png"), CliError,
    "ordering", _not_written("c.png"))
add("cli", "zoo complete: box outside the image",
    lambda ctx: cli("complete", "made-mnist-bin-agnostic", "--mask", "box:40,0,2,2", "-n", 2, "-o", ctx.tmp / "c.png"),
    CliError, "does not fit")
add("cli", "zoo complete: unknown output extension",
    lambda ctx: cli("complete", "made-mnist-bin", "-n", 2, "-o", ctx.tmp / "c.nope"), CliError, "extension")
add("cli", "zoo eval: no metric", lambda ctx: cli("eval", "made-mnist-bin"), CliError, "choose a metric")
add("cli", "zoo eval: dataset missing", lambda ctx: cli("eval", "made-mnist-bin", "--nll", "--data-dir", ctx.tmp),
    CliError, "not found")
add("cli", "zoo eval: unknown -o option",
    lambda ctx: cli("eval", "made-mnist-bin", "--nll", "-n", 5, "--data-dir", ctx.shared.mnist, "-o", "foo=1"),
    CliError, "unknown log_prob option")
add("cli", "zoo eval: -o without '='", lambda ctx: cli("eval", "made-mnist-bin", "--nll", "-o", "masks"), CliError,
    "KEY=VALUE")
add("cli", "zoo eval: --write-card missing (checked before evaluating)",
    lambda ctx: cli("eval", "made-mnist-bin", "--nll", "--data-dir", ctx.tmp, "--write-card", ctx.tmp / "no.toml"),
    CliError, "card file not found")


def _bad_idx(ctx: Ctx) -> Path:
    root = make_mnist(ctx.tmp / "data", n_train=5010, n_test=20)
    (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bnot gzip")
    return root


def _short_idx(ctx: Ctx) -> Path:
    root = make_mnist(ctx.tmp / "data", n_train=5010, n_test=20)
    images, _ = fake_digits(20)
    write_idx(root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz", images[:, :20])  # 20x28 images
    return root


add("cli", "zoo eval: corrupt IDX file", lambda ctx: cli("eval", "made-mnist-bin", "--nll", "--data-dir",
                                                         _bad_idx(ctx)), CliError, "not a readable MNIST IDX")
add("cli", "zoo eval: IDX images of the wrong size", lambda ctx: cli("eval", "made-mnist-bin", "--nll", "--data-dir",
                                                                     _short_idx(ctx)), CliError, "28 x 28")


def _image_dir(ctx: Ctx, files: dict[str, Any]) -> Path:
    from PIL import Image
    d = ctx.tmp / "imgs"
    d.mkdir(exist_ok=True)
    for name, content in files.items():
        if isinstance(content, bytes):
            (d / name).write_bytes(content)
        else:
            Image.fromarray(content).save(d / name)
    return d


def _npz(ctx: Ctx, name: str, **arrays: Any) -> Path:
    from zoo import fid as zfid
    path = ctx.tmp / name
    np.savez(path, **{"n": 10, "source": "x", "preprocessing": zfid.PREPROCESSING,
                      "weights_sha256": zfid.WEIGHTS_SHA256, **arrays})
    return path


add("cli", "zoo fid: folder without images", lambda ctx: cli("fid", ctx.tmp, ctx.tmp), CliError, "no PNG or JPEG")
add("cli", "zoo fid: a corrupt PNG",
    lambda ctx: cli("fid", (d := _image_dir(ctx, {"a.png": b"\x89PNG garbage"})), d), CliError,
    "not a readable image")
add("cli", "zoo fid: images of mixed sizes",
    lambda ctx: cli("fid", (d := _image_dir(ctx, {"a.png": np.zeros((8, 8), np.uint8),
                                                  "b.png": np.zeros((9, 8), np.uint8)})), d), CliError, "mixed sizes")
add("cli", "zoo fid: statistics holding a pickled object",
    lambda ctx: cli("fid", (p := _npz(ctx, "obj.npz", mu=np.array([Touch(ctx.tmp / "pwned")], dtype=object),
                                      sigma=np.zeros((1, 1)))), p), CliError, "not a statistics file", no_marker)
add("cli", "zoo fid: statistics of mismatched dimensions",
    lambda ctx: cli("fid", (p := _npz(ctx, "dims.npz", mu=np.zeros(4), sigma=np.eye(3))), p), CliError,
    "sigma (d, d)")
add("cli", "zoo fid: statistics with NaN",
    lambda ctx: cli("fid", (p := _npz(ctx, "nan.npz", mu=np.full(3, np.nan), sigma=np.eye(3))), p), CliError, "NaN")
add("cli", "zoo fid: a truncated .npz",
    lambda ctx: cli("fid", (p := ctx.tmp / "bad.npz", p.write_bytes(b"PK\x03\x04broken"))[0], p), CliError,
    "not a statistics file")
add("cli", "zoo train: recipe is not TOML",
    lambda ctx: cli("train", write_card_text(ctx, "id = ["), "--out", ctx.tmp / "run"), CliError, "not valid TOML")
add("cli", "zoo train: unknown training setting",
    lambda ctx: cli("train", _recipe(ctx, learning_rate=0.1), "--out", ctx.tmp / "run", "--data-dir",
                    ctx.shared.mnist), CliError, "unknown training setting")
add("cli", "zoo train: --lr is text", lambda ctx: cli("train", "made-mnist-bin", "--lr", "fast"), CliError,
    "not a valid float")


# ---- 6b. the demo page's requests (zoo.demo's functions, as its /sample and /complete endpoints call them) --------
def _demo(call: Callable[[Any, Any, Path], Any]) -> Callable[[Ctx], Any]:
    """A request to a page serving two bundled MADEs, made through the functions its endpoints call (no server:
    tests/test_demo.py drives the same requests through gradio_client and a browser)."""
    def run(ctx: Ctx) -> Any:
        from zoo import demo
        cat = demo.Catalogue.of(["made-mnist-bin", "made-mnist-bin-agnostic"])
        return call(demo, cat, ctx.tmp)
    return run


def _text_file(tmp: Path) -> Path:
    (tmp / "notes.png").write_text("not an image at all")
    return tmp / "notes.png"


def _huge_png(tmp: Path) -> Path:
    from PIL import Image
    Image.new("L", (6000, 6000)).save(tmp / "huge.png", optimize=True)  # a few KB on disk, 36 megapixels decoded
    return tmp / "huge.png"


def _complete(demo: Any, cat: Any, name: str = "made-mnist-bin", mask: str = "top-half", upload: Any = None,
              source: str = "test image", approximate: bool = False) -> Any:
    return demo.complete_images(cat, demo.TestImages(), name, source, 0, upload, mask, None, 2, 0, 1.0, 0, 1.0,
                                approximate)


add("demo", "sample: n = 100,000", _demo(lambda d, cat, tmp: d.draw_samples(cat, "made-mnist-bin", 100_000, 0, {})),
    InputError, "zoo sample made-mnist-bin -n 100000")
add("demo", "sample: unknown model id", _demo(lambda d, cat, tmp: d.draw_samples(cat, "made-mnist-bn", 2, 0, {})),
    InputError, "unknown model")
add("demo", "sample: a path instead of an id",
    _demo(lambda d, cat, tmp: d.draw_samples(cat, "/etc/passwd", 2, 0, {})), InputError, "paths and Hub references")
add("demo", "sample: a Hub reference instead of an id",
    _demo(lambda d, cat, tmp: d.draw_samples(cat, "hf://org/name", 2, 0, {})), InputError, "paths and Hub references")
add("demo", "complete: an upload that is not an image",
    _demo(lambda d, cat, tmp: _complete(d, cat, source="upload", upload=_text_file(tmp))), InputError, "not an image")
add("demo", "complete: a 6000x6000 upload",
    _demo(lambda d, cat, tmp: _complete(d, cat, source="upload", upload=_huge_png(tmp))), InputError,
    "larger than this page decodes")
add("demo", "complete: a painted mask with nothing painted",
    _demo(lambda d, cat, tmp: _complete(d, cat, mask="painted")), InputError, "nothing to complete")
add("demo", "complete: a mask the page does not offer",
    _demo(lambda d, cat, tmp: _complete(d, cat, mask="everything")), InputError, "mask")
add("demo", "complete: a raster model given a non-prefix mask",
    _demo(lambda d, cat, tmp: _complete(d, cat, mask="center")), InputError, "made-mnist-bin-agnostic")
add("demo", "complete: an approximation not accepted",
    _demo(lambda d, cat, tmp: _complete(d, cat, "made-mnist-bin-agnostic", mask="center")), InputError,
    "approximate=True")


# ---- 7. Hub ------------------------------------------------------------------------------------------------------
REPO = "org/made-tiny"


@contextlib.contextmanager
def hub(ctx: Ctx, files: dict[str, bytes] | None = None) -> Iterator[Any]:
    """A Hub-protocol server on 127.0.0.1 serving REPO (a tiny MADE's export folder), the client online."""
    from hub_server import HubServer
    if files is None:
        out = folder(ctx)
        files = _files(out)
    with HubServer({REPO: files}) as server, environ(HF_ENDPOINT=server.url, HF_HUB_OFFLINE=None):
        yield server


def _hub_load(ctx: Ctx, ref: str, files: dict[str, bytes] | None = None) -> Any:
    with hub(ctx, files) as server:
        try:
            return zoo.load(ref)
        finally:
            ctx.notes["requests"] = list(server.requests)


def _no_requests(ctx: Ctx) -> None:
    assert ctx.notes.get("requests") == [], f"the Hub was asked: {ctx.notes.get('requests')}"


add("hub", "hf:// revision that climbs folders (refused before any request)",
    lambda ctx: _hub_load(ctx, f"hf://{REPO}@../../../../tmp/evil"), InputError, "revision", _no_requests)
add("hub", "hf:// repo '..' (refused before any request)", lambda ctx: _hub_load(ctx, "hf://org/.."), InputError,
    "hf://org/name", _no_requests)
add("hub", "hf:// three-part repo", lambda ctx: _hub_load(ctx, "hf://a/b/c"), InputError, "hf://org/name",
    _no_requests)
add("hub", "repository not found", lambda ctx: _hub_load(ctx, "hf://org/missing"), WeightsError, "not found")
add("hub", "revision not found", lambda ctx: _hub_load(ctx, f"hf://{REPO}@no-such-branch"), WeightsError,
    "revision 'no-such-branch' not found")


def _served(ctx: Ctx, weights: bytes, sha_of: bytes | None = None) -> dict[str, bytes]:
    """The tiny repo's files with other weights (the card's sha256 is that of `sha_of`, default the weights)."""
    import hashlib
    out = folder(ctx, raw=weights, sha=hashlib.sha256(sha_of if sha_of is not None else weights).hexdigest())
    return _files(out)


add("hub", "served weights are a pickle (sha256 matches)",
    lambda ctx: _hub_load(ctx, f"hf://{REPO}", _served(ctx, pickle.dumps({"w": Touch(ctx.tmp / "pwned")}))),
    WeightsError, "never unpickles", no_marker)
add("hub", "served weights do not match the card's sha256",
    lambda ctx: _hub_load(ctx, f"hf://{REPO}", _served(ctx, safetensors_bytes(tiny_model(seed=7).state_dict()),
                                                      sha_of=b"another file")), WeightsError, "sha256 mismatch")
add("hub", "served weights of another shape",
    lambda ctx: _hub_load(ctx, f"hf://{REPO}", _served(ctx, safetensors_bytes(tiny_model(hidden=[4]).state_dict()))),
    WeightsError, "wrong shapes")
add("hub", "served card is not TOML",
    lambda ctx: _hub_load(ctx, f"hf://{REPO}", {"card.toml": b"id = ["}), CardError, "not valid TOML")
add("hub", "offline and not cached", lambda ctx: zoo.load(f"hf://{REPO}"), WeightsError, "HF_HUB_OFFLINE")


# ---- 8. plugins --------------------------------------------------------------------------------------------------
GOOD_PLUGIN = """\
from pathlib import Path
import zoo

class Tiny(zoo.Model):
    pass

plugin = zoo.Plugin(name="{name}", version="1.0", architectures={{"{arch}": Tiny}},
                    cards_dir=Path(__file__).parent / "{name}_cards", weights_dir=Path(__file__).parent / "weights")
"""


def plugin_card(cid: str, plugin: str, arch: str, wfile: str | None = None) -> str:
    data = card_data()
    data.update(id=cid, plugin=plugin, architecture=arch)
    data["weights"]["file"] = wfile or f"{cid}.safetensors"
    return toml_text(data)


@contextlib.contextmanager
def fake_plugins(ctx: Ctx, dists: list[tuple[str, dict[str, str], dict[str, str], dict[str, str]]],
                 allow: str) -> Iterator[None]:
    """Installed-looking distributions (dist-info + modules + files) on sys.path, with a fresh registry."""
    root = ctx.tmp / "site"
    root.mkdir()
    modules = []
    for dist, eps, mods, files in dists:
        for name, source in mods.items():
            (root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            modules.append(name)
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text, encoding="utf-8")
        info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8")
        (info / "entry_points.txt").write_text("[zoo.plugins]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()),
                                               encoding="utf-8")
    sys.path.insert(0, str(root))
    try:
        with environ(ZOO_LOAD_PLUGINS=allow):
            zoo.plugins.reset()
            yield
    finally:
        sys.path.remove(str(root))
        for name in modules:
            sys.modules.pop(name, None)
        zoo.plugins.reset()


def _broken(source: str | None, entry: str = "zoo_rel_broken:plugin", ask: str = "broken-model",
            files: dict[str, str] | None = None) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        mods = {"zoo_rel_broken": source} if source is not None else {}
        with fake_plugins(ctx, [("zoo-broken", {"broken": entry}, mods, files or {})], "made,broken"):
            others_still_work(ctx)
            return zoo.load(ask)
    return run


add("plugins", "import raises", _broken("raise RuntimeError('zoo_rel_broken exploded')\n"), UnknownModelError,
    "RuntimeError: zoo_rel_broken exploded", others_still_work)
add("plugins", "import calls sys.exit", _broken("import sys\nsys.exit(3)\n"), UnknownModelError, "SystemExit",
    others_still_work)
add("plugins", "entry point names a missing module", _broken(None, "zoo_rel_nothing:plugin"), UnknownModelError,
    "ModuleNotFoundError", others_still_work)
add("plugins", "entry point gives a number", _broken("plugin = 42\n"), UnknownModelError, "must give a zoo.Plugin")
add("plugins", "entry point names a missing attribute", _broken("x = 1\n"), UnknownModelError, "AttributeError")
add("plugins", "plugin's name differs from its entry point",
    _broken(GOOD_PLUGIN.format(name="other", arch="x-arch")), UnknownModelError, "must match")


@case("plugins", "architectures is not a dict (nothing half-registered)", UnknownModelError,
      "architectures must be a dict")
def _(ctx: Ctx) -> Any:
    src = "import zoo\nplugin = zoo.Plugin(name='broken', version='1', architectures=[('made2', zoo.Model)])\n"
    with fake_plugins(ctx, [("zoo-broken", {"broken": "zoo_rel_broken:plugin"}, {"zoo_rel_broken": src}, {})],
                      "made,broken"):
        reg = zoo.plugins.registry()
        assert "broken" not in reg.plugins, "the refused plugin is half registered"
        return zoo.create("made2")


add("plugins", "an architecture that is not a zoo.Model",
    _broken("import zoo\nplugin = zoo.Plugin(name='broken', version='1', architectures={'x-arch': dict})\n",
            ask="x"), UnknownModelError, "must name a zoo.Model subclass")
add("plugins", "cards_dir is a number",
    _broken("import zoo\nplugin = zoo.Plugin(name='broken', version='1', cards_dir=5)\n"), UnknownModelError,
    "cards_dir must be")
add("plugins", "a shipped card with a traversing weights file (hides only itself)",
    _broken(GOOD_PLUGIN.format(name="broken", arch="broken-arch"), ask="broken-evil",
            files={"broken_cards/evil.toml": plugin_card("broken-evil", "broken", "broken-arch",
                                                         "../../../etc/passwd"),
                   "broken_cards/fine.toml": plugin_card("broken-fine", "broken", "broken-arch")}),
    UnknownModelError, "field 'weights.file' = '../../../etc/passwd'")


def _rivals(ctx: Ctx, order: list[str], ask: Callable[[], Any]) -> Any:
    """Two plugins both claiming the card id made-mnist-bin and the architecture made, installed in `order`."""
    dists = {"rival": ("zoo-rival", {"rival": "zoo_rel_rival:plugin"},
                       {"zoo_rel_rival": GOOD_PLUGIN.format(name="rival", arch="made")},
                       {"rival_cards/x.toml": plugin_card("made-mnist-bin", "rival", "made")})}
    with fake_plugins(ctx, [dists[name] for name in order if name in dists], "made,rival"):
        reg = zoo.plugins.registry()
        ctx.notes["conflicts"] = {k: sorted(v) for k, v in reg.conflicts.items()}
        return ask()


def _refused_both(ctx: Ctx) -> None:
    assert ctx.notes["conflicts"] == {"made": ["made", "rival"], "made-mnist-bin": ["made", "rival"]}, \
        ctx.notes["conflicts"]


add("plugins", "two plugins claim one model id", lambda ctx: _rivals(ctx, ["rival"], lambda: zoo.load("made-mnist-bin")),
    PluginError, "claimed by several plugins (made, rival)", _refused_both)
add("plugins", "two plugins claim one architecture",
    lambda ctx: _rivals(ctx, ["rival"], lambda: zoo.create("made", **TINY)), PluginError,
    "claimed by several plugins (made, rival)", _refused_both)
add("plugins", "two plugins claim one id: zoo info",
    lambda ctx: _rivals(ctx, ["rival"], lambda: cli("info", "made-mnist-bin")), CliError,
    "claimed by several plugins (made, rival)", _refused_both)


@case("plugins", "two distributions give the same plugin name (first by entry point wins, second refused)",
      UnknownModelError, "two plugins are named 'twin'")
def _(ctx: Ctx) -> Any:
    a = ("zoo-twin-a", {"twin": "zoo_rel_twin_a:plugin"}, {"zoo_rel_twin_a": GOOD_PLUGIN.format(name="twin",
                                                                                                arch="twin-a")},
         {"twin_cards/a.toml": plugin_card("twin-a", "twin", "twin-a")})
    b = ("zoo-twin-b", {"twin": "zoo_rel_twin_b:plugin"},
         {"zoo_rel_twin_b": GOOD_PLUGIN.format(name="twin", arch="twin-b").replace('"twin_cards"', '"twin_b_cards"')},
         {"twin_b_cards/b.toml": plugin_card("twin-b", "twin", "twin-b")})
    with fake_plugins(ctx, [a, b], "made,twin"):
        assert zoo.get_card("twin-a").plugin == "twin", "the first entry point (by module name) should win"
        return zoo.get_card("twin-b")


# ---- 8b. image folders as data (zoo train / zoo eval --data DIR) -------------------------------------------------
FOLDER_MADE = {"image_shape": [1, 6, 6], "levels": 2, "hidden": [8], "num_masks": 1}
FOLDER_PIXELCNN = {"image_shape": [1, 6, 6], "levels": 256, "hidden": 4, "layers": 1, "num_classes": 10}


def _folder_recipe(ctx: Ctx, conditional: bool = False) -> Path:
    """A tiny recipe to train on a folder: MADE, or a class-conditional PixelCNN."""
    data = card_data()
    del data["weights"], data["metrics"]
    data.update(id="folder-tiny", plugin="pixelcnn" if conditional else "made",
                architecture="pixelcnn" if conditional else "made",
                config=FOLDER_PIXELCNN if conditional else FOLDER_MADE,
                training={"epochs": 1, "batch_size": 8, "eval_batch_size": 16})
    path = ctx.tmp / "recipe.toml"
    path.write_text(toml_text(data), encoding="utf-8")
    return path


def _images(ctx: Ctx, name: str = "imgs", classes: tuple[str, ...] | None = None, n: int = 6) -> Path:
    from fakedata import make_image_folder
    return make_image_folder(ctx.tmp / name, classes=classes, n=n)


def _train_on(ctx: Ctx, folder: Path, *extra: Any, conditional: bool = False) -> str:
    return cli("train", _folder_recipe(ctx, conditional), "--data", folder, "--out", ctx.tmp / "run", "--threads", 1,
               *extra)


def _no_run(ctx: Ctx) -> None:
    assert not (ctx.tmp / "run").exists(), "the run folder was created although the run could not start"


def _empty_folder(ctx: Ctx) -> Path:
    (ctx.tmp / "imgs").mkdir()
    (ctx.tmp / "imgs" / "notes.txt").write_text("no images")
    return ctx.tmp / "imgs"


def _broken_files(ctx: Ctx) -> Path:
    d = _images(ctx, classes=("a", "b"))
    good = (d / "a" / "img000.png").read_bytes()
    (d / "a" / "cut.png").write_bytes(good[: len(good) // 2])
    (d / "b" / "text.jpg").write_text("not a jpeg")
    (d / "b" / "empty.png").write_bytes(b"")
    return d


def _dangling_link(ctx: Ctx) -> Path:
    d = _images(ctx, classes=("a", "b"))
    (d / "a" / "gone.png").symlink_to(ctx.tmp / "nowhere.png")
    return d


def _mixed_layout(ctx: Ctx) -> Path:
    d = _images(ctx, classes=("a", "b"))
    (d / "stray.png").write_bytes((d / "a" / "img000.png").read_bytes())
    return d


def _lonely_class(ctx: Ctx) -> Path:
    d = _images(ctx, classes=("a", "b"))
    for p in sorted((d / "b").iterdir())[1:]:
        p.unlink()
    return d


def _resume_other_folder(ctx: Ctx) -> None:
    _train_on(ctx, _images(ctx, "first"), "--max-steps", 1)
    ctx.notes["state"] = (ctx.tmp / "run" / "state.json").read_bytes()
    _train_on(ctx, _images(ctx, "second", n=7), "--resume")


def _state_kept(ctx: Ctx) -> None:
    assert (ctx.tmp / "run" / "state.json").read_bytes() == ctx.notes["state"], "the run's state changed"


def _folder_model(ctx: Ctx, conditional: bool = False) -> Path:
    classes = ("cats", "dogs") if conditional else None
    _train_on(ctx, _images(ctx, classes=classes), "--max-steps", 1, conditional=conditional)
    return ctx.tmp / "run"


add("folders", "zoo train --data: an empty folder (only a text file)", lambda ctx: _train_on(ctx, _empty_folder(ctx)),
    CliError, "no images found", _no_run)
add("folders", "zoo train --data: the folder does not exist", lambda ctx: _train_on(ctx, ctx.tmp / "nowhere"),
    CliError, "does not exist", _no_run)
add("folders", "zoo train --data: a file, not a folder",
    lambda ctx: _train_on(ctx, (p := ctx.tmp / "x.png", p.write_bytes(b"x"))[0]), CliError, "it is a file", _no_run)
add("folders", "zoo train --data: undecodable files (cut PNG, text .jpg, empty file), all named",
    lambda ctx: _train_on(ctx, _broken_files(ctx)), CliError, "3 file(s) cannot be decoded as images", _no_run)
add("folders", "zoo train --data: an unreadable file (dangling link)", lambda ctx: _train_on(ctx, _dangling_link(ctx)),
    CliError, "cannot be read", _no_run)
add("folders", "zoo train --data: images at the top level and in class subfolders",
    lambda ctx: _train_on(ctx, _mixed_layout(ctx)), CliError, "and class subfolders", _no_run)
add("folders", "zoo train --data: a class of one image", lambda ctx: _train_on(ctx, _lonely_class(ctx)), CliError,
    "only one image", _no_run)
add("folders", "zoo train --data: one class for a class-conditional model",
    lambda ctx: _train_on(ctx, _images(ctx, classes=("only",)), conditional=True), CliError,
    "one class subfolder ('only')", _no_run)
add("folders", "zoo train --data: a flat folder for a class-conditional model",
    lambda ctx: _train_on(ctx, _images(ctx), conditional=True), CliError, "no class subfolders", _no_run)
add("folders", "zoo train --data: together with --data-dir",
    lambda ctx: _train_on(ctx, _images(ctx), "--data-dir", ctx.shared.mnist), CliError, "give one or the other",
    _no_run)
add("folders", "zoo train --data --resume: another folder (refused, the run untouched)", _resume_other_folder,
    CliError, "it trained on folder:first", _state_kept)
add("folders", "zoo eval: a folder-trained model without --data",
    lambda ctx: cli("eval", f"local-dir:{_folder_model(ctx)}", "--nll"), CliError, "pass the folder with --data")
add("folders", "zoo eval --data: with --split test",
    lambda ctx: cli("eval", "made-mnist-bin", "--nll", "--data", _images(ctx), "--split", "test"), CliError,
    "held-out share")
add("folders", "zoo eval --data: other classes than the model's",
    lambda ctx: cli("eval", f"local-dir:{_folder_model(ctx, conditional=True)}", "--nll", "--data",
                    _images(ctx, "birds", classes=("owls", "gulls", "crows"), n=3)), CliError,
    "class-conditional with the classes cats, dogs")
add("folders", "zoo eval --data: an empty folder", lambda ctx: cli("eval", "made-mnist-bin", "--nll", "--data",
                                                                   _empty_folder(ctx)), CliError, "no images found")


# ---- 9. faults: training killed, checkpoint writes interrupted, downloads interrupted ----------------------------
RECIPE = dict(epochs=2, batch_size=10, lr=0.003, checkpoint_every=1, val_n=40, eval_batch_size=40, seed=0,
              schedule="cosine")


def _recipe(ctx: Ctx | Path, **training: Any) -> Path:
    """A tiny MADE recipe on the fake mnist-bin (200 training images: 20 steps an epoch)."""
    data = card_data()
    del data["weights"], data["metrics"]
    data.update(id="made-tiny-train", config={"image_shape": [1, 28, 28], "levels": 2, "hidden": [64],
                                              "num_masks": 2, "ordering": "agnostic"},
                training={**RECIPE, **training})
    base = ctx.tmp if isinstance(ctx, Ctx) else ctx
    path = base / "recipe.toml"
    path.write_text(toml_text(data), encoding="utf-8")
    return path


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env["ZOO_LOAD_PLUGINS"] = "made"
    return env


FAULT_CHILD = r"""
import os, sys
suffix, nth = sys.argv[1], int(sys.argv[2])
real_fsync, seen = os.fsync, [0]
def fsync(fd):
    # crash in the middle of writing a file: cut it to half its size and die, as a power cut or kill would
    path = os.readlink(f"/proc/self/fd/{fd}")
    if path.endswith(suffix):
        seen[0] += 1
        if seen[0] == nth:
            os.truncate(path, os.path.getsize(path) // 2)
            os._exit(137)
    return real_fsync(fd)
os.fsync = fsync
from zoo.cli import main
main(sys.argv[3:], standalone_mode=True)
"""


def _train_cmd(recipe: Path, out: Path, data: Path, *extra: str) -> list[str]:
    return ["train", str(recipe), "--out", str(out), "--data-dir", str(data), "--no-test", "--threads", "1", *extra]


def _train(args: list[str], fault: tuple[str, int] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    if fault is None:
        cmd = [sys.executable, "-m", "zoo.cli", *args]
    else:
        cmd = [sys.executable, "-c", FAULT_CHILD, fault[0], str(fault[1]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), timeout=timeout)


def _reference(shared: Shared) -> Path:
    """The uninterrupted run every fault case must reproduce, trained once per run."""
    def build(folder: Path) -> Path:
        r = _train(_train_cmd(_recipe(folder), folder / "run", shared.mnist))
        assert r.returncode == 0, r.stdout + r.stderr
        return folder / "run"
    return shared.get("reference-run", build)


def _same_weights(run: Path, ref: Path) -> str:
    a = zoo.weights.load_weights(run / "made-tiny-train.safetensors")
    b = zoo.weights.load_weights(ref / "made-tiny-train.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the reference"
    va, vb = (read_card(p / "card.toml").metric("val_nll").value for p in (run, ref))
    assert va == vb, f"val NLL {va} vs {vb}"
    return f"same weights as the uninterrupted run, bit for bit (val NLL {va})"


def _last_good_checkpoint(out: Path) -> int:
    state = json.loads((out / "state.json").read_text())
    zoo.weights.load_weights(out / state["checkpoint"], state["checkpoint_sha256"])  # intact, sha256 verified
    return state["global_step"]


@case("faults", "training killed with SIGKILL at a random step, then resumed", None, slow=True)
def _(ctx: Ctx) -> Any:
    ref = _reference(ctx.shared)
    recipe, out = _recipe(ctx), ctx.tmp / "run"
    total = 2 * 20
    target = _random.Random(os.environ.get("ZOO_FAULT_SEED")).randint(2, total - 6)
    proc = subprocess.Popen([sys.executable, "-m", "zoo.cli", *_train_cmd(recipe, out, ctx.shared.mnist)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_child_env())
    try:
        seen = -1
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            try:
                seen = json.loads((out / "state.json").read_text())["global_step"]
            except (OSError, ValueError, KeyError):
                pass
            if seen >= target:
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None and time.time() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-way (exit {proc.returncode}, step {seen})"
    step = _last_good_checkpoint(out)
    assert 0 < step < total, step
    r = _train(_train_cmd(recipe, out, ctx.shared.mnist, "--resume"))
    assert r.returncode == 0, r.stderr
    ctx.notes["result"] = f"killed at step {step} (target {target}); resumed: " + _same_weights(out, ref)


def _crash_mid_write(suffix: str, nth: int) -> Callable[[Ctx], Any]:
    def run(ctx: Ctx) -> Any:
        ref = _reference(ctx.shared)
        recipe, out = _recipe(ctx), ctx.tmp / "run"
        r = _train(_train_cmd(recipe, out, ctx.shared.mnist), fault=(suffix, nth))
        assert r.returncode == 137, f"the crash did not happen (exit {r.returncode}): {r.stderr[-500:]}"
        assert any(p.name.endswith(suffix) for p in out.iterdir()), "no half-written file was left"
        step = _last_good_checkpoint(out)  # the state file and the checkpoint it names are intact
        assert step == nth - 1 or (suffix.endswith(".safetensors.tmp") and step < nth), step
        r = _train(_train_cmd(recipe, out, ctx.shared.mnist, "--resume"))
        assert r.returncode == 0, r.stderr
        ctx.notes["result"] = f"crashed writing {suffix} #{nth}, last good step {step}; resumed: " + \
            _same_weights(out, ref)
    return run


CASES.append(Case("faults", "checkpoint write cut mid-file (process dies), then resumed",
                  _crash_mid_write("safetensors.tmp", 7), None, slow=True))
CASES.append(Case("faults", "state.json write cut mid-file (process dies), then resumed",
                  _crash_mid_write("state.json.tmp", 12), None, slow=True))


@case("faults", "a run stopped by --max-steps, continued with a larger --max-steps and --resume", None)
def _(ctx: Ctx) -> Any:
    # issue 15: the continued run once reported and shipped the first stop's weights, and its card dropped flags
    recipe, out, ref = _recipe(ctx), ctx.tmp / "run", ctx.tmp / "ref"
    cli(*_train_cmd(recipe, out, ctx.shared.mnist, "--epochs", "2", "--max-steps", "5"))
    first = zoo.weights.load_weights(out / "made-tiny-train.safetensors")
    cli(*_train_cmd(recipe, out, ctx.shared.mnist, "--epochs", "2", "--max-steps", "12", "--resume"))
    cli(*_train_cmd(recipe, ref, ctx.shared.mnist, "--epochs", "2", "--max-steps", "12"))
    a = zoo.weights.load_weights(out / "made-tiny-train.safetensors")
    b = zoo.weights.load_weights(ref / "made-tiny-train.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a), "the continued run does not ship the weights it trained"
    assert any(not torch.equal(a[k], first[k]) for k in a), "the continued run shipped the first stop's weights"
    val, val_ref = (read_card(p / "card.toml").metric("val_nll") for p in (out, ref))
    assert val.value == val_ref.value, f"val NLL {val.value} vs {val_ref.value} of a straight 12-step run"
    assert "--epochs 2" in val.command and "--max-steps 12 --resume" in val.command, val.command
    ctx.notes["result"] = f"ships the step-12 weights (val NLL {val.value}); card command: {val.command}"


def _run_with_state(ctx: Ctx) -> Path:
    """A run folder stopped by --max-steps after 3 steps."""
    out = ctx.tmp / "run"
    r = _train(_train_cmd(_recipe(ctx), out, ctx.shared.mnist, "--max-steps", "3"))
    assert r.returncode == 0, r.stderr
    return out


def _resume_broken(ctx: Ctx, damage: Callable[[Path], None]) -> Any:
    out = _run_with_state(ctx)
    damage(out)
    ctx.notes["files"] = _files(out)
    return cli(*_train_cmd(_recipe(ctx), out, ctx.shared.mnist, "--resume"))


def _run_untouched(ctx: Ctx) -> None:
    out = ctx.tmp / "run"
    now = _files(out)
    assert now == ctx.notes["files"], "the failed resume changed the run folder"


CASES.append(Case("faults", "resume from a state.json cut in half (clear error, folder untouched)",
                  lambda ctx: _resume_broken(ctx, lambda out: (out / "state.json").write_text(
                      (out / "state.json").read_text()[:50])), CliError, "unreadable run state", _run_untouched,
                  slow=True))
CASES.append(Case("faults", "resume from a corrupt checkpoint (clear error, folder untouched)",
                  lambda ctx: _resume_broken(ctx, lambda out: _flip_checkpoint(out)), CliError, "sha256 mismatch",
                  _run_untouched, slow=True))
CASES.append(Case("faults", "resume from a state.json naming a file outside the run",
                  lambda ctx: _resume_broken(ctx, lambda out: (out / "state.json").write_text(json.dumps(
                      {**json.loads((out / "state.json").read_text()), "checkpoint": "../../etc/passwd"}))),
                  CliError, "not a checkpoint file", _run_untouched, slow=True))


def _flip_checkpoint(out: Path) -> None:
    ck = next(out.glob("checkpoint-*.safetensors"))
    data = bytearray(ck.read_bytes())
    data[-5] ^= 0x01
    ck.write_bytes(bytes(data))


def _hub_files(ctx: Ctx) -> tuple[dict[str, bytes], zoo.Model]:
    """The files of a repo holding a tiny MADE, and the model."""
    model = tiny_model(seed=5)
    out = folder(ctx, state=model.state_dict())
    return _files(out), model


def _same_model(a: zoo.Model, b: zoo.Model) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa), "loaded weights differ from the published ones"


@case("faults", "Hub download cut mid-file every time: clear error, nothing corrupt cached, next load correct",
      None)
def _(ctx: Ctx) -> Any:
    files, model = _hub_files(ctx)
    with hub(ctx, files) as server:
        server.interrupt(REPO, WFILE, at=len(files[WFILE]) // 2, times=None)
        try:
            zoo.load(f"hf://{REPO}")
            raise AssertionError("a download cut mid-file was loaded")
        except WeightsError as e:
            assert "download failed" in str(e), e
        assert zoo.weights.hub_cached(REPO, WFILE) is None, "a partial file is in the cache as if complete"
        server.clear_faults()  # the network is back
        _same_model(zoo.load(f"hf://{REPO}"), model)
    ctx.notes["result"] = "WeightsError (download failed); no cache entry; the next load downloaded the right file"


@case("faults", "Hub download cut mid-file once: the client resumes, the weights are correct", None)
def _(ctx: Ctx) -> Any:
    files, model = _hub_files(ctx)
    with hub(ctx, files) as server:
        server.interrupt(REPO, WFILE, at=len(files[WFILE]) // 3, times=1)
        _same_model(zoo.load(f"hf://{REPO}"), model)
        ranged = [r for r in server.requests if r[0] == "GET" and r[1].endswith(WFILE)]
        assert len(ranged) >= 2, f"the cut was not exercised: {server.requests}"
    ctx.notes["result"] = "resumed after the cut; sha256 verified"


DOWNLOAD_CHILD = "import zoo, sys; zoo.load(sys.argv[1])"


@case("faults", "process killed with SIGKILL mid-download: the partial file is never trusted", None, slow=True)
def _(ctx: Ctx) -> Any:
    # made-mnist-bin's 12.8 MB file: the client writes in 10 MB chunks, so a stall at 11 MB leaves a partial file
    import zoo.export
    out = zoo.export.export("made-mnist-bin", ctx.tmp / "export")
    files = _files(out)
    wfile = zoo.get_card("made-mnist-bin").weights_file
    with hub(ctx, files) as server:
        server.interrupt(REPO, wfile, at=11 << 20, times=1, stall=True)
        proc = subprocess.Popen([sys.executable, "-c", DOWNLOAD_CHILD, f"hf://{REPO}"], env=_child_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline, partial = time.time() + 120, []
        while time.time() < deadline and proc.poll() is None and not partial:
            partial = [(p, p.stat().st_size) for p in (ctx.tmp / "hf").rglob("*.incomplete") if p.stat().st_size]
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        server.release()
        assert partial and proc.returncode == -signal.SIGKILL, \
            f"not killed mid-download (exit {proc.returncode}): {proc.stderr.read().decode()[-800:]}"
        assert zoo.weights.hub_cached(REPO, wfile) is None, "the killed download left a cache entry"
        _same_model(zoo.load(f"hf://{REPO}"), zoo.load("made-mnist-bin"))
    ctx.notes["result"] = (f"killed with {partial[0][1]:,} of {len(files[wfile]):,} bytes on disk; the next load "
                           "fetched a verified copy")


def _corrupt_cached_blob(ctx: Ctx) -> Path:
    path = zoo.weights.hub_cached(REPO, WFILE)
    assert path is not None
    blob = path.resolve()
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 2])  # a crash or disk error damaged the cache
    return blob


@case("faults", "cached Hub file damaged after download: detected and downloaded again", None)
def _(ctx: Ctx) -> Any:
    files, model = _hub_files(ctx)
    with hub(ctx, files) as server:
        zoo.load(f"hf://{REPO}")
        blob = _corrupt_cached_blob(ctx)
        server.clear_requests()
        _same_model(zoo.load(f"hf://{REPO}"), model)
        assert any(r[0] == "GET" and r[1].endswith(WFILE) for r in server.requests), "not downloaded again"
        assert zoo.weights.sha256_file(blob) == zoo.weights.sha256_file(ctx.tmp / "model" / WFILE), "cache not healed"
    ctx.notes["result"] = "sha256 mismatch in the cache -> downloaded again, cache healed, weights correct"


@case("faults", "cached Hub file damaged, offline: a clear error, never loaded", WeightsError, "sha256 mismatch")
def _(ctx: Ctx) -> Any:
    files, _ = _hub_files(ctx)
    with hub(ctx, files):
        zoo.load(f"hf://{REPO}")
        _corrupt_cached_blob(ctx)
    return zoo.load(f"hf://{REPO}")  # offline again (run_case's default)


# ---- 10. concurrency: several processes at once on one run folder, card, floors file or cache -----------------
# Each case starts WORKERS processes that import zoo, say they are ready, and wait at one gate: the parent opens it
# when all are ready, so they really do start together.
WORKERS = 4
AT_ONCE_CHILD = r"""
import json, os, sys, time
gate, ready, job = sys.argv[1], sys.argv[2], sys.argv[3]
import torch
torch.set_num_threads(1)
import zoo, zoo.cli, zoo.train
def wait_for(path, timeout=300):
    t0 = time.time()
    while not os.path.exists(path):
        if time.time() - t0 > timeout:
            sys.exit("timed out waiting for " + path)
        time.sleep(0.005)
open(ready, "w").close()
wait_for(gate)
exec(job)
"""


def _at_once(ctx: Ctx, job: str, args: list[list[str]], env: dict[str, str] | None = None) -> tuple[list, Path]:
    """Start one process per entry of `args` running `job` (Python; sys.argv[4:] are its args), all released at
    one gate; returns the Popen objects (not waited for) and the gate folder."""
    gates = ctx.tmp / "gates"
    gates.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([sys.executable, "-c", AT_ONCE_CHILD, str(gates / "go"), str(gates / f"ready-{i}"),
                               job, *a], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**_child_env(), **(env or {})})
             for i, a in enumerate(args)]
    deadline = time.time() + 240
    while not all((gates / f"ready-{i}").exists() for i in range(len(args))):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise AssertionError("a worker died before the start: " + " | ".join(
                p.communicate()[1][-400:] for p in procs))
        time.sleep(0.01)
    (gates / "go").touch()
    return procs, gates


def _finish(procs: list, timeout: float = 240) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        try:
            o, e = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            o, e = p.communicate()
        out.append((p.returncode, o, e))
    return out


TRAIN_JOB = r"""
# the run that gets the folder waits inside it (holding it) until the parent has seen every other start refused
real_fit = zoo.train._fit
def held_fit(*a, **k):
    with open(os.path.join(os.path.dirname(gate), "running"), "w") as f:
        f.write(str(os.getpid()))
    wait_for(os.path.join(os.path.dirname(gate), "finish"))
    return real_fit(*a, **k)
zoo.train._fit = held_fit
zoo.cli.main(sys.argv[4:], standalone_mode=True)
"""


@case("concurrency", f"{WORKERS} trainers (2 fresh, 2 --resume) started at once on one run folder: exactly one "
      "runs, the others are refused naming it (a --resume too early finds nothing to resume)", None)
def _(ctx: Ctx) -> Any:
    recipe, out = _recipe(ctx), ctx.tmp / "run"
    base = _train_cmd(recipe, out, ctx.shared.mnist, "--max-steps", "2")
    procs, gates = _at_once(ctx, TRAIN_JOB, [base, base, base + ["--resume"], base + ["--resume"]])
    deadline = time.time() + 240
    while sum(p.poll() is not None for p in procs) < WORKERS - 1 and time.time() < deadline:
        time.sleep(0.02)
    running = [p for p in procs if p.poll() is None]
    assert len(running) == 1 and (gates / "running").is_file(), f"{len(running)} trainers still running"
    winner = int((gates / "running").read_text())
    assert running[0].pid == winner, "the process inside the run is not the one still running"
    during = sorted(p.name for p in out.iterdir())
    (gates / "finish").touch()
    results = _finish(procs)
    import socket
    for p, (code, _, err) in zip(procs, results):
        if p is running[0]:
            assert code == 0, f"the trainer that held the folder failed: {err[-600:]}"
            continue
        msg = " ".join(err.split())
        assert code == 2 and "Traceback" not in err, f"exit {code}: {err[-600:]}"
        # a --resume that looks before any trainer has made the folder finds nothing to resume (and says so); one
        # that comes later is refused as in use, naming the trainer
        resumed = "--resume" in p.args
        assert f"in use by process {winner} on {socket.gethostname()}, started" in msg or (
            resumed and "holds no training run" in msg), msg
    state = json.loads((out / "state.json").read_text())
    assert state["global_step"] == 2 and (out / "card.toml").is_file()
    assert during == [".zoo-run.lock"], f"a refused trainer wrote into the run folder: {during}"
    ctx.notes["result"] = f"process {winner} trained; {WORKERS - 1} were refused with its pid, host and start time"


CARD_JOB = r"""
from zoo.cards import Metric, update_card, with_metric
me, k = sys.argv[4], int(sys.argv[5])
for i in range(k):
    metric = Metric(f"w{me}_{i}", float(i), "x", "test", 1, f"zoo eval made-tiny --w{me} {i}")
    update_card(sys.argv[6], lambda card: with_metric(card, metric))
"""
PER_WORKER = 12


@case("concurrency", f"{WORKERS} processes recording metrics in one card at once (--write-card): every metric kept",
      None)
def _(ctx: Ctx) -> Any:
    card = folder(ctx) / "card.toml"
    procs, _ = _at_once(ctx, CARD_JOB, [[str(i), str(PER_WORKER), str(card)] for i in range(WORKERS)])
    for code, _, err in _finish(procs):
        assert code == 0, err[-600:]
    names = {m.name for m in read_card(card).metrics}
    want = {f"w{i}_{j}" for i in range(WORKERS) for j in range(PER_WORKER)} | {"nll"}
    assert names == want, f"lost {len(want - names)} of {len(want)} metrics"
    assert not [p.name for p in card.parent.iterdir() if p.name.endswith(".tmp")], "temporary files left"
    ctx.notes["result"] = f"{len(want) - 1} metrics written by {WORKERS} processes at once, all kept, card valid"


FLOOR_JOB = r"""
from zoo.fid import FIDResult, record_floor
me, k = sys.argv[4], int(sys.argv[5])
for i in range(k):
    record_floor(sys.argv[6], f"data-{me}", FIDResult(1.0 + i, 2048 + i, 10000), f"zoo fid-floor data-{me}",
                 f'worker {me} says "{i}"')
"""


@case("concurrency", f"{WORKERS} processes recording FID floors in one file at once: every floor kept", None)
def _(ctx: Ctx) -> Any:
    path = ctx.tmp / "floors.toml"
    procs, _ = _at_once(ctx, FLOOR_JOB, [[str(i), str(PER_WORKER), str(path)] for i in range(WORKERS)])
    for code, _, err in _finish(procs):
        assert code == 0, err[-600:]
    from zoo.fid import known_floors
    floors = known_floors(path)
    assert len(floors) == WORKERS * PER_WORKER, f"{len(floors)} of {WORKERS * PER_WORKER} floors kept"
    assert floors[("data-1", 2048 + 3)]["note"] == 'worker 1 says "3"'
    ctx.notes["result"] = f"{len(floors)} floors written by {WORKERS} processes at once, all kept"


REF_JOB = r"""
from zoo import fid as zfid
calls = [0]
class Net(torch.nn.Module):  # a cheap stand-in for Inception that counts the images it sees
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.f = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, 2048))
    def forward(self, x):
        calls[0] += x.shape[0]
        time.sleep(0.2)  # as slow as a real network would make it, so the others arrive while it computes
        return self.f(x)
s = zfid.reference_stats("mnist", "test", Net(), sys.argv[4], batch_size=10)
print(json.dumps({"images": calls[0], "mu": float(s.mu.sum()), "n": s.n}))
"""


@case("concurrency", f"{WORKERS} evaluations needing one FID reference at once: computed once, the cache valid",
      None)
def _(ctx: Ctx) -> Any:
    cache = ctx.tmp / "fid-cache"
    procs, _ = _at_once(ctx, REF_JOB, [[str(ctx.shared.mnist)]] * WORKERS, env={"ZOO_FID_CACHE": str(cache)})
    results = _finish(procs)
    for code, _, err in results:
        assert code == 0, err[-600:]
    got = [json.loads(o.strip().splitlines()[-1]) for _, o, _ in results]
    computed = [g for g in got if g["images"]]
    assert len(computed) == 1, f"{len(computed)} processes computed the statistics"
    assert len({g["mu"] for g in got}) == 1 and len({g["n"] for g in got}) == 1, got
    from zoo.fid import Stats
    files = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert len(files) == 1 and Stats.load(cache / files[0], allow_foreign=False).n == got[0]["n"], files
    ctx.notes["result"] = (f"one process computed {computed[0]['images']} images' statistics, "
                           f"{WORKERS - 1} waited and read the cache")


HUB_JOB = r"""
m = zoo.load("hf://" + sys.argv[4])
print(json.dumps({"logp": float(m.log_prob(torch.ones(1, 1, 3, 3)).sum())}))
"""


@case("concurrency", f"{WORKERS} processes loading one Hub model at once into an empty cache: all load it, the "
      "cache valid", None)
def _(ctx: Ctx) -> Any:
    files, model = _hub_files(ctx)
    with hub(ctx, files) as server:
        procs, _ = _at_once(ctx, HUB_JOB, [[REPO]] * WORKERS,
                            env={"HF_ENDPOINT": server.url, "HF_HOME": str(ctx.tmp / "shared-hf"),
                                 "HF_HUB_OFFLINE": "0"})
        results = _finish(procs)
    for code, _, err in results:
        assert code == 0, err[-600:]
    with torch.no_grad():
        want = float(model.log_prob(torch.ones(1, 1, 3, 3)).sum())
    got = {json.loads(o.strip().splitlines()[-1])["logp"] for _, o, _ in results}
    assert got == {want}, (got, want)
    with environ(HF_HOME=str(ctx.tmp / "shared-hf")):
        blob = zoo.weights.hub_cached(REPO, WFILE)
        assert blob is not None and zoo.weights.sha256_file(blob) == zoo.weights.sha256_file(ctx.tmp / "model" / WFILE)
    left = [p.name for p in (ctx.tmp / "shared-hf").rglob("*") if p.name.endswith(".incomplete")]
    assert not left, f"partial downloads left in the cache: {left}"
    ctx.notes["result"] = f"{WORKERS} first loads at once: same weights everywhere, one valid cached copy"


# ---- fuzz properties (hypothesis drives them in tests/test_reliability.py and the report script) ------------------
def prop_card_parser(data: Any) -> None:
    """parse_card on any data: a CardError or a Card that survives dump -> TOML -> parse unchanged."""
    import tomllib
    try:
        card = parse_card(data)
    except CardError:
        return
    again = parse_card(tomllib.loads(dump_card(card)))
    assert again.to_dict() == card.to_dict()


def prop_card_text(text: str, tmp: Path) -> None:
    """read_card on any text: a CardError or a valid card."""
    path = tmp / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        read_card(path)
    except CardError:
        pass


def prop_mask_spec(spec: str) -> None:
    """parse_mask on any string: an InputError or a bool mask that fits the images."""
    x = torch.zeros(2, 1, 6, 5)
    try:
        m = zoo.masks.parse_mask(spec, x)
    except InputError:
        return
    assert m.dtype == torch.bool and m.shape[-3:] == (1, 6, 5)


def prop_check_images(x: torch.Tensor) -> None:
    """check_images on any tensor: an InputError or float images in [0, 1] of the model's shape."""
    from zoo.tokenizers import check_images
    try:
        y = check_images(x, (1, 4, 4))
    except InputError:
        return
    assert y.is_floating_point() and y.shape[1:] == (1, 4, 4) and not torch.isnan(y).any()
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def prop_image_folder(arrays: list[np.ndarray], tmp: Path) -> None:
    """load_image_folder on any images written as PNG (plus a broken file): an InputError or (N, C, H, W) in [0, 1]."""
    from PIL import Image

    from zoo import fid as zfid
    d = tmp / "imgs"
    d.mkdir(exist_ok=True)
    for p in d.iterdir():
        p.unlink()
    for i, a in enumerate(arrays):
        if a.dtype == np.uint8 and a.ndim == 0:
            (d / f"{i}.png").write_bytes(bytes([int(a)]) * 7)  # a broken file
        elif a.dtype in (np.int32, np.float32):  # 16-bit PNG; 32-bit float as a TIFF named .png
            Image.fromarray(a.astype(np.uint16) if a.dtype == np.int32 else a).save(
                d / f"{i}.png", format="PNG" if a.dtype == np.int32 else "TIFF")
        else:
            Image.fromarray(a).save(d / f"{i}.png")
    try:
        x = zfid.load_image_folder(d)
    except InputError:
        return
    assert x.dim() == 4 and x.shape[0] == len(arrays) and x.shape[1] in (1, 3)
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def prop_training_folder(arrays: list[np.ndarray], tmp: Path) -> None:
    """zoo train --data's folder loader on the same hostile images (in two class subfolders): a DataError, or
    both splits fitted to (1, 5, 5) uint8 with every image in exactly one of them."""
    from zoo.errors import DataError
    from zoo.image_folder import load_folder
    prop_image_folder(arrays, tmp)  # writes tmp/imgs (and checks zoo fid's loader on it)
    import shutil
    d = tmp / "imgs"
    for i, p in enumerate(sorted(d.glob("*.png"))):
        (d / ("a" if i % 2 else "b")).mkdir(exist_ok=True)
        p.rename(d / ("a" if i % 2 else "b") / p.name)
    with environ(ZOO_FOLDER_CACHE=str(tmp / "folder-cache")):
        try:
            train, val = (load_folder(d, split, (1, 5, 5), levels=256) for split in ("train", "val"))
        except DataError:
            return
        finally:
            for sub in ("a", "b"):
                shutil.rmtree(d / sub, ignore_errors=True)
    assert train.images.shape[1:] == (1, 5, 5) and train.images.dtype == torch.uint8
    assert len(train) + len(val) == len(arrays) and len(val) >= 1


def prop_safetensors_bytes(data: bytes, tmp: Path) -> None:
    """load_weights on any bytes: a WeightsError or a dict of tensors."""
    path = tmp / "fuzz.safetensors"
    path.write_bytes(data)
    try:
        state = zoo.weights.load_weights(path)
    except WeightsError:
        return
    assert all(isinstance(v, torch.Tensor) for v in state.values())


FUZZ_NAMES = ("card parser (data)", "card parser (TOML text)", "mask specs", "image tensors", "image folders",
              "training folders", "safetensors reader")


def fuzz_targets() -> dict[str, tuple[Any, Callable[[Any, Path], None]]]:
    """Each fuzz target: a hypothesis strategy of hostile inputs and the property every input must keep."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
                        st.dates())
    values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                          max_leaves=8)
    base = card_data()
    weights = st.fixed_dictionaries({}, optional={
        "file": st.one_of(st.just("m.safetensors"), st.text(max_size=30), st.sampled_from(
            ["../m.safetensors", "/m.safetensors", "a/m.safetensors", "m.pt", ".safetensors"])),
        "sha256": st.one_of(st.just("a" * 64), st.text(alphabet="0123456789abcdefABC", max_size=70)),
        "hub_repo": st.one_of(st.just("org/name"), st.text(max_size=20), st.just("org/..")),
        "hub_revision": st.one_of(st.just("main"), st.text(max_size=20), st.just("../x"))})
    data_tab = st.builds(lambda extra, ds: {**extra, "dataset": ds}, st.dictionaries(st.text(max_size=8), values,
                                                                                       max_size=3),
                         st.one_of(st.just("mnist-bin"), values))
    cards = st.fixed_dictionaries({}, optional={**{k: st.one_of(st.just(v), values) for k, v in base.items()},
                                                "weights": st.one_of(weights, values),
                                                "data": st.one_of(data_tab, values)})
    good_text = toml_text(base)
    texts = st.one_of(st.text(max_size=300), st.builds(lambda a, b: a + b, st.just(good_text), st.text(max_size=40)),
                      st.builds(lambda i, t: good_text[:i] + t + good_text[i:], st.integers(0, len(good_text)),
                                st.text(max_size=10)))
    specs = st.one_of(st.text(max_size=30), st.builds(
        lambda name, arg: f"{name}:{arg}", st.sampled_from(["first", "random", "box", "top-half", "center"]),
        st.text(alphabet="0123456789.,:-e+naif", max_size=25)))
    tensors = hnp.arrays(st.sampled_from([np.float32, np.float64, np.float16, np.uint8, np.int64, np.bool_]),
                         st.sampled_from([(1, 4, 4), (2, 1, 4, 4), (0, 1, 4, 4), (3, 1, 4, 4), (2, 3, 4, 4), (4, 4),
                                          (2, 1, 4, 5), (1, 1, 1, 4, 4)])).map(torch.from_numpy)
    images = st.lists(st.one_of(
        hnp.arrays(np.uint8, st.sampled_from([(4, 4), (4, 4, 3), (5, 4), (4, 4, 4)])),
        hnp.arrays(np.uint8, st.just(())),  # a broken file
        hnp.arrays(np.bool_, st.just((4, 4))),
        hnp.arrays(np.int32, st.just((4, 4)), elements=st.integers(0, 2**16 - 1)),
        hnp.arrays(np.float32, st.just((4, 4)), elements=st.floats(-10, 10, width=32))), max_size=4)
    headers = st.sampled_from([b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
                               b'{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}',
                               b'{"__metadata__": 3}', b'{"w": []}', b'{"w": {"dtype": "I8", "shape": [-1], '
                                                                     b'"data_offsets": [0, 1]}}'])
    blobs = st.one_of(st.binary(max_size=200),
                      st.builds(lambda n, body: n.to_bytes(8, "little") + body, st.integers(0, 300),
                                st.binary(max_size=200)),
                      st.builds(lambda h, body: _st(h, body), headers, st.binary(max_size=16)))
    return {"card parser (data)": (cards, lambda v, tmp: prop_card_parser(v)),
            "card parser (TOML text)": (texts, prop_card_text),
            "mask specs": (specs, lambda v, tmp: prop_mask_spec(v)),
            "image tensors": (tensors, lambda v, tmp: prop_check_images(v)),
            "image folders": (images, prop_image_folder),
            "training folders": (images, prop_training_folder),
            "safetensors reader": (blobs, prop_safetensors_bytes)}


def run_fuzz(name: str, tmp: Path, max_examples: int = 100) -> int:
    """Run one fuzz target for up to max_examples inputs; returns how many ran (a failure raises its example)."""
    from hypothesis import HealthCheck, given, settings
    strategy, prop = fuzz_targets()[name]
    tmp.mkdir(parents=True, exist_ok=True)
    count = [0]

    @settings(max_examples=max_examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def check(value: Any) -> None:
        count[0] += 1
        prop(value, tmp)
    with environ(ZOO_LOAD_PLUGINS="made,pixelcnn"):
        check()
    return count[0]
