"""zoo.evaluate as a library (issue 24): every figure from one function that returns its card record; cfd and
class_accuracy in zoo's classifier feature space; a sample evaluation killed part-way finishes only the rest."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import main
from zoo.errors import InputError


def test_the_public_evaluations_import_from_one_home():
    from zoo.evaluate import cfd, class_accuracy, fid, kid, nll, recon_fid, reconstruction  # noqa: F401
    import zoo.cli as cli
    assert not [name for name in vars(cli) if name.startswith("_eval_")]


def test_nll_carries_its_record_with_the_command(mnist_dir):
    from zoo.data import load_dataset
    from zoo.evaluate import nll
    m = zoo.load("made-mnist-bin")
    r = nll(m, load_dataset("mnist-bin", "test", mnist_dir), n=20, masks=1)
    (rec,) = r.metrics
    assert rec.name == "nll_masks1" and rec.n == 20 and rec.value == pytest.approx(r.nats, abs=1e-4)
    assert rec.command == "zoo eval made-mnist-bin --nll -n 20 -o masks=1"


def test_cfd_of_samples_sits_above_the_real_floor_and_records_its_command(mnist_dir):
    from zoo.evaluate import cfd, classifier_reference
    m = zoo.load("made-mnist-bin")
    r = cfd(m, n=60, seed=1, data_dir=mnist_dir)
    assert r.n == 60 and r.ref_n == 200 and r.floor is not None and r.value > r.floor >= 0
    (rec,) = r.metrics
    assert rec.name == "cfd" and rec.unit == "CFD" and rec.command == "zoo eval made-mnist-bin --cfd -n 60 --seed 1"
    assert "floor" in rec.note and "classifier" in rec.note
    # the same seed draws the same samples: the same figure
    assert cfd(m, n=60, seed=1, data_dir=mnist_dir, floor=False).value == pytest.approx(r.value)
    # real test images against their own split: exactly zero; an image tensor needs its dataset
    real, _ = classifier_reference("mnist", "test", mnist_dir)
    from zoo.data import load_dataset
    x, _ = load_dataset("mnist", "test", mnist_dir).batch(torch.arange(200))
    assert cfd(x, "mnist", data_dir=mnist_dir, floor=False).value == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(InputError, match="dataset"):
        cfd(x)
    with pytest.raises(InputError, match="no classifier"):
        cfd(x, "my-folder")


def test_class_accuracy_measures_each_class_and_refuses_unconditional_models():
    from zoo.evaluate import class_accuracy
    m = zoo.load("var-mnist")
    r = class_accuracy(m, 3, seed=0, cfg=3.0)
    assert len(r.per_class) == 10 and r.n_per_class == 3 and 0 <= r.value <= 1
    assert all(round(3 * p) == pytest.approx(3 * p) for p in r.per_class)  # shares of 3 images
    (rec,) = r.metrics
    assert rec.name == "class_accuracy" and rec.n == 30 and "--class-accuracy -n 30" in rec.command
    assert "cfg 3.0" in rec.note
    with pytest.raises(InputError, match="not class-conditional"):
        class_accuracy(zoo.load("made-mnist-bin"), 2)


def test_eval_cli_cfd_records_in_a_card_and_list_shows_it(mnist_dir, tmp_path):
    import shutil
    card = tmp_path / "card.toml"
    shutil.copy(zoo.get_card("made-mnist-bin").path, card)
    out = CliRunner().invoke(main, ["eval", "made-mnist-bin", "--cfd", "-n", "40", "--data-dir", str(mnist_dir),
                                    "--write-card", str(card)])
    assert out.exit_code == 0, out.output
    assert "cfd " in out.output and "floor" in out.output
    from zoo.cards import read_card
    recs = [m for m in read_card(card).metrics if m.name == "cfd" and m.n == 40]
    assert [m.command for m in recs] == ["zoo eval made-mnist-bin --cfd -n 40 --seed 0"]
    bad = CliRunner().invoke(main, ["eval", "made-mnist-bin", "--cfd", "-n", "0"])
    assert bad.exit_code != 0 and "positive" in bad.output
    acc = CliRunner().invoke(main, ["eval", "made-mnist-bin", "--class-accuracy", "-n", "20"])
    assert acc.exit_code != 0 and "class-conditional" in acc.output


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, numpy as np, torch, zoo
    from zoo import fid as zfid
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, zfid.DIMS))
    m = zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[8], num_masks=1, seed=0)
    kill_at, calls = int(sys.argv[1]), []
    sample = m.sample
    def counted(k, **kw):
        calls.append(k)
        if len(calls) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return sample(k, **kw)
    m.sample = counted
    key, n = sys.argv[2] or None, int(sys.argv[4]) if len(sys.argv) > 4 else 20
    s = zfid.model_sample_stats(m, n, net, seed=0, sample_batch_size=4, chunk=4, resume_key=key)
    np.save(sys.argv[3], np.concatenate([s.mu, s.sigma.ravel()]))
    print("calls", len(calls))
""")


