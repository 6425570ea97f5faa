"""UNet+SP: a U-Net deblurrer guided by a semantic prior distilled from a classification network.

Paper: "Take a Prior from Other Tasks for Severe Blur Removal", Pei Wang, Danna Xue, Yu Zhu, Jinqiu Sun,
Qingsen Yan, Sung-eui Yoon, Yanning Zhang. arXiv 2302.06898 (Feb. 2023), the text implemented here; published in
Computer Vision and Image Understanding 245 (2024) 104027.

The network (Fig. 1) has two branches. The Semantic Prior Learning branch (SPL) runs a student F_S on the
blurry image, giving features m^1..m^3 at three scales; a Cross-Level Connection (CLC, Eq. 3) pulls each
deeper level into the shallower one, giving the priors f_pri^1..f_pri^3 (f_pri^3 = m^3). During training the
priors are matched to a frozen teacher F_P's features of the sharp image by the HCL loss (Eq. 2, 4); the
teacher and the loss belong to the training sub-project, the model only returns the priors
(``forward_train``) and declares the shapes a teacher must produce (``prior_channels``, ``prior_strides``).
The Image Deblurring branch (IDe) is a three-level U-Net; at every decoder level a Semantic Prior Embedding
layer aggregates the priors of all levels (MLA, Eq. 5) and modulates the skip connection with them
(SAT, Eq. 6).

Choices made where the paper is silent or ambiguous (no code was released; architecture notes section 1):

- Widths. The paper gives no channel widths, block counts or parameter count. IDe: 32 / 64 / 128 channels at
  strides 1 / 2 / 4, each level a 3x3 conv + ReLU (stride 2 for levels 2 and 3) followed by two ResBlocks
  (conv-ReLU-conv plus identity, ``blocks.ResBlock``); the decoder mirrors it with two ResBlocks per level and
  4x4 stride-2 transposed convolutions to go up; a 3x3 conv to RGB plus the input (global residual). The
  paper's "UNet" baseline [17] has no channel attention, so none is added.
- Skip connections. Eq. 6 adds f_en^i to f_de^i inside SAT, so the U-Net's skips are additions made by SAT at
  all three levels. At level 3, f_de^3 is the decoder's (bottleneck) ResBlocks applied to f_en^3; at levels 2
  and 1, f_de^i is the up-sampled output of the level below, and the level's ResBlocks follow SAT
  ("f_sa^i is fed into the following stages", Sec. 3.2).
- Prior shapes. SAT's conv1(M^i) must have the resolution of decoder level i (Eq. 6, no resize is mentioned),
  and "F_S, F_P and IDe have the same number of layers L = 3" (Sec. 4.1): the priors live at the IDe's strides
  1 / 2 / 4. Their widths default to the IDe's, 32 / 64 / 128: the prior part (F_S, CLC, MLA and SAT's convs)
  then costs about as much as the rest of the U-Net (19 of 35 GMACs at 256x256), in line with Table 1, where
  adding SP doubles the UNet's runtime (0.086 s -> 0.170 s). A teacher must produce these shapes
  (``prior_channels``, ``prior_strides``); ``prior_channels=(64, 128, 256)`` instead matches VGG-16's relu1_2 /
  relu2_2 / relu3_3 (also strides 1 / 2 / 4), should an ImageNet VGG-16 classifier [31] be the teacher.
- Student F_S: per level a 3x3 conv + ReLU (stride 2 for levels 2 and 3) and one ResBlock; m^i is the level's
  output. The paper only says it is a multi-scale model with three scales.
- CLC (Eq. 3): "conv" is a 3x3 convolution from cat(m^i, m^{i+1}_up) to the channels of m^i, used as it is
  written: no sigmoid, f_att^i has as many channels as m^i (the product is element-wise). The "upsampling
  layer" must also change m^{i+1}'s channels to those of m^i for the products to be defined, so it is a learned
  4x4 stride-2 transposed convolution. Eq. 3 writes i in (0, 1); with L = 3 this is read as i in {1, 2}.
- MLA (Eq. 5): "conv" is a 3x3 convolution from the concatenation [f_pri^i, then the other levels in
  increasing order] to the channels of f_pri^i, again without sigmoid; the other levels are resized to level
  i's size by bilinear interpolation (align_corners=False), as "linear interpolation" is stated for MLA.
- SAT (Eq. 6): conv1 and conv2 are single 3x3 convolutions from M^i to the decoder's width at level i.
  conv1's bias starts at 1 (weights at PyTorch's default) so that an untrained SAT starts near the plain U-Net
  skip addition; this changes the initialisation only, not the equation.
- pad_multiple = 4 (two stride-2 levels).

Parameter count (default configuration): 3,384,419 (measured; the paper reports none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import DeblurModel, MapRecorder, channel_mean
from core.models.blocks import ResBlock
from core.registry import ModelCard, register

PAPER = "Take a Prior from Other Tasks for Severe Blur Removal"
AUTHORS = "Pei Wang, Danna Xue, Yu Zhu, Jinqiu Sun, Qingsen Yan, Sung-eui Yoon, Yanning Zhang"


def conv3x3(in_channels: int, out_channels: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


def up2x(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """A learned x2 upsampling layer (4x4 transposed convolution, stride 2): exactly doubles H and W."""
    return nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1)


def level(in_channels: int, out_channels: int, *, stride: int, num_blocks: int) -> nn.Sequential:
    """One scale of an encoder: 3x3 conv (strided to go down) + ReLU, then ResBlocks."""
    return nn.Sequential(
        conv3x3(in_channels, out_channels, stride=stride),
        nn.ReLU(inplace=True),
        *(ResBlock(out_channels) for _ in range(num_blocks)),
    )


class StudentNet(nn.Module):
    """F_S, the prior extraction module: the blurry image -> m^1, m^2, m^3 at strides 1, 2, 4."""

    def __init__(self, *, channels: tuple[int, int, int] = (32, 64, 128), num_blocks: int = 1) -> None:
        super().__init__()
        self.level1 = level(3, channels[0], stride=1, num_blocks=num_blocks)
        self.level2 = level(channels[0], channels[1], stride=2, num_blocks=num_blocks)
        self.level3 = level(channels[1], channels[2], stride=2, num_blocks=num_blocks)

    def forward(self, blurry: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m1 = self.level1(blurry)
        m2 = self.level2(m1)
        m3 = self.level3(m2)
        return m1, m2, m3


class CLC(nn.Module):
    """Cross-Level Connection (Fig. 2a, Eq. 3): f_pri = f_att * m + f_att * up(m_deeper),
    with f_att = conv(cat(m, up(m_deeper)))."""

    def __init__(self, *, channels: int, deeper_channels: int) -> None:
        super().__init__()
        self.up = up2x(deeper_channels, channels)
        self.conv = conv3x3(2 * channels, channels)

    def forward(self, m: torch.Tensor, m_deeper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (f_pri, f_att)."""
        deeper_up = self.up(m_deeper)
        attention = self.conv(torch.cat((m, deeper_up), dim=1))
        prior = attention * m + attention * deeper_up
        return prior, attention


