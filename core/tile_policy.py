"""When to tile and how large the tiles are: a memory budget against each model's activation bytes per pixel.

- ``bytes_per_pixel(name)``: the peak activation memory of one inference forward of the network ``load_model``
  runs, per input pixel, traced once on the meta device (``PeakMemory``: no memory allocated, no arithmetic).
- ``auto_tile``: None when the whole image fits ``DEFAULT_BUDGET_BYTES``, else the grid of tiles (each within
  ``TILE_SHARE`` of the budget) that computes the fewest pixels.
- ``overview``: the image a record pass of image-wide statistics runs on (``core.statistics``): the image itself
  when it fits, else its largest downscaled copy that does.

The budget and the share were chosen against peaks measured by ``python benchmarks/inference.py`` (README,
*Benchmarks*): with them every shipped network runs a 1280x720 image whole, and a tiled run of a large photo (one
tile, fragmented, plus the whole image and its blended output) stays within this project's memory targets.
"""

from __future__ import annotations

import functools
import math
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from core.registry import create_model, shipped_architecture
from core.tiling import tile_starts

DEFAULT_BUDGET_BYTES = 2_500_000_000  # activations of one model run; override per call
TILE_SHARE = 0.6  # share of the budget one tile (and the record pass of an image over the budget) may use


class PeakMemory(TorchDispatchMode):
    """Tracks the bytes of live tensors created during a forward pass (works on the meta device)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _release(self, size: int) -> None:
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # an in-place op (relu_, add_) hands back its input's storage: nothing new is allocated
        inputs = {a.untyped_storage()._cdata for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)}
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor._base is None \
                    and tensor.untyped_storage()._cdata not in inputs:
                size = tensor.untyped_storage().nbytes()
                self.live += size
                self.peak = max(self.peak, self.live)
                weakref.finalize(tensor, self._release, size)
        return out


@functools.lru_cache(maxsize=None)
def _traced(name: str) -> tuple[float, tuple[int, int]]:
    """(peak activation bytes per input pixel, pad multiple (h, w)) of the network ``load_model`` runs, from one
    inference forward at 256x256 on the meta device. The pad multiple is the model's own (``DeblurModel.pad_hw``),
    its one owner."""
    side = 256
    with torch.device("meta"):
        model = create_model(name, **shipped_architecture(name))
        image = torch.empty(1, 3, side, side)
    with torch.inference_mode(), PeakMemory() as tracker:
        model(image)
    return tracker.peak / (side * side), tuple(model.pad_hw)


def bytes_per_pixel(name: str) -> float:
    """Peak activation memory of one inference forward per input pixel, measured on the meta device at 256x256.

    Measured on the network ``load_model`` runs: a checkpoint trained in a reduced configuration needs a fraction
    of the registered network's memory, and so tiles later or never.
    """
    return _traced(name)[0]


def fits(name: str, height: int, width: int, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> bool:
    """Whether one run of the whole image stays within the budget."""
    return bytes_per_pixel(name) * height * width <= budget_bytes


def auto_tile(
    name: str, height: int, width: int, budget_bytes: int = DEFAULT_BUDGET_BYTES, overlap: int = 32
) -> tuple[int, int] | None:
    """(tile height, tile width) for an image of this size, or None when the whole image fits the budget.

    Tiles fit ``TILE_SHARE`` of the budget. Among the grids of rows x columns whose tiles fit, the one computing
    the fewest pixels in all (tiles plus their overlaps) wins, so a 1280x720 image is not cut into squares that
    overhang it.
    """
    if fits(name, height, width, budget_bytes):
        return None
    per_pixel = bytes_per_pixel(name)
    budget_bytes = int(TILE_SHARE * budget_bytes)
    multiple = max(16, *_traced(name)[1])

    def side(length: int, parts: int) -> int:
        needed = math.ceil((length + (parts - 1) * overlap) / parts)
        return min(length, -(-needed // multiple) * multiple)

    best = None
    for rows in range(1, math.ceil(height / 64) + 1):
        for cols in range(1, math.ceil(width / 64) + 1):
            tile_h, tile_w = side(height, rows), side(width, cols)
            if tile_h * tile_w * per_pixel > budget_bytes or min(tile_h, tile_w) <= 2 * overlap:
                continue
            cost = len(tile_starts(height, tile_h, overlap)) * len(tile_starts(width, tile_w, overlap)) * tile_h * tile_w
            if best is None or cost < best[0]:
                best = (cost, (tile_h, tile_w))
    if best is None:
        raise ValueError(f"{name}: no tile of more than {2 * overlap} pixels fits a budget of {budget_bytes} bytes")
    return best[1]


def record_budget(name: str, height: int, width: int, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> int:
    """The budget of a tiled run's record pass: the whole budget when the image fits it, else a tile's share (at
    the whole budget the record pass, not a tile, would set the run's peak)."""
    return budget_bytes if fits(name, height, width, budget_bytes) else int(TILE_SHARE * budget_bytes)


def overview(x: torch.Tensor, name: str, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> torch.Tensor:
    """``x`` itself when one run of the whole image fits the budget, else the largest downscaled copy that does
    (bilinear, antialiased; the budget is checked on the unpadded size, as in ``auto_tile``)."""
    height, width = x.shape[-2:]
    needed = bytes_per_pixel(name) * height * width
    if needed <= budget_bytes:
        return x
    scale = math.sqrt(budget_bytes / needed)
    size = (max(16, math.floor(height * scale)), max(16, math.floor(width * scale)))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
