"""Your own images: any image folder as training and evaluation data, and datasets as a plugin point.

Every folder here is made by the tests (tests/fakedata.make_image_folder): with and without class subfolders,
grey and colour, of mixed sizes, modes and formats, and with broken files."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import zoo
import zoo.plugins
from zoo import image_folder as zif
from zoo.cards import read_card
from zoo.cli import main
from zoo.data import load_dataset
from zoo.datasets import Dataset, get_dataset

from fakedata import make_image_folder

MADE_RECIPE = """id = "made-tiny"
plugin = "made"
architecture = "made"
[data]
dataset = "mnist-bin"
[config]
image_shape = [1, 6, 6]
levels = 2
hidden = [16]
num_masks = 1
[training]
epochs = 1
batch_size = 8
eval_batch_size = 16
"""

PIXELCNN_RECIPE = """id = "pixelcnn-tiny"
plugin = "pixelcnn"
architecture = "pixelcnn"
[data]
dataset = "cifar10"
[config]
image_shape = [3, 6, 6]
levels = 256
hidden = 6
layers = 2
num_classes = 10
[training]
epochs = 1
batch_size = 8
eval_batch_size = 16
"""


@pytest.fixture(autouse=True)
def folder_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_FOLDER_CACHE", str(tmp_path / "folder-cache"))
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "fid-cache"))
    return tmp_path / "folder-cache"


def invoke(*args, code=0):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == code, r.output
    return " ".join(r.output.replace("│", " ").split())  # terminal wrapping and table rules undone


def recipe(tmp_path: Path, text: str, name: str = "recipe.toml") -> Path:
    (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path / name


# ---- scanning, hashing, splitting ------------------------------------------------------------------------------
def test_flat_and_class_folders_hash_and_split(tmp_path):
    flat = zif.scan(make_image_folder(tmp_path / "flat", classes=None, n=30))
    assert not flat.conditional and len(flat.files) == 30 and set(flat.labels) == {0}
    classed = zif.scan(make_image_folder(tmp_path / "classed", classes=("b", "a", "c"), n=7))
    assert classed.classes == ("a", "b", "c")  # sorted: labels do not depend on the file system's order
    assert all(f.split("/")[0] == classed.classes[y] for f, y in zip(classed.files, classed.labels))
    held = classed.held_out()
    labels = np.asarray(classed.labels)
    for c in range(3):  # every class on both sides of the split
        assert held[labels == c].any() and (~held[labels == c]).any()
    # the content hash follows the bytes and the names, nothing else
    assert zif.scan(tmp_path / "classed").sha256 == classed.sha256
    (tmp_path / "classed" / "a" / "img000.png").rename(tmp_path / "classed" / "a" / "renamed.png")
    renamed = zif.scan(tmp_path / "classed")
    assert renamed.sha256 != classed.sha256
    p = tmp_path / "classed" / "a" / "renamed.png"
    p.write_bytes(p.read_bytes() + b"\0")
    assert zif.scan(tmp_path / "classed").sha256 != renamed.sha256


def test_held_out_share_is_stable_when_images_are_added(tmp_path):
    root = make_image_folder(tmp_path / "f", classes=None, n=60, odd=False)
    before = zif.scan(root)
    held_before = {f for f, h in zip(before.files, before.held_out()) if h}
    assert 1 <= len(held_before) <= 20
    make_image_folder(tmp_path / "more", classes=None, n=30, seed=5, odd=False)
    for p in (tmp_path / "more").iterdir():
        shutil.copy(p, root / f"new-{p.name}")
    after = zif.scan(root)
    held_after = {f for f, h in zip(after.files, after.held_out()) if h}
    assert held_before <= held_after and not (held_after - held_before) & set(before.files)


def test_fitting_rule_on_odd_sizes_and_modes(tmp_path):
    # a wide image, white in its middle two thirds: the short side is resized to 4 (the width to 12), and the
    # centre crop (the original's middle third, columns 10-20) is white
    a = np.zeros((10, 30, 3), np.uint8)
    a[:, 5:25] = 255
    out = zif.fit_image(a, (3, 4, 4))
    assert out.shape == (3, 4, 4) and out.min() >= 250
    tall = zif.fit_image(a.transpose(1, 0, 2).copy(), (1, 5, 5))
    assert tall.shape == (1, 5, 5) and tall.min() >= 250
    # a smaller image is enlarged to cover the target
    assert zif.fit_image(np.full((2, 3, 3), 77, np.uint8), (1, 8, 8)).tolist() == np.full((1, 8, 8), 77).tolist()
    # luma as cifar10-gray's: (299 R + 587 G + 114 B) / 1000
    red = zif.fit_image(np.full((4, 4, 3), (200, 0, 0), np.uint8), (1, 4, 4))
    assert int(red[0, 0, 0]) == round(299 * 200 / 1000)
    # 16-bit grey is scaled to 8 bits, not clipped
    Image.fromarray(np.full((5, 5), 65535, np.uint16)).save(tmp_path / "white16.png")
    Image.fromarray(np.full((5, 5), 128 * 257, np.uint16)).save(tmp_path / "grey16.png")
    f = zif.scan(tmp_path)
    x = zif.decode(f, (1, 5, 5))
    assert x[f.files.index("white16.png")].min() == 255 and x[f.files.index("grey16.png")].max() == 128


def test_every_mode_and_size_decodes_to_the_model_shape(tmp_path):
    f = zif.scan(make_image_folder(tmp_path / "mixed", n=12))
    for shape in ((1, 7, 5), (3, 8, 8)):
        x = zif.decode(f, shape)
        assert x.shape == (24, *shape) and x.dtype == np.uint8
    with pytest.raises(zoo.InputError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        zif.decode(f, (2, 8, 8))


def test_decoded_images_are_cached_and_a_damaged_cache_is_decoded_again(tmp_path, monkeypatch, folder_cache):
    f = zif.scan(make_image_folder(tmp_path / "f", n=6))
    first = zif.decode(f, (3, 8, 8))
    assert len(list(folder_cache.glob("*.npz"))) == 1

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")
    monkeypatch.setattr(Image, "open", no_decoding)
    assert np.array_equal(zif.decode(f, (3, 8, 8)), first)
    monkeypatch.undo()
    monkeypatch.setenv("ZOO_FOLDER_CACHE", str(folder_cache))
    next(folder_cache.glob("*.npz")).write_bytes(b"not an npz")
    assert np.array_equal(zif.decode(f, (3, 8, 8)), first)


def test_levels_binarization_and_quantization(tmp_path):
    root = make_image_folder(tmp_path / "f", classes=None, n=40, odd=False)
    train = zif.load_folder(root, "train", (1, 6, 6), levels=2)
    val = zif.load_folder(root, "val", (1, 6, 6), levels=2)
    assert train.dynamic_binarization and not val.dynamic_binarization
    assert len(train) + len(val) == 40 and set(val.images.unique().tolist()) <= {0, 255}
    assert torch.equal(zif.load_folder(root, "val", (1, 6, 6), levels=2).images, val.images)  # seeded, as mnist-bin
    g1, g2 = (torch.Generator().manual_seed(3) for _ in range(2))
    assert torch.equal(train.batch(slice(0, 8), g1)[0], train.batch(slice(0, 8), g2)[0])
    q = zif.load_folder(root, "val", (1, 6, 6), levels=4).images
    assert set(q.unique().tolist()) <= {0, 85, 170, 255}
    with pytest.raises(zoo.DataError, match="train and val"):
        zif.load_folder(root, "test", (1, 6, 6))


# ---- bad folders: a clear error, nothing started ---------------------------------------------------------------
def test_bad_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(zoo.DataError, match="no images found.*skipped 1 other"):
        zif.scan(tmp_path / "empty")
    with pytest.raises(zoo.DataError, match="does not exist"):
        zif.scan(tmp_path / "nowhere")
    mixed = make_image_folder(tmp_path / "mixed", n=3)
    shutil.copy(mixed / "bars" / "img000.png", mixed / "stray.png")
    with pytest.raises(zoo.DataError, match="at its top level .* and class subfolders"):
        zif.scan(mixed)
    lonely = make_image_folder(tmp_path / "lonely", n=3)
    for p in list((lonely / "blobs").iterdir())[1:]:
        p.unlink()
    with pytest.raises(zoo.DataError, match="'blobs' has only one image"):
        zif.scan(lonely)


def test_undecodable_files_are_all_named(tmp_path):
    root = make_image_folder(tmp_path / "f", n=4)
    good = (root / "bars" / "img000.png").read_bytes()
    (root / "bars" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "blobs" / "text.jpg").write_text("not a jpeg")
    (root / "blobs" / "empty.png").write_bytes(b"")
    (root / "blobs" / "README.md").write_text("skipped: not an image suffix")
    with pytest.raises(zoo.DataError) as e:
        zif.load_folder(root, "train", (1, 8, 8))
    msg = str(e.value)
    assert "3 file(s) cannot be decoded" in msg and "nothing was started" in msg
    for name in ("bars/cut.png", "blobs/text.jpg", "blobs/empty.png"):
        assert name in msg


# ---- end to end: the README walkthrough ------------------------------------------------------------------------
def test_walkthrough_grey_flat_folder(tmp_path, monkeypatch):
    """Train a tiny MADE recipe on a flat folder, sample, eval, export and load, as the README says."""
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "my-images", classes=None, n=40, colour=False)
    out = invoke("train", recipe(tmp_path, MADE_RECIPE), "--data", "my-images", "--out", "runs/mine",
                 "--threads", "1")
    assert "--data wins over the card's dataset, mnist-bin" in out
    card = read_card("runs/mine/card.toml")
    f = zif.scan("my-images")
    assert card.id == "made-tiny-my-images" and card.dataset == "image-folder"
    assert card.data["folder"] == "my-images" and card.data["images"] == 40 and card.data["classes"] == []
    assert card.data["content_sha256"] == f.sha256 and "centre-cropped" in card.data["preprocessing"]
    assert "binarized" in card.data["preprocessing"] and "held out" in card.data["split"]
    nll = card.metric("nll")
    assert nll.split == "val" and nll.command == "zoo eval local-dir:runs/mine --nll --data my-images"
    assert nll.n == int(f.held_out().sum())

    invoke("sample", "local-dir:runs/mine", "-n", 4, "-o", "mine.png")
    assert Image.open("mine.png").size[0] > 12
    ev = invoke("eval", "local-dir:runs/mine", "--nll", "--data", "my-images")
    assert f"n={nll.n}" in ev and f"{nll.value:.2f}" in ev and f.sha256[:16] in ev
    invoke("export", "local-dir:runs/mine", "out")
    m = zoo.load("local-dir:out")
    assert m.card.data["content_sha256"] == f.sha256
    x = zif.model_split(m, "my-images").images[:3]
    run_model = zoo.load("local-dir:runs/mine")
    assert torch.allclose(m.log_prob(x), run_model.log_prob(x))
    assert torch.isclose(-run_model.log_prob(zif.model_split(m, "my-images").images).mean(),
                         torch.tensor(nll.value), atol=1e-3)

    # the same folder, changed: eval says so; a resume on it is refused, and the run folder is untouched
    shutil.copy(tmp_path / "my-images" / "img000.png", tmp_path / "my-images" / "copy.png")
    assert "differs from the folder the model was trained on" in invoke("eval", "local-dir:runs/mine", "--nll",
                                                                       "--data", "my-images")
    state = (tmp_path / "runs/mine/state.json").read_bytes()
    refused = invoke("train", recipe(tmp_path, MADE_RECIPE), "--data", "my-images", "--out", "runs/mine",
                     "--resume", "--epochs", 2, code=2)
    assert "different model, data or training config: it trained on folder:my-images" in refused
    assert f.sha256[:16] in refused and (tmp_path / "runs/mine/state.json").read_bytes() == state
    # without --data, a folder model says what to pass
    assert "pass the folder with --data DIR" in invoke("eval", "local-dir:runs/mine", "--nll", code=2)
    assert "pass the folder with --data DIR" in invoke("train", "runs/mine/card.toml", "--out", "runs/again", code=2)
    # its card is a recipe too: retrained on a folder, it keeps the original card's name
    invoke("train", "runs/mine/card.toml", "--data", "my-images", "--out", "runs/again", "--max-steps", 1)
    again = read_card("runs/again/card.toml")
    assert again.id == "made-tiny-my-images" and again.data["trained_from"] == "made-tiny"


def test_walkthrough_colour_classes_conditional(tmp_path, monkeypatch):
    """A class-conditional colour PixelCNN on a folder of two classes (mixed sizes, modes and formats): the
    model takes the folder's classes; --resume with the same folder continues; FID against the held-out share
    is cached under the content hash."""
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "pets", classes=("cats", "dogs"), n=12)
    args = ("train", recipe(tmp_path, PIXELCNN_RECIPE), "--data", "pets", "--out", "runs/pets", "--threads", "1")
    invoke(*args, "--max-steps", 1)
    invoke(*args, "--resume")  # the same folder: resumes
    card = read_card("runs/pets/card.toml")
    assert card.config["num_classes"] == 2 and card.data["classes"] == ["cats", "dogs"]
    assert card.data["labels_used"] is True and card.data["images"] == 24
    m = zoo.load("local-dir:runs/pets")
    assert m.num_classes == 2 and m.sample(2, seed=0, y=1).shape == (2, 3, 6, 6)
    d = zif.model_split(m, "pets")
    assert set(d.labels.tolist()) == {0, 1}
    # a folder with other classes is refused for this model
    make_image_folder(tmp_path / "birds", classes=("owls", "crows", "gulls"), n=3)
    assert "class-conditional with the classes cats, dogs" in invoke("eval", "local-dir:runs/pets", "--nll",
                                                                     "--data", "birds", code=2)


def _inception():
    from zoo import fid as zfid
    try:
        zfid.find_weights(download=False)
    except zoo.WeightsError as e:
        pytest.skip(f"FID weights unavailable: {e}")
    return zfid.load_inception()


def test_fid_reference_statistics_of_the_held_out_share_are_cached_under_the_hash(tmp_path, monkeypatch):
    from zoo import fid as zfid
    net = _inception()
    root = make_image_folder(tmp_path / "pets", classes=("cats", "dogs"), n=8)
    d = zif.load_folder(root, "val", (3, 6, 6))
    first = zfid.reference_stats(d, "val", net)
    cached = list((tmp_path / "fid-cache").glob("folder-*.npz"))
    assert len(cached) == 1 and zif.scan(root).sha256[:32] in cached[0].name and first.n == len(d)
    monkeypatch.setattr(zfid, "features", lambda *a, **k: pytest.fail("features computed again"))
    again = zfid.reference_stats(zif.load_folder(root, "val", (3, 6, 6)), "val", net)
    assert np.array_equal(again.mu, first.mu) and again.source == first.source
    # the same folder fitted to another shape or levels is other data: other statistics
    grey = zif.load_folder(root, "val", (1, 6, 6))
    assert grey.extra["cache_key"] != d.extra["cache_key"]


@pytest.mark.slow
def test_eval_fid_on_a_folder_from_the_command_line(tmp_path, monkeypatch):
    """`zoo eval local-dir:RUN --fid --data DIR`, end to end (slow: scipy's sqrtm of two 2048x2048 singular
    covariances takes minutes on 2 busy cores)."""
    _inception()
    monkeypatch.chdir(tmp_path)
    make_image_folder(tmp_path / "pets", classes=("cats", "dogs"), n=12)
    invoke("train", recipe(tmp_path, PIXELCNN_RECIPE), "--data", "pets", "--out", "runs/pets", "--max-steps", 1,
           "--no-test", "--threads", "1")
    held = int(zif.scan("pets").held_out().sum())
    out = invoke("eval", "local-dir:runs/pets", "--fid", "--data", "pets", "-n", 4, "--threads", 2)
    assert "FID" in out and f"(n = 4 vs {held})" in out and "unreliable" in out and "folder:pets val" in out


# ---- bad input to the commands ---------------------------------------------------------------------------------
def test_conditional_model_needs_two_class_subfolders(tmp_path):
    make_image_folder(tmp_path / "flat", classes=None, n=6)
    out = invoke("train", recipe(tmp_path, PIXELCNN_RECIPE), "--data", tmp_path / "flat", "--out", tmp_path / "r",
                 code=2)
    assert "class-conditional" in out and "no class subfolders" in out and not (tmp_path / "r").exists()
    make_image_folder(tmp_path / "one", classes=("only",), n=6)
    out = invoke("train", recipe(tmp_path, PIXELCNN_RECIPE), "--data", tmp_path / "one", "--out", tmp_path / "r",
                 code=2)
    assert "one class subfolder ('only')" in out and not (tmp_path / "r").exists()


def test_data_with_data_dir_is_refused(tmp_path):
    make_image_folder(tmp_path / "f", classes=None, n=6)
    out = invoke("train", recipe(tmp_path, MADE_RECIPE), "--data", tmp_path / "f", "--data-dir", tmp_path,
                 "--out", tmp_path / "r", code=2)
    assert "give one or the other" in out and not (tmp_path / "r").exists()
    out = invoke("eval", "made-mnist-bin", "--nll", "--data", tmp_path / "f", "--split", "test", code=2)
    assert "held-out share" in out


def test_named_model_evaluated_on_a_folder(tmp_path):
    """--data also evaluates a bundled model (trained on a named dataset) on a folder's held-out share."""
    make_image_folder(tmp_path / "digits", classes=None, n=20, colour=False)
    out = invoke("eval", "made-mnist-bin", "--nll", "--data", tmp_path / "digits", "-n", 2, "-o", "masks=1")
    assert "folder:digits val" in out and "n=2" in out


