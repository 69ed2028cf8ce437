"""experiments/seed_tables.py: every cell has a recipe or a shipped card, results are recorded and read back,
the report shows zoo's figure beside the presentation's (or the command of a cell not run), and `run` trains
and evaluates a cell through `zoo train` once, resuming instead of redoing."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

import zoo
from zoo import fid as zfid

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def st(monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location("seed_tables", ROOT / "experiments" / "seed_tables.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "seed_tables", mod)  # dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results.toml")
    return mod


def test_every_cell_has_a_recipe_or_a_shipped_card_and_every_recipe_is_a_cell(st):
    recipes = {p.stem for p in (ROOT / "experiments" / "recipes").glob("*.toml")}
    assert recipes == {m.id for m in st.MODELS.values() if m.card is None}
    for t in st.TABLES:
        for _, cells in t.rows:
            assert len(cells) == len(t.columns)
            for cell, metric, _ in cells:
                assert metric in st.MODELS[cell].metrics
    for m in st.MODELS.values():
        if m.card:
            assert zoo.get_card(m.card).dataset == m.dataset
            continue
        from zoo.cards import read_card
        card = read_card(m.recipe, recipe=True)
        assert card.id == m.id and card.dataset == m.dataset
        reason = st.unreachable(m)
        # a recipe either builds, or says why (the Gaussian head before it exists)
        assert reason is None or ("gaussian" in m.id and "head" in reason), (m.id, reason)


def test_the_grid_recipes_differ_only_in_what_their_cell_varies(st):
    from zoo.cards import read_card
    base = read_card(st.MODELS["exp-made-mnist-bin-1x500"].recipe, recipe=True)
    for arch, hidden in (("2x500", [500, 500]), ("3x500", [500] * 3), ("1x1000", [1000]), ("1x2000", [2000])):
        c = read_card(st.MODELS[f"exp-made-mnist-bin-{arch}"].recipe, recipe=True)
        assert c.config == {**base.config, "hidden": hidden} and c.training == base.training
    for ds in ("mnist", "cifar10-gray"):  # the grayscale grids use the Gaussian output, as the presentation's
        base = read_card(st.MODELS[f"exp-made-{ds}-1x500-gaussian"].recipe, recipe=True)
        assert base.config["head"] == "gaussian"
        for arch, hidden in (("2x500", [500, 500]), ("3x500", [500] * 3), ("1x1000", [1000]), ("1x2000", [2000])):
            c = read_card(st.MODELS[f"exp-made-{ds}-{arch}-gaussian"].recipe, recipe=True)
            assert c.config == {**base.config, "hidden": hidden} and c.training == base.training
    for h in (500, 1000):
        soft = read_card(st.MODELS[f"exp-made-mnist-1x{h}"].recipe, recipe=True)
        gauss = read_card(st.MODELS[f"exp-made-mnist-1x{h}-gaussian"].recipe, recipe=True)
        assert gauss.config == {**soft.config, "head": "gaussian"} and soft.config["head"] == "softmax"


def test_results_round_trip_and_each_record_replaces_its_cell(st):
    r = st.Result("exp-made-mnist-bin-1x500", "fid", 31.25, 2048, 0, 'zoo eval "x" --fid', "2026-01-01T00:00:00Z",
                  "mnist-bin test", "note", {"std": 0.5})
    st.record(r)
    st.record(st.Result("exp-made-mnist-bin-1x500", "nll", 93.5, 10000, None, "zoo eval x --nll", "d"))
    st.record(st.Result("exp-made-mnist-bin-1x500", "fid", 30.0, 2048, 0, "c", "d"))
    got = st.load_results()
    assert set(got) == {("exp-made-mnist-bin-1x500", "fid"), ("exp-made-mnist-bin-1x500", "nll")}
    assert got[("exp-made-mnist-bin-1x500", "fid")].value == 30.0 and got[("exp-made-mnist-bin-1x500", "nll")].seed is None
    st.record(r)
    assert st.load_results()[("exp-made-mnist-bin-1x500", "fid")] == r  # quotes and extras survive


def test_report_puts_zoo_beside_the_presentation_and_names_commands_of_cells_not_run(st, tmp_path):
    st.record(st.Result("exp-made-mnist-bin-1x500", "fid", 31.25, 2048, 0, "zoo eval a --fid -n 2048", "2026-01-02"))
    st.record(st.Result("exp-made-mnist-bin-1x500", "kid", 0.0123, 2048, 0, "zoo eval a --kid", "2026-01-02"))
    st.record(st.Result("floor-mnist-bin", "fid", 2.719, 2048, None, "zoo fid-floor mnist-bin -n 2048", "d"))
    text = st.report(st.RESULTS, tmp_path / "doc.md", tmp_path / "plot.png")
    row = next(line for line in text.splitlines() if line.startswith("| MNIST binarized | 53 "))
    assert row.startswith("| MNIST binarized | 53 | 31.2 [12.30] | 58 | not run |")
    assert "| MNIST binarized | 2.7 | not run |" in text
    assert "| 1 | 88.40 | not run |" in text
    assert ("`exp-made-mnist-bin-2x500` fid: `zoo train experiments/recipes/exp-made-mnist-bin-2x500.toml --out "
            "runs/experiments/exp-made-mnist-bin-2x500 --threads 1 && zoo eval runs/experiments/exp-made-mnist-bin-2x500"
            " --fid -n 2048 --seed 0`") in text
    assert "| MNIST grayscale (8-bit) | 270 | not run | 263 | not run | N/A | not run |" in text
    doc = (tmp_path / "doc.md").read_text()
    assert "plot.png" in doc and "zoo eval a --fid -n 2048" in doc
    from PIL import Image
    im = Image.open(tmp_path / "plot.png").convert("RGB")
    assert im.size[0] > im.size[1] > 200
    colours = {c for _, c in im.getcolors(1 << 16)}
    assert (31, 119, 180) in colours and (214, 39, 40) in colours  # mnist-bin (zoo and presentation), mnist


def test_the_committed_results_leave_no_cell_empty(st):
    """Issue 23: every cell of the presentation's tables has its figure in experiments/results.toml."""
    text = st.render(st.load_results(ROOT / "experiments" / "results.toml"))
    assert "| not run" not in text and "None: every cell of the tables has its figure." in text
    assert "None: every cell" not in st.render({})  # an empty record names every cell's command instead


