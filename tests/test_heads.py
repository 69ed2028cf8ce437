"""Output heads (zoo.heads): exact and normalised by enumeration, colour conditionals, stable tails, and the heads
inside MADE and PixelCNN (normalised, cached == naive, completion), with the shipped softmax cards unchanged."""
from __future__ import annotations

import itertools

import mpmath
import pytest
import torch

import zoo
from zoo.heads import DiscretizedMixtureHead, make_head

MIXTURES = ["logistic", "gaussian"]


def cdf(name: str, z: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(z) if name == "logistic" else torch.special.ndtr(z)


def reference_joint(name: str, params: torch.Tensor, values: torch.Tensor, levels: int, K: int, C: int):
    """log sum_k pi_k prod_c [F(hi) - F(lo)], written from the layout in the docstring (float64, no tricks)."""
    i = 0
    if K > 1:
        pi, i = params[..., :K].softmax(-1), K
    else:
        pi = torch.ones(*params.shape[:-1], 1, dtype=params.dtype)
    total = pi
    x = []
    for c in range(C):
        mean, log_scale = params[..., i:i + K], params[..., i + K:i + 2 * K].clamp(-7, 7)
        i += 2 * K
        for j in range(c):
            mean = mean + torch.tanh(params[..., i + j * K:i + (j + 1) * K]) * x[j]
        i += c * K
        v = values[..., c:c + 1].to(params.dtype)
        centre = 2 * v / (levels - 1) - 1
        lo = torch.where(v == 0, -torch.inf, centre - 1 / (levels - 1))
        hi = torch.where(v == levels - 1, torch.inf, centre + 1 / (levels - 1))
        s = log_scale.exp()
        total = total * (cdf(name, (hi - mean) / s) - cdf(name, (lo - mean) / s))
        x.append(centre)
    return total.sum(-1).log()


def every_value(levels: int, C: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(levels), repeat=C)))


@pytest.mark.parametrize("name", MIXTURES)
@pytest.mark.parametrize("C,K,levels", [(1, 1, 5), (1, 3, 4), (3, 2, 4), (3, 1, 3)])
def test_mixture_heads_are_exact_and_normalised_by_enumeration(name, C, K, levels):
    """Every value of a tiny pixel enumerated: probabilities sum to one, log_prob equals the logits'
    log-softmax at the value and an independent reference formula, in grey and colour."""
    head = make_head(name, levels, C, mixtures=K)
    assert head.num_params == (K if K > 1 else 0) + sum((2 + c) * K for c in range(C))
    g = torch.Generator().manual_seed(C * 10 + K)
    params = torch.randn(7, head.num_params, generator=g, dtype=torch.float64)
    vals = every_value(levels, C)
    P, V = params[:, None].expand(-1, len(vals), -1), vals[None].expand(7, -1, -1)
    lp = head.log_prob(P, V)                                      # (7, levels**C, C)
    assert torch.allclose(lp.sum(-1).logsumexp(-1), torch.zeros(7, dtype=torch.float64), atol=1e-12)
    from_logits = head.logits(P, V).log_softmax(-1).gather(-1, V[..., None])[..., 0]
    assert torch.allclose(lp, from_logits, atol=1e-12)
    assert torch.allclose(head.logits(P, V).logsumexp(-1), torch.zeros(7, len(vals), C, dtype=torch.float64),
                          atol=1e-12)  # already normalised, not just up to a constant
    ref = reference_joint(name, P, V, levels, K, C)
    bulk = ref > -10  # the naive reference loses its digits in the tails (those are checked against mpmath below)
    assert bulk.float().mean() > 0.6 and torch.allclose(lp.sum(-1)[bulk], ref[bulk], atol=1e-9)
    for c in range(C):  # one channel at a time, as the cached sampler asks
        assert torch.allclose(head.logits(P, V, channel=c)[..., 0, :], head.logits(P, V)[..., c, :], atol=1e-12)


@pytest.mark.parametrize("name", MIXTURES)
def test_colour_green_depends_on_red_and_blue_on_both_and_red_on_neither(name):
    head = make_head(name, 256, 3, mixtures=4)
    params = torch.randn(head.num_params, generator=torch.Generator().manual_seed(0))
    base = torch.tensor([100, 50, 200])
    logits = head.logits(params, base)
    for c, changed in ((0, [130, 50, 200]), (1, [100, 80, 200])):
        other = head.logits(params, torch.tensor(changed))
        assert torch.equal(other[: c + 1], logits[: c + 1]), "a channel's logits see its own or a later value"
        assert (other[c + 1:] - logits[c + 1:]).abs().amax(-1).min() > 1e-3, "a later channel ignores this one"
    assert torch.equal(head.logits(params, torch.tensor([100, 50, 7])), logits)
    # the linear dependence: a mixture of one component with large R coefficients moves G's mode with R
    one = make_head(name, 256, 3, mixtures=1)
    p = torch.zeros(one.num_params)
    p[1] = p[3] = -4.0                  # small scales for R and G
    p[4] = 5.0                          # tanh(5) ~ 1: G's mean follows R
    modes = [int(one.logits(p, torch.tensor([r, 0, 0]))[1].argmax()) for r in (20, 128, 230)]
    assert modes[0] < modes[1] < modes[2] and abs(modes[0] - 20) < 3 and abs(modes[2] - 230) < 3


