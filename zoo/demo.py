"""`zoo demo`: a local Gradio page to browse the catalogue, sample, and complete a painted mask, offline.

The page is a thin layer over the library, like the CLI: `/sample` is `zoo.load(id).sample(n, seed=..., ...)`
(the same images as `zoo sample`), `/complete` is `Model.complete` with a preset or painted mask. Requests name
models by id only, among the ones the page serves (`build_app(models=...)`): no request loads a path. Gradio is
imported only here (`pip install -e '.[demo]'`), so `zoo list` and friends never pay for it.
"""
from __future__ import annotations

import math
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .errors import InputError, ZooError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .cards import Card
    from .model import Model

#: the most images one /sample call draws; `zoo sample` has no such cap (it draws in batches)
MAX_N = 256
#: the most completions one /complete call draws
MAX_K = 16
#: uploads larger than this are refused by Gradio before any of our code runs
MAX_FILE_SIZE = "10mb"
#: the largest upload (pixels per side, pixels in all) that is decoded; larger ones are refused unread
MAX_SIDE, MAX_PIXELS = 4096, 4096 * 4096
#: a queue of at most this many waiting requests, and this many running at once (this machine's 2 cores)
QUEUE_SIZE, CONCURRENCY = 32, 2
#: the painting canvas is about this many screen pixels on its longer side; completions are shown at this zoom
CANVAS, COMPLETION_ZOOM = 280, 4
PRESET_MASKS = ("top-half", "bottom-half", "left-half", "right-half", "center", "random")
PAINTED = "painted"
SOURCES = ("test image", "upload")
INSTALL_HINT = "pip install -e '.[demo]' (from a clone) or pip install 'ar-zoo[demo]'"


def require_gradio() -> Any:
    """The gradio module, analytics off (the page works offline); a clear error naming the extra when missing."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as e:
        raise InputError(f"zoo demo needs Gradio, which is not installed ({e}); install the demo extra: "
                         f"{INSTALL_HINT}") from None
    return gradio


# ---- the models a page serves --------------------------------------------------------------------------------

@dataclass
class Catalogue:
    """The models one page serves: name (a card id) -> the reference it loads from (an id, or a folder the
    operator named). Requests can only name these; each model is loaded once and used by one request at a time
    (a family may keep per-call state on the model)."""

    refs: dict[str, str]
    cards: dict[str, Card]
    _models: dict[str, Model] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, models: Sequence[str] | None = None) -> Catalogue:
        """Every installed card (None), or the given ids / `local-dir:` folders (read by the operator, not a user)."""
        from .api import _card_from_ref, get_card, list_models
        refs: dict[str, str] = {}
        cards: dict[str, Card] = {}
        for ref in (list_models() if models is None else list(models)):
            card = get_card(ref) if models is None else _card_from_ref(ref)[0]
            if card.id in refs:
                raise InputError(f"two models named '{card.id}' ({refs[card.id]} and {ref}); serve one of them")
            refs[card.id], cards[card.id] = ref, card
        if not refs:
            raise InputError("no model to serve: `zoo list` shows none installed")
        return cls(refs, cards)

    def generative(self) -> list[str]:
        """The names of the models that sample (a learned tokenizer only encodes and decodes)."""
        from .plugins import registry
        tokenizers = set(registry().tokenizers)
        return [name for name, card in self.cards.items() if card.architecture not in tokenizers]

    def check(self, name: Any) -> str:
        """A served model's name, or an InputError: requests never load paths, Hub refs or other ids."""
        if isinstance(name, str) and name in self.refs:
            return name
        shown = ", ".join(self.generative())
        raise InputError(f"unknown model {name!r}: this page serves only the catalogue's ids ({shown}); paths and "
                         "Hub references are not accepted here (use `zoo sample REF` in a terminal for those)")

    def card(self, name: Any) -> Card:
        """The card of a served model."""
        return self.cards[self.check(name)]

    @contextmanager
    def use(self, name: Any) -> Iterator[Model]:
        """The loaded model (loaded on first use), held by this request until the block ends."""
        name = self.check(name)
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._models:
                from .api import load
                self._models[name] = load(self.refs[name])
            model = self._models[name]
            if not model.generative:
                raise InputError(f"{name} is a tokenizer, not a generative model: it cannot sample or complete; "
                                 f"pick one of {', '.join(self.generative())}")
            yield model


