"""The `zoo` command line: a thin layer over the library (every command calls zoo's public functions)."""
from __future__ import annotations

import ast
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.table import Table

from . import api, data as zdata, distributed as zdist, grid, masks as zmasks
from .cards import Metric, read_card, with_metric, write_card as save_card
from .errors import ZooError
from .plugins import registry

console = Console(width=None if sys.stdout.isatty() else 150)
err = Console(stderr=True)


def _threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(n)


def _say(*args, **kwargs) -> None:
    """Print on rank 0 only (every process of a torchrun job runs the same command)."""
    if zdist.is_main():
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


class ZooGroup(click.Group):
    """Print zoo's own errors as one clear line (exit 2), never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False)
            sys.exit(2)
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)


@click.group(cls=ZooGroup)
@click.version_option(package_name="zoo")
def main() -> None:
    """A zoo of autoregressive image models: sample, complete, evaluate, train and share them."""


def _params(card) -> int:
    try:
        with torch.device("meta"):
            return api.create(card.architecture, **card.config).num_params
    except Exception:
        return -1


def _nll_text(m, card) -> str:
    arch = registry().architectures.get(card.architecture)
    if arch is not None and getattr(arch[1], "likelihood", "pixels") == "tokens":
        return f"{m.value:.2f} nats (tokens)"
    dims = math.prod(card.config.get("image_shape", [1]))
    bpd = f" ({m.value / (dims * math.log(2)):.2f} bpd)" if card.dataset != "mnist-bin" else ""
    return f"{m.value:.2f} nats{bpd}"


def _fid_text(m, card) -> str:
    from .fid import known_floors
    floor = known_floors().get((card.dataset, m.n))
    return f"{m.value:.1f} (n={m.n:,}" + (f"; floor {floor['value']:.1f})" if floor else ")")


@main.command("list")
@click.argument("pattern", default="*")
def list_cmd(pattern: str) -> None:
    """Table of pretrained models (id, family, dataset, params, NLL, FID, weights)."""
    from .weights import weight_status
    table = Table(title="zoo models")
    for col in ("id", "family", "dataset", "params", "NLL (test)", "FID", "weights"):
        table.add_column(col, no_wrap=col in ("id", "dataset"))
    reg = registry()
    for mid in api.list_models(pattern):
        c = reg.cards[mid]
        nll = c.metric("nll")
        # several FIDs (n = 2,048 and 10,000): the largest n is the least biased
        fid = max((m for m in c.metrics if m.name == "fid"), key=lambda m: m.n, default=None)
        p = _params(c)
        table.add_row(mid, c.plugin, c.data.get("copy", c.dataset) if c.dataset.startswith("cifar") else c.dataset,
                      f"{p / 1e6:.2f}M" if p >= 0 else "?",
                      _nll_text(nll, c) if nll else "-",
                      _fid_text(fid, c) if fid else "-", weight_status(c))
    console.print(table)
    if reg.failures:
        err.print(f"[yellow]{len(reg.failures)} plugin(s) failed to load: see `zoo plugins`[/]")


@main.command()
@click.argument("model_id")
def info(model_id: str) -> None:
    """Show a model's card: config, data, weights and how each metric was measured."""
    from .weights import weight_status
    c = api.get_card(model_id)
    console.print(f"[bold]{c.id}[/]  ({c.plugin} / {c.architecture})\n{c.description}\n")
    console.print(f"[bold]data[/]: {json.dumps(c.data, indent=1)}")
    console.print(f"[bold]config[/]: {json.dumps(c.config)}")
    console.print(f"[bold]weights[/]: {c.weights_file} sha256 {c.sha256} ({weight_status(c)}"
                  f"{', hub ' + c.hub_repo if c.hub_repo else ''})")
    if c.training:
        console.print(f"[bold]training[/]: {json.dumps(c.training)}")
    for m in c.metrics:
        if m.name == "fid":
            from .fid import known_floors
            floor = known_floors().get((c.dataset, m.n))
            if floor:
                m = replace(m, note=f"{m.note}\n    real-vs-real floor at n={m.n:,}: {floor['value']:g} "
                                    f"({floor['command']})")
        console.print(f"[bold]{m.name}[/] = {m.value:g} {m.unit} on {m.split} (n={m.n:,})\n    "
                      f"reproduce: [cyan]{m.command}[/]{chr(10) + '    ' + m.note if m.note else ''}",
                      highlight=False)


