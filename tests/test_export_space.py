"""`zoo export` follows the Hub's conventions: a model card with the Hub's metadata, and an app.py with its
requirements.txt that run the folder as a Gradio Space of the demo for that model."""
from __future__ import annotations

import importlib.util
import re
import runpy
import socket

import numpy as np
import pytest
from PIL import Image

import zoo
from zoo.cards import Card

HAS_GRADIO = importlib.util.find_spec("gradio") is not None and importlib.util.find_spec("gradio_client") is not None
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting:Warning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("space") / "made-mnist-bin"
    return zoo.export.export("made-mnist-bin", out, repo="me/made-mnist-bin")


def test_the_model_card_carries_the_hubs_metadata(exported):
    from huggingface_hub import ModelCard
    text = (exported / "README.md").read_text(encoding="utf-8")
    card = ModelCard(text)
    data = card.data
    assert data.pipeline_tag == "unconditional-image-generation" and data.license == "mit"
    assert data.datasets == ["ylecun/mnist"] and data.library_name == "zoo"
    assert data.sdk == "gradio" and data.app_file == "app.py"
    original = zoo.get_card("made-mnist-bin")
    results = data.eval_results
    assert [(r.metric_type, r.metric_value, r.dataset_split) for r in results] == \
        [(m.name, m.value, m.split) for m in original.metrics]
    assert all(r.task_type == "unconditional-image-generation" and r.dataset_type == "ylecun/mnist"
               for r in results)
    assert results[0].metric_args["command"] == original.metrics[0].command
    assert data.model_name == "made-mnist-bin"


def test_the_model_card_says_pip_install_ar_zoo_never_zoo(exported):
    text = (exported / "README.md").read_text(encoding="utf-8")
    assert "pip install ar-zoo" in text and not re.search(r"pip install ['\"]?zoo\b", text)
    assert 'zoo.load("hf://me/made-mnist-bin")' in text and "--repo-type space" in text


def test_a_card_without_metrics_or_a_hub_dataset_has_no_model_index():
    from huggingface_hub import ModelCard
    card = Card(id="mine", plugin="made", architecture="made", description="My own.", dataset="folder",
                data={"dataset": "folder"}, config={}, weights_file="mine.safetensors", sha256="0" * 64)
    data = ModelCard(zoo.export.hub_readme(card)).data
    assert data.pipeline_tag == "unconditional-image-generation" and data.license == "mit"
    assert not data.eval_results and not data.datasets


def test_requirements_ask_for_ar_zoo_with_the_demo_extra(exported):
    lines = [ln for ln in (exported / "requirements.txt").read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["ar-zoo[demo]>=0.4.0"]


@pytest.mark.skipif(not HAS_GRADIO, reason="the demo extra is not installed: pip install -e '.[demo]'")
def test_the_exported_folder_runs_as_the_demo_of_its_model(exported):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from zoo.demo import run
    pixels = Image.MAX_IMAGE_PIXELS
    demo = runpy.run_path(str(exported / "app.py"), run_name="space")["demo"]  # as the Space imports it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        client = Client(run(demo, "127.0.0.1", port, block=False), verbose=False)
        path, _ = client.predict(model="made-mnist-bin", n=2, seed=7, api_name="/sample")
        expected = zoo.grid.make_grid(zoo.load(f"local-dir:{exported}").sample(2, seed=7))
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), np.asarray(expected.convert("RGB")))
        with pytest.raises(AppError, match="only the catalogue's ids"):  # it serves its own model only
            client.predict(model="made-mnist", n=2, api_name="/sample")
    finally:
        demo.close()
        Image.MAX_IMAGE_PIXELS = pixels
