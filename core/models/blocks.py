"""Layers that two or more of the papers share."""

from __future__ import annotations

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (Hu et al., CVPR 2018), as used by MPRNet/FCN's CAB,
    GradientNet's MBRB/MBRU: global average pool, 1x1 down by ``reduction``,
    ReLU, 1x1 up, sigmoid, and a per-channel rescale of the input."""

    def __init__(self, channels: int, *, reduction: int = 16, bias: bool = True, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace  # rescale the input itself when no gradient is recorded (the caller's input is fresh)
        hidden = max(1, channels // reduction)
        self.squeeze = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x):
        scale = self.excite(self.squeeze(x))
        return x.mul_(scale) if self.inplace and not torch.is_grad_enabled() else x * scale


class ResBlock(nn.Module):
    """conv - activation - conv plus identity (Nah et al. 2017 style, no normalisation)."""

    def __init__(self, channels: int, *, kernel_size: int = 3, bias: bool = True, activation: nn.Module | None = None) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=bias),
            activation if activation is not None else nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size, padding=padding, bias=bias),
        )

    def forward(self, x):
        return self.body(x).add_(x)  # in place on a fresh conv output: safe for autograd, one allocation fewer
