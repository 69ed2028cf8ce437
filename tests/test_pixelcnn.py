"""PixelCNN: exact normalisation, mask A/B causality, no blind spot in the gated stack, cached == naive."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

import zoo

ROOT = Path(__file__).resolve().parent.parent

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


@pytest.mark.parametrize("kind,levels,classes,kernel", [("gated", 2, 0, 3), ("gated", 256, 3, 3), ("plain", 2, 0, 3),
                                                        ("plain", 256, 0, 3), ("gated", 16, 0, 5)])
def test_cached_sampler_matches_naive(kind, levels, classes, kernel):
    m = randomized(zoo.create("pixelcnn", image_shape=[1, 6, 5], levels=levels, kind=kind, hidden=8, layers=3,
                              num_classes=classes, kernel=kernel), std=0.2)
    y = torch.tensor([0, 1, 2, 1]) if classes else None
    a = m.sample(4, seed=3, y=y)
    b = m.sample(4, seed=3, y=y, naive=True)
    assert torch.equal(a, b)
    assert torch.equal(m.sample(4, seed=3, y=y, temperature=0.7, top_k=3),
                       m.sample(4, seed=3, y=y, temperature=0.7, top_k=3, naive=True))


@pytest.mark.parametrize("kind", ["gated", "plain"])
def test_completion_of_raster_prefixes_only(kind):
    """Cached completion equals naive: the sampler skips the logits of observed pixels, so the cached stepper
    must still fill their activations (and the gated vertical stack's rows) for the pixels after them."""
    m = randomized(zoo.create("pixelcnn", image_shape=[1, 4, 4], levels=4, kind=kind, hidden=12, layers=3))
    x = torch.randint(0, 4, (3, 1, 4, 4), generator=torch.Generator().manual_seed(0)).float() / 3
    out = m.complete(x, zoo.masks.top_half(x), seed=0)
    assert torch.equal(out[:, :, :2], x[:, :, :2])
    assert torch.equal(out, m.complete(x, zoo.masks.top_half(x), seed=0, naive=True))
    assert torch.equal(m.complete(x, zoo.masks.first_k(x, 7), seed=0),
                       m.complete(x, zoo.masks.first_k(x, 7), seed=0, naive=True))
    with pytest.raises(zoo.InputError, match="raster prefix"):
        m.complete(x, zoo.masks.bottom_half(x), seed=0)


def test_bad_config_and_classes():
    with pytest.raises(zoo.InputError, match="grayscale"):
        zoo.create("pixelcnn", image_shape=[2, 8, 8])
    with pytest.raises(zoo.InputError, match=r"hidden \(8\) must be a positive multiple of 3"):
        zoo.create("pixelcnn", image_shape=[3, 8, 8], hidden=8)
    with pytest.raises(zoo.InputError, match=r"hidden / 2 \(4\)"):
        zoo.create("pixelcnn", image_shape=[3, 8, 8], kind="plain", hidden=9, out_hidden=6)
    with pytest.raises(zoo.InputError, match="kind"):
        zoo.create("pixelcnn", kind="wavenet")
    m = zoo.create("pixelcnn", image_shape=[1, 4, 4], hidden=8, layers=2)
    with pytest.raises(zoo.InputError, match="not class-conditional"):
        m.sample(2, y=1)
    c = zoo.create("pixelcnn", image_shape=[1, 4, 4], hidden=8, layers=2, num_classes=10)
    with pytest.raises(zoo.InputError, match=r"\[0, 9\]"):
        c.sample(2, y=10)


# ---- colour: R -> G -> B within a pixel ----------------------------------------------------------------------

def colour(kind: str, shape=(3, 3, 3), levels: int = 4, std: float = 0.3, **kw):
    # out_hidden 24: with 4 output units per colour group, ReLU often silences a group for every input
    return randomized(zoo.create("pixelcnn", image_shape=list(shape), levels=levels, kind=kind, hidden=12,
                                 out_hidden=24, **{"layers": 3, **kw}), std=std)


@pytest.mark.parametrize("kind", ["gated", "plain"])
def test_colour_probabilities_sum_to_one_over_all_64_images(kind):
    m = colour(kind, shape=(3, 1, 2), levels=2)
    every = torch.tensor(list(itertools.product([0, 1], repeat=6)), dtype=torch.float).view(-1, 3, 1, 2)
    with torch.no_grad():
        assert m.log_prob(every).double().exp().sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kind,head", [("gated", "softmax"), ("plain", "softmax"), ("gated", "logistic"),
                                       ("plain", "gaussian")])
