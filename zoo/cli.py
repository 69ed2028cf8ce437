"""The `zoo` command line: a thin layer over the library (every command calls zoo's public functions)."""
from __future__ import annotations

import ast
import functools
import os
import sys
import warnings
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .card_text import dataset_text as _dataset_text, fid_text as _fid_text
from .card_text import head_text as _head_text, nll_short as _nll_short, nll_text as _nll_text, params as _params
from .cards import Metric, read_card, update_card, with_metric, write_card as save_card  # noqa: F401
from .errors import InputError, UnverifiedWeightsWarning, ZooError
from .records import command_line, eval_command, record_fid, record_nll, record_recon, set_argv  # noqa: F401
from .settings import UNSET, SamplingSettings, parse_class
from .plugins import registry


class _Lazy:
    """A module imported on first attribute access: `zoo --help`, `list`, `info` and `plugins` never import torch
    (seconds on a busy machine); the commands that compute import it when they first use it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str):
        import importlib
        return getattr(importlib.import_module(self._name), attr)


torch = _Lazy("torch")
api, zdata, zdist = _Lazy("zoo.api"), _Lazy("zoo.data"), _Lazy("zoo.distributed")
grid, zmasks = _Lazy("zoo.grid"), _Lazy("zoo.masks")

def _width() -> int | None:
    """Output width: $COLUMNS when set, the terminal's width, else 150 columns (a log file or a pipe)."""
    cols = os.environ.get("COLUMNS", "")
    return int(cols) if cols.isdigit() and int(cols) > 0 else (None if sys.stdout.isatty() else 150)


console = Console(width=_width())
err = Console(stderr=True)


def _precheck(model_id: str, n: int | None = None, n_flag: str = "'-n'") -> None:
    """Refuse what is wrong before torch is imported (a second or more): an unknown model id (with the near
    names) and a number of images below one. References to folders and the Hub are checked when loaded."""
    if n is not None and n <= 0:
        raise click.BadParameter(f"must be a positive integer (a number of images), got {n}", param_hint=n_flag)
    if not (model_id.startswith(("hf://", "local-dir:")) or Path(model_id).expanduser().is_dir()):
        from .api import get_card  # the registry and cards only: no torch
        get_card(model_id)


def _threads(n: int | None) -> None:
    from .threads import set_threads
    set_threads(n)


def _say(*args, **kwargs) -> None:
    """Print on rank 0 only (every process of a torchrun job runs the same command)."""
    if "zoo.distributed" not in sys.modules or zdist.is_main():
        console.print(*args, **kwargs)


def _progress():
    """A transient progress display on stderr, shown by rank 0 only."""
    from rich.progress import Progress
    return Progress(console=err, transient=True, disable=not zdist.is_main())


def _options(pairs: tuple[str, ...]) -> dict:
    out = {}
    for p in pairs:
        key, eq, value = p.partition("=")
        if not eq:
            raise click.BadParameter(f"'{p}' must be KEY=VALUE")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


class FamilyOptionsOption(click.Option):
    """`-o KEY=VALUE`, whose help lists each installed family's declared options with their types."""

    def get_help_record(self, ctx):
        try:
            fams = api.family_options()
        except Exception:  # help must never fail because a plugin does
            fams = {}
        listed = "; ".join(f"{arch}: " + ", ".join(f"{n}={t} (default {d!r}){': ' + h if h else ''}"
                                                   for n, t, d, h in fields) for arch, fields in fams.items())
        self.help = ("family option for log_prob, KEY=VALUE (VALUE a Python literal: 1, 0.5, 'text'); "
                     + (listed or "no installed family declares any"))
        return super().get_help_record(ctx)


class ZooGroup(click.Group):
    """Print zoo's own errors as one clear line (exit 2), never a traceback."""

    def main(self, args=None, *a, **k):
        set_argv(list(sys.argv[1:] if args is None else args))
        console.width = _width() or Console().width  # per invocation: a test runner may change $COLUMNS
        return super().main(args, *a, **k)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            from rich.markup import escape  # a message's own [brackets] ('.[demo]') are text, not markup
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            sys.exit(2)
        except KeyboardInterrupt as e:
            if not getattr(e, "reported", False):  # training says it once, with its checkpoint's step
                err.print("interrupted")
            sys.exit(130)


@click.group(cls=ZooGroup)
@click.version_option(package_name="ar-zoo")
def main() -> None:
    """A zoo of autoregressive image models: sample, complete, evaluate, train and share them."""


