"""Output heads: how a network's per-pixel parameters become logits over each sub-pixel's levels.

A family's network outputs `head.num_params` numbers per pixel; the head turns them into logits (log-probabilities
up to a constant) over the L levels of each of the pixel's C sub-pixels. Because every head ends in logits, the
core's sampler, temperature, top-k/top-p and exact log_prob work unchanged for every head. Three heads:

- `softmax`: the parameters are the logits themselves, C * L per pixel (today's default; the most flexible head,
  and the largest output layer: 256 numbers per 8-bit sub-pixel).
- `logistic`: a mixture of K discretized logistics (Salimans et al. 2017, PixelCNN++), 3K numbers per grey pixel.
  Level j in [0, L) has centre x_j = 2j / (L - 1) - 1 in [-1, 1] and covers x_j +- 1 / (L - 1); the first level
  takes the whole lower tail, the last the whole upper tail, so the L probabilities sum to one exactly.
- `gaussian`: the same with a Gaussian CDF (one component by default: a discretized Gaussian per sub-pixel).

Colour (C = 3), as PixelCNN++: one mixture component is shared by the pixel's channels, G's mean moves linearly
with R's value and B's with R's and G's (coefficients squashed by tanh). Channel c's logits are the exact
conditional log p(x_c | x_<c): the mixture weights are the posterior given the earlier channels' values, so
drawing R, then G, then B from their logits draws from the joint mixture, and the channels' log-probs sum to it.

Masses are computed in log space without cancellation: for the logistic, log(sigmoid(b) - sigmoid(a)) =
logsigmoid(b) + logsigmoid(-a) + log(1 - exp(a - b)), exact in both tails; for the Gaussian, log_ndtr on the side
of the tail the interval lies in. `log_prob` works in float64 whatever the parameters' dtype, and so do the
Gaussian's logits (a difference of two CDFs loses the digits of a narrow interval in float32); the logistic's
logits over all L levels, the sampler's per-step cost, need no subtraction and work in float32 (within 5e-5 of
the exact log-probabilities). Results come back in the parameters' dtype, at least float32.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .errors import InputError

if TYPE_CHECKING:  # torch is imported by the methods that compute: describing a card's head needs none
    import torch

HEADS = ("softmax", "logistic", "gaussian")
#: default number of mixture components for each mixture head
DEFAULT_MIXTURES = {"logistic": 10, "gaussian": 1}
#: log-scales are clamped to this range (PixelCNN++ uses -7 as the floor); in units of the [-1, 1] pixel range
LOG_SCALE_MIN, LOG_SCALE_MAX = -7.0, 7.0
#: the largest (rows x components x levels) block one `logits` call computes at once (bounds its memory)
CHUNK_ELEMENTS = 1 << 23


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate near 0 and far below it (Maechler 2012); each branch only ever sees
    arguments where it is finite, so the unused one cannot poison the gradient."""
    import torch
    near = x > -math.log(2)
    return torch.where(near, torch.log(-torch.expm1(torch.where(near, x, -1.0))),
                       torch.log1p(-torch.exp(torch.where(near, -1.0, x))))


