"""The factorized softmax's log-probabilities, chunked: log p(v) = l[v] - logsumexp(l) with the logits
l = f @ proj + bias[pixel] of F features per pixel (F << L levels), computed a few pixels at a time so that the
(N, P, L) logits are never held whole, forward or backward (the backward recomputes each chunk's logits from the
saved log-normaliser). At CIFAR-10's 1,024 pixels x 256 levels that tensor is 100 MB a batch of 100, and the plain
path (`reference_log_prob`) spent most of a training step writing and re-reading it; `benchmarks/made_softmax.py`
measures the two side by side. Both give the same figures (float32 rounding)."""
from __future__ import annotations

import torch

#: logits per chunk (N x pixels x L floats): about 1 MB, so a chunk's logits stay in the core's cache
CHUNK_FLOATS = 1 << 18


def reference_log_prob(f: torch.Tensor, proj: torch.Tensor, bias: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """log p(values) (N, P) from features f (N, P, F), proj (F, L), bias (P, L): the whole logits at once."""
    logits = f @ proj + bias
    return logits.log_softmax(-1).gather(-1, values[..., None])[..., 0]


def _chunks(n: int, p: int, levels: int):
    step = max(1, CHUNK_FLOATS // max(1, n * levels))
    return [(s, min(s + step, p)) for s in range(0, p, step)]


def _logits(f: torch.Tensor, proj: torch.Tensor, bias: torch.Tensor, s: int, e: int) -> torch.Tensor:
    """Logits (N, e - s, L) of pixels s..e."""
    return torch.matmul(f[:, s:e], proj).add_(bias[s:e])


class _FactorizedLogProb(torch.autograd.Function):
    @staticmethod
    def forward(ctx, f, proj, bias, values):
        n, p, _ = f.shape
        out = f.new_empty(n, p)
        lse = f.new_empty(n, p)
        for s, e in _chunks(n, p, proj.shape[1]):
            logits = _logits(f, proj, bias, s, e)
            lse[:, s:e] = torch.logsumexp(logits, -1)
            out[:, s:e] = logits.gather(-1, values[:, s:e, None])[..., 0] - lse[:, s:e]
        ctx.save_for_backward(f, proj, bias, values, lse)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        f, proj, bias, values, lse = ctx.saved_tensors
        want_f, want_proj, want_bias = ctx.needs_input_grad[:3]
        n, p, _ = f.shape
        grad = grad.contiguous()
        gf = torch.empty_like(f) if want_f else None
        gproj = torch.zeros_like(proj) if want_proj else None
        gbias = torch.empty_like(bias) if want_bias else None
        for s, e in _chunks(n, p, proj.shape[1]):
            # d log p(v) / d logits = onehot(v) - softmax, times the incoming gradient
            g = _logits(f, proj, bias, s, e).sub_(lse[:, s:e, None]).exp_().mul_(-grad[:, s:e, None])
            g.scatter_add_(-1, values[:, s:e, None], grad[:, s:e, None])
            if want_bias:
                gbias[s:e] = g.sum(0)
            if want_f:
                gf[:, s:e] = g @ proj.t()
            if want_proj:
                gproj.addmm_(f[:, s:e].reshape(-1, f.shape[2]).t(), g.reshape(-1, g.shape[2]))
        return gf, gproj, gbias, None


def factorized_log_prob(f: torch.Tensor, proj: torch.Tensor, bias: torch.Tensor,
                        values: torch.Tensor) -> torch.Tensor:
    """log p(values) (N, P) in nats under the factorized softmax: features f (N, P, F), the shared map proj (F, L),
    the per-pixel bias (P, L), values (N, P) long. Chunked (see the module); under autocast or torch.compile it
    takes the plain path, which those transform as they do any other ops."""
    compiling = getattr(torch, "compiler", None) is not None and torch.compiler.is_compiling()
    if compiling or torch.is_autocast_enabled(f.device.type):
        return reference_log_prob(f, proj, bias, values)
    dtype = torch.promote_types(f.dtype, proj.dtype)
    return _FactorizedLogProb.apply(f.to(dtype).contiguous(), proj.to(dtype), bias.to(dtype), values.contiguous())
