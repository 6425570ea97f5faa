"""Clean Images are Hard to Reblur: Exploiting the Ill-Posed Inverse Task for Dynamic Scene Deblurring.

Seungjun Nah, Sanghyun Son, Jaerin Lee, Kyoung Mu Lee. ICLR 2022 (the text in ``shared/papers`` is the
earlier arXiv version, "Clean Images are Hard to Reblur: A New Clue for Deblurring", whose supplement holds
Tables S1 and S3 used here).

Two modules: the deblurring module M_D, the paper's baseline residual U-Net (Supplement Table S1), and the
reblurring module M_R, a small ResNet that amplifies the blur left in a deblurred image (Table S3). Only M_D
restores; M_R exists for the reblurring losses (Eqs. 2-7), for the test-time adaptation of Algorithm 1 (which
uses ``model.deblur`` and ``model.reblur`` directly) and for the maps.

Choices made where the paper is silent or contradicts itself:

- M_D skip connections: additive (decoder feature + encoder feature of the same scale, after the decoder
  layer's activation). Table S1 lists the decoder widths 128 and 64 without the doubled input widths that
  concatenation would need, so addition is the reading that keeps every layer exactly as tabulated.
- M_D global residual: the restored image is ``B + tail(...)``; the paper calls the model a "residual U-Net"
  (Sec. 4, S1) without drawing it here (Figure S1 is not in the text).
- M_D upsampling: 3x3 transposed convolutions, stride 2 (padding 1, output padding 1, so exactly x2). Table S1
  lists layers 20-21 as "3x3 conv" with doubled resolution, and S1 says M_R has no strides "to avoid
  deconvolution artifacts", i.e. the U-Net's upsampling is a deconvolution.
- M_D activations: ReLU after every convolution except the last (head, both strided convolutions, both
  transposed convolutions), and inside each ResBlock between its two convolutions (conv-ReLU-conv + identity,
  ``blocks.ResBlock``); no normalisation. The paper names no activation; ReLU and no normalisation are the
  conventions of the first author's public DeepDeblur-PyTorch code (``src/model/common.py``).
- M_R: 5x5 conv 3->64, n ResBlocks (5x5, 64), 5x5 conv 64->3, no activation outside the ResBlocks (the first
  author's public ``ResNet``: conv, ResBlocks, conv), all at full resolution: Table S3's "H/4" output shape
  of the ResBlocks is a typo contradicted by S1 ("without strides") and by its own final "3 x H x W"
  (architecture notes, section 3).
- M_R residual to its input: ``M_R(L) = L + tail(...)``. Figure S1 is not in the text; the choice follows the
  "simple residual network" of S1 and Eq. 3 / Sec. 3.1: a sharp image must pass through M_R unaltered
  ("zero-magnitude blur should remain unaltered"), which a residual module expresses as a zero residual. The
  "residual blur" map |M_R(L) - L| is then exactly the magnitude of M_R's predicted residual.
- Biases in every convolution (the paper is silent; the public code's default).
- pad_multiple 4: two stride-2 downsamplings in M_D; M_R works at any size.
- Maps: M_R is applied to the unclamped M_D output L (what M_R sees in training, Eqs. 5 and 7), and only when
  maps are asked for, since restoration does not need it. Both maps are at image resolution.
- Defaults: 8 ResBlocks in M_D (Table S1) and n = 2 ResBlocks in M_R, the setting used for Table 4, the
  TTA tables and all supplement figures; the "reblur-n1" variant sets n = 1 (Sec. 4.1, Table 2).
"""

from __future__ import annotations

import torch
from torch import nn

from core.models.base import DeblurModel, MapRecorder, channel_mean
from core.models.blocks import ResBlock
from core.registry import ModelCard, register

PAPER = "Clean Images are Hard to Reblur: Exploiting the Ill-Posed Inverse Task for Dynamic Scene Deblurring"
AUTHORS = "Seungjun Nah, Sanghyun Son, Jaerin Lee, Kyoung Mu Lee"


def conv_relu(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2),
        nn.ReLU(inplace=True),
    )


def up_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 transposed convolution with stride 2 (exactly doubles height and width), then ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
        nn.ReLU(inplace=True),
    )