@main.command()
@click.argument("model_id")
@click.option("-n", "--num", "n", default=64, show_default=True, help="number of images")
@click.option("-o", "--output", default="samples.png", show_default=True, help="PNG grid (or .pt for tensors)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=None)
@click.option("--top-p", type=float, default=None)
@click.option("--cfg", type=float, default=None, help="classifier-free guidance scale (class-conditional models)")
@click.option("--class", "cls", type=int, default=None, help="class index to condition on")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--weights", type=click.Path(), default=None, help="explicit weights file")
@click.option("--naive", is_flag=True, help="use the full-recompute reference sampler (slow)")
@click.option("--threads", type=int, default=None)
def sample(model_id, n, output, seed, temperature, top_k, top_p, cfg, cls, batch_size, device, weights, naive,
           threads) -> None:
    """Draw n images from a model and save them as a grid (under torchrun each process draws its share)."""
    _threads(threads)
    grid.check_output(output, extra=(".pt",))  # before the work, not after it
    with zdist.session(device) as dev:
        m = api.load(model_id, weights=weights, device=dev)
        with _progress() as prog:
            task = prog.add_task(f"sampling {model_id}", total=zdist.shard(n)[1] - zdist.shard(n)[0])
            x = zdist.sample(m, n, seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, cfg=cfg, y=cls,
                             batch_size=batch_size, naive=naive, progress=lambda b: prog.advance(task, b))
        if zdist.is_main():
            if output.endswith(".pt"):
                torch.save(x.cpu(), output)
            else:
                grid.save_image(grid.make_grid(x.cpu()), output)
        procs = f", {zdist.world_size()} processes" if zdist.world_size() > 1 else ""
        _say(f"wrote {n} samples of {model_id} to {output} (seed {seed}{procs})")


def _originals(model, n: int, data_dir, split: str, seed: int, download: bool = False):
    card = model.card
    try:
        d = zdata.load_dataset(card.dataset, split, data_dir, download=download)
        x, _ = d.batch(torch.arange(min(n, len(d))))
        return x, f"{d.describe()}, first {len(x)}"
    except ZooError as e:
        err.print(f"[yellow]note:[/] {e}\n  -> completing the model's own samples instead", highlight=False)
        return model.sample(n, seed=seed + 1), "model samples (dataset not available)"


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
@click.option("-o", "--output", default="completion.png", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-k", type=int, default=None)
@click.option("--split", default="test", show_default=True)
@data_options
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None)
def complete(model_id, mask_spec, n, output, seed, temperature, top_k, split, data_dir, download, device,
             threads) -> None:
    """Complete masked test images: rows of original | observed | completed."""
    _threads(threads)
    grid.check_output(output)
    m = api.load(model_id, device=device)
    x, source = _originals(m, n, data_dir, split, seed, download)
    mask = zmasks.parse_mask(mask_spec, x)
    done = m.complete(x, mask, seed=seed, temperature=temperature, top_k=top_k)
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
@click.option("--recon", "do_recon", is_flag=True,
              help="a learned tokenizer's reconstruction PSNR and codebook usage on the split (VQ-VAE, VAR)")
@click.option("-n", "--num", "n", type=int, default=None,
              help="NLL: number of test images (default all); FID: number of samples (default 10,000)")
@click.option("--seed", type=int, default=0, show_default=True, help="sampling seed for --fid")
@click.option("--fid-weights", type=click.Path(), default=None, help="Inception weights file")
@click.option("--split", default="test", show_default=True)
@data_options
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("-o", "--option", "opts", multiple=True, help="family option for log_prob, e.g. masks=1 (MADE)")
@click.option("--write-card", type=click.Path(), default=None, help="record the result in this card file")
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None)
def eval_cmd(model_id, do_nll, do_fid, do_kid, kid_ref_n, do_recon, n, seed, fid_weights, split, data_dir, download,
             batch_size, opts, write_card, device, threads) -> None:
    """Evaluate a model: exact NLL, FID, reconstruction on a dataset split (optionally recorded in a card with
    its command)."""
    _threads(threads)
    if not (do_nll or do_fid or do_kid or do_recon):
        raise click.UsageError("choose a metric: --nll, --fid, --kid and/or --recon")
    _options(opts)  # bad options and a card we could not record in are refused before the evaluation
    if write_card:
        read_card(write_card)
    with zdist.session(device) as dev:
        m = api.load(model_id, device=dev)
        d = zdata.load_dataset(m.card.dataset, split, data_dir, download=download)
        if do_recon:
            _eval_recon(m, model_id, d, n, split, batch_size, write_card)
        if do_nll:
            _eval_nll(m, model_id, d, n, split, batch_size, opts, write_card)
        if do_kid:  # one set of samples and Inception features serves KID and, with --fid, FID
            _eval_kid(m, model_id, d, n or 10_000, seed, split, data_dir, fid_weights, write_card, do_fid, kid_ref_n)
        elif do_fid:
            _eval_fid(m, model_id, d, n or 10_000, seed, split, data_dir, fid_weights, write_card)


