"""Running a registered model on an image: conversion, device, caching, tiling and timing, as pure functions.

- ``restore(image, name)``: numpy or PIL in, same-size RGB out, with the seconds it took.
- Large images run in overlapping tiles blended with a smooth window (``tile_apply``); the tile size comes from a
  memory budget and the model's peak activation memory per pixel, measured once on the meta device.
- Tiles share the image-wide statistics of networks that have them (global pooling, instance norm; see
  ``core.statistics``): one record pass on the whole image, or, when the whole image does not fit the budget, on
  the largest downscaled copy that does (``overview``) -- then the statistics are an approximation, those of a
  smaller image, not the full image's.
- Weights load once per process (``load_model`` is cached), never at import, without pickle (safetensors).
- Runs reuse freed heap memory while they last and return it when they end (``reusing_freed_memory``).
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
import threading
import time
import weakref
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from core.registry import checkpoint_path, create_model, get_card, shipped_architecture
from core.statistics import record, replay, statistic_modules

# Activations of one model run; override per call. 2.5 GB lets every shipped network run a 1280x720 image whole
# (FCN and SP need 1.9 and 2.2 GB), so tiling -- inexact for FCN, whose patch stages zero-pad each patch -- starts
# above that; with the weights, the input and the blended output a 1280x720 run stays under 4 GB of memory.
DEFAULT_BUDGET_BYTES = 2_500_000_000
# Share of the budget one tile (and the record pass of an image over the budget) may use. A tiled run also holds
# the whole image and its blended output, and a tile reusing freed memory fragments the heap: with whole-budget
# tiles and no trimming a 24-megapixel run peaked at 6.40 GiB (FCN) and 6.17 (GradientNet), over this project's
# 6 GB; with this share and ``trimming``, 4.49 and 4.63 (README, *Benchmarks*).
TILE_SHARE = 0.6


@dataclass(frozen=True)
class Restoration:
    image: np.ndarray  # H x W x 3, uint8
    seconds: float
    trained: bool
    tile: tuple[int, int] | None = None  # (height, width) of the tiles used, None when the image ran whole
    maps: dict = field(default_factory=dict)  # the model's named maps (only when asked for and run whole)


def to_float_rgb(image) -> np.ndarray:
    """Any PIL image or array (grey, RGB, RGBA; uint8, uint16 or float in [0, 1]) -> H x W x 3 float32 in [0, 1].

    Alpha is dropped (the colour channels are kept as stored, not composited over a background).
    """
    array = np.asarray(image)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        array = array.astype(np.float32) / 65535.0
    elif array.dtype == bool:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("a float image must hold finite values in [0, 1]")
    else:
        raise ValueError(f"unsupported pixel type {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"expected a grey, RGB or RGBA image, got an array of shape {array.shape}")
    if array.shape[2] in (1, 2):  # grey, or grey + alpha
        array = np.repeat(array[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def to_tensor(image) -> torch.Tensor:
    """An image (see ``to_float_rgb``) -> 1 x 3 x H x W float32 in [0, 1]."""
    return torch.from_numpy(to_float_rgb(image)).permute(2, 0, 1).unsqueeze(0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W in [0, 1] -> H x W x 3 uint8, rounded."""
    array = tensor.detach().float().clamp(0, 1).squeeze(0).permute(1, 2, 0).cpu().numpy()
    return (array * 255.0 + 0.5).astype(np.uint8)


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