# ---- sampling -------------------------------------------------------------------------------------------------

def check_count(n: Any, cap: int, what: str, hint: str) -> int:
    """A whole number in [1, cap], or an InputError saying what to do instead."""
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputError(f"{what} must be a whole number from 1 to {cap}, got {n!r}")
    if n > cap:
        raise InputError(f"{what} = {n:,} is more than this page draws at once (at most {cap}); {hint}")
    return n


def parse_class(value: Any) -> Any:
    """A class setting from the page: None or '' (the preset), 'uniform', 'null', or an index ('3' or '3: cat')."""
    from .settings import UNSET
    from .settings import parse_class as parse
    if value is None or (isinstance(value, str) and not value.strip()):
        return UNSET
    return parse(value)


def sampling_kwargs(preset: bool = True, **fields: Any) -> dict[str, Any]:
    """`Model.sample` keyword arguments (UNSET where not given) from the Sample tab's settings, named as the page
    names them (each `SamplingSettings` field's `page`): empty is the card's preset (as an unset flag of `zoo
    sample`), top-k 0 is off (as `--top-k 0`)."""
    from .settings import SamplingSettings
    names = {s.page: name for name, s in SamplingSettings.spec().items()}
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise InputError(f"unknown sampling field(s) {unknown}; the page has {', '.join(names)}")
    settings = SamplingSettings.from_text(**{names[page]: value for page, value in fields.items()})
    return dict(settings.sample_kwargs(unset=True), preset=bool(preset))


def _same(key: str, given: Any, preset: Any) -> bool:
    """Whether a given setting is the preset's own value (top-k 0 and top-p 1 are off, as no value is)."""
    off = {"top_k": lambda v: v or None, "top_p": lambda v: None if v in (None, 1) else v}.get(key, lambda v: v)
    return off(given) == off(preset)


def sample_command(name: str, n: int, seed: int, kw: dict[str, Any], preset: dict[str, Any] | None = None) -> str:
    """The `zoo sample` command that draws the same images; given the card's preset, a setting equal to it goes
    unsaid."""
    from .settings import SamplingSettings
    given = SamplingSettings.from_sample_kwargs(**kw).given()
    if kw["preset"] and preset is not None:  # unknown preset: say every setting given
        card = SamplingSettings.from_preset(preset).over(SamplingSettings.defaults())
        given = {k: v for k, v in given.items() if not _same(k, v, getattr(card, k))}
    text = f"zoo sample {name} -n {n} --seed {seed}" + SamplingSettings(**given).flags()
    return text + ("" if kw["preset"] else " --no-preset")


def draw_samples(cat: Catalogue, name: Any, n: Any, seed: Any, kw: dict[str, Any],
                 progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, str]:
    """n images of a served model exactly as `zoo.load(name).sample(n, seed=seed, **kw)` draws them, and the
    `zoo sample` command that draws the same."""
    from .model import check_seed
    name = cat.check(name)
    n = check_count(n, MAX_N, "n", f"for more, run `zoo sample {name} -n {n}` in a terminal (it draws in batches)"
                    if isinstance(n, int) else "")
    seed = check_seed(int(seed) if isinstance(seed, float) and seed.is_integer() else seed)
    with cat.use(name) as model:
        x = model.sample(n, seed=seed, progress=progress, **kw)
    return x.cpu(), sample_command(name, n, seed, kw, cat.card(name).sampling)


# ---- completion -------------------------------------------------------------------------------------------------

