"""GradientNet ("Structures Guided Dynamic Scene Deblurring Method", Qi 2022): the paper's equations and structure."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from core.models.blocks import ChannelAttention
from core.models.gradientnet import MBRB, MBRU, PRFTM, RGCL, GradientNet, PatchGAN, StructuresGuidedGenerator
from core.registry import get_card

CARD = get_card("gradientnet")


def small_generator():
    return StructuresGuidedGenerator(encoder_channels=8, channels=16, blocks=2, recurrence=3, reduction=4)


def conv_by_hand(x, weight, bias, padding):
    """Zero-padded cross-correlation written as a sum over kernel offsets (independent of F.conv2d)."""
    pad_h, pad_w = padding
    height, width = x.shape[-2:]
    padded = torch.zeros(x.shape[0], x.shape[1], height + 2 * pad_h, width + 2 * pad_w, dtype=x.dtype)
    padded[..., pad_h : pad_h + height, pad_w : pad_w + width] = x
    out = torch.zeros(x.shape[0], weight.shape[0], height, width, dtype=x.dtype)
    for i in range(weight.shape[2]):
        for j in range(weight.shape[3]):
            window = padded[..., i : i + height, j : j + width]
            out += torch.einsum("oc,nchw->nohw", weight[:, :, i, j], window)
    if bias is not None:
        out += bias.view(1, -1, 1, 1)
    return out


def channel_attention_by_hand(attention: ChannelAttention, x):
    down, _, up, _ = attention.excite
    squeezed = x.mean(dim=(2, 3))
    hidden = torch.clamp(squeezed @ down.weight[:, :, 0, 0].T + down.bias, min=0)
    scale = torch.sigmoid(hidden @ up.weight[:, :, 0, 0].T + up.bias)
    return x * scale[:, :, None, None]


def sobel_magnitude_by_hand(image: np.ndarray) -> np.ndarray:
    """3 x H x W RGB in [0, 1] -> H x W Sobel magnitude of the BT.601 grey image, edges replicated."""
    grey = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]
    padded = np.pad(grey, 1, mode="edge")
    height, width = grey.shape
    window = {(i, j): padded[i : i + height, j : j + width] for i in range(3) for j in range(3)}
    gx = (window[0, 2] + 2 * window[1, 2] + window[2, 2]) - (window[0, 0] + 2 * window[1, 0] + window[2, 0])
    gy = (window[2, 0] + 2 * window[2, 1] + window[2, 2]) - (window[0, 0] + 2 * window[0, 1] + window[0, 2])
    return np.sqrt(gx**2 + gy**2)


def test_registered_generator_follows_section_3_1_2():
    model = StructuresGuidedGenerator(**CARD.config)
    gradient_net = model.gradient_net
    assert isinstance(gradient_net, GradientNet)
    assert isinstance(gradient_net.prftm, PRFTM)
    assert [conv.kernel_size for conv in (gradient_net.prftm.fe1, gradient_net.prftm.fe2)] == [(3, 3), (3, 3)]
    assert isinstance(gradient_net.mbru, MBRU)
    assert len(gradient_net.mbru.blocks) == 10
    assert all(isinstance(block, MBRB) for block in gradient_net.mbru.blocks)
    assert isinstance(gradient_net.mbru.attention, ChannelAttention)
    assert isinstance(model.output[-1], nn.Tanh)
    assert model.pad_multiple == 4


def test_every_rgcl_has_a_1x3_and_a_3x1_convolution():
    model = StructuresGuidedGenerator(**CARD.config)
    rgcls = [module for module in model.modules() if isinstance(module, RGCL)]
    assert len(rgcls) == 10 * 3
    for rgcl in rgcls:
        assert rgcl.horizontal.kernel_size == (1, 3) and rgcl.horizontal.padding == (0, 1)
        assert rgcl.vertical.kernel_size == (3, 1) and rgcl.vertical.padding == (1, 0)


def test_the_recurrence_runs_exactly_three_times():
    rgcl = RGCL(4, reduction=2)
    calls = []
    rgcl.conv.register_forward_hook(lambda module, inputs, output: calls.append("conv"))
    rgcl.horizontal.register_forward_hook(lambda module, inputs, output: calls.append("horizontal"))
    rgcl(torch.randn(1, 4, 6, 6))
    assert calls == ["horizontal", "conv"] * 3

    model = small_generator().eval()
    count = [0]
    for module in model.modules():
        if isinstance(module, RGCL):
            module.conv.register_forward_hook(lambda module, inputs, output: count.__setitem__(0, count[0] + 1))
    with torch.no_grad():
        model(torch.rand(1, 3, 16, 16))
    assert count[0] == 2 * 3 * 3  # MBRBs x RGCLs per MBRB x r
    assert CARD.config["recurrence"] == 3


def test_rgcl_output_is_equation_7_computed_by_hand():
    rgcl = RGCL(4, reduction=2)
    with torch.no_grad():
        for parameter in rgcl.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    u = torch.randn(2, 4, 5, 7)
    with torch.no_grad():
        output, horizontal, vertical = rgcl(u)

        state = u
        for _ in range(3):
            expected_h = conv_by_hand(state, rgcl.horizontal.weight, None, (0, 1))
            expected_v = conv_by_hand(state, rgcl.vertical.weight, None, (1, 0))
            summed = expected_h + expected_v
            leaky = torch.where(summed > 0, summed, 0.2 * summed)
            state = conv_by_hand(leaky, rgcl.conv.weight, rgcl.conv.bias, (1, 1))
        expected = channel_attention_by_hand(rgcl.attention, torch.sigmoid(state)) + u
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(horizontal, expected_h, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(vertical, expected_v, atol=1e-5, rtol=1e-5)


def test_mbrb_concatenates_three_rgcl_outputs_then_follows_equation_6():
    channels = 4
    block = MBRB(channels, reduction=2)
    assert len({id(branch) for branch in block.branches}) == 3
    assert not torch.equal(block.branches[0].conv.weight, block.branches[1].conv.weight)
    seen = {}
    for index, branch in enumerate(block.branches):
        branch.register_forward_hook(lambda module, inputs, output, index=index: seen.__setitem__(index, output[0]))
    block.attention.register_forward_hook(lambda module, inputs, output: seen.__setitem__("ca_in", inputs[0]))
    u0 = torch.randn(1, channels, 6, 5)
    with torch.no_grad():
        output, _, _ = block(u0)
        concatenated = seen["ca_in"]
        assert concatenated.shape[1] == 3 * channels
        torch.testing.assert_close(concatenated, torch.cat([seen[0], seen[1], seen[2]], dim=1))
        for index in range(3):
            torch.testing.assert_close(seen[index], block.branches[index](u0)[0])
        recalibrated = channel_attention_by_hand(block.attention, concatenated)
        fe3 = conv_by_hand(recalibrated, block.fe3.weight, block.fe3.bias, (1, 1))
        expected = conv_by_hand(fe3.clamp(min=0), block.fe4.weight, block.fe4.bias, (1, 1)) + u0
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


def test_patchgan_returns_an_unbounded_patch_map():
    critic = PatchGAN()
    assert not any(isinstance(m, (nn.Sigmoid, nn.Tanh, nn.BatchNorm2d)) for m in critic.modules())
    final = {}
    critic.score.register_forward_hook(lambda module, inputs, output: final.__setitem__("score", output))
    images = torch.rand(2, 3, 64, 64)
    scores = critic(images)
    assert scores.shape == (2, 1, 6, 6)  # 70x70 PatchGAN: 64 -> 32 -> 16 -> 8 -> 7 -> 6
    assert torch.equal(scores, final["score"])  # nothing (no sigmoid) after the last convolution
    with torch.no_grad():
        critic.score.bias.fill_(5.0)
        assert (critic(images) > 1).all()
        critic.score.bias.fill_(-5.0)
        assert (critic(images) < 0).all()


def test_sobel_map_equals_an_independent_sobel():
    model = small_generator().eval()
    image = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        _, maps = model(image, return_maps=True)
    expected = sobel_magnitude_by_hand(image[0].double().numpy())
    np.testing.assert_allclose(maps["Sobel of input"][0, 0].numpy(), expected, atol=1e-5)


def test_rgcl_maps_are_the_first_rgcl_responses_of_each_mbrb_at_quarter_resolution():
    model = small_generator().eval()
    responses = {}
    for k, block in enumerate(model.gradient_net.mbru.blocks, start=1):
        for direction in ("horizontal", "vertical"):
            getattr(block.branches[0], direction).register_forward_hook(
                lambda module, inputs, output, key=(direction, k): responses.__setitem__(key, output)
            )
    with torch.no_grad():
        _, maps = model(torch.rand(1, 3, 24, 32), return_maps=True)
    assert list(maps) == [
        "Sobel of input",
        "RGCL horizontal 1",
        "RGCL vertical 1",
        "RGCL horizontal 2",
        "RGCL vertical 2",
    ]
    for (direction, k), response in responses.items():  # the hook keeps the last recurrence's response
        assert maps[f"RGCL {direction} {k}"].shape == (1, 1, 6, 8)
        torch.testing.assert_close(maps[f"RGCL {direction} {k}"], response.mean(dim=1, keepdim=True))


def test_output_is_a_tanh_residual_on_the_input_in_signed_range():
    model = small_generator().train()
    head = {}
    model.output.register_forward_hook(lambda module, inputs, output: head.__setitem__("tanh", output))
    image = torch.rand(2, 3, 16, 20)
    restored = model.forward_train(image)["output"]
    signed = (2 * image - 1) + head["tanh"]
    torch.testing.assert_close(restored, (signed + 1) / 2)


def test_macs_at_1280x720_are_near_table_3():
    with torch.device("meta"):
        model = StructuresGuidedGenerator(**CARD.config).eval()
        image = torch.empty(1, 3, 720, 1280)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(image)
    macs = counter.get_total_flops() / 2
    assert macs == pytest.approx(446.98e9, rel=0.10)