@main.command("list")
@click.argument("pattern", default="*")
def list_cmd(pattern: str) -> None:
    """Table of pretrained models (id, family, dataset, params, NLL, FID, cfd, weights). Below 110 columns the
    table is compact (no family, params or cfd; NLL in bits/dim for 8-bit data) so that every row fits on one
    line, and says so."""
    from rich import box

    from .api import list_models
    from .weights import weight_status
    narrow = console.width < 110
    table = Table(title="zoo models", box=None if narrow else box.HEAVY_HEAD, pad_edge=not narrow,
                  padding=(0, 1), show_edge=not narrow)
    cols = (("id", "dataset", "NLL", "FID (n; floor)", "weights") if narrow else
            ("id", "family", "dataset", "params", "NLL (test)", "FID", "cfd", "weights"))
    for col in cols:
        table.add_column(col, no_wrap=True)
    reg = registry()
    marked = False
    for mid in list_models(pattern):
        c = reg.cards[mid]
        nll = c.metric("nll")
        # several FIDs (n = 2,048 and 10,000): the largest n is the least biased
        fid = max((m for m in c.metrics if m.name == "fid"), key=lambda m: m.n, default=None)
        marked = marked or _dataset_text(c).endswith("*")
        if narrow:
            table.add_row(mid, _dataset_text(c), _nll_short(nll, c) if nll else "-",
                          _fid_text(fid, c, short=True) if fid else "-", weight_status(c))
            continue
        p = _params(c)
        cfd = max((m for m in c.metrics if m.name == "cfd"), key=lambda m: m.n, default=None)
        table.add_row(mid, c.plugin, _dataset_text(c), f"{p / 1e6:.2f}M" if p >= 0 else "?",
                      _nll_text(nll, c) if nll else "-", _fid_text(fid, c) if fid else "-",
                      f"{cfd.value:.2f} (n={cfd.n:,})" if cfd else "-", weight_status(c))
    console.print(table)
    notes = ["NLL on the test split: nats/image (binarized), bits/dim (8-bit), tok: nats/image of a tokenizer's "
             "codes; FID: n samples vs the test split, floor: real-vs-real at the same n",
             f"compact table for {console.width} columns: family, params and cfd are left out (a wider terminal, "
             "110 columns or more, shows them; `zoo info ID` shows everything)"] if narrow else []
    if marked:
        notes.append("*: measured on cifar10-jpeg, a JPEG re-encoded copy of CIFAR-10 (not comparable with "
                     "published CIFAR-10 figures)")
    for note in notes:
        console.print(note, highlight=False, soft_wrap=False)
    if reg.failures:
        err.print(f"[yellow]{len(reg.failures)} plugin(s) failed to load: see `zoo plugins`[/]")


def _print_table(title: str, values: dict, indent: str = "  ") -> None:
    """One section of `zoo info`: a heading, then `key  value` lines (nested tables indented), no JSON."""
    console.print(f"[bold]{title}[/]")
    width = max((len(str(k)) for k in values), default=0)
    for k, v in values.items():
        if isinstance(v, dict):
            console.print(f"{indent}{k}", highlight=False)
            for kk, vv in v.items():
                console.print(f"{indent}  {kk}: {_value_text(vv)}", highlight=False)
        else:
            console.print(f"{indent}{str(k):<{width}}  {_value_text(v)}", highlight=False)


def _value_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value_text(x) for x in v) + "]"
    if isinstance(v, int):
        return f"{v:,}" if abs(v) >= 10_000 else str(v)
    return str(v)


@main.command()
@click.argument("model_id")
def info(model_id: str) -> None:
    """Show a model's card: data, config, weights, training, and how each metric was measured."""
    from .api import card_of
    from .floors import known_floors
    from .weights import weight_status
    c = card_of(model_id)
    console.print(f"[bold]{c.id}[/]  ({c.plugin} / {c.architecture})", highlight=False)
    console.print(f"{c.description}\n", highlight=False)
    _print_table("data", c.data)
    _print_table("config", c.config)
    weights = {"file": c.weights_file, "sha256": c.sha256, "status": weight_status(c)}
    if c.params is not None:
        weights["params"] = c.params
    if c.hub_repo:
        weights["hub"] = c.hub_repo + (f"@{c.hub_revision}" if c.hub_revision else "")
    _print_table("weights", weights)
    head = _head_text(c)
    if head:
        console.print(f"[bold]output head[/]: {head}", highlight=False)
    if c.training:
        _print_table("training", c.training)
    if c.sampling:
        from .presets import describe
        console.print(f"[bold]sampling preset[/] (zoo sample's and zoo eval --fid's default; flags override it, "
                      f"--no-preset turns it off): {describe(c.sampling)}", highlight=False)
    console.print("[bold]metrics[/]")
    for m in c.metrics:
        console.print(f"  {m.name} = {m.value:g} {m.unit} on {m.split} (n={m.n:,})\n"
                      f"    reproduce: [cyan]{m.command}[/]" + (f"\n    {m.note}" if m.note else ""), highlight=False)
        floor = known_floors().get((c.dataset, m.n)) if m.name == "fid" else None
        if floor:
            console.print(f"    real-vs-real floor at n={m.n:,}: {floor['value']:g} ({floor['command']})",
                          highlight=False)


def sampling_options(fn):
    """The sampling flags shared by `zoo sample` and `zoo eval --fid`, one per SamplingSettings field (unset flags
    take the card's preset), and --no-preset. The command gets the fields' flags as one argument, `sampling`: each
    field's value as given (None: not given)."""
    spec = SamplingSettings.spec()

    @functools.wraps(fn)
    def command(*args, **kwargs):
        return fn(*args, sampling={name: kwargs.pop(name) for name in spec}, **kwargs)

    opts = []
    for name, s in spec.items():
        kind = (click.Choice(list(s.choices)) if s.choices and not s.index else
                float if float in s.toml else int if int in s.toml else str)
        text = s.help + (", or 'all' (one row per class; -n a multiple of the classes)"
                         if name == "classes" and fn.__name__ == "sample" else "")
        opts.append(click.option(s.flag, name, type=kind, default=None, help=text))
    opts.append(click.option("--no-preset", is_flag=True,
                             help="ignore the card's [sampling] preset: the model's own distribution, null class"))
    for opt in reversed(opts):
        command = opt(command)
    return command


