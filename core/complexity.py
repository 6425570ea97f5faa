"""Parameter and multiply-accumulate counts, measured on the meta device (no memory, no arithmetic)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from core.registry import create_model


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def count_macs(name: str, height: int, width: int, **overrides) -> int:
    """Multiply-accumulates of one forward pass of a registered model on a 1 x 3 x height x width input
    (``overrides``: constructor keywords, e.g. ``registry.shipped_architecture(name)`` for the shipped network).

    Counted by PyTorch's FlopCounterMode (convolutions, matrix products, attention), halved from FLOPs to MACs;
    element-wise operations are not counted, as is usual in the deblurring literature.
    """
    with torch.device("meta"):
        model = create_model(name, **overrides)
        image = torch.empty(1, 3, height, width)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    return counter.get_total_flops() // 2