def upscale(images: torch.Tensor) -> int:
    """The whole-number zoom that shows an image at about CANVAS screen pixels."""
    return max(1, CANVAS // max(images.shape[-2:]))


def to_pil(image: torch.Tensor, zoom: int = 1) -> Image.Image:
    """One image (C, H, W) in [0, 1] as a PIL image, enlarged `zoom` times (nearest neighbour)."""
    from .grid import make_grid
    return make_grid(image[None], pad=0, scale=zoom)


def read_upload(path: Any) -> Image.Image:
    """An uploaded file as a decoded PIL image: refused unread when it is no image or too large to decode."""
    from PIL import Image, UnidentifiedImageError
    if not path:
        raise InputError("no image uploaded: upload one, or choose 'test image' as the source")
    too_large = (f"larger than this page decodes (at most {MAX_SIDE} pixels a side, {MAX_PIXELS / 1e6:.1f} "
                 "megapixels); downscale it first, the model sees it at its own small size anyway")
    try:
        im = Image.open(str(path))
    except Image.DecompressionBombError as e:
        raise InputError(f"the upload is {too_large} ({e})") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"the upload is not an image this page can read (PNG, JPEG, GIF, WebP, BMP ...): "
                         f"{type(e).__name__}") from None
    w, h = im.size
    if max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
        im.close()
        raise InputError(f"the upload is {w}x{h} pixels, {too_large}")
    try:
        im.load()
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise InputError(f"the upload could not be decoded as an image ({type(e).__name__}: {e})") from None
    return im


def fit_upload(model: Model, im: Image.Image) -> tuple[torch.Tensor, str]:
    """An uploaded image as the model's input by its data's own preprocessing, and a sentence naming it."""
    import torch

    from .data import TEST_BINARIZATION_SEED, binarize
    from .image_folder import _to_rgb, fit_image, quantize
    c, h, w = (int(s) for s in model.image_shape)
    fitted = torch.from_numpy(fit_image(_to_rgb(im), (c, h, w)))
    levels = int(getattr(model.tokenizer, "levels", 256))
    x = quantize(fitted, levels).float()[None] / 255.0
    steps = [f"fitted to {c}x{h}x{w} as `zoo train --data` fits images (short side resized to cover, bicubic, "
             "centre crop)", "ITU-R 601 luma" if c == 1 else "RGB"]
    if levels == 2:
        x = binarize(x, seed=TEST_BINARIZATION_SEED)
        steps.append(f"binarized as the test split is (Bernoulli(pixel), seed {TEST_BINARIZATION_SEED})")
    elif levels < 256:
        steps.append(f"quantized to {levels} levels")
    else:
        steps.append("8-bit")
    return x, "upload " + ", ".join(steps)


@dataclass
class TestImages:
    """Test images per dataset (the data root: ZOO_DATA_DIR), read once; None when the dataset is not there."""

    _data: dict[str, Any] = field(default_factory=dict)
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def get(self, dataset: str) -> Any:
        """The test split of a dataset, or None when it is not under the data root (one dataset read at a time, so
        a slow first read of CIFAR-10's folders does not hold up MNIST)."""
        from .data import load_dataset
        with self._guard:
            lock = self._locks.setdefault(dataset, threading.Lock())
        with lock:
            if dataset not in self._data:
                try:
                    self._data[dataset] = load_dataset(dataset, "test")
                except ZooError:
                    self._data[dataset] = None
            return self._data[dataset]


def source_image(cat: Catalogue, tests: TestImages, name: Any, source: Any, index: Any,
                 upload: Any) -> tuple[torch.Tensor, str]:
    """The image to complete (1, C, H, W) in the model's input form, and a sentence saying what it is."""
    name = cat.check(name)
    if source == "upload":
        im = read_upload(upload)
        with cat.use(name) as model:
            return fit_upload(model, im)
    if source not in (None, "test image"):
        raise InputError(f"source must be 'test image' or 'upload', got {source!r}")
    index = int(index) if isinstance(index, (int, float)) and float(index).is_integer() else index
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise InputError(f"the test image index must be a whole number >= 0, got {index!r}")
    data = tests.get(cat.card(name).dataset)
    if data is not None:
        if index >= len(data):
            raise InputError(f"test image {index} does not exist: {data.name} test has {len(data):,} (0 to "
                             f"{len(data) - 1})")
        x, _ = data.batch(slice(index, index + 1))
        return x, f"test image {index} of {data.describe()}"
    with cat.use(name) as model:
        x = model.sample(1, seed=index).cpu()
    return x, (f"{name}'s own sample (seed {index}): no {cat.card(name).dataset} test split under the data root "
               "(set ZOO_DATA_DIR to show real test images)")