def _sampling_kwargs(m, n: int, sampling: dict, no_preset: bool,
                     allow_all: bool = False) -> tuple[dict, int | None, str]:
    """Sample keyword arguments (UNSET where a flag is not given) from the sampling flags (`sampling_options`),
    the grid's row width ('all': one row per class), and the flags as they were given (for a recorded command)."""
    from dataclasses import replace
    values = dict(sampling)
    cls = values.pop("classes")
    nrow = None
    y = UNSET
    if cls == "all" and allow_all:
        if not m.num_classes or n % m.num_classes:
            raise InputError(f"--class all needs a class-conditional model and -n a multiple of its classes "
                             f"({m.num_classes or 'none'}); got -n {n}")
        nrow = n // m.num_classes
        y = torch.arange(m.num_classes).repeat_interleave(nrow)
    elif cls is not None:
        try:
            y = parse_class(cls)
        except InputError:
            raise InputError(f"--class must be a class index, 'uniform', 'null'"
                             f"{', or all' if allow_all else ''}; got {cls!r}") from None
    given = SamplingSettings.from_text(**values)
    if y is not UNSET:
        given = replace(given, classes=y)
    spec = SamplingSettings.spec()
    flags = "".join(f" {spec[k].flag} {v}" for k, v in sampling.items() if v is not None)
    flags += " --no-preset" if no_preset else ""
    return dict(given.sample_kwargs(unset=True), preset=not no_preset), nrow, flags


@main.command()
@click.argument("model_id")
@click.option("-n", "--num", "n", default=64, show_default=True, help="number of images")
@click.option("-o", "--output", default=None,
              help="PNG grid (or .pt for tensors); default samples.png, or samples-1.png, ... if that exists")
@click.option("--seed", type=int, default=0, show_default=True)
@sampling_options
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--weights", type=click.Path(), default=None,
              help="explicit weights file (sha256-checked: other weights than the card's are marked on the output)")
@click.option("--naive", is_flag=True, help="use the full-recompute reference sampler (slow)")
@click.option("--threads", type=int, default=None)
def sample(model_id, n, output, seed, sampling, no_preset, batch_size, device, weights, naive, threads) -> None:
    """Draw n images from a model and save them as a grid (under torchrun each process draws its share). The
    card's sampling preset (`zoo info`) is the default; every flag overrides it."""
    _precheck(model_id, n)
    _threads(threads)
    output = output or _free_name("samples.png")
    grid.check_output(output, extra=(".pt",))  # before the work, not after it
    with zdist.session(device) as dev:
        with warnings.catch_warnings():  # said below, once, in the CLI's own words
            warnings.simplefilter("ignore", UnverifiedWeightsWarning)
            m = api.load(model_id, weights=weights, device=dev)
        kw, nrow, _ = _sampling_kwargs(m, n, sampling, no_preset, allow_all=zdist.world_size() == 1)
        with _progress() as prog:
            task = prog.add_task(f"sampling {model_id}", total=zdist.shard(n)[1] - zdist.shard(n)[0])
            x = zdist.sample(m, n, seed=seed, batch_size=batch_size, naive=naive,
                             progress=lambda b: prog.advance(task, b), **kw)
        if zdist.is_main():
            if output.endswith(".pt"):
                torch.save(x.cpu(), output)
            else:
                img = grid.make_grid(x.cpu(), nrow=nrow)
                # a figure from weights the card does not describe says so on itself
                grid.save_image(grid.captioned(img, f"NOT {model_id}: {m.weights_note}") if m.weights_note
                                else img, output)
        procs = f", {zdist.world_size()} processes" if zdist.world_size() > 1 else ""
        what = f"{model_id}'s architecture with other weights" if m.weights_note else model_id
        _say(f"wrote {n} samples of {what} to {output} (seed {seed}{procs})", highlight=False, markup=False)
        if m.weights_note and zdist.is_main():
            err.print(f"[yellow]warning:[/] {m.weights_note}", highlight=False)


def _free_name(default: str) -> str:
    """The default output name, or the first free `stem-K.suffix` beside it: a default never overwrites a file
    (an explicit -o does, as asked)."""
    path = Path(default)
    k = 0
    while path.exists():
        k += 1
        path = Path(f"{Path(default).stem}-{k}{Path(default).suffix}")
    return str(path)


def _originals(model, n: int, data_dir, split: str, seed: int, download: bool = False,
               from_samples: bool = False):
    """The images to complete: the first n of the card's dataset split, or, asked for explicitly, the model's own
    samples (a missing dataset is the same clear error `zoo eval` gives)."""
    if from_samples:
        return model.sample(n, seed=seed + 1), f"{n} samples of the model (seed {seed + 1})"
    d = zdata.load_dataset(model.card.dataset, split, data_dir, download=download)
    x, _ = d.batch(torch.arange(min(n, len(d))))
    return x, f"{d.describe()}, first {len(x)}"


def data_options(fn):
    """--data-dir and --download, shared by every command that reads a dataset."""
    fn = click.option("--download", is_flag=True, help="fetch a missing dataset through torchvision (online)")(fn)
    return click.option("--data-dir", type=click.Path(), default=None,
                        help="dataset root (default: $ZOO_DATA_DIR or ~/.cache/zoo/data)")(fn)


@main.command()
@click.argument("model_id")
@click.option("--mask", "mask_spec", default="top-half", show_default=True,
              help="top-half, bottom-half, left-half, right-half, center, first:K, random:F[:SEED], box:T,L,H,W")
@click.option("-n", "--num", "n", default=16, show_default=True)
@click.option("-o", "--output", default=None,
              help="PNG grid; default completion.png, or completion-1.png, ... if that exists")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=None)
@click.option("--split", default="test", show_default=True)
@data_options
@click.option("--from-samples", is_flag=True, help="complete the model's own samples instead of dataset images "
                                                   "(no dataset needed)")
