"""MADE: Masked Autoencoder for Distribution Estimation (Germain et al. 2015, arXiv 1502.03509).

An MLP whose weight masks make output d depend only on inputs that come before d in an ordering, so one
forward pass gives every conditional p(x_d | x_<d). Several masks (orderings x connectivities) can be trained
at once (connectivity-agnostic training) and ensembled at evaluation by averaging *probabilities*
(log-mean-exp of per-mask log-likelihoods).

Read top to bottom: masks, the network, exact log-likelihood, and the incremental sampler that costs about one
forward pass per image (a unit of degree m becomes final when the input of rank m is set; it gets the finished
blocks' part of its input once, and its own block's part at each of that block's steps).
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
from zoo.sampling import draw_logits

from .factorized import factorized_log_prob

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


def _any_mask_models() -> str:
    """The installed models that complete any mask (zoo's list, e.g. MADEs with ordering = 'agnostic')."""
    from zoo.completion import any_mask_models
    ids = any_mask_models()
    return ", ".join(ids) if ids else "none installed; train one with ordering = 'agnostic'"


@dataclass
class MADEOptions:
    """MADE's log_prob options (`zoo eval -o masks=1`)."""

    masks: int | None = field(default=None, metadata={
        "help": "how many masks the ensemble averages (1..num_masks); default: the card's eval_masks"})


class MADE(zoo.Model):
    """MADE over pixel tokens: Bernoulli outputs for 2 levels; for 8-bit data, an output head per sub-pixel.

    `head = "softmax"` (the default): the output layer gives `features` numbers per sub-pixel, mapped to the
    levels' logits by a linear map shared by all pixels plus a per-pixel bias (a factorized softmax, so the layer
    stays small). `head = "logistic"` or `"gaussian"`: the output layer gives the parameters of a discretized
    logistic mixture (`mixtures` components, 10 by default) or Gaussian (1 by default) per sub-pixel
    (zoo.heads); `features` is then unused. MADE's ordering carries every dependence, channels included, so each
    sub-pixel has a grey head of its own.
    """

    Options = MADEOptions

    @classmethod
    def check_config(cls) -> dict:
        return {"image_shape": [1, 3, 3], "levels": 2, "hidden": [16, 16], "num_masks": 1}

    @classmethod
    def completes_any_mask(cls, config: dict) -> bool:
        """An order-agnostic MADE generates any mask's observed pixels first (`completion_order`)."""
        return config.get("ordering") == "agnostic"

    @property
    def approximate_completion(self) -> str:
        """Non-empty for an order-agnostic MADE: its completion of a mask that is no raster prefix is exact for
        its network read in another order, not for the natural order that log_prob scores."""
        if self.ordering != "agnostic":
            return ""
        return ("an order-agnostic MADE completes a mask that is no raster prefix in an order that generates the "
                "observed pixels first: the exact conditional of its network read in that order, which is another "
                "distribution than the natural order's that log_prob scores (order-agnostic training brings the "
                "orders closer, not together)")

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

    def mask_tensors(self, c: Connectivity) -> list[torch.Tensor]:
        """The 0/1 masks of connectivity c: one per hidden layer, then the output layer, then the skip layer."""
        masks, prev = [], c.input_degree
        for m in c.hidden_degrees:
            masks.append((m[:, None] >= prev[None, :]).float())
            prev = m
        masks.append((c.input_degree[:, None] > prev[None, :]).repeat_interleave(self.per_dim, dim=0).float())
        if self.skip is not None:
            masks.append((c.input_degree[:, None] > c.input_degree[None, :])
                         .repeat_interleave(self.direct_features, dim=0).float())
        return masks

    def apply_masks(self, c: Connectivity) -> None:
        """Set every layer's mask buffer from a connectivity (cached: repeated calls are free)."""
        key = c.uid
        if self._current == key:
            return
        layers = [*self.layers, self.out] + ([self.skip] if self.skip is not None else [])
        for layer, mask in zip(layers, self.mask_tensors(c)):
            layer.mask.copy_(mask)
        self._current = key

    def train(self, mode: bool = True) -> "MADE":
        """Also drops the sampling caches: an optimizer may update weights without bumping their version
        counters (fused Adam does not), so products cached before training must not outlive it."""
        for name in ("_masked_cache", "_plan_cache"):
            self.__dict__.pop(name, None)
        return super().train(mode)

    def _weights_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.parameters())

    def masked_weights(self, c: Connectivity) -> list[torch.Tensor]:
        """Each layer's weight times connectivity c's mask (hidden layers, output, skip), without gradient.
        Cached per connectivity until a parameter changes, so a sampler that runs the network D times (or
        several masks in turn) multiplies the masks once."""
        cache = self.__dict__.setdefault("_masked_cache", {})
        key = (c.uid, self._weights_key())
        if key not in cache:
            if len(cache) >= 2 * max(self.num_masks, self.eval_masks) + 4:
                cache.pop(next(iter(cache)))
            layers = [*self.layers, self.out] + ([self.skip] if self.skip is not None else [])
            with torch.no_grad():
                cache[key] = [layer.weight * mask.to(layer.weight.device)
                              for layer, mask in zip(layers, self.mask_tensors(c))]
        return cache[key]

    def conn(self, k: int, order: torch.Tensor | None = None) -> Connectivity:
        """Mask k (`_fixed`), or mask k in a given order (cached, so its masked weights are cached too)."""
        if order is None:
            return self._fixed(k)
        cache = self.__dict__.setdefault("_order_cache", {})
        key = (k, order.cpu().numpy().tobytes())
        if key not in cache:
            if len(cache) >= 4 * max(self.num_masks, self.eval_masks):
                cache.pop(next(iter(cache)))
            cache[key] = self.connectivity(k, order=order.cpu())
        return cache[key]

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
        return self.network(self.encode_inputs(tokens), c)

    def network(self, x: torch.Tensor, c: Connectivity | None = None) -> torch.Tensor:
        """Output features (N, D * per_dim) of encoded inputs x (N, D) under connectivity c (mask 0 by default)."""
        c = c or self._fixed(0)
        if torch.is_grad_enabled():
            self.apply_masks(c)
            ws = [layer.masked_weight() for layer in self.layers] + [self.out.masked_weight()]
            ws += [self.skip.masked_weight()] if self.skip is not None else []
        else:
            ws = self.masked_weights(c)
        return self.network_with(x, ws)

    def network_with(self, x: torch.Tensor, ws: list[torch.Tensor]) -> torch.Tensor:
        """`network` with each layer's masked weights given (as `masked_weights` returns them)."""
        h = x
        for layer, w in zip(self.layers, ws):
            h = F.relu(F.linear(h, w, layer.bias))
        feats = F.linear(h, ws[len(self.layers)], self.out.bias)
        if self.skip is not None:
            feats = feats + self.skip_features(F.linear(x, ws[-1]))
        return feats

    def logits_all(self, tokens: torch.Tensor, c: Connectivity | None = None) -> torch.Tensor:
        """Logits (N, D, levels) of every conditional under connectivity c (mask 0 by default)."""
        return self.to_logits(self.features(tokens, c))

    def _log_prob_one(self, tokens: torch.Tensor, c: Connectivity) -> torch.Tensor:
        feats = self.features(tokens, c)
        if self.levels == 2:
            return -F.binary_cross_entropy_with_logits(feats, tokens.float(), reduction="none").sum(1)
        if self.output_head.name == "softmax" and self.head != "gauss":  # chunked: the logits never whole
            f = feats.reshape(feats.shape[0], -1, self.per_dim)
            return factorized_log_prob(f, self.level_proj, self.level_bias, tokens).sum(1)
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

    def _components(self, conns: list[Connectivity], n: int, generator, observed=None, observed_mask=None):
        """Each image's mask (CPU LongTensor (n,)). The ensemble is a uniform mixture, so an image draws its mask
        uniformly; given observed pixels (which come first in every mask's order) it draws mask k with the
        posterior probability, proportional to p_k(observed pixels): the exact conditional of the mixture."""
        if len(conns) == 1:
            return torch.zeros(n, dtype=torch.long)
        dev = generator.device if generator is not None else "cpu"
        if observed_mask is None or not bool(observed_mask.any()):
            return torch.randint(len(conns), (n,), generator=generator, device=dev).cpu()
        obs = observed_mask[0]
        logp = []
        for c in conns:
            lp = self.logits_all(observed, c).float().log_softmax(-1)
            lp = lp.gather(-1, observed.unsqueeze(-1)).squeeze(-1)
            logp.append(torch.where(obs, lp, torch.zeros_like(lp)).sum(1))
        return draw_logits(torch.stack(logp, 1), generator).cpu()

    def generate_tokens(self, n: int, *, generator, processor, y=None, observed=None, observed_mask=None,
                        naive: bool = False) -> torch.Tensor:
        """The core's generation, with each image's mask drawn first (from the posterior, for a completion)."""
        shared = observed_mask[0] if observed_mask is not None else None
        conns = self._sampling_conns(shared)
        self._pending = self._components(conns, n, generator, observed, observed_mask)
        try:
            return super().generate_tokens(n, generator=generator, processor=processor, y=y, observed=observed,
                                           observed_mask=observed_mask, naive=naive)
        finally:
            self._pending = None

    def _sampling_conns(self, observed_mask: torch.Tensor | None) -> list[Connectivity]:
        """The masks a sample (or a completion given observed_mask) mixes; they share one generation order."""
        order = None
        if observed_mask is not None and bool(observed_mask.any()):
            order = self.completion_order(observed_mask)
            if order is None:
                raise InputError(
                    f"this MADE was trained with {self.ordering} ordering(s): it completes masks whose observed "
                    "pixels come first in one of its orderings (top-half, first:K). For any other mask use a "
                    f"model trained with ordering = 'agnostic', or another that completes any mask "
                    f"({_any_mask_models()})")
        if order is None:
            conns = [self._fixed(k) for k in range(self.eval_masks)]
            if len({tuple(c.order.tolist()) for c in conns}) > 1:
                conns = conns[:1]  # orderings differ: sample mask 0 (a mixture needs one shared order)
            return conns
        return [self.conn(k, order) for k in range(self.eval_masks)]

    def generation_steps(self, observed_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        return list(self._sampling_conns(observed_mask)[0].order.reshape(-1, 1))

    def completes_exactly(self, observed_mask: torch.Tensor, steps: list[torch.Tensor]) -> bool:
        """An order-agnostic MADE completes a raster prefix exactly (the mixture `log_prob` scores); another mask,
        completed in another order, is its `approximate_completion`. Other orderings: the core's rule."""
        from zoo.completion import is_prefix
        if self.ordering == "agnostic" and not is_prefix(observed_mask):
            return False
        return super().completes_exactly(observed_mask, steps)

    def conditionals_tokens(self, tokens: torch.Tensor, y=None) -> torch.Tensor:
        """Per-position log-probabilities in generation order. For an ensemble sharing one order, the mixture's
        conditionals: log p(x_<=t) - log p(x_<t), each prefix probability averaged over the masks."""
        conns = self._sampling_conns(None)
        per = []
        for c in conns:
            logits = self.logits_all(tokens, c)
            lp = logits.float().log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            per.append(lp[:, c.order.to(lp.device)].cumsum(1))
        prefix = torch.logsumexp(torch.stack(per), 0) - math.log(len(conns))  # (N, T): log p(x_<=t)
        return torch.diff(prefix, dim=1, prepend=torch.zeros_like(prefix[:, :1]))

    def stepper(self, n: int, *, y=None, observed_mask=None, generator=None, cfg=None):
        """The blocked incremental sampler: every image through its own mask, all images in one pass."""
        conns, comp = self._mixture(n, observed_mask, generator)
        return IncrementalStepper(self, conns, comp)

    def reference_stepper(self, n: int, *, y=None, observed_mask=None, generator=None, cfg=None):
        """The naive reference of the mixture: each image's mask recomputes the whole network at every step."""
        conns, comp = self._mixture(n, observed_mask, generator)
        return NaiveStepper(self, conns, comp)

    def _mixture(self, n: int, observed_mask, generator) -> tuple[list[Connectivity], torch.Tensor]:
        """The masks a pass mixes and each image's mask: the ones `generate_tokens` drew (from the posterior,
        for a completion), or uniform draws when a stepper is built directly."""
        conns = self._sampling_conns(observed_mask)
        comp = self.__dict__.get("_pending")
        if comp is None or len(comp) != n:  # called directly, not through generate_tokens
            comp = self._components(conns, n, generator)
        return conns, comp


class NaiveStepper:
    """The naive reference: at every step, each image's mask recomputes the whole network over every input
    drawn so far (D full passes per pass), and the step reads its pixel's features. What a plain D-pass loop
    does: the inputs are kept encoded, the head applied at the step's pixel only."""

    def __init__(self, model: MADE, conns: list[Connectivity], comp: torch.Tensor) -> None:
        self.model, self.conns, self.order, self.num_steps = model, conns, conns[0].order, model.num_dims
        self.groups = None if len(conns) == 1 else [(comp == k).nonzero().flatten().to(model.device)
                                                    for k in range(len(conns))]
        self.x = torch.zeros(len(comp), model.num_dims, device=model.device)   # encode_inputs of the tokens
        self.ws = [model.masked_weights(c) for c in conns]   # the weights cannot change during a pass
        self.dims = self.order.tolist()

    def positions(self, t: int) -> torch.Tensor:
        return self.order[t:t + 1]

    def logits(self, t: int) -> torch.Tensor:
        m, d = self.model, self.dims[t]
        cols = slice(d * m.per_dim, (d + 1) * m.per_dim)
        if self.groups is None:
            f = m.network_with(self.x, self.ws[0])[:, cols]
        else:
            f = self.x.new_empty(len(self.x), m.per_dim)
            for rows, ws in zip(self.groups, self.ws):
                if len(rows):
                    f[rows] = m.network_with(self.x[rows], ws)[:, cols]
        if m.levels == 2:  # the Bernoulli's logits (0, f), as head_params and the softmax head give them
            return F.pad(f.unsqueeze(-1), (1, 0))
        return m.to_logits(f, slice(d, d + 1))

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        self.x[:, self.dims[t]] = tokens[:, 0].float() / (self.model.levels - 1)


class IncrementalStepper:
    """O(one forward pass) sampling of an ensemble, every image through its own mask, all images in one pass.

    A hidden unit of degree m sees only inputs of rank <= m (and units of degree <= m below it), so it is final
    once the input of rank m is drawn. Steps go in blocks of B: at a block's start, one product per layer
    gives every unit of the block's degrees its part from the finished blocks (a wide product, every input read
    once per block, not once per step). Within the block, each drawn input adds its column to the first layer's
    units and to the block's outputs (one rank-1 update of one buffer), and each deeper layer adds the part from
    the block's units below (one small product). Activations are stored transposed, (mask, unit slot, image
    slot): block b's units of every mask share rows (padded with zero-weight rows to the largest mask's count),
    and the images of mask k share row k, so one batched call per layer and step serves every mask. Finished
    units are stored packed per mask (see _Plan), and an ensemble's first layer starts each block from one running
    sum over every unit and image (the first layer's weights from finished inputs do not depend on the mask).
    """

    block = 16

    def __init__(self, model: MADE, conns: list[Connectivity], comp: torch.Tensor) -> None:
        self.model, self.order, self.num_steps = model, conns[0].order, model.num_dims
        self.levels, self.P, dev = model.levels, model.per_dim, model.device
        n, K, B = len(comp), len(conns), self.block
        self.plan = p = _plan(model, conns, B)
        self.Q = Q = p.columns
        counts = torch.bincount(comp, minlength=K)
        n_max = max(1, int(counts.max()))
        self.K, self.n, self.n_max = K, n, n_max
        slot = torch.empty(n, dtype=torch.long)
        for k in range(K):
            rows = (comp == k).nonzero().flatten()
            slot[rows] = k * n_max + torch.arange(len(rows))
        self.slot = slot.to(dev)
        self.identity = K == 1
        # where image i's Q outputs lie in a step's (K, Q, n_max) result: one `take` gives them in image order
        k, i = torch.div(slot, n_max, rounding_mode="floor"), slot % n_max
        idx = k[:, None] * Q * n_max + torch.arange(Q)[None, :] * n_max + i[:, None]
        self.take = (idx.view(n, 1, Q) if self.levels == 2 else idx).to(dev)
        nb = -(-model.num_dims // B)
        # inputs in rank order (a row is read only once set) and hidden units in slot order (a row is read only once
        # its block has finished and stored it): neither needs zeros
        self.x = torch.empty(nb * B, K, n_max, device=dev)
        self.xt = self.x.transpose(0, 1)                        # (K, D, n_max)
        self.x_flat = self.x.view(nb * B, K * n_max)           # (D, image slots): a direct product's input
        if self.identity:  # each step's input row shaped as the drawn tokens (N, 1)
            self.x_in = self.x_flat.unsqueeze(-1).unbind(0)
        else:              # ... or as the slots (K, n_max), filled by one `take` from the tokens in image order
            self.x_in = self.x.unbind(0)
            image = torch.zeros(K * n_max, dtype=torch.long)
            image[slot] = torch.arange(n)
            self.image_of_slot = image.view(K, n_max).to(dev)   # padding slots read image 0: never used
        self.x_col = self.x.unsqueeze(2).unbind(0)                        # (K, 1, n_max): rank-1 updates
        # finished units, packed (see _Plan), flat with a spare last row for the padding slots; zeros, since a
        # block start reads the largest mask's count of rows: another mask's extra rows meet zero weights
        self.store = [torch.zeros(K * u + 1, n_max, device=dev) for u in p.hidden]
        self.h = [st[:-1].view(K, u, n_max) for st, u in zip(self.store, p.hidden)]
        if not self.identity:
            # every first-layer unit's sum over the finished inputs, for every image slot (one plain product a
            # block: the weights do not depend on the mask there); a block start picks its units' rows
            self.first_sums = p.first_bias.expand(-1, K * n_max).contiguous()
            self.first_sums3 = self.first_sums.view(-1, K, n_max)
        # what each step's input updates by a rank-1 product, one buffer so that one call serves both: the block's
        # outputs (mask, step in block, column, image slot), then the block's first-layer units (as many rows as
        # the block has slots); the zero column of a binary model's logits is never written
        self.rank1_all = torch.zeros(K, B * Q + max(b - a for a, b in zip(p.starts[0], p.starts[0][1:])), n_max,
                                     device=dev)
        self.outputs = self.rank1_all[:, :B * Q].view(K, B, Q, n_max)
        self.features = self.outputs[:, :, Q - self.P:]      # (K, B, P, n_max): where a block start writes
        self.f_step = self.outputs.unbind(1)
        self.out_cur, self.rank1_col = p.out_cur, p.rank1_col
        if self.levels == 2:  # the sampler's shortcut (Stepper.logit_gaps): the logit itself, l1 - l0 = f
            self.logit_gaps = self._logit_gaps
            self.gap_step = self.outputs[:, :, 1:].unbind(1)                   # (K, 1, n_max) each
            self.out_gap = [w[:, 1:] for w in p.out_cur]
            self.take_gap = self.slot.view(n, 1)      # (N, 1): the logit's place in a (K, 1, n_max) result
        self.steps = self.order.view(-1, 1).unbind(0)
        self.dims = self.order.tolist()
        self._started, self.units = -1, []

    def positions(self, t: int) -> torch.Tensor:
        return self.steps[t]

    def _start_block(self, b: int) -> None:
        """Everything the block's units and pixels get from finished blocks, in one product per layer; and the
        buffers each step of the block reads and writes (so that a step slices nothing)."""
        p, B, K, n_max = self.plan, self.block, self.K, self.n_max
        for li, units in enumerate(self.units):  # the finished block's units join the stored ones
            self.store[li].index_copy_(0, p.store[li][b - 1], units.view(-1, n_max))
        s, Q, P = b * B, self.Q, self.P
        ops, self.units = [], []  # ops: (partial, weights from the block's units below, those units, units)
        below = inp = None
        for li in range(len(self.h)):
            w, bias = p.prev_w[li][b], p.bias[li][b]
            if li == 0:  # into the rank-1 buffer, after the outputs
                part = self.rank1_all[:, B * Q:B * Q + bias.shape[1]]
                if not self.identity:
                    if b:
                        self.first_sums.addmm_(p.first_by_rank[b - 1], self.x_flat[s - B:s])
                    index = p.first_units[b].expand(-1, -1, n_max)   # (slots, K, n_max): each slot's unit
                    torch.gather(self.first_sums3, 0, index, out=part.transpose(0, 1))
                elif s:
                    torch.baddbmm(bias, w, self.xt[:, :s], out=part)
                else:
                    part.copy_(bias.expand(-1, -1, n_max))
            else:
                part = torch.baddbmm(bias, w, inp) if w.shape[-1] else bias.expand(-1, -1, n_max).clone()
            units = part.clamp_min(0)   # finite until the block's steps set them (their weights are zero till then)
            ops.append((part, p.cur_w[li][b], below, units))
            self.units.append(units)
            inp, below = self.h[li][:, :p.finished[li][b]], units
        f = p.out_bias[b].expand(K, -1, n_max)
        if p.out_prev[b].shape[-1]:
            f = torch.baddbmm(f, p.out_prev[b], inp)
        if p.skip_prev[b] is not None and s:  # direct connections: the same for every mask, one plain product
            direct = (p.skip_prev[b] @ self.x_flat[:s]).view(B, P, K, n_max).permute(2, 0, 1, 3)
            torch.add(f.view(K, B, P, n_max), direct, out=self.features)
        else:
            self.features.copy_(f.view(K, B, P, n_max))
        first = ops[0][0]
        self.rank1 = self.rank1_all[:, :B * Q + first.shape[1]]
        self.first = first, ops[0][3]
        self.deeper = [op for op in ops[1:] if op[3].shape[1]]   # layers with units in this block
        self.last = ops[-1][3]
        self._started = b

    def logits(self, t: int) -> torch.Tensor:
        b, j = divmod(t, self.block)
        if self._started != b:
            self._start_block(b)
        f = torch.take(torch.baddbmm(self.f_step[j], self.out_cur[t], self.last), self.take)
        if self.levels == 2:  # the Bernoulli's logits (0, f), as head_params and the softmax head give them
            return f
        d = self.dims[t]
        return self.model.to_logits(f, slice(d, d + 1))

    def _logit_gaps(self, t: int) -> torch.Tensor:
        """logits(t)[..., 1] - logits(t)[..., 0] of a binary model, (N, 1): its logit, without the zero."""
        b, j = divmod(t, self.block)
        if self._started != b:
            self._start_block(b)
        return torch.take(torch.baddbmm(self.gap_step[j], self.out_gap[t], self.last), self.take_gap)

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        b = t // self.block
        if self._started != b:  # a completion may skip the block's first logits
            self._start_block(b)
        row = self.x_in[t]
        if self.identity:
            if self.levels == 2:
                row.copy_(tokens)
            else:
                torch.div(tokens, self.levels - 1, out=row)
        else:
            value = torch.take(tokens, self.image_of_slot)
            if self.levels == 2:
                row.copy_(value)
            else:
                torch.div(value, self.levels - 1, out=row)
        part, out = self.first
        self.rank1.addcmul_(self.rank1_col[t], self.x_col[t])
        torch.clamp_min(part, 0, out=out)
        for part, w, below, out in self.deeper:
            torch.baddbmm(part, w, below, out=out).relu_()


@dataclass
class _Plan:
    """An ensemble's weights rearranged for IncrementalStepper (see there), built once per masks and weights.

    Within a block, layer l's units sit in slots: block b (degrees b*B+1 .. b*B+B) owns slots
    starts[l][b]..starts[l][b+1] of every mask, padded with zero rows to the largest mask's count. Once its
    block is done, a unit is stored packed: mask k's finished units fill rows 0..(how many) in block order, so a
    block start reads finished[l][b] rows (the largest mask's count) with little padding. Inputs are in rank
    order; output rows are in generation order. A step's output has `columns` numbers per image: its P
    features, or (0, logit) for a binary model (its logits)."""

    hidden: list[int]                 # units per hidden layer (each mask's packed rows)
    starts: list[list[int]]           # [layer][block] first slot of the block (and the end, at index blocks)
    finished: list[list[int]]         # [layer][block] packed rows a block start reads (units of earlier blocks)
    prev_w: list[list[torch.Tensor | None]]  # [layer][block] (K, U, finished[l - 1][b] rows); layer 0: (1, U, B*b
    #                                   inputs) for one mask, None for an ensemble (its running sum serves)
    cur_w: list[list[torch.Tensor]]   # [layer][block] (K, U, the block's slots below (inputs: B))
    bias: list[list[torch.Tensor]]    # [layer][block] (K, U, 1)
    store: list[list[torch.Tensor]]   # [layer][block] (K * U,) packed row of each slot in the flat store
    #                                   (K * hidden + 1 rows; padding slots go to the last, a spare row)
    # an ensemble's first-layer running sum (one mask: empty, None)
    first_units: list[torch.Tensor]   # [block] (U, K, 1) first-layer unit of each slot (hidden[0]: padding)
    first_by_rank: list[torch.Tensor]  # [block] (hidden[0] + 1, B) first-layer weights from the block's inputs
    first_bias: torch.Tensor | None   # (hidden[0] + 1, 1)
    out_prev: list[torch.Tensor]      # [block] (K, B * P, finished[-1][b])
    out_bias: list[torch.Tensor]      # [block] (1, B * P, 1)
    skip_prev: list[torch.Tensor | None]  # [block] (B * P, inputs of finished blocks)
    columns: int                      # Q: P, or 2 for a binary model
    out_cur: list[torch.Tensor]       # [step] (K, Q, last-layer slots of the step's block)
    rank1_col: list[torch.Tensor]     # [step] (K, B * Q + first-layer slots of the block, 1): the step's input's
    #                                   weights (direct) to the block's outputs, then to its first-layer units


def _plan(model: MADE, conns: list[Connectivity], block: int) -> _Plan:
    cache = model.__dict__.setdefault("_plan_cache", {})
    key = (tuple(c.uid for c in conns), block, model._weights_key())
    if key not in cache:
        if len(cache) >= 2:
            cache.pop(next(iter(cache)))
        with torch.no_grad():
            cache[key] = _build_plan(model, conns, block)
    return cache[key]


def _build_plan(model: MADE, conns: list[Connectivity], B: int) -> _Plan:
    D, P, K, dev = model.num_dims, model.per_dim, len(conns), model.device
    nb = -(-D // B)
    order = conns[0].order
    masked = [model.masked_weights(c) for c in conns]
    hidden = [layer.out_features for layer in model.layers]
    # slot_units[l][k]: the unit of mask k in each slot of layer l (-1: padding); packed[l][k]: its finished
    # units in block order (the store's row order); counts[l]: (K, nb) units per mask and block
    slot_units, starts, packed, counts = [], [], [], []
    for li in range(len(model.layers)):
        blocks_of = [torch.div(c.hidden_degrees[li] - 1, B, rounding_mode="floor") for c in conns]  # block of each unit
        count = torch.stack([torch.bincount(bk, minlength=nb) for bk in blocks_of])           # (K, nb)
        st = [0] + torch.cumsum(count.max(0).values, 0).tolist()
        per_k, pk = [], []
        for bk in blocks_of:
            su = torch.full((st[-1],), -1, dtype=torch.long)
            for b in range(nb):
                units = (bk == b).nonzero().flatten()
                su[st[b]:st[b] + len(units)] = units
            per_k.append(su)
            pk.append(su[su >= 0])
        slot_units.append(per_k)
        starts.append(st)
        packed.append(pk)
        counts.append(count)
    # rows of layer l a block start reads: the largest mask's count of units in earlier blocks
    finished = [[0] + torch.cumsum(c, 1).max(0).values.tolist() for c in counts]

    def gather(w: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """w[rows][:, cols] with -1 meaning a zero row or column."""
        w = F.pad(w, (0, 1, 0, 1))
        return w[rows.to(dev)][:, cols.to(dev)]

    def finished_part(w: torch.Tensor, li: int, k: int, b: int, rows: slice) -> torch.Tensor:
        """Rows `rows` of w (columns: mask k's units of layer li in packed order) against the units of blocks
        before b, zero-padded to finished[li][b] columns."""
        done = int(counts[li][k, :b].sum())
        return F.pad(w[rows, :done], (0, finished[li][b] - done))

    prev_w, cur_w, bias, store = [], [], [], []
    for li, layer in enumerate(model.layers):
        st = starts[li]
        bvec = torch.stack([F.pad(layer.bias, (0, 1))[slot_units[li][k].to(dev)] for k in range(K)])[..., None]
        if li == 0:  # inputs in rank order; the block's inputs are always B wide (the last block's are padded)
            full = torch.stack([gather(masked[k][0], slot_units[0][k], order) for k in range(K)])   # (K, R, D)
            full = F.pad(full, (0, nb * B - D))
            prev_w.append([full[:, st[b]:st[b + 1], :b * B].contiguous() if K == 1 else None for b in range(nb)])
            cur_w.append([full[:, st[b]:st[b + 1], b * B:(b + 1) * B].contiguous() for b in range(nb)])
        else:
            by_packed = [gather(masked[k][li], slot_units[li][k], packed[li - 1][k]) for k in range(K)]
            by_slot = torch.stack([gather(masked[k][li], slot_units[li][k], slot_units[li - 1][k]) for k in range(K)])
            below = starts[li - 1]
            prev_w.append([torch.stack([finished_part(by_packed[k], li - 1, k, b, slice(st[b], st[b + 1]))
                                        for k in range(K)]) for b in range(nb)])
            cur_w.append([by_slot[:, st[b]:st[b + 1], below[b]:below[b + 1]].contiguous() for b in range(nb)])
        bias.append([bvec[:, st[b]:st[b + 1]].contiguous() for b in range(nb)])
        rows_l = []
        for b in range(nb):  # where each slot of block b is stored once the block is done
            dest = torch.full((K, st[b + 1] - st[b]), K * hidden[li], dtype=torch.long)
            for k in range(K):
                c = int(counts[li][k, b])
                dest[k, :c] = k * hidden[li] + int(counts[li][k, :b].sum()) + torch.arange(c)
            rows_l.append(dest.flatten().to(dev))
        store.append(rows_l)
    first_units, first_by_rank, first_bias = [], [], None
    if K > 1:
        first_units = [torch.stack([torch.where(u >= 0, u, hidden[0]) for u in
                                    (su[starts[0][b]:starts[0][b + 1]] for su in slot_units[0])]).t()[..., None]
                       .to(dev) for b in range(nb)]
        by_rank = F.pad(model.layers[0].weight.detach()[:, order.to(dev)], (0, nb * B - D, 0, 1))
        first_by_rank = [by_rank[:, b * B:(b + 1) * B].contiguous() for b in range(nb)]
        first_bias = F.pad(model.layers[0].bias.detach(), (0, 1))[:, None]
    out_rows = (order[:, None] * P + torch.arange(P)[None, :]).flatten()            # generation order
    out_rows = F.pad(out_rows, (0, (nb * B - D) * P), value=-1)   # the last block's missing steps: zero rows
    L = len(model.layers) - 1
    by_packed = [gather(masked[k][L + 1], out_rows, packed[L][k]) for k in range(K)]
    out_prev = [torch.stack([finished_part(by_packed[k], L, k, b, slice(b * B * P, (b + 1) * B * P))
                             for k in range(K)]) for b in range(nb)]
    out_bias = [F.pad(model.out.bias, (0, 1))[out_rows[b * B * P:(b + 1) * B * P].to(dev)].view(1, -1, 1)
                for b in range(nb)]
    Q = 2 if model.levels == 2 else P   # a binary model's step gives its logits (0, f): a zero column first
    st = starts[L]
    by_slot = torch.stack([gather(masked[k][L + 1], out_rows, slot_units[L][k]) for k in range(K)])
    out_cur = [F.pad(by_slot[:, t * P:(t + 1) * P, st[t // B]:st[t // B + 1]], (0, 0, Q - P, 0)).contiguous()
               for t in range(D)]
    skip_prev = [None] * nb
    skip_col = [torch.zeros(K, B * Q, 1, device=dev)] * D
    if model.skip is not None:
        skip = gather(model.skip_features(masked[0][-1].t()).t(), out_rows, order)     # (nb B P, D) rank order
        skip = F.pad(skip, (0, nb * B - D))
        skip_prev = [skip[b * B * P:(b + 1) * B * P, :b * B].contiguous() for b in range(nb)]
        skip_col = [F.pad(skip[(t // B) * B * P:(t // B + 1) * B * P, t].view(B, P), (Q - P, 0)).view(1, B * Q, 1)
                    .expand(K, -1, -1) for t in range(D)]
    rank1_col = [torch.cat([skip_col[t], cur_w[0][t // B][:, :, t % B:t % B + 1]], 1) for t in range(D)]
    return _Plan(hidden, starts, finished, prev_w, cur_w, bias, store, first_units, first_by_rank, first_bias,
                 out_prev, out_bias, skip_prev, Q, out_cur, rank1_col)
