"""The plugin contract: zoo.testing.check_family over every installed architecture (as timm's tests run over
list_models), the kit failing on broken families, the 0.1 contract still served with DeprecationWarnings (a
verbatim copy of the 0.1 zoo-hello in tests/fixtures), declared options, recorded configs and conditionals."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import zoo
from zoo.errors import InputError
from zoo.testing import ContractError, all_sequences, check_family, check_tokenizer

ROOT = Path(__file__).resolve().parents[1]
LEGACY = ROOT / "tests" / "fixtures" / "zoo-hello-0.1"
EXAMPLE = ROOT / "examples" / "zoo-hello"
ALL_CHECKS = ["config", "normalisation", "conditionals", "causality", "cached == naive",
              "completion keeps observed", "exact completion", "non-prefix completion", "save/load"]


@pytest.mark.parametrize("arch", sorted(set(zoo.list_architectures()) - set(zoo.list_tokenizers())))
def test_every_installed_architecture_keeps_the_contract(arch):
    report = check_family(arch)
    assert report.passed == ALL_CHECKS, report


@pytest.mark.parametrize("name", zoo.list_tokenizers())
def test_every_installed_tokenizer_keeps_the_contract(name):
    assert check_tokenizer(name).passed == ["config", "encode", "decode", "token_mask", "save/load"]
    assert issubclass(zoo.plugins.registry().tokenizers[name][1], zoo.LearnedTokenizer)


@pytest.mark.parametrize("arch, config", [
    ("made", {"image_shape": [1, 2, 3], "levels": 3, "hidden": [12], "features": 4, "head": "gauss"}),
    ("made", {"image_shape": [1, 3, 3], "levels": 2, "hidden": [16, 16], "num_masks": 1, "ordering": "agnostic"}),
    ("pixelcnn", {"image_shape": [3, 1, 2], "levels": 2, "kind": "plain", "hidden": 6, "layers": 1}),
    ("pixelcnn", {"image_shape": [3, 2, 2], "levels": 2, "hidden": 6, "layers": 2}),
    ("made", {"image_shape": [1, 2, 2], "levels": 3, "hidden": [12], "head": "logistic", "mixtures": 2}),
    ("made", {"image_shape": [1, 2, 2], "levels": 3, "hidden": [12], "head": "gaussian"}),
    ("pixelcnn", {"image_shape": [3, 1, 2], "levels": 3, "hidden": 6, "layers": 1, "head": "logistic",
                  "mixtures": 2}),
], ids=["made-3-levels-gauss", "made-agnostic", "pixelcnn-colour-plain", "pixelcnn-colour-gated", "made-logistic",
        "made-gaussian", "pixelcnn-colour-logistic"])
def test_more_configs_keep_the_contract(arch, config):
    if config.get("head") == "gauss":  # the deprecated head still keeps the contract, with its warning
        with pytest.warns(DeprecationWarning, match="head='gauss'"):
            assert check_family(arch, config).passed == ALL_CHECKS
        return
    assert check_family(arch, config).passed == ALL_CHECKS


def test_string_tokenizers_register_without_importing_and_resolve_on_use():
    """A "module:Class" under Plugin.tokenizers is a tokenizer without importing it; a string under architectures
    is never imported to decide; a class that is not a LearnedTokenizer is refused when first used."""
    from zoo.plugins import Plugin, Registry
    reg = Registry()
    reg.add(Plugin(name="p", version="1", architectures={"v": "zoo_var.var:VAR"},
                   tokenizers={"tok": "zoo_var.vqvae:VQVAE", "bad": "zoo_made.model:MADE_NOPE"}), source="test")
    assert sorted(reg.tokenizers) == ["bad", "tok"] and sorted(reg.architectures) == ["bad", "tok", "v"]
    assert dict.__getitem__(reg.tokenizers, "tok")[1] == "zoo_var.vqvae:VQVAE"  # not imported by registering
    assert issubclass(reg.tokenizers["tok"][1], zoo.LearnedTokenizer)
    with pytest.raises(zoo.PluginError, match="MADE_NOPE"):
        reg.tokenizers["bad"]
    with pytest.raises(zoo.PluginError, match="module:Class"):
        Registry().add(Plugin(name="q", version="1", tokenizers={"t": "not a ref"}), source="test")


# ---- the kit fails on broken families ------------------------------------------------------------------------
class Markov(zoo.Model):
    """Each token depends on the one before it in raster order; a cached stepper keeps only the last token."""

    def __init__(self, image_shape=(1, 2, 3), levels: int = 2, bug: str = "") -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.tokenizer = zoo.PixelTokenizer(levels, self.image_shape)
        T = self.tokenizer.num_tokens
        self.first = nn.Parameter(torch.randn(levels))
        self.table = nn.Parameter(torch.randn(T, levels, levels))
        self.bug = bug

    def logits_all(self, tokens, y=None):
        T = tokens.shape[1]
        prev = tokens.roll(-1 if self.bug == "peek" else 1, 1)  # "peek" reads the next token (still normalised)
        out = self.table[torch.arange(T), prev]                 # (N, T, V)
        return torch.cat([self.first.expand(tokens.shape[0], 1, -1), out[:, 1:]], 1)

    def log_prob_tokens(self, tokens, y=None):
        exact = super().log_prob_tokens(tokens, y)
        return exact + 0.01 if self.bug == "unnormalised" else exact

    def stepper(self, n, *, y=None, observed_mask=None, generator=None, cfg=None):
        self.generation_steps(observed_mask)  # refuses what the naive reference refuses (a non-prefix mask)
        return MarkovStepper(self, n)


class MarkovStepper:
    def __init__(self, model: Markov, n: int) -> None:
        self.m, self.n, self.last, self.num_steps = model, n, None, model.tokenizer.num_tokens

    def positions(self, t):
        return torch.tensor([t])

    def logits(self, t):
        if t == 0:
            return self.m.first.expand(self.n, 1, -1)
        stale = self.m.bug == "stale-cache" and t >= 3  # forgets the last token from step 3 on
        return self.m.table[t, torch.zeros_like(self.last) if stale else self.last][:, None]

    def advance(self, t, tokens):
        self.last = tokens[:, 0]


def test_a_correct_family_of_its_own_passes():
    # Markov keeps the default generation_steps: the kit's non-prefix mask meets its deprecation warning
    with pytest.warns(DeprecationWarning, match="keeps zoo's default generation_steps"):
        assert check_family(Markov, {"image_shape": [1, 2, 3]}).passed == ALL_CHECKS


@pytest.mark.parametrize("bug, check", [("peek", "causality"), ("unnormalised", "normalisation"),
                                        ("stale-cache", "cached == naive")])
def test_the_kit_names_the_broken_promise(bug, check):
    with pytest.raises(ContractError, match=check):
        check_family(Markov, {"image_shape": [1, 2, 3], "bug": bug})


def test_a_causality_leak_that_keeps_normalisation_is_caught():
    """A conditional that reads a later token but is still normalised: only the causality check sees it."""
    class Leaky(Markov):
        def conditionals_tokens(self, tokens, y=None):
            out = super().conditionals_tokens(tokens, y).clone()
            shift = 0.1 * (tokens[:, -1].float() - 0.5)  # the first two read the last token; their sum does not
            out[:, 0] += shift
            out[:, 1] -= shift
            return out

    with pytest.raises(ContractError, match="causality"):
        check_family(Leaky, {"image_shape": [1, 2, 3]})


def test_a_config_too_large_to_enumerate_is_refused():
    with pytest.raises(InputError, match="token sequences"):
        check_family("made", {"image_shape": [1, 4, 4], "levels": 2, "hidden": [8]})


def test_all_sequences_enumerates_in_order():
    seqs = all_sequences(3, 2)
    assert seqs.shape == (9, 2) and seqs[5].tolist() == [1, 2] and len({tuple(s) for s in seqs.tolist()}) == 9


# ---- conditionals, options, config -------------------------------------------------------------------------
def test_conditionals_are_per_token_in_generation_order_and_sum_to_log_prob(tiny_made):
    x = tiny_made.sample(5, seed=0)
    cond = tiny_made.conditionals(x)
    assert cond.shape == (5, 9) and bool((cond <= 0).all())
    torch.testing.assert_close(cond.sum(1), tiny_made.log_prob(x).detach(), atol=1e-4, rtol=0)
    m = zoo.create("made", **{**zoo.get_card("made-mnist-bin").config, "image_shape": [1, 3, 3],
                              "hidden": [8], "ordering": "random", "num_masks": 2})
    order = torch.cat(m.generation_steps())
    assert sorted(order.tolist()) == list(range(9))


def test_options_are_declared_checked_and_typed(tiny_made):
    x = tiny_made.sample(3, seed=0)
    one = tiny_made.log_prob(x, masks=1)
    assert not torch.allclose(one, tiny_made.log_prob(x))
    with pytest.raises(InputError, match=r"unknown log_prob option\(s\) \['mask'\].*masks \(int \| None\)"):
        tiny_made.log_prob(x, mask=1)
    with pytest.raises(InputError, match="masks='two'.*must be int"):
        tiny_made.log_prob(x, masks="two")
    p = zoo.create("pixelcnn", image_shape=[1, 3, 3], hidden=8, layers=1)
    with pytest.raises(InputError, match="it takes none"):
        p.log_prob(p.sample(1, seed=0), masks=1)


def test_config_is_the_constructor_arguments_with_defaults_recorded_once():
    m = zoo.create("made", image_shape=(1, 3, 3), hidden=[8])
    assert m.config["image_shape"] == [1, 3, 3] and m.config["num_masks"] == 1 and m.config["seed"] == 0
    assert zoo.create("made", **m.config).config == m.config
    tok = {"image_shape": [1, 8, 8], "channels": 8, "latent_dim": 4, "codebook_size": 2, "scales": [1, 2]}
    v = zoo.create("var", tokenizer=tok, dim=16, depth=1, heads=2)
    assert v.config["tokenizer"] == tok and v.config["class_dropout"] == 0.1
    assert v.vqvae.config["beta"] == 0.25 and v.vqvae.config["scales"] == [1, 2]  # the VQ-VAE's own, defaults in


def test_cfg_is_refused_where_there_is_no_unconditional_model():
    p = zoo.create("pixelcnn", image_shape=[1, 3, 3], hidden=8, layers=1, num_classes=2)
    with pytest.raises(InputError, match="guidance does not apply"):
        p.sample(2, y=1, cfg=2.0)


# ---- the 0.1 contract keeps working, with DeprecationWarnings naming the new call ----------------------------
@pytest.fixture
def legacy_hello(tmp_path, monkeypatch):
    """Today's zoo-hello 0.1 (a verbatim copy) installed as a fake distribution, in a fresh registry."""
    info = tmp_path / "zoo_hello-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-hello\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[zoo.plugins]\nhello = zoo_hello:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(LEGACY))
    monkeypatch.delenv("ZOO_LOAD_PLUGINS", raising=False)
    for name in [m for m in sys.modules if m == "zoo_hello" or m.startswith("zoo_hello.")]:
        monkeypatch.delitem(sys.modules, name)
    zoo.plugins.reset()
    yield
    for name in [m for m in sys.modules if m == "zoo_hello" or m.startswith("zoo_hello.")]:
        sys.modules.pop(name, None)
    zoo.plugins.reset()