@click.option("--approximate", is_flag=True,
              help="accept the approximation a family names (VAR, order-agnostic MADE) for a mask it cannot "
                   "complete exactly; without it such a mask is refused")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None)
def complete(model_id, mask_spec, n, output, seed, temperature, top_k, split, data_dir, download, from_samples,
             approximate, device, threads) -> None:
    """Complete masked images of the card's dataset (--data-dir): rows of original | observed | completed. The
    completion is the exact conditional, or refused; --approximate accepts a family's named approximation."""
    from .mask_specs import split_spec
    split_spec(mask_spec)  # an unknown mask is said before torch is imported or any data read
    _precheck(model_id, n)
    _threads(threads)
    output = output or _free_name("completion.png")
    grid.check_output(output)
    m = api.load(model_id, device=device)
    zmasks.parse_mask(mask_spec, torch.zeros(1, *m.image_shape))  # a bad mask is said before any data is read
    x, source = _originals(m, n, data_dir, split, seed, download, from_samples)
    mask = zmasks.parse_mask(mask_spec, x)
    done = m.complete(x, mask, seed=seed, temperature=temperature, top_k=top_k, approximate=approximate)
    shown = grid.show_masked(x, mask.expand_as(x) if mask.dim() == 3 else mask)
    grid.save_image(grid.labelled_rows([("original", x), ("observed", shown), ("completed", done)]), output)
    console.print(f"wrote {len(x)} completions ({mask_spec}) of {source} to {output}")


@main.command("eval")
@click.argument("model_id")
@click.option("--nll", "do_nll", is_flag=True, help="exact test NLL (nats/image and bits/dim)")
@click.option("--fid", "do_fid", is_flag=True, help="FID of n samples against the test split")
@click.option("--kid", "do_kid", is_flag=True,
              help="KID (unbiased MMD^2, cubic kernel; mean and std over 100 subsets) of n samples against the split"
                   ", from the same Inception features as --fid")
@click.option("--kid-ref-n", type=int, default=None,
              help="KID: compare against the split's first N images (default all)")
@click.option("--cfd", "do_cfd", is_flag=True,
              help="classifier Frechet distance (not FID): n samples against the split in the features of zoo's "
                   "classifier for the dataset, with the real-vs-real floor at the same n; seconds, not minutes")
@click.option("--class-accuracy", "do_acc", is_flag=True,
              help="class-conditional models: the share of n samples (n / classes per class) that zoo's classifier "
                   "assigns to the class they were drawn for (compare with and without --cfg)")
@click.option("--recon", "do_recon", is_flag=True,
              help="a learned tokenizer's reconstruction PSNR and codebook usage on the split (VQ-VAE, VAR)")
@click.option("--recon-fid", "do_recon_fid", is_flag=True,
              help="FID of a learned tokenizer's reconstructions of the split's first n images (default all) "
                   "against the whole split: the ceiling its codes put on a generator's FID (VQ-VAE, VAR)")
@click.option("-n", "--num", "n", type=int, default=None,
              help="NLL: number of test images (default all); FID, KID, cfd, class accuracy: number of samples "
                   "(default 10,000)")
@click.option("--seed", type=int, default=0, show_default=True, help="sampling seed")
@click.option("--ref-n", type=int, default=None,
              help="FID: compare with the first N images of the split (default all; cached once computed)")