def painted_mask(editor: Any, shape: Sequence[int]) -> torch.Tensor:
    """The observed-pixel mask (C, H, W) of an ImageEditor value: a pixel is hidden (to regenerate) where at least
    a quarter of its screen area is painted on any layer."""
    import numpy as np
    import torch
    from PIL import Image
    c, h, w = (int(s) for s in shape)
    layers = (editor.get("layers") or []) if isinstance(editor, dict) else []
    painted = np.zeros((h, w), dtype=bool)
    for layer in layers:
        if layer is None:
            continue
        im = layer if isinstance(layer, Image.Image) else Image.fromarray(np.asarray(layer))
        alpha = im.convert("RGBA").getchannel("A").resize((w, h), Image.BOX)
        painted |= np.asarray(alpha) >= 64
    return torch.from_numpy(~painted).expand(c, h, w).clone()


def build_mask(choice: Any, x: torch.Tensor, editor: Any, seed: int) -> torch.Tensor:
    """The observed-pixel mask (C, H, W) for a preset name or the painted region; a mask that hides nothing is
    refused (there would be nothing to complete)."""
    from . import masks
    if choice == PAINTED:
        mask = painted_mask(editor, x.shape[1:])
    elif choice == "random":
        mask = masks.random(x, 0.5, seed=seed)[0]
    elif choice in masks.BUILDERS:
        mask = masks.BUILDERS[choice](x)
    else:
        raise InputError(f"unknown mask {choice!r}; use one of {', '.join(PRESET_MASKS)} or '{PAINTED}'")
    if bool(mask.all()):
        raise InputError("nothing to complete: the mask hides no pixel. Paint over the region to regenerate (mask "
                         f"'{PAINTED}'), or pick a preset mask")
    return mask


def observed_log_likelihood(model: Model, x: torch.Tensor, mask: torch.Tensor) -> tuple[float | None, str]:
    """log p(observed pixels) in nats where the model gives it exactly (the observed tokens come first in its
    generation order: the sum of their conditionals), else None; and a sentence saying which."""
    import torch
    name = model.card.id if model.card is not None else type(model).__name__
    if model.likelihood != "pixels":
        return None, (f"{name}'s likelihood is of its tokenizer's codes, not of pixels, so the observed pixels have "
                      "no exact likelihood here")
    flat = model.tokenizer.token_mask(mask[None].to(model.device))[0]
    order = torch.cat([torch.as_tensor(s).reshape(-1) for s in model.generation_steps()]).to(flat.device)
    seen = flat[order]
    k = int(seen.sum())
    if not bool(seen[:k].all()):
        return None, (f"the observed pixels do not come first in {name}'s generation order, so their likelihood is "
                      "not a sum of its conditionals (top-half is exact for every pixel model)")
    with torch.no_grad():
        value = float(model.conditionals(x.to(model.device))[0, :k].sum())
    return value, (f"exact log-likelihood of the {k:,} observed pixels: log p = {value:,.2f} nats "
                   f"({-value / (k * math.log(2)) if k else 0:.3f} bits per observed pixel)")


