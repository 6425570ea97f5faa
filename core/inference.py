"""Running a registered model on an image: conversion, device, cached loading and timing.

- ``restore(image, name)``: numpy or PIL in, same-size RGB out, with the seconds it took.
- Weights load once per process (``load_model`` is cached), never at import, without pickle (safetensors).
- Large images run in overlapping tiles: the tiling itself is ``core.tiling`` (a pure function), when to tile
  and how large is ``core.tile_policy`` (a memory budget), and tiles share image-wide statistics through
  ``core.statistics``: one record pass on the whole image, or, when it does not fit the budget, on the largest
  downscaled copy that does (``overview``) -- then the statistics are an approximation, those of a smaller image.
- Runs reuse freed heap memory while they last and return it when they end (``core.allocator``).
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from core import own
from core.allocator import reusing_freed_memory, trimming
from core.registry import checkpoint_path, create_model
from core.statistics import record, replay, statistic_modules
from core.tile_policy import DEFAULT_BUDGET_BYTES, auto_tile, overview, record_budget
from core.tiling import tile_apply


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


_PINNED_DEVICE: torch.device | None = None


def default_device() -> torch.device:
    """Where models run: the device ``pin_default_device`` pinned, else CUDA when available, else the CPU."""
    if _PINNED_DEVICE is not None:
        return _PINNED_DEVICE
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def pin_default_device(device: str | torch.device | None) -> None:
    """Make ``default_device()`` answer ``device`` in this process from now on (None: undo). On ZeroGPU the app's
    own process reports CUDA as available but may not run on it (only its GPU tasks may): it pins the CPU, and each
    GPU task, in the worker process forked for it, unpins."""
    global _PINNED_DEVICE
    _PINNED_DEVICE = None if device is None else torch.device(device)


def device_description() -> str:
    """The device models run on, in words: "GPU: <its name>" or "CPU (<n> threads)"."""
    device = default_device()
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    return f"CPU ({available_threads()} threads)"


def machine_description() -> str:
    """Where a timing was taken, for a benchmark row: the device, and on a CPU its vector instructions as PyTorch
    uses them and its threads (e.g. "CPU AVX512, 2 threads"), since timings differ several-fold between them."""
    device = default_device()
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    threads = torch.get_num_threads()
    return f"CPU {torch.backends.cpu.get_cpu_capability()}, {threads} thread{'' if threads == 1 else 's'}"


def available_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def set_cpu_threads() -> int:
    """Use every core this process may run on (PyTorch's default can exceed a container's CPU quota)."""
    threads = available_threads()
    torch.set_num_threads(threads)
    return threads


def load_model(name: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, bool]:
    """The process-wide instance of a model on ``device``: shipped weights when present, else untrained.

    ``load_model(name)``, ``load_model(name, "cpu")`` and ``load_model(name, torch.device("cpu"))`` are the same
    instance (with untrained weights, two instances would be two different random networks). A key of
    ``core.own`` (a checkpoint a person registered) gives that checkpoint's network.
    """
    if own.is_own(name):
        return own.network(name, torch.device(device)), True
    return _load_model(name, str(torch.device(device)))


@functools.lru_cache(maxsize=None)
def _load_model(name: str, device: str) -> tuple[torch.nn.Module, bool]:
    trained = checkpoint_path(name).is_file()
    model = create_model(name, pretrained=trained).to(device)
    return channels_last_weights(model), trained


def channels_last_weights(model: torch.nn.Module) -> torch.nn.Module:
    """2-D convolution weights channels-last (NHWC), the layout of the images ``to_tensor`` makes: oneDNN then runs
    the convolutions without reordering (less CPU time; outputs within 1e-6: ``python benchmarks/inference.py``
    measures it). State-dict keys and values are unchanged, only the weights' strides."""
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.to(memory_format=torch.channels_last)
    return model


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
    name = own.base_model(name)  # the memory policy of a person's checkpoint: its registered model's
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
            budget = record_budget(name, height, width, budget_bytes)
            statistics = trimming(record)(model, overview(x, name, budget)) if shared else None
            with replay(model, statistics):
                output = tile_apply(trimming(model), x, tile, min(overlap, min(tile) // 4))
    if target.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return Restoration(to_uint8(output), seconds, trained, tile, {k: v.float().cpu() for k, v in maps.items()})