@click.option("--fid-weights", type=click.Path(), default=None, help="Inception weights file")
@click.option("--split", default=None, help="dataset split (default test; with --data the held-out share, val)")
@data_options
@click.option("--data", "folder", type=click.Path(), default=None,
              help="an image folder: evaluate on its held-out share, fitted to the model (see zoo train --data)")
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("-o", "--option", "opts", multiple=True, cls=FamilyOptionsOption)
@click.option("--write-card", type=click.Path(), default=None, help="record the result in this card file")
@sampling_options
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None)
def eval_cmd(model_id, do_nll, do_fid, do_kid, kid_ref_n, do_cfd, do_acc, do_recon, do_recon_fid, n, seed, ref_n,
             fid_weights, split, data_dir, download, folder, batch_size, opts, write_card, sampling, no_preset, device,
             threads) -> None:
    """Evaluate a model: exact NLL, FID, KID, cfd, class accuracy, reconstruction on a dataset split (optionally
    recorded in a card with its command). The figures are zoo.evaluate's: this command parses, calls and prints."""
    if not (do_nll or do_fid or do_kid or do_cfd or do_acc or do_recon or do_recon_fid):
        raise click.UsageError("choose a metric: --nll, --fid, --kid, --cfd, --class-accuracy, --recon and/or "
                               "--recon-fid")
    _precheck(model_id, n)
    if ref_n is not None and (ref_n < 2 or not do_fid):
        raise click.UsageError("--ref-n goes with --fid and needs at least 2 reference images")
    if kid_ref_n is not None and kid_ref_n < 2:
        raise click.BadParameter(f"must be at least 2, got {kid_ref_n}", param_hint="'--kid-ref-n'")
    if folder and (data_dir or download or split not in (None, "val")):
        raise click.UsageError("--data evaluates on the folder's held-out share: leave out --data-dir, --download "
                               "and --split")
    if folder and (do_kid or do_cfd or do_acc):
        raise click.UsageError("--kid, --cfd and --class-accuracy are measured against a named dataset's split; use "
                               "--fid or --nll with --data")
    options = _options(opts)  # bad options and a card we could not record in are refused before the evaluation
    if write_card:
        read_card(write_card)
    from . import evaluate as zeval  # torch: after the arguments are checked
    _threads(threads)
    with zdist.session(device) as dev:
        m = api.load(model_id, device=dev)
        if do_acc and (not m.num_classes or (n or 10_000) % m.num_classes):
            raise InputError(f"--class-accuracy needs a class-conditional model and -n a multiple of its classes "
                             f"({m.num_classes or 'none'}); got -n {n or 10_000}")
        if not (do_nll or do_fid or do_kid or do_cfd or do_recon or do_recon_fid):
            d = None  # class accuracy draws its own images: no dataset needed
        elif folder:
            import warnings

            from .image_folder import model_split
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                d = model_split(m, folder)
            for w in caught:
                err.print(f"[yellow]note:[/] {w.message}", highlight=False)
            d.extra["folder_flag"] = Path(folder).name
        else:
            d = zdata.load_dataset(m.card.dataset, split or "test", data_dir, download=download)
        if do_fid or do_kid or do_cfd or do_acc:
            kw, _, flags = _sampling_kwargs(m, n or 10_000, sampling, no_preset)
            kw = {k: v for k, v in kw.items() if v is not UNSET}
        results = []
        with _progress() as prog:
            def tasks(what: str, total: int):
                t = prog.add_task(what, total=total)
                return lambda b: prog.advance(t, b)

            def task(what: str, total: int):
                return tasks(what, total) if zdist.is_main() else None

            announce = lambda text: err.print(text, highlight=False)  # noqa: E731
            if do_recon and zdist.is_main():  # cheap next to sampling: rank 0 does all of it
                k = min(n or len(d), len(d))
                results.append(zeval.reconstruction(m, d, n=n, batch_size=batch_size, ref=model_id,
                                                    progress=task(f"encode/decode {d.name} {d.split}", k)))
            if do_recon_fid and zdist.is_main():
                results.append(zeval.recon_fid(m, d, n, batch_size=batch_size, data_dir=data_dir,
                                               fid_weights=fid_weights, tasks=tasks, announce=announce,
                                               ref=model_id))
            if do_nll:
                lo, hi = zdist.shard(min(n or len(d), len(d)))
                results.append(zeval.nll(m, d, n=n, batch_size=batch_size, distributed=True, ref=model_id,
                                         progress=task(f"NLL of {model_id} on {d.name} {d.split}", hi - lo),
                                         **options))
            if do_fid or do_kid:
                evaluate = zeval.kid if do_kid else zeval.fid
                extra = dict(fid=do_fid, kid_ref_n=kid_ref_n) if do_kid else dict(ref_n=ref_n)
                results.append(evaluate(m, d, n or (len(d) if folder else 10_000), seed=seed, data_dir=data_dir,
                                        fid_weights=fid_weights, distributed=True, tasks=tasks, announce=announce,
                                        ref=model_id, sampling_flags=flags, **extra, **kw))
            if do_cfd and zdist.is_main():
                results.append(zeval.cfd(m, d.name, n=n or 10_000, seed=seed, split=d.split, data_dir=data_dir,
                                         progress=task(f"sampling {n or 10_000:,} images", n or 10_000),
                                         ref=model_id, sampling_flags=flags, **kw))
            if do_acc and zdist.is_main():
                total = n or 10_000
                acc_kw = {k: v for k, v in kw.items() if k != "y"}
                results.append(zeval.class_accuracy(m, total // m.num_classes, seed=seed, ref=model_id,
                                                    progress=task(f"sampling {total:,} images", total),
                                                    sampling_flags=flags, **acc_kw))
        if not zdist.is_main():
            return
        for r in results:
            text = f"NLL {r}  [{d.describe()}]" if isinstance(r, zeval.NLLResult) else str(r)
            if isinstance(r, zeval.ReconResult) and d is not None:
                text += f"  [{d.describe()}]"
            for line in text.splitlines():
                console.print(f"{model_id}: {line}", highlight=False, markup=False)
        if write_card:
            from .records import with_metrics
            metrics = [mt for r in results for mt in r.metrics]
            update_card(write_card, lambda card: with_metrics(card, metrics))
            console.print(f"recorded in {write_card}")


def _shell(s: str) -> str:
    import shlex
    return shlex.quote(s)


@main.command("runs")
@click.argument("root", default="runs", type=click.Path())
@click.option("--curve", "curve", type=click.Path(), default=None,
              help="draw this run folder's learning curve (loss, validation NLL and cfd against the step)")
@click.option("-o", "--output", default=None, help="the curve's PNG (default RUN/curve.png)")
@click.option("--x", "x_axis", type=click.Choice(["step", "core-hours"]), default="step", show_default=True,
              help="the curve's x axis: training steps, or the compute spent (CPU threads or processes x hours of "
                   "training, validations left out)")