def reference_log_mass(name: str, j: int, levels: int, mean: float, log_scale: float) -> float:
    """log P(level j) of one component in 80-digit arithmetic (mpmath), from the tail each interval lies in."""
    mpmath.mp.dps = 80
    s, h = mpmath.exp(mpmath.mpf(log_scale)), mpmath.mpf(1) / (levels - 1)
    centre = 2 * mpmath.mpf(j) / (levels - 1) - 1
    F = (lambda z: 1 / (1 + mpmath.exp(-z))) if name == "logistic" else mpmath.ncdf
    a = (centre - h - mean) / s if j > 0 else -mpmath.inf
    b = (centre + h - mean) / s if j < levels - 1 else mpmath.inf
    mass = F(-a) - F(-b) if a > 0 else F(b) - F(a)  # both symmetric: 1 - F(z) = F(-z)
    return float(mpmath.log(mass))


@pytest.mark.parametrize("name", MIXTURES)
@pytest.mark.parametrize("mean,log_scale", [(0.0, -7.0), (0.93, -5.0), (-0.96, -6.0), (0.3, 2.0), (4.0, -1.0),
                                            (-3.0, -3.0), (1.0, -7.0), (0.5, 7.0)])
def test_float32_log_probabilities_match_60_digits_in_the_tails(name, mean, log_scale):
    """Edge levels 0 and 255 take the whole tails; far from the mean the masses underflow float32 (and float64)
    as differences of CDFs, yet their logarithms are right: log_prob (training, evaluation) to float32 rounding."""
    head = make_head(name, 256, 1, mixtures=1)
    params = torch.tensor([mean, log_scale])
    logits = head.logits(params)[0]
    mean, log_scale = params.tolist()  # the float32 values the head sees
    ref = torch.tensor([reference_log_mass(name, j, 256, mean, log_scale) for j in range(256)], dtype=torch.float64)
    assert torch.isfinite(logits).all()
    # the sampler's logits: the logistic's in float32 (no cancellation in its formula), the Gaussian's in float64
    assert torch.allclose(logits.double(), ref, rtol=5e-5 if name == "logistic" else 1e-6, atol=1e-6), \
        (logits.double() - ref).abs().max()
    assert abs(float(logits.double().logsumexp(0))) < 1e-5
    lp = head.log_prob(params[None].expand(256, -1), torch.arange(256)[:, None])[:, 0]
    assert torch.allclose(lp.double(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", MIXTURES)
def test_gradients_stay_finite_for_extreme_parameters(name):
    head = make_head(name, 256, 3, mixtures=3)
    g = torch.Generator().manual_seed(1)
    params = (torch.randn(64, head.num_params, generator=g) * torch.tensor([1.0, 30.0, 1e4])[torch.arange(64) % 3,
                                                                                           None]).requires_grad_()
    values = torch.randint(0, 256, (64, 3), generator=g)
    values[:8] = 0
    values[8:16] = 255
    loss = head.log_prob(params, values).sum() + head.logits(params, values).clamp(min=-1e4).sum() * 1e-3
    loss.backward()
    assert torch.isfinite(params.grad).all()


def test_softmax_head_is_the_logits_themselves_and_heads_refuse_bad_input():
    head = make_head("softmax", 4, 3)
    p = torch.randn(2, 12)
    assert torch.equal(head.logits(p), p.view(2, 3, 4))
    assert head.param_channels().tolist() == [0] * 4 + [1] * 4 + [2] * 4
    v = torch.tensor([[0, 3, 1], [2, 2, 2]])
    assert torch.allclose(head.log_prob(p, v), p.view(2, 3, 4).log_softmax(-1).gather(-1, v[..., None])[..., 0])
    assert make_head("logistic", 256, 3, mixtures=10).num_params == 100  # PixelCNN++'s 10 per component
    assert isinstance(make_head("gaussian", 256), DiscretizedMixtureHead) and make_head("gaussian", 256).mixtures == 1
    with pytest.raises(zoo.InputError, match="'softmax', 'logistic', 'gaussian'"):
        make_head("laplace", 256)
    with pytest.raises(zoo.InputError, match="mixtures"):
        make_head("softmax", 256, mixtures=5)
    with pytest.raises(zoo.InputError, match="positive integer"):
        make_head("logistic", 256, mixtures=0)
    with pytest.raises(zoo.InputError, match="30 parameters per pixel, got 29"):
        make_head("logistic", 256).logits(torch.zeros(2, 29))
    with pytest.raises(zoo.InputError, match="needs the pixel's values"):
        make_head("logistic", 256, 3).logits(torch.zeros(2, 100))


# ---- inside the families ----------------------------------------------------------------------------------

def randomized(model, std=0.5, seed=0):
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=std)
    return model


def images(levels: int, shape) -> torch.Tensor:
    C, H, W = shape
    return every_value(levels, C * H * W).float().view(-1, C, H, W) / (levels - 1)


@pytest.mark.parametrize("head", MIXTURES)
def test_made_with_a_mixture_head_is_normalised_and_log_prob_matches_its_logits(head):
    m = randomized(zoo.create("made", image_shape=[1, 1, 3], levels=5, hidden=[12], num_masks=2, head=head,
                              mixtures=2, ordering="agnostic", direct_features=2))
    x = images(5, (1, 1, 3))
    with torch.no_grad():
        for masks in (1, 2):
            assert m.log_prob(x, masks=masks).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)
        tokens = m.tokenizer.encode(x)
        from_logits = m.logits_all(tokens).log_softmax(-1).gather(-1, tokens[..., None]).sum((1, 2))
        assert torch.allclose(m.log_prob(x, masks=1), from_logits, atol=1e-4)
    assert m.output_head.name == head and m.per_dim == m.output_head.num_params
    assert not hasattr(m, "level_proj")


