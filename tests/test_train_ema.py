"""--ema, --time-budget and the run folder's metrics.jsonl (issue 23)."""
from __future__ import annotations

import json

import pytest
import torch

import zoo
from zoo.errors import InputError
from zoo.train import BEST_FILE, METRICS_FILE, STATE_FILE, TrainConfig, fit
from zoo.weights import load_weights

from fakedata import tiny_data  # noqa: E402  (tests/ is on sys.path: conftest)

CFG = dict(epochs=3, batch_size=16, lr=0.01, checkpoint_every=5, seed=0, ema=0.9, log_every=2)


def model():
    torch.manual_seed(0)
    return zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[16], num_masks=3, ordering="agnostic")


def test_ema_run_resumes_exactly_and_ships_the_better_weights(tmp_path):
    train, val = tiny_data(100, "train", True), tiny_data(40, "val", False)
    ref = fit(model(), train, val, TrainConfig(**CFG), tmp_path / "ref", progress=False)
    fit(model(), train, val, TrainConfig(**CFG, max_steps=13), tmp_path / "run", progress=False)
    resumed = fit(model(), train, val, TrainConfig(**CFG), tmp_path / "run", resume=True, progress=False)
    a, b = load_weights(tmp_path / "ref" / BEST_FILE), load_weights(tmp_path / "run" / BEST_FILE)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["val_nll"] for h in resumed.history] == [h["val_nll"] for h in ref.history]
    for h in ref.history:
        assert h["val_nll"] == min(h["val_raw"], h["val_ema"])
        assert h["weights"] == ("ema" if h["val_ema"] <= h["val_raw"] else "raw")
    # the log holds every step record once, also across the stop and resume
    recs = [json.loads(ln) for ln in (tmp_path / "run" / METRICS_FILE).read_text().splitlines()]
    steps = [r["step"] for r in recs if not r.get("val")]
    assert steps == list(range(2, 22, 2))
    assert all(r["lr"] >= 0 and r["images_per_s"] > 0 and r["grad_norm"] is not None for r in recs if not r.get("val"))
    assert sum(1 for r in recs if r.get("val") and not r.get("stop")) == 3


def test_ema_resume_of_a_run_without_it_is_refused(tmp_path):
    train, val = tiny_data(100, "train", True), tiny_data(40, "val", False)
    plain = {k: v for k, v in CFG.items() if k != "ema"}
    fit(model(), train, val, TrainConfig(**plain, max_steps=5), tmp_path, progress=False)
    with pytest.raises(zoo.ZooError):
        fit(model(), train, val, TrainConfig(**CFG), tmp_path, resume=True, progress=False)
    with pytest.raises(InputError):
        fit(model(), train, val, TrainConfig(**{**CFG, "ema": 1.5}), tmp_path / "bad", progress=False)


def _ticking(monkeypatch, m, step_s):
    """`m` with training's clock made a fake one that its training step k (from 1) advances by `step_s(k)`
    seconds, whatever the machine's load (on a busy one, 120 real steps can outrun a small budget). Returns
    (m, clock), clock[0] the fake time now."""
    import types

    import zoo.train

    clock, calls = [1000.0], [0]
    monkeypatch.setattr(zoo.train, "time", types.SimpleNamespace(time=lambda: clock[0]))
    fast = m.training_loss

    def ticking(*args, **kwargs):
        calls[0] += 1
        clock[0] += step_s(calls[0])
        return fast(*args, **kwargs)

    m.training_loss = ticking
    return m, clock


def test_time_budget_sizes_the_schedule_and_keeps_it_on_resume(tmp_path, monkeypatch):
    train, val = tiny_data(400, "train", True), tiny_data(40, "val", False)
    cfg = dict(epochs=500, batch_size=4, lr=0.01, checkpoint_every=50, seed=0)
    # 10 ms a step against 3 s: sized at step 120 to 2.7 s of steps (whole epochs of 100), far short of 500
    m, _ = _ticking(monkeypatch, model(), lambda k: 0.01)
    r = fit(m, train, val, TrainConfig(**cfg, time_budget=3.0), tmp_path, progress=False)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert 1 <= state["sized_epochs"] < 500 and r.sized_epochs == state["sized_epochs"]
    again = fit(model(), train, val, TrainConfig(**cfg), tmp_path, resume=True, progress=False)
    assert again.global_step == state["sized_epochs"] * 100


def test_time_budget_shortens_the_schedule_when_the_machine_slows(tmp_path, monkeypatch):
    """The first sizing times steps 20-120; when every step is slower after that (another job starts), the
    epoch-end re-check shortens the schedule, so the run ends its schedule within the budget instead of running
    into the hard stop at 1.1x the budget with its learning rate still high. Training's clock is a fake one that
    each step advances (1 ms for the first 150 steps, 20 ms after), so the figures below are exact."""
    train, val = tiny_data(400, "train", True), tiny_data(40, "val", False)
    m, clock = _ticking(monkeypatch, model(), lambda k: 0.001 if k <= 150 else 0.02)
    cfg = TrainConfig(epochs=500, batch_size=4, lr=0.01, checkpoint_every=50, seed=0, time_budget=20.0)
    r = fit(m, train, val, cfg, tmp_path, progress=False)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    # sized at step 120 to 180 epochs (1,000 steps/s); epoch 3 then took 2 s, and 16.85 s were left: 3 + 8
    assert state["sized_epochs"] == 11 and r.sized_epochs == 11
    assert r.global_step == 1100 and state["epoch"] == 11 and state.get("stop") is None  # its schedule, complete
    assert clock[0] - 1000.0 < 20.0


def test_resized_epochs_only_shortens():
    from zoo.train import resized_epochs
    assert resized_epochs(3, 40, 10.0, 95.0) == 12
    assert resized_epochs(3, 10, 10.0, 500.0) == 10  # never longer than planned
    assert resized_epochs(3, 10, 10.0, 5.0) == 3  # nothing more fits: the schedule ends with this epoch
    assert resized_epochs(3, 10, 10.0, -20.0) == 3
