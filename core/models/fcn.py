"""A feature catcher with excellent deblurring effects.

Xinyue Zhang, Guodong Wang, Hao Dong, Bining Zeng. 5th International Conference on Big Data Technologies
(ICBDT 2022), ACM, 2022. doi:10.1145/3565291.3565338

FCN is a four-stage multi-patch network (Sec. 3, Fig. 2): stage 0 sees 8 patches, stage 1 four, stage 2 two and
stage 3 the whole image. Stage 0 is the "global feature catcher": a processing block (PB, Sec. 3.1, Fig. 3a) and
the query-key mechanism (Sec. 3.2, Fig. 3b), whose sigmoid "query maps" weigh the stage-0 "key" features. Stages
1-3 are the "local feature catcher": encoder-decoders with channel-attention blocks, the enhanced feature
extraction module (EFEM, Sec. 3.3, Fig. 4a), the multi-stage attention mechanism (MSAM, Sec. 3.4, Fig. 4b) and
the raw information mechanism (RIM, Sec. 3.5, Fig. 5). The authors' public release is a fork of MPRNet (Zamir
et al., CVPR 2021); where the paper's text is too vague to build from, the release's structure is followed
(architecture notes, section 2).

Choices made where the paper is silent or contradicts itself:

- Widths and depths are the release's MPRNet defaults (architecture notes): 96 features, encoder levels
  96 / 144 / 192 with 2 channel-attention blocks (CAB) each, bilinear x0.5 + 1x1 conv down, bilinear x2 +
  1x1 conv up, RIM at 96 + 32 = 128 channels with 3 groups of 8 CABs, channel attention with reduction 4,
  no biases, 3x3 kernels. The paper gives only "96 channels" for the PB (Sec. 3.1).
- Activations: SELU inside the stage-0 PB (Sec. 3.1), PReLU everywhere else (the release). The release shares
  one single-parameter PReLU across the whole network; here every CAB owns its PReLU (one parameter each), as
  one shared slope across 55 blocks is an artefact of MPRNet's code, not a design the paper states.
- Stages 1-3 start with the release's "shallow feature" block (3x3 conv + CAB with PReLU), which is the PB
  of Fig. 3a with PReLU: Sec. 3.1 says the PB is stacked ("we use multiple stacks of the same module") and
  Sec. 3.5 speaks of stage-3 features "processed in this stage by PB".
- Query-key (Sec. 3.2): parameter-free LayerNorm -> 1x1 conv 96->48 -> 1x1 conv 48->96 -> sigmoid, the gate
  multiplies the stage-0 features (release). It is the only query-key: the paper puts it in the global feature
  catcher (Sec. 3.1, Sec. 5), the release has one, so there is one map, "query map 1". The release normalises
  over the whole top-half tensor including the batch dimension (results then depend on the other images in the
  batch) and gates only the top half, adding the bottom half ungated; here each of the two half-image patches
  of each image is normalised over (C, H, W) on its own and both halves are gated (Sec. 3.2: one query group
  per image chunk).
- Where stage 0 joins stage 1: the gated stage-0 features are added to the stage-1 encoder's first-level
  features in the two-patch (half-image) layout, before the stage-1 decoder and before those encoder features
  feed stage 2's cross-stage fusion (release; the paper only says the query-key output provides "global
  information at the later stage", Sec. 1).
- EFEM (Sec. 3.3, Fig. 4a) is the module ending stage 1: LayerNorm, then 1x1 convolutions that go 96 -> 3 (the
  stage's restored image, "a short image after deblurring ... to keep the final calculation loss") -> 96
  (sigmoid), gating a 1x1 projection of the features, plus the input; output width equals input width. This is
  the release's supervised attention with its 1x1 kernels ("we get rid of the convolution kernel with a large
  receptive field ... and use a 1*1 convolution kernel") plus the paper's LayerNorm, which the release lacks.
  The LayerNorm is per pixel over channels with a learnable scale and shift ("to better capture the
  correlation degree of feature information between channels"); the residual adds the un-normalised input.
- MSAM (Sec. 3.4, Fig. 4b) is the module ending stage 2 (the release's second supervised attention, 1x1
  kernels, no LayerNorm): it outputs the stage-2 image and the "stage2_deep_information" that Sec. 3.5 says
  RIM receives "from the third stage of MSAM" (counting stage 0 as the first). The cross-stage inputs the
  paper describes enter stage 2 through the concatenation of this stage's PB features with the EFEM features
  (3x3 conv) and through the 1x1 cross-stage fusion of stage 1's encoder and decoder features in stage 2's
  encoder (release).
- RIM (Sec. 3.5, Fig. 5) is the release's original-resolution subnetwork: three groups of 8 CABs + 3x3 conv
  with a residual, after each group the stage-2 encoder ("oriImg_encoder") and decoder ("oriImg_decoder")
  features of the matching level, upsampled and projected by 1x1 convolutions, are added. Its input ("part 1"
  and "part 2") is the stage-3 PB features concatenated with the MSAM features (3x3 conv 192 -> 128).
- Outputs: stages 1, 2 and 3 each restore an image (release: stage 3 adds the blurry input); stage 0 produces
  features only. The paper numbers stages 0-3 (Sec. 3) but sums Eq. 1 over s = 0..4; with three supervised
  outputs there are three trust ratios. The maps are "stage 1 output", "stage 2 output", "stage 3 output"
  (the final image, before clamping), and there is no "stage 4".
- Trust ratios (Sec. 3.6, Eq. 1): r = softmax(trust_logits), one logit per supervised stage, initialised to
  zero (r = 1/3 each). The paper makes r_s trainable and "limited between 0 and 1"; minimised literally, the
  loss sum_s r_s * ||P_s - G|| is smallest at r = 0, so the ratios would vanish. Softmax keeps every r_s in
  (0, 1) with sum 1, so the ratios redistribute attention between stages instead of switching the loss off.
  The training code is meant to compute Loss = sum_s r_s * sqrt(||P_s - G||^2) with P_s = forward_train's
  "stages"[s] and r = its "trust ratios", and to let the optimiser update trust_logits with the network. (Left
  alone the ratios drift towards the stage with the smallest loss; the paper adjusts them "in the later stage
  of training", Sec. 3.6, so a trainer may freeze the logits early on.)
- pad_multiple (8, 16): the stage-1 patches (H/2 x W/2) are downsampled twice, so H and W must be multiples
  of 8; W is padded to a multiple of 16, the project's convention for FCN (a multiple of 8 would suffice).
- Patches are folded into the batch dimension (split_patches / merge_patches) instead of the release's
  per-patch calls: the same convolutions (each patch zero-padded at its own borders), one call per module.
- Activations are stored channels-last (NHWC) in memory: oneDNN runs the 3x3 convolutions 15-30 % faster on CPU
  that way (1 x 3 x 256 x 256, 2 threads: 10.1 s against 12.2 s for the same network in the default layout on
  a loaded machine); values are unchanged (within 3e-6).
- The release's unused second stage-1 decoder (1.5M parameters, never called) is left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import DeblurModel, MapRecorder, channel_mean
from core.models.blocks import ChannelAttention
from core.registry import ModelCard, register

PAPER = "A feature catcher with excellent deblurring effects"
AUTHORS = "Xinyue Zhang, Guodong Wang, Hao Dong, Bining Zeng"

# (rows, columns) of the patch grid of stages 0, 1, 2, 3: 8, 4, 2 and 1 patches (Sec. 3, Fig. 2).
PATCH_GRIDS = ((2, 4), (2, 2), (2, 1), (1, 1))


def split_patches(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """N x C x H x W -> (N * rows * cols) x C x H/rows x W/cols, patches in row-major order per image.

    The result is stored channels-last (see ``FCN._stages``); its values do not depend on the layout.
    """
    n, c, height, width = x.shape
    h, w = height // rows, width // cols
    pixels = x.permute(0, 2, 3, 1).reshape(n, rows, h, cols, w, c).transpose(2, 3)
    return pixels.reshape(n * rows * cols, h, w, c).permute(0, 3, 1, 2)


def merge_patches(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of ``split_patches``: (N * rows * cols) x C x h x w -> N x C x (rows * h) x (cols * w)."""
    patches, c, h, w = x.shape
    n = patches // (rows * cols)
    pixels = x.permute(0, 2, 3, 1).reshape(n, rows, cols, h, w, c).transpose(2, 3)
    return pixels.reshape(n, rows * h, cols * w, c).permute(0, 3, 1, 2)