def complete_images(cat: Catalogue, tests: TestImages, name: Any, source: Any, index: Any, upload: Any,
                    mask_choice: Any, editor: Any, k: Any, seed: Any, temperature: Any, top_k: Any,
                    top_p: Any, approximate: Any = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """k completions of the source image under the mask: (source, mask, completions, a report). A mask the model
    completes only by its named approximation is refused unless `approximate` (the page's checkbox)."""
    from .model import check_seed
    name = cat.check(name)
    k = check_count(k, MAX_K, "k (completions)", "ask for fewer")
    seed = check_seed(int(seed) if isinstance(seed, float) and seed.is_integer() else seed)
    top_k = None if top_k in (None, 0) else int(top_k)
    x, what = source_image(cat, tests, name, source, index, upload)
    mask = build_mask(mask_choice, x, editor, seed)
    with cat.use(name) as model:
        done = model.complete(x.expand(k, *x.shape[1:]), mask, seed=seed,
                              temperature=1.0 if temperature is None else float(temperature), top_k=top_k,
                              top_p=None if top_p in (None, 1) else float(top_p), approximate=bool(approximate)).cpu()
        _, likelihood = observed_log_likelihood(model, x, mask)
        flat = model.tokenizer.token_mask(mask.expand(1, *x.shape[1:]))[0]
        approx = "" if model.completes_exactly(flat, model.generation_steps(flat)) else model.approximate_completion
    hidden = int((~mask[0]).sum())
    report = [f"**Source:** {what}.", f"**Mask:** {mask_choice}, {hidden:,} of {mask[0].numel():,} pixels "
              "regenerated; every observed pixel is kept exactly.", f"**Likelihood:** {likelihood}."]
    if approx:
        report.append(f"**Completion:** {approx}")
    return x, mask, done, "\n\n".join(report)


# ---- the catalogue tab ------------------------------------------------------------------------------------------

def catalogue_rows(cat: Catalogue) -> list[list[str]]:
    """One row per served card: id, family, data, params, test NLL, FID with n and the real-vs-real floor."""
    from .card_text import dataset_text, fid_text, nll_text, params
    rows = []
    for name, c in cat.cards.items():
        nll = c.metric("nll")
        fid = max((m for m in c.metrics if m.name == "fid"), key=lambda m: m.n, default=None)
        p = params(c)
        rows.append([name, c.plugin, dataset_text(c), f"{p / 1e6:.2f}M" if p >= 0 else "?",
                     nll_text(nll, c) if nll else "-", fid_text(fid, c) if fid else "-"])
    return rows


def card_markdown(card: Card) -> str:
    """A card as the page shows it: description, data, sampling preset, and each figure with its command."""
    from .floors import known_floors
    from .presets import describe
    lines = [f"### {card.id}", f"*{card.plugin} / {card.architecture}*", "", card.description, "", "**Data**", ""]
    lines += [f"- {k}: {v}" for k, v in card.data.items()]
    lines += ["", f"**Sampling preset** (the Sample tab's default): {describe(card.sampling)}", "", "**Figures**", ""]
    for m in card.metrics:
        lines.append(f"- {m.name} = {m.value:g} {m.unit} on {m.split} (n = {m.n:,}): `{m.command}`"
                     + (f" ({m.note})" if m.note else ""))
        floor = known_floors().get((card.dataset, m.n)) if m.name == "fid" else None
        if floor:
            lines.append(f"  - real-vs-real floor at n = {m.n:,}: {floor['value']:g} (`{floor['command']}`)")
    return "\n".join(lines)


# ---- the page -----------------------------------------------------------------------------------------------------

def _answer(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A page function whose zoo errors (and any other failure) reach the page or the API as a clear message."""
    import functools
    gr = require_gradio()

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ZooError as e:
            raise gr.Error(str(e), print_exception=False) from None
        except Exception as e:  # noqa: BLE001 - the server keeps serving; the message says what broke
            raise gr.Error(f"internal error ({type(e).__name__}: {e}); the server is still running") from None
    return wrapped


def class_choices(card: Card, num_classes: int) -> list[tuple[str, str]]:
    """The class field's choices: the preset's options, then each class by index and name."""
    from .datasets import get_dataset
    try:
        names = list(get_dataset(card.dataset).classes)
    except ZooError:
        names = []
    named = [(f"{i}: {names[i]}" if i < len(names) else str(i), str(i)) for i in range(num_classes)]
    return [("uniform (one class per image)", "uniform"), ("null (unconditional)", "null"), *named]


def preset_fields(cat: Catalogue, name: str) -> dict[str, Any]:
    """The Sample tab's fields for a model by their page names: its card's preset (else the defaults; top-k 0 and
    top-p 1 for off), and which apply."""
    from .settings import SamplingSettings
    card = cat.card(name)
    s = SamplingSettings.from_preset(card.sampling).over(SamplingSettings.defaults())
    fields = {spec.page: getattr(s, key) for key, spec in s.spec().items()}
    fields.update(top_k=s.top_k or 0, top_p=s.top_p or 1.0)
    num_classes = int(card.config.get("num_classes", 0) or 0)
    return dict(fields, num_classes=num_classes, choices=class_choices(card, num_classes) if num_classes else [])


def build_app(models: Sequence[str] | None = None, title: str = "zoo demo") -> Any:
    """The demo page (a gradio.Blocks, queue set): Catalogue, Sample and Complete tabs over the given model ids or
    `local-dir:` folders (default: every installed card). Serve it with `run` (or `serve`, which also builds it)."""
    gr = require_gradio()
    cat = Catalogue.of(models)
    names = cat.generative()
    if not names:
        raise InputError("none of the models to serve samples (only tokenizers); name a generative model")
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(f"# {title}\nAutoregressive image models with exact likelihoods, served from this machine "
                    "(offline). Every figure is in the model's card with the command that measured it.")
        with gr.Tab("Catalogue"):
            _catalogue_tab(gr, cat, names)
        with gr.Tab("Sample"):
            _sample_tab(gr, demo, cat, names)
        with gr.Tab("Complete"):
            _complete_tab(gr, demo, cat, names, TestImages())
    demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def _catalogue_tab(gr: Any, cat: Catalogue, names: list[str]) -> None:
    """The cards as a table; one card's description and figures with their commands; its samples on demand."""
    grids: dict[str, Any] = {}

    @_answer
    def card(name: str) -> str:
        """A card: description, data, sampling preset, and each figure with the command that measured it."""
        return card_markdown(cat.card(name))

    @_answer
    def card_samples(name: str) -> tuple[Any, str]:
        """16 samples of a model (seed 0, its card's preset), drawn once and kept."""
        from .grid import make_grid
        if cat.check(name) not in names:
            raise InputError(f"{name} is a tokenizer: it does not sample (the models built on it do)")
        if name not in grids:
            x, command = draw_samples(cat, name, 16, 0, sampling_kwargs())
            grids[name] = (make_grid(x), f"16 samples, the card's preset: `{command}`")
        return grids[name]

    gr.Dataframe(value=catalogue_rows(cat), headers=["id", "family", "data", "params", "NLL (test)",
                                                     "FID (n; floor)"], interactive=False, wrap=True)
    gr.Markdown("NLL on the test split: nats/image (binarized data), bits/dim (8-bit), tok: nats/image of a "
                "tokenizer's codes. FID: n samples against the test split; floor: real-vs-real at the same n. \\*: "
                "measured on cifar10-jpeg, a JPEG re-encoded copy of CIFAR-10.")
    with gr.Row():
        with gr.Column(scale=3):
            pick = gr.Dropdown(choices=list(cat.cards), value=names[0], label="card", allow_custom_value=True)
            text = gr.Markdown(card_markdown(cat.card(names[0])))
        with gr.Column(scale=2):
            draw = gr.Button("Draw 16 samples (seed 0, the card's preset)")
            grid = gr.Image(label="samples", type="pil", format="png", interactive=False, elem_id="zoo-card-samples")
            note = gr.Markdown()
    pick.change(card, pick, text, api_name="card")
    draw.click(card_samples, pick, [grid, note], api_name="card_samples")


def _sample_tab(gr: Any, demo: Any, cat: Catalogue, names: list[str]) -> None:
    """Model, n, seed and the sampling settings (the card's preset filled in); the grid, shown and downloadable."""

    @_answer
    def sample(model: str, n: int = 16, seed: int = 0, temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, class_label: str | None = None, guidance: float | None = None,
               guidance_schedule: str | None = None, preset: bool = True,
               progress: Any = gr.Progress()) -> tuple[Any, str]:
        """n images (a grid), the same as `zoo sample`; empty settings take the card's preset."""
        from .grid import make_grid
        kw = sampling_kwargs(preset, temperature=temperature, top_k=top_k, top_p=top_p, class_label=class_label,
                             guidance=guidance, guidance_schedule=guidance_schedule)
        progress(0, desc=f"sampling {n} images of {model}")
        x, command = draw_samples(cat, model, n, seed, kw, progress=lambda b: progress(b / max(1, int(n))))
        return make_grid(x), f"{len(x)} images, the same as `{command}`"

    def fields(name: str) -> list[Any]:
        try:
            f = preset_fields(cat, name)
        except ZooError:
            return [gr.update()] * 6
        cond = f["num_classes"] > 0
        return [gr.update(value=f["temperature"]), gr.update(value=f["top_k"]), gr.update(value=f["top_p"]),
                gr.update(choices=f["choices"], value=f["class_label"], visible=cond),
                gr.update(value=f["guidance"], visible=cond), gr.update(value=f["guidance_schedule"], visible=cond)]

    from .settings import CFG_SCHEDULES
    f0 = preset_fields(cat, names[0])
    cond = f0["num_classes"] > 0
    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown(choices=names, value=names[0], label="model", allow_custom_value=True)
            with gr.Row():
                n = gr.Number(value=16, precision=0, label=f"n (1 to {MAX_N})")
                seed = gr.Number(value=0, precision=0, label="seed")
            with gr.Row():
                temperature = gr.Number(value=None, label="temperature", info="empty: the preset, else 1")
                top_k = gr.Number(value=None, precision=0, label="top-k", info="0: off")
                top_p = gr.Number(value=None, label="top-p", info="1: off")
            label = gr.Dropdown(choices=f0["choices"], value=None, label="class", allow_custom_value=True,
                                visible=cond, info="empty: the preset")
            with gr.Row():
                guidance = gr.Number(value=None, label="guidance (classifier-free)", visible=cond, info="1: none")
                schedule = gr.Dropdown(choices=list(CFG_SCHEDULES), value=None, label="guidance schedule",
                                       visible=cond)
            preset = gr.Checkbox(value=True, label="the card's preset fills empty settings")
            go = gr.Button("Sample", variant="primary")
        with gr.Column(scale=2):
            grid = gr.Image(label="samples (download: the button on the image)", type="pil", format="png",
                            interactive=False, buttons=["download", "fullscreen"], elem_id="zoo-samples")
            note = gr.Markdown()
    settings = [temperature, top_k, top_p, label, guidance, schedule]
    model.change(fields, model, settings, api_visibility="private")
    demo.load(fields, model, settings, api_visibility="private")
    go.click(sample, [model, n, seed, *settings, preset], [grid, note], api_name="sample")


def _complete_tab(gr: Any, demo: Any, cat: Catalogue, names: list[str], tests: TestImages) -> None:
    """A test or uploaded image, a painted or preset mask, k completions and the observed part's likelihood."""

    @_answer
    def show_source(model: str, source: str, index: int, upload: Any) -> tuple[dict[str, Any], str]:
        """The source image as the model sees it, enlarged on the painting canvas, and what it is."""
        from PIL import Image
        x, what = source_image(cat, tests, model, source, index, upload)
        background = to_pil(x[0], upscale(x)).convert("RGBA")
        empty = Image.new("RGBA", background.size, (0, 0, 0, 0))  # the layer the brush paints on
        return {"background": background, "layers": [empty], "composite": None}, f"**Source:** {what}."

    @_answer
    def complete(model: str, source: str = "test image", index: int = 0, upload: Any = None,
                 mask: str = "top-half", painted: Any = None, k: int = 4, seed: int = 0, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0, approximate: bool = False) -> tuple[Any, Any, str]:
        """k completions of a test or uploaded image under a preset or painted mask; observed pixels kept. The
        exact conditional, or refused; `approximate` accepts a family's named approximation (VAR)."""
        from .grid import make_grid, show_masked
        x, m, done, report = complete_images(cat, tests, model, source, index, upload, mask, painted, k, seed,
                                             temperature, top_k, top_p, approximate)
        grid = make_grid(done, nrow=min(len(done), 8), scale=COMPLETION_ZOOM)
        return to_pil(show_masked(x, m[None])[0], upscale(x)), grid, report

    with gr.Row():
        with gr.Column(scale=1):
            model = gr.Dropdown(choices=names, value=names[0], label="model", allow_custom_value=True)
            with gr.Row():
                source = gr.Radio(list(SOURCES), value="test image", label="source")
                index = gr.Number(value=0, precision=0, label="test image (or sample seed)")
            upload = gr.File(label=f"upload an image (at most {MAX_FILE_SIZE}, {MAX_SIDE} px a side)",
                             file_types=["image"], type="filepath", height=90)
            mask = gr.Radio([PAINTED, *PRESET_MASKS], value="top-half", label="mask (the region to regenerate)",
                            info="painted: what you paint on the image; random: half the pixels, by the seed")
            with gr.Row():
                k = gr.Number(value=4, precision=0, label=f"k (1 to {MAX_K})")
                seed = gr.Number(value=0, precision=0, label="seed")
            with gr.Row():
                temperature = gr.Number(value=1.0, label="temperature")
                top_k = gr.Number(value=0, precision=0, label="top-k", info="0: off")
                top_p = gr.Number(value=1.0, label="top-p", info="1: off")
            approximate = gr.Checkbox(value=False, label="accept an approximation",
                                      info="VAR and order-agnostic MADEs complete some masks only approximately "
                                           "(the report names how); unticked, such a mask is refused")
            go = gr.Button("Complete", variant="primary")
        with gr.Column(scale=2):
            editor = gr.ImageEditor(label="source: paint the region to regenerate (mask: painted)", type="pil",
                                    image_mode="RGBA", sources=[], transforms=[], canvas_size=(CANVAS, CANVAS),
                                    brush=gr.Brush(colors=["#ff3030"], color_mode="fixed", default_size=24),
                                    layers=gr.LayerOptions(allow_additional_layers=False, layers=["region"]),
                                    elem_id="zoo-canvas")
            what = gr.Markdown()
            with gr.Row():
                observed = gr.Image(label="observed (grey: regenerated)", type="pil", format="png",
                                    interactive=False, elem_id="zoo-observed")
                grid = gr.Image(label="completions", type="pil", format="png", interactive=False,
                                buttons=["download", "fullscreen"], elem_id="zoo-completions")
            report = gr.Markdown(elem_id="zoo-report")
    src = [model, source, index, upload]
    for comp in src:
        comp.change(show_source, src, [editor, what], api_visibility="private")
    demo.load(show_source, src, [editor, what], api_visibility="private")
    go.click(complete, [*src, mask, editor, k, seed, temperature, top_k, top_p, approximate],
             [observed, grid, report], api_name="complete")


def run(demo: Any, host: str | None = None, port: int | None = None, share: bool = False, block: bool = True) -> str:
    """Serve a built page with the demo's limits (upload size, decoded image size, errors shown, no server-side
    rendering) and print its URL. host/port None: Gradio's defaults (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, else
    127.0.0.1:7860; a Hugging Face Space sets them). `block=False` returns at once, the server in a thread."""
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # this process decodes nothing larger, Gradio's own decoding included
    try:
        _, url, share_url = demo.launch(server_name=host, server_port=port, share=share, prevent_thread_lock=True,
                                        max_file_size=MAX_FILE_SIZE, show_error=True, ssr_mode=False, quiet=True)
    except OSError as e:
        raise InputError(f"cannot serve on {host or 'the default host'}:{port or 'the default port'} ({e}); pick "
                         "another --port") from None
    print(f"zoo demo: {url}" + (f" (public link: {share_url})" if share_url else ""), flush=True)
    if block:
        try:
            demo.block_thread()
        except KeyboardInterrupt:
            pass
        finally:
            demo.close()
    return url


def serve(host: str = "127.0.0.1", port: int = 7860, share: bool = False, models: Sequence[str] | None = None,
          threads: int | None = None, block: bool = True) -> str:
    """Build the page and serve it on host:port (localhost by default; a public share link only when asked);
    returns the local URL (`zoo demo`)."""
    from .threads import set_threads
    demo = build_app(models)
    set_threads(threads)
    return run(demo, host, port, share, block)