def test_colour_sub_pixel_k_leaves_logits_at_or_before_it_unchanged(kind, head):
    """In generation order (pixel by pixel, R, G, B within a pixel): changing the k-th sub-pixel changes no
    logit at or before it; and within a pixel G sees R, B sees R and G (for every output head)."""
    m = colour(kind, head=head, **({} if head == "softmax" else {"mixtures": 2}))
    order = m.generation_order
    assert order[:6].tolist() == [0, 9, 18, 1, 10, 19]  # tokens are laid out (C, H, W)
    next_sees = torch.zeros(27, dtype=torch.bool)
    for seed in range(4):  # a ReLU can hide a change for one image, not for all of them
        tokens = torch.randint(0, 4, (1, 27), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            base = m.logits_all(tokens)
            for k in range(27):
                changed = tokens.clone()
                changed[0, order[k]] = (changed[0, order[k]] + 1) % 4
                diff = (m.logits_all(changed) - base).abs().amax(-1)[0][order]
                assert diff[: k + 1].max() == 0, f"sub-pixel {k} leaks into logits at or before it"
                next_sees[k] |= bool(k < 26 and diff[k + 1] > 0)
    within = [k for k in range(27) if k % 3 < 2]
    assert next_sees[within].all(), f"the next channel does not see sub-pixels {(~next_sees).nonzero().tolist()}"


def test_colour_gated_stack_sees_every_earlier_sub_pixel():
    """No blind spot in colour either: each sub-pixel's logits depend on every earlier sub-pixel in generation
    order (above-right pixels and the pixel's own earlier channels included) and on nothing after."""
    m = colour("gated", shape=(3, 4, 4), layers=4)
    x = torch.zeros(1, 3, 4, 4, requires_grad=True)
    logits = m.out2(torch.relu(m.out1(m.features(x)))).view(1, 3, 4, 4, 4)  # (N, C, levels, H, W)
    order = m.generation_order
    for k in range(48):
        c, p = divmod(int(order[k]), 16)
        (g,) = torch.autograd.grad(logits[0, c, :, p // 4, p % 4].sum(), x, retain_graph=True)
        seen = (g[0].flatten().abs() > 0)[order]
        assert seen[:k].all(), f"sub-pixel {k} does not see {(~seen[:k]).nonzero().flatten().tolist()}"
        assert not seen[k:].any()


@pytest.mark.parametrize("kind,levels,classes", [("gated", 4, 3), ("plain", 256, 0)])
def test_colour_cached_sampler_matches_naive(kind, levels, classes):
    m = colour(kind, shape=(3, 5, 4), levels=levels, std=0.2, num_classes=classes)
    y = torch.tensor([0, 1, 2, 1]) if classes else None
    a = m.sample(4, seed=3, y=y)
    assert a.shape == (4, 3, 5, 4)
    assert torch.equal(a, m.sample(4, seed=3, y=y, naive=True))
    assert torch.equal(m.sample(4, seed=3, y=y, temperature=0.7, top_k=3),
                       m.sample(4, seed=3, y=y, temperature=0.7, top_k=3, naive=True))


def test_colour_completion_keeps_every_channel_of_the_observed_pixels():
    m = colour("gated", shape=(3, 4, 4))
    x = torch.randint(0, 4, (3, 3, 4, 4)).float() / 3
    out = m.complete(x, zoo.masks.top_half(x), seed=0)
    assert torch.equal(out[:, :, :2], x[:, :, :2])
    assert torch.equal(out, m.complete(x, zoo.masks.top_half(x), seed=0, naive=True))
    assert torch.equal(m.complete(x, zoo.masks.first_k(x, 5), seed=0),
                       m.complete(x, zoo.masks.first_k(x, 5), seed=0, naive=True))
    only_red = torch.zeros_like(x, dtype=torch.bool)
    only_red[:, 0] = True  # every R, no G or B: not a prefix of the generation order
    with pytest.raises(zoo.InputError, match="raster prefix"):
        m.complete(x, only_red, seed=0)


def test_receptive_field_by_gradient_shipped_cards_and_gpu_recipes():
    """The receptive field, found by a gradient: 8 gated layers of 3x3 (the first cards) see 241 of the
    bottom-centre pixel's 770 predecessors (11 rows up: strokes break), of 5x5 518, the GPU recipes' 15 layers of
    5x5 all of them; a pixel never sees itself or later pixels (in colour: no later pixel; its own earlier colours
    through the channel masks)."""
    from zoo.cards import read_card
    torch.manual_seed(0)
    for kernel, seen in ((3, 241), (5, 518)):
        m = zoo.create("pixelcnn", image_shape=[1, 28, 28], levels=2, hidden=32, layers=8, kernel=kernel)
        assert m.receptive_field() == (seen, 770)
    for name in ("pixelcnn-mnist-bin-gpu", "pixelcnn-cifar10-gray-gpu"):
        card = read_card(ROOT / "cards" / "pixelcnn" / "recipes" / f"{name}.toml", recipe=True)
        seen, before = zoo.create("pixelcnn", **card.config).receptive_field()
        assert seen == before
    tiny = zoo.create("pixelcnn", image_shape=[1, 16, 16], levels=2, hidden=8, layers=2, kernel=3)
    assert tiny.receptive_field(0, 0) == (0, 0) and tiny.receptive_field(0, 3) == (3, 3)
    seen, before = tiny.receptive_field()  # a 7x7 and one 3x3 reach a few rows up, not to the top
    assert 0 < seen < before
    torch.manual_seed(0)  # a tiny random model: a seeded one (with few units, ReLUs can be off for every input)
    colour = zoo.create("pixelcnn", image_shape=[3, 6, 6], levels=4, hidden=12, out_hidden=24, layers=2)
    seen, before = colour.receptive_field(5, 5)  # raises if a later pixel reached it
    assert 0 < seen <= before == 35


@pytest.mark.parametrize("levels,classes,new", [(2, 0, 5), (256, 3, 7), (16, 0, 3)])
def test_widened_kernels_compute_the_same_function_and_can_see_further(levels, classes, new):
    from zoo_pixelcnn import widen_kernels
    cfg = dict(image_shape=[1, 12, 12], levels=levels, hidden=8, layers=3, num_classes=classes)
    small = randomized(zoo.create("pixelcnn", kernel=3, **cfg), std=0.2)
    wide = zoo.create("pixelcnn", kernel=new, **cfg)
    wide.load_state_dict(widen_kernels(small.state_dict(), new))  # strict: every shape is the wide model's
    x = torch.randint(0, levels, (5, 1, 12, 12), generator=torch.Generator().manual_seed(1)).float() / (levels - 1)
    y = torch.tensor([0, 1, 2, 1, 0]) if classes else None
    with torch.no_grad():
        assert torch.allclose(wide.log_prob(x, y=y), small.log_prob(x, y=y), rtol=1e-5, atol=1e-4)
    if new > 3:  # the new taps are parameters like any other: once they move, the field grows and stays causal
        before = small.receptive_field()
        with torch.no_grad():
            for name, p in wide.named_parameters():
                if name.endswith(("v.weight", "hconv.weight")):
                    p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(2)))
        assert wide.receptive_field()[0] > before[0]


def test_widen_kernels_refuses_to_shrink():
    from zoo_pixelcnn import widen_kernels
    state = zoo.create("pixelcnn", image_shape=[1, 8, 8], levels=2, hidden=8, layers=2, kernel=5).state_dict()
    with pytest.raises(zoo.InputError, match="only grows kernels"):
        widen_kernels(state, 3)


def test_widen_script_writes_a_folder_that_loads_with_the_same_likelihoods(tmp_path):
    import dataclasses
    import importlib.util

    from zoo.cards import write_card
    from zoo.weights import save_weights
    spec = importlib.util.spec_from_file_location("widen_pixelcnn", ROOT / "scripts" / "widen_pixelcnn.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    config = dict(image_shape=[1, 10, 10], levels=256, head="softmax", kind="gated", hidden=8, layers=3, kernel=3)
    small = randomized(zoo.create("pixelcnn", **config), std=0.1)
    src = tmp_path / "small"
    card = zoo.get_card("pixelcnn-mnist")
    sha = save_weights(small.state_dict(), src / card.weights_file)
    write_card(dataclasses.replace(card, config=config, sha256=sha, params=None, metrics=[], path=None),
               src / "card.toml")
    print(script.widen(str(src), 5, tmp_path / "wide"))
    wide = zoo.load(str(tmp_path / "wide"))
    assert zoo.cards.read_card(tmp_path / "wide" / "card.toml").config["kernel"] == 5
    x = torch.randint(0, 256, (4, 1, 10, 10), generator=torch.Generator().manual_seed(0)).float() / 255
    with torch.no_grad():
        assert torch.allclose(wide.log_prob(x), small.log_prob(x), atol=1e-3)
    assert wide.gated[1].v.weight.shape[-2:] == (3, 5)