@functools.lru_cache(maxsize=1)
def set_cpu_threads() -> int:
    """Use every core this process may run on (PyTorch's default can exceed a container's CPU quota)."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


# glibc mallopt parameters (malloc.h) and the defaults ``reusing_freed_memory`` restores
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX, _DEFAULT_ARENA_MAX = 128 * 1024, 65536, 0  # 0: glibc's own count


@functools.lru_cache(maxsize=1)
def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt, libc.malloc_trim  # glibc only (musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def reuse_mode() -> str:
    """``DEBLUR_REUSE_MEMORY``: "call" (the default), "keep" or "off" (see ``reusing_freed_memory``)."""
    mode = os.environ.get("DEBLUR_REUSE_MEMORY", "call").strip().lower()
    if mode not in ("call", "keep", "off"):
        raise ValueError(f"DEBLUR_REUSE_MEMORY={mode!r}: expected call, keep or off")
    return mode


_reuse_lock = threading.Lock()
_reusers = 0  # callers inside ``reusing_freed_memory`` now (app requests run concurrently)


@contextmanager
def reusing_freed_memory():
    """Within: freed large blocks stay in the process heap for the next tensor. glibc only; a no-op elsewhere.
    ``restore`` runs inside it, and so does every app request.

    By default glibc maps every block over 32 MB (one 1280x720 map of 24 channels is 88 MB) straight from the
    kernel and unmaps it when freed, so each of a network's hundreds of activations pays for faulting in zeroed
    pages, which is slow in this virtual machine (``python benchmarks/allocator.py``, one thread: an out-of-place
    add of two such maps 48.1 ms, in place 6.0, out of place with heap reuse 11.4). Inside, blocks come from the
    heap (``M_MMAP_MAX`` 0, one arena) and freed ones stay there (``M_TRIM_THRESHOLD`` 1 GiB), so most
    activations reuse pages already faulted in. The price is fragmentation while the run lasts: FCN's peak
    resident memory at 1280x720 grows from 2.66 to 3.34-3.57 GiB (README, *Benchmarks*).

    ``DEBLUR_REUSE_MEMORY`` chooses what happens when the last concurrent caller leaves:
    - "call" (default): glibc's defaults come back and the free heap is returned to the system (``malloc_trim``):
      an idle process holds its weights, not the last run's activations; the next run faults its pages in again.
    - "keep": the heap keeps its free memory for the next call (faster for a batch of same-size images: FCN 1280x720
      5.66 s against 6.22; resident memory stays at the largest run's); ``release_memory()`` returns it.
    - "off": glibc's defaults throughout.
    (Setting these parameters ends glibc's dynamic mmap threshold for the process: it stays where it had grown
    to, at most 32 MB.)
    """
    global _reusers
    libc, mode = _libc(), reuse_mode()
    if libc is None or mode == "off":
        yield
        return
    with _reuse_lock:
        if _reusers == 0:
            libc.mallopt(_M_ARENA_MAX, 1)  # arenas made later (new threads) share the main heap and its free blocks
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        _reusers += 1
    try:
        yield
    finally:
        with _reuse_lock:
            _reusers -= 1
            if _reusers == 0 and mode == "call":
                libc.mallopt(_M_ARENA_MAX, _DEFAULT_ARENA_MAX)
                libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
                libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD)
                libc.malloc_trim(0)


def release_memory() -> None:
    """Return the heap's free memory to the system (glibc ``malloc_trim``); the next run faults its pages in again."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def load_model(name: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, bool]:
    """The process-wide instance of a model on ``device``: shipped weights when present, else untrained.

    ``load_model(name)``, ``load_model(name, "cpu")`` and ``load_model(name, torch.device("cpu"))`` are the same
    instance (with untrained weights, two instances would be two different random networks).
    """
    return _load_model(name, str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _load_model(name: str, device: str) -> tuple[torch.nn.Module, bool]:
    trained = checkpoint_path(name).is_file()
    model = create_model(name, pretrained=trained).to(device)
    return channels_last_weights(model), trained


def channels_last_weights(model: torch.nn.Module) -> torch.nn.Module:
    """2-D convolution weights channels-last (NHWC), the layout of the images ``to_tensor`` makes: oneDNN then runs
    the convolutions without reordering (13-17 % less CPU time for GradientNet, LMFN, Reblur and SP at 256x256 on
    one thread; outputs within 1e-6). State-dict keys and values are unchanged, only the weights' strides."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.to(memory_format=torch.channels_last)
    return model


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
def bytes_per_pixel(name: str) -> float:
    """Peak activation memory of one inference forward per input pixel, measured on the meta device at 256x256.

    Measured on the network ``load_model`` runs: a checkpoint trained in a reduced configuration (FCN at width
    24 instead of 96) needs a fraction of the registered network's memory, and so tiles later or never.
    """
    side = 256
    with torch.device("meta"):
        model = create_model(name, **shipped_architecture(name))
        image = torch.empty(1, 3, side, side)
    with torch.inference_mode(), PeakMemory() as tracker:
        model(image)
    return tracker.peak / (side * side)


def auto_tile(
    name: str, height: int, width: int, budget_bytes: int = DEFAULT_BUDGET_BYTES, overlap: int = 32
) -> tuple[int, int] | None:
    """(tile height, tile width) for an image of this size, or None when the whole image fits the budget.

    Tiles fit ``TILE_SHARE`` of the budget. Among the grids of rows x columns whose tiles fit, the one computing
    the fewest pixels in all (tiles plus their overlaps) wins, so a 1280x720 image is not cut into squares that
    overhang it.
    """
    per_pixel = bytes_per_pixel(name)
    if per_pixel * height * width <= budget_bytes:
        return None
    budget_bytes = int(TILE_SHARE * budget_bytes)
    multiple = get_card(name).pad_multiple
    multiple = max(16, max(multiple) if isinstance(multiple, tuple) else multiple)

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


def trimming(fn):
    """``fn``, then the heap's free pages returned (``release_memory``): tiles that reuse freed memory would
    otherwise leave a tiled run holding every page any tile touched (FCN on 24 megapixels: 6.06 GiB untrimmed,
    4.49 trimmed, 4.21 with glibc's default allocation). Each tile then faults its pages in again, as a whole run
    does."""

    def trimmed(*args, **kwargs):
        result = fn(*args, **kwargs)
        release_memory()
        return result

    return trimmed


def restore(
    image,
    name: str,
    *,
    device: str | None = None,
    tile: int | tuple[int, int] | None = None,
    overlap: int = 32,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    return_maps: bool = False,
    share_statistics: bool = True,
) -> Restoration:
    """Restore an image with a registered model. ``tile`` (a side or (height, width)): None chooses from the
    memory budget (``auto_tile``); 0 never tiles.

    When the image runs in tiles and the model has image-wide statistics (``core.statistics``), and unless
    ``share_statistics`` is False, a record pass first runs the model on ``overview(image)``: the whole image when
    it fits the budget (the tiles then use the whole image's exact statistics), else the largest downscaled copy
    that fits a tile's share of it (``TILE_SHARE``; an approximation: the statistics of a smaller image). It costs
    one more forward of that size, counted in ``seconds``: one tile's worth when the image is larger than the
    budget, a whole untiled run when tiles were asked for on an image that fits. An image that runs whole, or a
    model without such statistics, runs exactly as without this option: no record pass, no hooks.

    On CUDA the model runs under bfloat16 autocast (fp32's range: LMFN's unscaled attention products cannot
    overflow as they can in float16). Maps are returned only when the image runs whole.
    """
    target = torch.device(device) if device else default_device()
    if target.type == "cpu":
        set_cpu_threads()
    model, trained = load_model(name, str(target))
    x = to_tensor(image).to(target)
    height, width = x.shape[-2:]
    if tile is None:
        tile = auto_tile(name, height, width, budget_bytes, overlap)
    elif tile == 0 or tile == (0, 0):
        tile = None
    else:
        tile = (tile, tile) if isinstance(tile, int) else tuple(tile)
        tile = None if tile[0] >= height and tile[1] >= width else (min(tile[0], height), min(tile[1], width))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if target.type == "cuda" else nullcontext()
    maps = {}
    start = time.perf_counter()
    with torch.inference_mode(), autocast, reusing_freed_memory():
        if tile is None and return_maps:
            output, maps = model(x, return_maps=True)
        elif tile is None:
            output = model(x)
        else:
            shared = share_statistics and bool(statistic_modules(model))
            # an image over the budget is recorded at a tile's budget: at the whole budget the record pass, not a
            # tile, set the peak (FCN on 24 megapixels: 5.9 GiB)
            fits = bytes_per_pixel(name) * height * width <= budget_bytes
            record_budget = budget_bytes if fits else int(TILE_SHARE * budget_bytes)
            statistics = trimming(record)(model, overview(x, name, record_budget)) if shared else None
            with replay(model, statistics):
                output = tile_apply(trimming(model), x, tile, min(overlap, min(tile) // 4))
    if target.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return Restoration(to_uint8(output), seconds, trained, tile, {k: v.float().cpu() for k, v in maps.items()})