class DeblurUNet(nn.Module):
    """M_D, the baseline residual U-Net of Supplement Table S1 (layers 1-22)."""

    def __init__(self, *, widths: tuple[int, int, int] = (64, 128, 192), n_resblocks: int = 8) -> None:
        super().__init__()
        full, half, quarter = widths
        self.head = conv_relu(3, full, 5)  # 1: 5x5 conv, 64 x H x W
        self.down1 = conv_relu(full, half, 3, stride=2)  # 2: 3x3 conv, 128 x H/2 x W/2
        self.down2 = conv_relu(half, quarter, 3, stride=2)  # 3: 3x3 conv, 192 x H/4 x W/4
        self.body = nn.Sequential(*(ResBlock(quarter, kernel_size=3) for _ in range(n_resblocks)))  # 4-19
        self.up1 = up_relu(quarter, half)  # 20: 3x3 up, 128 x H/2 x W/2
        self.up2 = up_relu(half, full)  # 21: 3x3 up, 64 x H x W
        self.tail = nn.Conv2d(full, 3, 5, padding=2)  # 22: 5x5 conv, 3 x H x W

    def forward(self, blurry: torch.Tensor) -> torch.Tensor:
        full = self.head(blurry)
        half = self.down1(full)
        quarter = self.down2(half)
        quarter = self.body(quarter)
        half = self.up1(quarter) + half
        full = self.up2(half) + full
        return blurry + self.tail(full)


class ReblurModule(nn.Module):
    """M_R, the reblurring module of Supplement Table S3: a stride-free residual network."""

    def __init__(self, *, channels: int = 64, n_resblocks: int = 2, kernel_size: int = 5) -> None:
        super().__init__()
        padding = kernel_size // 2
        self.head = nn.Conv2d(3, channels, kernel_size, padding=padding)
        self.body = nn.Sequential(*(ResBlock(channels, kernel_size=kernel_size) for _ in range(n_resblocks)))
        self.tail = nn.Conv2d(channels, 3, kernel_size, padding=padding)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        feature = self.head(image)
        feature = self.body(feature)
        return image + self.tail(feature)


class Reblur(DeblurModel):
    """M_D restores; M_R (``self.reblur``) serves the reblurring losses, test-time adaptation and the maps."""

    pad_multiple = 4

    def __init__(
        self,
        *,
        deblur_widths: tuple[int, int, int] = (64, 128, 192),
        deblur_resblocks: int = 8,
        reblur_channels: int = 64,
        reblur_resblocks: int = 2,
        reblur_kernel_size: int = 5,
    ) -> None:
        super().__init__()
        self.deblur = DeblurUNet(widths=deblur_widths, n_resblocks=deblur_resblocks)
        self.reblur = ReblurModule(
            channels=reblur_channels, n_resblocks=reblur_resblocks, kernel_size=reblur_kernel_size
        )

    def _restore(self, x: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        deblurred = self.deblur(x)
        # M_R is not needed for the restored image: it runs only when maps are asked for.
        if maps.enabled:
            reblurred = self.reblur(deblurred)
            maps.add("reblurred", reblurred)
            maps.add("residual blur", channel_mean((reblurred - deblurred).abs()))
        return deblurred

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """L = M_D(B) and M_R(L), with gradients; the loss calls ``self.reblur`` on S and M_D(S) itself."""
        self.check_train_size(x)
        deblurred = self.deblur(x)
        return {"output": deblurred, "reblurred": self.reblur(deblurred)}


MAPS = ("reblurred", "residual blur")
MAP_NOTES = {
    "reblurred": "M_R(L), the reblurring module applied to the deblurred output L (Sec. 3, Fig. 2)",
    "residual blur": "|M_R(L) - L|, where M_R still finds blur to amplify: clean images are hard to reblur, so a "
                     "sharp output leaves it near zero. The remaining-blur kernel at a point you pick (Compare tab) "
                     "is the paper's Fig. 1; the Adapt tab runs its test-time adaptation (Algorithm 1)",
}


@register(
    ModelCard(
        name="reblur-n1",
        paper=PAPER,
        authors=AUTHORS,
        year=2022,
        venue="ICLR",
        summary="Residual U-Net deblurrer trained with a 1-ResBlock reblurring module (balanced PSNR/perception)",
        params=6_126_086,
        paper_params=None,
        maps=MAPS,
        map_notes=MAP_NOTES,
        checkpoint="reblur-n1.safetensors",
        config={"reblur_resblocks": 1},
    )
)
def reblur_n1(**config) -> Reblur:
    return Reblur(**config)


@register(
    ModelCard(
        name="reblur-n2",
        paper=PAPER,
        authors=AUTHORS,
        year=2022,
        venue="ICLR",
        summary="Residual U-Net deblurrer trained with a 2-ResBlock reblurring module (sharper, perception first)",
        params=6_331_014,
        paper_params=None,
        maps=MAPS,
        map_notes=MAP_NOTES,
        checkpoint="reblur-n2.safetensors",
        config={"reblur_resblocks": 2},
    )
)
def reblur_n2(**config) -> Reblur:
    return Reblur(**config)
