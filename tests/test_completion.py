"""Completion is exact or refused on every path (issue 26): the core asks `generation_steps(observed_mask)` and
checks its order before any stepper is built, so a refusal there holds on the cached path too, and the default
of a raster family accepts raster prefixes only (with a DeprecationWarning through 0.x for a family that keeps
it)."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import zoo
from zoo.completion import any_mask_models, first_out_of_order, is_prefix
from zoo.errors import InputError
from test_testing_kit import SigmoidBeliefNet


class KeepsTheDefault(zoo.Model):
    """A raster family as written for zoo 0.3: the default generation_steps and a stepper that never looks at
    the observed mask (the core's naive reference, re-implemented in raster order)."""

    def __init__(self, image_shape=(1, 2, 3)) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.tokenizer = zoo.PixelTokenizer(2, self.image_shape)
        T = self.tokenizer.num_tokens
        self.weight = nn.Parameter(torch.randn(T, T))
        self.bias = nn.Parameter(torch.randn(T))

    def logits_all(self, tokens, y=None):
        gap = self.bias + tokens.float() @ torch.tril(self.weight, -1).T
        return torch.stack([torch.zeros_like(gap), gap], -1)

    def stepper(self, n, *, y=None, observed_mask=None, generator=None, cfg=None):
        order = torch.arange(self.tokenizer.num_tokens)  # ignores observed_mask, as 0.3 let it
        return zoo.FullRecomputeStepper(self.logits_all, order, n, self.tokenizer.num_tokens, self.device)


def images(n: int = 4) -> torch.Tensor:
    return (torch.rand(n, 1, 2, 3, generator=torch.Generator().manual_seed(0)) > 0.5).float()


def complete(model, mask, naive=False, **kw):
    x = images()
    return x, model.complete(x, mask, seed=0, naive=naive, **kw)


def test_prefix_and_order_helpers():
    assert is_prefix(torch.tensor([True, True, False])) and is_prefix(torch.zeros(3, dtype=torch.bool))
    assert not is_prefix(torch.tensor([False, True, True]))
    steps = [torch.tensor([0]), torch.tensor([1, 2]), torch.tensor([3])]
    assert first_out_of_order(steps, torch.tensor([True, True, False, False])) is None  # a step may mix
    assert first_out_of_order(steps, torch.tensor([True, False, False, True])) == (1, 3)
    assert first_out_of_order(steps, torch.tensor([False, True, True, False])) == (0, 1)


@pytest.mark.parametrize("naive", [False, True])
def test_a_family_keeping_the_default_completes_raster_prefixes_as_before(naive):
    m = KeepsTheDefault()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # a prefix is no deprecated use
        x, done = complete(m, zoo.masks.top_half((1, 2, 3)), naive=naive)
    assert torch.equal(done[..., :1, :], x[..., :1, :])


@pytest.mark.parametrize("naive", [False, True])
def test_the_default_refuses_any_other_mask_with_a_deprecation_warning_then_the_error(naive):
    m = KeepsTheDefault()
    with pytest.warns(DeprecationWarning, match=r"KeepsTheDefault: keeps zoo's default generation_steps.*"
                                                r"override generation_steps"), \
            pytest.raises(InputError, match=r"raster order.*this mask is not one\. Models that complete any mask: "):
        complete(m, zoo.masks.bottom_half((1, 2, 3)), naive=naive)


def test_the_refusal_names_the_installed_models_that_complete_any_mask():
    ids = any_mask_models()
    assert "made-mnist-bin-agnostic" in ids and "made-mnist-bin" not in ids
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(InputError) as e:
            complete(KeepsTheDefault(), zoo.masks.left_half((1, 2, 3)))
    assert all(i in str(e.value) for i in ids)


@pytest.mark.parametrize("naive", [False, True])
def test_a_refusal_only_in_generation_steps_now_holds_on_the_cached_path(naive):
    """Issue 26, bug 2: the stepper never asks generation_steps; the core does, before building it."""
    m = SigmoidBeliefNet(bug="stepper-ignores-refusal")
    with pytest.raises(InputError, match="raster order"):
        complete(m, zoo.masks.bottom_half((1, 2, 3)), naive=naive)


@pytest.mark.parametrize("naive", [False, True])
def test_an_order_that_does_not_put_the_observed_tokens_first_is_refused_by_the_core(naive):
    """Issue 26, bug 3: zoo 0.3's default, written out in a family: it accepts the mask, the core does not."""
    m = SigmoidBeliefNet(bug="0.3-default-order")
    with pytest.raises(InputError, match=r"would generate token 0 \(hidden\) before token 3 \(observed\).*"
                                         r"not be the exact conditional"):
        complete(m, zoo.masks.bottom_half((1, 2, 3)), naive=naive)


def test_make_stepper_refuses_before_building_and_generate_tokens_too():
    m = SigmoidBeliefNet(bug="stepper-ignores-refusal")
    mask = torch.tensor([False, False, False, True, True, True])
    with pytest.raises(InputError, match="raster order"):
        m.make_stepper(2, observed_mask=mask)
    with pytest.raises(InputError, match="raster order"):
        m.generate_tokens(2, generator=zoo.make_generator(0), processor=zoo.LogitProcessor(),
                          observed=torch.zeros(2, 6, dtype=torch.long), observed_mask=mask.expand(2, 6))
    assert m.stepper(2, observed_mask=mask) is not None  # the family's own stepper, built directly, does not


def test_a_batch_with_one_mask_it_cannot_complete_is_refused_before_anything_is_drawn():
    m = SigmoidBeliefNet()
    x = images(2)
    mask = torch.stack([zoo.masks.top_half((1, 2, 3)), zoo.masks.bottom_half((1, 2, 3))])
    g = zoo.make_generator(0)
    state = g.get_state().clone()
    with pytest.raises(InputError, match="raster order"):
        m.complete(x, mask, generator=g)
    assert torch.equal(g.get_state(), state)


def test_families_that_document_an_approximation_say_so_and_others_do_not():
    var = zoo.create("var", **zoo.plugins.registry().architectures["var"][1].check_config())
    assert "zero-shot" in var.approximate_completion
    made = {o: zoo.create("made", image_shape=[1, 2, 2], hidden=[8], ordering=o) for o in ("natural", "agnostic")}
    assert made["natural"].approximate_completion == ""
    assert "another distribution" in made["agnostic"].approximate_completion
    assert zoo.create("pixelcnn", image_shape=[1, 2, 2], hidden=4, layers=1).approximate_completion == ""


# ---- a family's documented approximation: accepted by name, refused by name, warned about when unsaid ----------
@pytest.mark.parametrize("naive", [False, True])
def test_an_approximate_completion_is_accepted_refused_or_warned_as_the_caller_says(naive):
    from test_var import tiny_var
    m = tiny_var()
    x = m.sample(2, seed=0)
    mask = zoo.masks.top_half(x)  # the coarse scales straddle the cut: VAR's zero-shot scheme, not exact
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said: no warning
        done = m.complete(x, mask, seed=1, naive=naive, approximate=True)
    assert torch.equal(done[mask.expand_as(x)], x[mask.expand_as(x)])
    with pytest.raises(InputError, match=r"cannot complete this mask as the exact conditional.*approximate=True"):
        m.complete(x, mask, seed=1, naive=naive, approximate=False)
    with pytest.warns(FutureWarning, match=r"approximation \(the VAR paper's zero-shot scheme.*zoo 1\.0 refuses"):
        unsaid = m.complete(x, mask, seed=1, naive=naive)
    assert torch.equal(unsaid, done)  # the 0.x default is still the approximation, the same draw
    everything = torch.ones_like(mask)  # an exact completion needs no word, even with approximate=False
    assert torch.equal(m.complete(x, everything, seed=1, approximate=False), x)


def test_the_approximation_setting_is_checked_and_restored():
    from zoo.completion import _APPROXIMATE, approximation
    with pytest.raises(InputError, match="approximate must be True, False or None"):
        with approximation("yes"):
            pass
    with approximation(False):
        with approximation(True):
            assert _APPROXIMATE.get() is True
        assert _APPROXIMATE.get() is False
    assert _APPROXIMATE.get() is None


def test_var_models_are_named_where_a_mask_is_refused():
    assert {"var-mnist", "made-mnist-bin-agnostic"} <= set(any_mask_models())