def regroup(x: torch.Tensor, source: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Re-cut patches of one grid into the patches of another (e.g. 8 patches into 2 half-images)."""
    return split_patches(merge_patches(x, *source), *target)


def conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)


class PReLU(nn.PReLU):
    """nn.PReLU with one learnable slope; without autograd on the CPU it works in place as ``leaky_relu_`` with that
    slope: the same arithmetic (x where x > 0, else slope * x), one allocation fewer. FCN uses it only between a
    CAB's two convolutions, on a fresh conv output."""

    def forward(self, x):
        if self.num_parameters == 1 and not torch.is_grad_enabled() and x.device.type == "cpu" \
                and x.dtype == torch.float32:
            return F.leaky_relu_(x, self.weight.item())
        return super().forward(x)


class CAB(nn.Module):
    """Channel-attention block: 3x3 conv, activation, 3x3 conv, channel attention, plus the input."""

    def __init__(self, channels: int, *, reduction: int = 4, activation: type[nn.Module] = PReLU) -> None:
        super().__init__()
        self.body = nn.Sequential(conv(channels, channels, 3), activation(), conv(channels, channels, 3))
        self.attention = ChannelAttention(channels, reduction=reduction, bias=False, inplace=True)  # on body's output

    def forward(self, x):
        return self.attention(self.body(x)).add_(x)  # in place on a fresh product: safe for autograd


class ProcessingBlock(nn.Module):
    """PB (Sec. 3.1, Fig. 3a): 3x3 conv from RGB to the feature width, then a channel-attention block."""

    def __init__(self, *, channels: int = 96, reduction: int = 4, activation: type[nn.Module] = nn.SELU) -> None:
        super().__init__()
        self.conv = conv(3, channels, 3)
        self.cab = CAB(channels, reduction=reduction, activation=activation)

    def forward(self, image):
        return self.cab(self.conv(image))


class QueryKey(nn.Module):
    """Query-key mechanism (Sec. 3.2, Fig. 3b): the query maps sigmoid(conv(conv(LayerNorm(key)))) weigh the key.

    The LayerNorm has no learnable parameters and normalises each patch over channels and space.
    Returns the weighted features and the query maps (same size as the key, values in 0..1).
    """

    eps = 1e-5  # nn.LayerNorm's default

    def __init__(self, *, channels: int = 96, query_channels: int = 48) -> None:
        super().__init__()
        self.down = conv(channels, query_channels, 1)
        self.up = conv(query_channels, channels, 1)

    def forward(self, key):
        mean = key.mean(dim=(1, 2, 3), keepdim=True)
        variance = key.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
        normalised = (key - mean) * torch.rsqrt(variance + self.eps)
        query = torch.sigmoid(self.up(self.down(normalised)))
        return query * key, query


class DownSample(nn.Module):
    """Bilinear x0.5, then a 1x1 conv that widens by ``growth`` channels."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.conv = conv(channels, channels + growth, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False))


class UpSample(nn.Module):
    """Bilinear x2, then a 1x1 conv that narrows by ``growth`` channels."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.conv = conv(channels + growth, channels, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))


class Encoder(nn.Module):
    """Three levels (width, width + growth, width + 2 growth) of two CABs each, downsampling between them."""

    def __init__(self, *, channels: int = 96, growth: int = 48, reduction: int = 4) -> None:
        super().__init__()
        widths = (channels, channels + growth, channels + 2 * growth)
        self.level1 = nn.Sequential(*(CAB(widths[0], reduction=reduction) for _ in range(2)))
        self.down12 = DownSample(widths[0], growth)
        self.level2 = nn.Sequential(*(CAB(widths[1], reduction=reduction) for _ in range(2)))
        self.down23 = DownSample(widths[1], growth)
        self.level3 = nn.Sequential(*(CAB(widths[2], reduction=reduction) for _ in range(2)))

    def forward(self, x):
        enc1 = self.level1(x)
        enc2 = self.level2(self.down12(enc1))
        enc3 = self.level3(self.down23(enc2))
        return enc1, enc2, enc3


class CrossStageEncoder(Encoder):
    """Encoder whose every level also adds 1x1 projections of the previous stage's encoder and decoder features."""

    def __init__(self, *, channels: int = 96, growth: int = 48, reduction: int = 4) -> None:
        super().__init__(channels=channels, growth=growth, reduction=reduction)
        widths = (channels, channels + growth, channels + 2 * growth)
        self.from_encoder = nn.ModuleList(conv(width, width, 1) for width in widths)
        self.from_decoder = nn.ModuleList(conv(width, width, 1) for width in widths)

    def forward(self, x, previous_encoder, previous_decoder):
        enc1 = self.level1(x) + self._carried(0, previous_encoder, previous_decoder)
        enc2 = self.level2(self.down12(enc1)) + self._carried(1, previous_encoder, previous_decoder)
        enc3 = self.level3(self.down23(enc2)) + self._carried(2, previous_encoder, previous_decoder)
        return enc1, enc2, enc3

    def _carried(self, level, previous_encoder, previous_decoder):
        return self.from_encoder[level](previous_encoder[level]) + self.from_decoder[level](previous_decoder[level])


class Decoder(nn.Module):
    """Mirror of the encoder: CABs per level, bilinear x2 + 1x1 conv up, plus the CAB-refined encoder skip."""

    def __init__(self, *, channels: int = 96, growth: int = 48, reduction: int = 4) -> None:
        super().__init__()
        widths = (channels, channels + growth, channels + 2 * growth)
        self.level3 = nn.Sequential(*(CAB(widths[2], reduction=reduction) for _ in range(2)))
        self.up32 = UpSample(widths[1], growth)
        self.skip2 = CAB(widths[1], reduction=reduction)
        self.level2 = nn.Sequential(*(CAB(widths[1], reduction=reduction) for _ in range(2)))
        self.up21 = UpSample(widths[0], growth)
        self.skip1 = CAB(widths[0], reduction=reduction)
        self.level1 = nn.Sequential(*(CAB(widths[0], reduction=reduction) for _ in range(2)))

    def forward(self, encoded):
        enc1, enc2, enc3 = encoded
        dec3 = self.level3(enc3)
        dec2 = self.level2(self.up32(dec3) + self.skip2(enc2))
        dec1 = self.level1(self.up21(dec2) + self.skip1(enc1))
        return dec1, dec2, dec3


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of every pixel, with a learnable per-channel scale and shift."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class EFEM(nn.Module):
    """Enhanced feature extraction module (Sec. 3.3, Fig. 4a): LayerNorm, then 1x1 convolutions.

    ``restored = to_image(LN(x)) + blurry``; ``features = x + project(LN(x)) * sigmoid(from_image(restored))``.
    Returns the features for the next stage (same width as x) and this stage's restored image.
    """

    def __init__(self, *, channels: int = 96) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.to_image = conv(channels, 3, 1)
        self.from_image = conv(3, channels, 1)
        self.project = conv(channels, channels, 1)

    def forward(self, x, blurry):
        normalised = self.norm(x)
        restored = self.to_image(normalised) + blurry
        gate = torch.sigmoid(self.from_image(restored))
        return x + self.project(normalised) * gate, restored


class MSAM(nn.Module):
    """Multi-stage attention mechanism (Sec. 3.4, Fig. 4b), ending stage 2 with 1x1 convolutions.

    ``restored = to_image(x) + blurry``; ``features = x + project(x) * sigmoid(from_image(restored))``.
    Returns the "stage2_deep_information" for RIM and this stage's restored image.
    """

    def __init__(self, *, channels: int = 96) -> None:
        super().__init__()
        self.to_image = conv(channels, 3, 1)
        self.from_image = conv(3, channels, 1)
        self.project = conv(channels, channels, 1)

    def forward(self, x, blurry):
        restored = self.to_image(x) + blurry
        gate = torch.sigmoid(self.from_image(restored))
        return x + self.project(x) * gate, restored


class ORB(nn.Module):
    """Original-resolution block: ``num_cab`` CABs and a 3x3 conv, plus the input."""

    def __init__(self, channels: int, *, num_cab: int = 8, reduction: int = 4) -> None:
        super().__init__()
        cabs = (CAB(channels, reduction=reduction) for _ in range(num_cab))
        self.body = nn.Sequential(*cabs, conv(channels, channels, 3))

    def forward(self, x):
        return x + self.body(x)


class RIM(nn.Module):
    """Raw information mechanism (Sec. 3.5, Fig. 5): three ORBs at full resolution; after each, the stage-2
    encoder ("oriImg_encoder") and decoder ("oriImg_decoder") features of one level, upsampled to full
    resolution and projected by 1x1 convolutions, are added."""

    def __init__(
        self, *, channels: int = 96, growth: int = 48, extra: int = 32, num_cab: int = 8, reduction: int = 4
    ) -> None:
        super().__init__()
        width = channels + extra
        self.orb1 = ORB(width, num_cab=num_cab, reduction=reduction)
        self.orb2 = ORB(width, num_cab=num_cab, reduction=reduction)
        self.orb3 = ORB(width, num_cab=num_cab, reduction=reduction)
        self.from_encoder = self._carriers(channels, growth, width)
        self.from_decoder = self._carriers(channels, growth, width)

    @staticmethod
    def _carriers(channels: int, growth: int, width: int) -> nn.ModuleList:
        """Per level: (bilinear x2 + 1x1 conv) steps up to full resolution and ``channels``, then 1x1 conv to width."""
        level2 = (UpSample(channels, growth),)
        level3 = (UpSample(channels + growth, growth), UpSample(channels, growth))
        return nn.ModuleList(nn.Sequential(*steps, conv(channels, width, 1)) for steps in ((), level2, level3))

    def forward(self, x, encoder, decoder):
        x = self.orb1(x) + self.from_encoder[0](encoder[0]) + self.from_decoder[0](decoder[0])
        x = self.orb2(x) + self.from_encoder[1](encoder[1]) + self.from_decoder[1](decoder[1])
        x = self.orb3(x) + self.from_encoder[2](encoder[2]) + self.from_decoder[2](decoder[2])
        return x


class FCN(DeblurModel):
    """Feature catcher network: stage 0 on 8 patches (PB + query-key), stages 1-3 on 4, 2 and 1 patches."""

    pad_multiple = (8, 16)
    patch_grids = PATCH_GRIDS
    supervised_stages = 3  # stages 1, 2, 3 restore an image; stage 0 only catches features

    def __init__(
        self,
        *,
        channels: int = 96,
        query_channels: int = 48,
        encoder_growth: int = 48,
        rim_extra: int = 32,
        num_cab: int = 8,
        reduction: int = 4,
    ) -> None:
        super().__init__()
        stage_args = dict(channels=channels, growth=encoder_growth, reduction=reduction)
        self.processing_block0 = ProcessingBlock(channels=channels, reduction=reduction, activation=nn.SELU)
        self.query_key = QueryKey(channels=channels, query_channels=query_channels)

        self.processing_block1 = ProcessingBlock(channels=channels, reduction=reduction, activation=PReLU)
        self.encoder1 = Encoder(**stage_args)
        self.decoder1 = Decoder(**stage_args)
        self.efem = EFEM(channels=channels)

        self.processing_block2 = ProcessingBlock(channels=channels, reduction=reduction, activation=PReLU)
        self.fuse_stage2 = conv(2 * channels, channels, 3)
        self.encoder2 = CrossStageEncoder(**stage_args)
        self.decoder2 = Decoder(**stage_args)
        self.msam = MSAM(channels=channels)

        self.processing_block3 = ProcessingBlock(channels=channels, reduction=reduction, activation=PReLU)
        self.fuse_stage3 = conv(2 * channels, channels + rim_extra, 3)
        self.rim = RIM(channels=channels, growth=encoder_growth, extra=rim_extra, num_cab=num_cab, reduction=reduction)
        self.tail = conv(channels + rim_extra, 3, 3)

        self.trust_logits = nn.Parameter(torch.zeros(self.supervised_stages))

    def trust_ratios(self) -> torch.Tensor:
        """Eq. 1's r_s for stages 1, 2, 3: softmax of the trainable logits, each in (0, 1), summing to 1."""
        return torch.softmax(self.trust_logits, dim=0)

    def _stages(self, x: torch.Tensor, maps: MapRecorder) -> list[torch.Tensor]:
        # Activations are kept channels-last in memory, on which oneDNN runs these convolutions 15-30 % faster
        # on CPU than on the default layout; the values are the same.
        x = x.contiguous(memory_format=torch.channels_last)
        grid0, grid1, grid2, _ = self.patch_grids
        blurry_halves = split_patches(x, *grid2)

        # Stage 0, the global feature catcher: PB on 8 patches, query-key on the two half-images.
        key = regroup(self.processing_block0(split_patches(x, *grid0)), grid0, grid2)
        caught, query = self.query_key(key)
        if maps.enabled:  # the channel mean is computed only for display
            maps.add("query map 1", merge_patches(channel_mean(query), *grid2))

        # Stage 1: 4 patches through the encoder, decoded as two half-images with the caught features added.
        encoded = self.encoder1(self.processing_block1(split_patches(x, *grid1)))
        encoded1 = tuple(regroup(level, grid1, grid2) for level in encoded)
        encoded1 = (encoded1[0] + caught, *encoded1[1:])
        decoded1 = self.decoder1(encoded1)
        features1, halves1 = self.efem(decoded1[0], blurry_halves)
        stage1 = merge_patches(halves1, *grid2)
        maps.add("stage 1 output", stage1)

        # Stage 2: two half-images, fused with stage 1's EFEM features and its encoder-decoder features.
        fused2 = self.fuse_stage2(torch.cat([self.processing_block2(blurry_halves), features1], dim=1))
        encoded2 = tuple(merge_patches(level, *grid2) for level in self.encoder2(fused2, encoded1, decoded1))
        decoded2 = self.decoder2(encoded2)
        features2, stage2 = self.msam(decoded2[0], x)
        maps.add("stage 2 output", stage2)

        # Stage 3: the whole image, PB features fused with MSAM features, through RIM.
        fused3 = self.fuse_stage3(torch.cat([self.processing_block3(x), features2], dim=1))
        stage3 = self.tail(self.rim(fused3, encoded2, decoded2)) + x
        maps.add("stage 3 output", stage3)
        if maps.enabled:
            maps.add("trust ratios", self.trust_ratios())
        return [stage1, stage2, stage3]

    def _restore(self, x: torch.Tensor, maps: MapRecorder) -> torch.Tensor:
        return self._stages(x, maps)[-1]

    def forward_train(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Stage outputs and trust ratios for Eq. 1: Loss = sum_s r_s * ||P_s - G|| over stages 1, 2, 3."""
        self.check_train_size(x)
        stages = self._stages(x, MapRecorder(False))
        return {"output": stages[-1], "stages": stages, "trust ratios": self.trust_ratios()}


MAPS = ("query map 1", "stage 1 output", "stage 2 output", "stage 3 output", "trust ratios")
MAP_NOTES = {
    "query map 1": "the sigmoid query map of the global feature catcher's query-key mechanism (Sec. 3.2, Fig. 3b), "
                   "values in 0..1 that 'represent the importance of each pixel region for deblurring'",
    **dict.fromkeys((f"stage {k} output" for k in (1, 2, 3)),
                    "the images each stage of the multi-patch network restores, supervised by Eq. 1 (Fig. 2)"),
    "trust ratios": "r_s, the trainable weights of the stage losses in Eq. 1 (Sec. 3.6)",
}


@register(
    ModelCard(
        name="fcn",
        paper=PAPER,
        authors=AUTHORS,
        year=2022,
        venue="ICBDT",
        summary="Four-stage multi-patch (8/4/2/1) network, query-key gate, trust-weighted stage losses",
        params=20_309_626,
        paper_params=20_309_000,
        maps=MAPS,
        map_notes=MAP_NOTES,
        checkpoint="fcn.safetensors",
        config={
            "channels": 96,
            "query_channels": 48,
            "encoder_growth": 48,
            "rim_extra": 32,
            "num_cab": 8,
            "reduction": 4,
        },
    )
)
def fcn(**config) -> FCN:
    return FCN(**config)
