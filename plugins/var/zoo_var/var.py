"""VAR, stage 2: a GPT-style transformer that predicts a VQ-VAE's token maps scale by scale (arXiv 2404.02905).

The sequence is the concatenation of the code maps, coarse to fine. Position 0 is a start token carrying the
class; the tokens of scale k+1 read f_hat (the sum of the refined code maps of scales 0..k) area-downsampled to
their size. A block-wise causal mask lets every token of scale k attend to all tokens of scales <= k, whose
inputs depend only on the codes of scales < k, so the codes of scale k are predicted from coarser codes alone.
Class conditioning goes through adaptive layer norm; class dropout during training gives the unconditional
model that classifier-free guidance needs. Sampling runs one scale per step with a KV cache.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import InputError
from zoo.logits import Guidance
from zoo.model import Model

from .vqvae import VQVAE


class Attention(nn.Module):
    """Multi-head self-attention that can append its keys and values to a cache."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise InputError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        if cache is not None and "k_buf" in cache:  # preallocated for the whole sequence: append in place
            start = cache["len"]
            end = start + length
            cache["k_buf"][:, :, start:end] = k
            cache["v_buf"][:, :, start:end] = v
            cache["len"] = end
            k, v = cache["k_buf"][:, :, :end], cache["v_buf"][:, :, :end]
        elif cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block with adaptive layer norm: the condition sets each norm's scale and shift
    and each branch's gate."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None = None,
                cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        g1, s1, b1, g2, s2, b2 = self.ada(cond).unsqueeze(1).chunk(6, dim=-1)
        x = x + g1 * self.attn(self.norm1(x) * (1 + s1) + b1, mask, cache)
        return x + g2 * self.mlp(self.norm2(x) * (1 + s2) + b2)


