"""zoo runs: run folders' progress, best figures and ETA, and a learning-curve PNG (issue 23)."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import zoo
from zoo.cli import main
from zoo.runs import find_runs, status
from zoo.train import TrainConfig, fit

from fakedata import tiny_data  # noqa: E402  (tests/ is on sys.path: conftest)


def _model():
    torch.manual_seed(0)
    return zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[16], num_masks=1)


def test_runs_lists_progress_and_draws_a_curve(tmp_path):
    train, val = tiny_data(100, "train", True), tiny_data(40, "val", False)
    cfg = dict(epochs=4, batch_size=10, lr=0.01, checkpoint_every=5, seed=0, log_every=2, val_grid=4)
    fit(_model(), train, val, TrainConfig(**cfg), tmp_path / "done", progress=False)
    fit(_model(), train, val, TrainConfig(**cfg, max_steps=15), tmp_path / "group" / "half", progress=False)
    assert find_runs(tmp_path) == [tmp_path / "done", tmp_path / "group" / "half"]
    done, half = status(tmp_path / "done"), status(tmp_path / "group" / "half")
    assert done.finished and done.step == done.total == 40 and done.eta_s is None
    assert not half.finished and (half.step, half.total) == (15, 40) and half.eta_s > 0
    assert half.best_nll is not None and half.images_per_s > 0
    assert sorted(p.name for p in (tmp_path / "done" / "samples").iterdir()) == [
        f"epoch-{e:03d}.png" for e in (1, 2, 3, 4)]
    out = CliRunner().invoke(main, ["runs", str(tmp_path)], terminal_width=200).output
    assert "done" in out and "finished" in out and "group/half" in out and "15/40 (38%)" in out
    png = tmp_path / "curve.png"
    r = CliRunner().invoke(main, ["runs", "--curve", str(tmp_path / "done"), "-o", str(png)])
    assert r.exit_code == 0, r.output
    assert Image.open(png).size == (720, 420)
    missing = CliRunner().invoke(main, ["runs", str(tmp_path / "nope")])
    assert missing.exit_code != 0 and "no such folder" in " ".join(missing.output.split())


def test_core_hours_count_each_interval_by_its_speed_and_threads(tmp_path):
    """The compute axis of a learning curve: steps x batch / images_per_s seconds per record, times its threads
    and processes; validations (no images_per_s) add nothing; a record rewritten after a resume counts once."""
    from zoo.runs import core_hours
    recs = [{"step": 10, "images_per_s": 36.0, "threads": 2},  # 10 x 36 / 36 = 10 s on 2 threads
            {"val": True, "step": 10, "val_nll": 1.0},
            {"step": 20, "images_per_s": 72.0, "threads": 1, "processes": 4},  # 5 s on 4 processes
            {"step": 20, "images_per_s": 18.0, "threads": 1}]  # the same steps again after a resume: 20 s
    hours, known = core_hours(recs, batch_size=36)
    assert known and hours == [(0, 0.0), (10, pytest.approx(20 / 3600)), (20, pytest.approx(40 / 3600))]
    assert core_hours([{"step": 5, "images_per_s": 5.0}], 1) == ([(0, 0.0), (5, pytest.approx(1 / 3600))], False)

    train, val = tiny_data(100, "train", True), tiny_data(40, "val", False)
    fit(_model(), train, val, TrainConfig(epochs=2, batch_size=10, lr=0.01, seed=0, log_every=2, val_grid=0),
        tmp_path / "run", progress=False)
    from zoo.runs import read_metrics
    hours, known = core_hours(read_metrics(tmp_path / "run"), 10)
    assert known and [s for s, _ in hours] == list(range(0, 21, 2))
    assert all(b > a for (_, a), (_, b) in zip(hours, hours[1:]))
    png = tmp_path / "hours.png"
    r = CliRunner().invoke(main, ["runs", "--curve", str(tmp_path / "run"), "--x", "core-hours", "-o", str(png)])
    assert r.exit_code == 0 and png.is_file(), r.output
    bad = CliRunner().invoke(main, ["runs", "--curve", str(tmp_path / "run"), "--x", "minutes"])
    assert bad.exit_code != 0 and "core-hours" in bad.output


def test_epoch_core_hours_reads_the_compute_at_each_validated_epoch():
    from zoo.runs import epoch_core_hours
    recs = [{"step": 10, "images_per_s": 36.0, "threads": 1},  # 10 s
            {"val": True, "epoch": 1, "step": 10, "val_nll": 2.0},
            {"step": 20, "images_per_s": 18.0, "threads": 2},  # 20 s on 2 threads: 40 core-seconds
            {"val": True, "epoch": 2, "step": 20, "val_nll": 1.0},
            {"val": True, "step": 20, "val_nll": 1.0}]  # a validation at a stop, no epoch: not an epoch's point
    assert epoch_core_hours(recs, 36) == {1: pytest.approx(10 / 3600), 2: pytest.approx(50 / 3600)}


def test_tensorboard_logs_the_same_figures(tmp_path):
    import pytest
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    train, val = tiny_data(100, "train", True), tiny_data(40, "val", False)
    cfg = dict(epochs=2, batch_size=10, lr=0.01, seed=0, log_every=2, val_grid=0, tensorboard=True)
    fit(_model(), train, val, TrainConfig(**cfg), tmp_path, progress=False)
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/lr", "val/val_nll"} <= set(tags)
    assert [e.step for e in acc.Scalars("val/val_nll")] == [10, 20]
