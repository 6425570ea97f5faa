"""LMFN: "Image Deblurring Based on Lightweight Multi-Information Fusion Network".

Yanni Zhang, Yiming Liu, Qiang Li, Miao Qi, Dahong Xu, Jun Kong, Jianzhong Wang; IEEE ICIP 2021
(the text copy in shared/papers prints no venue; ICIP 2021 is the bibliographic record).

An encoder (MSHF) takes the blurred image down to 1/4 resolution and fuses a 1/8 and 1/16 pyramid into it;
a decoder (MFFD) runs four residual feature distillation blocks (RFDB, Liu et al. ECCV 2020) at 1/4
resolution, fuses their outputs by layer attention (ALFM, Eq. 1-2) and the last one by pseudo-3-D
channel-spatial attention (ACFM, Eq. 3), and returns to full resolution by a pixel shuffle.

Choices where the paper is silent or ambiguous (source in brackets):

- MSHF is EDVR's pre-deblur pyramid at 64 channels with high-resolution input [paper Sec. 3.2 cites EDVR's
  "downblock" [22]; architecture notes Sec. 4]: 3x3 conv 3 -> 64, two stride-2 3x3 convs to 1/4, two more
  stride-2 convs to 1/8 and 1/16, each conv followed by LeakyReLU(0.1); residual blocks without batch norm
  (conv-ReLU-conv plus identity): 1 at 1/16, 2 at 1/8 (one before and one after the fusion), 5 at 1/4
  (two before the fusion, three after); coarse-to-fine fusion by bilinear x2 upsampling and addition
  [lineage release]. The release's first conv has no padding, which cannot keep the size; ours pads by 1.
- The encoder output goes through a 3x3 conv 64 -> 50 without activation; RFDBs run at 50 channels
  [architecture notes; lineage release].
- RFDB exactly as Liu et al.: distilled C/2 = 25, remaining C = 50 channels; three steps of [1x1 distillation
  conv, 3x3 conv plus identity], LeakyReLU(0.05) after each; a final 3x3 conv to C/2; concatenation of the
  4 * C/2 distilled features, 1x1 conv back to C, then ESA; no block-level residual [architecture notes].
- ESA at C // 4 = 12 channels [architecture notes]. Its max pool (kernel 7, stride 3) needs at least 7 x 7 after
  the stride-2 conv, i.e. images of 64 pixels or more; smaller maps are replicate-padded up to 7 x 7 first
  (a no-op at the sizes the network was built for) so that any image of 16 pixels or more runs.
- ALFM follows the paper's Eq. 1-2 literally: the N layers of C channels are reshaped to an NC x HW matrix and
  the attention is softmax(F F^T), NC x NC (Sec. 3.3.2: "treats the feature channels of each RFBD layer
  separated"). The lineage release instead uses HAN's N x N layer attention on softmax(max - F F^T); we follow
  the paper. theta is initialised to 0 [paper]. Its 1x1 conv 4C -> C is followed by LeakyReLU(0.05)
  [lineage release, RFDN's conv_block].
- ACFM (Eq. 3) treats the C channels as a depth axis of a 1-channel volume: Conv3d 1 -> 1 with kernel
  1x3x3 (conv1) then 3x1x1 (conv2), both with bias and zero "same" padding, then sigmoid. alpha is
  initialised to 0 as theta is [paper silent; lineage release / HAN's CSAM], so ACFM starts as the identity.
- ALFM and ACFM outputs are concatenated, fused by a 3x3 conv 2C -> C and added to the features before the
  RFDBs (the long skip) [architecture notes]; a 3x3 conv C -> 3 * 16 and pixel shuffle x4 give the image.
- The output is NOT a residual on the blurred input: the network predicts the sharp image (Eq. 4 compares
  LMFN(I_Blur) with I directly, and the lineage release adds no input skip). As in the release (which
  inherits RFDN's MeanShift) a fixed RGB mean (0.4488, 0.4371, 0.4040) is subtracted from the input and added
  to the output, here on the [0, 1] scale.
- ``residual=True`` (off in the registered variant, a departure from the paper recorded in a checkpoint's
  architecture metadata): the blurred input itself is added to the output instead of the fixed mean, and the
  upsampler's convolution starts at zero, so the untrained network is the identity and learns the correction.
  Without it the CPU schedules never caught up with the blurry input (README, Trained weights).
- Loss is the MSE of Eq. 4 on the restored image only, so the base class's forward_train suffices.
- Weights use PyTorch's default initialisation (the paper names none).
- Every LeakyReLU works in place (each follows a fresh conv output or sum): at 1280x720 on one thread the
  out-of-place ones took 18 % of the run.
- Parameter count: 1,223,766. The lineage release reports 1.248M because it also builds two convolutions it
  never uses (a 3x3 50 -> 50 and a 3x3 50 -> 3, 23,903 parameters) and two MeanShift convs; the paper says 1.25M.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import DeblurModel, MapRecorder, channel_mean
from core.models.blocks import ResBlock
from core.registry import ModelCard, register

PAPER = "Image Deblurring Based on Lightweight Multi-Information Fusion Network"
AUTHORS = "Yanni Zhang, Yiming Liu, Qiang Li, Miao Qi, Dahong Xu, Jun Kong, Jianzhong Wang"
RGB_MEAN = (0.4488, 0.4371, 0.4040)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class MSHF(nn.Module):
    """Multi-scale hierarchical fusion encoder (Sec. 3.2): 3 x H x W -> channels x H/4 x W/4."""

    def __init__(self, *, channels: int = 64, negative_slope: float = 0.1) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.down_half = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.down_quarter = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.down_eighth = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.down_sixteenth = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.res_sixteenth = ResBlock(channels)
        self.res_eighth_before = ResBlock(channels)
        self.res_eighth_after = ResBlock(channels)
        self.res_quarter_before = nn.Sequential(ResBlock(channels), ResBlock(channels))
        self.res_quarter_after = nn.Sequential(ResBlock(channels), ResBlock(channels), ResBlock(channels))
        self.act = nn.LeakyReLU(negative_slope, inplace=True)  # always on a fresh conv output or sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0 = self.act(self.head(x))
        f1 = self.act(self.down_half(f0))
        f2 = self.act(self.down_quarter(f1))
        f3 = self.act(self.down_eighth(f2))
        f4 = self.act(self.down_sixteenth(f3))
        f3 = self.res_eighth_before(f3) + upsample2(self.res_sixteenth(f4))
        f2 = self.res_quarter_before(f2) + upsample2(self.res_eighth_after(f3))
        return self.res_quarter_after(f2)


class ESA(nn.Module):
    """Enhanced spatial attention (Liu et al. 2020): a sigmoid gate from a strided, max-pooled branch."""

    def __init__(self, channels: int, *, reduction: int = 4, pool_size: int = 7, pool_stride: int = 3) -> None:
        super().__init__()
        hidden = channels // reduction
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.down = nn.Conv2d(hidden, hidden, 3, stride=2)
        self.body = nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
        )
        self.skip = nn.Conv2d(hidden, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        strided = self.down(reduced)
        # Padding computed from shapes, not data; it is zero once the map is pool_size or larger.
        short_h = max(0, self.pool_size - strided.shape[-2])
        short_w = max(0, self.pool_size - strided.shape[-1])
        strided = F.pad(strided, (0, short_w, 0, short_h), mode="replicate")
        pooled = F.max_pool2d(strided, kernel_size=self.pool_size, stride=self.pool_stride)
        context = F.interpolate(self.body(pooled), size=x.shape[-2:], mode="bilinear", align_corners=False)
        gate = torch.sigmoid(self.expand(context + self.skip(reduced)))
        return x * gate


class RFDB(nn.Module):
    """Residual feature distillation block (Liu et al. ECCV 2020), as LMFN's decoder uses it (Sec. 3.3.1)."""

    def __init__(self, channels: int, *, steps: int = 3, negative_slope: float = 0.05) -> None:
        super().__init__()
        distilled = channels // 2
        self.distill = nn.ModuleList(nn.Conv2d(channels, distilled, 1) for _ in range(steps))
        self.refine = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(steps))
        self.distill_last = nn.Conv2d(channels, distilled, 3, padding=1)
        self.fuse = nn.Conv2d(distilled * (steps + 1), channels, 1)
        self.esa = ESA(channels)
        self.act = nn.LeakyReLU(negative_slope, inplace=True)  # always on a fresh conv output or sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled = []
        remaining = x
        for distill, refine in zip(self.distill, self.refine):
            distilled.append(self.act(distill(remaining)))
            remaining = self.act(refine(remaining) + remaining)  # shallow residual block
        distilled.append(self.act(self.distill_last(remaining)))
        return self.esa(self.fuse(torch.cat(distilled, dim=1)))


