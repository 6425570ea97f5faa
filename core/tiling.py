"""Tiling as a pure function: ``tile_apply(fn, image, tile, overlap) -> image``.

The image is cut into overlapping tiles, ``fn`` runs on each, and the outputs are accumulated with their blending
weights into one canvas, which is divided by the accumulated weights at the end (the accumulation Restormer's
tiled test uses, here with a smooth window instead of a count). Nothing here knows of models, memory or devices:
which tile size to use is ``core.tile_policy``'s question.
"""

from __future__ import annotations

import math

import torch


def blend_window(size: int, overlap: int) -> torch.Tensor:
    """1-D weights across a tile: at each end, ``overlap // 3`` pixels of weight 0 (where zero padding at the
    tile's edge reaches into a network's output), then a raised-cosine ramp up to 1 over the rest of the overlap."""
    window = torch.ones(size)
    if overlap > 0:
        margin = overlap // 3
        ramp = torch.zeros(overlap)
        ramp[margin:] = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, overlap - margin + 2)[1:-1])
        window[:overlap] = ramp
        window[-overlap:] = torch.minimum(window[-overlap:], ramp.flip(0))
    return window


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Where the tiles along one axis start: every ``tile - overlap`` pixels, the last one flush with the end."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def tile_apply(fn, image: torch.Tensor, tile: int | tuple[int, int], overlap: int) -> torch.Tensor:
    """Apply ``fn`` (N x 3 x h x w -> same) over overlapping tiles (square, or (height, width)), blended smoothly.

    Tiles at the image border are not tapered on their outer side. Neighbouring tiles overlap by at least
    ``overlap`` pixels and each gives weight 0 only to the outer third of its own side of the overlap, so every
    pixel's weights sum to a positive value; each output pixel is the weighted mean of the tiles covering it.
    """
    tile_h, tile_w = (tile, tile) if isinstance(tile, int) else tile
    if overlap * 2 >= min(tile_h, tile_w):
        raise ValueError(f"overlap {overlap} must be less than half the tile {tile}")
    _, _, height, width = image.shape
    output = torch.zeros_like(image)
    weights = torch.zeros(1, 1, height, width, dtype=image.dtype, device=image.device)
    rows, cols = tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap)
    for top in rows:
        for left in cols:
            h, w = min(tile_h, height), min(tile_w, width)
            patch = fn(image[:, :, top : top + h, left : left + w])
            wy = blend_window(h, overlap if len(rows) > 1 else 0)
            wx = blend_window(w, overlap if len(cols) > 1 else 0)
            if top == 0:
                wy[:overlap] = 1.0
            if top + h == height:
                wy[h - overlap :] = 1.0
            if left == 0:
                wx[:overlap] = 1.0
            if left + w == width:
                wx[w - overlap :] = 1.0
            weight = (wy[:, None] * wx[None, :]).to(image)[None, None]
            output[:, :, top : top + h, left : left + w] += patch * weight
            weights[:, :, top : top + h, left : left + w] += weight
    return output / weights