def _eval_fid(m, model_id, d, n, seed, split, data_dir, fid_weights, write_card) -> None:
    from . import fid as zfid
    net = zfid.load_inception(fid_weights).to(m.device)
    lo, hi = zdist.shard(n)
    with _progress() as prog:
        t1 = prog.add_task(f"sampling {hi - lo:,} images", total=hi - lo)
        t2 = prog.add_task("Inception features of the samples", total=hi - lo)
        fake = zfid.sample_stats(lambda k, s: m.sample(k, seed=s, progress=lambda b: prog.advance(t1, b)), n, net,
                                 seed, progress=lambda b: prog.advance(t2, b), distributed=True)
        lo, hi = zdist.shard(len(d))
        t3 = prog.add_task(f"reference statistics of {d.name} {split}", total=hi - lo)
        ref = zfid.reference_stats(d.name, split, net, data_dir, progress=lambda b: prog.advance(t3, b),
                                   distributed=True)
    if not zdist.is_main():
        return  # the statistics are complete on every rank: rank 0 alone computes the distance and reports it
    r = zfid.fid(fake, ref)
    procs = f", {zdist.world_size()} processes" if zdist.world_size() > 1 else ""
    _say(f"{model_id}: {r}  [samples seed {seed}{procs} vs {ref.source}]", highlight=False, markup=False)
    if write_card:
        # W processes draw other samples than one (each rank has its own seed): the command says how many
        launch = f"torchrun --nproc-per-node {zdist.world_size()} -m zoo.cli" if zdist.world_size() > 1 else "zoo"
        cmd = f"{launch} eval {model_id} --fid -n {n} --seed {seed}" + (f" --split {split}" if split != "test" else "")
        card = with_metric(read_card(write_card), Metric("fid", round(r.value, 3), "FID", split, n, cmd,
                                                         f"{n:,} samples vs {ref.source}; {zfid.PREPROCESSING}"))
        save_card(card, write_card)
        _say(f"recorded in {write_card}")


