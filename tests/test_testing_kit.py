"""The test kit kept honest: zoo.testing.check_family must catch each deliberately broken variant of a small
family, naming the check that failed, and pass the family itself.

The family is a fully visible sigmoid belief net, as a third party writes one from CONTRIBUTING.md: the logit of
pixel t is b_t + sum_{s<t} W_ts x_s, with a zero-initialised bias and a cached stepper that keeps each pixel's
running activation. Each `bug` is one mistake a family can make (issue 26).
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import zoo
from zoo.testing import ContractError, check_family, randomise

CONFIG = {"image_shape": [1, 2, 3]}
BUGS = {
    # bug -> the check that must name it
    "drop-bias": "cached == naive",              # the cached stepper forgets the bias (zero at initialisation)
    "drop-learned-buffer": "cached == naive",    # ... or forgets an offset kept in a buffer marked as learned
    "stepper-ignores-refusal": "non-prefix completion",  # a refusal only in generation_steps, not in stepper
    "0.3-default-order": "non-prefix completion",  # zoo 0.3's default generation_steps: any mask, raster order
    "any-order-claimed": "non-prefix completion",  # observed-first order the raster conditionals do not follow
    "self-sight": "normalisation",               # pixel t's conditional reads pixel t
    "next-pixel-sight": "normalisation",         # pixel t's conditional reads pixel t + 1
    "off-by-one": "cached == naive",             # step t reads the activation of pixel t - 1
    "wrong-sign-gaps": "cached == naive",        # logit_gaps gives l0 - l1
    "drift": "cached == naive",                  # the cached logit of level 1 is 1e-3 off, at a non-zero bias
}


class SigmoidBeliefNet(zoo.Model):
    """p(x_t = 1 | x_<t) = sigmoid(b_t + c_t + sum_{s<t} W_ts x_s) over binary pixels in raster order; c is a
    learned offset kept in a buffer (as a running statistic would be), zero until the kit randomises it."""

    learned_buffers = ("offset",)

    @classmethod
    def check_config(cls) -> dict:
        return dict(CONFIG)

    def __init__(self, image_shape=(1, 2, 3), bug: str = "") -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        self.tokenizer = zoo.PixelTokenizer(2, self.image_shape)
        self.bug = bug
        T = self.tokenizer.num_tokens
        self.weight = nn.Parameter(torch.randn(T, T) * 0.1)
        self.bias = nn.Parameter(torch.zeros(T))
        self.register_buffer("offset", torch.zeros(T))
        sees = torch.tril(torch.ones(T, T), diagonal=-1)  # row t: the pixels before t
        if bug == "self-sight":
            sees += torch.eye(T)
        elif bug == "next-pixel-sight":
            sees += torch.diag(torch.ones(T - 1), 1)
        self.register_buffer("sees", sees, persistent=False)  # structure, not learned: the kit leaves it

    def logits_all(self, tokens: torch.Tensor, y=None) -> torch.Tensor:
        gap = self.bias + self.offset + tokens.float() @ (self.weight * self.sees).T
        return torch.stack([torch.zeros_like(gap), gap], -1)

    def generation_steps(self, observed_mask=None):
        if self.bug == "0.3-default-order":
            return [torch.tensor([t]) for t in range(self.tokenizer.num_tokens)]
        if self.bug == "any-order-claimed" and observed_mask is not None:
            seen = observed_mask.reshape(-1).bool().cpu()
            order = torch.arange(self.tokenizer.num_tokens)
            return list(torch.cat([order[seen], order[~seen]]).reshape(-1, 1))
        return super().generation_steps(observed_mask)  # raster prefixes only

    def stepper(self, n, *, y=None, observed_mask=None, generator=None, cfg=None):
        if self.bug == "any-order-claimed":
            return self.reference_stepper(n, observed_mask=observed_mask)
        if self.bug != "stepper-ignores-refusal":
            self.generation_steps(observed_mask)  # refuses what the naive reference refuses
        return BeliefStepper(self, n)


class BeliefStepper:
    """The cached pass: each pixel's activation, updated by one column of W per drawn pixel."""

    def __init__(self, m: SigmoidBeliefNet, n: int) -> None:
        self.bug, self.num_steps = m.bug, m.tokenizer.num_tokens
        self.w = m.weight * m.sees
        start = torch.zeros_like(m.bias) if m.bug == "drop-bias" else m.bias
        if m.bug != "drop-learned-buffer":
            start = start + m.offset
        self.act = start.expand(n, -1).clone()

    def positions(self, t: int) -> torch.Tensor:
        return torch.tensor([t])

    def _gap(self, t: int) -> torch.Tensor:
        j = t - 1 if self.bug == "off-by-one" and t > 0 else t
        gap = self.act[:, j:j + 1]
        return gap + 1e-3 if self.bug == "drift" else gap

    def logits(self, t: int) -> torch.Tensor:
        gap = self._gap(t)
        return torch.stack([torch.zeros_like(gap), gap], -1)

    def logit_gaps(self, t: int) -> torch.Tensor:
        return -self._gap(t) if self.bug == "wrong-sign-gaps" else self._gap(t)

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        self.act += tokens[:, :1].float() * self.w[:, t]


def kit(bug: str = ""):
    """check_family on the tiny net; the DeprecationWarning of keeping the default generation_steps aside."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return check_family(SigmoidBeliefNet, {**CONFIG, "bug": bug})


def test_the_correct_family_passes_every_check():
    report = kit()
    assert report.passed == ["config", "normalisation", "conditionals", "causality", "cached == naive",
                             "completion keeps observed", "exact completion", "non-prefix completion", "save/load"]
    assert "refused on both paths" in report.notes["non-prefix completion"]


@pytest.mark.parametrize("bug, check", BUGS.items(), ids=list(BUGS))
def test_each_broken_variant_is_caught_by_the_check_it_breaks(bug, check):
    with pytest.raises(ContractError) as e:
        kit(bug)
    message = str(e.value)
    assert f": {check}: " in message, message
    assert len(message.split(f": {check}: ", 1)[1]) > 40, message  # and it says why


def test_the_messages_say_what_to_do():
    with pytest.raises(ContractError, match=r"call self\.generation_steps\(observed_mask\) first"):
        kit("stepper-ignores-refusal")
    with pytest.raises(ContractError, match=r"generates token 0 \(hidden\) before token 3 \(observed\)"):
        kit("0.3-default-order")
    with pytest.raises(ContractError, match=r"differ from the exact conditional: chi2"):
        kit("any-order-claimed")
    with pytest.raises(ContractError, match=r"the cached stepper's logit gaps l1 - l0 differ from the naive"):
        kit("wrong-sign-gaps")


def test_a_drift_of_1e3_is_caught_though_the_draws_agree():
    """The drift moves almost no draw: only the logit comparison sees it, at the biases the kit drew."""
    with pytest.raises(ContractError, match=r"log-probabilities differ from the naive reference's by up to "
                                            r"[5-9]\.\d+e-04"):
        kit("drift")


def test_randomise_redraws_biases_and_learned_buffers_and_leaves_structure():
    m = SigmoidBeliefNet()
    sees = m.sees.clone()
    randomise(m)
    assert bool((m.bias != 0).all()) and bool((m.offset != 0).all())
    assert float(m.bias.detach().abs().mean()) > 0.1 and float(m.offset.abs().mean()) > 0.1  # visible, not tiny
    assert torch.equal(m.sees, sees)
