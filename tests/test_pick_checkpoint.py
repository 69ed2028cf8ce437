"""scripts/checkpoint_weights.py and scripts/pick_run.py (issue 23): a checkpoint's raw or averaged weights become
a run folder that loads as the model of that step, and the candidate with the lowest FID gets the link."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import main as zoo_main

ROOT = Path(__file__).resolve().parents[1]

RECIPE = """id = "tiny-made"
plugin = "made"
architecture = "made"
description = "a tiny MADE"

[data]
dataset = "mnist-bin"

[config]
image_shape = [1, 28, 28]
levels = 2
hidden = [8]
num_masks = 1
seed = 0

[training]
epochs = 2
batch_size = 100
lr = 0.01
seed = 0
checkpoint_every = 2
log_every = 1
"""


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def run(mnist_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ckpt")
    (tmp / "tiny-made.toml").write_text(RECIPE)
    out = tmp / "run"
    r = CliRunner().invoke(zoo_main, ["train", str(tmp / "tiny-made.toml"), "--out", str(out), "--data-dir",
                                      str(mnist_dir), "--ema", "0.9", "--threads", "1", "--no-test", "--keep-epochs"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


@pytest.mark.parametrize("ema", [False, True])
def test_a_checkpoint_becomes_a_run_folder_of_that_steps_weights(run, tmp_path, ema):
    from safetensors.torch import load_file
    ck = max(run.glob("checkpoint-*.safetensors"))
    step = int(ck.stem.split("-")[1])
    out = tmp_path / "cand"
    _script("checkpoint_weights").main([str(run), "--out", str(out)] + (["--ema"] if ema else []))
    m = zoo.load(str(out))  # the sha256 on its card matches, or this refuses
    tensors = load_file(str(ck))
    for i, (name, p) in enumerate(m.named_parameters()):
        assert torch.equal(p.detach(), tensors[f"ema.{i}" if ema else f"model.{name}"]), name
    val = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in ln]
    rec = next(v for v in val if v["step"] == step)
    got = m.card.metric("val_nll")
    assert got.value == pytest.approx(rec["val_ema" if ema else "val_raw"], abs=1e-5)
    assert m.card.training["run"]["best_step"] == step
    assert got.note.startswith("validation figure") and got.note.endswith(
        f"(step {step}; {'averaged' if ema else 'raw'} weights)")


def test_keep_epochs_keeps_what_each_epoch_would_ship_and_it_becomes_a_run_folder(run, tmp_path):
    """`zoo train --keep-epochs`: RUN/epochs/epoch-NNN.safetensors are the weights each epoch chose (raw or
    averaged); the best epoch's are best.safetensors; `checkpoint_weights.py --epoch N` makes them a run folder
    whose card carries that epoch's validation figure."""
    from safetensors.torch import load_file
    val = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in ln]
    kept = sorted(p.name for p in (run / "epochs").glob("*.safetensors"))
    assert kept == [f"epoch-{v['epoch']:03d}.safetensors" for v in val] == ["epoch-001.safetensors",
                                                                           "epoch-002.safetensors"]
    best = min(val, key=lambda v: v["val_nll"])
    a, b = load_file(str(run / "epochs" / f"epoch-{best['epoch']:03d}.safetensors")), load_file(
        str(run / "best.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for v in val:
        out = tmp_path / f"e{v['epoch']}"
        _script("checkpoint_weights").main([str(run), "--epoch", str(v["epoch"]), "--out", str(out)])
        m = zoo.load(str(out))
        assert m.card.metric("val_nll").value == pytest.approx(v["val_nll"], abs=1e-5)
        assert m.card.training["run"]["best_epoch"] == v["epoch"]
    with pytest.raises(SystemExit, match="kept no weights of epoch 7"):
        _script("checkpoint_weights").main([str(run), "--epoch", "7", "--out", str(tmp_path / "x")])
    assert "keep_epochs" not in (run / "card.toml").read_text()  # a logging option: not part of the recipe


def _curve(run, tmp_path, monkeypatch, fid):
    """learning_curve.py on a copy of the run, its FID measurements replaced by `fid(folder name, extra args)`."""
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    lc = _script("learning_curve")
    monkeypatch.setattr(lc, "fid_of", lambda folder, n, seed, *extra: fid(Path(folder).name, extra))
    return lc, copy


def test_learning_curve_measures_each_kept_epoch_once(run, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_fid(name, extra):
        calls.append(name)
        return {"epoch-001": 40.0, "epoch-002": 31.5}[name]
    lc, copy = _curve(run, tmp_path, monkeypatch, fake_fid)
    lc.main([str(copy), "--bar", "30", "-o", str(tmp_path / "curve.png")])
    out = capsys.readouterr().out
    assert calls == ["epoch-001", "epoch-002"]
    assert "| 1 |" in out and "| 40.00 |" in out and "| 31.50 |" in out
    saved = json.loads((copy / "learning_curve.json").read_text())
    assert saved["2"]["fid"] == 31.5 and 0 < saved["1"]["core_hours"] < saved["2"]["core_hours"]
    from PIL import Image
    assert Image.open(tmp_path / "curve.png").size == (640, 380)
    lc.main([str(copy)])  # measured already: read back
    assert calls == ["epoch-001", "epoch-002"]
    shutil.rmtree(copy / "epochs")
    with pytest.raises(SystemExit, match="--keep-epochs"):
        lc.main([str(copy)])


def test_learning_curve_measures_chosen_epochs_at_a_temperature(run, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_fid(name, extra):
        calls.append((name, extra))
        return 20.0 + len(calls)
    lc, copy = _curve(run, tmp_path, monkeypatch, fake_fid)
    lc.main([str(copy), "--epochs", "2"])
    assert calls == [("epoch-002", ())]
    lc.main([str(copy), "--epochs", "2", "--temperature", "0.55"])  # another temperature: measured again
    assert calls[-1] == ("epoch-002", ("--temperature", "0.55"))
    out = capsys.readouterr().out
    assert "temperature 0.55" in out and "| 2 |" in out and "| 1 |" not in out.split("temperature 0.55")[-1]
    lc.main([str(copy), "--epochs", "2", "--temperature", "0.55"])  # read back
    assert len(calls) == 2
    assert json.loads((copy / "learning_curve.json").read_text())["2"]["temperature"] == 0.55
    with pytest.raises(SystemExit, match="no weights of epoch 5"):
        lc.main([str(copy), "--epochs", "2", "5"])


def test_a_run_still_training_is_read_through_the_recipe_it_wrote_at_its_start(run, tmp_path, monkeypatch):
    """Before its end a run has no card.toml; its recipe.toml (the card it trains, without figures) lets its kept
    epochs be loaded and measured while it runs."""
    from zoo.cards import read_card
    recipe, card = read_card(run / "recipe.toml"), read_card(run / "card.toml")
    assert (recipe.id, recipe.config, recipe.metrics) == (card.id, card.config, [])
    # the recipe as trained (this run's --ema included), as its card.toml records it, less the run table
    assert recipe.training == {k: v for k, v in card.training.items() if k != "run"}
    assert recipe.training["ema"] == 0.9 and recipe.training["epochs"] == 2
    lc, copy = _curve(run, tmp_path, monkeypatch, lambda name, extra: 12.5)
    (copy / "card.toml").unlink()
    out = tmp_path / "e1"
    _script("checkpoint_weights").main([str(copy), "--epoch", "1", "--out", str(out)])
    m = zoo.load(str(out))
    assert m.card.training["run"]["best_epoch"] == 1 and not m.card.metrics
    lc.main([str(copy), "--epochs", "2"])
    assert json.loads((copy / "learning_curve.json").read_text())["2"]["fid"] == 12.5
    (copy / "recipe.toml").unlink()
    with pytest.raises(SystemExit, match="neither card.toml nor recipe.toml"):
        lc.main([str(copy), "--epochs", "2"])


def test_a_missing_step_is_refused(run, tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint of step 999"):
        _script("checkpoint_weights").main([str(run), "--step", "999", "--out", str(tmp_path / "x")])


def test_pick_links_the_lowest_fid(tmp_path, monkeypatch):
    pick = _script("pick_run")
    runs = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.toml").write_text("")
        runs.append(str(tmp_path / name))
    monkeypatch.setattr(pick, "fid_of", lambda r, n, seed: {"a": 30.0, "b": 27.5, "c": 31.0}[Path(r).name])
    pick.main(runs + ["--link", str(tmp_path / "best")])
    assert (tmp_path / "best").resolve() == (tmp_path / "b").resolve()
    monkeypatch.setattr(pick, "fid_of", lambda r, n, seed: {"a": 20.0, "b": 27.5, "c": 31.0}[Path(r).name])
    pick.main(runs + ["--link", str(tmp_path / "best")])  # the link is replaced
    assert (tmp_path / "best").resolve() == (tmp_path / "a").resolve()
    with pytest.raises(SystemExit, match="neither run folders"):
        pick.main([str(tmp_path / "nowhere"), "--link", str(tmp_path / "best")])
    assert pick.FID_RE.search("pixelcnn-mnist: FID 30.18 (n = 2,048 vs 10,000); real-vs-real").group(1) == "30.18"


def test_pick_against_the_shipped_card_links_only_a_run_that_beats_it(tmp_path, monkeypatch):
    pick = _script("pick_run")
    (tmp_path / "warm").mkdir()
    (tmp_path / "warm" / "card.toml").write_text("")
    warm, link = str(tmp_path / "warm"), tmp_path / "best"
    fids = {"warm": 28.0, "made-mnist-bin": 29.5}
    monkeypatch.setattr(pick, "fid_of", lambda r, n, seed: fids[Path(r).name])
    pick.main([warm, "made-mnist-bin", "--link", str(link)])
    assert link.resolve() == (tmp_path / "warm").resolve()
    fids["warm"] = 30.0
    link.unlink()
    with pytest.raises(SystemExit, match="the shipped card made-mnist-bin has the lowest FID"):
        pick.main([warm, "made-mnist-bin", "--link", str(link)])
    assert not link.exists()
    with pytest.raises(SystemExit, match="nor bundled cards' ids: made-mnist-bim"):
        pick.main([warm, "made-mnist-bim", "--link", str(link)])


def _guidance_card(tmp_path: Path, monkeypatch):
    """A copy of var-mnist's card, its preset's cfg set to 2.5 (whatever the bundled card's is now), that the script
    reads and writes instead of the bundled one."""
    from dataclasses import replace

    from zoo.cards import read_card, write_card
    card_file = tmp_path / "var-mnist.toml"
    bundled = read_card(ROOT / "cards" / "var" / "var-mnist.toml")
    write_card(replace(bundled, sampling={**bundled.sampling, "cfg": 2.5}, path=None), card_file)
    monkeypatch.setattr(zoo, "get_card", lambda model_id: read_card(card_file))
    return card_file


def test_pick_guidance_writes_the_lowest_fids_scale_and_drops_the_old_presets_figures(tmp_path, monkeypatch):
    from zoo.cards import read_card
    card_file = _guidance_card(tmp_path, monkeypatch)
    before = read_card(card_file)
    assert before.sampling["cfg"] == 2.5
    pick = _script("pick_sampling")
    fids = {"": 20.1, "4": 17.3, "5.5": 18.0}  # the preset's 2.5 is measured without a flag, as the card is
    monkeypatch.setattr(pick, "fid_of", lambda model, n, seed, *extra: fids[extra[-1] if extra else ""])
    pick.main(["var-mnist", "--cfg", "2.5", "4", "5.5", "--write"])
    after = read_card(card_file)
    assert after.sampling == {**before.sampling, "cfg": 4.0}
    for m in before.metrics:
        words = m.command.split()
        preset = m.name in pick.SAMPLE_METRICS and pick.uses_preset(m.command, "--cfg")
        assert (m in after.metrics) == (not preset), m.command
    assert any("--no-preset" in m.command for m in after.metrics)  # the null-class FID stays
    assert any(m.name == "nll" for m in after.metrics)
    assert not any(m.name == "fid" and "--no-preset" not in m.command for m in after.metrics)


def test_pick_guidance_leaves_the_card_alone_when_its_scale_is_best(tmp_path, monkeypatch, capsys):
    card_file = _guidance_card(tmp_path, monkeypatch)
    text = card_file.read_text()
    pick = _script("pick_sampling")
    monkeypatch.setattr(pick, "fid_of", lambda model, n, seed, *extra: {"": 15.0, "4": 17.3}[extra[-1] if extra else ""])
    pick.main(["var-mnist", "--cfg", "2.5", "4", "--write"])
    assert card_file.read_text() == text
    assert "card unchanged" in capsys.readouterr().out


def test_pick_sampling_gives_a_card_without_a_preset_one_and_keeps_its_figures_as_no_preset(tmp_path, monkeypatch,
                                                                                            capsys):
    """A temperature picked for a card with no [sampling]: the preset is made, and the figures measured before (the
    model's own distribution, which --no-preset still draws) stay, saying --no-preset."""
    from dataclasses import replace

    from zoo.cards import read_card, write_card
    card_file = tmp_path / "pixelcnn-mnist.toml"
    bundled = read_card(ROOT / "cards" / "pixelcnn" / "pixelcnn-mnist.toml")
    write_card(replace(bundled, sampling={}, path=None), card_file)
    monkeypatch.setattr(zoo, "get_card", lambda model_id: read_card(card_file))
    before = read_card(card_file)
    assert not before.sampling and any(m.name == "fid" for m in before.metrics)
    pick = _script("pick_sampling")
    seen = []

    def fid(model, n, seed, *extra):
        seen.append(extra)
        return {(): 29.5, ("--temperature", "0.95"): 26.0, ("--temperature", "0.9"): 27.0}[extra]
    monkeypatch.setattr(pick, "fid_of", fid)
    pick.main(["pixelcnn-mnist", "--temperature", "1", "0.95", "0.9", "--write"])
    assert seen[0] == ()  # temperature 1 is the card's own way to sample: measured without a flag
    assert "temperature 1: FID 29.50 (n = 2,048, seed 0)  (the card's default)" in capsys.readouterr().out
    after = read_card(card_file)
    assert after.sampling == {"temperature": 0.95}
    assert len(after.metrics) == len(before.metrics)
    for old, new in zip(before.metrics, after.metrics):
        assert new.value == old.value
        if old.name in pick.SAMPLE_METRICS and "--temperature" not in old.command.split():
            assert new.command == old.command + " --no-preset"
        else:
            assert new.command == old.command


def test_pick_guidance_is_pick_sampling_under_its_first_name():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "pick_guidance.py"), "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "--cfg" in out and "--temperature" in out
