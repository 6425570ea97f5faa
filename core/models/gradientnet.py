"""GradientNet: "Structures Guided Dynamic Scene Deblurring Method".

Qing Qi (Qinghai Minzu University), Hindawi research article, 2022 (received 17 May, published 15 September
2022; academic editor Mingqian Liu). The journal's name is not in the text we hold.

A U-Net generator whose bottleneck is a GradientNet (Section 3.1.2): a prepositional feature transition
module (PRFTM, Eq. 2-3) then a multi-branch reuse unit (MBRU, Eq. 4) of 10 multi-branch reuse blocks
(MBRB, Eq. 5-6) and a channel attention. Each MBRB runs three recurrent gradient convolutional layers
(RGCL, Eq. 7) on the same input. A PatchGAN critic trained with WGAN-GP (Section 3.1.3, Eq. 10)
supervises the generator during training only.

Choices made where the paper is silent or self-contradictory (no public code exists; the widths are drawn
in Figure 2, whose labels did not survive into the text):

- Generator skeleton (Figure 2 legend: IN, k, n, s, Tanh, CA; notes section 5): a DeblurGAN-style [37]
  encoder-decoder, as the legend's vocabulary suggests. Encoder: 7x7 conv stride 1, then two 3x3 convs
  stride 2, each followed by instance norm (affine) and ReLU; the convs before a norm carry no bias (the
  norm would remove it). Decoder: two 3x3 transposed convs stride 2 (instance norm, ReLU), the first fed the
  GradientNet output, the second that result concatenated with the 1/2-resolution encoder feature; the 7x7
  output conv (then Tanh) takes the concatenation with the full-resolution encoder feature (the U-Net skips
  of Section 3.1.1). The two stride-2 levels give pad_multiple = 4. The 7x7 convs reflect-pad their borders.
- Widths: encoder 32 channels at every level, GradientNet 64. PRFTM's first conv widens 32 -> 64
  (Section 3.1.2 (1): "convolutional layers increase the number of channels"). With every unspecified kernel
  at 3x3 these widths give about 427 G multiply-accumulates at 1280x720, within 5% of Table 3's 446.98 G,
  which we read as MACs (it copies DeblurGAN-v2's table, whose "FLOPs" are MAC counts: DeblurGAN's
  generator, counted from its published layer list, is about 697 G MACs at 1280x720 against the 678.29 G
  listed, where FLOPs would be twice that). Round widths with a 1x1 "Conv" in Eq. 7 land at 258 G
  (width 64) or 553 G (width 96), so Table 3 supports the 3x3 reading.
- Input and output range: the image in [0, 1] enters as 2x - 1 (the usual [-1, 1] GAN range) and the Tanh
  output is a residual in that space, y' = x' + tanh(z) (DeblurGAN's learn_residual), mapped back as
  y = (y' + 1) / 2 = x + tanh(z) / 2. The base class clamps to [0, 1] in eval mode only.
- Initialisation (the paper gives none): PyTorch's defaults, except the output conv, whose weights and bias start
  at zero, so that the untrained generator returns its input (z = 0, where Tanh has slope 1). With default
  initialisation the residual started large, and on our CPU schedule (lr 4e-4, Adam betas (0.5, 0.999)) Tanh
  saturated within 100 steps: every pixel at x + (-0.5, +0.5, +0.5), no gradient left (validation 7.15 dB).
- PRFTM (Eq. 2-3): two 3x3 convs with no activation between them, as the equations write it.
- RGCL (Eq. 7, Figure 3): U_{t+1} = Conv(LReLU(k_1x3 * U_t + k_3x1 * U_t)) for t = 0..r-1 with U_0 the input,
  the same weights at every step (a recurrence), then input + CA(sigmoid(U_r)). The two directional convs
  carry no bias (Eq. 7 writes none, and two would be redundant); "Conv" is 3x3 with bias (see Widths);
  LeakyReLU slope 0.2 (the paper gives none).
- MBRB (Eq. 5-6): the three RGCLs have their own weights (shared weights would make the three branches
  identical). f_FE3 maps the 3C concatenation back to C, f_FE4 keeps C; both 3x3 like f_FE1/f_FE2.
- MBRU (Eq. 4): the 10 MBRBs in cascade, then CA; no long skip around GradientNet (none is drawn).
- Channel attention everywhere: squeeze-and-excitation [20] with reduction 16 (blocks.ChannelAttention).
- Maps: "Sobel of input" is the Sobel gradient magnitude sqrt(gx^2 + gy^2) (unnormalised 3x3 Sobel kernels,
  edge-replicated border) of the ITU-R BT.601 grey image of the input (Figure 4(b)). "RGCL horizontal k" and
  "RGCL vertical k" (k = 1..10, every MBRB) are the channel means of the k_1x3 * U and k_3x1 * U responses of
  the first RGCL of MBRB k at its last recurrence (Figure 4(c)-(d)), at 1/4 resolution.
- PatchGAN critic (Section 3.1.3, [40]): the 70x70 pix2pix critic (4x4 convs, 64-128-256-512, LeakyReLU 0.2)
  on the image alone (the paper's critic "receives a generated image or a real image"), which it maps to
  [-1, 1] like the generator. The paper's "probability in [0, 1]" contradicts WGAN-GP (Eq. 10): the critic
  ends without a sigmoid. Batch norm is replaced by instance norm (affine), since WGAN-GP penalises
  per-sample gradients that batch statistics would couple (Gulrajani et al. [43] suggest layer norm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import DeblurModel, MapRecorder, channel_mean
from core.models.blocks import ChannelAttention
from core.registry import ModelCard, register

PAPER = "Structures Guided Dynamic Scene Deblurring Method"
MBRB_COUNT = 10

# ITU-R BT.601 luma weights: the grey image a Sobel baseline is computed on.
GREY_WEIGHTS = (0.299, 0.587, 0.114)


def sobel_kernels() -> torch.Tensor:
    """The two 3x3 Sobel kernels (d/dx, d/dy) as a 2 x 1 x 3 x 3 convolution weight."""
    derivative = torch.tensor([-1.0, 0.0, 1.0])
    smoothing = torch.tensor([1.0, 2.0, 1.0])
    return torch.stack([torch.outer(smoothing, derivative), torch.outer(derivative, smoothing)]).unsqueeze(1)


def conv_norm_relu(in_channels: int, out_channels: int, *, stride: int) -> nn.Sequential:
    """Figure 2's encoder unit: 3x3 conv, instance norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.InstanceNorm2d(out_channels, affine=True),
        nn.ReLU(inplace=True),
    )


