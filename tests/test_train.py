"""The training engine: exact resume, refusal to overwrite, early stopping, and the `zoo train` card."""
from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo.train import BEST_FILE, STATE_FILE, TrainConfig, fit
from zoo.weights import load_weights

from fakedata import tiny_data  # noqa: E402  (tests/ is on sys.path: conftest)


def model():
    torch.manual_seed(0)
    return zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[16], num_masks=3, ordering="agnostic")


CFG = dict(epochs=3, batch_size=16, lr=0.01, checkpoint_every=5, seed=0)


def weights_of(out):
    return load_weights(out / BEST_FILE)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    train, val = tiny_data(100, "train", True), tiny_data(40, "val", False)
    ref = fit(model(), train, val, TrainConfig(**CFG), tmp_path / "ref", progress=False)
    # stop after 13 steps (mid-epoch 2: each epoch has 7 steps), then resume with a fresh model object
    fit(model(), train, val, TrainConfig(**CFG, max_steps=13), tmp_path / "run", progress=False)
    state = json.loads((tmp_path / "run" / STATE_FILE).read_text())
    assert state["global_step"] == 13
    resumed = fit(model(), train, val, TrainConfig(**CFG), tmp_path / "run", resume=True, progress=False)
    assert resumed.global_step == ref.global_step == 21
    a, b = weights_of(tmp_path / "ref"), weights_of(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_nll"] for h in resumed.history] == [h["val_nll"] for h in ref.history]


def test_an_existing_run_is_never_overwritten(tmp_path):
    train, val = tiny_data(50, "train", True), tiny_data(20, "val", False)
    fit(model(), train, val, TrainConfig(**CFG, max_steps=2), tmp_path, progress=False)
    with pytest.raises(zoo.ZooError, match="--resume"):
        fit(model(), train, val, TrainConfig(**CFG), tmp_path, progress=False)
    with pytest.raises(zoo.ZooError, match="different"):
        fit(model(), train, val, TrainConfig(**{**CFG, "lr": 0.5}), tmp_path, resume=True, progress=False)


def test_a_half_written_checkpoint_never_replaces_the_last_good_one(tmp_path, monkeypatch):
    train, val = tiny_data(50, "train", True), tiny_data(20, "val", False)
    fit(model(), train, val, TrainConfig(**CFG, max_steps=5), tmp_path, progress=False)
    good = json.loads((tmp_path / STATE_FILE).read_text())

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr("safetensors.torch.save_file", crash)
    with pytest.raises(OSError):
        fit(model(), train, val, TrainConfig(**CFG), tmp_path, resume=True, progress=False)
    monkeypatch.undo()
    assert json.loads((tmp_path / STATE_FILE).read_text())["checkpoint"] == good["checkpoint"]
    assert fit(model(), train, val, TrainConfig(**CFG), tmp_path, resume=True, progress=False).global_step == 12


def test_early_stopping_and_learning(tmp_path):
    train, val = tiny_data(200, "train", False), tiny_data(40, "val", False)
    r = fit(model(), train, val, TrainConfig(epochs=30, batch_size=20, lr=0.05, patience=2, schedule="constant"),
            tmp_path, progress=False)
    assert r.history[-1]["val_nll"] < r.history[0]["val_nll"] or r.stopped_early
    assert r.best_val_nll == min(h["val_nll"] for h in r.history)
    if r.stopped_early:
        assert len(r.history) < 30


def test_cosine_schedule_and_bad_settings():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, schedule="cosine")
    assert cfg.lr_at(0, 110) == pytest.approx(0.1) and cfg.lr_at(10, 110) == pytest.approx(1.0)
    assert cfg.lr_at(110, 110) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(zoo.InputError, match="unknown training setting"):
        TrainConfig.from_dict({"epochs": 1, "learning_rate": 3})


def test_amp_on_cpu_trains_in_bfloat16_close_to_float32(tmp_path):
    train, val = tiny_data(60, "train", True), tiny_data(20, "val", False)
    cfg = TrainConfig(**{**CFG, "epochs": 1})
    full = fit(model(), train, val, cfg, tmp_path / "fp32", progress=False)
    mixed = fit(model(), train, val, cfg, tmp_path / "amp", progress=False, amp=True)
    a, b = weights_of(tmp_path / "fp32"), weights_of(tmp_path / "amp")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # autocast really changed the arithmetic
    assert all(torch.allclose(a[k], b[k], atol=0.02) for k in a)
    assert mixed.best_val_nll == pytest.approx(full.best_val_nll, rel=0.01)


