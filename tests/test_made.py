"""MADE: exact normalisation, the autoregressive property, and fast == naive sampling."""
from __future__ import annotations

import itertools
import warnings

import pytest
import torch

import zoo

ALL_3x3 = torch.tensor(list(itertools.product([0, 1], repeat=9)), dtype=torch.float).view(-1, 1, 3, 3)


@pytest.mark.parametrize("ordering", ["natural", "random", "agnostic"])
@pytest.mark.parametrize("direct", [True, False])
def test_probabilities_sum_to_one_over_all_512_images(ordering, direct):
    m = zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[12, 12], num_masks=3, ordering=ordering,
                   direct=direct, seed=1)
    with torch.no_grad():
        for masks in (1, 2, 3):
            total = m.log_prob(ALL_3x3, masks=masks).double().exp().sum().item()
            assert total == pytest.approx(1.0, abs=1e-5), (ordering, masks)


def test_256_level_probabilities_sum_to_one():
    with pytest.warns(DeprecationWarning, match="head='gaussian'"):  # the old Gaussian-bump softmax still works
        m = zoo.create("made", image_shape=[1, 1, 3], levels=4, hidden=[6], features=3, num_masks=2, head="gauss",
                       direct_features=2, ordering="agnostic")
    grid = torch.tensor(list(itertools.product(range(4), repeat=3)), dtype=torch.float).view(-1, 1, 1, 3) / 3
    for p in m.parameters():
        torch.nn.init.normal_(p)
    with torch.no_grad():
        assert m.log_prob(grid).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    m = zoo.create("made", image_shape=[1, 1, 2], levels=4, hidden=[6], features=3, num_masks=2)
    grid = torch.tensor(list(itertools.product(range(4), repeat=2)), dtype=torch.float).view(-1, 1, 1, 2) / 3
    with torch.no_grad():
        assert m.log_prob(grid).exp().sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_output_d_has_zero_gradient_wrt_inputs_d_and_later(k):
    m = zoo.create("made", image_shape=[1, 4, 4], levels=2, hidden=[20, 20], num_masks=3, ordering="random", seed=2)
    c = m.connectivity(k)
    x = torch.rand(1, 16, requires_grad=True)
    m.apply_masks(c)
    h = x
    for layer in m.layers:
        h = torch.relu(layer(h))
    out = m.out(h) + m.skip(x)
    rank = c.input_degree - 1
    for d in range(16):
        (g,) = torch.autograd.grad(out[0, d], x, retain_graph=True)
        later = rank >= rank[d]
        assert torch.all(g[0, later] == 0), f"output {d} sees inputs at or after its rank"
    # and the masks are not vacuous: the last output in the order depends on something
    last = int(c.order[-1])
    (g,) = torch.autograd.grad(out[0, last], x)
    assert g.abs().sum() > 0


@pytest.mark.parametrize("levels,ordering,extra", [(2, "natural", {}), (2, "random", {}), (256, "agnostic", {}),
                                                  (256, "random", dict(head="gaussian")),
                                                  (256, "agnostic", dict(head="gauss", direct_features=2))])
def test_fast_sampler_draws_the_same_images_as_naive(levels, ordering, extra):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # head="gauss"
        m = zoo.create("made", image_shape=[1, 5, 5], levels=levels, hidden=[32, 24], num_masks=3,
                       ordering=ordering, features=4, seed=4, **extra)
    for p in m.parameters():  # a trained-looking model: non-trivial weights
        torch.nn.init.normal_(p, std=0.5)
    fast = m.sample(12, seed=7)
    naive = m.sample(12, seed=7, naive=True)
    assert torch.equal(fast, naive)
    assert not torch.equal(fast, m.sample(12, seed=8))
    hot = m.sample(12, seed=7, temperature=0.5, top_k=2)
    assert torch.equal(hot, m.sample(12, seed=7, temperature=0.5, top_k=2, naive=True))