class ALFM(nn.Module):
    """Attention layer fusion module (Fig. 2, Eq. 1-2): channel-to-channel attention across all RFDB outputs,
    then a 1x1 conv from layers * channels back to channels."""

    def __init__(self, channels: int, *, layers: int = 4, negative_slope: float = 0.05) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.zeros(1))
        self.fusion = nn.Sequential(nn.Conv2d(layers * channels, channels, 1),
                                    nn.LeakyReLU(negative_slope, inplace=True))

    def forward(self, layers: list[torch.Tensor], maps: MapRecorder) -> torch.Tensor:
        f_g = torch.cat(layers, dim=1)
        batch, stacked, height, width = f_g.shape
        matrix = f_g.reshape(batch, stacked, height * width)
        attention = torch.softmax(matrix @ matrix.transpose(1, 2), dim=-1)  # Eq. 1
        maps.add("ALFM attention", attention)
        fused = self.theta * (attention @ matrix) + matrix  # Eq. 2
        return self.fusion(fused.reshape(batch, stacked, height, width))


class ACFM(nn.Module):
    """Attention channel fusion module (Fig. 3, Eq. 3): pseudo-3-D attention over (channel, y, x)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(1, 1, (1, 3, 3), padding=(0, 1, 1))  # spatial
        self.conv2 = nn.Conv3d(1, 1, (3, 1, 1), padding=(1, 0, 0))  # across adjacent channels
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, f_out: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        volume = f_out.unsqueeze(1)
        attention = torch.sigmoid(self.conv2(self.conv1(volume))).squeeze(1)
        maps.add("ACFM attention", channel_mean(attention))
        return f_out + self.alpha * attention * f_out  # Eq. 3


class LMFN(DeblurModel):
    """Lightweight multi-information fusion network (Fig. 1): MSHF encoder, then MFFD decoder."""

    pad_multiple = 16

    def __init__(
        self,
        *,
        encoder_channels: int = 64,
        channels: int = 50,
        num_rfdb: int = 4,
        residual: bool = False,
    ) -> None:
        super().__init__()
        self.residual = residual
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.mshf = MSHF(channels=encoder_channels)
        self.head = nn.Conv2d(encoder_channels, channels, 3, padding=1)
        self.rfdbs = nn.ModuleList(RFDB(channels) for _ in range(num_rfdb))
        self.alfm = ALFM(channels, layers=num_rfdb)
        self.acfm = ACFM()
        self.fuse = nn.Conv2d(2 * channels, channels, 3, padding=1)
        # back from MSHF's 1/4 resolution to the image
        self.upsampler = nn.Sequential(nn.Conv2d(channels, 3 * 4**2, 3, padding=1), nn.PixelShuffle(4))
        if residual:
            nn.init.zeros_(self.upsampler[0].weight)
            nn.init.zeros_(self.upsampler[0].bias)

    def _restore(self, x: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        encoded = self.mshf(x - self.rgb_mean)
        shallow = self.head(encoded)
        layers = []
        feature = shallow
        for rfdb in self.rfdbs:
            feature = rfdb(feature)
            layers.append(feature)
        layer_fused = self.alfm(layers, maps)
        channel_fused = self.acfm(layers[-1], maps)
        fused = self.fuse(torch.cat([layer_fused, channel_fused], dim=1)) + shallow
        return self.upsampler(fused) + (x if self.residual else self.rgb_mean)


@register(
    ModelCard(
        name="lmfn",
        paper=PAPER,
        authors=AUTHORS,
        year=2021,
        venue="ICIP",
        summary="1.2M-parameter encoder-decoder: EDVR-style pyramid encoder, 4 RFDBs fused by layer and "
        "pseudo-3-D channel attention, pixel-shuffle x4 output.",
        params=1_223_766,
        paper_params=1_250_000,
        maps=("ALFM attention", "ACFM attention"),
        map_notes={
            "ALFM attention": "the NC x NC channel-to-channel attention softmax(F F^T) across the four RFDB outputs "
                              "(4 x 50 channels) of the attention layer fusion module (Eq. 1-2, Fig. 2)",
            "ACFM attention": "the sigmoid gate W of the pseudo-3-D attention channel fusion module on the last "
                              "RFDB (Eq. 3, Fig. 3), channel mean",
        },
        config={"encoder_channels": 64, "channels": 50, "num_rfdb": 4, "residual": False},
    )
)
def lmfn(**config) -> LMFN:
    return LMFN(**config)