def test_a_plugin_written_against_the_0_1_contract_still_works(legacy_hello):
    with pytest.warns(DeprecationWarning, match=r"set zoo.Plugin\(weights_dir=...\)"):
        assert zoo.plugins.registry().failures == []
    m = zoo.load("hello-mnist-bin")
    with pytest.warns(DeprecationWarning, match=r"stepper\(n, \*, y=None, observed_mask=None, generator=None, "
                                                 r"cfg=None\)"):
        x = m.sample(4, seed=0)
    assert x.shape == (4, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert torch.equal(x, m.sample(4, seed=0, naive=True))
        done = m.complete(x, zoo.masks.top_half(x), seed=1)
        report = check_family(type(m), {"image_shape": [1, 2, 3], "levels": 2})
    assert torch.equal(done[..., :14, :], x[..., :14, :])
    assert report.passed == ALL_CHECKS
    assert m.log_prob(x).shape == (4,)
    torch.testing.assert_close(m.conditionals(x).sum(1), m.log_prob(x).detach(), atol=1e-3, rtol=0)


def test_0_1_log_prob_options_from_the_signature_warn_and_work():
    class Old(zoo.Model):
        def __init__(self):
            super().__init__()
            self.image_shape, self.tokenizer = (1, 1, 2), zoo.PixelTokenizer(2, (1, 1, 2))
            self.w = nn.Parameter(torch.zeros(2, 2))

        def logits_all(self, tokens, y=None):
            return self.w.expand(tokens.shape[0], -1, -1)

        def log_prob_tokens(self, tokens, y=None, scale: float = 1.0):
            return super().log_prob_tokens(tokens, y) * scale

    m = Old()
    x = torch.tensor([[[[0.0, 1.0]]]])
    with pytest.warns(DeprecationWarning, match="declare them as a dataclass `Options`"):
        assert m.log_prob(x, scale=2.0).item() == pytest.approx(2 * m.log_prob(x).item())
    with pytest.raises(InputError, match="unknown log_prob option"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m.log_prob(x, nope=1)


def test_the_example_plugin_runs_the_kit():
    """examples/zoo-hello/tests/test_contract.py, as a plugin author runs it."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        for name in [m for m in sys.modules if m == "zoo_hello" or m.startswith("zoo_hello.")]:
            sys.modules.pop(name)
        import importlib.util
        spec = importlib.util.spec_from_file_location("hello_contract", EXAMPLE / "tests" / "test_contract.py")
        mod = importlib.util.module_from_spec(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # the example uses the current contract only
            spec.loader.exec_module(mod)
            mod.test_independent_pixels_keeps_the_zoo_contract()
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in [m for m in sys.modules if m == "zoo_hello" or m.startswith("zoo_hello.")]:
            sys.modules.pop(name)


def test_eval_option_help_lists_each_familys_declared_options_with_types():
    from click.testing import CliRunner

    from zoo.cli import main
    out = CliRunner().invoke(main, ["eval", "--help"])
    assert out.exit_code == 0, out.output
    assert "made: masks=int | None (default None)" in " ".join(out.output.split())


def test_a_recorded_figure_carries_the_command_that_reproduces_it():
    from zoo.records import eval_command, train_command
    assert (eval_command("made-mnist-bin", "nll", n=100, split="val", options={"masks": 1})
            == "zoo eval made-mnist-bin --nll -n 100 --split val -o masks=1")
    assert eval_command("var-mnist", "fid", n=2048, seed=0) == "zoo eval var-mnist --fid -n 2048 --seed 0"
    assert (train_command("made-mnist-bin", {"epochs": 3, "lr": 0.0005}, device="cuda", amp=True, compile=False)
            == "zoo train made-mnist-bin --epochs 3 --lr 0.0005 --device cuda --amp")
    assert train_command("runs/my recipe.toml") == "zoo train 'runs/my recipe.toml'"