class VAR(Model):
    """Next-scale prediction over a multi-scale VQ-VAE's codes. The VQ-VAE is part of the model (and of its
    weights file) but frozen: training updates the transformer only."""

    likelihood = "tokens"
    guidance = True  # the last class embedding is the null class, trained with class dropout
    #: completion is the VAR paper's zero-shot scheme, documented as such (README, VAR): zoo accepts any mask
    approximate_completion = ("the VAR paper's zero-shot scheme: at every scale the tokens whose cells lie wholly "
                              "inside the observed region are teacher-forced and the rest sampled; coarse scales "
                              "straddle any cut, so it is not the exact conditional")

    @classmethod
    def completes_any_mask(cls, config: dict) -> bool:
        """Every mask: exactly where the observed tokens come first in the scale order, else by the approximation
        above (accepted with approximate=True)."""
        return True

    @classmethod
    def check_config(cls) -> dict:
        tok = {"image_shape": [1, 8, 8], "channels": 8, "latent_dim": 4, "codebook_size": 2, "scales": [1, 2]}
        return {"tokenizer": tok, "num_classes": 2, "dim": 16, "depth": 1, "heads": 2}

    def __init__(self, tokenizer: dict[str, Any], tokenizer_card: str | None = None, num_classes: int = 0,
                 dim: int = 256, depth: int = 6, heads: int = 4, mlp_ratio: float = 4.0,
                 class_dropout: float = 0.1) -> None:
        super().__init__()
        self.vqvae = VQVAE(**tokenizer)
        self.vqvae.requires_grad_(False)
        self.tokenizer = self.vqvae.tokenizer
        self.image_shape = self.vqvae.image_shape
        self.num_classes = int(num_classes)
        self.tokenizer_card = tokenizer_card
        self.class_dropout = float(class_dropout)
        scales = self.vqvae.scales
        self.slices = self.vqvae.token_slices
        total = self.tokenizer.num_tokens
        level = torch.cat([torch.full((s * s,), k) for k, s in enumerate(scales)])
        self.register_buffer("level", level, persistent=False)
        # block-wise causal: a query of scale k sees every key of scale <= k
        self.register_buffer("block_mask", level[:, None] >= level[None, :], persistent=False)
        self.class_emb = nn.Embedding(self.num_classes + 1, dim)  # the last row is the null class
        self.start = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, total, dim) * 0.02)
        self.lvl = nn.Embedding(len(scales), dim)
        self.word = nn.Linear(self.vqvae.latent_dim, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.head_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.head_ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.head = nn.Linear(dim, self.vqvae.codebook_size)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self, init_adaln: float = 0.5, init_adaln_gate: float = 1e-5, init_head: float = 0.02) -> None:
        """The VAR reference's initialisation of the transformer (the frozen VQ-VAE is left alone): truncated
        normal with std sqrt(1 / (3 * dim)) for every linear layer and embedding (class, level, position,
        start; biases zero), the head's weights x0.02, each block's output projections (attention and MLP)
        divided by sqrt(2 * depth), and the adaptive norms' scale/shift weights x0.5 with their gates x1e-5,
        so that every block starts near the identity and no embedding dominates the input."""
        std = (1 / (3 * self.pos.shape[-1])) ** 0.5  # dim (the config is recorded after __init__)
        for name, mod in self.named_modules():
            if name.startswith("vqvae"):
                continue
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=std)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.Embedding):
                nn.init.trunc_normal_(mod.weight, std=std)
        for p in (self.start, self.pos):
            nn.init.trunc_normal_(p, std=std)
        self.head.weight.mul_(init_head)
        self.head_ada[1].weight.mul_(init_adaln)
        depth, dim = len(self.blocks), self.pos.shape[-1]
        for blk in self.blocks:
            blk.attn.proj.weight.div_((2 * depth) ** 0.5)
            blk.mlp[2].weight.div_((2 * depth) ** 0.5)
            w = blk.ada[1].weight.view(6, dim, dim)  # chunks: gate1, scale1, shift1, gate2, scale2, shift2
            w.mul_(init_adaln)
            for gate in (0, 3):
                w[gate].mul_(init_adaln_gate / init_adaln)

    def before_training(self) -> None:
        """Load the trained VQ-VAE named by `tokenizer_card` (stage 1) before training the transformer."""
        if self.tokenizer_card:
            import zoo
            trained = zoo.load(self.tokenizer_card)
            with torch.device("meta"):
                full = VQVAE(**trained.config).config  # the card's config with the defaults filled in
            if full != self.vqvae.config:
                raise InputError(f"the card's tokenizer config differs from {self.tokenizer_card}'s; copy that "
                                 "card's [config] into this card's config.tokenizer")
            self.vqvae.load_state_dict(trained.state_dict())

    def train(self, mode: bool = True) -> "VAR":
        super().train(mode)
        self.vqvae.eval()  # frozen: never in training mode
        return self

    # ---- the network --------------------------------------------------------------------------------
    def _cond(self, y: torch.Tensor | None, n: int) -> torch.Tensor:
        if y is None:
            y = torch.full((n,), self.num_classes, dtype=torch.long, device=self.device)
        return self.class_emb(y)

    def _embed(self, inputs: torch.Tensor, cond: torch.Tensor, start: int) -> torch.Tensor:
        """Transformer inputs for positions start.. : the start token at 0, word-embedded f_hat after."""
        parts = []
        if start == 0:
            parts.append(cond[:, None] + self.start)
        if inputs.shape[1]:
            parts.append(self.word(inputs))
        x = torch.cat(parts, 1)
        end = start + x.shape[1]
        return x + self.pos[:, start:end] + self.lvl(self.level[start:end])

    def _run(self, x: torch.Tensor, cond: torch.Tensor, mask: torch.Tensor | None,
             caches: list[dict[str, torch.Tensor]] | None = None) -> torch.Tensor:
        for i, blk in enumerate(self.blocks):
            x = blk(x, cond, mask, None if caches is None else caches[i])
        s, b = self.head_ada(cond).unsqueeze(1).chunk(2, dim=-1)
        return self.head(self.head_norm(x) * (1 + s) + b)

    def teacher_inputs(self, codes: list[torch.Tensor]) -> torch.Tensor:
        """Inputs of positions 1..T-1 from the code vectors of each scale (N, s*s, D_latent), coarse to fine.
        Differentiable in the code vectors, which the autoregressive-property test uses."""
        vq = self.vqvae
        f_hat, parts = 0, []
        for k in range(len(vq.scales) - 1):
            f_hat = f_hat + vq.refine(codes[k], k)
            parts.append(vq.next_input(f_hat, k))
        return torch.cat(parts, 1)

    def logits_from_codes(self, codes: list[torch.Tensor], y: torch.Tensor | None) -> torch.Tensor:
        """Logits (N, T, V) of every position given every scale's code vectors (teacher forcing)."""
        n = codes[0].shape[0]
        cond = self._cond(y, n)
        return self._run(self._embed(self.teacher_inputs(codes), cond, 0), cond, self.block_mask)

    def logits_all(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, T, V) of a whole token sequence under teacher forcing, in one pass."""
        codes = [self.vqvae.codebook(tokens[:, sl]) for sl in self.slices]
        return self.logits_from_codes(codes, y)

    # ---- the Model interface ----------------------------------------------------------------------
    def log_prob_tokens(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-likelihood of the code maps (nats per image); y None is the unconditional model."""
        logp = self.logits_all(tokens, y).float().log_softmax(-1)
        return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1).sum(1)

    def training_loss(self, x: torch.Tensor, y: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Cross-entropy of the code maps in nats per image; the class is dropped to null with class_dropout."""
        tokens = self.tokenizer.encode(x)
        if y is not None and self.class_dropout > 0:
            drop = torch.rand(len(y), generator=generator).to(y.device) < self.class_dropout
            y = torch.where(drop, torch.full_like(y, self.num_classes), y)
        return -self.log_prob_tokens(tokens, y).mean()

    def generation_steps(self, observed_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """One scale per step, coarse to fine."""
        return [torch.arange(sl.start, sl.stop) for sl in self.slices]

    def stepper(self, n: int, *, y: torch.Tensor | None = None, observed_mask: torch.Tensor | None = None,
                generator: torch.Generator | None = None, cfg: float | None = None) -> "ScaleStepper":
        return ScaleStepper(self, n, y, cfg)


class ScaleStepper:
    """One generation pass, one scale per step, with a KV cache: each step runs the transformer on that scale's
    tokens only (the core's reference recomputes the whole prefix from `logits_all`, and this must match it).
    With a class and a cfg scale, the batch runs twice (class and null class) and the logits are guided."""

    def __init__(self, model: VAR, n: int, y: torch.Tensor | None, cfg: float | None) -> None:
        self.m, self.n = model, n
        self.guided = y is not None and cfg is not None
        self.guidance = Guidance.of(cfg)  # the scale and, when the core gives one, its ramp over the scales
        cond = model._cond(y, n)
        if self.guided:
            cond = torch.cat([cond, model._cond(None, n)])
        self.cond = cond
        self.num_steps = len(model.vqvae.scales)
        batch = cond.shape[0]
        vq = model.vqvae
        self.f_hat = torch.zeros(batch, vq.latent_dim, vq.latent_size, vq.latent_size, device=model.device)
        self.inputs = torch.zeros(batch, 0, vq.latent_dim, device=model.device)  # inputs of positions 1..end
        total, dim = model.tokenizer.num_tokens, model.pos.shape[-1]
        # every block's keys and values for the whole sequence, appended in place (no copy of the prefix per step)
        self.caches: list[dict[str, Any]] = [
            {"k_buf": torch.empty(batch, blk.attn.heads, total, dim // blk.attn.heads, device=model.device),
             "v_buf": torch.empty(batch, blk.attn.heads, total, dim // blk.attn.heads, device=model.device),
             "len": 0} for blk in model.blocks]

    def positions(self, t: int) -> torch.Tensor:
        sl = self.m.slices[t]
        return torch.arange(sl.start, sl.stop)

    def logits(self, t: int) -> torch.Tensor:
        sl = self.m.slices[t]
        new = self.inputs[:, sl.start - 1:] if t else self.inputs
        out = self.m._run(self.m._embed(new, self.cond, sl.start), self.cond, None, self.caches)
        if self.guided:
            out = self.guidance.guide(out[:self.n], out[self.n:], t, self.num_steps)
        return out

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        vq = self.m.vqvae
        h = vq.embed_scale(tokens, t)
        self.f_hat = self.f_hat + (torch.cat([h, h]) if self.guided else h)  # both halves share the tokens
        if t + 1 < self.num_steps:
            self.inputs = torch.cat([self.inputs, vq.next_input(self.f_hat, t)], 1)


__all__ = ["VAR", "ScaleStepper"]