def up_norm_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """Figure 2's decoder unit: 3x3 transposed conv stride 2 (exactly doubles the size), instance norm, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False),
        nn.InstanceNorm2d(out_channels, affine=True),
        nn.ReLU(inplace=True),
    )


class RGCL(nn.Module):
    """Recurrent gradient convolutional layer (Eq. 7, Figure 3).

    ``forward`` returns the layer's output and, for the maps, the horizontal (k_1x3 * U) and vertical
    (k_3x1 * U) responses of its last recurrence.
    """

    def __init__(self, channels: int, *, recurrence: int = 3, negative_slope: float = 0.2, reduction: int = 16):
        super().__init__()
        self.recurrence = recurrence
        self.horizontal = nn.Conv2d(channels, channels, (1, 3), padding=(0, 1), bias=False)
        self.vertical = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), bias=False)
        self.activation = nn.LeakyReLU(negative_slope)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.gate = nn.Sigmoid()
        self.attention = ChannelAttention(channels, reduction=reduction)

    def forward(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = u
        for _ in range(self.recurrence):
            horizontal = self.horizontal(state)
            vertical = self.vertical(state)
            state = self.conv(self.activation(horizontal + vertical))
        output = self.attention(self.gate(state)) + u
        return output, horizontal, vertical


class MBRB(nn.Module):
    """Multi-branch reuse block (Eq. 5-6): three RGCLs on one input, concatenated, CA, conv-ReLU-conv, residual.

    ``forward`` returns the block's output and the gradient responses of its first RGCL (for the maps).
    """

    def __init__(self, channels: int, *, recurrence: int = 3, negative_slope: float = 0.2, reduction: int = 16):
        super().__init__()
        self.branches = nn.ModuleList(
            RGCL(channels, recurrence=recurrence, negative_slope=negative_slope, reduction=reduction)
            for _ in range(3)
        )
        self.attention = ChannelAttention(3 * channels, reduction=reduction)
        self.fe3 = nn.Conv2d(3 * channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fe4 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, u0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        first, horizontal, vertical = self.branches[0](u0)
        second, _, _ = self.branches[1](u0)
        third, _, _ = self.branches[2](u0)
        f = torch.cat([first, second, third], dim=1)
        f = self.fe4(self.relu(self.fe3(self.attention(f)))) + u0
        return f, horizontal, vertical


class MBRU(nn.Module):
    """Multi-branch reuse unit (Eq. 4): MBRBs in cascade, then channel attention."""

    def __init__(
        self,
        channels: int,
        *,
        blocks: int = MBRB_COUNT,
        recurrence: int = 3,
        negative_slope: float = 0.2,
        reduction: int = 16,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            MBRB(channels, recurrence=recurrence, negative_slope=negative_slope, reduction=reduction)
            for _ in range(blocks)
        )
        self.attention = ChannelAttention(channels, reduction=reduction)

    def forward(self, u0: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        u = u0
        for k, block in enumerate(self.blocks, start=1):
            u, horizontal, vertical = block(u)
            if maps.enabled:  # channel means computed for the maps only
                maps.add(f"RGCL horizontal {k}", channel_mean(horizontal))
                maps.add(f"RGCL vertical {k}", channel_mean(vertical))
        return self.attention(u)


class PRFTM(nn.Module):
    """Prepositional feature transition module (Eq. 2-3): two cascaded 3x3 convs."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.fe1 = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.fe2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        u_minus_1 = self.fe1(u)
        return self.fe2(u_minus_1)