class SPL(nn.Module):
    """Semantic Prior Learning branch (Fig. 1, bottom): F_S, then CLC at levels 1 and 2; f_pri^3 = m^3."""

    def __init__(self, *, channels: tuple[int, int, int] = (32, 64, 128), num_blocks: int = 1) -> None:
        super().__init__()
        self.student = StudentNet(channels=channels, num_blocks=num_blocks)
        self.clc1 = CLC(channels=channels[0], deeper_channels=channels[1])
        self.clc2 = CLC(channels=channels[1], deeper_channels=channels[2])

    def forward(self, blurry: torch.Tensor):
        """Returns ((f_pri^1, f_pri^2, f_pri^3), (f_att^1, f_att^2))."""
        m1, m2, m3 = self.student(blurry)
        prior1, attention1 = self.clc1(m1, m2)
        prior2, attention2 = self.clc2(m2, m3)
        prior3 = m3
        return (prior1, prior2, prior3), (attention1, attention2)


class MLA(nn.Module):
    """Multi-Level Aggregate (Fig. 2b, Eq. 5) for one level i:
    M^i = conv(cat(f_pri^i, resized f_pri^t for t != i)) * f_pri^i + f_pri^i."""

    def __init__(self, *, channels: int, total_channels: int) -> None:
        super().__init__()
        self.conv = conv3x3(total_channels, channels)

    def forward(self, prior: torch.Tensor, others: tuple[torch.Tensor, ...]) -> torch.Tensor:
        size = prior.shape[-2:]
        resized = [F.interpolate(other, size=size, mode="bilinear", align_corners=False) for other in others]
        attention = self.conv(torch.cat((prior, *resized), dim=1))
        return attention * prior + prior


