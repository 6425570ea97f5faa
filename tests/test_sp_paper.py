"""SP ("Take a Prior from Other Tasks for Severe Blur Removal"): Eq. 3 (CLC), Eq. 5 (MLA), Eq. 6 (SAT) and the
wiring of Fig. 1, each recomputed here from the submodules' own weights."""

import math

import torch
import torch.nn.functional as F

from core.models.base import channel_mean
from core.models.sp import CLC, MLA, SAT, SPL, UNetSP

SMALL = {"channels": (4, 6, 8), "prior_channels": (3, 5, 7), "num_blocks": 1, "student_blocks": 1}


def resize_linear(tensor, size):
    """Bilinear resizing with half-pixel centres, written out by hand: each axis separately,
    source = (target + 0.5) * in / out - 0.5, clamped into the image, then a two-tap linear blend."""
    for axis, target in zip((-2, -1), size):
        length = tensor.shape[axis]
        source = ((torch.arange(target, dtype=torch.float64) + 0.5) * length / target - 0.5).clamp(min=0.0)
        lower = source.floor().long().clamp(max=length - 1)
        upper = (lower + 1).clamp(max=length - 1)
        weight = (source - lower).to(tensor.dtype)
        shape = [1] * tensor.dim()
        shape[axis] = target
        weight = weight.view(shape)
        tensor = tensor.index_select(axis, lower) * (1 - weight) + tensor.index_select(axis, upper) * weight
    return tensor


def conv_same(tensor, conv):
    return F.conv2d(tensor, conv.weight, conv.bias, padding=conv.kernel_size[0] // 2)


def mla_by_hand(mla, priors, level):
    """Eq. 5: M^i = conv(cat(f^i, resized f^t for t != i)) * f^i + f^i, the others in increasing level order."""
    own = priors[level]
    others = [resize_linear(prior, own.shape[-2:]) for index, prior in enumerate(priors) if index != level]
    attention = conv_same(torch.cat([own, *others], dim=1), mla.conv)
    return attention * own + own


def small_model():
    return UNetSP(**SMALL).double().eval()


def test_the_hand_written_resize_agrees_with_pooling_where_pooling_is_exact():
    image = torch.rand(1, 2, 8, 12, dtype=torch.float64)
    torch.testing.assert_close(resize_linear(image, (4, 6)), F.avg_pool2d(image, 2))
    torch.testing.assert_close(resize_linear(image, (8, 12)), image)


def test_clc_computes_eq3():
    clc = CLC(channels=3, deeper_channels=5).double()
    m = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    m_deeper = torch.randn(2, 5, 4, 5, dtype=torch.float64)

    deeper_up = F.conv_transpose2d(m_deeper, clc.up.weight, clc.up.bias, stride=2, padding=1)
    assert deeper_up.shape == m.shape
    attention = conv_same(torch.cat([m, deeper_up], dim=1), clc.conv)
    expected = attention * m + attention * deeper_up

    prior, returned_attention = clc(m, m_deeper)
    torch.testing.assert_close(returned_attention, attention)
    torch.testing.assert_close(prior, expected)


def test_spl_applies_clc_at_levels_1_and_2_and_keeps_m3_as_the_last_prior():
    spl = SPL(channels=(3, 5, 7)).double()
    blurry = torch.rand(1, 3, 16, 20, dtype=torch.float64)
    (prior1, prior2, prior3), (attention1, attention2) = spl(blurry)
    m1, m2, m3 = spl.student(blurry)

    assert torch.equal(prior3, m3)
    torch.testing.assert_close((prior1, attention1), spl.clc1(m1, m2))
    torch.testing.assert_close((prior2, attention2), spl.clc2(m2, m3))
    assert [tuple(m.shape) for m in (m1, m2, m3)] == [(1, 3, 16, 20), (1, 5, 8, 10), (1, 7, 4, 5)]


def test_mla_computes_eq5_with_linear_interpolation_at_every_level():
    priors = [
        torch.randn(1, 3, 16, 20, dtype=torch.float64),
        torch.randn(1, 5, 8, 10, dtype=torch.float64),
        torch.randn(1, 7, 4, 5, dtype=torch.float64),
    ]
    for level, channels in enumerate((3, 5, 7)):
        mla = MLA(channels=channels, total_channels=15).double()
        others = tuple(prior for index, prior in enumerate(priors) if index != level)
        torch.testing.assert_close(mla(priors[level], others), mla_by_hand(mla, priors, level))


def test_sat_computes_eq6():
    sat = SAT(prior_channels=4, channels=3).double()
    with torch.no_grad():
        sat.conv1.bias.normal_()
    prior = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    decoded = torch.randn(2, 3, 6, 7, dtype=torch.float64)
    encoded = torch.randn(2, 3, 6, 7, dtype=torch.float64)

    scale = conv_same(prior, sat.conv1)
    shift = conv_same(prior, sat.conv2)
    fused, returned_scale, returned_shift = sat(prior, decoded, encoded)

    torch.testing.assert_close(returned_scale, scale)
    torch.testing.assert_close(returned_shift, shift)
    torch.testing.assert_close(fused, scale * (decoded + encoded) + shift)


def test_model_wires_spl_into_mla_into_sat_at_every_decoder_level():
    model = small_model()
    blurry = torch.rand(1, 3, 16, 20, dtype=torch.float64)
    seen = {}

    def keep(name):
        def hook(module, inputs, output):
            seen[name] = (inputs, output)

        return hook

    for index in (1, 2, 3):
        getattr(model.ide, f"sat{index}").register_forward_hook(keep(f"sat{index}"))
        getattr(model.ide, f"encoder{index}").register_forward_hook(keep(f"encoder{index}"))
    with torch.no_grad():
        _, maps = model(blurry, return_maps=True)
        priors, _ = model.spl(blurry)

    for level in range(3):
        aggregated = mla_by_hand(getattr(model, f"mla{level + 1}"), priors, level)
        (prior, decoded, encoded), (fused, scale, shift) = seen[f"sat{level + 1}"]
        torch.testing.assert_close(prior, aggregated)
        assert torch.equal(encoded, seen[f"encoder{level + 1}"][1])
        assert decoded.shape == encoded.shape == fused.shape
        torch.testing.assert_close(maps[f"prior {level + 1}"], channel_mean(priors[level]))
        torch.testing.assert_close(maps[f"MLA prior {level + 1}"], channel_mean(aggregated))
        torch.testing.assert_close(maps[f"SAT scale {level + 1}"], channel_mean(scale))
        torch.testing.assert_close(maps[f"SAT shift {level + 1}"], channel_mean(shift))


def test_declared_prior_shapes_match_what_forward_train_returns():
    for model in (UNetSP(), UNetSP(**SMALL)):
        model.train()
        height, width = 16, 24
        outputs = model.forward_train(torch.rand(1, 3, height, width))
        priors = outputs["priors"]
        assert len(priors) == len(model.prior_channels) == len(model.prior_strides) == 3
        for prior, channels, stride in zip(priors, model.prior_channels, model.prior_strides):
            assert tuple(prior.shape) == (1, channels, math.ceil(height / stride), math.ceil(width / stride))
            assert prior.requires_grad
        assert outputs["output"].shape == (1, 3, height, width) and outputs["output"].requires_grad


def test_forward_train_output_is_the_restored_image_of_the_same_pass():
    model = small_model().train()
    blurry = torch.rand(1, 3, 16, 20, dtype=torch.float64)
    outputs = model.forward_train(blurry)
    torch.testing.assert_close(outputs["output"], model(blurry))
    torch.testing.assert_close(outputs["priors"][2], model.spl.student(blurry)[2])