class Head:
    """Turns per-pixel parameters (..., num_params) into logits (..., C, L) over each sub-pixel's levels."""

    name: str
    levels: int
    channels: int
    num_params: int

    def param_channels(self) -> torch.Tensor:
        """(num_params,) the channel each parameter belongs to. A network with channel-grouped masks (PixelCNN in
        colour) must let parameter p see, at the pixel itself, only the channels before `param_channels()[p]`."""
        raise NotImplementedError

    def logits(self, params: torch.Tensor, values: torch.Tensor | None = None,
               channel: int | None = None) -> torch.Tensor:
        """Logits (..., C, L) from params (..., num_params). `values` (..., C) long holds the pixel's tokens:
        channel c's logits use values[..., :c] only (grey heads ignore it). `channel` = c returns (..., 1, L)."""
        raise NotImplementedError

    def log_prob(self, params: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """log p(values[..., c] | values[..., :c]) in nats, (..., C): the logits' log-softmax at the values,
        computed at the values alone (what training needs)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for `zoo info`."""
        raise NotImplementedError

    def _check(self, params: torch.Tensor, values: torch.Tensor | None, need_values: bool) -> None:
        if params.shape[-1] != self.num_params:
            raise InputError(f"the {self.name} head takes {self.num_params} parameters per pixel, got "
                             f"{params.shape[-1]} (params of shape {tuple(params.shape)})")
        if values is None:
            if need_values:
                raise InputError(f"the {self.name} head over {self.channels} channels needs the pixel's values "
                                 f"(..., {self.channels}) for its later channels' logits")
            return
        if values.shape[-1] != self.channels or values.shape[:-1] != params.shape[:-1]:
            raise InputError(f"values must have shape {(*params.shape[:-1], self.channels)} for params of shape "
                             f"{tuple(params.shape)}, got {tuple(values.shape)}")


class SoftmaxHead(Head):
    """C * L free logits per pixel, channel-major (the layout every shipped softmax model's weights use)."""

    name = "softmax"

    def __init__(self, levels: int, channels: int = 1) -> None:
        self.levels, self.channels = int(levels), int(channels)
        self.num_params = self.channels * self.levels

    def param_channels(self) -> torch.Tensor:
        import torch
        return torch.arange(self.num_params) // self.levels

    def logits(self, params, values=None, channel=None):
        self._check(params, values, need_values=False)
        out = params.unflatten(-1, (self.channels, self.levels))
        return out if channel is None else out[..., channel:channel + 1, :]

    def log_prob(self, params, values):
        import torch.nn.functional as F
        self._check(params, values, need_values=True)
        # rows of L logits, contiguous: cross-entropy over a moved (strided) class dimension copied and reduced
        # across strides, 1.83x slower forward and backward at CIFAR-10's 1,024 pixels (benchmarks/softmax_head.py)
        flat = params.reshape(-1, self.levels)
        return -F.cross_entropy(flat, values.reshape(-1), reduction="none").view(values.shape)

    def describe(self) -> str:
        if self.levels == 2:
            return "softmax: 2 logits per sub-pixel (a Bernoulli)"
        return f"softmax: {self.levels} logits per sub-pixel"


class DiscretizedMixtureHead(Head):
    """A mixture of K discretized logistics (`cdf = "logistic"`) or Gaussians (`"gaussian"`) per pixel.

    Parameters per pixel, in order: K mixture logits (absent when K = 1), then for each channel c: K means,
    K log-scales and c * K coefficients (c' = 0..c-1, K each: channel c's mean gains tanh(coeff) * x_c'), so
    3K for a grey pixel and 10K for colour, as in PixelCNN++.
    """

    def __init__(self, cdf: str, levels: int, channels: int = 1, mixtures: int | None = None) -> None:
        import torch
        import torch.nn.functional as F
        if cdf not in DEFAULT_MIXTURES:
            raise InputError(f"a discretized mixture uses a 'logistic' or 'gaussian' CDF, got {cdf!r}")
        mixtures = DEFAULT_MIXTURES[cdf] if mixtures is None else mixtures
        if not isinstance(mixtures, int) or isinstance(mixtures, bool) or mixtures < 1:
            raise InputError(f"mixtures must be a positive integer, got {mixtures!r}")
        if int(levels) < 2:
            raise InputError(f"a discretized {cdf} needs at least 2 levels, got {levels}")
        self.name, self.levels, self.channels, self.mixtures = cdf, int(levels), int(channels), mixtures
        K, C = mixtures, self.channels
        self._pi = K if K > 1 else 0
        self.num_params = self._pi + sum((2 + c) * K for c in range(C))
        self._log_cdf = F.logsigmoid if cdf == "logistic" else torch.special.log_ndtr

    def param_channels(self) -> torch.Tensor:
        import torch
        K = self.mixtures
        return torch.cat([torch.zeros(self._pi, dtype=torch.long)]
                         + [torch.full(((2 + c) * K,), c, dtype=torch.long) for c in range(self.channels)])

    def describe(self) -> str:
        what = "discretized " + {"logistic": "logistic", "gaussian": "Gaussian"}[self.name]
        if self.mixtures > 1:
            what += f" mixture, {self.mixtures} components"
        dep = ", G linear in R and B in R, G within a pixel" if self.channels > 1 else ""
        return f"{self.name}: {what} over {self.levels} levels{dep} ({self.num_params} parameters per pixel)"

    # ---- the pieces ---------------------------------------------------------------------------------------
    def centre(self, tokens: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Level index -> its centre in [-1, 1]."""
        return tokens.to(dtype) * (2.0 / (self.levels - 1)) - 1.0

    def _split(self, params: torch.Tensor):
        import torch
        K = self.mixtures
        if self._pi:
            log_w, i = params[..., :K].log_softmax(-1), K
        else:
            log_w, i = params.new_zeros(*params.shape[:-1], 1), 0
        chans = []
        for c in range(self.channels):
            mean, log_scale = params[..., i:i + K], params[..., i + K:i + 2 * K].clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)
            i += 2 * K
            coeffs = [torch.tanh(params[..., i + j * K:i + (j + 1) * K]) for j in range(c)]
            i += c * K
            chans.append((mean, log_scale, coeffs))
        return log_w, chans

    def _work_dtype(self, params: torch.Tensor, grid: bool) -> torch.dtype:
        """The dtype the masses are computed in (see the module's docstring); float32 where a device lacks float64."""
        import torch
        if params.device.type == "mps" or (grid and self.name == "logistic"):
            return torch.promote_types(params.dtype, torch.float32)
        return torch.float64

    def _log_mass(self, centre: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                  first: torch.Tensor | None, last: torch.Tensor | None) -> torch.Tensor:
        """log P(level) of one component: the CDF's mass on [centre - h, centre + h], where the first level's
        interval reaches -inf and the last's +inf. Every branch stays finite, so gradients do too. With `first`
        None, `centre` is every level's, in order: the edge levels are the first and last columns."""
        import torch
        import torch.nn.functional as F
        h = 1.0 / (self.levels - 1)
        inv = torch.exp(-log_scale)
        lo, hi = (centre - h - mean) * inv, (centre + h - mean) * inv
        if self.name == "logistic":  # sigmoid(hi) - sigmoid(lo) = sigmoid(hi) sigmoid(-lo) (1 - exp(lo - hi))
            inner = F.logsigmoid(hi) + F.logsigmoid(-lo) + _log1mexp(-2 * h * inv)
        else:  # in the lower tail, where log_ndtr is accurate: mirror the intervals right of the mean
            flip = lo > 0
            a, b = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)
            log_b = torch.special.log_ndtr(b)
            inner = log_b + _log1mexp((torch.special.log_ndtr(a) - log_b).clamp(max=-1e-30))
        if first is None:
            return torch.cat([self._log_cdf(hi[..., :1]), inner[..., 1:-1], self._log_cdf(-lo[..., -1:])], dim=-1)
        return torch.where(first, self._log_cdf(hi), torch.where(last, self._log_cdf(-lo), inner))

    def _value_terms(self, values: torch.Tensor, c: int, dtype: torch.dtype):
        v = values[..., c]
        return self.centre(v, dtype)[..., None], (v == 0)[..., None], (v == self.levels - 1)[..., None]

    def _mean(self, mean: torch.Tensor, coeffs: list[torch.Tensor], x: list[torch.Tensor]) -> torch.Tensor:
        for j, coeff in enumerate(coeffs):
            mean = mean + coeff * x[j]
        return mean

    # ---- the head ----------------------------------------------------------------------------------------
    def logits(self, params, values=None, channel=None):
        import torch
        self._check(params, values, need_values=self.channels > 1 and channel != 0)
        if channel is not None and not 0 <= channel < self.channels:
            raise InputError(f"channel must be in 0..{self.channels - 1}, got {channel}")
        lead = params.shape[:-1]
        flat_p = params.reshape(-1, self.num_params)
        flat_v = None if values is None else values.reshape(-1, self.channels)
        rows = max(1, CHUNK_ELEMENTS // (self.mixtures * self.levels * (1 if channel is not None else self.channels)))
        if flat_p.shape[0] <= rows:
            out = self._logits(flat_p, flat_v, channel)
        else:
            out = torch.cat([self._logits(flat_p[s:s + rows], None if flat_v is None else flat_v[s:s + rows],
                                          channel) for s in range(0, flat_p.shape[0], rows)])
        return out.reshape(*lead, *out.shape[1:])

    def _logits(self, params: torch.Tensor, values: torch.Tensor | None, channel: int | None) -> torch.Tensor:
        import torch
        out_dtype, dtype = torch.promote_types(params.dtype, torch.float32), self._work_dtype(params, grid=True)
        params = params.to(dtype)
        log_w, chans = self._split(params)
        g_centre = self.centre(torch.arange(self.levels, device=params.device), dtype)
        last_c = self.channels - 1 if channel is None else channel
        out, x = [], []
        for c in range(last_c + 1):
            mean, log_scale, coeffs = chans[c]
            mean = self._mean(mean, coeffs, x)
            if channel is None or c == channel:
                mass = self._log_mass(g_centre, mean[..., None], log_scale[..., None], None, None)  # (M, K, L)
                out.append(torch.logsumexp(log_w[..., None] + mass, dim=-2))
            if c < last_c:  # the posterior over components given this channel's value
                centre, first, last = self._value_terms(values, c, dtype)
                log_w = (log_w + self._log_mass(centre, mean, log_scale, first, last)).log_softmax(-1)
                x.append(centre)
        return torch.stack(out, dim=-2).to(out_dtype)

    def log_prob(self, params, values):
        import torch
        self._check(params, values, need_values=True)
        out_dtype = torch.promote_types(params.dtype, torch.float32)  # never bfloat16 log-probs (under --amp)
        params = params.to(self._work_dtype(params, grid=False))
        log_w, chans = self._split(params)
        out, x = [], []
        for c, (mean, log_scale, coeffs) in enumerate(chans):
            mean = self._mean(mean, coeffs, x)
            centre, first, last = self._value_terms(values, c, params.dtype)
            joint = log_w + self._log_mass(centre, mean, log_scale, first, last)
            lp = torch.logsumexp(joint, dim=-1)
            out.append(lp)
            if c < self.channels - 1:
                log_w = joint - lp[..., None]
                x.append(centre)
        return torch.stack(out, dim=-1).to(out_dtype)


def make_head(name: str, levels: int, channels: int = 1, mixtures: int | None = None) -> Head:
    """The head called `name` ("softmax", "logistic" or "gaussian") for `channels` sub-pixels of `levels` levels.
    `mixtures` (components) applies to the mixture heads: 10 for logistic, 1 for gaussian by default."""
    if name not in HEADS:
        raise InputError(f"head must be one of {', '.join(repr(h) for h in HEADS)}, got {name!r}")
    if name == "softmax":
        if mixtures is not None:
            raise InputError(f"mixtures={mixtures!r} applies to the 'logistic' and 'gaussian' heads, not "
                             "'softmax'; drop it or choose a mixture head")
        return SoftmaxHead(levels, channels)
    return DiscretizedMixtureHead(name, levels, channels, mixtures)
