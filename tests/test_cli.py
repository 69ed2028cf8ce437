"""The command line, end to end on the bundled models and the tests' small data."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image

from zoo.cli import main


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, code=0):
        result = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output
    return invoke


def test_list_info_plugins(run):
    out = run("list")
    assert "made-mnist-bin" in out and "bundled" in out
    out = run("info", "made-mnist-bin")
    assert "zoo eval made-mnist-bin --nll" in out and "sha256" in out
    assert "made" in run("plugins")


def test_unknown_id_suggests_close_ones(run):
    out = run("sample", "made-mnist-bn", code=2)
    assert "unknown model 'made-mnist-bn'" in out and "made-mnist-bin" in out


def test_sample_writes_a_grid(run, tmp_path):
    out = tmp_path / "grid.png"
    run("sample", "made-mnist-bin", "-n", 4, "-o", out, "--seed", 1)
    img = Image.open(out)
    assert img.size[0] > 56 and img.size[1] > 56


def test_complete_and_eval_on_test_data(run, tmp_path, mnist_dir):
    out = tmp_path / "c.png"
    text = run("complete", "made-mnist-bin", "--mask", "top-half", "-n", 3, "-o", out, "--data-dir", mnist_dir)
    assert "mnist-bin test" in text and out.exists()
    text = run("eval", "made-mnist-bin", "--nll", "-n", 40, "--data-dir", mnist_dir, "-o", "masks=1")
    assert "nats/image" in text and "n=40" in text


def test_missing_data_is_a_clear_error(run, tmp_path):
    out = run("eval", "made-mnist-bin", "--nll", "--data-dir", tmp_path, code=2)
    assert "MNIST" in out and "raw" in out


def test_eval_write_card_records_the_command(run, tmp_path, mnist_dir):
    import shutil

    import zoo
    card = tmp_path / "card.toml"
    shutil.copy(zoo.get_card("made-mnist-bin").path, card)
    run("eval", "made-mnist-bin", "--nll", "-n", 30, "--data-dir", mnist_dir, "--write-card", card)
    m = [m for m in zoo.read_card(card).metrics if m.command == "zoo eval made-mnist-bin --nll -n 30"]
    assert len(m) == 1 and m[0].n == 30


def test_train_writes_weights_and_card_and_resumes(run, tmp_path, mnist_dir):
    import zoo
    out = tmp_path / "run"
    common = ["--out", out, "--data-dir", mnist_dir, "--epochs", 1, "--no-test", "--batch-size", 50]
    run("train", "made-mnist-bin", *common, "--max-steps", 2)
    run("train", "made-mnist-bin", *common, code=2)  # refuses to overwrite the run
    run("train", "made-mnist-bin", *common, "--resume")
    card = zoo.read_card(out / "card.toml")
    assert card.metric("val_nll") is not None and (out / "made-mnist-bin.safetensors").exists()
    model = zoo.load(str(out))
    assert model.sample(2, seed=0).shape == (2, 1, 28, 28)


def test_train_hflip_is_recorded_in_the_run_card(run, tmp_path, mnist_dir):
    import zoo
    out = tmp_path / "run"
    run("train", "made-mnist-bin", "--out", out, "--data-dir", mnist_dir, "--epochs", 1, "--no-test", "--batch-size",
        50, "--max-steps", 1, "--hflip")
    assert zoo.read_card(out / "card.toml").training["hflip"] is True


def test_train_init_starts_from_a_shipped_card_and_records_it(run, tmp_path, mnist_dir, monkeypatch):
    """--init loads a model's weights before the first step (a warm start with a fresh schedule), and the card
    records the source and its sha256. Another architecture's weights are refused, naming both."""
    import torch

    import zoo
    import zoo.train as ztrain
    first = {}
    original = ztrain._start_from

    def spy(model, card, ref):
        sha = original(model, card, ref)
        first.update({k: v.clone() for k, v in model.state_dict().items()})
        return sha

    monkeypatch.setattr(ztrain, "_start_from", spy)
    out = tmp_path / "warm"
    common = ["--data-dir", mnist_dir, "--epochs", 1, "--no-test", "--batch-size", 50, "--max-steps", 1]
    run("train", "made-mnist-bin", "--out", out, "--init", "made-mnist-bin", *common)
    shipped = zoo.load("made-mnist-bin").state_dict()
    assert first.keys() == shipped.keys() and all(torch.equal(first[k], shipped[k].float()) for k in first)
    card = zoo.read_card(out / "card.toml")
    assert card.training["run"]["init"] == "made-mnist-bin" and "init" not in card.training
    assert card.training["run"]["init_sha256"] == zoo.get_card("made-mnist-bin").sha256
    assert "--init made-mnist-bin" in card.metric("val_nll").command
    first.clear()  # a resumed run takes its weights from its checkpoint, and the source's sha256 from its note
    run("train", "made-mnist-bin", "--out", out, "--init", "made-mnist-bin", *common[:-1], 2, "--resume")
    assert not first and zoo.read_card(out / "card.toml").training["run"]["init_sha256"] == card.training["run"][
        "init_sha256"]
    bad = run("train", "made-mnist-bin", "--out", tmp_path / "bad", "--init", "pixelcnn-mnist-bin", *common, code=2)
    assert "pixelcnn" in bad and "made" in bad and not (tmp_path / "bad" / "state.json").exists()


