"""Core pieces: logit processing, masks, cards, the sampler loop."""
from __future__ import annotations

import pytest
import torch

import zoo
from zoo.cards import dump_card, parse_card, read_card
from zoo.logits import LogitProcessor
from zoo.sampling import Sampler, draw

GOOD_CARD = """
id = "tiny-card"
plugin = "made"
architecture = "made"
description = "a card"
[data]
dataset = "mnist-bin"
[config]
image_shape = [1, 3, 3]
levels = 2
hidden = [8]
[weights]
file = "tiny.safetensors"
sha256 = "%s"
[[metrics]]
name = "nll"
value = 5.0
unit = "nats/image"
split = "test"
n = 10
command = "zoo eval tiny-card --nll"
""" % ("a" * 64)


def test_top_k_keeps_only_the_k_largest():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    out = LogitProcessor(top_k=2).process(logits)
    assert torch.isinf(out[0, [0, 3]]).all() and torch.isfinite(out[0, [1, 2]]).all()


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = LogitProcessor(top_p=0.7).process(probs.log())
    assert torch.isfinite(out[0, :2]).all() and torch.isinf(out[0, 2:]).all()
    out = LogitProcessor(top_p=0.5).process(probs.log())
    assert torch.isfinite(out[0, 0]) and torch.isinf(out[0, 1:]).all()


def test_temperature_zero_is_greedy_and_low_temperature_sharpens():
    logits = torch.tensor([[0.0, 1.0, 0.5]])
    assert Sampler(LogitProcessor(temperature=0)).choose(logits, None).item() == 1
    p_hot = LogitProcessor(temperature=2).process(logits).softmax(-1)
    p_cold = LogitProcessor(temperature=0.5).process(logits).softmax(-1)
    assert p_cold[0, 1] > logits.softmax(-1)[0, 1] > p_hot[0, 1]


def test_cfg_scale_zero_is_unconditional_and_one_is_conditional():
    cond, uncond = torch.randn(3, 5), torch.randn(3, 5)
    assert torch.equal(LogitProcessor(cfg=0.0).guide(cond, uncond), uncond)
    assert torch.allclose(LogitProcessor(cfg=1.0).guide(cond, uncond), cond)