class SAT(nn.Module):
    """Semantic Attention Transformation (Fig. 2c, Eq. 6): mu = conv1(M), sigma = conv2(M),
    f_sa = mu * (f_de + f_en) + sigma."""

    def __init__(self, *, prior_channels: int, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(prior_channels, channels)
        self.conv2 = conv3x3(prior_channels, channels)
        nn.init.ones_(self.conv1.bias)

    def forward(self, prior: torch.Tensor, decoded: torch.Tensor, encoded: torch.Tensor):
        """Returns (f_sa, mu, sigma)."""
        scale = self.conv1(prior)
        shift = self.conv2(prior)
        return scale * (decoded + encoded) + shift, scale, shift


class IDe(nn.Module):
    """Image Deblurring branch (Fig. 1, top): a three-level U-Net whose additive skips are SAT modulations."""

    def __init__(
        self,
        *,
        channels: tuple[int, int, int] = (32, 64, 128),
        prior_channels: tuple[int, int, int] = (32, 64, 128),
        num_blocks: int = 2,
    ) -> None:
        super().__init__()
        self.encoder1 = level(3, channels[0], stride=1, num_blocks=num_blocks)
        self.encoder2 = level(channels[0], channels[1], stride=2, num_blocks=num_blocks)
        self.encoder3 = level(channels[1], channels[2], stride=2, num_blocks=num_blocks)
        self.decoder3 = nn.Sequential(*(ResBlock(channels[2]) for _ in range(num_blocks)))
        self.sat3 = SAT(prior_channels=prior_channels[2], channels=channels[2])
        self.up2 = up2x(channels[2], channels[1])
        self.sat2 = SAT(prior_channels=prior_channels[1], channels=channels[1])
        self.decoder2 = nn.Sequential(*(ResBlock(channels[1]) for _ in range(num_blocks)))
        self.up1 = up2x(channels[1], channels[0])
        self.sat1 = SAT(prior_channels=prior_channels[0], channels=channels[0])
        self.decoder1 = nn.Sequential(*(ResBlock(channels[0]) for _ in range(num_blocks)))
        self.output = conv3x3(channels[0], 3)

    def forward(self, blurry: torch.Tensor, aggregated: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        """Returns (restored image, (mu^1, mu^2, mu^3), (sigma^1, sigma^2, sigma^3))."""
        encoded1 = self.encoder1(blurry)
        encoded2 = self.encoder2(encoded1)
        encoded3 = self.encoder3(encoded2)
        decoded3 = self.decoder3(encoded3)
        fused3, scale3, shift3 = self.sat3(aggregated[2], decoded3, encoded3)
        decoded2 = self.up2(fused3)
        fused2, scale2, shift2 = self.sat2(aggregated[1], decoded2, encoded2)
        refined2 = self.decoder2(fused2)
        decoded1 = self.up1(refined2)
        fused1, scale1, shift1 = self.sat1(aggregated[0], decoded1, encoded1)
        refined1 = self.decoder1(fused1)
        restored = self.output(refined1) + blurry
        return restored, (scale1, scale2, scale3), (shift1, shift2, shift3)


class UNetSP(DeblurModel):
    """UNet+SP (Table 1): SPL -> SPE (MLA, then SAT inside every IDe decoder level) -> IDe.

    ``prior_channels`` and ``prior_strides`` (down-sampling factor w.r.t. the input) are the shapes of
    f_pri^1..f_pri^3, hence of the teacher features f_gt^1..f_gt^3 that the HCL loss compares them with.
    """

    pad_multiple = 4
    prior_strides = (1, 2, 4)

    def __init__(
        self,
        *,
        channels: tuple[int, int, int] = (32, 64, 128),
        prior_channels: tuple[int, int, int] = (32, 64, 128),
        num_blocks: int = 2,
        student_blocks: int = 1,
    ) -> None:
        super().__init__()
        self.prior_channels = tuple(prior_channels)
        self.spl = SPL(channels=self.prior_channels, num_blocks=student_blocks)
        self.mla1 = MLA(channels=self.prior_channels[0], total_channels=sum(self.prior_channels))
        self.mla2 = MLA(channels=self.prior_channels[1], total_channels=sum(self.prior_channels))
        self.mla3 = MLA(channels=self.prior_channels[2], total_channels=sum(self.prior_channels))
        self.ide = IDe(channels=channels, prior_channels=self.prior_channels, num_blocks=num_blocks)

    def _deblur(self, blurry: torch.Tensor, maps: MapRecorder):
        """The whole figure once: returns (restored image, (f_pri^1, f_pri^2, f_pri^3))."""
        (prior1, prior2, prior3), attentions = self.spl(blurry)
        aggregated1 = self.mla1(prior1, (prior2, prior3))
        aggregated2 = self.mla2(prior2, (prior1, prior3))
        aggregated3 = self.mla3(prior3, (prior1, prior2))
        restored, scales, shifts = self.ide(blurry, (aggregated1, aggregated2, aggregated3))

        if maps.enabled:  # the channel means cost a pass over every feature: skip them when no map is asked for
            for index, prior in enumerate((prior1, prior2, prior3), start=1):
                maps.add(f"prior {index}", channel_mean(prior))
            for index, attention in enumerate(attentions, start=1):
                maps.add(f"CLC attention {index}", channel_mean(attention))
            for index, aggregated in enumerate((aggregated1, aggregated2, aggregated3), start=1):
                maps.add(f"MLA prior {index}", channel_mean(aggregated))
            for index, (scale, shift) in enumerate(zip(scales, shifts), start=1):
                maps.add(f"SAT scale {index}", channel_mean(scale))
                maps.add(f"SAT shift {index}", channel_mean(shift))
        return restored, (prior1, prior2, prior3)

    def _restore(self, x: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        restored, _ = self._deblur(x, maps)
        return restored

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """{"output": restored image, "priors": [f_pri^1, f_pri^2, f_pri^3]} for L_re and L_prior (Eq. 7)."""
        self.check_train_size(x)
        restored, priors = self._deblur(x, MapRecorder(False))
        return {"output": restored, "priors": list(priors)}


MAPS = (
    "prior 1",
    "prior 2",
    "prior 3",
    "CLC attention 1",
    "CLC attention 2",
    "MLA prior 1",
    "MLA prior 2",
    "MLA prior 3",
    "SAT scale 1",
    "SAT shift 1",
    "SAT scale 2",
    "SAT shift 2",
    "SAT scale 3",
    "SAT shift 3",
)


@register(
    ModelCard(
        name="sp-unet",
        paper=PAPER,
        authors=AUTHORS,
        year=2024,
        venue="Computer Vision and Image Understanding (arXiv 2302.06898, 2023)",
        summary="U-Net deblurrer with a semantic prior distilled from a classifier (CLC, MLA, SAT)",
        params=3_384_419,
        paper_params=None,
        maps=MAPS,
        map_notes={  # a numbered family ("prior 1-3") shares its stem's caption
            "prior": "the learned semantic priors f_pri^i at strides 1, 2, 4 (channel means, colour-mapped as the "
                     "paper shows them in Fig. 6-7)",
            "CLC attention": "f_att^i of the Cross-Level Connection that pulls the deeper prior into the shallower "
                             "one (Eq. 3, Fig. 2a)",
            "MLA prior": "the aggregated priors M^i (Eq. 5, Fig. 2b)",
            **dict.fromkeys(("SAT scale", "SAT shift"),
                            "mu and sigma with which the Semantic Attention Transformation modulates each decoder "
                            "skip, mu (f_de + f_en) + sigma (Eq. 6, Fig. 2c)"),
        },
        config={"channels": (32, 64, 128), "prior_channels": (32, 64, 128), "num_blocks": 2, "student_blocks": 1},
    )
)
def sp_unet(**config) -> UNetSP:
    return UNetSP(**config)
