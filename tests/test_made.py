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
        out = m.complete(x, mask, seed=3)
        full = mask.expand_as(x) if mask.dim() == 3 else mask
        assert torch.equal(out[full], x[full])
        assert torch.equal(out, m.complete(x, mask, seed=3, naive=True))


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
    draws = m.complete(x.expand(4000, 1, 2, 2), mask, seed=0)
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
