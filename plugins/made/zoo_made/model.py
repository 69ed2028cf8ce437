"""MADE: Masked Autoencoder for Distribution Estimation (Germain et al. 2015, arXiv 1502.03509).

An MLP whose weight masks make output d depend only on inputs that come before d in an ordering, so one
forward pass gives every conditional p(x_d | x_<d). Several masks (orderings x connectivities) can be trained
at once (connectivity-agnostic training) and ensembled at evaluation by averaging *probabilities*
(log-mean-exp of per-mask log-likelihoods).

Read top to bottom: masks, the network, exact log-likelihood, and the incremental sampler that computes every
hidden unit exactly once per image (a unit of degree m becomes final when the input of rank m is set).
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.errors import InputError
from zoo.heads import make_head
from zoo.sampling import FullRecomputeStepper

ORDERINGS = ("natural", "random", "agnostic")


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask (a non-persistent buffer)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("mask", torch.ones(out_features, in_features), persistent=False)

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.masked_weight(), self.bias)


@dataclass
class Connectivity:
    """One MADE mask: the ordering and every unit's degree (the max input rank it may see)."""

    order: torch.Tensor           # (D,) dims in generation order
    input_degree: torch.Tensor    # (D,) rank + 1 of each input dim, in 1..D
    hidden_degrees: list[torch.Tensor]
    uid: int = field(default_factory=itertools.count().__next__)