def test_train_checkpoint_every_and_val_n_from_the_command_line(run, tmp_path, mnist_dir):
    import zoo
    out = tmp_path / "run"
    run("train", "made-mnist-bin", "--out", out, "--data-dir", mnist_dir, "--epochs", 1, "--no-test",
        "--batch-size", 50, "--max-steps", 3, "--checkpoint-every", 1, "--val-n", 16)
    assert sorted(p.name for p in out.glob("checkpoint-*.safetensors"))[-1] == "checkpoint-00000003.safetensors"
    card = zoo.read_card(out / "card.toml")
    assert card.metric("val_nll").n == 16 and card.training["checkpoint_every"] == 1


def test_var_sampling_flags_preset_and_one_row_per_class(run, tmp_path):
    out = run("info", "var-mnist")
    assert "sampling preset" in out and "cfg_schedule=linear" in out and "classes=uniform" in out
    grid_png = tmp_path / "classes.png"
    run("sample", "var-mnist", "-n", 20, "--class", "all", "-o", grid_png)
    w, h = Image.open(grid_png).size
    assert h > 4 * w  # 10 rows (one per class) of 2 images
    pt = tmp_path / "x.pt"
    run("sample", "var-mnist", "-n", 4, "--class", "null", "--no-preset", "--top-k", 0, "--cfg-schedule",
        "constant", "-o", pt)
    import torch

    import zoo
    assert torch.equal(torch.load(pt), zoo.load("var-mnist").sample(4, seed=0, preset=False))
    def error(*args):
        return " ".join(run("sample", "var-mnist", *args, code=2).split())
    assert "-n a multiple of its classes (10)" in error("-n", 15, "--class", "all")
    assert "'uniform', 'null'" in error("--class", "cats")
    assert "needs a class" in error("--class", "null", "--cfg", 2)


def test_datasets_shows_every_layout_in_full_in_an_80_column_terminal():
    """A narrow terminal folds the layout paths instead of cutting them with an ellipsis (issue 25)."""
    import subprocess
    import sys

    from zoo.datasets import list_datasets
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "datasets"], capture_output=True, text=True,
                         env={**__import__("os").environ, "COLUMNS": "80"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "…" not in out.stdout and max(len(line) for line in out.stdout.splitlines()) <= 80
    cells = "".join(line.split("│")[-2].strip() for line in out.stdout.splitlines() if line.count("│") >= 7)
    for _, ds in list_datasets():
        assert ds.layout.replace(" ", "") in cells.replace(" ", "")