def test_completion_keeps_observed_pixels_and_matches_naive():
    m = zoo.create("made", image_shape=[1, 4, 4], levels=256, hidden=[32], num_masks=2, ordering="agnostic",
                   features=4, seed=5)
    x = torch.randint(0, 256, (6, 1, 4, 4)).float() / 255
    for mask in (zoo.masks.top_half(x), zoo.masks.random(x, 0.4, seed=1), zoo.masks.box(x, 1, 1, 2, 2)):
        out = m.complete(x, mask, seed=3, approximate=True)
        full = mask.expand_as(x) if mask.dim() == 3 else mask
        assert torch.equal(out[full], x[full])
        assert torch.equal(out, m.complete(x, mask, seed=3, naive=True, approximate=True))


def test_conditioning_is_exact_for_an_arbitrary_mask():
    """p(missing | observed) from the completion order equals the ratio of joint probabilities."""
    m = zoo.create("made", image_shape=[1, 2, 2], levels=2, hidden=[16], num_masks=1, ordering="agnostic", seed=6)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=1.0)
    mask = torch.tensor([[[False, True], [False, True]]])  # observe the right column
    x = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    order = m.completion_order(mask.flatten())
    assert order[:2].tolist() == [1, 3]
    c = m.connectivity(0, order=order)
    images = torch.tensor(list(itertools.product([0, 1], repeat=4)), dtype=torch.float).view(-1, 1, 2, 2)
    with torch.no_grad():
        logp = m._log_prob_one(m.tokenizer.encode(images), c)
    assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    # draw many completions; compare frequencies with the model's conditional
    draws = m.complete(x.expand(4000, 1, 2, 2), mask, seed=0, approximate=True)
    keep = (images[:, 0, 0, 1] == 1) & (images[:, 0, 1, 1] == 0)
    cond = logp[keep].exp() / logp[keep].exp().sum()
    for img, p in zip(images[keep], cond):
        freq = (draws == img).flatten(1).all(1).float().mean().item()
        assert freq == pytest.approx(p.item(), abs=0.03)


def test_raster_model_refuses_masks_it_cannot_condition_on():
    m = zoo.create("made", image_shape=[1, 4, 4], levels=2, hidden=[8], ordering="natural")
    x = torch.zeros(2, 1, 4, 4)
    m.complete(x, zoo.masks.top_half(x), seed=0)
    m.complete(x, zoo.masks.first_k(x, 5), seed=0)
    with pytest.raises(zoo.InputError, match="agnostic"):
        m.complete(x, zoo.masks.bottom_half(x), seed=0)


def test_ensemble_averages_probabilities_not_logits(tiny_made):
    x = ALL_3x3[:20]
    with torch.no_grad():
        per = torch.stack([tiny_made.log_prob(x, masks=1)] + [
            tiny_made._log_prob_one(tiny_made.tokenizer.encode(x), tiny_made.connectivity(1))])
        expected = torch.logsumexp(per, 0) - torch.log(torch.tensor(2.0))
        assert torch.allclose(tiny_made.log_prob(x, masks=2), expected, atol=1e-5)


def test_bad_images_are_refused(tiny_made):
    with pytest.raises(zoo.InputError, match="shape"):
        tiny_made.log_prob(torch.zeros(2, 1, 4, 4))
    with pytest.raises(zoo.InputError, match=r"\[0, 1\]"):
        tiny_made.log_prob(torch.full((2, 1, 3, 3), 2.0))
    with pytest.raises(zoo.InputError, match="binary"):
        tiny_made.log_prob(torch.full((2, 1, 3, 3), 0.5))
    with pytest.raises(zoo.InputError, match="NaN"):
        tiny_made.log_prob(torch.full((2, 1, 3, 3), float("nan")))
    with pytest.raises(zoo.InputError, match="positive integer"):
        tiny_made.sample(0)
    with pytest.raises(zoo.InputError, match="mask"):
        tiny_made.complete(torch.zeros(2, 1, 3, 3), torch.ones(2, 2, dtype=torch.bool))