@pytest.mark.parametrize("head", MIXTURES)
def test_made_mixture_head_fast_sampler_and_completion_match_naive(head):
    m = randomized(zoo.create("made", image_shape=[1, 4, 4], levels=256, hidden=[32, 24], num_masks=3, head=head,
                              mixtures=3, ordering="agnostic", seed=4))
    fast = m.sample(8, seed=7)
    assert torch.equal(fast, m.sample(8, seed=7, naive=True))
    assert not torch.equal(fast, m.sample(8, seed=8))
    assert torch.equal(m.sample(8, seed=7, temperature=0.7, top_p=0.9),
                       m.sample(8, seed=7, temperature=0.7, top_p=0.9, naive=True))
    x = torch.randint(0, 256, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float() / 255
    mask = zoo.masks.random(x, 0.5, seed=1)
    out = m.complete(x, mask, seed=3, approximate=True)
    full = mask.expand_as(x) if mask.dim() == 3 else mask
    assert torch.equal(out[full], x[full])
    assert torch.equal(out, m.complete(x, mask, seed=3, naive=True, approximate=True))


@pytest.mark.parametrize("kind", ["gated", "plain"])
@pytest.mark.parametrize("head", MIXTURES)
def test_pixelcnn_with_a_mixture_head_is_normalised_in_grey_and_colour(kind, head):
    for shape, levels in (((1, 2, 2), 4), ((3, 1, 2), 3)):
        m = randomized(zoo.create("pixelcnn", image_shape=list(shape), levels=levels, kind=kind, hidden=12,
                                  out_hidden=12, layers=2, head=head, mixtures=2), std=0.3)
        x = images(levels, shape)
        with torch.no_grad():
            assert m.log_prob(x).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5), shape
            tokens = m.tokenizer.encode(x)
            from_logits = m.logits_all(tokens).log_softmax(-1).gather(-1, tokens[..., None]).sum((1, 2))
            assert torch.allclose(m.log_prob(x), from_logits, atol=1e-4)


@pytest.mark.parametrize("kind,shape,classes", [("gated", (1, 4, 3), 3), ("gated", (3, 3, 3), 0),
                                                ("plain", (3, 3, 3), 0)])
