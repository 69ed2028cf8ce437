"""zoo train --val-cfd / --select cfd: a classifier Frechet distance of samples at each validation (issue 24), and
a grid of samples per validation in the run folder (issue 23)."""
from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo.data import ImageData
from zoo.errors import InputError
from zoo.evaluate import classifier_features, frechet
from zoo.train import BEST_FILE, STATE_FILE, TrainConfig, fit
from zoo.weights import load_weights

from fakedata import fake_digits  # noqa: E402  (tests/ is on sys.path: conftest)


def digits(n: int, split: str, seed: int) -> ImageData:
    images, labels = fake_digits(n, seed)
    x = torch.from_numpy(images)[:, None]
    return ImageData("mnist", split, "synthetic", x, torch.from_numpy(labels).long(), tuple("0123456789"),
                     "test data")


def model():
    torch.manual_seed(0)
    return zoo.create("made", image_shape=[1, 28, 28], levels=256, head="gaussian", hidden=[8], num_masks=1)


CFG = dict(epochs=3, batch_size=50, lr=0.02, checkpoint_every=2, seed=0, ema=0.5, val_cfd=40, select="cfd",
           val_grid=16)


def test_cfd_chooses_the_shipped_weights_and_resumes_exactly(tmp_path):
    train, val = digits(150, "train", 1), digits(60, "val", 2)
    ref = fit(model(), train, val, TrainConfig(**CFG), tmp_path / "ref", progress=False)
    for h in ref.history:  # raw and averaged weights are both judged; the lower cfd ships, its NLL is reported
        assert h["val_cfd"] == min(h["val_cfd_raw"], h["val_cfd_ema"]) > 0
        assert h["weights"] == ("ema" if h["val_cfd_ema"] <= h["val_cfd_raw"] else "raw")
        assert h["val_nll"] == (h["val_ema"] if h["weights"] == "ema" else h["val_raw"])
    best = min(ref.history, key=lambda h: h["val_cfd"])
    assert ref.best_epoch == best["epoch"] and ref.val_cfd == best["val_cfd"] and ref.best_val_nll == best["val_nll"]
    # the shipped weights' samples give the recorded figure again
    m = model()
    m.load_state_dict(load_weights(tmp_path / "ref" / BEST_FILE))
    x = m.eval().sample(40, seed=0, preset=False)
    assert frechet(classifier_features(x, "mnist"), classifier_features(val)) == pytest.approx(best["val_cfd"])
    grids = sorted(p.name for p in (tmp_path / "ref" / "samples").iterdir())
    assert grids == [f"epoch-{e:03d}-{w}.png" for e in (1, 2, 3) for w in ("ema", "raw")]
    # stopped and resumed: the same choices and weights
    fit(model(), train, val, TrainConfig(**CFG, max_steps=3), tmp_path / "run", progress=False)
    again = fit(model(), train, val, TrainConfig(**CFG), tmp_path / "run", resume=True, progress=False)
    assert [h["val_cfd"] for h in again.history] == [h["val_cfd"] for h in ref.history]
    assert again.best_epoch == ref.best_epoch
    state = json.loads((tmp_path / "run" / STATE_FILE).read_text())
    assert state["best_score"] == best["val_cfd"]


def test_nll_selection_still_records_cfd(tmp_path):
    train, val = digits(100, "train", 1), digits(40, "val", 2)
    r = fit(model(), train, val, TrainConfig(**{**CFG, "select": "nll", "ema": 0.0, "epochs": 2}), tmp_path,
            progress=False)
    assert r.best_epoch == min(r.history, key=lambda h: h["val_nll"])["epoch"]
    assert all(h["val_cfd"] > 0 for h in r.history)


def test_bad_settings_are_refused_before_training(tmp_path):
    with pytest.raises(InputError, match="val_cfd"):
        TrainConfig(select="cfd")
    with pytest.raises(InputError, match="select"):
        TrainConfig(select="fid", val_cfd=10)
    with pytest.raises(InputError, match="at least 2"):
        TrainConfig(val_cfd=1)
    # a dataset zoo has no classifier for is refused before the first step
    data = ImageData("my-folder", "train", "synthetic", torch.zeros(20, 1, 28, 28, dtype=torch.uint8),
                     torch.zeros(20, dtype=torch.long), ("0",), "test data")
    with pytest.raises(InputError, match="no classifier"):
        fit(model(), data, data, TrainConfig(**CFG), tmp_path, progress=False)
    assert not (tmp_path / STATE_FILE).exists()