def _eval_kid(m, model_id, d, n, seed, split, data_dir, fid_weights, write_card, do_fid, kid_ref_n) -> None:
    """KID (and FID with do_fid) of n samples: the samples' Inception features are computed once for both."""
    from . import fid as zfid
    from .kid import kid
    if kid_ref_n is not None and kid_ref_n < 2:
        raise click.BadParameter(f"--kid-ref-n must be at least 2, got {kid_ref_n}")
    net = zfid.load_inception(fid_weights).to(m.device)
    lo, hi = zdist.shard(n)
    with _progress() as prog:
        t1 = prog.add_task(f"sampling {hi - lo:,} images", total=hi - lo)
        t2 = prog.add_task("Inception features of the samples", total=hi - lo)
        feats = zfid.sample_features(lambda k, s: m.sample(k, seed=s, progress=lambda b: prog.advance(t1, b)), n,
                                     net, seed, progress=lambda b: prog.advance(t2, b), distributed=True)
        ref_feats = None
        if zdist.is_main():  # the reference features are cached: rank 0 alone reads or computes them
            t3 = prog.add_task(f"reference features of {d.name} {split}", total=min(kid_ref_n or len(d), len(d)))
            ref_feats = zfid.reference_features(d.name, split, net, data_dir, n=kid_ref_n,
                                                progress=lambda b: prog.advance(t3, b))
        if do_fid:
            lo, hi = zdist.shard(len(d))
            t4 = prog.add_task(f"reference statistics of {d.name} {split}", total=hi - lo)
            ref = zfid.reference_stats(d.name, split, net, data_dir, progress=lambda b: prog.advance(t4, b),
                                       distributed=True)
    if not zdist.is_main():
        return
    procs = f", {zdist.world_size()} processes" if zdist.world_size() > 1 else ""
    launch = f"torchrun --nproc-per-node {zdist.world_size()} -m zoo.cli" if zdist.world_size() > 1 else "zoo"
    where = f" --split {split}" if split != "test" else ""
    ref_n = len(ref_feats)
    ref_source = f"{d.describe()}; first {ref_n:,}"
    metrics = []
    if do_fid:
        r = zfid.fid(zfid.Stats.from_features(feats, f"{n:,} samples, seed {seed}"), ref)
        _say(f"{model_id}: {r}  [samples seed {seed}{procs} vs {ref.source}]", highlight=False, markup=False)
        metrics.append(Metric("fid", round(r.value, 3), "FID", split, n,
                              f"{launch} eval {model_id} --fid -n {n} --seed {seed}{where}",
                              f"{n:,} samples vs {ref.source}; {zfid.PREPROCESSING}"))
    k = kid(feats, ref_feats)
    _say(f"{model_id}: {k}  [samples seed {seed}{procs} vs {ref_source}]", highlight=False, markup=False)
    ref_opt = f" --kid-ref-n {kid_ref_n}" if kid_ref_n is not None else ""
    metrics.append(Metric("kid", round(k.mean, 6), "KID", split, n,
                          f"{launch} eval {model_id} --kid -n {n} --seed {seed}{ref_opt}{where}",
                          f"std {k.std:.6f} over {k.subsets} subsets of {k.subset_size:,}; {n:,} samples vs "
                          f"{ref_source}; {zfid.PREPROCESSING}"))
    if write_card:
        card = read_card(write_card)
        for metric in metrics:
            card = with_metric(card, metric)
        save_card(card, write_card)
        _say(f"recorded in {write_card}")


def _eval_recon(m, model_id, d, n, split, batch_size, write_card) -> None:
    from .evaluate import reconstruction
    from .train import with_recon_metrics
    if not zdist.is_main():
        return  # reconstruction is cheap next to sampling: rank 0 does all of it
    with _progress() as prog:
        task = prog.add_task(f"encode/decode {d.name} {split}", total=min(n or len(d), len(d)))
        r = reconstruction(m, d, n=n, batch_size=batch_size, progress=lambda b: prog.advance(task, b))
    console.print(f"{model_id}: {r}  [{d.describe()}]", highlight=False, markup=False)
    if write_card:
        cmd = " ".join(["zoo eval", model_id, "--recon"] + (["-n", str(n)] if n else []) +
                       ([f"--split {split}"] if split != "test" else []))
        card = with_recon_metrics(read_card(write_card), r, cmd, d.describe(), split)
        save_card(card, write_card)
        console.print(f"recorded in {write_card}")


def _eval_nll(m, model_id, d, n, split, batch_size, opts, write_card) -> None:
    from .evaluate import nll
    options = _options(opts)
    lo, hi = zdist.shard(min(n or len(d), len(d)))
    with _progress() as prog:
        task = prog.add_task(f"NLL of {model_id} on {d.name} {split}", total=hi - lo)
        r = nll(m, d, n=n, batch_size=batch_size, progress=lambda b: prog.advance(task, b), distributed=True,
                **options)
    _say(f"{model_id}: NLL {r}  [{d.describe()}]", highlight=False, markup=False)
    if write_card and zdist.is_main():
        cmd = " ".join(["zoo eval", model_id, "--nll"] + (["-n", str(n)] if n else []) +
                       ([f"--split {split}"] if split != "test" else []) + [f"-o {o}" for o in opts])
        name = "nll" if not options else "nll_" + "_".join(f"{k}{v}" for k, v in options.items())
        card = read_card(write_card)
        card = with_metric(card, Metric(name, round(r.nats, 4), "nats/image", split, r.n, cmd,
                                        f"{r.bits_per_dim:.4f} bits/dim, stderr {r.stderr:.3f}; {d.describe()}"))
        save_card(card, write_card)
        _say(f"recorded in {write_card}")