def test_a_continued_run_validates_and_ships_what_it_trained(tmp_path):
    """Issue 15: a run stopped by --max-steps mid-epoch, continued with a larger --max-steps, must report and ship
    the weights at its new stop, not those of the first stop."""
    train, val = tiny_data(200, "train", True), tiny_data(40, "val", False)
    cfg = dict(CFG, epochs=2, batch_size=10)  # 20 steps per epoch
    first = fit(model(), train, val, TrainConfig(**cfg, max_steps=5), tmp_path / "run", progress=False)
    cont = fit(model(), train, val, TrainConfig(**cfg, max_steps=12), tmp_path / "run", resume=True, progress=False)
    straight = fit(model(), train, val, TrainConfig(**cfg, max_steps=12), tmp_path / "ref", progress=False)
    assert first.best_step == 5 and cont.best_step == straight.best_step == 12
    assert cont.best_val_nll == straight.best_val_nll != first.best_val_nll
    a, b = load_weights(cont.weights), load_weights(straight.weights)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # continued to the end, the stops leave no trace: the same history and weights as a run never stopped
    end = fit(model(), train, val, TrainConfig(**cfg), tmp_path / "run", resume=True, progress=False)
    ref = fit(model(), train, val, TrainConfig(**cfg), tmp_path / "full", progress=False)
    assert end.history == ref.history and end.best_epoch == ref.best_epoch and end.weights.name == BEST_FILE
    a, b = load_weights(end.weights), load_weights(ref.weights)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_limit_stops_at_the_next_checkpoint(tmp_path):
    train, val = tiny_data(200, "train", True), tiny_data(40, "val", False)
    r = fit(model(), train, val, TrainConfig(**dict(CFG, epochs=2, batch_size=10), time_limit=0), tmp_path,
            progress=False)
    assert r.global_step == CFG["checkpoint_every"] and r.best_step == r.global_step and r.best_epoch == -1
    assert json.loads((tmp_path / STATE_FILE).read_text())["global_step"] == r.global_step


def test_a_stop_file_stops_at_the_next_checkpoint_once(tmp_path):
    """`touch RUN/STOP` stops a running training as a time limit does (checkpoint, validation of the stop, weights
    to ship); the file is removed, so --resume continues to the end of the schedule."""
    from zoo.train import STOP_REQUEST
    train, val = tiny_data(200, "train", True), tiny_data(40, "val", False)
    cfg = dict(CFG, epochs=2, batch_size=10)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / STOP_REQUEST).touch()
    r = fit(model(), train, val, TrainConfig(**cfg), tmp_path, progress=False)
    assert r.global_step == CFG["checkpoint_every"] and r.best_step == r.global_step and r.best_epoch == -1
    assert not (tmp_path / STOP_REQUEST).exists()
    done = fit(model(), train, val, TrainConfig(**cfg), tmp_path, resume=True, progress=False)
    assert done.global_step == 40 and done.best_epoch in (1, 2)


def test_hflip_mirrors_a_seeded_half_of_the_batch():
    from zoo.train import hflip_half
    x = torch.rand(64, 2, 3, 5)
    out = hflip_half(x, torch.Generator().manual_seed(7))
    mirrored = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image is itself or its mirror, never both here
    assert 16 < sum(mirrored) < 48
    assert torch.equal(out, hflip_half(x, torch.Generator().manual_seed(7)))


def test_a_run_with_hflip_resumes_exactly_and_is_its_own_run(tmp_path):
    train, val = tiny_data(100, "train", True), tiny_data(40, "val", False)
    cfg = {**CFG, "hflip": True}
    fit(model(), train, val, TrainConfig(**cfg), tmp_path / "ref", progress=False)
    fit(model(), train, val, TrainConfig(**CFG), tmp_path / "plain", progress=False)
    a, b = weights_of(tmp_path / "ref"), weights_of(tmp_path / "plain")
    assert not all(torch.equal(a[k], b[k]) for k in a)  # the flips changed what it trained on
    fit(model(), train, val, TrainConfig(**cfg, max_steps=9), tmp_path / "run", progress=False)
    with pytest.raises(zoo.ZooError, match="different"):  # resuming without the flag is another run
        fit(model(), train, val, TrainConfig(**CFG), tmp_path / "run", resume=True, progress=False)
    fit(model(), train, val, TrainConfig(**cfg), tmp_path / "run", resume=True, progress=False)
    c = weights_of(tmp_path / "run")
    assert all(torch.equal(a[k], c[k]) for k in a)