def test_pixelcnn_logistic_cached_sampler_and_completion_match_naive(kind, shape, classes):
    m = randomized(zoo.create("pixelcnn", image_shape=list(shape), levels=256, kind=kind, hidden=12, out_hidden=24,
                              layers=3, head="logistic", mixtures=3, num_classes=classes), std=0.2)
    y = torch.tensor([0, 1, 2, 1]) if classes else None
    a = m.sample(4, seed=3, y=y)
    assert torch.equal(a, m.sample(4, seed=3, y=y, naive=True))
    assert torch.equal(m.sample(4, seed=3, y=y, temperature=0.7, top_k=20),
                       m.sample(4, seed=3, y=y, temperature=0.7, top_k=20, naive=True))
    x = torch.randint(0, 256, (3, *shape), generator=torch.Generator().manual_seed(0)).float() / 255
    out = m.complete(x, zoo.masks.top_half(x), seed=0, y=None if y is None else y[:3])
    assert torch.equal(out[:, :, : shape[1] // 2], x[:, :, : shape[1] // 2])
    assert torch.equal(out, m.complete(x, zoo.masks.top_half(x), seed=0, naive=True, y=None if y is None else y[:3]))


def test_mixture_heads_are_refused_for_binary_data_and_gauss_is_deprecated():
    for arch in ("made", "pixelcnn"):
        with pytest.raises(zoo.InputError, match="head='softmax'"):
            zoo.create(arch, image_shape=[1, 4, 4], levels=2, head="logistic")
        with pytest.raises(zoo.InputError, match="'softmax', 'logistic', 'gaussian'"):
            zoo.create(arch, image_shape=[1, 4, 4], levels=256, head="mixture")
    with pytest.warns(DeprecationWarning, match="head='gaussian'"):
        old = zoo.create("made", image_shape=[1, 2, 2], levels=4, hidden=[8], features=3, head="gauss")
    assert old.output_head.name == "softmax" and old.level_proj.shape == (3, 4)  # the old model, still built


# the shipped cards' log_prob (2 images from torch.rand with seed 0) and samples (3 with seed 0), recorded with
# the code before the heads existed: the softmax head must reproduce them exactly
SHIPPED = {
    "made-mnist-bin-agnostic": ([-17205.045, -17263.072], None),
}


# cards retrained since (issue 23): their head, and their figures on the same inputs, recorded when they shipped
RETRAINED = {
    "made-mnist": ("softmax", [-38746.629, -40291.664], 14087569),
    "made-mnist-bin": ("softmax", [-18639.451, -19403.234], 20367870),
    "made-cifar10-gray": ("gaussian", [-7443.384, -7846.219], 216324520),
    "pixelcnn-mnist": ("softmax", [-5677.96, -5675.265], 32010168),
    "pixelcnn-mnist-bin": ("softmax", [-870.546, -876.364], 17887230),
    "pixelcnn-cifar10-gray": ("softmax", [-7152.394, -7232.165], 197836611),
}


@pytest.mark.parametrize("model_id", sorted(RETRAINED))
def test_retrained_cards_are_unchanged(model_id):
    head, expected, checksum = RETRAINED[model_id]
    m = zoo.load(model_id)
    assert m.card.config["head"] == head and m.output_head.name == head
    x = torch.rand(6, *m.image_shape, generator=torch.Generator().manual_seed(0))[:2]
    x = (x > 0.5).float() if m.levels == 2 else (x * 255).round() / 255
    with torch.no_grad():
        assert m.log_prob(x).tolist() == pytest.approx(expected, rel=1e-6, abs=2e-3)  # float32 sums differ by CPU
    s = (m.sample(3, seed=0, preset=False) * 255).round().long().flatten(1)  # temperature 1, whatever the preset
    # the draws are pinned on the machine that shipped the weights; on another CPU the float32 sums of a 256-way
    # softmax can differ in the last bit, flip one draw and everything after it, so elsewhere a seeded draw must
    # only repeat itself
    if int((s * torch.arange(s.shape[1])).sum()) != checksum:
        again = (m.sample(3, seed=0, preset=False) * 255).round().long().flatten(1)
        assert torch.equal(s, again) and not torch.equal(s[0], s[1])


@pytest.mark.parametrize("model_id", sorted(SHIPPED))
def test_shipped_cards_use_the_softmax_head_and_are_unchanged(model_id):
    expected, checksum = SHIPPED[model_id]
    m = zoo.load(model_id)
    assert m.card.config["head"] == "softmax" and m.output_head.name == "softmax"
    x = torch.rand(6, *m.image_shape, generator=torch.Generator().manual_seed(0))[:2]
    x = (x > 0.5).float() if m.levels == 2 else (x * 255).round() / 255
    with torch.no_grad():
        assert m.log_prob(x).tolist() == pytest.approx(expected, rel=1e-6, abs=2e-3)  # float32 sums differ by CPU
    if checksum is not None:
        s = (m.sample(3, seed=0) * 255).round().long().flatten(1)
        assert int((s * torch.arange(s.shape[1])).sum()) == checksum


def test_zoo_info_names_the_head():
    from click.testing import CliRunner

    from zoo.cards import parse_card
    from zoo.cli import _head_text, main
    out = CliRunner().invoke(main, ["info", "pixelcnn-mnist"]).output
    assert "output head: softmax: 256 logits per sub-pixel" in out
    card = parse_card({"id": "x", "plugin": "pixelcnn", "architecture": "pixelcnn", "data": {"dataset": "cifar10"},
                       "config": {"image_shape": [3, 32, 32], "levels": 256, "hidden": 96, "head": "logistic"},
                       "weights": {"file": "x.safetensors", "sha256": "0" * 64}}, recipe=True)
    assert _head_text(card) == ("logistic: discretized logistic mixture, 10 components over 256 levels, G linear in "
                                "R and B in R, G within a pixel (100 parameters per pixel)")
