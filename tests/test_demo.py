"""`zoo demo`: the page's API through gradio_client, its bad inputs, and a real browser (Debian's Chromium).

One in-process server on a free port serves the smallest bundled models for the whole module. Skipped without
Gradio (`pip install -e '.[demo]'`); the browser test also without Playwright or /usr/bin/chromium. Set
ZOO_DEMO_SCREENSHOTS=docs to save a screenshot of each tab (the README's docs/demo-*.png).
"""
from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import zoo
from zoo.cli import main
from zoo.demo import COMPLETION_ZOOM
from zoo.grid import make_grid

HAS_GRADIO = importlib.util.find_spec("gradio") is not None and importlib.util.find_spec("gradio_client") is not None
needs_gradio = pytest.mark.skipif(not HAS_GRADIO, reason="the demo extra is not installed: pip install -e '.[demo]'")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
MODELS = ["made-mnist-bin", "made-mnist-bin-agnostic", "var-mnist", "vqvae-mnist"]
# Gradio 6's queue calls pandas in ways pandas 3 deprecates: its warnings, not ours
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The demo page over MODELS, served in this process: (url, the Blocks)."""
    if not HAS_GRADIO:
        pytest.skip("the demo extra is not installed")
    from zoo.demo import build_app, run
    pixels = Image.MAX_IMAGE_PIXELS
    demo = build_app(MODELS)
    url = run(demo, "127.0.0.1", free_port(), block=False)
    yield url, demo
    demo.close()
    Image.MAX_IMAGE_PIXELS = pixels  # run() bounds decoding process-wide, as a server should


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client
    return Client(server[0], verbose=False)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def grid_pixels(x: torch.Tensor, **kw) -> np.ndarray:
    return np.asarray(make_grid(x, **kw).convert("RGB"))


def tiles(image, n: int, nrow: int, h: int = 28, w: int = 28, pad: int = 2, scale: int = 2) -> torch.Tensor:
    """The images (n, 1, h, w) in [0, 1] of a one-channel make_grid PNG or its pixels (the inverse of
    zoo.grid.make_grid)."""
    a = image if isinstance(image, np.ndarray) else np.asarray(Image.open(image).convert("L"))
    a = a[::scale, ::scale].astype(np.float32) / 255
    out = []
    for i in range(n):
        r, k = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        out.append(torch.from_numpy(a[top:top + h, left:left + w].copy()))
    return torch.stack(out)[:, None]


def app_error(client, api_name: str, **kwargs) -> str:
    """The message of a refused call (gradio_client raises AppError with the page's gr.Error text)."""
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError) as e:
        client.predict(**kwargs, api_name=api_name)
    return str(e.value)


# ---- without Gradio: the clear error, the defaults ------------------------------------------------------------

