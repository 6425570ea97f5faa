"""The Reblur paper's modules (Supplement Tables S1, S3) and maps, checked against hand computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import core.models.reblur  # noqa: F401  (registers the variants)
from core.complexity import parameter_count
from core.models.reblur import DeblurUNet, Reblur, ReblurModule
from core.registry import create_model, get_card


def image(n, height, width, seed=0):
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def convolutions(module):
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def layer_spec(layer):
    kind = "up" if isinstance(layer, nn.ConvTranspose2d) else "conv"
    return kind, layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride


def resblock_by_hand(feature, block):
    first, second = block.body[0], block.body[2]
    hidden = F.relu(F.conv2d(feature, first.weight, first.bias, padding=first.padding))
    return feature + F.conv2d(hidden, second.weight, second.bias, padding=second.padding)


def reblur_by_hand(module, x):
    """Table S3: 5x5 conv 64 | n ResBlocks (5x5) | 5x5 conv 3, all at full resolution, plus the input."""
    feature = F.conv2d(x, module.head.weight, module.head.bias, padding=2)
    for block in module.body:
        feature = resblock_by_hand(feature, block)
    return x + F.conv2d(feature, module.tail.weight, module.tail.bias, padding=2)


def deblur_by_hand(module, x):
    """Table S1 with ReLUs, additive skips at H and H/2, transposed-conv upsampling and a global residual."""
    head, down1, down2 = module.head[0], module.down1[0], module.down2[0]
    up1, up2, tail = module.up1[0], module.up2[0], module.tail
    full = F.relu(F.conv2d(x, head.weight, head.bias, padding=2))
    half = F.relu(F.conv2d(full, down1.weight, down1.bias, stride=2, padding=1))
    quarter = F.relu(F.conv2d(half, down2.weight, down2.bias, stride=2, padding=1))
    for block in module.body:
        quarter = resblock_by_hand(quarter, block)
    half = F.relu(F.conv_transpose2d(quarter, up1.weight, up1.bias, stride=2, padding=1, output_padding=1)) + half
    full = F.relu(F.conv_transpose2d(half, up2.weight, up2.bias, stride=2, padding=1, output_padding=1)) + full
    return x + F.conv2d(full, tail.weight, tail.bias, padding=2)


@pytest.mark.parametrize("n", [1, 2])
def test_reblur_module_has_no_strided_conv_and_keeps_resolution(n):
    module = ReblurModule(n_resblocks=n).double()
    layers = convolutions(module)
    assert not any(isinstance(layer, nn.ConvTranspose2d) for layer in layers)
    assert [layer_spec(layer) for layer in layers] == (
        [("conv", 3, 64, (5, 5), (1, 1))]
        + [("conv", 64, 64, (5, 5), (1, 1))] * (2 * n)
        + [("conv", 64, 3, (5, 5), (1, 1))]
    )
    x = image(1, 13, 19)  # odd sizes: any stride or pooling would change them
    with torch.no_grad():
        assert module(x).shape == x.shape
        torch.testing.assert_close(module(x), reblur_by_hand(module, x))


def test_deblur_unet_has_exactly_the_table_s1_layers():
    module = DeblurUNet()
    expected = (
        [("conv", 3, 64, (5, 5), (1, 1)), ("conv", 64, 128, (3, 3), (2, 2)), ("conv", 128, 192, (3, 3), (2, 2))]
        + [("conv", 192, 192, (3, 3), (1, 1))] * 16  # layers 4-19: 8 ResBlocks of two 3x3 convolutions
        + [("up", 192, 128, (3, 3), (2, 2)), ("up", 128, 64, (3, 3), (2, 2)), ("conv", 64, 3, (5, 5), (1, 1))]
    )
    assert [layer_spec(layer) for layer in convolutions(module)] == expected
    assert len(module.body) == 8


def test_deblur_unet_output_shapes_follow_table_s1():
    module = DeblurUNet()
    shapes = {}

    def recorder(name):
        def record(_module, _inputs, output):
            shapes[name] = output.shape[1:]

        return record

    for name in ("head", "down1", "down2", "body", "up1", "up2", "tail"):
        getattr(module, name).register_forward_hook(recorder(name))
    with torch.no_grad():
        module(torch.rand(1, 3, 32, 48))
    assert shapes == {
        "head": (64, 32, 48),
        "down1": (128, 16, 24),
        "down2": (192, 8, 12),
        "body": (192, 8, 12),
        "up1": (128, 16, 24),
        "up2": (64, 32, 48),
        "tail": (3, 32, 48),
    }


def test_deblur_unet_forward_matches_hand_computation():
    module = DeblurUNet(n_resblocks=2).double()
    x = image(2, 16, 24, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(module(x), deblur_by_hand(module, x))


def test_residual_blur_map_is_channel_mean_of_reblurred_minus_output():
    model = Reblur(reblur_resblocks=1).double().eval()
    x = image(2, 18, 22, seed=1)  # padded by reflection to 20 x 24, then cropped back
    padded = F.pad(x, (0, 2, 0, 2), mode="reflect")
    with torch.no_grad():
        output, maps = model(x, return_maps=True)
        deblurred = deblur_by_hand(model.deblur, padded)
        reblurred = reblur_by_hand(model.reblur, deblurred)
    assert tuple(maps) == ("reblurred", "residual blur")
    torch.testing.assert_close(output, deblurred[..., :18, :22].clamp(0, 1))
    torch.testing.assert_close(maps["reblurred"], reblurred[..., :18, :22])
    difference = (reblurred - deblurred).abs()
    residual = (difference[:, 0] + difference[:, 1] + difference[:, 2]) / 3
    assert maps["residual blur"].shape == (2, 1, 18, 22)
    torch.testing.assert_close(maps["residual blur"][:, 0], residual[..., :18, :22])


def test_reblurring_module_runs_only_when_maps_are_requested():
    model = Reblur(deblur_resblocks=1, reblur_resblocks=1).eval()
    calls = []
    model.reblur.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        model(torch.rand(1, 3, 16, 16))
        assert calls == []
        model(torch.rand(1, 3, 16, 16), return_maps=True)
    assert calls == [1]


def test_forward_train_returns_the_deblurred_image_and_its_reblurred_version():
    model = Reblur(deblur_resblocks=1, reblur_resblocks=1).double().train()
    x = image(1, 16, 20, seed=2)
    outputs = model.forward_train(x)
    assert set(outputs) == {"output", "reblurred"}
    with torch.no_grad():
        torch.testing.assert_close(outputs["output"], deblur_by_hand(model.deblur, x))
        torch.testing.assert_close(outputs["reblurred"], reblur_by_hand(model.reblur, outputs["output"]))


def test_n1_and_n2_differ_by_exactly_one_5x5_64_channel_resblock():
    one_resblock = 2 * (64 * 64 * 5 * 5 + 64)
    n1, n2 = create_model("reblur-n1"), create_model("reblur-n2")
    assert parameter_count(n2) - parameter_count(n1) == one_resblock
    assert parameter_count(n2.deblur) == parameter_count(n1.deblur)
    assert (len(n1.reblur.body), len(n2.reblur.body)) == (1, 2)
    assert get_card("reblur-n2").params - get_card("reblur-n1").params == one_resblock
