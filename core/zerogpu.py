"""What a GPU task needs on Hugging Face ZeroGPU hardware: how long to ask for, and results that can leave it.

On ZeroGPU a Space holds no GPU; a function decorated with ``spaces.GPU`` is run in a worker process forked from
the app, with a GPU attached for as long as the ``duration`` it asked for (the queue serves short requests first,
and a visitor's daily quota is checked against it). Its arguments and every value it returns or yields cross
between the two processes pickled, and what the worker learns (a loaded model, a registered checkpoint) stays in
the worker. The app (``app.on_gpu``) wraps its model runs with three helpers from here:

- ``run_seconds`` / ``adaptation_seconds``: the duration of one request, computed from the request itself (models x
  pixels x steps), by counting each network's multiply-accumulates on the meta device (``core.timing.macs``) at
  an assumed GPU rate, plus fixed allowances for loading weights and for the metrics, which run on the CPU.
- ``on_cpu``: any torch tensor in a value moved to the CPU before the value leaves the GPU task, so that nothing
  held in the page's state (``gr.State``) refers to GPU memory that is released when the task ends.

``GPU_MACS_PER_SECOND`` is an assumption, not a measurement: no GPU has been lent to this project's sessions. It is
set low (about a twentieth of an H200 slice's float32 peak) because these networks are small convolutions and
element-wise work that keep a GPU far from its peak; an underestimate ends a run early, an overestimate only costs
queue priority. ``MAX_SECONDS`` caps a request at what the README says was chosen for a Space.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import torch

from core import own, timing

GPU_MACS_PER_SECOND = 1.0e12  # assumed: not measured on a GPU (see the module docstring)
START_SECONDS = 10.0  # assumed, not measured: the worker's start, CUDA's initialisation, weights to the GPU
# Per method and photo: the metrics row (``core.compare.measure``: PSNR, SSIM, NIQE and the reblur score; LPIPS where
# its weights load). Measured on the CPU: 1.94-2.26 s for one 1280x720 frame, 2 threads, LPIPS unavailable
# (2026-12-03); the allowance is about twice that per megapixel, for LPIPS and slower CPUs.
METRICS_SECONDS_PER_MEGAPIXEL = 4.0
BACKWARD_FACTOR = 3.0  # an adaptation step: a forward, a backward (about twice its cost) through model and M_R
MIN_SECONDS = 15
MAX_SECONDS = 300


def _model_name(key: str) -> str:
    return own.base_model(key)


def _clamped(seconds: float) -> int:
    return int(min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(seconds))))


def run_seconds(models: Sequence[str], shapes: Iterable[tuple[int, int]], *, baseline: bool = False) -> int:
    """Seconds to ask for to run ``models`` (registry names or own-checkpoint keys) on photos of these
    (height, width) shapes, with their metrics (and the Richardson-Lucy baseline, which runs on the CPU)."""
    seconds = START_SECONDS
    methods = len(models) + 1 + int(baseline)  # the blurry input is scored too
    for height, width in shapes:
        megapixels = height * width / 1e6
        seconds += sum(timing.macs(_model_name(key), height, width) for key in models) / GPU_MACS_PER_SECOND
        seconds += methods * METRICS_SECONDS_PER_MEGAPIXEL * max(megapixels, 0.1)
    return _clamped(seconds)


def adaptation_seconds(model: str, shape: tuple[int, int], steps: int, critic: str) -> int:
    """Seconds to ask for to adapt ``model`` for ``steps`` steps on a photo of this shape against the M_R of
    ``critic`` (a Reblur variant), each step scored."""
    height, width = shape
    per_step = BACKWARD_FACTOR * (timing.macs(_model_name(model), height, width) + timing.macs(critic, height, width))
    scoring = METRICS_SECONDS_PER_MEGAPIXEL * max(height * width / 1e6, 0.1)
    return _clamped(START_SECONDS + (steps + 1) * (per_step / GPU_MACS_PER_SECOND + scoring))


def on_cpu(value):
    """``value`` with every torch tensor inside it (in tuples, lists, dicts and dataclasses, at any depth) on the
    CPU; everything else as it is. Containers are rebuilt only where something in them moved."""
    if isinstance(value, torch.Tensor):
        return value if value.device.type == "cpu" else value.detach().cpu()
    if isinstance(value, (list, tuple)):
        moved = [on_cpu(item) for item in value]
        if all(new is old for new, old in zip(moved, value)):
            return value
        return type(value)(moved) if not hasattr(value, "_fields") else type(value)(*moved)
    if isinstance(value, dict):
        moved = {key: on_cpu(item) for key, item in value.items()}
        if all(moved[key] is item for key, item in value.items()):
            return value
        return moved if type(value) is dict else type(value)(moved)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for item in dataclasses.fields(value):
            old = getattr(value, item.name)
            new = on_cpu(old)
            if new is not old:
                object.__setattr__(value, item.name, new)
        return value
    return value
