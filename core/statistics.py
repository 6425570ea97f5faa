"""Image-wide statistics shared between tiles: recorded once on the whole image, replayed in every tile.

Some networks compute values over the whole image: squeeze-and-excitation channel attention averages every
channel over the image (a global pooling module), instance and group norm normalise with each image's own mean and
variance. Run in tiles, each tile computes these over itself instead, and the output changes far beyond blending
error. Forward hooks, set from outside the model's code, share the whole image's values with the tiles:

- ``record(model, image)`` runs the model once on ``image`` and stores, in call order, the output of every global
  pooling module and the per-channel (per-group) mean and variance every instance (group) norm computes;
- inside ``replay(model, statistics)`` every forward of the model uses the recorded values instead of its own: a
  pooling module's output is replaced, a norm's output is recomputed from its input with the recorded mean and
  variance and the layer's own eps and affine weights.

Which modules compute such statistics is found by inspecting the model (``statistic_modules``): global average or
max pooling modules (output size 1), instance norms that use the instance's statistics, group norms. A model
without any needs neither pass.

Cost: the record pass is one more forward of the model on the image it is given (the whole image, or a downscaled
copy of it, as the caller decides), and keeps a few numbers per channel per statistic; in replay each tile still
computes its own statistics, which are thrown away, and each norm makes one extra element-wise pass over its input.

Batches: statistics are recorded per image. A replayed batch may hold several tiles of the recorded images,
tile-major (tile t of image n at index t * N + n); the recorded values are repeated to match.

What is not shared, said plainly:
- A statistic computed by a module whose input batch is not the number of images is taken over a part of an image
  that the network folded into the batch (FCN's stages 0-2 run on 8, 4 and 2 patches of the image); a tile's
  patches are not the image's patches, so those statistics stay the tile's own.
- Statistics computed by tensor functions inside a model's forward, rather than by a module, cannot be reached by
  hooks and stay the tile's own: FCN's query-key normalisation (``QueryKey.forward``: mean and variance over
  each half-image patch) and LMFN's layer attention (``ALFM.forward``: the softmax of a Gram matrix summed over
  all pixels).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

GLOBAL_POOLS = (
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)


@dataclass(frozen=True)
class Statistics:
    """What one record pass saw: per call, a pooled tensor, a (mean, variance) pair of N x groups tensors, or
    None where the statistic covered a part of an image folded into the batch (left to each tile)."""

    images: int
    values: tuple


def is_global_pool(module: nn.Module) -> bool:
    if not isinstance(module, GLOBAL_POOLS) or getattr(module, "return_indices", False):
        return False
    size = module.output_size
    return all(side == 1 for side in (size if isinstance(size, tuple) else (size,)))


def is_statistic_norm(module: nn.Module) -> bool:
    """Instance norm using each instance's statistics (not running ones), or group norm."""
    if isinstance(module, INSTANCE_NORMS):
        return module.training or not module.track_running_stats
    return isinstance(module, nn.GroupNorm)


def statistic_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` that compute image-wide statistics, in registration order."""
    return [module for module in model.modules() if is_global_pool(module) or is_statistic_norm(module)]


def groups(module: nn.Module, x: torch.Tensor) -> int:
    return module.num_groups if isinstance(module, nn.GroupNorm) else x.shape[1]


def moments(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The N x groups mean and (biased) variance a norm layer computes from ``x``, in float32."""
    grouped = x.float().reshape(x.shape[0], groups(module, x), -1)
    variance, mean = torch.var_mean(grouped, dim=2, correction=0)
    return mean, variance


def normalise(module: nn.Module, x: torch.Tensor, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """The norm layer's output on ``x`` with the given statistics instead of its own (in float32)."""
    grouped = x.float().reshape(x.shape[0], groups(module, x), -1)
    scale = torch.rsqrt(variance + module.eps)
    output = ((grouped - mean[..., None]) * scale[..., None]).reshape(x.shape)
    if module.weight is not None:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        output = output * module.weight.float().reshape(shape) + module.bias.float().reshape(shape)
    return output


def repeat_for(value: torch.Tensor, batch: int, images: int) -> torch.Tensor:
    """Recorded per-image values for a batch of ``batch // images`` tiles of each image, tile-major."""
    if batch % images:
        raise ValueError(f"a batch of {batch} is not a whole number of tiles of the {images} recorded images")
    return value.repeat(batch // images, *(1,) * (value.dim() - 1)) if batch != images else value


@contextmanager
def hooked(model: nn.Module, on_pool: Callable, on_norm: Callable, on_start=None, on_end=None) -> Iterator[None]:
    """Forward hooks on every statistic module (and, optionally, around every forward of the model itself).

    The hooks act only in the thread that set them: a cached model may serve other requests at the same time.
    """
    owner = threading.get_ident()

    def mine(hook: Callable) -> Callable:
        def guarded(*args):
            return hook(*args) if threading.get_ident() == owner else None

        return guarded

    handles = []
    try:
        for module in statistic_modules(model):
            handles.append(module.register_forward_hook(mine(on_pool if is_global_pool(module) else on_norm)))
        if on_start is not None:
            handles.append(model.register_forward_pre_hook(mine(on_start)))
        if on_end is not None:
            handles.append(model.register_forward_hook(mine(on_end)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def record(model: nn.Module, image: torch.Tensor) -> Statistics:
    """Run ``model(image)`` once (output discarded) and return the image-wide statistics it computed."""
    images = image.shape[0]
    values = []

    def on_pool(module, inputs, output):
        values.append(output.detach().clone() if inputs[0].shape[0] == images else None)

    def on_norm(module, inputs, output):
        x = inputs[0]
        values.append(moments(module, x) if x.shape[0] == images else None)

    with hooked(model, on_pool, on_norm):
        model(image)
    return Statistics(images, tuple(values))


@contextmanager
def replay(model: nn.Module, statistics: Statistics | None) -> Iterator[None]:
    """Every forward of ``model`` inside uses ``statistics`` (from ``record``) instead of its own; None: no hooks.

    Each forward must make the same sequence of statistic calls as the record pass, else RuntimeError.
    """
    if statistics is None:
        yield
        return
    values = statistics.values
    position = 0

    def take(module: nn.Module):
        nonlocal position
        if position >= len(values):
            raise RuntimeError(f"{type(module).__name__} called more often than in the record pass ({len(values)})")
        position += 1
        return values[position - 1]

    def on_pool(module, inputs, output):
        value = take(module)
        if value is None:
            return None
        value = repeat_for(value, output.shape[0], statistics.images)
        if value.shape != output.shape:
            name = type(module).__name__
            raise RuntimeError(f"recorded {tuple(value.shape)} where {name} gave {tuple(output.shape)}")
        return value.to(output.dtype)

    def on_norm(module, inputs, output):
        value = take(module)
        if value is None:
            return None
        x = inputs[0]
        mean, variance = (repeat_for(moment, x.shape[0], statistics.images) for moment in value)
        if mean.shape[1] != groups(module, x):
            raise RuntimeError(f"recorded {mean.shape[1]} groups where {type(module).__name__} has {groups(module, x)}")
        return normalise(module, x, mean, variance).to(output.dtype)

    def on_start(module, inputs):
        nonlocal position
        position = 0

    def on_end(module, inputs, output):
        if position != len(values):
            raise RuntimeError(f"a forward made {position} statistic calls, the record pass {len(values)}")

    with hooked(model, on_pool, on_norm, on_start, on_end):
        yield
