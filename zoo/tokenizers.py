"""Tokenizers: images <-> discrete tokens. The pixel tokenizer lives here; learned ones come from plugins."""
from __future__ import annotations

import math

import torch

from .errors import InputError


class Tokenizer:
    """Maps float images in [0, 1] of shape (N, C, H, W) to LongTensor tokens (N, T) and back."""

    vocab_size: int
    image_shape: tuple[int, int, int]

    @property
    def num_tokens(self) -> int:
        """T, the length of the flat token sequence of one image."""
        raise NotImplementedError

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def token_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Which tokens (N, T) a pixel mask (N, C, H, W) fully determines: completion teacher-forces those."""
        raise NotImplementedError


def check_images(images: torch.Tensor, image_shape: tuple[int, ...], what: str = "images") -> torch.Tensor:
    """Validate a batch of images (N, C, H, W), float in [0, 1] or uint8; return float images in [0, 1]."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{what} must be a torch.Tensor of shape (N, {', '.join(map(str, image_shape))}), "
                         f"got {type(images).__name__}")
    if images.dim() == len(image_shape):
        images = images.unsqueeze(0)
    if tuple(images.shape[1:]) != tuple(image_shape):
        raise InputError(f"{what} have shape {tuple(images.shape)}, but this model works on "
                         f"(N, {', '.join(map(str, image_shape))}) images")
    if images.shape[0] == 0:
        raise InputError(f"{what}: the batch is empty (shape {tuple(images.shape)}); pass at least one image")
    if images.is_meta:
        raise InputError(f"{what} are on the 'meta' device and hold no values")
    if images.dtype == torch.uint8:
        return images.float() / 255.0
    if not images.is_floating_point():
        raise InputError(f"{what} must be float in [0, 1] or uint8 in [0, 255], got dtype {images.dtype}")
    if torch.isnan(images).any():
        raise InputError(f"{what} contain NaN values")
    lo, hi = images.min().item(), images.max().item()
    if lo < 0 or hi > 1:
        raise InputError(f"{what} must lie in [0, 1] (float) or [0, 255] (uint8); got values in [{lo:g}, {hi:g}]. "
                         "Divide 8-bit images by 255.")
    return images


class PixelTokenizer(Tokenizer):
    """One token per sub-pixel, in raster order (channel-major within a pixel is *not* used: see `order`).

    Tokens are laid out (C, H, W) flattened, so token index = c*H*W + i*W + j. 2 levels for binary images
    (values must be exactly 0 or 1), 256 for 8-bit grayscale or colour.
    """

    def __init__(self, levels: int, image_shape: tuple[int, int, int]) -> None:
        if levels < 2:
            raise InputError(f"a pixel tokenizer needs at least 2 levels, got {levels}")
        self.levels = int(levels)
        self.vocab_size = self.levels
        self.image_shape = tuple(int(s) for s in image_shape)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.image_shape)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = check_images(images, self.image_shape)
        scaled = images * (self.levels - 1)
        tokens = scaled.round()
        if self.levels == 2 and (scaled - tokens).abs().max() > 1e-6:
            raise InputError("this model is for binary images (every value 0 or 1), got values in between; "
                             "binarize first, e.g. zoo.data.binarize(x, seed=0)")
        return tokens.long().flatten(1)

    def token_mask(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.reshape(mask.shape[0], -1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] != self.num_tokens:
            raise InputError(f"tokens must have shape (N, {self.num_tokens}), got {tuple(tokens.shape)}")
        return (tokens.float() / (self.levels - 1)).reshape(-1, *self.image_shape)
