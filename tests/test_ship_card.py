"""scripts/ship_card.py: a run becomes the bundled card (weights, card with the new sha256, the run's test figures
dropped to be measured again), and --if-better ships only a run whose selection figure beats the card's."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

import zoo
from zoo.cards import Metric, read_card, write_card

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def ship(monkeypatch):
    spec = importlib.util.spec_from_file_location("ship_card", ROOT / "scripts" / "ship_card.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _val(name: str, value: float, n: int) -> Metric:
    return Metric(name=name, value=value, unit="", split="val", n=n, command="zoo train x", note="")


def _card(metrics, select="nll"):
    c = zoo.get_card("made-mnist-bin")
    training = {k: v for k, v in c.training.items() if k != "select"} | ({"select": select} if select != "nll" else {})
    return dataclasses.replace(c, metrics=list(metrics), training=training)


def test_if_better_compares_the_figure_that_chose_the_checkpoint(ship):
    old = _card([_val("val_nll", 90.0, 5000), _val("val_cfd", 6.0, 500)])
    mine, theirs = ship.comparable(_card([_val("val_nll", 91.0, 5000), _val("val_cfd", 5.0, 500)], "cfd"), old)
    assert (mine.name, mine.value, theirs.value) == ("val_cfd", 5.0, 6.0)
    mine, theirs = ship.comparable(_card([_val("val_nll", 91.0, 5000), _val("val_cfd", 5.0, 500)]), old)
    assert (mine.name, mine.value, theirs.value) == ("val_nll", 91.0, 90.0)
    # a card without the run's selection figure at its n: the validation NLL at the same n decides
    mine, _ = ship.comparable(_card([_val("val_nll", 89.0, 5000), _val("val_cfd", 5.0, 200)], "cfd"), old)
    assert mine.name == "val_nll"
    with pytest.raises(SystemExit, match="no val_cfd or val_nll"):
        ship.comparable(_card([_val("val_nll", 89.0, 1000), _val("val_cfd", 5.0, 200)], "cfd"), old)


def test_ships_weights_and_card_and_refuses_a_worse_run(ship, tmp_path, monkeypatch):
    shipped = zoo.get_card("made-mnist-bin")
    repo, weights = tmp_path / "repo", tmp_path / "weights"
    (repo / "cards" / "made").mkdir(parents=True)
    weights.mkdir()
    shutil.copy(shipped.path, repo / "cards" / "made" / "made-mnist-bin.toml")
    shutil.copy(shipped.weights_path(), weights / shipped.weights_file)
    monkeypatch.setattr(ship, "ROOT", repo)
    monkeypatch.setattr(zoo, "get_card", lambda ref: dataclasses.replace(shipped, weights_dir=str(weights)))
    run = tmp_path / "run"
    run.mkdir()
    # a run's own float32 weights (the bundled file may already be float16): not the shipped file's bytes
    state = {k: v.float() for k, v in load_file(str(shipped.weights_path())).items()}
    save_file({**state, "out.bias": state["out.bias"] + 0.5}, str(run / shipped.weights_file))
    old_nll = shipped.metric("val_nll")
    worse = dataclasses.replace(shipped, path=None, metrics=[dataclasses.replace(old_nll, value=old_nll.value + 1)]
                                + [m for m in shipped.metrics if m.split != "val"])
    write_card(worse, run / "card.toml")
    before = (repo / "cards" / "made" / "made-mnist-bin.toml").read_text()
    monkeypatch.setattr(sys, "argv", ["ship_card.py", str(run), "--float16", "--if-better"])
    with pytest.raises(SystemExit, match="not shipped"):
        ship.main()
    assert (repo / "cards" / "made" / "made-mnist-bin.toml").read_text() == before
    resumed = f"zoo train made-mnist-bin --out {repo}/runs/queue/x --threads 1 --resume"  # as a queue restarts it
    better = dataclasses.replace(worse, metrics=[dataclasses.replace(old_nll, value=old_nll.value - 1,
                                                                     command=resumed)] + worse.metrics[1:])
    write_card(better, run / "card.toml")
    ship.main()
    new = read_card(repo / "cards" / "made" / "made-mnist-bin.toml")
    state = load_file(str(weights / shipped.weights_file))
    assert all(v.dtype.itemsize <= 2 for v in state.values() if v.is_floating_point())
    assert new.sha256 == hashlib.sha256((weights / shipped.weights_file).read_bytes()).hexdigest() != shipped.sha256
    assert new.training["run"]["stored"] == "float16"
    assert [m.name for m in new.metrics] == ["val_nll"]  # the test figures are measured again on what shipped
    assert new.metrics[0].value == old_nll.value - 1 and "stored as float16" in new.metrics[0].note
    assert new.metrics[0].command == "zoo train made-mnist-bin --out runs/queue/x --threads 1"