@pytest.mark.parametrize("cfg,steps", [(3.0, 5), (0.0, 4), (1.0, 6), (7.5, 2)])
def test_linear_guidance_ramps_from_the_conditional_model_to_cfg(cfg, steps):
    """zoo's cfg = s is the VAR reference's t = s - 1; the linear schedule is its t_k = t * k / (K - 1)."""
    cond, uncond = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    p = LogitProcessor(cfg=cfg, cfg_schedule="linear")
    t = cfg - 1
    for k in range(steps):
        t_k = t * k / (steps - 1)
        assert p.guidance(k, steps) == pytest.approx(1 + t_k)
        reference = cond + t_k * (cond - uncond)  # the reference's form: (1 + t) * cond - t * uncond
        torch.testing.assert_close(p.guide(cond, uncond, k, steps), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(p.guide(cond, uncond, 0, steps), cond)
    constant = LogitProcessor(cfg=cfg)
    assert constant.cfg_schedule == "constant" and all(constant.guidance(k, steps) == cfg for k in range(steps))


@pytest.mark.parametrize("kw", [dict(temperature=-1), dict(top_k=0), dict(top_p=0), dict(top_p=1.5),
                                dict(cfg=2.0, cfg_schedule="cosine")])
def test_bad_logit_settings_are_refused(kw):
    with pytest.raises(zoo.InputError):
        LogitProcessor(**kw)


def test_draw_follows_the_distribution():
    probs = torch.tensor([0.1, 0.6, 0.3]).expand(20000, 3)
    tokens = draw(probs, torch.Generator().manual_seed(0))
    freq = torch.bincount(tokens, minlength=3).float() / len(tokens)
    assert torch.allclose(freq, torch.tensor([0.1, 0.6, 0.3]), atol=0.02)


def test_masks_shapes_and_semantics():
    x = torch.zeros(4, 1, 6, 6)
    assert zoo.masks.top_half(x)[:, :3].all() and not zoo.masks.top_half(x)[:, 3:].any()
    assert zoo.masks.bottom_half(x)[:, 3:].all()
    assert zoo.masks.left_half(x)[:, :, :3].all() and not zoo.masks.right_half(x)[:, :, :3].any()
    assert zoo.masks.first_k(x, 8).flatten()[:8].all() and not zoo.masks.first_k(x, 8).flatten()[8:].any()
    b = zoo.masks.box(x, 1, 2, 3, 2)
    assert (~b).sum() == 6 and not b[0, 1:4, 2:4].any()
    r = zoo.masks.random(x, 0.25, seed=1)
    assert r.shape == (4, 1, 6, 6) and (r.flatten(1).sum(1) == 9).all()
    assert zoo.masks.parse_mask("first:3", x).sum() == 3
    with pytest.raises(zoo.InputError, match="unknown mask"):
        zoo.masks.parse_mask("diagonal", x)


def test_card_round_trip_and_metric_commands(tmp_path):
    card = parse_card(__import__("tomllib").loads(GOOD_CARD))
    path = tmp_path / "c.toml"
    path.write_text(dump_card(card))
    again = read_card(path)
    assert again.to_dict() == card.to_dict()
    assert again.metric("nll").command == "zoo eval tiny-card --nll"


def test_a_cards_sampling_preset_is_optional_validated_and_round_trips(tmp_path):
    import tomllib
    assert parse_card(tomllib.loads(GOOD_CARD)).sampling == {}  # an old card without [sampling] still loads
    preset = '\n[sampling]\nclasses = "uniform"\ntop_k = 112\ntop_p = 0.95\ncfg = 2.5\ncfg_schedule = "linear"\n'
    card = parse_card(tomllib.loads(GOOD_CARD + preset))
    assert card.sampling == dict(classes="uniform", top_k=112, top_p=0.95, cfg=2.5, cfg_schedule="linear")
    path = tmp_path / "c.toml"
    path.write_text(dump_card(card))
    assert read_card(path).sampling == card.sampling
    for bad, field in [('top_k = 112', 'top_k = 0'), ('top_p = 0.95', 'top_p = 1.5'),
                       ('cfg_schedule = "linear"', 'cfg_schedule = "cosine"'), ('classes = "uniform"', 'classes = 3'),
                       ('classes = "uniform"', 'classes = "all"'), ('cfg = 2.5', 'cfg = true'),
                       ('cfg = 2.5', 'guidance = 2.5')]:
        path.write_text(GOOD_CARD + preset.replace(bad, field))
        with pytest.raises(zoo.CardError) as e:
            read_card(path)
        key = field.split(" =")[0]
        assert str(path) in str(e.value) and key in str(e.value), (field, str(e.value))


@pytest.mark.parametrize("edit,field", [
    (lambda s: s.replace('id = "tiny-card"\n', ""), "'id'"),
    (lambda s: s.replace('dataset = "mnist-bin"', ""), "'data.dataset'"),
    (lambda s: s.replace('sha256 = "' + "a" * 64, 'sha256 = "xyz'), "'weights.sha256'"),
    (lambda s: s.replace('file = "tiny.safetensors"', 'file = "../../etc/passwd.safetensors"'), "'weights.file'"),
    (lambda s: s.replace("value = 5.0", 'value = "five"'), "'metrics[0].value'"),
    (lambda s: s.replace('command = "zoo eval tiny-card --nll"', 'command = "python eval.py"'), "'metrics[0].command'"),
    (lambda s: s.replace("[config]", "config = 3\n[configx]"), "'config'"),
])
def test_malformed_cards_name_file_and_field(tmp_path, edit, field):
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD_CARD))
    with pytest.raises(zoo.CardError) as e:
        read_card(path)
    assert str(path) in str(e.value) and field in str(e.value)


def test_unparseable_card_is_a_card_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("id = [unclosed")
    with pytest.raises(zoo.CardError, match="not valid TOML"):
        read_card(path)


def test_pixel_tokenizer_round_trip():
    tok = zoo.PixelTokenizer(256, (3, 2, 2))
    x = torch.randint(0, 256, (5, 3, 2, 2), dtype=torch.uint8)
    tokens = tok.encode(x)
    assert tokens.shape == (5, 12) and tokens.max() < 256
    assert torch.equal((tok.decode(tokens) * 255).round().to(torch.uint8), x)


def test_shipped_cards_are_valid_and_measured():
    ids = zoo.list_models()
    assert {"made-mnist-bin", "made-mnist", "made-cifar10-gray"} <= set(ids)
    from zoo.plugins import registry
    for i in ids:
        card = zoo.get_card(i)
        generative = registry().architectures[card.architecture][1].generative
        for name in (["nll"] if generative else ["psnr", "codebook_usage"]):
            m = card.metric(name)
            assert m is not None and m.split == "test" and m.command.startswith(f"zoo eval {i}"), (i, name)
        if card.dataset.startswith("cifar10"):
            assert "cifar10-jpeg" in str(card.data) + card.description


def test_loading_a_model_whose_plugin_is_missing_names_the_plugin(tmp_path):
    import tomllib
    data = tomllib.loads(GOOD_CARD)
    data["plugin"] = "wavenet"
    (tmp_path / "card.toml").write_text(dump_card(parse_card(data)))
    with pytest.raises(zoo.UnknownModelError, match="plugin 'wavenet'"):
        zoo.load(str(tmp_path))