def runs_cmd(root: str, curve: str | None, output: str | None, x_axis: str) -> None:
    """Training runs under ROOT (default runs/): progress, best validation figures, speed, ETA; or --curve RUN
    to draw one run's learning curve as a PNG. Reads the run folders only: safe beside a running training."""
    from . import runs as zruns
    if curve:
        path = zruns.curve_png(curve, output or Path(curve) / "curve.png", x_axis=x_axis)
        console.print(f"wrote {path}", highlight=False)
        return
    folders = zruns.find_runs(root)
    if not folders:
        console.print(f"no run folders under {root} (a run folder holds the state.json that zoo train writes)",
                      highlight=False)
        return
    table = Table(title=f"runs under {root}", padding=(0, 1))
    for col in ("run", "progress", "best val NLL (epoch)", "val cfd", "images/s", "ETA", "updated"):
        table.add_column(col, no_wrap=col != "run")
    for f in folders:
        s = zruns.status(f)
        done = "finished" if s.finished else (f"step {s.step:,}/{s.total:,} ({100 * s.step / s.total:.0f}%)"
                                              if s.total else f"step {s.step:,}")
        table.add_row(str(f.relative_to(root)) if f != Path(root) else f.name,
                      f"{done}, epoch {s.epoch}/{s.epochs or '?'}",
                      f"{s.best_nll:.5g} ({s.best_epoch})" if s.best_nll is not None else "-",
                      f"{s.best_cfd:.4g}" if s.best_cfd is not None else "-",
                      f"{s.images_per_s:.0f}" if s.images_per_s else "-", zruns.describe_eta(s.eta_s),
                      zruns.age(s.updated))
    console.print(table)


@main.command("fid")
@click.argument("path_a", type=click.Path(exists=True))
@click.argument("path_b", type=click.Path(exists=True))
@click.option("--batch-size", type=int, default=None,
              help="images per Inception pass  [default: 8 on a CPU, 50 on a GPU]")
@click.option("--fid-weights", type=click.Path(), default=None, help="Inception weights file")
@click.option("--save-stats", type=click.Path(), default=None, help="write PATH_A's statistics to this .npz")
@click.option("--kid", "do_kid", is_flag=True, help="also KID (needs two image folders: statistics files hold no "
                                                     "features)")
@click.option("--threads", type=int, default=None)
def fid_cmd(path_a, path_b, batch_size, fid_weights, save_stats, do_kid, threads) -> None:
    """FID between two image folders or .npz statistics files (like pytorch-fid's command line); with --kid,
    KID between two image folders from the same features."""
    from rich.progress import Progress

    from . import fid as zfid
    _threads(threads)
    if do_kid and any(str(p).endswith(".npz") for p in (path_a, path_b)):
        raise click.UsageError("--kid needs two image folders: an .npz of FID statistics holds no features")
    net = None
    stats, feats = [], []
    with Progress(console=err, transient=True) as prog:
        for path in (path_a, path_b):
            if str(path).endswith(".npz"):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", zfid.FIDStatsWarning)
                    stats.append(zfid.Stats.load(path))
                for w in caught:
                    err.print(f"[yellow]warning:[/] {w.message}", highlight=False)
                continue
            x = zfid.load_image_folder(path)
            net = net or zfid.load_inception(fid_weights)
            task = prog.add_task(f"features of {path}", total=len(x))
            feats.append(zfid.features(x, net, batch_size, lambda b: prog.advance(task, b)))
            stats.append(zfid.Stats.from_features(feats[-1], str(path)))
    if save_stats:
        stats[0].save(save_stats)
    console.print(str(zfid.fid(*stats)), highlight=False, markup=False)
    if do_kid:
        from .kid import kid
        console.print(str(kid(*feats)), highlight=False)


@main.command("fid-stats")
@click.argument("datasets", nargs=-1, required=True)
@click.option("--split", default="test", show_default=True)
@click.option("--ref-n", type=int, default=None, help="first N images of the split (default all)")
@click.option("--fid-weights", type=click.Path(), default=None, help="Inception weights file")
@data_options
@click.option("--threads", type=int, default=None)
def fid_stats(datasets, split, ref_n, fid_weights, data_dir, download, threads) -> None:
    """Precompute the FID reference statistics of datasets' splits once (the slow part of a first `zoo eval --fid`);
    they are cached in $ZOO_FID_CACHE (default ~/.cache/zoo/fid) for every later evaluation."""
    from rich.progress import Progress

    from . import fid as zfid
    _threads(threads)
    for name in datasets:  # every dataset is checked before any work
        zdata.load_dataset(name, split, data_dir, download=download)
    net = zfid.load_inception(fid_weights)
    for name in datasets:
        cached, count, path = zfid.reference_cached(name, split, data_dir, ref_n)
        if cached:
            console.print(f"{name} {split}: {count:,} images, cached already in {path}", highlight=False)
            continue
        with Progress(console=err, transient=True) as prog:
            task = prog.add_task(f"Inception features of {name} {split}", total=count)
            zfid.reference_stats(name, split, net, data_dir, n=ref_n, progress=lambda b: prog.advance(task, b))
        console.print(f"{name} {split}: {count:,} images, statistics cached in {path}", highlight=False)


@main.command("fid-floor")
@click.argument("dataset")
@click.option("-n", "--num", "n", type=int, default=10_000, show_default=True, help="train images compared")
@click.option("--fid-weights", type=click.Path(), default=None, help="Inception weights file")
@data_options
@click.option("--write", "write_path", type=click.Path(), default=None,
              help="record the floor in this floors file (zoo/fid_floors.toml is the one zoo ships)")
