"""What a newcomer hits first (issue 15): start-up cost, threads, FID's first run, completion without data, the
`zoo list` table at 80 columns, output files, export of one's own run, and the card's parameter count."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import zoo
import zoo.fid as zfid
from zoo.cards import parse_card
from zoo.cli import main
from zoo.threads import default_threads, free_cores, set_threads


def run(*args, code=0, env=None):
    result = CliRunner(env=env).invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    return result.output


NO_TORCH = r"""
import sys
from zoo.cli import main
from zoo.errors import InputError
for args in (["--help"], ["list"], ["info", "var-mnist"], ["plugins"], ["list", "*cifar*"],
             ["complete", "made-mnist-bin", "--mask", "diagonal"], ["complete", "made-mnist-bin", "--mask", "box:1,2"]):
    try:
        main(args, standalone_mode=False)
    except SystemExit:
        pass
    except InputError as e:  # the bad mask specs: refused before torch
        assert "unknown mask" in str(e), e
    assert "torch" not in sys.modules, f"zoo {' '.join(args)} imported torch"
import zoo
zoo.list_models(), zoo.get_card("made-mnist-bin")
assert "torch" not in sys.modules, "zoo.list_models / get_card imported torch"
m = zoo.create("made", image_shape=[1, 2, 2], levels=2, hidden=[4])  # building a model imports its family
assert "torch" in sys.modules and "zoo_made.model" in sys.modules
print("ok")
"""


def test_list_info_plugins_and_help_never_import_torch():
    r = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout[-2000:] + r.stderr[-2000:]


def test_threads_default_honours_the_environment_and_the_free_cores(monkeypatch):
    monkeypatch.delenv("ZOO_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("ZOO_THREADS", "2")
    assert default_threads() == 2  # zoo's own variable wins
    monkeypatch.delenv("ZOO_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    cores = len(os.sched_getaffinity(0))
    assert 1 <= default_threads() == free_cores() <= cores
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 5.0, 0.0, 0.0))
    assert free_cores() == 1  # a busy machine: one thread, never more threads than free cores
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert free_cores() == cores
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_list_fits_80_columns_with_every_figure_whole():
    out = run("list", env={"COLUMNS": "80"})
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    for mid in zoo.list_models():
        row = next(line for line in lines if line.split() and line.split()[0] == mid)  # whole id, one line
        card = zoo.get_card(mid)
        fid = max((m for m in card.metrics if m.name == "fid"), key=lambda m: m.n, default=None)
        if fid is not None:
            assert f"{fid.value:.1f} ({fid.n:,}" in row, row
    # the colour and the grey CIFAR models no longer read alike, and the JPEG copy is named
    assert any(line.split()[:2] == ["var-cifar10", "cifar10*"] for line in lines if line.split())
    assert any(line.split()[:2] == ["var-cifar10-gray", "cifar10-gray*"] for line in lines if line.split())
    assert "cifar10-jpeg" in out
    wide = run("list", env={"COLUMNS": "200"})
    assert "params" in wide and "3.19M" in wide


def test_info_is_prose_not_json():
    out = run("info", "made-mnist-bin")
    assert "{" not in out and '"' not in out, out
    assert "hidden" in out and "4000" in out and "zoo eval made-mnist-bin --nll" in out and "6,891,440" in out


def test_complete_without_data_is_the_data_error_unless_samples_are_asked_for(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = run("complete", "made-mnist-bin", "-n", 2, "--data-dir", tmp_path / "none", code=2)
    assert "MNIST" in out and "--data-dir" in out and not (tmp_path / "completion.png").exists()
    out = run("complete", "made-mnist-bin", "-n", 2, "--from-samples")
    assert "samples of the model" in out and (tmp_path / "completion.png").is_file()


def test_default_outputs_never_overwrite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples.png").write_bytes(b"mine")
    out = run("sample", "made-mnist-bin", "-n", 2)
    assert (tmp_path / "samples.png").read_bytes() == b"mine" and (tmp_path / "samples-1.png").is_file()
    assert "samples-1.png" in out
    run("sample", "made-mnist-bin", "-n", 2, "-o", "samples.png")  # an explicit -o overwrites, as asked
    assert (tmp_path / "samples.png").read_bytes() != b"mine"


def test_the_mask_error_names_the_installed_any_mask_models():
    m = zoo.load("made-mnist-bin")
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(zoo.InputError) as e:
        m.complete(x, zoo.masks.bottom_half(x))
    agnostic = [i for i in zoo.list_models("made-*") if zoo.get_card(i).config.get("ordering") == "agnostic"]
    assert "made-mnist-bin-agnostic" in agnostic and all(i in str(e.value) for i in agnostic)


def test_export_a_trained_run_and_say_where_to_upload(tmp_path, mnist_dir):
    run_dir = tmp_path / "run"
    run("train", "made-mnist-bin", "--out", run_dir, "--max-steps", 2, "--data-dir", mnist_dir, "--no-test",
        "--batch-size", 8, "--threads", 1)
    out = run("export", run_dir, tmp_path / "out", "--repo", "me/mine")
    assert "hf upload me/mine" in out and "ORG/NAME" not in out
    m = zoo.load(f"local-dir:{tmp_path / 'out'}")
    assert m.card.hub_repo == "me/mine" and m.card.params == m.num_params
    assert "--max-steps 2" in m.card.metric("val_nll").command  # the command that ran, flags included
    assert "own trained model" in run("export", "--help")


def test_card_params_round_trip_and_refusal():
    card = zoo.get_card("made-mnist-bin")
    data = card.to_dict()
    assert data["weights"]["params"] == 6891440
    assert parse_card(data).params == 6891440
    data["weights"]["params"] = -1
    with pytest.raises(zoo.CardError, match="params"):
        parse_card(data)


def test_a_lazy_architecture_string_is_resolved_on_use_and_a_bad_one_is_a_clear_error():
    from zoo.plugins import Registry, check_plugin
    reg = Registry()
    reg.add(zoo.Plugin(name="lazy", version="1", architectures={"m": "zoo_made.model:MADE",
                                                                "bad": "zoo_made.model:Nope"}))
    assert reg.architectures["m"][1].__name__ == "MADE"
    with pytest.raises(zoo.PluginError, match="Nope"):
        reg.architectures["bad"]
    with pytest.raises(zoo.PluginError, match="module:Class"):
        check_plugin(zoo.Plugin(name="x", version="1", architectures={"m": "not a reference"}))


def test_a_small_fid_says_what_it_will_do_and_ref_n_and_fid_stats_bound_the_work(tmp_path, mnist_dir, monkeypatch):
    try:
        zfid.find_weights(download=False)
    except zoo.WeightsError as e:
        pytest.skip(f"FID weights unavailable: {e}")
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    out = run("fid-stats", "mnist-bin", "--ref-n", 6, "--data-dir", mnist_dir)
    assert "6 images, statistics cached" in out
    assert "cached already" in run("fid-stats", "mnist-bin", "--ref-n", 6, "--data-dir", mnist_dir)
    card = tmp_path / "card.toml"
    card.write_text(zoo.cards.dump_card(zoo.get_card("made-mnist-bin")), encoding="utf-8")
    res = CliRunner().invoke(main, ["eval", "made-mnist-bin", "--fid", "-n", "4", "--ref-n", "6", "--data-dir",
                                    str(mnist_dir), "--write-card", str(card)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    text = res.output  # stdout and stderr together (click's default in 8.1 and since 8.2)
    assert "FID: Inception features of 4 samples" in text and "cached statistics of 6" in text, text
    assert "images/s" in text and "min" in text
    metric = next(m for m in zoo.read_card(card).metrics if m.name == "fid" and m.n == 4)
    assert metric.command.endswith("--ref-n 6") and metric.n == 4
