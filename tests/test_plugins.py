"""Plugin discovery: a real third-party install, broken plugins, conflicts, the allow-list, suggestions.

The in-process tests write fake distributions (a `*.dist-info` folder with METADATA and entry_points.txt, and
the module it points at) into tmp_path and put it on sys.path, so `importlib.metadata` finds them exactly as
it finds an installed package. The example plugin examples/zoo-hello is built and installed with pip into a
temporary target and exercised in subprocesses, so the test runner's own registry never sees it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import zoo
import zoo.plugins
from zoo.cards import read_card
from zoo.cli import main as cli
from zoo.weights import sha256_file

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "zoo-hello"
SHA = "0" * 64


# ---- helpers ----------------------------------------------------------------------------------------------
class FakeDists:
    """Writes fake installed distributions into one folder that is on sys.path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add(self, dist: str, entry_points: dict[str, str], modules: dict[str, str] | None = None,
            files: dict[str, str] | None = None, requires: list[str] | None = None) -> None:
        for name, source in (modules or {}).items():
            (self.root / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
            self.modules.append(name)
        for rel, text in (files or {}).items():
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text), encoding="utf-8")
        info = self.root / f"{dist.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        deps = "".join(f"Requires-Dist: {r}\n" for r in requires or [])
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n{deps}", encoding="utf-8")
        eps = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
        (info / "entry_points.txt").write_text(f"[zoo.plugins]\n{eps}", encoding="utf-8")


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A folder of fake distributions on sys.path, with a fresh registry before and after the test."""
    monkeypatch.delenv("ZOO_LOAD_PLUGINS", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    zoo.plugins.reset()
    dists = FakeDists(tmp_path)
    yield dists
    for name in dists.modules:
        sys.modules.pop(name, None)
    zoo.plugins.reset()


def card_toml(cid: str, plugin: str, architecture: str) -> str:
    return f"""\
        id = "{cid}"
        plugin = "{plugin}"
        architecture = "{architecture}"

        [data]
        dataset = "mnist-bin"

        [config]
        image_shape = [1, 28, 28]

        [weights]
        file = "{cid}.safetensors"
        sha256 = "{SHA}"
        """


GOOD_PLUGIN = """\
    from pathlib import Path
    import zoo

    class Tiny(zoo.Model):
        pass

    plugin = zoo.Plugin(name="{name}", version="9.9.9", architectures={{"{arch}": Tiny}},
                        cards_dir=Path(__file__).parent / "{name}_cards", weights_dir=Path(__file__).parent / "weights")
    """


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


# ---- a. the example plugin, installed for real ------------------------------------------------------------
CHILD = r"""
import json, torch, zoo, zoo.plugins
reg = zoo.plugins.registry()
m = zoo.load("hello-mnist-bin")
x = m.sample(4, seed=0)
logits = m.logits.detach().log_softmax(-1)
tokens = x.flatten(1).long()
expected = logits[torch.arange(tokens.shape[1]), tokens].sum(1)
done = m.complete(x, zoo.masks.top_half(x), seed=1)
other = m.complete(x, zoo.masks.bottom_half(x), seed=1)  # its pixels are independent: any mask is exact
print(json.dumps({
    "plugins": {p.name: p.version for p in reg.plugins.values()},
    "failures": [f.error for f in reg.failures],
    "models": zoo.list_models("hello*"),
    "card": str(m.card.path),
    "module": zoo.plugins.registry().architectures["pixels"][1].__module__,
    "shape": list(x.shape),
    "binary": bool(((x == 0) | (x == 1)).all()),
    "same_seed": torch.equal(x, m.sample(4, seed=0)),
    "other_seed": not torch.equal(x, m.sample(4, seed=1)),
    "log_prob_exact": torch.allclose(m.log_prob(x).detach(), expected, atol=1e-3),
    "observed_kept": torch.equal(done[:, :, :14], x[:, :, :14]),
    "any_mask_kept": torch.equal(other[:, :, 14:], x[:, :, 14:]),
}))
"""


def _zoo_command() -> list[str]:
    script = Path(sys.executable).with_name("zoo")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "zoo.cli"]


def test_example_plugin_installs_and_works(tmp_path):
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("--no-build-isolation needs setuptools in this environment: pip install setuptools")
    before = sorted(zoo.plugins.registry().plugins)
    installed_here = importlib.util.find_spec("zoo_hello") is not None  # e.g. `pip install -e examples/zoo-hello`
    # pip builds in the source tree (build/, *.egg-info): build a copy, not examples/ itself
    src = tmp_path / "src"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                          "--disable-pip-version-check", "-q", "--target", str(target), str(src)],
                         capture_output=True, text=True, timeout=180)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    assert (target / "zoo_hello" / "weights" / "hello-mnist-bin.safetensors").is_file()  # package data shipped
    assert (target / "zoo_hello" / "cards" / "hello-mnist-bin.toml").is_file()

    env = {k: v for k, v in os.environ.items() if k != "ZOO_LOAD_PLUGINS"}
    # the zoo under test (a checkout on PYTHONPATH, or the installed one) and the plugin just installed
    paths = [str(target)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update(PYTHONPATH=os.pathsep.join(paths), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"), PYTHONIOENCODING="utf-8")
    out = subprocess.run(_zoo_command() + ["plugins"], capture_output=True, text=True, encoding="utf-8", env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    cells = [[c.strip() for c in re.split(r"[│|]", line)[1:-1]] for line in out.stdout.splitlines()]
    rows = {c[0]: c for c in cells if len(c) == 4}  # plugin, version, architectures, models
    assert rows.get("hello") == ["hello", "0.2.0", "pixels", "1"], out.stdout
    assert "made" in rows and "failed" not in out.stdout and "conflict" not in out.stdout

    out = subprocess.run(_zoo_command() + ["list"], capture_output=True, text=True, encoding="utf-8", env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    hello = [line for line in out.stdout.splitlines() if "hello-mnist-bin" in line]
    assert len(hello) == 1 and "bundled" in hello[0] and "made-mnist-bin" in out.stdout

    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, encoding="utf-8", env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["plugins"]["hello"] == "0.2.0" and "made" in r["plugins"] and r["failures"] == []
    assert r["models"] == ["hello-mnist-bin"]
    assert Path(r["card"]).is_relative_to(target)  # the installed copy, not the source tree
    assert r["module"] == "zoo_hello.model"
    assert r["shape"] == [4, 1, 28, 28] and r["binary"]
    assert r["same_seed"] and r["other_seed"] and r["log_prob_exact"]
    assert r["observed_kept"] and r["any_mask_kept"]

    # the test runner's own process never saw the plugin
    assert sorted(zoo.plugins.registry().plugins) == before
    if not installed_here:
        assert importlib.util.find_spec("zoo_hello") is None
        assert "hello-mnist-bin" not in zoo.plugins.discover().cards


def test_example_card_matches_its_bundled_weights():
    card = read_card(EXAMPLE / "zoo_hello" / "cards" / "hello-mnist-bin.toml")
    assert (card.plugin, card.architecture, card.dataset) == ("hello", "pixels", "mnist-bin")
    assert card.config == {"image_shape": [1, 28, 28], "levels": 2}
    assert card.weights_path().is_file()
    assert sha256_file(card.weights_path()) == card.sha256, "rerun examples/zoo-hello/make_weights.py"


# ---- b. a broken plugin is reported, every other plugin still works ---------------------------------------
@pytest.mark.parametrize("source, entry, error", [
    ("raise RuntimeError('zoo_broken_mod exploded on import')\n", "zoo_broken_mod:plugin",
     "RuntimeError: zoo_broken_mod exploded on import"),
    ("plugin = 42\n", "zoo_broken_mod:plugin", "must give a zoo.Plugin, got int"),
    ("x = 1\n", "zoo_broken_mod:plugin", "AttributeError"),
    (None, "zoo_no_such_module:plugin", "ModuleNotFoundError: No module named 'zoo_no_such_module'"),
], ids=["raises-on-import", "not-a-plugin", "missing-attribute", "missing-module"])
def test_broken_plugin_is_reported_and_made_still_loads(fake, source, entry, error):
    fake.add("zoo-broken", {"broken": entry}, modules={"zoo_broken_mod": source} if source else None)
    reg = zoo.plugins.registry()
    failures = [f for f in reg.failures if f.name in ("broken", "made")]
    assert [(f.name, f.source) for f in failures] == [("broken", entry)]
    assert error in failures[0].error
    assert "broken" not in reg.plugins and "made" in reg.plugins
    assert "made-mnist-bin" in zoo.list_models() and "made" in zoo.list_architectures()
    assert zoo.get_card("made-mnist-bin").plugin == "made"

    out = run_cli("plugins")
    assert out.exit_code == 0, out.output
    assert f"failed broken ({entry}): " in out.output and error in out.output
    assert "made" in out.output
    out = run_cli("list")
    assert out.exit_code == 0 and "made-mnist-bin" in out.output and "1 plugin(s) failed" in out.output


def test_zoo_plugins_names_a_plugin_that_requires_zoo_0_1s_distribution_name(fake):
    """A plugin written for 0.1 declares `zoo>=0.1`; zoo is published as ar-zoo, so that no longer resolves. It
    still loads, and `zoo plugins` says which line to change; `ar-zoo` and look-alike names are left alone."""
    for name, requires in [("old", ["torch>=2.4", "zoo>=0.1"]), ("new", ["ar-zoo>=0.2"]),
                           ("alike", ["zoo-extras>=1", "zoology"])]:
        fake.add(f"zoo-{name}", {name: f"zoo_{name}_mod:plugin"}, requires=requires,
                 modules={f"zoo_{name}_mod": GOOD_PLUGIN.format(name=name, arch=f"{name}-arch")})
    with pytest.warns(zoo.PluginDependencyWarning) as caught:
        out = run_cli("plugins")
    assert out.exit_code == 0, out.output
    assert len(caught) == 1, [str(w.message) for w in caught]
    note = str(caught[0].message)
    assert "plugin 'old' (zoo-old 0.1) requires 'zoo>=0.1'" in note and "should say 'ar-zoo>=0.1'" in note
    reg = zoo.plugins.registry()
    assert list(reg.notes) == ["old"] and reg.notes["old"] == note
    assert {"old", "new", "alike"} <= set(reg.plugins) and not [f for f in reg.failures if f.name == "old"]


def test_broken_card_hides_only_itself(fake):
    fake.add("zoo-good", {"good": "zoo_good_mod:plugin"},
             modules={"zoo_good_mod": GOOD_PLUGIN.format(name="good", arch="good-arch")},
             files={"good_cards/good-a.toml": card_toml("good-a", "good", "good-arch"),
                    "good_cards/good-b.toml": "id = 'good-b'\nplugin = 'good'\n",  # no architecture
                    "good_cards/good-c.toml": card_toml("good-c", "made", "good-arch")})  # wrong plugin
    reg = zoo.plugins.registry()
    assert "good" in reg.plugins and zoo.list_models("good-*") == ["good-a"]
    errors = " | ".join(f.error for f in reg.failures if f.name == "good")
    assert "good-b.toml: missing field 'architecture'" in errors
    assert "field 'plugin' is 'made' but the card ships with plugin 'good'" in errors


# ---- c. two plugins claiming one id are refused -----------------------------------------------------------
def test_two_plugins_claiming_one_id_are_refused(fake, monkeypatch):
    fake.add("zoo-rival", {"rival": "zoo_rival_mod:plugin"},
             modules={"zoo_rival_mod": GOOD_PLUGIN.format(name="rival", arch="made")},
             files={"rival_cards/made-mnist-bin.toml": card_toml("made-mnist-bin", "rival", "made")})
    reg = zoo.plugins.registry()
    assert sorted(reg.conflicts["made-mnist-bin"]) == ["made", "rival"]
    assert sorted(reg.conflicts["made"]) == ["made", "rival"]

    with pytest.raises(zoo.PluginError) as e:
        zoo.load("made-mnist-bin")
    assert "'made-mnist-bin'" in str(e.value) and "(made, rival)" in str(e.value)
    with pytest.raises(zoo.PluginError) as e:
        zoo.create("made", image_shape=(1, 4, 4), hidden=[8])
    assert "'made'" in str(e.value) and "(made, rival)" in str(e.value)
    assert "made-mnist-bin" not in zoo.list_models()  # refused, not silently overwritten
    assert "made-mnist" in zoo.list_models()  # the ids nobody disputes stay

    out = run_cli("plugins")
    assert out.exit_code == 0 and "rival" in out.output
    assert "conflict 'made-mnist-bin' claimed by made, rival: refused" in out.output
    assert "conflict 'made' claimed by made, rival: refused" in out.output
    out = run_cli("info", "made-mnist-bin")
    assert out.exit_code == 2 and "claimed by several plugins (made, rival)" in out.output

    # the way out that the error names: choose one plugin
    monkeypatch.setenv("ZOO_LOAD_PLUGINS", "made")
    zoo.plugins.reset()
    assert zoo.get_card("made-mnist-bin").plugin == "made" and not zoo.plugins.registry().conflicts


# ---- d. the ZOO_LOAD_PLUGINS allow-list -------------------------------------------------------------------
def test_allow_list(fake, monkeypatch):
    fake.add("zoo-extra", {"extra": "zoo_extra_mod:plugin"},
             modules={"zoo_extra_mod": GOOD_PLUGIN.format(name="extra", arch="extra-arch")},
             files={"extra_cards/extra-one.toml": card_toml("extra-one", "extra", "extra-arch")})
    fake.add("zoo-broken", {"broken": "zoo_broken_mod:plugin"},
             modules={"zoo_broken_mod": "raise RuntimeError('boom')\n"})

    def load(allow: str | None):
        if allow is None:
            monkeypatch.delenv("ZOO_LOAD_PLUGINS", raising=False)
        else:
            monkeypatch.setenv("ZOO_LOAD_PLUGINS", allow)
        zoo.plugins.reset()
        sys.modules.pop("zoo_extra_mod", None)
        return zoo.plugins.registry()

    reg = load("")
    assert reg.plugins == {} and reg.failures == [] and zoo.list_models() == [] and zoo.list_architectures() == []
    assert "zoo_extra_mod" not in sys.modules  # not even imported
    with pytest.raises(zoo.UnknownModelError):
        zoo.load("made-mnist-bin")

    reg = load("made")
    assert sorted(reg.plugins) == ["made"] and reg.failures == []  # the broken one is never imported
    assert zoo.list_models() and all(m.startswith("made-") for m in zoo.list_models())
    assert zoo.list_architectures() == ["made"] and "zoo_extra_mod" not in sys.modules

    reg = load(" made , extra ")
    assert sorted(reg.plugins) == ["extra", "made"] and reg.failures == []
    assert "extra-one" in zoo.list_models()

    reg = load(None)  # every installed plugin (this environment may have more than these)
    assert {"extra", "made"} <= set(reg.plugins) and "broken" in [f.name for f in reg.failures]


# ---- e. unknown ids suggest the close ones ----------------------------------------------------------------
def test_unknown_model_suggests_the_close_id(fake):
    with pytest.raises(zoo.UnknownModelError) as e:
        zoo.load("made-mnist-bn")
    assert "unknown model 'made-mnist-bn'" in str(e.value) and "Did you mean 'made-mnist-bin'" in str(e.value)
    assert isinstance(e.value, KeyError)
    with pytest.raises(zoo.UnknownModelError, match="Did you mean 'made'"):
        zoo.create("mad")
    out = run_cli("info", "made-mnist-bn")
    assert out.exit_code == 2 and "Did you mean 'made-mnist-bin'" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("recipe", sorted(ROOT.glob("cards/*/*.toml")) + sorted(ROOT.glob("cards/*/recipes/*.toml")),
                         ids=lambda p: p.stem)
def test_every_recipe_parses_and_builds_its_model(recipe):
    """A card's [training] table is the recipe `zoo train ID` reads (cards/*/recipes/ holds those of models with no
    card yet): it must parse, its settings be known, and its architecture accept its config (built on the meta
    device: no memory, no weights)."""
    import torch

    from zoo.train import TrainConfig

    card = read_card(recipe, recipe=True)
    assert card.training and card.dataset
    TrainConfig.from_dict({k: v for k, v in card.training.items() if k != "run"})
    with torch.device("meta"):
        model = zoo.create(card.architecture, **card.config)
    assert sum(p.numel() for p in model.parameters()) > 0