@pytest.mark.parametrize("temperature", [1.0, 0.7, 1.6])
def test_the_two_level_draws_equal_the_inverse_cdf_draw(temperature):
    """Binary models draw through a shortcut (u >= sigmoid((l0 - l1) / T)) and through `draw` when top-k/top-p
    filter first: both must give the inverse-CDF draw of softmax(logits / T) for the same uniforms."""
    from zoo.sampling import draw_binary, draw_logits
    logits = torch.randn(20_000, 3, 2) * 4
    proc = LogitProcessor(temperature=temperature)
    reference = draw_logits(proc.process(logits), torch.Generator().manual_seed(5))
    fast = Sampler(proc).choose(logits, torch.Generator().manual_seed(5))
    direct = draw_binary(logits, temperature, torch.Generator().manual_seed(5))
    cdf = draw(torch.softmax(logits / temperature, -1), torch.Generator().manual_seed(5))
    # equal up to float rounding at the boundary (a uniform within ~1e-16 of p0): none among 60,000 draws
    assert torch.equal(fast, reference) and torch.equal(direct, reference) and torch.equal(cdf, reference)
    assert fast.shape == (20_000, 3) and fast.dtype == torch.long


class _FixedLogits:
    """A stepper whose step t predicts `sizes[t]` positions with logits fixed in advance (no dependence on the
    tokens drawn, so that a draw-by-draw reference is a plain loop over the same logits)."""

    def __init__(self, logits: list[torch.Tensor], gaps: bool = False) -> None:
        self.table, self.num_steps = logits, len(logits)
        starts = [0]
        for lg in logits:
            starts.append(starts[-1] + lg.shape[1])
        self.pos = [torch.arange(a, b) for a, b in zip(starts, starts[1:])]
        self.seen: list[torch.Tensor] = []
        if gaps:
            self.logit_gaps = lambda t: self.table[t][..., 1] - self.table[t][..., 0]

    def positions(self, t: int) -> torch.Tensor:
        return self.pos[t]

    def logits(self, t: int) -> torch.Tensor:
        return self.table[t]

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        self.seen.append(tokens)


@pytest.mark.parametrize("levels,temperature,sizes", [(2, 1.0, [1] * 40), (2, 0.6, [1, 3, 2, 5]),
                                                      (7, 1.0, [1] * 30), (7, 1.7, [1, 4, 9, 2])])
def test_a_pass_draws_its_uniforms_at_once_and_the_same_tokens_as_step_by_step(levels, temperature, sizes):
    """An unobserved pass draws every uniform at its start: on CPU these are the numbers one call per step would
    draw, so the tokens equal a step-by-step inverse-CDF loop over the same logits and generator."""
    n = 64
    g = torch.Generator().manual_seed(11)
    table = [torch.randn(n, s, levels, generator=g) * 3 for s in sizes]
    proc = LogitProcessor(temperature=temperature)
    tokens = Sampler(proc).run(_FixedLogits(table), n, sum(sizes), generator=torch.Generator().manual_seed(4))
    ref_gen = torch.Generator().manual_seed(4)
    reference = torch.cat([draw(torch.softmax(lg / temperature, -1), ref_gen) for lg in table], 1)
    assert torch.equal(tokens, reference)
    assert tokens.dtype == torch.long and tokens.shape == (n, sum(sizes))


def test_a_stepper_giving_logit_gaps_draws_what_its_logits_draw():
    """`Stepper.logit_gaps` is a shortcut for two-level steps: the same tokens as the logits give, and the steps see
    the same tokens; top-k (which needs the logits) and completions go through `logits`."""
    g = torch.Generator().manual_seed(2)
    table = [torch.randn(50, 2, 2, generator=g) * 2 for _ in range(20)]
    for proc in (LogitProcessor(), LogitProcessor(temperature=0.5)):
        plain, gapped = _FixedLogits(table), _FixedLogits(table, gaps=True)
        a = Sampler(proc).run(plain, 50, 40, generator=torch.Generator().manual_seed(9))
        b = Sampler(proc).run(gapped, 50, 40, generator=torch.Generator().manual_seed(9))
        assert torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(plain.seen, gapped.seen))
    called = []
    gapped = _FixedLogits(table, gaps=True)
    gapped.logit_gaps = lambda t: called.append(t)
    Sampler(LogitProcessor(top_k=1)).run(gapped, 50, 40, generator=torch.Generator().manual_seed(9))
    assert not called


def test_a_stepper_may_give_its_positions_as_ints_or_0_d_tensors():
    g = torch.Generator().manual_seed(3)
    table = [torch.randn(10, 1, 4, generator=g) for _ in range(6)]

    class Ints(_FixedLogits):
        def positions(self, t: int):
            return int(self.pos[t]) if t % 2 else self.pos[t][0]

    a = Sampler().run(_FixedLogits(table), 10, 6, generator=torch.Generator().manual_seed(1))
    b = Sampler().run(Ints(table), 10, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