# ---- datasets as a plugin point --------------------------------------------------------------------------------
def _squares_dataset(name: str = "squares") -> Dataset:
    def load(split, root, download):
        path = Path(root) / "squares.npy"
        if not path.is_file():
            raise zoo.DataError(f"{path} not found")
        x = torch.from_numpy(np.load(path))
        return zoo.data.ImageData(name, split, "squares", x, torch.zeros(len(x), dtype=torch.long), ("0",), "8-bit")
    return Dataset(name=name, load=load, present=lambda root: (Path(root) / "squares.npy").is_file(),
                   image_shape=(1, 4, 4), layout="squares.npy", description="test squares")


@pytest.fixture
def fresh_registry():
    zoo.plugins.reset()
    yield zoo.plugins.registry()
    zoo.plugins.reset()


def test_builtin_datasets_come_from_the_first_party_plugin(fresh_registry, monkeypatch):
    assert {n: p.name for n, (p, _) in fresh_registry.datasets.items()} == {
        "mnist": "zoo", "mnist-bin": "zoo", "cifar10": "zoo", "cifar10-gray": "zoo"}
    assert "zoo" not in fresh_registry.plugins  # part of zoo, not an installed plugin
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "")  # no installed plugin: zoo's own datasets stay
    zoo.plugins.reset()
    assert "mnist" in zoo.plugins.registry().datasets and zoo.plugins.registry().plugins == {}
    assert get_dataset("cifar10").image_shape == (3, 32, 32)