def test_missing_gradio_is_a_clear_error_naming_the_extra():
    code = ("import sys; sys.modules['gradio'] = None\n"
            "from zoo.cli import main\n"
            "main(['demo'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    text = " ".join(r.stderr.split())  # rich wraps long lines at the terminal's width
    assert r.returncode == 2, r.stderr
    assert "pip install -e '.[demo]'" in text and "Traceback" not in text


def test_zoo_demo_binds_localhost_and_never_shares_unless_asked(monkeypatch):
    import zoo.demo
    calls = []
    monkeypatch.setattr(zoo.demo, "serve", lambda **kw: calls.append(kw))
    runner = CliRunner()
    assert runner.invoke(main, ["demo"]).exit_code == 0
    assert runner.invoke(main, ["demo", "--port", "8000", "--share", "--model", "var-mnist"]).exit_code == 0
    assert calls[0] == dict(host="127.0.0.1", port=7860, share=False, models=None, threads=None)
    assert calls[1]["port"] == 8000 and calls[1]["share"] is True and calls[1]["models"] == ["var-mnist"]


def test_list_does_not_import_gradio():
    code = "import sys\nfrom zoo.cli import main\ntry:\n    main(['list'])\nexcept SystemExit:\n    pass\n" \
           "assert 'gradio' not in sys.modules, 'zoo list imported gradio'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_sampling_kwargs_and_the_command_line_they_equal():
    from zoo.demo import sample_command, sampling_kwargs
    from zoo.presets import UNSET
    kw = sampling_kwargs(temperature=0.9, top_k=0, class_label="3: three", guidance=2.0)
    assert kw["temperature"] == 0.9 and kw["top_k"] is None and kw["y"] == 3 and kw["cfg"] == 2.0
    assert kw["top_p"] is UNSET and kw["preset"] is True
    assert sample_command("var-mnist", 4, 1, kw) == ("zoo sample var-mnist -n 4 --seed 1 --temperature 0.9 "
                                                     "--top-k 0 --cfg 2.0 --class 3")
    preset = zoo.get_card("var-mnist").sampling  # settings equal to the card's preset go unsaid
    same = sampling_kwargs(temperature=1.0, top_k=preset.get("top_k", 0), top_p=preset.get("top_p", 1.0),
                           class_label=preset.get("classes"), guidance=preset.get("cfg"),
                           guidance_schedule=preset.get("cfg_schedule", "constant"))
    assert sample_command("var-mnist", 4, 1, same, preset) == "zoo sample var-mnist -n 4 --seed 1"
    assert sample_command("var-mnist", 4, 1, dict(same, preset=False), preset).endswith("--no-preset")
    assert sampling_kwargs(class_label="uniform", preset=False)["y"] == "uniform"
    with pytest.raises(zoo.InputError, match="class index"):
        sampling_kwargs(class_label="cat")


def test_test_images_come_from_the_data_root_when_present(monkeypatch, mnist_dir):
    from zoo.demo import Catalogue, TestImages, source_image
    cat = Catalogue.of(["made-mnist-bin"])
    monkeypatch.setenv("ZOO_DATA_DIR", str(mnist_dir))
    x, what = source_image(cat, TestImages(), "made-mnist-bin", "test image", 3, None)
    expected, _ = zoo.data.load_dataset("mnist-bin", "test", mnist_dir).batch(slice(3, 4))
    assert torch.equal(x, expected) and "test image 3 of mnist-bin test" in what
    with pytest.raises(zoo.InputError, match="does not exist"):
        source_image(cat, TestImages(), "made-mnist-bin", "test image", 10_000, None)


def test_painted_mask_hides_the_painted_cells():
    from zoo.demo import painted_mask
    layer = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (0, 150, 280, 200))  # rows 15..19 of a 28x28 image, painted at 10x
    mask = painted_mask({"background": None, "layers": [layer], "composite": None}, (1, 28, 28))
    assert mask.shape == (1, 28, 28) and mask.dtype == torch.bool
    hidden = (~mask[0]).nonzero()[:, 0].unique().tolist()
    assert hidden == [15, 16, 17, 18, 19]
    assert bool(painted_mask(None, (1, 28, 28)).all())


# ---- the API: /sample -----------------------------------------------------------------------------------------

