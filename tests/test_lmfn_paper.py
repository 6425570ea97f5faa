"""LMFN's equations and structure (Zhang et al., "Image Deblurring Based on Lightweight Multi-Information
Fusion Network"), each checked against a value computed here from the module's own weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import MapRecorder
from core.models.lmfn import ACFM, ALFM, ESA, LMFN, MSHF, RFDB, RGB_MEAN, upsample2


def capture_input(module: nn.Module) -> tuple[list, object]:
    """Record the first positional input of every call of ``module``."""
    seen: list = []
    handle = module.register_forward_pre_hook(lambda _module, args: seen.append(args[0]))
    return seen, handle


def test_rfdb_splits_into_half_distilled_and_full_remaining_channels():
    block = RFDB(50)
    assert len(block.distill) == len(block.refine) == 3
    for distill, refine in zip(block.distill, block.refine):
        assert distill.weight.shape == (25, 50, 1, 1)
        assert refine.weight.shape == (50, 50, 3, 3)
    assert block.distill_last.weight.shape == (25, 50, 3, 3)
    assert block.fuse.weight.shape == (50, 100, 1, 1)

    seen, handle = capture_input(block.fuse)
    x = torch.randn(1, 50, 6, 7)
    with torch.no_grad():
        out = block(x)
    handle.remove()
    assert seen[0].shape == (1, 4 * 25, 6, 7)
    assert out.shape == x.shape

    # the concatenation by hand: [1x1 distil, 3x3 + identity] three times, a last 3x3 to C/2
    act = lambda t: F.leaky_relu(t, 0.05)
    pieces, remaining = [], x
    for distill, refine in zip(block.distill, block.refine):
        pieces.append(act(F.conv2d(remaining, distill.weight, distill.bias)))
        remaining = act(F.conv2d(remaining, refine.weight, refine.bias, padding=1) + remaining)
    pieces.append(act(F.conv2d(remaining, block.distill_last.weight, block.distill_last.bias, padding=1)))
    torch.testing.assert_close(seen[0], torch.cat(pieces, dim=1))


def esa_by_hand(esa: ESA, x: torch.Tensor, pooled_from) -> torch.Tensor:
    reduced = F.conv2d(x, esa.reduce.weight, esa.reduce.bias)
    strided = F.conv2d(reduced, esa.down.weight, esa.down.bias, stride=2)
    pooled = pooled_from(strided)
    first, _, second, _, third = esa.body
    context = F.relu(F.conv2d(pooled, first.weight, first.bias, padding=1))
    context = F.relu(F.conv2d(context, second.weight, second.bias, padding=1))
    context = F.conv2d(context, third.weight, third.bias, padding=1)
    context = F.interpolate(context, size=x.shape[-2:], mode="bilinear", align_corners=False)
    skip = F.conv2d(reduced, esa.skip.weight, esa.skip.bias)
    gate = torch.sigmoid(F.conv2d(context + skip, esa.expand.weight, esa.expand.bias))
    return x * gate


def test_esa_uses_quarter_channels_and_a_7x7_stride_3_max_pool():
    esa = ESA(50)
    assert esa.reduce.weight.shape == (12, 50, 1, 1)
    assert esa.expand.weight.shape == (50, 12, 1, 1)
    assert esa.down.stride == (2, 2) and esa.down.padding == (0, 0)
    x = torch.randn(1, 50, 20, 22)  # strided map 9 x 10: no padding needed
    with torch.no_grad():
        expected = esa_by_hand(esa, x, lambda s: F.max_pool2d(s, 7, stride=3))
        torch.testing.assert_close(esa(x), expected)


def test_esa_on_a_map_smaller_than_its_pool_takes_the_global_max():
    esa = ESA(50)
    x = torch.randn(1, 50, 8, 8)  # strided map 3 x 3, smaller than the 7 x 7 pool
    with torch.no_grad():
        expected = esa_by_hand(esa, x, lambda s: s.amax(dim=(-2, -1), keepdim=True))
        torch.testing.assert_close(esa(x), expected)


def gram_softmax(layers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1 in float64 by einsum: every channel of every layer is one row of f_g."""
    f_g = torch.cat(layers, dim=1).double().flatten(2)
    energy = torch.einsum("bip,bjp->bij", f_g, f_g)
    return torch.softmax(energy, dim=-1), f_g


def test_alfm_theta_starts_at_zero_so_eq2_is_the_identity_before_the_fusion_conv():
    alfm = ALFM(50, layers=4)
    assert alfm.theta.item() == 0.0
    layers = [torch.randn(2, 50, 5, 6) for _ in range(4)]
    seen, handle = capture_input(alfm.fusion)
    with torch.no_grad():
        out = alfm(layers, MapRecorder(False))
    handle.remove()
    torch.testing.assert_close(seen[0], torch.cat(layers, dim=1), rtol=0, atol=0)
    conv = alfm.fusion[0]
    assert conv.weight.shape == (50, 200, 1, 1)
    expected = F.leaky_relu(F.conv2d(torch.cat(layers, dim=1), conv.weight, conv.bias), 0.05)
    torch.testing.assert_close(out, expected)


def test_alfm_attention_is_a_row_softmax_over_all_layer_channels():
    alfm = ALFM(50, layers=4)
    layers = [0.1 * torch.randn(2, 50, 4, 5) for _ in range(4)]
    maps = MapRecorder(True)
    with torch.no_grad():
        alfm(layers, maps)
    attention = maps.maps["ALFM attention"]
    assert attention.shape == (2, 200, 200)
    torch.testing.assert_close(attention.sum(dim=-1), torch.ones(2, 200))
    expected, _ = gram_softmax(layers)
    torch.testing.assert_close(attention.double(), expected, rtol=1e-4, atol=1e-6)