RECIPE = """id = "exp-tiny"
plugin = "made"
architecture = "made"
description = "a tiny MADE for the seed-tables test"

[data]
dataset = "mnist-bin"

[config]
image_shape = [1, 28, 28]
levels = 2
hidden = [8]
num_masks = 1
seed = 0

[training]
epochs = 1
batch_size = 100
lr = 0.01
seed = 0
"""


@pytest.mark.slow  # a zoo train subprocess and two 2048-d Frechet distances: a minute or two
def test_run_trains_through_zoo_train_records_each_figure_and_resumes(st, mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(mnist_dir))
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PYTHONPATH", ":".join(sys.path))  # the `zoo train` subprocess imports this zoo
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "exp-tiny.toml").write_text(RECIPE)
    monkeypatch.setattr(st, "RECIPES", tmp_path / "recipes")
    monkeypatch.setattr(st, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(st, "N", 12)
    monkeypatch.setattr(st, "KID_REF_N", 20)
    monkeypatch.setattr(st, "MODELS", {"exp-tiny": st.Model("exp-tiny", "mnist-bin", ("fid", "kid", "nll"))})
    monkeypatch.setattr(st, "DATASETS", ())
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, zfid.DIMS))
    monkeypatch.setattr(zfid, "load_inception", lambda path=None: net)
    st.run("exp-*", threads=1, cached_only=True)  # no references cached: FID and KID wait
    got = st.load_results()
    assert set(got) == {("exp-tiny", "nll")} and got[("exp-tiny", "nll")].n == 200
    assert not (tmp_path / "runs" / "exp-tiny" / "features-n12-seed0.npy").exists()  # nothing to compare with yet
    st.run("exp-*", threads=1)
    got = st.load_results()
    assert set(got) == {("exp-tiny", k) for k in ("fid", "kid", "nll")}
    fid, kid = got[("exp-tiny", "fid")], got[("exp-tiny", "kid")]
    assert fid.n == 12 and fid.seed == 0 and "zoo eval" in fid.command and "--fid -n 12" in fid.command
    assert kid.extra["subset_size"] == 12 and kid.reference.endswith("first 20")
    # the recorded figures are what `zoo eval` prints for the trained run
    m = zoo.load(str(tmp_path / "runs" / "exp-tiny"))
    feats = zfid.features(m.sample(12, seed=0), net)
    ref = zfid.reference_stats("mnist-bin", "test", net, mnist_dir)
    assert fid.value == pytest.approx(zfid.fid(zfid.Stats.from_features(feats), ref).value, abs=1e-3)
    # nothing is redone: a second run trains and samples nothing
    monkeypatch.setattr(st, "_zoo", lambda *a: pytest.fail("trained again"))
    monkeypatch.setattr(zfid, "sample_features", lambda *a, **k: pytest.fail("sampled again"))
    st.run("exp-*", threads=1)
    assert st.load_results() == got


def test_run_follows_a_retrained_card_without_sampling(st, monkeypatch):
    """A shipped card's cell shows the card's current figure: a retrained card replaces the one recorded before."""
    model = st.MODELS["pixelcnn-mnist"]
    card = zoo.get_card("pixelcnn-mnist")
    m = next(m for m in card.metrics if m.name == "fid" and m.n == st.N and m.command == model.eval_command("fid"))
    st.record(st.Result(model.id, "fid", m.value + 13.0, st.N, st.SEED, m.command, "2026-11-29T00:00:00Z"))
    monkeypatch.setattr(st, "MODELS", {model.id: model})
    monkeypatch.setattr(st, "DATASETS", ())
    monkeypatch.setattr(zfid, "sample_features", lambda *a, **k: pytest.fail("sampled"))
    monkeypatch.setattr(zfid, "load_inception", lambda path=None: pytest.fail("loaded Inception"))
    st.run("pixelcnn-mnist", threads=1)
    got = st.load_results()[(model.id, "fid")]
    assert got.value == m.value and got.note == "the shipped card's figure"
    st.run("pixelcnn-mnist", threads=1)  # in step with the card: nothing changes
    assert st.load_results()[(model.id, "fid")] == got