def _chi2_and_tv(draws: torch.Tensor, images: torch.Tensor, probs: torch.Tensor) -> tuple[float, float]:
    """Pearson chi-square and total variation of completions `draws` against the exact probabilities of `images`."""
    codes = (draws.flatten(1) * (2 ** torch.arange(draws[0].numel()))).sum(1).long()
    img_codes = (images.flatten(1) * (2 ** torch.arange(images[0].numel()))).sum(1).long()
    counts = torch.stack([(codes == c).sum() for c in img_codes]).double()
    assert counts.sum() == len(draws), "a completion outside the enumerated set"
    expected = probs.double() * len(draws)
    return float(((counts - expected) ** 2 / expected).sum()), float((counts / len(draws) - probs).abs().sum() / 2)


@pytest.mark.parametrize("ordering,mask", [("natural", "first4"), ("agnostic", "scattered")])
def test_ensemble_completion_is_the_exact_conditional_of_the_mixture(ordering, mask):
    """4 masks, 3x3 binary, 4 observed pixels: completions follow sum_k p(k | observed) p_k(rest | observed),
    the conditional of the ensemble (1/4) sum_k p_k, not a uniform pick of the mask (chi-square, 31 dof)."""
    m = zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[16, 16], num_masks=4, ordering=ordering,
                   seed=3)
    torch.manual_seed(0)
    for p in m.parameters():
        torch.nn.init.normal_(p, std=1.5)  # masks that disagree strongly
    obs = torch.zeros(3, 3, dtype=torch.bool)
    if mask == "first4":
        obs.view(-1)[:4] = True
    else:
        obs.view(-1)[torch.tensor([8, 1, 4, 6])] = True
    x = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1, 1], dtype=torch.float).view(1, 1, 3, 3)
    keep = (ALL_3x3[:, 0][:, obs] == x[0, 0][obs]).all(1)
    images = ALL_3x3[keep]                                    # the 32 completions of x
    with torch.no_grad():
        if mask == "first4":
            joint = m.log_prob(images, masks=4)               # the mixture log_prob scores
        else:                                                 # the mixture in an observed-first order
            order = m.completion_order(obs.flatten())
            per = torch.stack([m._log_prob_one(m.tokenizer.encode(images), m.connectivity(k, order=order))
                               for k in range(4)])
            joint = torch.logsumexp(per, 0)
    exact = (joint - torch.logsumexp(joint, 0)).exp()
    draws = m.complete(x.expand(20000, 1, 3, 3), obs, seed=0, approximate=True)
    chi2, tv = _chi2_and_tv(draws, images, exact)
    assert chi2 < 70 and tv < 0.02, (chi2, tv)               # 31 dof: p = 0.001 at chi2 = 61
    # the naive sampler draws the same completions
    assert torch.equal(m.complete(x.expand(50, 1, 3, 3), obs, seed=1, approximate=True),
                       m.complete(x.expand(50, 1, 3, 3), obs, seed=1, naive=True, approximate=True))


def test_ensemble_sampling_matches_naive_across_several_blocks(monkeypatch):
    """Every image through its own mask, in blocks of steps: the incremental sampler equals the naive one."""
    from zoo_made.model import IncrementalStepper
    monkeypatch.setattr(IncrementalStepper, "block", 3)
    for levels, extra in ((2, {}), (256, dict(features=3, direct_features=2))):
        m = zoo.create("made", image_shape=[1, 4, 5], levels=levels, hidden=[24, 16, 12], num_masks=5, seed=9,
                       **extra)
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.7)
        fast = m.sample(40, seed=2)
        assert torch.equal(fast, m.sample(40, seed=2, naive=True))
        x = m.sample(6, seed=5)
        first = zoo.masks.first_k(x, 7)
        assert torch.equal(m.complete(x, first, seed=4), m.complete(x, first, seed=4, naive=True))


