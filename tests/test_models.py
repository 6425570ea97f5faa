"""Checks every registered model against the shared interface; a new model is covered without new code here."""

import pytest
import torch
from safetensors.torch import save_file

import core.registry as registry
from core.complexity import parameter_count
from core.registry import create_model, get_card, list_models

MODELS = list_models()


def batch(n, height, width, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, height, width, generator=generator)


def train_size(model, side=32):
    multiple_h, multiple_w = model.pad_hw
    return -(-side // multiple_h) * multiple_h, -(-side // multiple_w) * multiple_w


def test_the_five_papers_are_registered():
    papers = {get_card(name).paper for name in MODELS}
    assert len(papers) == 5, papers


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count_matches_card_and_paper(name):
    card = get_card(name)
    count = parameter_count(create_model(name))
    assert count == card.params
    if card.paper_params:
        assert abs(count - card.paper_params) <= 0.10 * card.paper_params, (count, card.paper_params)


@pytest.mark.parametrize("name", MODELS)
def test_odd_sizes_keep_shape_finite_in_range_and_batch_independent(name):
    model = create_model(name)
    x = batch(2, 67, 93)
    with torch.no_grad():
        pair = model(x)
        single = model(x[1:])
    assert pair.shape == x.shape
    assert torch.isfinite(pair).all()
    assert pair.min() >= 0.0 and pair.max() <= 1.0
    torch.testing.assert_close(single, pair[1:], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(16, 16), (17, 31)])
def test_smallest_inputs(name, size):
    model = create_model(name)
    with torch.no_grad():
        assert model(batch(1, *size)).shape == (1, 3, *size)


@pytest.mark.parametrize("name", MODELS)
def test_too_small_or_wrong_layout_is_refused_with_a_message(name):
    model = create_model(name)
    with pytest.raises(ValueError, match="at least 16"):
        model(batch(1, 15, 40))
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        model(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize("name", MODELS)
def test_eval_is_deterministic_and_maps_come_from_the_same_pass(name):
    model = create_model(name)
    x = batch(1, 40, 56, seed=1)
    with torch.no_grad():
        first = model(x)
        second, maps = model(x, return_maps=True)
    assert torch.equal(first, second)
    assert tuple(maps) == get_card(name).maps
    for key, value in maps.items():
        assert torch.isfinite(value).all(), key
        assert not value.requires_grad, key
        if value.dim() == 4:
            assert value.shape[0] == 1 and value.shape[1] in (1, 3), (key, value.shape)
            assert value.shape[-2] <= 40 and value.shape[-1] <= 56, (key, value.shape)


@pytest.mark.parametrize("name", MODELS)
def test_backward_reaches_every_parameter(name):
    model = create_model(name).train()
    outputs = model.forward_train(batch(2, *train_size(model)))
    tensors = [t for value in outputs.values() for t in (value if isinstance(value, (list, tuple)) else [value])]
    sum(t.float().sum() for t in tensors).backward()
    dead = [key for key, p in model.named_parameters() if p.grad is None]
    assert not dead, f"parameters without gradient: {dead[:10]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS)
def test_forward_train_refuses_crops_that_are_not_padding_multiples(name):
    model = create_model(name).train()
    height, width = train_size(model)
    multiple_h, multiple_w = model.pad_hw
    if multiple_h == 1 and multiple_w == 1:
        pytest.skip("this model needs no padding")
    with pytest.raises(ValueError, match="multiples"):
        model.forward_train(batch(1, height + 1, width + 1))


@pytest.mark.parametrize("name", MODELS)
def test_checkpoint_round_trip_and_clear_errors(name, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "CHECKPOINT_DIR", tmp_path)
    path = registry.checkpoint_path(name)
    with pytest.raises(FileNotFoundError, match=str(path.name)):
        create_model(name, pretrained=True)

    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match=str(path.name)):
        create_model(name, pretrained=True)

    source = create_model(name)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = create_model(name, pretrained=True)
    x = batch(1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x))

    save_file({"unrelated.weight": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="does not match"):
        create_model(name, pretrained=True)


@pytest.mark.parametrize("name", ["fcn", "lmfn", "gradientnet", "reblur-n1", "sp-unet"])
def test_in_place_inference_changes_no_bit(name):
    """The in-place shortcuts taken when no gradient is recorded (FCN's PReLU and channel attention, residual sums,
    LMFN's LeakyReLUs) give exactly the output and the maps of the recorded (autograd) path: no map the app shows
    is a tensor that a later in-place op overwrote."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.enable_grad():
        recorded, recorded_maps = model(x.requires_grad_(), return_maps=True)
    with torch.inference_mode():
        fast, fast_maps = model(x.detach(), return_maps=True)
    assert torch.equal(recorded.detach(), fast)
    assert recorded_maps.keys() == fast_maps.keys() and recorded_maps
    assert all(torch.equal(recorded_maps[key].detach(), fast_maps[key]) for key in fast_maps)
