"""FCN's multi-patch stages (Sec. 3, Fig. 2), query-key mechanism (Sec. 3.2), EFEM / MSAM (Sec. 3.3-3.4) and
trust ratios (Sec. 3.6, Eq. 1), checked against hand computations on small tensors."""

import pytest
import torch

import core.models.fcn  # noqa: F401  (registers the variant)
from core.models.fcn import EFEM, FCN, MSAM, PATCH_GRIDS, QueryKey, merge_patches, regroup, split_patches
from core.registry import get_card

SMALL = dict(channels=8, query_channels=4, encoder_growth=4, rim_extra=4, num_cab=1, reduction=4)


def image(n, height, width, seed=0):
    return torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def small_model():
    return FCN(**SMALL).double().eval()


def patches_by_slicing(x, rows, cols):
    """Patches of every image in row-major order, cut with explicit slices."""
    h, w = x.shape[-2] // rows, x.shape[-1] // cols
    cells = [(n, i, j) for n in range(x.shape[0]) for i in range(rows) for j in range(cols)]
    return torch.stack([x[n, :, i * h : (i + 1) * h, j * w : (j + 1) * w] for n, i, j in cells])


def record(store, key, *, of_input):
    """A forward hook that keeps a module's input (or output) under ``key`` and leaves the output alone."""

    def hook(module, inputs, output):
        store[key] = inputs[0] if of_input else output

    return hook


def pointwise(x, layer):
    """A bias-free 1x1 convolution written as a channel contraction."""
    return torch.einsum("oc,nchw->nohw", layer.weight[:, :, 0, 0], x)