@main.command("fid")
@click.argument("path_a", type=click.Path(exists=True))
@click.argument("path_b", type=click.Path(exists=True))
@click.option("--batch-size", type=int, default=50, show_default=True)
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
                stats.append(zfid.Stats.load(path))
                continue
            x = zfid.load_image_folder(path)
            net = net or zfid.load_inception(fid_weights)
            task = prog.add_task(f"features of {path}", total=len(x))
            feats.append(zfid.features(x, net, batch_size, lambda b: prog.advance(task, b)))
            stats.append(zfid.Stats.from_features(feats[-1], str(path)))
    if save_stats:
        stats[0].save(save_stats)
    console.print(str(zfid.fid(*stats)), highlight=False)
    if do_kid:
        from .kid import kid
        console.print(str(kid(*feats)), highlight=False)


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
@click.option("--time-limit", type=float, default=None, help="stop after the epoch that passes this many seconds")
@click.option("--optimizer", type=click.Choice(["adam", "adamw"]), default=None)
@click.option("--schedule", type=click.Choice(["cosine", "constant"]), default=None)
@click.option("--weight-decay", type=float, default=None)
@click.option("--grad-clip", type=float, default=None, help="max gradient norm (0: no clipping)")
@click.option("--resume", is_flag=True, help="continue the run in --out from its last checkpoint")
@data_options
@click.option("--device", default="cpu", show_default=True)
@click.option("--threads", type=int, default=None)
@click.option("--no-test", is_flag=True, help="skip the test-set NLL at the end")
@click.option("--amp", is_flag=True, help="mixed precision: bfloat16 autocast (CPU, recent GPUs) or float16 with "
                                        "gradient scaling (older GPUs)")
@click.option("--compile", "compile_", is_flag=True, help="run the training loss through torch.compile")
def train(model_id, out, epochs, batch_size, lr, seed, patience, max_steps, time_limit, optimizer, schedule,
          weight_decay, grad_clip, resume, data_dir, download, device, threads, no_test, amp, compile_) -> None:
    """Train a model described by a card (an id or a card.toml path); resumable. Under torchrun every process
    trains its share of each global batch (--batch-size is the global batch) with DistributedDataParallel."""
    from .train import train_card
    _threads(threads)
    card = read_card(model_id, recipe=True) if model_id.endswith(".toml") else api.get_card(model_id)
    overrides = {k: v for k, v in dict(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, patience=patience,
                                         max_steps=max_steps, time_limit=time_limit, optimizer=optimizer,
                                         schedule=schedule, weight_decay=weight_decay,
                                         grad_clip=grad_clip).items() if v is not None}
    out = Path(out or f"runs/{card.id}")
    with zdist.session(device):
        new, result = train_card(card, out, overrides, resume=resume, data_dir=data_dir, download=download,
                                 device=device, eval_test=not no_test, amp=amp, compile=compile_)
        procs = f" ({zdist.world_size()} processes)" if zdist.world_size() > 1 else ""
        when = (f"at epoch {result.best_epoch}" if result.best_epoch > 0
                else f"after {result.global_step} steps, before the first epoch ended")
        _say(f"best {new.metrics[0].name} {result.best_val_nll:.4g} {new.metrics[0].unit} {when}{procs}; "
             f"wrote {out / new.weights_file} and {out / 'card.toml'}")
        for m in new.metrics:
            _say(f"  {m.name} = {m.value:.3f} {m.unit} ({m.split}, n={m.n})")


@main.command()
@click.argument("model_id")
@click.argument("out", type=click.Path())
@click.option("--repo", default=None, help="Hub repo id to record in the card (org/name)")
@click.option("--overwrite", is_flag=True)
def export(model_id, out, repo, overwrite) -> None:
    """Write a folder ready to upload to the Hugging Face Hub (card.toml, weights, README.md)."""
    from .export import export as do_export
    path = do_export(model_id, out, repo=repo, overwrite=overwrite)
    console.print(f"exported {model_id} to {path}; upload with `hf upload ORG/NAME {path}`, then load with "
                  f"zoo.load('hf://ORG/NAME')")


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
    for f in reg.failures:
        console.print(f"[red]failed[/] {f.name} ({f.source}): {f.error}", highlight=False)
    for key, owners in reg.conflicts.items():
        console.print(f"[red]conflict[/] '{key}' claimed by {', '.join(owners)}: refused", highlight=False)


if __name__ == "__main__":
    main()
