"""PixelCNN (van den Oord et al. 2016, arXiv 1601.06759) and Gated PixelCNN (arXiv 1606.05328).

Plain: a 7x7 mask-A convolution, residual blocks with 3x3 mask-B convolutions, 1x1 output layers.
Gated: a vertical stack (rows above, shifted down one row) and a horizontal stack (pixels to the left)
with tanh x sigmoid gates, v->h 1x1 links, residual and skip connections and optional class conditioning,
so no blind spot. Outputs: an output head (zoo.heads) per pixel: a softmax over `levels` values per sub-pixel
(2 for binarized data, 256 for 8-bit; the default), or for 8-bit data a discretized logistic mixture (PixelCNN++)
or Gaussian, whose colour version adds PixelCNN++'s linear dependence of G on R and of B on R, G.

Colour (C = 3): the R -> G -> B dependency within a pixel (arXiv 1601.06759, section 3.4). Every feature map
is split into C colour groups; at the centre tap, group g of a layer's output sees input groups < g (mask A,
first layer) or <= g (mask B, every later layer, the 1x1 convolutions and the output layers), so R is
predicted from the pixels before, G also from R, B from R and G. Taps at earlier pixels see every group; the
output layer gives each head parameter the group of the channel it belongs to (`Head.param_channels`). The
gated model's vertical stack only ever reaches the horizontal stack from the row above, so it needs no groups.
Generation order is pixel by pixel, channel by channel within a pixel (`generation_order`). For C = 1 the
groups collapse and the masks are the grayscale ones.

Sampling: `CachedStepper` computes, at each pixel, each layer's activation at that pixel only (and, for the
gated model, the vertical stack one row at a time), keeping every layer's activations in a cache, so one
sample costs about one forward pass (C passes' worth at the current pixel for colour, one per channel). The
naive reference the core builds from `logits_all` (`Model.reference_stepper`) is what it must match.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.completion import any_mask_hint
from zoo.errors import InputError
from zoo.heads import make_head


def colour_groups(size: int, colours: int, period: int) -> torch.Tensor:
    """The colour group (0 = R, 1 = G, 2 = B) of each of `size` channels that repeat every `period`: an image's
    C channels (period C), a hidden map of h (period h), gate pre-activations of 2h (period h: a channel and its
    gate share a group), output logits of C * levels (period C * levels)."""
    return torch.arange(size) % period * colours // period


def centre_mask(cout: int, cin: int, mask_type: str, colours: int = 1, out_period: int | None = None,
                in_period: int | None = None, out_groups: torch.Tensor | None = None) -> torch.Tensor:
    """(cout, cin) connections allowed at the centre tap: output group g sees input groups < g (mask A) or
    <= g (mask B). With one colour: nothing (A) or everything (B). `out_groups` (cout,) gives the output
    channels' groups explicitly (an output head's parameters)."""
    if mask_type not in ("A", "B"):
        raise InputError(f"mask type must be 'A' or 'B', got {mask_type!r}")
    g_out = (colour_groups(cout, colours, out_period or cout) if out_groups is None else out_groups)[:, None]
    g_in = colour_groups(cin, colours, in_period or cin)[None, :]
    return (g_out > g_in if mask_type == "A" else g_out >= g_in).float()


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution that sees only pixels before the centre in raster order, and at the centre the
    colour groups that mask A (earlier groups) or mask B (earlier and the same group) allow. k = 1 gives the
    masked 1x1 convolutions that keep colour groups apart."""

    def __init__(self, cin: int, cout: int, k: int, mask_type: str, colours: int = 1,
                 out_period: int | None = None, in_period: int | None = None,
                 out_groups: torch.Tensor | None = None) -> None:
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones(cout, cin, k, k)
        mask[:, :, k // 2, k // 2:] = 0
        mask[:, :, k // 2 + 1:] = 0
        mask[:, :, k // 2, k // 2] = centre_mask(cout, cin, mask_type, colours, out_period, in_period, out_groups)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    def at(self, padded: torch.Tensor, i: int, j: int) -> torch.Tensor:
        """The output at (i, j) from an input cache padded by k // 2 on every side -> (N, cout)."""
        k = self.kernel_size[0]
        patch = padded[:, :, i:i + k, j:j + k]
        return torch.einsum("nckl,ockl->no", patch, self.weight * self.mask) + self.bias


class ResidualBlock(nn.Module):
    """PixelCNN's residual block: ReLU, 1x1 to h/2, ReLU, 3x3 mask B, ReLU, 1x1 back to h, plus the input."""

    def __init__(self, h: int, colours: int = 1) -> None:
        super().__init__()
        self.a = MaskedConv2d(h, h // 2, 1, "B", colours)
        self.b = MaskedConv2d(h // 2, h // 2, 3, "B", colours)
        self.c = MaskedConv2d(h // 2, h, 1, "B", colours)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c(F.relu(self.b(F.relu(self.a(F.relu(x))))))


class GatedLayer(nn.Module):
    """One gated layer: vertical stack conv over the rows above (and this row), horizontal conv over this row
    up to the pixel (excluding it in the first layer), v->h link from the row above, gates, skip and residual."""

    def __init__(self, cin: int, h: int, k: int, first: bool, num_classes: int, colours: int = 1) -> None:
        super().__init__()
        self.k, self.first, self.h = k, first, h
        self.v = nn.Conv2d(cin, 2 * h, (k // 2 + 1, k))
        self.hconv = nn.Conv2d(cin, 2 * h, (1, k // 2 + 1))
        hmask = torch.ones(2 * h, cin, 1, k // 2 + 1)
        # the pixel itself: mask A (earlier colour groups only; nothing in grayscale) in the first layer, B after
        hmask[:, :, 0, -1] = centre_mask(2 * h, cin, "A" if first else "B", colours, h, cin if first else h)
        self.register_buffer("hmask", hmask, persistent=False)
        self.v2h = nn.Conv2d(2 * h, 2 * h, 1)  # from the row above: every colour group may be seen
        self.h_out = MaskedConv2d(h, h, 1, "B", colours)
        self.skip = MaskedConv2d(h, h, 1, "B", colours)
        self.cond = nn.Embedding(num_classes, 2 * h) if num_classes else None

    @staticmethod
    def gate(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v: torch.Tensor, h: torch.Tensor, y: torch.Tensor | None):
        k = self.k
        c = self.cond(y)[:, :, None, None] if (self.cond is not None and y is not None) else 0
        v_pre = self.v(F.pad(v, (k // 2, k // 2, k // 2, 0))) + c                   # row i sees rows <= i
        h_pre = F.conv2d(F.pad(h, (k // 2, 0, 0, 0)), self.hconv.weight * self.hmask, self.hconv.bias) + c
        h_pre = h_pre + self.v2h(F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1])           # v from the row above
        gated = self.gate(h_pre)
        h_new = self.h_out(gated) + (0 if self.first else h)
        return self.gate(v_pre), h_new, self.skip(gated)


class PixelCNN(zoo.Model):
    """A PixelCNN over pixel tokens. `kind` = "gated" (no blind spot) or "plain" (mask A/B convolutions);
    C = 1 (grayscale) or C = 3 (colour, R -> G -> B within a pixel). `head` = "softmax" (default), "logistic"
    (`mixtures` components, 10 by default) or "gaussian" (1 by default): see zoo.heads."""

    @classmethod
    def check_config(cls) -> dict:
        return {"image_shape": [1, 3, 3], "levels": 2, "hidden": 8, "layers": 2, "num_classes": 2}

    def __init__(self, image_shape=(1, 28, 28), levels: int = 2, kind: str = "gated", hidden: int = 32,
                 layers: int = 8, kernel: int = 3, out_hidden: int | None = None, num_classes: int = 0,
                 head: str = "softmax", mixtures: int | None = None) -> None:
        super().__init__()
        self.image_shape = tuple(int(s) for s in image_shape)
        c = self.image_shape[0]
        if c not in (1, 3):
            raise InputError(f"this PixelCNN models grayscale (C = 1) or colour (C = 3) images, got C = {c}")
        if kind not in ("gated", "plain"):
            raise InputError(f"kind must be 'gated' or 'plain', got {kind!r}")
        if kernel % 2 == 0 or kernel < 3:
            raise InputError(f"kernel must be odd and >= 3, got {kernel}")
        out_hidden = out_hidden or hidden
        widths = {"hidden": hidden, "out_hidden": out_hidden, **({"hidden / 2": hidden // 2} if kind == "plain" else {})}
        uneven = {k: v for k, v in widths.items() if v % c or v < c}
        if uneven:
            raise InputError(f"a colour PixelCNN splits its feature maps into {c} colour groups, so "
                             + ", ".join(f"{k} ({v})" for k, v in uneven.items())
                             + f" must be a positive multiple of {c}")
        if levels == 2 and head != "softmax":
            raise InputError(f"head={head!r} is for 8-bit (many-level) data; for binary images (levels = 2) use "
                             "head='softmax'")
        self.output_head = make_head(head, levels, c, mixtures)
        self.tokenizer = zoo.PixelTokenizer(levels, self.image_shape)
        self.levels, self.kind, self.num_classes = int(levels), kind, int(num_classes)
        if kind == "plain":
            self.stem = MaskedConv2d(c, hidden, 7, "A", c)
            self.blocks = nn.ModuleList(ResidualBlock(hidden, c) for _ in range(layers))
        else:
            self.gated = nn.ModuleList(GatedLayer(c if i == 0 else hidden, hidden, 7 if i == 0 else kernel, i == 0,
                                                  self.num_classes, c) for i in range(layers))
        self.out1 = MaskedConv2d(hidden, out_hidden, 1, "B", c)
        self.out2 = MaskedConv2d(out_hidden, self.output_head.num_params, 1, "B", c,
                                 out_groups=self.output_head.param_channels())
        _, hh, ww = self.image_shape
        # pixel by pixel in raster order, R, G, B within a pixel (tokens are laid out (C, H, W))
        self.generation_order = (torch.arange(c)[None, :] * hh * ww + torch.arange(hh * ww)[:, None]).flatten()

    def encode_inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_values(tokens).view(-1, *self.image_shape)

    def token_values(self, tokens: torch.Tensor) -> torch.Tensor:
        """Each token's input value in [-1, 1] (any shape): what the network reads for it."""
        return tokens.float() / (self.levels - 1) * 2 - 1

    def features(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "plain":
            h = self.stem(x)
            for block in self.blocks:
                h = block(h)
            return F.relu(h)
        v = h = x
        skip = 0
        for layer in self.gated:
            v, h, s = layer(v, h, y)
            skip = skip + s
        return F.relu(skip)

    def receptive_field(self, row: int | None = None, col: int | None = None) -> tuple[int, int]:
        """How many of a pixel's predecessors (raster order) its prediction depends on, found by a gradient
        (8 random inputs and the model's own weights): (pixels that reach it, pixels before it). Default: the
        bottom-centre pixel, the one that has the most to see. Masks make everything at or after it unreachable."""
        c, hh, ww = self.image_shape
        row = hh - 1 if row is None else row
        col = ww // 2 if col is None else col
        # 8 random inputs: a ReLU that is off for one input rarely is for all of them
        x = torch.rand(8, c, hh, ww, generator=torch.Generator().manual_seed(0)).to(self.device).requires_grad_()
        y = torch.zeros(8, dtype=torch.long, device=self.device) if self.num_classes else None
        with torch.enable_grad():
            f = self.out2(F.relu(self.out1(self.features(x, y))))
            f[:, :, row, col].sum().backward()
        seen = (x.grad.abs().sum((0, 1)) > 0).flatten()
        before = row * ww + col
        if bool(seen[before + (0 if c == 1 else 1):].any()):
            raise AssertionError(f"pixel ({row}, {col}) depends on a later pixel: the masks are broken")
        return int(seen[:before].sum()), before

    def head_params(self, tokens: torch.Tensor, y: torch.Tensor | None = None):
        """The head's parameters (N, H*W, num_params) of every pixel and the pixels' values (N, H*W, C)."""
        f = self.out2(F.relu(self.out1(self.features(self.encode_inputs(tokens), y))))
        n = f.shape[0]
        return f.flatten(2).transpose(1, 2), tokens.view(n, self.image_shape[0], -1).transpose(1, 2)

    def logits_all(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, T, levels) of every sub-pixel given the tokens (N, T) (laid out (C, H, W))."""
        params, values = self.head_params(tokens, y)
        logits = self.output_head.logits(params, values)  # (N, H*W, C, levels)
        return logits.transpose(1, 2).reshape(tokens.shape[0], -1, self.levels)

    def log_prob_tokens(self, tokens: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(x) in nats: the sum over sub-pixels of the head's log-probability at the observed value."""
        params, values = self.head_params(tokens, y)
        return self.output_head.log_prob(params, values).transpose(1, 2).flatten(1).sum(1)

    def generation_steps(self, observed_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Raster order (R, G, B within a pixel); a completion mask must be a raster prefix."""
        if observed_mask is not None:
            k = int(observed_mask.sum())
            if not bool(observed_mask[self.generation_order][:k].all()):
                raise InputError("PixelCNN generates in raster order, so it completes masks whose observed pixels "
                                 f"are a raster prefix: top-half or first:K. {any_mask_hint()}")
        return list(self.generation_order.reshape(-1, 1))

    def stepper(self, n: int, *, y=None, observed_mask=None, generator=None, cfg=None) -> "CachedStepper":
        self.generation_steps(observed_mask)  # refuses a mask that is not a raster prefix
        return CachedStepper(self, n, y)


class CachedStepper:
    """Raster sampling at about the cost of one forward pass: each layer's activation at a pixel is computed
    once, when the pixel is reached, from cached activations of the layer below (all earlier in raster order);
    the gated model's vertical stack is computed one row at a time, when the row above is complete.

    A CPU step is bound by the number of torch calls, so everything that does not change within a call is
    prepared once (`_GatedWeights`): masked weights, the v->h link and every bias folded into one per-row term,
    the 1x1 output and skip convolutions of all layers merged into one product. The horizontal stack is
    pushed forward rather than gathered: when a layer's input at (i, j) is final, one product adds its part to
    the pre-activations of (i, j) and of the pixels right of it that its kernel reaches (`acc`). Per pixel and
    layer that leaves that product, a tanh, a multiply-add and the residual product
    (sigmoid(b) = (1 + tanh(b / 2)) / 2).
    """

    def __init__(self, model: PixelCNN, n: int, y: torch.Tensor | None) -> None:
        self.m, self.n, self.y = model, n, y
        self.C, self.H, self.W = C, H, W = model.image_shape
        self.num_steps = C * H * W
        dev = model.device
        self.head = [_masked_1x1(model.out1), _masked_1x1(model.out2)]      # (W^T, bias) of the output layers
        L_ = model.levels
        if model.output_head.name == "softmax":  # channel c's logits are its own slice of the output layer
            w2, b2 = self.head[1]
            self.channel_out = [(w2[:, c * L_:(c + 1) * L_].contiguous(), b2[c * L_:(c + 1) * L_]) for c in range(C)]
            if L_ == 2:  # the sampler's shortcut (Stepper.logit_gaps): l1 - l0 of a channel by one product
                self.gap_out = [(w[:, 1:] - w[:, :1], b[1:] - b[:1]) for w, b in self.channel_out]
                self.logit_gaps = self._logit_gaps
        else:
            self.channel_out = None
        if model.kind == "plain":
            zeros = lambda c, pad_h, pad_w: torch.zeros(n, c, H + 2 * pad_h, W + 2 * pad_w, device=dev)  # noqa: E731
            self.x = zeros(C, 3, 3)                                               # stem input, padded by 3
            hidden = model.stem.out_channels
            self.h = [zeros(hidden, 0, 0) for _ in range(len(model.blocks) + 1)]      # block inputs
            self.mid = [zeros(hidden // 2, 1, 1) for _ in model.blocks]               # 3x3 inputs, padded by 1
            self.stem_w = model.stem.weight * model.stem.mask
            self.blocks = [(_masked_1x1(b.a), b.b.weight * b.b.mask, b.b.bias, _masked_1x1(b.c)) for b in model.blocks]
        else:
            g = self.g = _GatedWeights(model, n, y)
            L, h = len(model.gated), model.gated[0].h
            ks = [layer.k for layer in model.gated]
            cins = [C] + [h] * (L - 1)
            # vertical-stack inputs, padded top by k//2 and left/right by k//2; channels last, as the kernels, which
            # takes oneDNN's direct convolution for a row (about 1.5x faster here than channels first)
            cl = torch.channels_last
            self.v_in = [torch.zeros(n, c, H + k // 2, W + 2 * (k // 2), device=dev).contiguous(memory_format=cl)
                         for c, k in zip(cins, ks)]
            k0 = ks[0]
            self.v_in0_at = [self.v_in[0][:, :, i + k0 // 2, j + k0 // 2] for i in range(H) for j in range(W)]
            # acc[l][:, j]: layer l's h-stack pre-activation at (row, j) so far: the row's term (biases, class, the
            # v->h link), then the parts pushed by inputs left of j; kw - 1 spare columns take the row end's pushes
            self.acc = [torch.zeros(n, W + kw - 1, 2 * h, device=dev) for kw in g.kw]
            for a, row0 in zip(self.acc, g.row0):
                a[:, :W] = row0
            self.acc_row = [a[:, :W] for a in self.acc]
            self.acc_row2d = [a[0, :W] for a in self.acc]     # one image: a plain (W, 2h) matrix
            self.acc_at = [[a[:, j:j + kw].view(n, kw * 2 * h) for j in range(W)] for a, kw in zip(self.acc, g.kw)]
            self.pre_at = [[a[:, j] for j in range(W)] for a in self.acc]
            self.halves_at = [[p.chunk(2, 1) for p in pre] for pre in self.pre_at]
            kw0 = g.kw[0]
            self.push0_at = [self.acc[0][:, j + 1:j + kw0].view(n, (kw0 - 1) * 2 * h) for j in range(W)]
            # a colour pixel is recomputed at each channel's step; until its last, pre-activations go here
            self.pre_buf = [torch.empty(n, 2 * h, device=dev) for _ in range(L)]
            self.buf_halves = [p.chunk(2, 1) for p in self.pre_buf]
            # the h-stack input at the pixel: the image's values for the first layer, then one buffer that the
            # residual products update in place (layer l + 1's input is layer l's plus its output product)
            self.input0 = torch.zeros(n, C, device=dev)
            self.input0_col = [self.input0[:, c] for c in range(C)]
            self.residual = torch.zeros(n, h, device=dev)
            self.inputs = [self.input0] + [self.residual] * (L - 1)
            self.gates = torch.zeros(n, L, h + 1, device=dev)  # every layer's gate output, and a 1 for the biases
            self.gates[:, :, h] = 1
            self.gate_out = [self.gates[:, l_, :h] for l_ in range(L)]   # where each layer's gate output goes
            self.gate_rows = [self.gates[:, l_] for l_ in range(L)]      # ... read with its constant 1
            self.gates_flat = self.gates.view(n, -1)
            # layers 1.. at each column: (acc, taps, pre-activation, its halves, gate out, gate row, output 1x1)
            self.layers_at = [[(self.acc_at[l_][j], g.hcat[l_], self.pre_at[l_][j], *self.halves_at[l_][j],
                                self.gate_out[l_], self.gate_rows[l_], g.h_out[l_] if l_ + 1 < L else None)
                               for l_ in range(1, L)] for j in range(W)]
        self.values = torch.zeros(n, C, dtype=torch.long, device=dev)  # the current pixel's tokens (the head's)
        # each token's input value, as the naive pass computes it
        self.level_value = model.token_values(torch.arange(model.levels, device=dev))

    def positions(self, t: int) -> torch.Tensor:
        return self.m.generation_order[t:t + 1]

    # ---- plain ----
    def _plain_pixel(self, i: int, j: int) -> torch.Tensor:
        m = self.m
        h = torch.einsum("nckl,ockl->no", self.x[:, :, i:i + 7, j:j + 7], self.stem_w) + m.stem.bias
        self.h[0][:, :, i, j] = h
        for b, (a, w3, b3, c) in enumerate(self.blocks):
            self.mid[b][:, :, i + 1, j + 1] = torch.addmm(a[1], F.relu(h), a[0]).relu_()
            mid = F.relu(torch.einsum("nckl,ockl->no", self.mid[b][:, :, i:i + 3, j:j + 3], w3) + b3)
            h = h + torch.addmm(c[1], mid, c[0])
            self.h[b + 1][:, :, i, j] = h
        return F.relu(h)

    # ---- gated ----
    def _gated_row(self, r: int) -> None:
        """Vertical stack of row r, every layer (row r of the input is complete), and the h-stack's per-row
        term of row r + 1 (biases, class, and the v->h link from row r)."""
        g, layers, W = self.g, self.m.gated, self.W
        for l_, layer in enumerate(layers):
            k = layer.k
            # input rows r - k//2 .. r through the vertical kernel: (N, 2h, 1, W), gate halves pre-scaled
            pre = F.conv2d(self.v_in[l_][:, :, r:r + k // 2 + 1], g.v[l_], g.v_bias[l_])
            if g.v_cond[l_] is not None:
                pre = pre + g.v_cond[l_][:, :, None, None]
            # the v->h link: the next row's h-stack term (channels last: pre is already (N * W, 2h) in memory)
            rows = pre.permute(0, 2, 3, 1).reshape(-1, pre.shape[1])
            if self.n == 1:
                torch.addmm(g.row0_2d[l_], rows, g.v2h[l_], out=self.acc_row2d[l_])
            else:
                torch.add(g.row0[l_], (rows @ g.v2h[l_]).view(self.n, W, -1), out=self.acc_row[l_])
            if l_ + 1 < len(layers):
                kn = layers[l_ + 1].k
                a, b = pre.tanh_().chunk(2, 1)
                # 2 tanh(a) sigmoid(b): the next layer's vertical kernel reads it at half weight
                torch.addcmul(a, a, b, out=self.v_in[l_ + 1][:, :, r + kn // 2:r + kn // 2 + 1, kn // 2:kn // 2 + W])

    def _gated_pixel(self, i: int, j: int, final: bool) -> torch.Tensor:
        """The skip sum at (i, j). `final`: the pixel's inputs are all set (its last channel's step), so each
        layer pushes its input's part to the pixels on its right as it computes its own pre-activation."""
        g, L = self.g, len(self.m.gated)
        if final and self.C == 1:  # grayscale: every view of the pixel prepared (`layers_at`), no branches
            pre, (a, b) = self.pre_at[0][j], self.halves_at[0][j]
            pre.tanh_()
            torch.addcmul(a, a, b, out=self.gate_out[0])
            residual = self.residual
            torch.mm(self.gate_rows[0], g.h_out[0], out=residual)
            for acc, hcat, pre, a, b, gate, row, h_out in self.layers_at[j]:
                acc.addmm_(residual, hcat)
                pre.tanh_()
                torch.addcmul(a, a, b, out=gate)
                if h_out is not None:
                    residual.addmm_(row, h_out)
            return torch.mm(self.gates_flat, g.skip).relu_()
        inputs = self.inputs
        for l_ in range(L):
            if l_ == 0 and self.C == 1:      # mask A: the first layer sees nothing of its own pixel
                pre, (a, b) = self.pre_at[0][j], self.halves_at[0][j]
            elif final and l_ > 0:           # this pixel's part and its pushes to the right, in one product
                self.acc_at[l_][j].addmm_(inputs[l_], g.hcat[l_])
                pre, (a, b) = self.pre_at[l_][j], self.halves_at[l_][j]
            else:                            # the pixel's own tap only; pushes wait for its final inputs
                pre, (a, b) = self.pre_buf[l_], self.buf_halves[l_]
                torch.addmm(self.pre_at[l_][j], inputs[l_], g.centre[l_], out=pre)
            pre.tanh_()
            torch.addcmul(a, a, b, out=self.gate_out[l_])                 # 2 tanh(a) sigmoid(b)
            if l_ + 1 < L:
                if l_ == 0:
                    torch.mm(self.gate_rows[0], g.h_out[0], out=self.residual)
                else:
                    self.residual.addmm_(self.gate_rows[l_], g.h_out[l_])
        return torch.mm(self.gates_flat, g.skip).relu_()

    def _hidden(self, t: int) -> tuple[torch.Tensor, int]:
        """The output layers' hidden units at step t's pixel, and the step's channel."""
        # colour: the pixel's activations are recomputed for each channel, as its earlier channels arrive;
        # after the last channel's step they are final, since no unit at a pixel sees the pixel's last channel
        p, c = divmod(t, self.C)
        i, j = divmod(p, self.W)
        feat = self._plain_pixel(i, j) if self.m.kind == "plain" else self._gated_pixel(i, j, c == self.C - 1)
        w1, b1 = self.head[0]
        return torch.addmm(b1, feat, w1).relu_(), c

    def _logit_gaps(self, t: int) -> torch.Tensor:
        """logits(t)[..., 1] - logits(t)[..., 0] of a binary softmax model, (N, 1)."""
        hidden, c = self._hidden(t)
        w, b = self.gap_out[c]
        return torch.addmm(b, hidden, w)

    def logits(self, t: int) -> torch.Tensor:
        hidden, c = self._hidden(t)
        w2, b2 = self.head[1]
        if self.channel_out is not None:
            w, b = self.channel_out[c]
            return torch.addmm(b, hidden, w).unsqueeze(1)
        out = torch.addmm(b2, hidden, w2)
        return self.m.output_head.logits(out[:, None], self.values[:, None], channel=c)[:, 0]

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        p, c = divmod(t, self.C)
        i, j = divmod(p, self.W)
        if self.channel_out is None:
            self.values[:, c] = tokens[:, 0]
        if self.m.kind == "plain":
            self.x[:, c, i + 3, j + 3] = self.level_value[tokens[:, 0]]
            return
        torch.index_select(self.level_value, 0, tokens.view(-1), out=self.input0_col[c])
        if c == self.C - 1:
            self.v_in0_at[p].copy_(self.input0)
            self.push0_at[j].addmm_(self.input0, self.g.push0)   # the first layer's part of the pixels right of it
            if self.C > 1:
                self.input0.zero_()
            if j == self.W - 1 and i + 1 < self.H:
                self._gated_row(i)  # the row is complete: the vertical stack of the next row can see it


def _masked_1x1(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A 1x1 convolution as (W^T, bias) for torch.addmm, its mask (if any) applied once."""
    w = conv.weight * conv.mask if isinstance(conv, MaskedConv2d) else conv.weight
    return w[:, :, 0, 0].t().contiguous(), conv.bias


class _GatedWeights:
    """A gated PixelCNN's weights arranged for CachedStepper, gate halves pre-scaled: the b half of every gate
    pre-activation by 1/2 (so tanh gives both gates), the 1x1 outputs by 1/2 (they read 2 tanh(a) sigmoid(b)).
    A layer's horizontal kernel as pushes: tap d (0 = the pixel itself, d = the pixel d to the right) maps the
    layer's input at a pixel to its part of the pre-activation d pixels on."""

    def __init__(self, model: PixelCNN, n: int, y: torch.Tensor | None) -> None:
        layers = model.gated
        h = self.h = layers[0].h
        W = model.image_shape[2]
        scale = torch.cat([torch.ones(h), torch.full((h,), 0.5)]).to(model.device)       # (2h,)
        self.kw, self.hcat, self.centre, self.v2h, self.row0, self.row0_2d, self.h_out = [], [], [], [], [], [], []
        self.v, self.v_bias, self.v_cond = [], [], []
        skips, skip_bias = [], 0
        for layer in layers:
            kw = layer.k // 2 + 1
            self.kw.append(kw)
            w = (layer.hconv.weight * layer.hmask)[:, :, 0] * scale[:, None, None]        # (2h, cin, kw)
            # column q of the kernel reads the input kw - 1 - q pixels to the left: that is tap d = kw - 1 - q
            taps = [w[:, :, kw - 1 - d].t() for d in range(kw)]                          # (cin, 2h) each
            self.hcat.append(torch.cat(taps, 1).contiguous())                              # (cin, kw * 2h)
            self.centre.append(taps[0].contiguous())
            # the vertical stack, gate halves pre-scaled as the horizontal one's, reading 2 x gate (first: the image)
            v = layer.v.weight * scale[:, None, None, None] * (1.0 if layer.first else 0.5)
            self.v.append(v.contiguous(memory_format=torch.channels_last))
            self.v_bias.append(layer.v.bias * scale)
            # the v->h link, a (2h, 2h) product from the (pre-scaled) vertical pre-activation
            self.v2h.append((layer.v2h.weight[:, :, 0, 0] * scale[:, None] / scale[None, :]).t().contiguous())
            c = layer.cond(y) if (layer.cond is not None and y is not None) else None
            self.v_cond.append(None if c is None else c * scale)
            bias = layer.hconv.bias + layer.v2h.bias + (c if c is not None else 0)
            self.row0.append((bias * scale).expand(n, 2 * h)[:, None, :].expand(n, W, 2 * h).contiguous())
            self.row0_2d.append(self.row0[-1][0])
            w_out, b_out = _masked_1x1(layer.h_out)                                        # (h, h), (h,)
            self.h_out.append(torch.cat([w_out * 0.5, b_out[None]]))                      # (h + 1, h)
            w_skip, b_skip = _masked_1x1(layer.skip)
            skips.append(torch.cat([w_skip * 0.5, torch.zeros_like(b_skip)[None]]))
            skip_bias = skip_bias + b_skip
        skips[-1][-1] = skip_bias  # the biases of every skip ride on one layer's constant 1
        self.skip = torch.cat(skips)                                                       # (L * (h + 1), h)
        self.push0 = self.hcat[0][:, 2 * h:].contiguous()   # the first layer's taps 1.. (its own pixel: mask A)


def widen_kernels(state: dict[str, torch.Tensor], kernel: int) -> dict[str, torch.Tensor]:
    """A gated PixelCNN's weights with every layer after the first grown to `kernel` x `kernel`, the new taps
    zero: the model built with that `kernel` computes the same function, and can learn to see further. Each tap
    keeps its offset from the pixel (vertical stack: rows above and this row, centred; horizontal: the pixels to
    the left). A warm start for a wider receptive field (issue 23) from weights already trained."""
    if kernel % 2 == 0 or kernel < 3:
        raise InputError(f"kernel must be odd and >= 3, got {kernel}")
    out = dict(state)
    for name, w in state.items():
        parts = name.split(".")
        if parts[0] != "gated" or parts[1] == "0" or parts[-1] != "weight" or parts[2] not in ("v", "hconv"):
            continue
        old = w.shape[-1] if parts[2] == "v" else 2 * w.shape[-1] - 1  # the layer's kernel
        if old > kernel:
            raise InputError(f"{name} has a {old}x{old} kernel, wider than the {kernel}x{kernel} asked for: "
                             "widen_kernels only grows kernels")
        grow = kernel // 2 - old // 2
        # vertical (k//2+1, k): new rows on top (further above), new columns both sides; horizontal (1, k//2+1):
        # new columns on the left (further left); the last column is the pixel itself
        out[name] = F.pad(w, (grow, grow, grow, 0) if parts[2] == "v" else (grow, 0, 0, 0))
    return out
