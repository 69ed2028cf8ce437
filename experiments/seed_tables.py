"""The presentation's results tables (issue 13), reproduced cell by cell with zoo's own machinery.

    python experiments/seed_tables.py run [--only PATTERN] [--threads 1] [--train-only] [--cached-references-only]
    python experiments/seed_tables.py --report

`run` trains (with `zoo train`, resumable: an interrupted run continues from its checkpoint) and evaluates every
cell that has no recorded result yet, and records each figure in experiments/results.toml the moment it is
measured (figure, n, seed, command, date). Cells whose model is a shipped card reuse it. `--report` prints
every table of the issue as markdown from the recorded results alone, zoo's figure beside the presentation's,
and writes docs/seed-tables.md and docs/seed-tables.png.

Every FID is of N = 2,048 samples (seed 0) against the whole test split, beside the real-vs-real floor at the
same n (zoo/fid_floors.toml); every KID (x1000) is of the same samples' features against the first KID_REF_N
test images (100 subsets of 1,000). Sample features are kept in runs/experiments/<cell>/ so an evaluation
interrupted after sampling, or waiting for a reference, resumes without sampling again.
"""
from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RECIPES = HERE / "recipes"
RESULTS = HERE / "results.toml"
RUNS = REPO / "runs" / "experiments"
DOC = REPO / "docs" / "seed-tables.md"
PLOT = REPO / "docs" / "seed-tables.png"
N = 2048          # samples per FID/KID
SEED = 0          # sampling seed
KID_REF_N = 2048  # KID's reference: the first KID_REF_N test images (their features are cheap to cache)
DATASETS = ("mnist-bin", "mnist", "cifar10-gray")
DATASET_NAMES = {"mnist-bin": "MNIST binarized", "mnist": "MNIST grayscale (8-bit)",
                 "cifar10-gray": "CIFAR-10 grayscale (cifar10-jpeg luma)"}


# ---- the cells ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    """A model the tables measure: a recipe trained here (experiments/recipes/<id>.toml) or a shipped card."""

    id: str
    dataset: str
    metrics: tuple[str, ...] = ("fid", "kid")
    card: str | None = None  # a shipped card reused as is
    flags: str = ""          # sampling flags of its figures (VAR: "--no-preset", the null class unguided)

    @property
    def recipe(self) -> Path | None:
        return None if self.card else RECIPES / f"{self.id}.toml"

    @property
    def run_dir(self) -> Path:
        return RUNS / self.id

    @property
    def ref(self) -> str:
        """What `zoo eval` takes: the shipped card's id, or the trained run's folder."""
        return self.card or f"runs/experiments/{self.id}"

    def train_command(self, threads: int | None = None) -> str | None:
        if self.card:
            return None
        return (f"zoo train experiments/recipes/{self.id}.toml --out runs/experiments/{self.id}"
                + (f" --threads {threads}" if threads else ""))

    def eval_command(self, metric: str) -> str:
        if metric == "nll":
            return f"zoo eval {self.ref} --nll"
        flags = f" {self.flags}" if self.flags else ""
        if metric == "fid":
            return f"zoo eval {self.ref} --fid -n {N} --seed {SEED}{flags}"
        return f"zoo eval {self.ref} --kid -n {N} --seed {SEED} --kid-ref-n {KID_REF_N}{flags}"

    def command(self, metric: str) -> str:
        """Everything that produces the figure, from a fresh checkout."""
        train = self.train_command(1)
        return (f"{train} && " if train else "") + self.eval_command(metric)


def _made(ds: str, arch: str, head: str = "", metrics: tuple[str, ...] = ("fid", "kid")) -> Model:
    return Model(_made_id(ds, arch, head), ds, metrics)


def _made_id(ds: str, arch: str, head: str | None = None) -> str:
    """A MADE cell's id. The grayscale grids use the Gaussian output, as the presentation's did (its grids equal
    its Gaussian row); binarized MNIST has a Bernoulli per pixel; `head="softmax"` names the softmax cells."""
    if head is None:
        head = "" if ds == "mnist-bin" else "gaussian"
    return f"exp-made-{ds}-{arch}" + (f"-{head}" if head and head != "softmax" else "")