def test_a_plugin_registers_a_dataset(fresh_registry, tmp_path, mnist_dir):
    fresh_registry.add(zoo.Plugin("shapes", "1.0", datasets={"squares": _squares_dataset()}), source="test")
    with pytest.raises(zoo.DataError, match="squares.npy not found"):
        load_dataset("squares", "train", tmp_path)
    np.save(tmp_path / "squares.npy", np.full((5, 1, 4, 4), 9, np.uint8))
    d = load_dataset("squares", "val", tmp_path)
    assert len(d) == 5 and d.images.dtype == torch.uint8
    with pytest.raises(zoo.DataError, match="unknown split 'dev'"):
        load_dataset("squares", "dev", tmp_path)
    out = invoke("datasets", "--data-dir", tmp_path)
    assert "squares shapes 1x4x4" in out and "squares.npy" in out
    assert "mnist zoo 1x28x28 10 no" in out  # not under this data root
    assert "mnist zoo 1x28x28 10 yes" in invoke("datasets", "--data-dir", mnist_dir)
    assert "squares" in invoke("plugins")
    assert [n for _, ds in zoo.list_datasets() for n in [ds.name]].count("squares") == 1


def test_dataset_conflicts_and_bad_entries_are_refused(fresh_registry):
    fresh_registry.add(zoo.Plugin("rival", "1.0", datasets={"mnist": _squares_dataset("mnist")}), source="test")
    with pytest.raises(zoo.PluginError, match="claimed by several plugins \\(rival, zoo\\)"):
        load_dataset("mnist", "test")
    for bad, match in (({"x": 3}, "must be a zoo.Dataset"), ({"y": _squares_dataset("z")}, "must equal"),
                       ({"image-folder": _squares_dataset("image-folder")}, "reserved"), ([], "must be a dict")):
        with pytest.raises(zoo.PluginError, match=match):
            fresh_registry.add(zoo.Plugin("bad", "1.0", datasets=bad), source="test")
        assert "bad" not in fresh_registry.plugins
    with pytest.raises(zoo.DataError, match="unknown dataset 'fashion'.*installed: "):
        load_dataset("fashion")


def test_a_plugin_dataset_that_returns_the_wrong_shape_is_named(fresh_registry, tmp_path):
    fresh_registry.add(zoo.Plugin("shapes", "1.0", datasets={"squares": _squares_dataset()}), source="test")
    np.save(tmp_path / "squares.npy", np.zeros((2, 1, 5, 5), np.uint8))
    with pytest.raises(zoo.DataError, match="dataset 'squares' \\(train\\) gave \\(2, 1, 5, 5\\)"):
        load_dataset("squares", "train", tmp_path)