class MADE(zoo.Model):
    """MADE over pixel tokens: Bernoulli outputs for 2 levels; for 8-bit data, an output head per sub-pixel.

    `head = "softmax"` (the default): the output layer gives `features` numbers per sub-pixel, mapped to the
    levels' logits by a linear map shared by all pixels plus a per-pixel bias (a factorized softmax, so the layer
    stays small). `head = "logistic"` or `"gaussian"`: the output layer gives the parameters of a discretized
    logistic mixture (`mixtures` components, 10 by default) or Gaussian (1 by default) per sub-pixel
    (zoo.heads); `features` is then unused. MADE's ordering carries every dependence, channels included, so each
    sub-pixel has a grey head of its own.
    """

    def __init__(self, image_shape=(1, 28, 28), levels: int = 2, hidden=(1000, 1000), num_masks: int = 1,
                 eval_masks: int | None = None, ordering: str = "natural", natural_prob: float = 0.5,
                 direct: bool = True, direct_features: int | None = None, features: int = 32,
                 head: str = "softmax", mixtures: int | None = None, seed: int = 0) -> None:
        super().__init__()
        if ordering not in ORDERINGS:
            raise InputError(f"ordering must be one of {ORDERINGS}, got {ordering!r}")
        if num_masks < 1:
            raise InputError(f"num_masks must be >= 1, got {num_masks}")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.tokenizer = zoo.PixelTokenizer(levels, self.image_shape)
        self.levels, self.hidden = int(levels), [int(h) for h in hidden]
        self.num_masks, self.ordering, self.natural_prob = int(num_masks), ordering, float(natural_prob)
        self.eval_masks = int(eval_masks or num_masks)
        self.direct, self.seed, self.head = bool(direct), int(seed), head
        if head == "gauss":
            warnings.warn("MADE(head='gauss') is deprecated: it adds a Gaussian-shaped bump to the factorized "
                          "softmax. Use head='gaussian' (an exact discretized Gaussian, zoo.heads) or "
                          "head='logistic'; 'gauss' still builds the old model", DeprecationWarning, stacklevel=3)
        elif levels == 2 and head != "softmax":
            raise InputError(f"head={head!r} is for 8-bit (many-level) data; a binary MADE (levels = 2) outputs one "
                             "Bernoulli logit per pixel: use head='softmax'")
        self.output_head = make_head("softmax" if head == "gauss" else head, levels, 1, mixtures)
        D = self.num_dims
        mixture = self.output_head.name != "softmax"
        self.per_dim = 1 if levels == 2 else self.output_head.num_params if mixture else int(features)
        sizes = [D, *self.hidden]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = MaskedLinear(sizes[-1], D * self.per_dim)
        # direct input->output connections feed the first `direct_features` features of each pixel
        self.direct_features = min(self.per_dim, int(direct_features or self.per_dim))
        self.skip = MaskedLinear(D, D * self.direct_features, bias=False) if direct else None
        if levels > 2 and not mixture:
            self.level_proj = nn.Parameter(torch.randn(self.per_dim, levels) / math.sqrt(self.per_dim))
            self.level_bias = nn.Parameter(torch.zeros(D, levels))
        self._current: tuple | None = None

    # ---- masks -----------------------------------------------------------------------------------
    def connectivity(self, k: int = 0, order: torch.Tensor | None = None) -> Connectivity:
        """Mask k: its ordering (natural, or a seeded permutation for ordering='random', k > 0) and degrees."""
        D = self.num_dims
        g = torch.Generator().manual_seed(self.seed * 7919 + k)
        if order is None:
            order = torch.randperm(D, generator=g) if (self.ordering == "random" and k > 0) else torch.arange(D)
        input_degree = torch.empty(D, dtype=torch.long)
        input_degree[order] = torch.arange(1, D + 1)
        degrees, low = [], 1
        for h in self.hidden:
            m = torch.randint(low, max(low, D - 1) + 1, (h,), generator=g) if D > 1 else torch.ones(h, dtype=torch.long)
            degrees.append(m)
            low = int(m.min())
        return Connectivity(order, input_degree, degrees)

    def apply_masks(self, c: Connectivity) -> None:
        """Set every layer's mask buffer from a connectivity (cached: repeated calls are free)."""
        key = c.uid
        if self._current == key:
            return
        prev = c.input_degree
        for layer, m in zip(self.layers, c.hidden_degrees):
            layer.mask.copy_((m[:, None] >= prev[None, :]).float())
            prev = m
        rep = lambda mask: mask.repeat_interleave(self.per_dim, dim=0).float()  # noqa: E731
        self.out.mask.copy_(rep(c.input_degree[:, None] > prev[None, :]))
        if self.skip is not None:
            self.skip.mask.copy_((c.input_degree[:, None] > c.input_degree[None, :])
                                 .repeat_interleave(self.direct_features, dim=0).float())
        self._current = key

    def _fixed(self, k: int) -> Connectivity:
        cache = self.__dict__.setdefault("_fixed_cache", {})
        if k not in cache:
            cache[k] = self.connectivity(k)
        return cache[k]

    # ---- the network -----------------------------------------------------------------------------
    def encode_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.float() / (self.levels - 1)

    def head_params(self, feats: torch.Tensor, dims: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Output features (N, P * per_dim) of the dims `dims` -> the head's parameters (N, P, num_params)."""
        n = feats.shape[0]
        if self.levels == 2:
            f = feats.reshape(n, -1)
            return torch.stack([torch.zeros_like(f), f], dim=-1)
        f = feats.reshape(n, -1, self.per_dim)
        if self.output_head.name != "softmax":
            return f
        logits = f @ self.level_proj + self.level_bias[dims]
        if self.head == "gauss":  # deprecated
            # a discretized Gaussian bump (mean f0, log-precision f1) that the free features reshape
            t = torch.linspace(-1, 1, self.levels, device=f.device)
            logits = logits - f[..., 1:2].clamp(-10, 10).exp() * (t - f[..., :1]).square()
        return logits

    def to_logits(self, feats: torch.Tensor, dims: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """Output features (N, P * per_dim) of the dims `dims` -> logits (N, P, levels), through the head."""
        return self.output_head.logits(self.head_params(feats, dims))[..., 0, :]

    def skip_features(self, direct: torch.Tensor) -> torch.Tensor:
        """Direct-connection outputs (N, D * direct_features) laid out as output features (N, D * per_dim)."""
        if self.direct_features == self.per_dim:
            return direct
        pad = self.per_dim - self.direct_features
        return F.pad(direct.reshape(direct.shape[0], self.num_dims, self.direct_features), (0, pad)).flatten(1)

    def features(self, tokens: torch.Tensor, c: Connectivity | None = None) -> torch.Tensor:
        """Output features (N, D * per_dim) under connectivity c (mask 0 by default)."""
        self.apply_masks(c or self._fixed(0))
        x = self.encode_inputs(tokens)
        h = x
        for layer in self.layers:
            h = F.relu(layer(h))
        feats = self.out(h)
        if self.skip is not None:
            feats = feats + self.skip_features(self.skip(x))
        return feats

    def logits_all(self, tokens: torch.Tensor, c: Connectivity | None = None) -> torch.Tensor:
        """Logits (N, D, levels) of every conditional under connectivity c (mask 0 by default)."""
        return self.to_logits(self.features(tokens, c))

    def _log_prob_one(self, tokens: torch.Tensor, c: Connectivity) -> torch.Tensor:
        feats = self.features(tokens, c)
        if self.levels == 2:
            return -F.binary_cross_entropy_with_logits(feats, tokens.float(), reduction="none").sum(1)
        return self.output_head.log_prob(self.head_params(feats), tokens[..., None])[..., 0].sum(1)

    def log_prob_tokens(self, tokens: torch.Tensor, y=None, masks: int | None = None) -> torch.Tensor:
        """Exact log p(x) in nats; with masks = E > 1, the ensemble log (1/E) sum_k p_k(x)."""
        E = self.eval_masks if masks is None else int(masks)
        if not 1 <= E <= max(self.num_masks, self.eval_masks):
            raise InputError(f"masks must be in 1..{max(self.num_masks, self.eval_masks)}, got {E}")
        per = torch.stack([self._log_prob_one(tokens, self._fixed(k)) for k in range(E)])
        return torch.logsumexp(per, 0) - math.log(E)

    def training_loss(self, x, y=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """NLL under one mask drawn for this step (connectivity-agnostic training)."""
        g = generator or torch.Generator().manual_seed(0)
        k = int(torch.randint(self.num_masks, (1,), generator=g))
        c = self._fixed(k)
        if self.ordering == "agnostic" and float(torch.rand(1, generator=g)) >= self.natural_prob:
            c = self.connectivity(k, order=torch.randperm(self.num_dims, generator=g))
        return -self._log_prob_one(self.tokenizer.encode(x), c).mean()

    # ---- sampling --------------------------------------------------------------------------------
    def completion_order(self, observed: torch.Tensor) -> torch.Tensor | None:
        """An ordering that puts the observed dims first, if this model can condition on it exactly."""
        obs = observed.cpu()
        k_obs = int(obs.sum())
        if self.ordering == "agnostic":
            return torch.cat([obs.nonzero().flatten(), (~obs).nonzero().flatten()])
        for k in range(self.num_masks):
            c = self._fixed(k)
            if bool((c.input_degree[obs] <= k_obs).all()):
                return c.order
        return None

    def stepper(self, n: int, *, y=None, observed_mask=None, generator=None, processor=None, naive=False):
        order = None
        if observed_mask is not None and bool(observed_mask.any()):
            order = self.completion_order(observed_mask)
            if order is None:
                raise InputError(
                    f"this MADE was trained with {self.ordering} ordering(s): it completes masks whose observed "
                    "pixels come first in one of its orderings (top-half, first:K). For any other mask use a "
                    "model trained with ordering = 'agnostic' (made-mnist, made-cifar10-gray)")
        if order is None:
            conns = [self._fixed(k) for k in range(self.eval_masks)]
            if len({tuple(c.order.tolist()) for c in conns}) > 1:
                conns = conns[:1]  # orderings differ: sample mask 0 (a mixture needs one shared order)
        else:
            conns = [self.connectivity(k, order=order) for k in range(self.eval_masks)]
        # the ensemble is a mixture: each row draws its component
        comp = (torch.randint(len(conns), (n,), generator=generator, device=generator.device).cpu()
                if len(conns) > 1 else torch.zeros(n, dtype=torch.long))
        parts = []
        for k, c in enumerate(conns):
            rows = (comp == k).nonzero().flatten()
            if len(rows):
                s = (FullRecomputeStepper(lambda t, c=c: self.logits_all(t, c), c.order, len(rows),
                                          self.num_dims, self.device) if naive
                     else IncrementalStepper(self, c, len(rows)))
                parts.append((rows.to(self.device), s))
        return MixtureStepper(parts, n, conns[0].order)


class MixtureStepper:
    """Rows split among several steppers that share one generation order."""

    def __init__(self, parts, n: int, order: torch.Tensor) -> None:
        self.parts, self.n, self.order = parts, n, order
        self.num_steps = len(order)

    def positions(self, t: int) -> torch.Tensor:
        return self.order[t:t + 1]

    def logits(self, t: int) -> torch.Tensor:
        if len(self.parts) == 1:
            return self.parts[0][1].logits(t)
        first = self.parts[0][1].logits(t)
        out = first.new_empty(self.n, *first.shape[1:])
        out[self.parts[0][0]] = first
        for rows, s in self.parts[1:]:
            out[rows] = s.logits(t)
        return out

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        for rows, s in self.parts:
            s.advance(t, tokens if len(self.parts) == 1 else tokens[rows])


class IncrementalStepper:
    """O(one forward pass) sampling: hidden units are sorted by degree, and the units of degree m are computed
    once, right after the input of rank m is set; their contribution is added to every output's pre-activation."""

    def __init__(self, model: MADE, c: Connectivity, n: int) -> None:
        self.model, self.order, self.num_steps = model, c.order, model.num_dims
        model.apply_masks(c)
        dev = model.device
        D, P = model.num_dims, model.per_dim
        self.x = torch.zeros(n, D, device=dev)
        self.weights, self.biases, self.bounds, self.h = [], [], [], []
        prev_perm = torch.arange(D)
        for layer, m in zip(model.layers, c.hidden_degrees):
            perm = torch.argsort(m, stable=True)
            w = layer.masked_weight().detach()[perm][:, prev_perm] if self.weights else layer.masked_weight().detach()[perm]
            self.weights.append(w)
            self.biases.append(layer.bias.detach()[perm])
            sorted_m = m[perm]
            # units with degree == s+1 occupy [bounds[s], bounds[s+1])
            self.bounds.append(torch.searchsorted(sorted_m, torch.arange(1, D + 2)).tolist())
            self.h.append(torch.zeros(n, layer.out_features, device=dev))
            prev_perm = perm
        self.w_out = model.out.masked_weight().detach()[:, prev_perm].t().contiguous()  # (H_L, D*P)
        self.feats = model.out.bias.detach().expand(n, -1).clone()                     # (n, D*P)
        self.w_skip = (model.skip_features(model.skip.masked_weight().detach().t()).contiguous()
                       if model.skip is not None else None)  # (D inputs, D * P features)
        self.P = P

    def positions(self, t: int) -> torch.Tensor:
        return self.order[t:t + 1]

    def logits(self, t: int) -> torch.Tensor:
        d = int(self.order[t])
        return self.model.to_logits(self.feats[:, d * self.P:(d + 1) * self.P], slice(d, d + 1))

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        d = int(self.order[t])
        value = tokens[:, 0].float() / (self.model.levels - 1)
        self.x[:, d] = value
        if self.w_skip is not None:
            self.feats.addmm_(value[:, None], self.w_skip[d:d + 1])
        inp = self.x
        for li, (w, b, bounds, h) in enumerate(zip(self.weights, self.biases, self.bounds, self.h)):
            lo, hi = bounds[t], bounds[t + 1]  # units of degree t+1
            if hi > lo:
                h[:, lo:hi] = F.relu(torch.addmm(b[lo:hi], inp, w[lo:hi].t()))
                if li == len(self.weights) - 1:
                    self.feats.addmm_(h[:, lo:hi], self.w_out[lo:hi])
            inp = h