MODELS: dict[str, Model] = {}
for _ds in DATASETS:
    for _arch in ("1x500", "2x500", "3x500", "1x1000", "1x2000"):
        _nll = ("nll",) if _ds == "mnist-bin" and _arch in ("1x500", "2x500") else ()
        MODELS[_made_id(_ds, _arch)] = Model(_made_id(_ds, _arch), _ds, ("fid", "kid", *_nll))
for _h in (500, 1000):
    MODELS[_made_id("mnist", f"1x{_h}", "softmax")] = _made("mnist", f"1x{_h}", "softmax")
# the PixelCNN and VAR tables show FID only
for _m in (Model("pixelcnn-cifar10-gray", "cifar10-gray", ("fid",), card="pixelcnn-cifar10-gray"),
           Model("exp-pixelcnn-cifar10-gray-12-layers", "cifar10-gray", ("fid",)),
           Model("pixelcnn-mnist", "mnist", ("fid",), card="pixelcnn-mnist"),
           Model("var-cifar10-gray", "cifar10-gray", ("fid",), card="var-cifar10-gray", flags="--no-preset"),
           Model("var-mnist", "mnist", ("fid",), card="var-mnist", flags="--no-preset")):
    MODELS[_m.id] = _m


@dataclass(frozen=True)
class Table:
    """One table of the presentation: rows x columns of (model id, metric, the presentation's figure)."""

    title: str
    corner: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, tuple[tuple[str, str, float | None], ...]], ...]
    note: str = ""


def _grid(title: str, corner: str, columns: tuple[str, ...], archs: tuple[str, ...],
          figures: dict[str, tuple[float | None, ...]]) -> Table:
    return Table(title, corner, columns, tuple(
        (DATASET_NAMES[ds], tuple((_made_id(ds, a), "fid", f) for a, f in zip(archs, figures[ds])))
        for ds in DATASETS))


TABLES = (
    _grid("MADE, FID by number of hidden layers (500 units each)", "dataset", ("1", "2", "3"),
          ("1x500", "2x500", "3x500"), {"mnist-bin": (53, 58, 64), "mnist": (270, 274, 313),
                                        "cifar10-gray": (258, 262, 271)}),
    _grid("MADE, FID by number of units (1 hidden layer)", "dataset", ("500", "1000", "2000"),
          ("1x500", "1x1000", "1x2000"), {"mnist-bin": (53, 33, 20), "mnist": (270, 263, None),
                                          "cifar10-gray": (258, 257, 254)}),
    Table("MADE, FID by output distribution (MNIST grayscale, 1 hidden layer)", "output", ("500", "1000"),
          (("softmax", (("exp-made-mnist-1x500", "fid", 172), ("exp-made-mnist-1x1000", "fid", 165))),
           ("Gaussian", (("exp-made-mnist-1x500-gaussian", "fid", 270),
                         ("exp-made-mnist-1x1000-gaussian", "fid", 263)))),
          "The presentation's grayscale MADE rows above equal its Gaussian row here (270, 263): its depth and "
          "width grids were measured with the Gaussian output, and so are zoo's grayscale grids (MNIST and "
          "CIFAR-10: the `-gaussian` cells). The softmax is zoo's factorized 256-way softmax (6 features per "
          "pixel)."),
    Table("MADE, test NLL on binarized MNIST, 1 mask (nats/image; the presentation quotes the MADE paper)",
          "hidden layers (500 units)", ("NLL",),
          (("1", (("exp-made-mnist-bin-1x500", "nll", 88.40),)),
           ("2", (("exp-made-mnist-bin-2x500", "nll", 89.59),))),
          "zoo's binarized MNIST is binarized by Bernoulli draws (test split seeded once), not the paper's "
          "static binarization (Larochelle's), and zoo's cells train for 10 epochs on a CPU, the paper's until "
          "early stopping: the figures are not strictly comparable."),
    Table("PixelCNN, FID", "dataset", ("FID",),
          (("CIFAR-10 grayscale", (("pixelcnn-cifar10-gray", "fid", 170),)),
           ("CIFAR-10 grayscale, added layers", (("exp-pixelcnn-cifar10-gray-12-layers", "fid", 166),)),
           ("MNIST grayscale", (("pixelcnn-mnist", "fid", 27),))),
          "The presentation's PixelCNN had about 1.5M parameters on CIFAR-10; the shipped cards are sized for a CPU."),
    Table("VAR (VQ-VAE + transformer), FID", "dataset", ("FID",),
          (("CIFAR-10 grayscale", (("var-cifar10-gray", "fid", 194),)),
           ("MNIST grayscale", (("var-mnist", "fid", 102),))),
          "zoo's VAR figures are its unconditional samples (`--no-preset`: the null class, no guidance, no "
          "filtering), the weakest way to sample these class-conditional models; with its sampling preset "
          "(classes drawn uniformly, top-k, top-p, guidance ramped over the scales) each card's FID at the same n "
          "is far lower: its card carries both (`zoo eval var-mnist --fid -n 2048 --seed 0`)."),
)