@needs_gradio
def test_sample_gives_the_images_of_the_library_and_of_zoo_sample(client, tmp_path):
    path, note = client.predict(model="made-mnist-bin", n=4, seed=3, api_name="/sample")
    x = zoo.load("made-mnist-bin").sample(4, seed=3)
    assert np.array_equal(pixels(path), grid_pixels(x))
    command = re.search(r"`(zoo sample [^`]+)`", note).group(1)
    assert command == "zoo sample made-mnist-bin -n 4 --seed 3"
    out = tmp_path / "cli.png"
    result = CliRunner().invoke(main, [*command.split()[1:], "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(path), pixels(out))


@needs_gradio
def test_sample_settings_classes_and_guidance_match_the_library(client, tmp_path):
    path, note = client.predict(model="var-mnist", n=4, seed=5, temperature=0.9, top_k=50, class_label="3",
                                guidance=2.0, guidance_schedule="linear", api_name="/sample")
    x = zoo.load("var-mnist").sample(4, seed=5, temperature=0.9, top_k=50, y=3, cfg=2.0, cfg_schedule="linear")
    assert np.array_equal(pixels(path), grid_pixels(x))
    command = re.search(r"`(zoo sample [^`]+)`", note).group(1)
    out = tmp_path / "cli.png"
    assert CliRunner().invoke(main, [*command.split()[1:], "-o", str(out)]).exit_code == 0
    assert np.array_equal(pixels(path), pixels(out))
    # nothing given: the card's preset, as zoo.load(...).sample(n, seed=...) and `zoo sample` use it
    path, _ = client.predict(model="var-mnist", n=3, seed=2, api_name="/sample")
    assert np.array_equal(pixels(path), grid_pixels(zoo.load("var-mnist").sample(3, seed=2)))
    path, note = client.predict(model="var-mnist", n=3, seed=2, preset=False, api_name="/sample")
    assert np.array_equal(pixels(path), grid_pixels(zoo.load("var-mnist").sample(3, seed=2, preset=False)))
    assert "--no-preset" in note


@needs_gradio
def test_the_sample_apis_settings_are_exactly_the_sampling_settings_fields(client):
    from zoo.settings import SamplingSettings
    params = [p["parameter_name"] for p in client.view_api(return_format="dict", print_info=False)
              ["named_endpoints"]["/sample"]["parameters"]]
    settings = [p for p in params if p not in ("model", "n", "seed", "preset")]
    assert sorted(settings) == sorted(s.page for s in SamplingSettings.spec().values())


@needs_gradio
def test_bad_sample_requests_are_refused_clearly_and_the_server_keeps_serving(client, monkeypatch):
    loaded = []
    real_load = zoo.api.load
    monkeypatch.setattr(zoo.api, "load", lambda ref, *a, **k: loaded.append(ref) or real_load(ref, *a, **k))
    assert "at most 256" in app_error(client, "/sample", model="made-mnist-bin", n=100_000)
    assert "zoo sample made-mnist-bin -n 100000" in app_error(client, "/sample", model="made-mnist-bin", n=100_000)
    assert "from 1 to 256" in app_error(client, "/sample", model="made-mnist-bin", n=0)
    for ref in ("/etc/passwd", "local-dir:/tmp", "hf://org/name", "../cards/made/made-mnist-bin.toml",
                "made-mnist", "nope"):
        text = app_error(client, "/sample", model=ref, n=2)
        assert f"unknown model '{ref}'" in text and "only the catalogue's ids" in text
    assert "tokenizer" in app_error(client, "/sample", model="vqvae-mnist", n=2)
    assert "class" in app_error(client, "/sample", model="made-mnist-bin", n=2, class_label="3")
    assert "temperature" in app_error(client, "/sample", model="made-mnist-bin", n=2, temperature=-1)
    assert not [r for r in loaded if r not in MODELS]  # no request reached a path or another id
    path, _ = client.predict(model="made-mnist-bin", n=2, seed=0, api_name="/sample")  # still serving
    assert Path(path).is_file()


@needs_gradio
def test_eight_clients_at_once_each_get_their_own_images(server):
    from gradio_client import Client
    url = server[0]

    def draw(seed: int) -> np.ndarray:
        path, _ = Client(url, verbose=False).predict(model="made-mnist-bin", n=2, seed=seed, api_name="/sample")
        return pixels(path)

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(draw, range(8)))
    model = zoo.load("made-mnist-bin")
    for seed, image in enumerate(got):
        assert np.array_equal(image, grid_pixels(model.sample(2, seed=seed))), seed


# ---- the API: /complete and the catalogue ------------------------------------------------------------------------

@needs_gradio
def test_complete_keeps_the_observed_pixels_and_gives_their_exact_likelihood(client):
    observed, grid, report = client.predict(model="made-mnist-bin", mask="top-half", k=3, seed=1,
                                            api_name="/complete")
    m = zoo.load("made-mnist-bin")
    x = m.sample(1, seed=0)  # no dataset under the data root: the source is the model's own sample, seed 0
    done = tiles(grid, 3, nrow=3, scale=COMPLETION_ZOOM)
    assert torch.equal(done[:, :, :14], x[:, :, :14].expand(3, 1, 14, 28))  # observed rows kept exactly
    expected = m.complete(x.expand(3, 1, 28, 28), zoo.masks.top_half(x), seed=1)
    assert torch.equal(done, expected)
    value = float(m.conditionals(x)[0, :392].sum())
    assert f"log p = {value:,.2f} nats" in report and "own sample (seed 0)" in report
    shown = np.asarray(Image.open(observed).convert("L"))
    assert shown.shape == (280, 280) and (shown[150:] == 128).all()  # the regenerated half shown grey


@needs_gradio
def test_a_model_that_cannot_complete_the_mask_is_refused_naming_those_that_can(client):
    text = app_error(client, "/complete", model="made-mnist-bin", mask="center")
    assert "made-mnist-bin-agnostic" in text and "made-mnist-bin" in text
    for name, mask in (("made-mnist-bin-agnostic", "center"), ("var-mnist", "bottom-half")):
        # completed only by the family's named approximation: refused unless the caller accepts it
        assert "approximate" in app_error(client, "/complete", model=name, mask=mask)
    _, _, report = client.predict(model="made-mnist-bin-agnostic", mask="center", k=2, approximate=True,
                                  api_name="/complete")
    assert "not a sum of its conditionals" in report and "another distribution" in report
    _, _, report = client.predict(model="var-mnist", mask="bottom-half", k=2, approximate=True,
                                  api_name="/complete")
    assert "not of pixels" in report and "zero-shot" in report
    _, _, report = client.predict(model="made-mnist-bin-agnostic", mask="top-half", k=2, api_name="/complete")
    assert "**Completion:**" not in report  # a raster prefix is exact: no approximation named


@needs_gradio
def test_a_painted_mask_through_the_api(client, tmp_path):
    from gradio_client import handle_file
    background, layer = tmp_path / "bg.png", tmp_path / "layer.png"
    Image.new("RGBA", (280, 280), (0, 0, 0, 255)).save(background)
    paint = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    paint.paste((255, 48, 48, 255), (0, 140, 280, 280))  # the bottom half: top-half observed, a raster prefix
    paint.save(layer)
    editor = {"background": handle_file(str(background)), "layers": [handle_file(str(layer))], "composite": None}
    _, grid, report = client.predict(model="made-mnist-bin", mask="painted", painted=editor, k=2, seed=4,
                                     api_name="/complete")
    x = zoo.load("made-mnist-bin").sample(1, seed=0)
    expected = zoo.load("made-mnist-bin").complete(x.expand(2, 1, 28, 28), zoo.masks.top_half(x), seed=4)
    assert torch.equal(tiles(grid, 2, nrow=2, scale=COMPLETION_ZOOM), expected)
    assert "392 of 784 pixels regenerated" in report
    assert "nothing to complete" in app_error(client, "/complete", model="made-mnist-bin", mask="painted")
    text = app_error(client, "/complete", model="made-mnist-bin", mask="everything")  # the page's own choice list
    assert "everything" in text and "top-half" in text


@needs_gradio
def test_uploads_are_fitted_by_the_models_preprocessing_and_bad_ones_refused(client, server, tmp_path):
    import httpx
    from gradio_client import handle_file
    photo = tmp_path / "photo.png"
    Image.fromarray((np.arange(90 * 60 * 3) % 256).astype(np.uint8).reshape(60, 90, 3)).save(photo)
    _, _, report = client.predict(model="made-mnist-bin", source="upload", upload=handle_file(str(photo)), k=1,
                                  api_name="/complete")
    assert "fitted to 1x28x28" in report and "binarized" in report
    text = tmp_path / "not-an-image.png"
    text.write_text("hello")
    assert "not an image" in app_error(client, "/complete", model="made-mnist-bin", source="upload",
                                       upload=handle_file(str(text)))
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert "Invalid file type" in app_error(client, "/complete", model="made-mnist-bin", source="upload",
                                            upload=handle_file(str(other)))
    big = tmp_path / "big.png"
    Image.new("L", (6000, 6000)).save(big)  # small on disk (about 35 kB), 36 megapixels decoded
    assert "larger than this page decodes" in app_error(client, "/complete", model="made-mnist-bin",
                                                        source="upload", upload=handle_file(str(big)))
    assert "no image uploaded" in app_error(client, "/complete", model="made-mnist-bin", source="upload")
    huge = tmp_path / "huge.png"
    huge.write_bytes(os.urandom(11 * 2**20))
    with open(huge, "rb") as f:  # the server refuses it whatever the client checks
        r = httpx.post(f"{server[0]}gradio_api/upload", files={"files": ("huge.png", f, "image/png")}, timeout=60)
    assert r.status_code == 413, r.status_code
    _, _, report = client.predict(model="made-mnist-bin", k=1, api_name="/complete")  # still serving
    assert "Likelihood" in report


@needs_gradio
def test_catalogue_cards_and_their_samples(client):
    from zoo.demo import Catalogue, catalogue_rows
    rows = catalogue_rows(Catalogue.of(MODELS))
    assert [r[0] for r in rows] == MODELS
    assert rows[0][1] == "made" and re.search(r"\(n=[\d,]+; floor [\d.]+\)", rows[0][5])  # FID, its n and floor
    text = client.predict("made-mnist-bin", api_name="/card")
    assert "zoo eval made-mnist-bin --nll" in text and "real-vs-real floor" in text
    path, note = client.predict("made-mnist-bin", api_name="/card_samples")
    assert np.array_equal(pixels(path), grid_pixels(zoo.load("made-mnist-bin").sample(16, seed=0)))
    assert "tokenizer" in app_error(client, "/card_samples", name="vqvae-mnist")
    assert "unknown model" in app_error(client, "/card", name="/etc/passwd")


# ---- a real browser ------------------------------------------------------------------------------------------------

def _browser():
    if not HAS_GRADIO:
        pytest.skip("the demo extra is not installed")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not CHROMIUM.is_file():
        pytest.skip("no /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright
    return sync_playwright()


def _image(page, elem_id: str, timeout: float = 240_000) -> np.ndarray:
    """The pixels of the image an output component shows, fetched as the page fetched them."""
    img = page.locator(f"#{elem_id} img").first
    img.wait_for(state="visible", timeout=timeout)
    body = page.request.get(img.get_attribute("src")).body()
    import io
    return np.asarray(Image.open(io.BytesIO(body)).convert("L"))


def _paint_stroke(page, box: dict) -> None:
    """A brush stroke across the middle of the canvas (pauses let the editor register each move)."""
    x0, y = box["x"] + box["width"] * 0.5 - 110, box["y"] + box["height"] * 0.5 + 30
    page.mouse.move(x0, y)
    page.wait_for_timeout(200)
    page.mouse.down()
    page.wait_for_timeout(200)
    for i in range(1, 23):
        page.mouse.move(x0 + 10 * i, y, steps=2)
        page.wait_for_timeout(30)
    page.mouse.up()
    page.wait_for_timeout(1000)


def _pick(page, label: str, value: str) -> None:
    """Choose a value in the visible dropdown with this label (typed, then Enter, as a user may)."""
    box = page.get_by_label(label, exact=True).filter(visible=True).first
    box.click()
    box.fill(value)
    page.keyboard.press("Enter")


@pytest.fixture
def page_server(server):
    """The module's server; with ZOO_DEMO_SCREENSHOTS (the README's pictures) one over every installed model, with
    test images from ZOO_DEMO_DATA_DIR when given: (url, whether test images come from a dataset)."""
    if not os.environ.get("ZOO_DEMO_SCREENSHOTS"):
        yield server[0], False
        return
    from zoo.demo import build_app, run
    data = os.environ.get("ZOO_DEMO_DATA_DIR")
    old = os.environ.get("ZOO_DATA_DIR")
    if data:
        os.environ["ZOO_DATA_DIR"] = data
    demo = build_app()
    try:
        yield run(demo, "127.0.0.1", free_port(), block=False), bool(data)
    finally:
        demo.close()
        os.environ.pop("ZOO_DATA_DIR", None) if old is None else os.environ.update(ZOO_DATA_DIR=old)


def test_in_a_real_browser_sample_paint_and_complete(page_server):
    shots = os.environ.get("ZOO_DEMO_SCREENSHOTS")
    url, from_data = page_server
    with _browser() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            # Catalogue: the table, a card, its samples on demand
            page.get_by_role("button", name="Draw 16 samples").wait_for()
            assert all(name in page.content() for name in MODELS)  # the catalogue table
            page.get_by_role("button", name="Draw 16 samples").click()
            assert _image(page, "zoo-card-samples").size > 0
            if shots:
                page.screenshot(path=f"{shots}/demo-catalogue.png", full_page=True)
            # Sample: made-mnist-bin, 16 images, seed 0: the library's images
            page.get_by_role("tab", name="Sample").click()
            _pick(page, "model", "made-mnist-bin")
            page.get_by_label("n (1 to 256)").fill("16")
            page.get_by_role("button", name="Sample", exact=True).click()
            got = _image(page, "zoo-samples")
            assert np.array_equal(got, grid_pixels(zoo.load("made-mnist-bin").sample(16, seed=0))[..., 0])
            if shots:
                page.screenshot(path=f"{shots}/demo-sample.png", full_page=True)
            # Complete: the order-agnostic MADE, a painted stroke, 4 completions
            page.get_by_role("tab", name="Complete").click()
            _pick(page, "model", "made-mnist-bin-agnostic")
            page.get_by_text(re.compile("made-mnist-bin-agnostic's own sample|of mnist-bin test")).wait_for(
                timeout=120_000)
            page.wait_for_timeout(1000)
            page.locator("#zoo-canvas button[aria-label='Brush']").first.click()
            _paint_stroke(page, page.locator("#zoo-canvas canvas").first.bounding_box())
            page.get_by_label("painted").check()
            # a painted stroke is no raster prefix: the order-agnostic MADE completes it by its named approximation
            page.get_by_label("accept an approximation").check()
            page.get_by_role("button", name="Complete", exact=True).click()
            shown = _image(page, "zoo-observed")
            grid = _image(page, "zoo-completions")
            page.get_by_text("pixels regenerated").wait_for(timeout=240_000)
            if shots:
                page.screenshot(path=f"{shots}/demo-complete.png", full_page=True)
        finally:
            browser.close()
    cells = torch.from_numpy(shown[::10, ::10].astype(np.float32) / 255)  # the observed image, shown at 10x
    hidden = cells == 128 / 255  # grey: regenerated
    assert 0 < int(hidden.sum()) < 28 * 28 and not bool(hidden[:10].any())  # the stroke, not the top rows
    if not from_data:  # the source: the model's own sample, seed 0
        source = zoo.load("made-mnist-bin-agnostic").sample(1, seed=0)[0, 0]
        assert torch.equal(cells[~hidden], source[~hidden])
    for image in tiles(grid, 4, nrow=4, scale=COMPLETION_ZOOM)[:, 0]:
        assert torch.equal(image[~hidden], cells[~hidden])  # every observed pixel kept