def test_alfm_eq2_with_nonzero_theta():
    alfm = ALFM(8, layers=3)
    with torch.no_grad():
        alfm.theta.fill_(0.6)
    layers = [0.3 * torch.randn(1, 8, 3, 4) for _ in range(3)]
    seen, handle = capture_input(alfm.fusion)
    with torch.no_grad():
        alfm(layers, MapRecorder(False))
    handle.remove()
    attention, f_g = gram_softmax(layers)
    expected = 0.6 * torch.einsum("bij,bjp->bip", attention, f_g) + f_g
    torch.testing.assert_close(seen[0].double().flatten(2), expected, rtol=1e-5, atol=1e-6)


def test_acfm_is_pseudo_3d_with_1x3x3_then_3x1x1_kernels():
    acfm = ACFM()
    assert isinstance(acfm.conv1, nn.Conv3d) and isinstance(acfm.conv2, nn.Conv3d)
    assert acfm.conv1.kernel_size == (1, 3, 3)
    assert acfm.conv2.kernel_size == (3, 1, 1)
    assert acfm.conv1.in_channels == acfm.conv1.out_channels == 1
    assert acfm.conv2.in_channels == acfm.conv2.out_channels == 1
    assert sum(p.numel() for p in acfm.parameters()) == (9 + 1) + (3 + 1) + 1


def test_acfm_matches_eq3_by_hand_with_nonzero_alpha():
    acfm = ACFM()
    with torch.no_grad():
        acfm.alpha.fill_(0.7)
    batch, channels, height, width = 2, 6, 5, 7
    f_out = torch.randn(batch, channels, height, width)
    maps = MapRecorder(True)
    with torch.no_grad():
        out = acfm(f_out, maps)

    # conv1 (1x3x3): the same 3x3 filter on every channel slice
    w1, b1 = acfm.conv1.weight.view(1, 1, 3, 3), acfm.conv1.bias
    spatial = F.conv2d(f_out.reshape(-1, 1, height, width), w1, b1, padding=1).view_as(f_out)
    # conv2 (3x1x1): a 3-tap filter along the channel axis, zero beyond the first and last channel
    w2, b2 = acfm.conv2.weight.flatten(), acfm.conv2.bias
    padded = F.pad(spatial, (0, 0, 0, 0, 1, 1))
    across = w2[0] * padded[:, :-2] + w2[1] * padded[:, 1:-1] + w2[2] * padded[:, 2:] + b2
    attention = torch.sigmoid(across)
    expected = f_out + 0.7 * attention * f_out
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(maps.maps["ACFM attention"], attention.mean(dim=1, keepdim=True))


def test_mshf_fuses_the_pyramid_coarse_to_fine_at_quarter_resolution():
    mshf = MSHF()
    x = torch.rand(1, 3, 32, 48)
    act = lambda t: F.leaky_relu(t, 0.1)
    with torch.no_grad():
        out = mshf(x)
        f0 = act(mshf.head(x))
        f2 = act(mshf.down_quarter(act(mshf.down_half(f0))))
        f3 = act(mshf.down_eighth(f2))
        f4 = act(mshf.down_sixteenth(f3))
        assert f4.shape[-2:] == (2, 3)
        f3 = mshf.res_eighth_before(f3) + upsample2(mshf.res_sixteenth(f4))
        f2 = mshf.res_quarter_before(f2) + upsample2(mshf.res_eighth_after(f3))
        expected = mshf.res_quarter_after(f2)
    assert out.shape == (1, 64, 8, 12)
    torch.testing.assert_close(out, expected)


def test_lmfn_decoder_joins_alfm_and_acfm_with_a_long_skip_and_predicts_the_image_directly():
    model = LMFN().eval()
    assert len(model.rfdbs) == 4
    x = torch.rand(1, 3, 32, 32)
    seen_alfm, handle_alfm = capture_input(model.alfm)
    seen_acfm, handle_acfm = capture_input(model.acfm)
    with torch.no_grad():
        out = model._restore(x, MapRecorder(False))
        mean = torch.tensor(RGB_MEAN).view(1, 3, 1, 1)
        shallow = model.head(model.mshf(x - mean))
        layers, feature = [], shallow
        for rfdb in model.rfdbs:
            feature = rfdb(feature)
            layers.append(feature)
        layer_fused = model.alfm(layers, MapRecorder(False))
        channel_fused = model.acfm(layers[-1], MapRecorder(False))
        fused = model.fuse(torch.cat([layer_fused, channel_fused], dim=1))
        expected = F.pixel_shuffle(model.upsampler[0](fused + shallow), 4) + mean
    handle_alfm.remove()
    handle_acfm.remove()
    assert len(seen_alfm[0]) == 4  # ALFM sees every RFDB output
    torch.testing.assert_close(seen_acfm[0], layers[-1])  # ACFM sees only the last one
    assert model.fuse.weight.shape == (50, 100, 3, 3)
    assert model.upsampler[0].weight.shape == (48, 50, 3, 3)
    torch.testing.assert_close(out, expected)


def test_lmfn_maps_have_the_papers_shapes():
    model = LMFN().eval()
    with torch.no_grad():
        _, maps = model(torch.rand(2, 3, 32, 48), return_maps=True)
    assert maps["ALFM attention"].shape == (2, 200, 200)
    assert maps["ACFM attention"].shape == (2, 1, 8, 12)
    assert 0.0 < maps["ACFM attention"].min() and maps["ACFM attention"].max() < 1.0