class GradientNet(nn.Module):
    """PRFTM then MBRU (Section 3.1.2, Figure 2), at the generator's bottleneck."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        *,
        blocks: int = MBRB_COUNT,
        recurrence: int = 3,
        negative_slope: float = 0.2,
        reduction: int = 16,
    ):
        super().__init__()
        self.prftm = PRFTM(in_channels, channels)
        self.mbru = MBRU(
            channels, blocks=blocks, recurrence=recurrence, negative_slope=negative_slope, reduction=reduction
        )

    def forward(self, u: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        u0 = self.prftm(u)
        return self.mbru(u0, maps)


class StructuresGuidedGenerator(DeblurModel):
    """The generator of Figure 2: IN encoder, GradientNet bottleneck, decoder with skips, Tanh residual."""

    pad_multiple = 4

    def __init__(
        self,
        *,
        encoder_channels: int = 32,
        channels: int = 64,
        blocks: int = MBRB_COUNT,
        recurrence: int = 3,
        negative_slope: float = 0.2,
        reduction: int = 16,
    ):
        super().__init__()
        width = encoder_channels
        self.register_buffer("grey_weights", torch.tensor(GREY_WEIGHTS).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("sobel", sobel_kernels(), persistent=False)
        self.encoder1 = nn.Sequential(
            nn.Conv2d(3, width, 7, padding=3, padding_mode="reflect", bias=False),
            nn.InstanceNorm2d(width, affine=True),
            nn.ReLU(inplace=True),
        )
        self.encoder2 = conv_norm_relu(width, width, stride=2)
        self.encoder3 = conv_norm_relu(width, width, stride=2)
        self.gradient_net = GradientNet(
            width,
            channels,
            blocks=blocks,
            recurrence=recurrence,
            negative_slope=negative_slope,
            reduction=reduction,
        )
        self.decoder2 = up_norm_relu(channels, width)
        self.decoder1 = up_norm_relu(2 * width, width)
        self.output = nn.Sequential(nn.Conv2d(2 * width, 3, 7, padding=3, padding_mode="reflect"), nn.Tanh())
        # Zero residual at initialisation: the generator starts as the identity, where Tanh has its full slope.
        nn.init.zeros_(self.output[0].weight)
        nn.init.zeros_(self.output[0].bias)

    def sobel_magnitude(self, image: torch.Tensor) -> torch.Tensor:
        """Sobel gradient magnitude of the grey image (Figure 4(b)), N x 1 x H x W."""
        grey = (image * self.grey_weights).sum(dim=1, keepdim=True)
        gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), self.sobel)
        return gradients.pow(2).sum(dim=1, keepdim=True).sqrt()

    def _restore(self, x: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        if maps.enabled:  # the Sobel baseline is computed for the maps only
            maps.add("Sobel of input", self.sobel_magnitude(x))
        signed = 2 * x - 1
        e1 = self.encoder1(signed)
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        g = self.gradient_net(e3, maps)
        d2 = self.decoder2(g)
        d1 = self.decoder1(torch.cat([d2, e2], dim=1))
        residual = self.output(torch.cat([d1, e1], dim=1))
        return x + residual / 2


class PatchGAN(nn.Module):
    """The WGAN-GP critic (Section 3.1.3, [40]): a 70x70 PatchGAN scoring each patch; training only.

    Takes images in [0, 1] and returns an N x 1 x h x w map of unbounded scores (no sigmoid; instance norm,
    no batch norm).
    """

    def __init__(self, *, in_channels: int = 3, channels: int = 64, layers: int = 3, negative_slope: float = 0.2):
        super().__init__()
        widths = [channels * min(2**i, 8) for i in range(layers + 1)]
        body = [nn.Conv2d(in_channels, widths[0], 4, stride=2, padding=1), nn.LeakyReLU(negative_slope)]
        for i in range(1, layers + 1):
            stride = 2 if i < layers else 1
            body += [
                nn.Conv2d(widths[i - 1], widths[i], 4, stride=stride, padding=1, bias=False),
                nn.InstanceNorm2d(widths[i], affine=True),
                nn.LeakyReLU(negative_slope),
            ]
        self.body = nn.Sequential(*body)
        self.score = nn.Conv2d(widths[-1], 1, 4, stride=1, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.body(2 * image - 1)
        return self.score(features)


@register(
    ModelCard(
        name="gradientnet",
        paper=PAPER,
        authors="Qing Qi",
        year=2022,
        venue="Hindawi research article (journal not named in the text held)",
        summary="GAN generator whose U-Net bottleneck learns horizontal/vertical image gradients (RGCL, MBRB)",
        params=3_512_215,
        paper_params=None,
        maps=("Sobel of input",)
        + tuple(f"RGCL {direction} {k}" for k in range(1, MBRB_COUNT + 1) for direction in ("horizontal", "vertical")),
        map_notes={  # "RGCL horizontal 1-10" and "RGCL vertical 1-10" share their stems' caption
            "Sobel of input": "the Sobel gradient magnitude of the blurry input, the paper's baseline edge detector "
                              "(Fig. 4(b))",
            **dict.fromkeys(("RGCL horizontal", "RGCL vertical"),
                            "the responses of the 1x3 and 3x1 gradient convolutions k_1x3 * U and k_3x1 * U of the "
                            "recurrent gradient convolutional layer (Eq. 7, Fig. 3) in MBRB k, k = 1..10, at 1/4 "
                            "resolution: the learned counterpart of Fig. 4(c)-(e)"),
        },
        checkpoint="gradientnet.safetensors",
        config={"encoder_channels": 32, "channels": 64, "blocks": MBRB_COUNT, "recurrence": 3},
    )
)
def gradientnet(**config) -> StructuresGuidedGenerator:
    return StructuresGuidedGenerator(**config)
