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
naive `FullRecomputeStepper` of the core is the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.errors import InputError
from zoo.heads import make_head
from zoo.sampling import FullRecomputeStepper


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


def _conv1x1_at(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    w = conv.weight * conv.mask if isinstance(conv, MaskedConv2d) else conv.weight
    return F.linear(x, w[:, :, 0, 0], conv.bias)


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
        return (tokens.float() / (self.levels - 1) * 2 - 1).view(-1, *self.image_shape)

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

    def stepper(self, n: int, *, y=None, observed_mask=None, generator=None, processor=None, naive=False):
        if observed_mask is not None:
            k = int(observed_mask.sum())
            if not bool(observed_mask[self.generation_order][:k].all()):
                raise InputError("PixelCNN generates in raster order, so it completes masks whose observed pixels "
                                 "are a raster prefix: top-half or first:K. For other masks use an order-agnostic "
                                 "model such as made-mnist")
        if naive:
            return FullRecomputeStepper(lambda t: self.logits_all(t, y), self.generation_order, n,
                                        self.num_dims, self.device)
        return CachedStepper(self, n, y)


class CachedStepper:
    """Raster sampling at about the cost of one forward pass: each layer's activation at a pixel is computed
    once, when the pixel is reached, from cached activations of the layer below (all earlier in raster order);
    the gated model's vertical stack is computed one row at a time, when the row above is complete."""

    def __init__(self, model: PixelCNN, n: int, y: torch.Tensor | None) -> None:
        self.m, self.n, self.y = model, n, y
        self.C, self.H, self.W = model.image_shape
        self.num_steps = self.C * self.H * self.W
        dev = model.device
        zeros = lambda c, pad_h, pad_w: torch.zeros(n, c, self.H + 2 * pad_h, self.W + 2 * pad_w, device=dev)  # noqa: E731
        if model.kind == "plain":
            self.x = zeros(self.C, 3, 3)                                               # stem input, padded by 3
            hidden = model.stem.out_channels
            self.h = [zeros(hidden, 0, 0) for _ in range(len(model.blocks) + 1)]      # block inputs
            self.mid = [zeros(hidden // 2, 1, 1) for _ in model.blocks]               # 3x3 inputs, padded by 1
        else:
            self.cond = [layer.cond(y) if (layer.cond is not None and y is not None) else None for layer in model.gated]
            ks = [layer.k for layer in model.gated]
            cins = [self.C] + [model.gated[0].h] * (len(ks) - 1)
            # vertical-stack inputs, padded top by k//2 and left/right by k//2
            self.v_in = [torch.zeros(n, c, self.H + k // 2, self.W + 2 * (k // 2), device=dev) for c, k in zip(cins, ks)]
            self.v_pre = [torch.zeros(n, 2 * model.gated[0].h, self.H, self.W, device=dev) for _ in ks]
            # horizontal-stack inputs, padded left by k//2
            self.h_in = [torch.zeros(n, c, self.H, self.W + k // 2, device=dev) for c, k in zip(cins, ks)]
        self.computed = -1  # the last step whose logits computed the pixel's activations
        self.values = torch.zeros(n, self.C, dtype=torch.long, device=dev)  # the current pixel's tokens (the head's)

    def positions(self, t: int) -> torch.Tensor:
        return self.m.generation_order[t:t + 1]

    # ---- plain ----
    def _plain_pixel(self, i: int, j: int) -> torch.Tensor:
        m = self.m
        h = m.stem.at(self.x, i, j)
        self.h[0][:, :, i, j] = h
        for b, block in enumerate(m.blocks):
            a = F.relu(_conv1x1_at(block.a, F.relu(h)))
            self.mid[b][:, :, i + 1, j + 1] = a
            mid = F.relu(block.b.at(self.mid[b], i, j))
            h = h + _conv1x1_at(block.c, mid)
            self.h[b + 1][:, :, i, j] = h
        return F.relu(h)

    # ---- gated ----
    def _gated_row(self, r: int) -> None:
        """Vertical stack of row r, every layer (row r of the input is complete)."""
        for l_, layer in enumerate(self.m.gated):
            k = layer.k
            slab = self.v_in[l_][:, :, r:r + k // 2 + 1]                 # input rows r - k//2 .. r
            pre = F.conv2d(slab, layer.v.weight, layer.v.bias)[:, :, 0]  # (N, 2h, W)
            if self.cond[l_] is not None:
                pre = pre + self.cond[l_][:, :, None]
            self.v_pre[l_][:, :, r] = pre
            if l_ + 1 < len(self.m.gated):
                kn = self.m.gated[l_ + 1].k
                self.v_in[l_ + 1][:, :, r + kn // 2, kn // 2: kn // 2 + self.W] = layer.gate(pre[:, :, None])[:, :, 0]

    def _gated_pixel(self, i: int, j: int) -> torch.Tensor:
        skip = 0
        layers = self.m.gated
        for l_, layer in enumerate(layers):
            k = layer.k
            window = self.h_in[l_][:, :, i, j:j + k // 2 + 1]           # input cols j - k//2 .. j
            pre = torch.einsum("nck,ock->no", window, (layer.hconv.weight * layer.hmask)[:, :, 0]) + layer.hconv.bias
            if i > 0:
                pre = pre + _conv1x1_at(layer.v2h, self.v_pre[l_][:, :, i - 1, j])
            else:
                pre = pre + layer.v2h.bias
            if self.cond[l_] is not None:
                pre = pre + self.cond[l_]
            gated = layer.gate(pre[:, :, None])[:, :, 0]
            h_new = _conv1x1_at(layer.h_out, gated) + (0 if layer.first else self.h_in[l_][:, :, i, j + k // 2])
            skip = skip + _conv1x1_at(layer.skip, gated)
            if l_ + 1 < len(layers):
                kn = layers[l_ + 1].k
                self.h_in[l_ + 1][:, :, i, j + kn // 2] = h_new
        return F.relu(skip)

    def _pixel(self, i: int, j: int) -> torch.Tensor:
        return self._plain_pixel(i, j) if self.m.kind == "plain" else self._gated_pixel(i, j)

    def logits(self, t: int) -> torch.Tensor:
        # colour: the pixel's activations are recomputed for each channel, as its earlier channels arrive;
        # after the last channel's step they are final, since no unit at a pixel sees the pixel's last channel
        p, c = divmod(t, self.C)
        feat = self._pixel(*divmod(p, self.W))
        self.computed = t
        out = _conv1x1_at(self.m.out2, F.relu(_conv1x1_at(self.m.out1, feat)))
        return self.m.output_head.logits(out[:, None], self.values[:, None], channel=c)[:, 0]

    def advance(self, t: int, tokens: torch.Tensor) -> None:
        p, c = divmod(t, self.C)
        i, j = divmod(p, self.W)
        self.values[:, c] = tokens[:, 0]
        value = tokens[:, 0].float() / (self.m.levels - 1) * 2 - 1
        if self.m.kind == "plain":
            self.x[:, c, i + 3, j + 3] = value
        else:
            k0 = self.m.gated[0].k
            self.v_in[0][:, c, i + k0 // 2, j + k0 // 2] = value
            self.h_in[0][:, c, i, j + k0 // 2] = value
        if c == self.C - 1:
            if self.computed != t:
                self._pixel(i, j)  # an observed pixel (completion skips its logits): later pixels read its cache
            if self.m.kind == "gated" and j == self.W - 1 and i + 1 < self.H:
                self._gated_row(i)  # the row is complete: the vertical stack of the next row can see it