@pytest.mark.parametrize(("rows", "cols", "count"), [(2, 4, 8), (2, 2, 4), (2, 1, 2)])
def test_patch_split_cuts_the_paper_grid_and_merge_reassembles_exactly(rows, cols, count):
    x = image(2, 16, 32)
    patches = split_patches(x, rows, cols)
    assert patches.shape == (2 * count, 3, 16 // rows, 32 // cols)
    assert torch.equal(patches, patches_by_slicing(x, rows, cols))
    assert torch.equal(merge_patches(patches, rows, cols), x)


def test_regroup_recuts_eight_patches_into_two_halves():
    x = image(2, 16, 32)
    assert torch.equal(regroup(split_patches(x, 2, 4), (2, 4), (2, 1)), patches_by_slicing(x, 2, 1))


def test_four_stages_see_8_4_2_1_patches_and_three_stages_restore_an_image():
    assert PATCH_GRIDS == ((2, 4), (2, 2), (2, 1), (1, 1))
    model = small_model()
    x = image(2, 16, 32)
    seen = {}
    for stage in range(4):
        block = getattr(model, f"processing_block{stage}")
        block.register_forward_hook(record(seen, stage, of_input=True))
    with torch.no_grad():
        outputs = model.forward_train(x)
    assert sorted(seen) == [0, 1, 2, 3]
    for stage, ((rows, cols), count) in enumerate(zip(PATCH_GRIDS, (8, 4, 2, 1))):
        assert seen[stage].shape == (2 * count, 3, 16 // rows, 32 // cols)
        assert torch.equal(seen[stage], patches_by_slicing(x, rows, cols))
    assert len(outputs["stages"]) == 3 and outputs["trust ratios"].shape == (3,)
    assert outputs["output"] is outputs["stages"][-1]


def test_query_key_is_sigmoid_of_two_pointwise_convs_of_a_per_patch_layer_norm():
    module = QueryKey(channels=4, query_channels=2).double()
    key = torch.randn(2, 4, 3, 5, dtype=torch.float64) * torch.tensor([1.0, 7.0], dtype=torch.float64).view(2, 1, 1, 1)
    gated, query = module(key)
    expected_query = []
    for sample in key:
        values = sample.flatten()
        mean = values.sum() / values.numel()
        variance = ((values - mean) ** 2).sum() / values.numel()
        normalised = ((sample - mean) / torch.sqrt(variance + 1e-5)).unsqueeze(0)
        expected_query.append(torch.sigmoid(pointwise(pointwise(normalised, module.down), module.up))[0])
    expected_query = torch.stack(expected_query)
    torch.testing.assert_close(query, expected_query)
    torch.testing.assert_close(gated, expected_query * key)
    torch.testing.assert_close(module(key[1:])[1], query[1:])  # each image is normalised on its own


def test_query_map_is_the_channel_mean_of_the_stage0_gate_and_lies_in_0_1():
    model = small_model()
    with torch.no_grad():
        model.query_key.up.weight.mul_(200.0)  # saturate the sigmoid: the map must still stay in [0, 1]
    captured = {}
    model.processing_block0.register_forward_hook(record(captured, "pb", of_input=False))
    x = image(1, 16, 32, seed=3)
    with torch.no_grad():
        _, maps = model(x, return_maps=True)
        key = regroup(captured["pb"], (2, 4), (2, 1))
        query = model.query_key(key)[1]
    expected = merge_patches(query.mean(dim=1, keepdim=True), 2, 1)
    torch.testing.assert_close(maps["query map 1"], expected)
    assert maps["query map 1"].min() >= 0.0 and maps["query map 1"].max() <= 1.0
    assert maps["query map 1"].min() < 0.2 and maps["query map 1"].max() > 0.8


def test_gated_stage0_features_join_stage1_first_encoder_level_before_its_decoder():
    model = small_model()
    captured = {}
    model.processing_block0.register_forward_hook(record(captured, "pb", of_input=False))
    model.encoder1.register_forward_hook(record(captured, "encoded", of_input=False))
    model.decoder1.register_forward_hook(record(captured, "decoder input", of_input=True))
    with torch.no_grad():
        model(image(1, 16, 32, seed=4))
        key = regroup(captured["pb"], (2, 4), (2, 1))
        gated = model.query_key(key)[0]
    assert not torch.allclose(gated, key)
    expected = regroup(captured["encoded"][0], (2, 2), (2, 1)) + gated
    torch.testing.assert_close(captured["decoder input"][0], expected)
    for level in (1, 2):  # the deeper levels of the 4 quadrants are only regrouped into the two halves
        assert torch.equal(captured["decoder input"][level], regroup(captured["encoded"][level], (2, 2), (2, 1)))


def test_efem_layer_norm_and_pointwise_supervised_attention_by_hand():
    module = EFEM(channels=6).double()
    with torch.no_grad():
        module.norm.norm.weight.uniform_(0.5, 1.5)
        module.norm.norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64) * 3 + 1
    blurry = image(2, 4, 5)
    features, restored = module(x, blurry)
    mean = x.mean(dim=1, keepdim=True)
    variance = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    normalised = (x - mean) / torch.sqrt(variance + module.norm.norm.eps)
    normalised = normalised * module.norm.norm.weight.view(1, -1, 1, 1) + module.norm.norm.bias.view(1, -1, 1, 1)
    expected_image = pointwise(normalised, module.to_image) + blurry
    gate = torch.sigmoid(pointwise(expected_image, module.from_image))
    torch.testing.assert_close(restored, expected_image)
    torch.testing.assert_close(features, x + pointwise(normalised, module.project) * gate)


def test_msam_pointwise_supervised_attention_by_hand():
    module = MSAM(channels=6).double()
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    blurry = image(2, 4, 5)
    features, restored = module(x, blurry)
    expected_image = pointwise(x, module.to_image) + blurry
    gate = torch.sigmoid(pointwise(expected_image, module.from_image))
    torch.testing.assert_close(restored, expected_image)
    torch.testing.assert_close(features, x + pointwise(x, module.project) * gate)


def test_every_stage_output_is_a_residual_on_the_blurry_image_in_the_right_place():
    model = small_model()
    with torch.no_grad():
        for head in (model.efem.to_image, model.msam.to_image, model.tail):
            head.weight.zero_()
    x = image(2, 16, 32, seed=5)
    with torch.no_grad():
        stages = model.forward_train(x)["stages"]
    for stage in stages:
        assert torch.equal(stage, x)


def test_stage_maps_are_the_stage_outputs_of_the_same_pass():
    model = small_model()
    x = image(1, 16, 32, seed=7)
    with torch.no_grad():
        stages = model.forward_train(x)["stages"]
        _, maps = model(x, return_maps=True)
    assert tuple(maps) == get_card("fcn").maps
    for index, stage in enumerate(stages, start=1):
        torch.testing.assert_close(maps[f"stage {index} output"], stage)
    torch.testing.assert_close(maps["trust ratios"], model.trust_ratios())


def test_trust_ratios_are_a_positive_normalised_weighting_that_learns_from_eq1():
    model = small_model().train()
    ratios = model.trust_ratios()
    torch.testing.assert_close(ratios, torch.full((3,), 1 / 3, dtype=torch.float64))
    with torch.no_grad():
        model.trust_logits.copy_(torch.tensor([2.0, -1.0, 0.5]))
    x, sharp = image(1, 16, 32, seed=1), image(1, 16, 32, seed=2)
    outputs = model.forward_train(x)
    ratios = outputs["trust ratios"]
    assert (ratios > 0).all() and (ratios < 1).all()
    torch.testing.assert_close(ratios.sum(), torch.tensor(1.0, dtype=torch.float64))
    stage_losses = torch.stack([torch.sqrt(((stage - sharp) ** 2).sum()) for stage in outputs["stages"]])
    (ratios * stage_losses).sum().backward()  # Eq. 1
    losses = stage_losses.detach()
    expected = ratios.detach() * (losses - (ratios.detach() * losses).sum())  # d/dlogit of a softmax-weighted sum
    torch.testing.assert_close(model.trust_logits.grad, expected)
    assert model.trust_logits.grad.abs().max() > 0


def test_card_declares_the_paper_configuration():
    card = get_card("fcn")
    assert FCN.pad_multiple == (8, 16)
    assert card.config["channels"] == 96 and card.config["query_channels"] == 48
    assert card.maps[0] == "query map 1" and card.maps[-1] == "trust ratios"