def test_a_draw_with_the_card_s_preset_is_another_draw_when_the_preset_changes():
    """The saved statistics of a seeded draw are keyed by the card's preset when the draw uses it: a guidance
    scale written into the card (scripts/pick_guidance.py) on the same weights must not read back the old
    preset's statistics; a draw without the preset (or of a card without one) keeps its key."""
    from dataclasses import replace

    from zoo.evaluate import _resume_key
    m = zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[8], num_masks=1, seed=0)
    m.card = replace(zoo.get_card("var-mnist"), sampling={})
    bare = _resume_key(m, "x", 0, {})
    m.card = replace(m.card, sampling={"top_k": 5})
    five, no_preset = _resume_key(m, "x", 0, {}), _resume_key(m, "x", 0, {"preset": False})
    m.card = replace(m.card, sampling={"top_k": 6})
    six = _resume_key(m, "x", 0, {})
    assert len({bare, five, six}) == 3
    assert no_preset == _resume_key(m, "x", 0, {"preset": False}) != six
    assert _resume_key(m, "x", None, {}) is None  # unseeded: never saved


def test_a_sample_evaluation_killed_part_way_finishes_only_the_rest(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "ZOO_FID_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def run(kill_at: int, key: str, out: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(kill_at), key, str(tmp_path / out)],
                              capture_output=True, text=True, env=env, timeout=300)

    whole = run(0, "", "whole.npy")  # no key: one uninterrupted run, 5 chunks of 4
    assert whole.returncode == 0 and "calls 5" in whole.stdout, whole.stderr
    killed = run(4, "k", "never.npy")  # SIGKILLed while drawing its 4th chunk: 3 chunks saved
    assert killed.returncode == -9 and not (tmp_path / "never.npy").exists()
    again = run(0, "k", "again.npy")
    assert again.returncode == 0 and "calls 2" in again.stdout, again.stdout + again.stderr  # only the rest
    np.testing.assert_allclose(np.load(tmp_path / "again.npy"), np.load(tmp_path / "whole.npy"), rtol=1e-10,
                               atol=1e-12)
    done = run(0, "k", "done.npy")  # finished: nothing left to draw
    assert "calls 0" in done.stdout


def test_a_larger_n_starts_from_the_whole_chunks_of_a_smaller_one(tmp_path):
    """A seeded draw's first whole chunks are the same images for any n: FID at 20 after FID at 8 draws 12 more
    (chunks of 4), and gets the statistics of one uninterrupted draw of 20. A draw whose last chunk was short
    (10 = 4 + 4 + 2) is no prefix of 20, and is not used."""
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "ZOO_FID_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}

    def run(key: str, out: str, n: int) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, str(script), "0", key, str(tmp_path / out), str(n)],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        return r

    whole = run("", "whole.npy", 20)
    assert "calls 5" in whole.stdout
    assert "calls 3" in run("k", "ten.npy", 10).stdout  # 4 + 4 + 2: its last chunk is short
    assert "calls 2" in run("k", "eight.npy", 8).stdout  # 8 is not a prefix of the 10 record's end
    assert "calls 3" in run("k", "twenty.npy", 20).stdout  # from the 8 record's two chunks
    np.testing.assert_allclose(np.load(tmp_path / "twenty.npy"), np.load(tmp_path / "whole.npy"), rtol=1e-10,
                               atol=1e-12)
    assert "calls 0" in run("k", "again.npy", 20).stdout  # its own record, finished
    assert "calls 0" in run("k", "eight2.npy", 8).stdout  # a smaller n keeps its own record
    assert "calls 1" in run("other", "o.npy", 4).stdout  # another draw's key shares nothing


def test_the_cli_path_of_fid_saves_its_chunks_in_one_process(mnist_dir, tmp_path, monkeypatch):
    """zoo eval calls fid(..., distributed=True) also in one process: its chunks must be saved there too."""
    from zoo import fid as zfid
    from zoo.data import load_dataset
    from zoo.evaluate import fid
    monkeypatch.setenv("ZOO_FID_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(12, zfid.DIMS))
    r = fid(zoo.load("made-mnist-bin"), load_dataset("mnist-bin", "test", mnist_dir), 8, seed=0, inception=net,
            distributed=True, data_dir=mnist_dir)
    assert r.fid is not None and r.metrics[0].command == "zoo eval made-mnist-bin --fid -n 8 --seed 0"
    assert len(list((tmp_path / "cache" / "samples").glob("*.npz"))) == 1


def test_a_token_likelihood_is_recorded_without_bits_per_dim():
    """VAR's NLL is of its tokenizer's codes: its card record says so and gives no bits/dim (as `zoo eval` prints)."""
    from zoo.evaluate import NLLResult
    from zoo.records import nll_metric
    tokens = nll_metric("var-x", NLLResult(553.2, 0.61, 100, 3072, likelihood="tokens"), "test", None, "data")
    pixels = nll_metric("made-x", NLLResult(88.5, 0.3, 100, 784), "test", None, "data")
    assert "bits/dim" in pixels.note and "no bits/dim" in tokens.note and "0." not in tokens.note.split(",")[1]
    assert tokens.unit == "nats/image (tokens)" and pixels.unit == "nats/image"