def test_naive_sampler_multiplies_each_masks_weights_once():
    m = zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[8], num_masks=3, seed=1)
    m.sample(30, seed=0, naive=True)            # 30 images: every mask is drawn
    cache = m.__dict__["_masked_cache"]
    assert len(cache) == 3                       # one entry per mask, reused at every step
    with torch.no_grad():
        m.out.bias.add_(1.0)                     # new weights: new products, never stale ones
    m.sample(30, seed=0, naive=True)
    assert all(key[1] == m._weights_key() for key in list(cache)[-3:])


def test_sampling_caches_do_not_outlive_a_fused_optimizer_step():
    """Fused Adam updates weights without bumping their version counters: the caches drop on train()."""
    m = zoo.create("made", image_shape=[1, 3, 3], levels=2, hidden=[8], num_masks=2, seed=1)
    x = ALL_3x3[:16]
    m.sample(8, seed=0)
    m.sample(8, seed=0, naive=True)
    m.train()
    opt = torch.optim.Adam(m.parameters(), lr=0.1, fused=True)
    m.training_loss(x).backward()
    opt.step()
    m.eval()
    tokens = m.tokenizer.encode(x)
    with torch.no_grad():
        cached = m.logits_all(tokens)
    assert torch.allclose(cached, m.logits_all(tokens).detach())   # with grad: fresh products
    assert torch.equal(m.sample(8, seed=0), m.sample(8, seed=0, naive=True))


@pytest.mark.parametrize("want", ["all", "features"])
def test_chunked_factorized_softmax_matches_the_whole_logits(monkeypatch, want):
    """zoo_made.factorized: log p and every gradient as the whole (N, P, L) logits give them, over several chunks
    (one shorter than the rest), in float64 so the comparison is tight."""
    import zoo_made.factorized as fz
    monkeypatch.setattr(fz, "CHUNK_FLOATS", 3 * 5 * 7)  # N x 3 pixels x L per chunk: 7 pixels -> 3 + 3 + 1
    g = torch.Generator().manual_seed(0)
    n, p, f_dim, levels = 5, 7, 3, 7
    f = torch.randn(n, p, f_dim, generator=g, dtype=torch.float64)
    proj = torch.randn(f_dim, levels, generator=g, dtype=torch.float64)
    bias = torch.randn(p, levels, generator=g, dtype=torch.float64)
    values = torch.randint(levels, (n, p), generator=g)
    weights = torch.randn(n, p, generator=g, dtype=torch.float64)
    results = []
    for fn in (fz.reference_log_prob, fz.factorized_log_prob):
        ins = [t.clone().requires_grad_(want == "all" or i == 0) for i, t in enumerate((f, proj, bias))]
        out = fn(*ins, values)
        (out * weights).sum().backward()
        results.append([out.detach()] + [t.grad for t in ins])
    assert len(fz._chunks(n, p, levels)) == 3
    for a, b in zip(*results):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: fz.factorized_log_prob(t, proj, bias, values[:2]),
                                    (f[:2].clone().requires_grad_(),))


def test_a_softmax_made_trains_and_scores_through_the_chunked_path(monkeypatch):
    """The model's log_prob and its training gradients are those of the whole logits (the path kept as reference)."""
    import zoo_made.factorized as fz
    import zoo_made.model as made_model
    m = zoo.create("made", image_shape=[1, 4, 4], levels=16, hidden=[24], features=3, direct_features=2)
    x = torch.randint(0, 16, (6, 1, 4, 4), generator=torch.Generator().manual_seed(1)).float() / 15
    results = []
    for fn in (fz.reference_log_prob, fz.factorized_log_prob):
        monkeypatch.setattr(made_model, "factorized_log_prob", fn)
        m.zero_grad()
        m.training_loss(x).backward()
        with torch.no_grad():
            lp = m.log_prob(x)
        results.append([lp] + [p.grad.clone() for p in m.parameters()])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