@click.option("--kid", "do_kid", is_flag=True, help="also the KID floor: the same train images against the test split")
@click.option("--kid-ref-n", type=int, default=None, help="KID: the test split's first N images (default all)")
@click.option("--threads", type=int, default=None)
def fid_floor(dataset, n, fid_weights, data_dir, download, write_path, do_kid, kid_ref_n, threads) -> None:
    """Real-vs-real FID floor: the first n train images against the test split, as model FIDs are measured."""
    from rich.progress import Progress

    from . import fid as zfid
    _threads(threads)
    zdata.load_dataset(dataset, "test", data_dir, download=download)  # a clear error before any work
    if write_path:
        zfid.known_floors(write_path)  # a floors file we could not update is refused before the work, too
    net = zfid.load_inception(fid_weights)
    with Progress(console=err, transient=True) as prog:
        task = prog.add_task(f"Inception features of {dataset} train (first {n:,}) and test", total=None)
        if do_kid:  # features first: they also fill the statistics cache that the FID floor reads
            from .kid import kid
            train_feats = zfid.reference_features(dataset, "train", net, data_dir, n=n,
                                                  progress=lambda b: prog.advance(task, b))
            test_feats = zfid.reference_features(dataset, "test", net, data_dir, n=kid_ref_n,
                                                 progress=lambda b: prog.advance(task, b))
        r = zfid.real_floor(dataset, n, net, data_dir, progress=lambda b: prog.advance(task, b))
    console.print(f"{dataset}: real-vs-real {r}", highlight=False)
    if do_kid:
        console.print(f"{dataset}: real-vs-real {kid(train_feats, test_feats)}", highlight=False)
    if write_path:
        zfid.record_floor(write_path, dataset, r, f"zoo fid-floor {dataset} -n {n}",
                          f"first {n:,} of the train split vs the {r.n_b:,} test images; {zfid.PREPROCESSING}")
        console.print(f"recorded in {write_path}")


@main.command()
@click.argument("model_id")
@click.option("--out", type=click.Path(), default=None, help="run folder (default runs/MODEL_ID)")
@click.option("--epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--patience", type=int, default=None, help="early stopping: epochs without improvement")
@click.option("--max-steps", type=int, default=None)
@click.option("--time-limit", type=float, default=None, help="stop at the first checkpoint (or epoch end) after this many seconds; continue with --resume")
@click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default=None)
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default=None)
@click.option("--weight-decay", type=float, default=None)
@click.option("--grad-clip", type=float, default=None, help="max gradient norm (0: no clipping)")
@click.option("--warmup-steps", type=int, default=None,
              help="steps of linear learning-rate warm-up (a warm start with --init wants some: Adam's first "
                   "steps move every weight by about the learning rate)")
@click.option("--checkpoint-every", type=int, default=None, help="steps between checkpoints (and --time-limit checks)")
@click.option("--val-n", type=int, default=None, help="validate on the first N validation images (default all)")
@click.option("--time-budget", type=float, default=None,
              help="size the schedule to this many seconds: after 120 steps the speed is measured and the epochs set "
                   "to what fits (at most the recipe's), shortened later if whole epochs run slower; a hard --time-limit of "
                   "1.1x stands behind it")
@click.option("--ema", type=float, default=None,
              help="Polyak averaging of the weights with this decay (e.g. 0.999): each validation scores the raw and "
                   "the averaged weights, and the better ships")
@click.option("--val-cfd", type=int, default=None,
              help="at each validation, draw N samples and record their classifier Frechet distance (cfd) to the "
                   "validation split; every validation also writes a grid of samples to OUT/samples/")
@click.option("--select", type=click.Choice(["nll", "cfd"]), default=None,
              help="what chooses the shipped checkpoint (and raw or averaged weights): validation NLL (default) or "
                   "the cfd of --val-cfd samples")
@click.option("--tensorboard", is_flag=True, default=None,
              help="also log the run's figures as TensorBoard scalars in OUT/tensorboard/ (pip install "
                   "'ar-zoo[tensorboard]')")
@click.option("--keep-epochs", is_flag=True, default=None,
              help="also keep the weights each epoch would ship as OUT/epochs/epoch-NNN.safetensors (for FID per "
                   "epoch: scripts/learning_curve.py)")
@click.option("--hflip", is_flag=True, default=None,
              help="mirror a random half of each training batch left-right (natural images such as CIFAR-10, whose "
                   "mirror images are as likely; not digits)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@click.option("--init", default=None,
              help="start from these weights instead of a fresh initialisation, with a new schedule: a model id, "
                   "run folder or hf:// ref of the same architecture (e.g. more epochs for a shipped card)")
@data_options
@click.option("--data", "folder", type=click.Path(), default=None,
              help="train on this image folder instead of the card's dataset (flat, or one subfolder per class)")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--no-test", is_flag=True, help="skip the test-set NLL at the end")
@click.option("--amp", is_flag=True, help="mixed precision: bfloat16 autocast (CPU, recent GPUs) or float16 with "
                                        "gradient scaling (older GPUs)")
