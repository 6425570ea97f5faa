"""How long a model will take on this machine, before it runs: its multiply-accumulates against the device's speed.

- ``macs(name, height, width)``: multiply-accumulates of one forward of the network ``load_model`` runs on an
  image of that size (padded as the network pads it), counted once per size on the meta device
  (``core.complexity``: no memory, no arithmetic).
- ``device_rate(device)``: multiply-accumulates per second of a 3x3 convolution over 64 channels, timed once per
  process on the device (about a tenth of a second; no model runs).
- ``observe(name, device, height, width, seconds)``: a real run's time (``core.compare.run_method`` reports each). From then on that model's estimates on that device
  are scaled by what it really took, so an estimate is a first guess only until the model has run once.
- ``expected_seconds(name, height, width, device)``: the estimate; ``runs_quickly`` compares it with
  ``QUICK_SECONDS``, the app's rule for ticking a slow reference model by default.

Convolution-bound networks run near the measured rate; one heavy in element-wise work (layer norms, instance norms,
gating, the reshapes of MAXIM's multi-axis blocks) runs several times slower than its MAC count says.
``FIRST_GUESS_OVERHEAD`` is the factor a first guess allows for that, taken from the slow end of the shipped
models' measured ratios (``python benchmarks/timing.py`` prints guess against measurement per model), so that a
guess rather overstates: a slow model is not ticked by default on a guess that flatters it.
"""

from __future__ import annotations

import functools
import math
import threading
import time

import torch
import torch.nn.functional as F

from core.complexity import count_macs
from core.inference import set_cpu_threads
from core.registry import shipped_architecture

QUICK_SECONDS = 10.0  # "a few seconds": a run this short is worth starting without being asked
FIRST_GUESS_OVERHEAD = 4.0  # seconds per MAC of a whole network against a lone convolution's, before it has run
_OBSERVED: dict[tuple[str, str], float] = {}  # (model, device) -> measured / estimated seconds, of its latest run
_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def macs(name: str, height: int, width: int) -> int:
    """Multiply-accumulates of one forward on a ``height`` x ``width`` image (the network pads it as it runs)."""
    return count_macs(name, height, width, **shipped_architecture(name))


@functools.lru_cache(maxsize=None)
def device_rate(device: str = "cpu") -> float:
    """Multiply-accumulates per second of one 3x3, 64-to-64-channel convolution on a 1 x 64 x 128 x 128 input
    (the best of five runs after a warm-up), on as many threads as ``core.inference.restore`` uses."""
    target = torch.device(device)
    if target.type == "cpu":
        set_cpu_threads()
    x = torch.randn(1, 64, 128, 128, device=target).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(64, 64, 3, 3, device=target).contiguous(memory_format=torch.channels_last)
    macs = 128 * 128 * 64 * 64 * 9
    best = math.inf
    with torch.inference_mode():
        for attempt in range(6):
            start = time.perf_counter()
            F.conv2d(x, weight, padding=1)
            if target.type == "cuda":
                torch.cuda.synchronize()
            if attempt:  # the first run warms the kernels up
                best = min(best, time.perf_counter() - start)
    return macs / best


def first_guess(name: str, height: int, width: int, device: str = "cpu") -> float:
    return macs(name, height, width) / device_rate(device) * FIRST_GUESS_OVERHEAD


def expected_seconds(name: str, height: int, width: int, device: str = "cpu") -> float:
    """Seconds one run of ``name`` on a ``height`` x ``width`` image should take here: the first guess, scaled by
    the model's latest measured run on this device where it has run."""
    with _LOCK:
        scale = _OBSERVED.get((name, device), 1.0)
    return first_guess(name, height, width, device) * scale


def observe(name: str, device: str, height: int, width: int, seconds: float) -> None:
    """Record a real run (its seconds, on an image of that size) for the estimates that follow."""
    guess = first_guess(name, height, width, device)
    if guess > 0 and seconds > 0:
        with _LOCK:
            _OBSERVED[(name, device)] = seconds / guess


def runs_quickly(name: str, height: int, width: int, device: str = "cpu") -> bool:
    return expected_seconds(name, height, width, device) <= QUICK_SECONDS
