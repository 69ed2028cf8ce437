"""What a newcomer's run of the CLI found (issue 25): errors before torch is imported, --resume without a run,
`zoo info` on a folder, config types named, one interrupt message with the step, resume says its step."""
from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

import zoo
from zoo.cli import main
from zoo.errors import InputError

from fakedata import tiny_made_recipe  # noqa: E402  (tests/ is on sys.path: conftest)

RECIPE = tiny_made_recipe(val_grid=0)


def test_a_typo_or_a_bad_n_is_refused_before_torch_is_imported():
    code = ("import sys\nfrom zoo.cli import main\n"
            "for args in (['sample', 'made-mnist-bim'], ['sample', 'made-mnist-bin', '-n', '0'],"
            " ['eval', 'made-mnist-bin', '--fid', '-n', '-5'], ['complete', 'made-mnist-bim']):\n"
            "    try:\n        main(args, standalone_mode=False)\n    except (Exception, SystemExit) as e:\n"
            "        print(type(e).__name__)\n"
            "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.split()
    assert lines == ["SystemExit", "BadParameter", "BadParameter", "SystemExit", "False"], out
    assert out.stderr.count("unknown model 'made-mnist-bim'") == 2


def test_resume_without_a_run_lists_the_run_folders(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.toml").write_text(RECIPE)
    ok = CliRunner().invoke(main, ["train", "tiny.toml", "--out", "runs/good", "--data-dir", str(mnist_dir),
                                   "--max-steps", "2", "--no-test", "--threads", "1"])
    assert ok.exit_code == 0, ok.output
    typo = CliRunner().invoke(main, ["train", "tiny.toml", "--out", "runs/godo", "--data-dir", str(mnist_dir),
                                     "--resume"])
    text = " ".join(typo.output.split())
    assert typo.exit_code != 0 and "holds no training run" in text and "runs/good" in text
    assert not (tmp_path / "runs" / "godo").exists()  # nothing was started
    again = CliRunner().invoke(main, ["train", "tiny.toml", "--out", "runs/good", "--data-dir", str(mnist_dir),
                                      "--resume", "--max-steps", "4", "--no-test", "--threads", "1"])
    assert again.exit_code == 0 and "resuming runs/good from step 2 of 4" in " ".join(again.output.split())


def test_an_interrupted_run_says_so_once_with_its_step(tmp_path, mnist_dir, monkeypatch):
    (tmp_path / "tiny.toml").write_text(RECIPE)
    from zoo_made.model import MADE
    real, calls = MADE.training_loss, []

    def interrupted(self, *a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(MADE, "training_loss", interrupted)
    r = CliRunner().invoke(main, ["train", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run"),
                                  "--data-dir", str(mnist_dir), "--threads", "1"])
    assert r.exit_code == 130
    assert r.output.count("interrupted") == 1 and "checkpoint saved at step 3" in r.output


def test_info_takes_every_form_of_reference_and_an_empty_folder_says_what_it_needs(tmp_path):
    CliRunner().invoke(main, ["export", "made-mnist-bin", str(tmp_path / "out")])
    for ref in (f"local-dir:{tmp_path / 'out'}", str(tmp_path / "out")):
        r = CliRunner().invoke(main, ["info", ref])
        assert r.exit_code == 0 and "made-mnist-bin" in r.output, r.output
    (tmp_path / "empty").mkdir()
    r = CliRunner().invoke(main, ["info", f"local-dir:{tmp_path / 'empty'}"])
    text = " ".join(r.output.split())
    assert r.exit_code != 0 and "is empty" in text and "card.toml" in text and "safetensors" in text
    with pytest.raises(InputError, match="is empty"):
        zoo.load(f"local-dir:{tmp_path / 'empty'}")


def test_a_config_value_of_the_wrong_kind_names_its_field():
    with pytest.raises(InputError, match="field 'levels' = 'two' must be an integer"):
        zoo.create("made", image_shape=[1, 3, 3], levels="two", hidden=[8])
    with pytest.raises(InputError, match="field 'direct'"):
        zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[8], direct=1)
    zoo.create("made", image_shape=(1, 3, 3), levels=2, hidden=(8,))  # tuples for lists are fine