@click.option("--compile", "compile_", is_flag=True, help="run the training loss through torch.compile")
def train(model_id, out, epochs, batch_size, lr, seed, patience, max_steps, time_limit, optimizer, schedule,
          weight_decay, grad_clip, warmup_steps, checkpoint_every, val_n, time_budget, ema, val_cfd, select,
          tensorboard, keep_epochs, hflip, resume, init, data_dir, download, folder, device, threads, no_test,
          amp, compile_) -> None:
    """Train a model described by a card (an id or a card.toml path); resumable. Under torchrun every process
    trains its share of each global batch (--batch-size is the global batch) with DistributedDataParallel."""
    from .train import train_card
    _threads(threads)
    card = read_card(model_id, recipe=True) if model_id.endswith(".toml") else api.get_card(model_id)
    overrides = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=patience,
                                         max_steps=max_steps, time_limit=time_limit, optimizer=optimizer,
                                         schedule=schedule, weight_decay=weight_decay, grad_clip=grad_clip,
                                         warmup_steps=warmup_steps,
                                         checkpoint_every=checkpoint_every, val_n=val_n, ema=ema,
                                         val_cfd=val_cfd, select=select, tensorboard=tensorboard,
                                         keep_epochs=keep_epochs, hflip=hflip,
                                         time_budget=time_budget, init=init).items()
                 if v is not None}
    out = Path(out or f"runs/{card.id}")
    if resume:
        from .runs import nothing_to_resume, no_run_to_resume
        if nothing_to_resume(out):
            raise InputError(no_run_to_resume(out))
    if folder:
        _say(f"training {card.id}'s architecture on the image folder {folder} (--data wins over the card's "
             f"dataset, {card.dataset})", highlight=False)
    with zdist.session(device):
        new, result = train_card(card, out, overrides, resume=resume, data_dir=data_dir, download=download,
                                 device=device, eval_test=not no_test, amp=amp, compile=compile_, data=folder,
                                 command=command_line())
        procs = f" ({zdist.world_size()} processes)" if zdist.world_size() > 1 else ""
        _say(f"best {new.metrics[0].name} {result.best_val_nll:.4g} {new.metrics[0].unit} {result.when}{procs}; "
             f"wrote {out / new.weights_file} and {out / 'card.toml'}")
        for m in new.metrics:
            _say(f"  {m.name} = {m.value:.3f} {m.unit} ({m.split}, n={m.n})")


@main.command()
@click.argument("model_id")
@click.argument("out", type=click.Path())
@click.option("--repo", default=None, help="Hub repo id to record in the card (org/name)")
@click.option("--overwrite", is_flag=True)
def export(model_id, out, repo, overwrite) -> None:
    """Write a folder ready to upload to the Hugging Face Hub (card.toml, weights, README.md).

    MODEL_ID is a card id, or your own trained model: a `zoo train` run folder (runs/mine, or local-dir:runs/mine),
    which holds its card.toml and weights. Then: `hf upload ORG/NAME OUT` and zoo.load("hf://ORG/NAME").
    """
    from .export import export as do_export
    path = do_export(model_id, out, repo=repo, overwrite=overwrite)
    target = repo or "ORG/NAME"
    console.print(f"exported {model_id} to {path}; upload with `hf upload {target} {path}`, then load with "
                  f"zoo.load('hf://{target}')", highlight=False)


@main.command()
def plugins() -> None:
    """Installed plugins, their versions, and any that failed to load."""
    reg = registry()
    table = Table(title="zoo plugins")
    for col in ("plugin", "version", "architectures", "models"):
        table.add_column(col)
    for p in reg.plugins.values():
        n = sum(1 for c in reg.cards.values() if c.plugin == p.name)
        table.add_row(p.name, p.version, ", ".join(p.architectures), str(n))
    console.print(table)
    shipped = {p.name: ", ".join(p.datasets) for p in reg.plugins.values() if p.datasets}
    for name, names in shipped.items():  # the datasets themselves: `zoo datasets`
        console.print(f"{name} ships datasets: {names}", highlight=False)
    for f in reg.failures:
        console.print(f"[red]failed[/] {f.name} ({f.source}): {f.error}", highlight=False)
    for key, owners in reg.conflicts.items():
        console.print(f"[red]conflict[/] '{key}' claimed by {', '.join(owners)}: refused", highlight=False)


@main.command()
@click.option("--data-dir", type=click.Path(), default=None,
              help="dataset root (default: $ZOO_DATA_DIR or ~/.cache/zoo/data)")
def datasets(data_dir) -> None:
    """Installed datasets (zoo's own and plugins'), and whether each is present under the data root."""
    from .datasets import list_datasets
    root = zdata.data_root(data_dir)
    table = Table(title=f"zoo datasets (data root {root})")
    for col in ("dataset", "plugin", "images", "classes", "on disk", "layout under the data root"):
        # paths fold at any character in a narrow terminal rather than end in an ellipsis: every one is complete
        table.add_column(col, no_wrap=col in ("dataset", "on disk"),
                         overflow="fold" if col.startswith("layout") else "ellipsis")
    for plugin, ds in list_datasets():
        try:
            present = "yes" if ds.present(root) else "no"
        except Exception as e:  # a plugin's check must not break the listing
            present = f"error: {type(e).__name__}"
        table.add_row(ds.name, plugin, "x".join(map(str, ds.image_shape)), str(len(ds.classes)), present,
                      ds.layout)
    console.print(table)
    console.print("Any image folder is data too: zoo train ID --data DIR (see the README).", highlight=False)
    reg = registry()
    names = {d for p in reg.plugins.values() for d in p.datasets}
    for key, owners in reg.conflicts.items():
        if key in names:
            err.print(f"[red]conflict[/] '{key}' claimed by {', '.join(owners)}: refused", highlight=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to bind (0.0.0.0 serves every interface: only on a network you trust)")
@click.option("--port", type=int, default=7860, show_default=True)
@click.option("--share", is_flag=True, help="also open a public gradio.live link (never unless asked; needs internet)")
@click.option("--model", "models", multiple=True,
              help="serve only this id or local-dir: folder (repeatable; default: every installed model)")
@click.option("--threads", type=int, default=None)
def demo(host, port, share, models, threads) -> None:
    """Serve the demo page at http://HOST:PORT: browse the catalogue, sample, complete a painted mask. Offline on
    the bundled weights; needs the demo extra (pip install -e '.[demo]'). Ctrl-C stops it."""
    from rich.markup import escape

    from .demo import serve
    try:
        serve(host=host, port=port, share=share, models=list(models) or None, threads=threads)
    except ZooError as e:  # said here with its brackets kept: the install hint names the '.[demo]' extra
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
