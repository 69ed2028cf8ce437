"""PixelCNN: exact normalisation, mask A/B causality, no blind spot in the gated stack, cached == naive."""
from __future__ import annotations

import itertools

import pytest
import torch

import zoo

ALL_3x3 = torch.tensor(list(itertools.product([0, 1], repeat=9)), dtype=torch.float).view(-1, 1, 3, 3)


def randomized(model, std=0.3):
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=std)
    return model


@pytest.mark.parametrize("kind", ["gated", "plain"])
def test_probabilities_sum_to_one_over_all_512_images(kind):
    m = randomized(zoo.create("pixelcnn", image_shape=[1, 3, 3], levels=2, kind=kind, hidden=8, layers=2))
    with torch.no_grad():
        assert m.log_prob(ALL_3x3).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind", ["gated", "plain"])
def test_changing_pixel_j_leaves_logits_at_or_before_j_unchanged(kind):
    m = randomized(zoo.create("pixelcnn", image_shape=[1, 5, 5], levels=4, kind=kind, hidden=8, layers=3))
    tokens = torch.randint(0, 4, (1, 25), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base = m.logits_all(tokens)
        for j in range(25):
            changed = tokens.clone()
            changed[0, j] = (changed[0, j] + 1) % 4
            diff = (m.logits_all(changed) - base).abs().amax(-1)[0]
            assert diff[: j + 1].max() == 0, f"pixel {j} leaks into logits at or before it"
            if j < 24:
                assert diff[j + 1:].max() > 0  # and the future does see it


def test_gated_stack_has_no_blind_spot():
    """Every pixel before (i, j) in raster order, above-right ones included, influences (i, j)'s logits."""
    m = randomized(zoo.create("pixelcnn", image_shape=[1, 5, 5], levels=2, kind="gated", hidden=8, layers=4))
    x = torch.zeros(1, 1, 5, 5, requires_grad=True)
    logits = m.out2(torch.relu(m.out1(m.features(x))))
    for p in range(25):
        i, j = divmod(p, 5)
        (g,) = torch.autograd.grad(logits[0, :, i, j].sum(), x, retain_graph=True)
        seen = g[0, 0].flatten().abs() > 0
        assert seen[:p].all(), f"pixel ({i},{j}) does not see {(~seen[:p]).nonzero().flatten().tolist()}"
        assert not seen[p:].any()


def test_plain_pixelcnn_has_the_blind_spot_the_gated_one_removes():
    m = randomized(zoo.create("pixelcnn", image_shape=[1, 9, 9], levels=2, kind="plain", hidden=8, layers=2))
    x = torch.zeros(1, 1, 9, 9, requires_grad=True)
    logits = m.out2(torch.relu(m.out1(m.features(x))))
    (g,) = torch.autograd.grad(logits[0, :, 8, 0].sum(), x)
    assert g[0, 0, 0, 8] == 0  # far above-right of (8, 0): invisible to mask A/B stacks


@pytest.mark.parametrize("kind,levels,classes", [("gated", 2, 0), ("gated", 256, 3), ("plain", 2, 0),
                                                 ("plain", 256, 0)])
def test_cached_sampler_matches_naive(kind, levels, classes):
    m = randomized(zoo.create("pixelcnn", image_shape=[1, 6, 5], levels=levels, kind=kind, hidden=8, layers=3,
                              num_classes=classes), std=0.2)
    y = torch.tensor([0, 1, 2, 1]) if classes else None
    a = m.sample(4, seed=3, y=y)
    b = m.sample(4, seed=3, y=y, naive=True)
    assert torch.equal(a, b)
    assert torch.equal(m.sample(4, seed=3, y=y, temperature=0.7, top_k=3),
                       m.sample(4, seed=3, y=y, temperature=0.7, top_k=3, naive=True))


def test_completion_of_raster_prefixes_only():
    m = randomized(zoo.create("pixelcnn", image_shape=[1, 4, 4], levels=2, hidden=8, layers=2))
    x = (torch.rand(3, 1, 4, 4) > 0.5).float()
    out = m.complete(x, zoo.masks.top_half(x), seed=0)
    assert torch.equal(out[:, :, :2], x[:, :, :2])
    assert torch.equal(out, m.complete(x, zoo.masks.top_half(x), seed=0, naive=True))
    m.complete(x, zoo.masks.first_k(x, 7), seed=0)
    with pytest.raises(zoo.InputError, match="raster prefix"):
        m.complete(x, zoo.masks.bottom_half(x), seed=0)


def test_bad_config_and_classes():
    with pytest.raises(zoo.InputError, match="grayscale"):
        zoo.create("pixelcnn", image_shape=[3, 8, 8])
    with pytest.raises(zoo.InputError, match="kind"):
        zoo.create("pixelcnn", kind="wavenet")
    m = zoo.create("pixelcnn", image_shape=[1, 4, 4], hidden=8, layers=2)
    with pytest.raises(zoo.InputError, match="not class-conditional"):
        m.sample(2, y=1)
    c = zoo.create("pixelcnn", image_shape=[1, 4, 4], hidden=8, layers=2, num_classes=10)
    with pytest.raises(zoo.InputError, match=r"\[0, 9\]"):
        c.sample(2, y=10)
