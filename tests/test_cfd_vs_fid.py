"""experiments/cfd_vs_fid.py: cfd and FID side by side, one row (and one rank) per card and way of sampling."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import zoo

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("cfd_vs_fid", ROOT / "experiments" / "cfd_vs_fid.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _m(name: str, value: float, command: str, n: int = 2048):
    return SimpleNamespace(name=name, value=value, command=command, n=n)


def test_a_card_with_two_ways_of_sampling_gets_a_rank_for_each(monkeypatch, capsys):
    cards = {
        "a": [_m("cfd", 1.0, "zoo eval a --cfd -n 10000 --seed 0", 10000),
              _m("fid", 30.0, "zoo eval a --fid -n 2048 --seed 0"),
              _m("cfd", 2.0, "zoo eval a --cfd -n 10000 --seed 0 --no-preset", 10000),
              _m("fid", 10.0, "zoo eval a --fid -n 2048 --seed 0 --no-preset"),
              _m("fid", 5.0, "zoo eval a --fid -n 10000 --seed 0", 10000)],  # another n: not compared
        "b": [_m("cfd", 3.0, "zoo eval b --cfd -n 10000 --seed 0", 10000),
              _m("fid", 20.0, "zoo eval b --fid -n 2048 --seed 0")],
        "c": [_m("fid", 1.0, "zoo eval c --fid -n 2048 --seed 0")],  # no cfd: left out
    }
    monkeypatch.setattr(zoo, "list_models", lambda: list(cards))
    monkeypatch.setattr(zoo, "get_card", lambda mid: SimpleNamespace(metrics=cards[mid], dataset="mnist"))
    mod = _script()
    monkeypatch.setattr(sys, "argv", ["cfd_vs_fid.py"])
    mod.main()
    out = capsys.readouterr().out
    rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in out.splitlines() if ln.startswith("| `")]
    assert [(r[0], r[1], r[3], r[5]) for r in rows] == [
        ("`a`", "the card's default", "1", "3"), ("`a`", "--no-preset", "2", "1"),
        ("`b`", "the card's default", "3", "2")]
    assert "over 3 ways of sampling of 2 cards" in out


def test_dataset_keeps_only_that_datasets_cards(monkeypatch, capsys):
    pair = lambda c, f: [_m("cfd", c, "zoo eval x --cfd -n 10000 --seed 0", 10000),
                         _m("fid", f, "zoo eval x --fid -n 2048 --seed 0")]
    cards = {"m1": ("mnist", pair(1.0, 3.0)), "m2": ("mnist-bin", pair(2.0, 2.0)), "m3": ("mnist", pair(3.0, 1.0)),
             "c1": ("cifar10", pair(0.5, 100.0))}
    monkeypatch.setattr(zoo, "list_models", lambda: list(cards))
    monkeypatch.setattr(zoo, "get_card", lambda mid: SimpleNamespace(dataset=cards[mid][0], metrics=cards[mid][1]))
    mod = _script()
    monkeypatch.setattr(sys, "argv", ["cfd_vs_fid.py", "--dataset", "mnist", "mnist-bin"])
    mod.main()
    out = capsys.readouterr().out
    assert [ln.split("|")[1].strip() for ln in out.splitlines() if ln.startswith("| `")] == ["`m1`", "`m2`", "`m3`"]
    assert "Spearman's rho over 3 cards: -1.000" in out
    monkeypatch.setattr(sys, "argv", ["cfd_vs_fid.py", "--dataset", "cifar10"])
    with pytest.raises(SystemExit, match="only 1 cards among the cifar10 cards"):
        mod.main()