# ---- the results file --------------------------------------------------------------------------------------
@dataclass
class Result:
    cell: str
    metric: str
    value: float
    n: int
    seed: int | None
    command: str
    date: str
    reference: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)


def load_results(path: Path | None = None) -> dict[tuple[str, str], Result]:
    """Recorded results keyed by (cell, metric); cells "floor-<dataset>" hold the real-vs-real floors."""
    path = path or RESULTS
    if not path.is_file():
        return {}
    out = {}
    for e in tomllib.loads(path.read_text(encoding="utf-8")).get("result", []):
        known = {k: e[k] for k in ("cell", "metric", "value", "n", "command", "date") }
        r = Result(**known, seed=e.get("seed"), reference=e.get("reference", ""), note=e.get("note", ""),
                   extra={k: v for k, v in e.items() if k not in Result.__dataclass_fields__})
        out[(r.cell, r.metric)] = r
    return out


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string with ASCII escapes is a valid TOML basic string


def save_results(results: dict[tuple[str, str], Result], path: Path | None = None) -> None:
    """Write every result, sorted, atomically (a crash never leaves half a file)."""
    path = path or RESULTS
    lines = ["# Results of the seed tables (issue 13), written by `python experiments/seed_tables.py run`.",
             "# One entry per measured figure: value, n, seed, the command that reproduces it, and when.", ""]
    for key in sorted(results):
        r = results[key]
        lines.append("[[result]]")
        fields = {"cell": r.cell, "metric": r.metric, "value": r.value, "n": r.n}
        if r.seed is not None:
            fields["seed"] = r.seed
        fields |= {"command": r.command, "date": r.date}
        if r.reference:
            fields["reference"] = r.reference
        if r.note:
            fields["note"] = r.note
        fields |= r.extra
        lines += [f"{k} = {_toml_value(v)}" for k, v in fields.items()] + [""]
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def record(result: Result, path: Path | None = None) -> None:
    """Add one result to the file at once: re-read and written under the file's lock, so that concurrent runs of
    other cells are kept."""
    from zoo.locking import locked
    path = path or RESULTS
    with locked(path, purpose="recording a seed-table result"):
        results = load_results(path)
        results[(result.cell, result.metric)] = result
        save_results(results, path)
    print(f"recorded {result.cell} {result.metric} = {result.value:g} (n={result.n:,})", flush=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- running -------------------------------------------------------------------------------------------------
def unreachable(model: Model) -> str | None:
    """Why this model cannot be built with the installed zoo (e.g. a head not implemented yet), or None."""
    import torch

    import zoo
    from zoo.cards import read_card
    if model.card:
        try:
            zoo.get_card(model.card)
        except zoo.ZooError as e:
            return str(e)
        return None
    card = read_card(model.recipe, recipe=True)
    try:
        with torch.device("meta"):
            zoo.create(card.architecture, **card.config)
    except zoo.ZooError as e:
        return f"the recipe's config does not build here: {e}"
    return None


def _zoo(*args: str) -> None:
    cmd = [sys.executable, "-m", "zoo.cli", *args]
    print("$ zoo " + " ".join(args), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def train(model: Model, threads: int | None) -> Path:
    """Train a recipe's model with `zoo train` unless its run folder holds a finished card; resume a run that
    was interrupted."""
    card = model.run_dir / "card.toml"
    if card.is_file():
        return card
    args = ["train", str(model.recipe), "--out", str(model.run_dir)] + (["--threads", str(threads)] if threads else [])
    if (model.run_dir / "state.json").is_file():
        args.append("--resume")
    _zoo(*args)
    return card


def _training_note(card_path: Path) -> str:
    from zoo.cards import read_card
    c = read_card(card_path)
    run = c.training.get("run", {})
    return (f"trained here: {c.training.get('epochs')} epochs (best epoch {run.get('best_epoch')}, "
            f"{run.get('steps')} steps, batch {c.training.get('batch_size')}, seed {c.training.get('seed')}) "
            f"on {run.get('device', 'cpu')}")


def sample_features(model: Model, net, threads: int | None):
    """The Inception features of the model's N samples (seed SEED), computed as `zoo eval --fid/--kid` computes
    them, cached in the run folder."""
    import numpy as np

    import zoo
    from zoo import fid as zfid
    path = model.run_dir / f"features-n{N}-seed{SEED}.npy"
    if path.is_file():
        return np.load(path)
    m = zoo.load(model.card or str(model.run_dir))
    print(f"{model.id}: sampling {N:,} images and their Inception features", flush=True)
    kw = {"preset": False} if "--no-preset" in model.flags else {}
    feats = zfid.sample_features(lambda k, s: m.sample(k, seed=s, **kw), N, net, SEED, distributed=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), feats)
    os.replace(path.with_suffix(".tmp.npy"), path)
    return feats


def _reference_cached(dataset: str, metric: str) -> bool:
    """Whether the reference a figure needs (FID: the test statistics; KID: the test features) is cached."""
    from zoo import data as zdata
    from zoo import fid as zfid
    if metric == "fid":
        return (zfid.stats_cache_dir() / f"{dataset}-test-{len(zdata.load_dataset(dataset, 'test'))}.npz").is_file()
    return (zfid.stats_cache_dir() / f"{dataset}-test-{KID_REF_N}-features.npz").is_file()


def _reference_stats(dataset: str, net, cached_only: bool):
    from zoo import fid as zfid
    if cached_only and not _reference_cached(dataset, "fid"):
        return None
    return zfid.reference_stats(dataset, "test", net)


def _reference_features(dataset: str, net, cached_only: bool):
    from zoo import fid as zfid
    if cached_only and not _reference_cached(dataset, "kid"):
        return None
    return zfid.reference_features(dataset, "test", net, n=KID_REF_N)


def _card_result(model: Model) -> Result | None:
    """A shipped card's own FID at n=N, measured with the cell's command, as a result (None when it has none)."""
    if not model.card:
        return None
    from zoo import api
    m = next((m for m in api.get_card(model.card).metrics if m.name == "fid" and m.n == N
              and m.command == model.eval_command("fid")), None)
    if m is None:
        return None
    return Result(model.id, "fid", m.value, m.n, SEED, m.command, _now(), m.note.split("; 8-bit quantized")[0],
                  "the shipped card's figure")


def evaluate(model: Model, needed: list[str], net, threads: int | None, cached_only: bool, note: str) -> None:
    """FID and KID of one model from one set of sample features; a shipped card's recorded FID at n=N is reused."""
    from zoo import fid as zfid
    from zoo.kid import kid
    if "fid" in needed and (r := _card_result(model)) is not None:
        record(r)
        needed = [k for k in needed if k != "fid"]
    if cached_only:  # sample only for the figures whose reference is ready
        for k in [k for k in needed if not _reference_cached(model.dataset, k)]:
            print(f"{model.id}: {k.upper()} waits for the {model.dataset} test reference (not in the cache yet)")
            needed.remove(k)
    if not needed:
        return
    feats = sample_features(model, net, threads)
    if "fid" in needed:
        ref = _reference_stats(model.dataset, net, cached_only)
        if ref is not None:
            r = zfid.fid(zfid.Stats.from_features(feats), ref)
            record(Result(model.id, "fid", round(r.value, 3), N, SEED, model.command("fid"), _now(), ref.source,
                          note))
    if "kid" in needed:
        ref_feats = _reference_features(model.dataset, net, cached_only)
        if ref_feats is not None:
            k = kid(feats, ref_feats)
            record(Result(model.id, "kid", round(k.mean, 6), N, SEED, model.command("kid"), _now(),
                          f"{model.dataset} test, first {len(ref_feats):,}", note,
                          {"std": round(k.std, 6), "subsets": k.subsets, "subset_size": k.subset_size}))


def floor(dataset: str, results: dict, net, cached_only: bool) -> None:
    """The real-vs-real floors at n=N: FID from zoo/fid_floors.toml (measured there); KID of the first N train
    images against the first KID_REF_N test images."""
    from zoo import fid as zfid
    from zoo.kid import kid
    cell = f"floor-{dataset}"
    known = zfid.known_floors().get((dataset, N))
    if (cell, "fid") not in results and known:
        record(Result(cell, "fid", known["value"], N, None, known["command"], _now(), f"{dataset} test (all)",
                      "from zoo/fid_floors.toml"))
    if (cell, "kid") not in results:
        ref = _reference_features(dataset, net, cached_only)
        if ref is None:
            print(f"{cell}: KID waits for the {dataset} test features")
            return
        train = zfid.reference_features(dataset, "train", net, n=N)
        k = kid(train, ref)
        record(Result(cell, "kid", round(k.mean, 6), N, None,
                      f"zoo fid-floor {dataset} -n {N} --kid --kid-ref-n {KID_REF_N}", _now(),
                      f"{dataset} test, first {len(ref):,}", f"first {N:,} train images",
                      {"std": round(k.std, 6), "subsets": k.subsets, "subset_size": k.subset_size}))


def run(only: str = "*", threads: int | None = 1, train_only: bool = False, cached_only: bool = False) -> None:
    """Train and evaluate every selected cell that has no recorded result; each figure is recorded at once."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    net = None
    for model in MODELS.values():
        if not fnmatch.fnmatch(model.id, only):
            continue
        results = load_results()
        if (r := _card_result(model)) is not None and (old := results.get((model.id, "fid"))) and \
                old.value != r.value:  # a card retrained since its figure was recorded: the table follows it
            record(r)
            results = load_results()
        needed = [k for k in model.metrics if (model.id, k) not in results]
        if not needed:
            continue
        reason = unreachable(model)
        if reason:
            print(f"{model.id}: not run: {reason}", flush=True)
            continue
        note = ""
        if model.recipe:
            card = train(model, threads)
            note = _training_note(card)
            if "nll" in needed:
                from zoo.cards import read_card
                m = read_card(card).metric("nll")
                record(Result(model.id, "nll", m.value, m.n, None, model.command("nll"), _now(), m.note, note))
        if train_only or not {"fid", "kid"} & set(needed):
            continue
        if net is None:
            from zoo import fid as zfid
            net = zfid.load_inception()
        evaluate(model, [k for k in needed if k in ("fid", "kid")], net, threads, cached_only, note)
    for ds in DATASETS:
        if not train_only and fnmatch.fnmatch(f"floor-{ds}", only):
            if net is None:
                from zoo import fid as zfid
                net = zfid.load_inception()
            floor(ds, load_results(), net, cached_only)


# ---- the report ----------------------------------------------------------------------------------------------
def _fmt(v: float | None, metric: str = "fid") -> str:
    if v is None:
        return "N/A"
    return f"{v:.2f}" if metric == "nll" else f"{v:.1f}" if metric == "fid" else f"{1000 * v:.2f}"


def render(results: dict[tuple[str, str], Result]) -> str:
    """Every table as markdown: the presentation's figure beside zoo's (FID with KID x1000), then how each of
    zoo's figures was produced, or the command that would produce a cell not run yet."""
    out = ["# The presentation's results, reproduced", "",
           "Generated by `python experiments/seed_tables.py --report` from experiments/results.toml alone. "
           f"zoo's FID: {N:,} samples (seed {SEED}) against the whole test split, Inception-v3 pool3 features "
           "(zoo.fid's stated preprocessing); the real-vs-real floor at the same n is the best FID can tell. "
           f"KID x1000 (in brackets): the same samples against the first {KID_REF_N:,} test images, mean over 100 "
           "subsets of 1,000 (Binkowski et al. 2018; unbiased, so small-n figures compare). The presentation's "
           "figures are its own (its n and preprocessing are not stated): compare trends, not digits. CIFAR-10 "
           "here is the cifar10-jpeg copy (JPEG re-encoded).", ""]
    floors = ["| dataset | FID floor | KID x1000 floor |", "|---|---|---|"]
    for ds in DATASETS:
        f, k = results.get((f"floor-{ds}", "fid")), results.get((f"floor-{ds}", "kid"))
        floors.append(f"| {DATASET_NAMES[ds]} | {_fmt(f.value) if f else 'not run'} | "
                      f"{_fmt(k.value, 'kid') + ' ± ' + _fmt(k.extra.get('std'), 'kid') if k else 'not run'} |")
    out += [f"## Real-vs-real floors at n = {N:,}", "", *floors, ""]
    pending: dict[tuple[str, str], str] = {}
    for t in TABLES:
        header = [t.corner] + [f"{c}: {who}" for c in t.columns for who in ("presentation", "zoo")]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        done = []
        for label, cells in t.rows:
            row = [label]
            for cell, metric, theirs in cells:
                row.append("N/A" if theirs is None else f"{theirs:.2f}" if metric == "nll" else f"{theirs:g}")
                r = results.get((cell, metric))
                if r is None:
                    row.append("not run")
                    pending[(cell, metric)] = MODELS[cell].command(metric)
                    continue
                text = _fmt(r.value, metric)
                k = results.get((cell, "kid")) if metric == "fid" else None
                row.append(text + (f" [{_fmt(k.value, 'kid')}]" if k else ""))
                done.append(f"- `{cell}` {metric} {text} (n={r.n:,}, {r.date[:10]}): `{r.command}`"
                            + (f"; {r.note}" if r.note else ""))
            lines.append("| " + " | ".join(row) + " |")
        out += [f"## {t.title}", "", *lines, ""] + ([t.note, ""] if t.note else []) + done + ([""] if done else [])
    if not pending:
        return "\n".join(out + ["## Cells not run yet", "", "None: every cell of the tables has its figure."]) + "\n"
    out += ["## Cells not run yet", "",
            "Each needs only its command (training on a GPU: add `--device cuda` to `zoo train`). "
            "`python experiments/seed_tables.py run --only CELL` runs it and records the result. What a cell "
            "costs on this project's 2-core CPU, one thread: training a binarized or Gaussian-output MADE cell "
            "takes 2 to 10 minutes, a softmax one 30 to 60; its FID and KID take 2,048 samples through "
            "Inception, about 7 minutes; the first figure on a dataset also needs the test split's statistics "
            "(10,000 images, about 30 minutes) and the KID floor 4,096 more images. The cells below were not "
            "reached on it in the time they had.", ""]
    for (cell, metric), cmd in pending.items():
        reason = ""
        try:
            reason = unreachable(MODELS[cell]) or ""
        except Exception as e:  # the report must render even where a plugin is missing
            reason = f"{type(e).__name__}: {e}"
        out.append(f"- `{cell}` {metric}: `{cmd}`" + (f" (not reachable here yet: {reason})" if reason else ""))
    return "\n".join(out) + "\n"


def plot(results: dict[tuple[str, str], Result], path: Path | None = None) -> Path:
    """FID against width and against depth, one line per dataset: the presentation's points (hollow, dashed)
    beside zoo's (filled, solid). Drawn with PIL (matplotlib is not a dependency)."""
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.load_default()
    W, H, pad = 520, 380, 56
    img = Image.new("RGB", (2 * W, H + 40), "white")
    d = ImageDraw.Draw(img)
    colours = {"mnist-bin": (31, 119, 180), "mnist": (214, 39, 40), "cifar10-gray": (44, 160, 44)}
    panels = ((t, xs) for t, xs in zip(TABLES[:2], (("1", "2", "3"), ("500", "1000", "2000"))))
    values = [v for (c, m), r in results.items() if m == "fid" and c.startswith("exp-made") for v in [r.value]]
    values += [f for t in TABLES[:2] for _, cells in t.rows for _, _, f in cells if f is not None]
    top = max(values + [100]) * 1.08
    for p, (table, xs) in enumerate(panels):
        x0 = p * W
        left, right, y_top, y_bot = x0 + pad, x0 + W - 16, 36, H - 30
        d.text((left, 10), table.title.replace("MADE, ", "MADE: "), fill="black", font=font)
        d.line([(left, y_bot), (right, y_bot)], fill="black")
        d.line([(left, y_top), (left, y_bot)], fill="black")
        ymap = lambda v: y_bot - (y_bot - y_top) * v / top  # noqa: E731
        xmap = lambda i: left + 30 + i * (right - left - 60) / (len(xs) - 1)  # noqa: E731
        step = 50 if top <= 400 else 100
        for tick in range(0, int(top) + 1, step):
            d.line([(left - 4, ymap(tick)), (left, ymap(tick))], fill="black")
            d.text((left - 34, ymap(tick) - 6), f"{tick:>4}", fill="black", font=font)
        for i, x in enumerate(xs):
            d.text((xmap(i) - 10, y_bot + 6), x, fill="black", font=font)
        d.text((right - 170, y_bot + 18), "hidden layers" if p == 0 else "units (1 hidden layer)", fill="black",
               font=font)
        d.text((left - 50, y_top - 24), "FID", fill="black", font=font)
        for (label, cells), ds in zip(table.rows, DATASETS):
            c = colours[ds]
            for theirs in (True, False):
                pts = [(xmap(i), ymap(f if theirs else results[(cell, "fid")].value))
                       for i, (cell, _, f) in enumerate(cells)
                       if (f is not None if theirs else (cell, "fid") in results)]
                for a, b in zip(pts, pts[1:]):
                    if theirs:  # dashed
                        segs = 8
                        for s in range(0, segs, 2):
                            t0, t1 = s / segs, (s + 1) / segs
                            d.line([(a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                                    (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1)], fill=c, width=2)
                    else:
                        d.line([a, b], fill=c, width=2)
                for x, y in pts:
                    box = [x - 4, y - 4, x + 4, y + 4]
                    d.ellipse(box, outline=c, width=2) if theirs else d.ellipse(box, fill=c)
    ly = H + 10
    lx = 16
    for ds in DATASETS:
        d.ellipse([lx, ly + 2, lx + 8, ly + 10], fill=colours[ds])
        d.text((lx + 12, ly), DATASET_NAMES[ds], fill="black", font=font)
        lx += 12 + int(d.textlength(DATASET_NAMES[ds], font=font)) + 24
    d.text((lx, ly), f"filled, solid: zoo (n={N:,} vs test)   hollow, dashed: the presentation", fill="black",
           font=font)
    path = path or PLOT
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def report(results_path: Path | None = None, doc: Path | None = None, plot_path: Path | None = None) -> str:
    """Render the tables from the results file; write the markdown page and the plot beside it."""
    doc, plot_path = doc or DOC, plot_path or PLOT
    results = load_results(results_path)
    text = render(results)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text.replace("# The presentation's results, reproduced\n",
                                "# The presentation's results, reproduced\n\n"
                                f"![FID against depth and width]({plot_path.name})\n", 1), encoding="utf-8")
    plot(results, plot_path)
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--report", action="store_true", help="print the tables from the recorded results; write "
                                                          "docs/seed-tables.md and docs/seed-tables.png")
    sub = ap.add_subparsers(dest="cmd")
    r = sub.add_parser("run", help="train and evaluate the cells with no result yet")
    r.add_argument("--only", default="*", help="shell pattern of cell ids (exp-made-mnist-bin-*, floor-mnist-bin)")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--train-only", action="store_true", help="train (and record NLLs), evaluate nothing")
    r.add_argument("--cached-references-only", action="store_true",
                   help="leave a FID/KID pending when its reference statistics are not cached (another job is "
                        "computing them) instead of computing them")
    sub.add_parser("list", help="every cell with its status and command")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        run(a.only, a.threads, a.train_only, a.cached_references_only)
    elif a.cmd == "list":
        results = load_results()
        for model in MODELS.values():
            for k in model.metrics:
                r = results.get((model.id, k))
                print(f"{model.id:40s} {k:4s} {('%g' % r.value) if r else 'not run':>10s}  {model.command(k)}")
    if a.report or a.cmd is None:
        print(report())


if __name__ == "__main__":
    main()
