"""The interface every registered deblurring network shares.

A model maps an N x 3 x H x W batch in [0, 1] to a restored batch of the same size in [0, 1].
It pads its own input to the multiple its architecture needs (reflect padding) and crops back,
so callers never see the constraint.

Intermediate maps are part of the interface: ``model(x, return_maps=True)`` returns the image and
an ordered dict of named maps recorded during that same forward pass. Subclasses write their
forward once, as ``_restore(x, maps)``, and call ``maps.add(name, tensor)`` at the arrows of their
paper's figure; recording is a no-op when no maps were asked for. A map is stored detached and
already reduced to what a person looks at:

- a spatial map: N x C x h x w with C in {1, 3} (channel mean of a feature, a gate, an image);
  it is cropped to the un-padded region in proportion to its resolution;
- anything else (an attention matrix N x K x K, a vector of trust ratios): stored as given.

In eval mode the image is clamped to [0, 1]; in train mode it is returned raw so that losses keep
their gradient where a prediction strays outside the range.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


MIN_SIDE = 16  # the smallest side any registered model accepts (none is designed for less)


class MapRecorder:
    """Collects named maps during one forward pass; does nothing when ``enabled`` is False."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.maps: OrderedDict[str, torch.Tensor] = OrderedDict()

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if not self.enabled:
            return
        if name in self.maps:
            raise KeyError(f"map {name!r} recorded twice in one forward pass")
        self.maps[name] = tensor.detach()


def channel_mean(feature: torch.Tensor) -> torch.Tensor:
    """N x C x H x W -> N x 1 x H x W, the usual way papers draw a feature tensor (e.g. SP Fig. 6)."""
    return feature.mean(dim=1, keepdim=True)


def pad_to_multiple(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Pad the bottom and right edges by reflection up to the next multiples (replicate if too small)."""
    height, width = x.shape[-2:]
    pad_h = (-height) % multiple_h
    pad_w = (-width) % multiple_w
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


class DeblurModel(nn.Module):
    """Base class of every registered network.

    Subclasses set ``pad_multiple`` (an int, or an (h, w) pair) and implement ``_restore``.
    Networks that need more than the restored image for their paper's loss (stage outputs,
    learned priors, the reblurred image) override ``forward_train``.
    """

    pad_multiple: int | tuple[int, int] = 1

    @property
    def pad_hw(self) -> tuple[int, int]:
        multiple = self.pad_multiple
        return (multiple, multiple) if isinstance(multiple, int) else tuple(multiple)

    def _restore(self, x: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        """Restore a padded batch; record maps with ``maps.add``. Returns the (unclamped) image."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, return_maps: bool = False):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an N x 3 x H x W batch, got shape {tuple(x.shape)}")
        height, width = x.shape[-2:]
        if min(height, width) < MIN_SIDE:
            raise ValueError(f"image is {width}x{height}; both sides must be at least {MIN_SIDE} pixels")
        padded = pad_to_multiple(x, *self.pad_hw)
        maps = MapRecorder(return_maps)
        image = self._restore(padded, maps)[..., :height, :width].contiguous()
        if not self.training:
            image = image.clamp(0.0, 1.0)
        if not return_maps:
            return image
        return image, crop_maps(maps.maps, padded.shape[-2:], (height, width))

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Everything the paper's training loss needs, with gradients; sizes must be padding multiples.

        The default returns only the restored image under "output".
        """
        self.check_train_size(x)
        return {"output": self._restore(x, MapRecorder(False))}

    def check_train_size(self, x: torch.Tensor) -> None:
        multiple_h, multiple_w = self.pad_hw
        if x.shape[-2] % multiple_h or x.shape[-1] % multiple_w:
            raise ValueError(
                f"training crops must be multiples of {multiple_h}x{multiple_w}, got {tuple(x.shape[-2:])}"
            )


def crop_maps(maps, padded_hw, original_hw):
    """Crop every spatial map to the un-padded region, in proportion to its own resolution."""
    cropped = OrderedDict()
    padded_h, padded_w = padded_hw
    height, width = original_hw
    for name, tensor in maps.items():
        if tensor.dim() == 4 and padded_h % tensor.shape[-2] == 0 and padded_w % tensor.shape[-1] == 0:
            scale_h = padded_h // tensor.shape[-2]
            scale_w = padded_w // tensor.shape[-1]
            tensor = tensor[..., : math.ceil(height / scale_h), : math.ceil(width / scale_w)]
        cropped[name] = tensor
    return cropped
