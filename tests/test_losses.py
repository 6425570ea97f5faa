"""The training losses (train/losses.py) and the SP teacher (train/teacher.py): values against hand
computations, gradients going where each paper's alternating scheme says, and the offline fallbacks."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from core.models.gradientnet import PatchGAN
from core.models.reblur import Reblur
from core.models.sp import UNetSP
from train import losses, teacher as teachers
from train.losses import (
    build_perceptual,
    charbonnier,
    critic_loss,
    fft_l1,
    generator_adversarial_loss,
    gradient_loss,
    hcl_loss,
    reblur_deblur_loss,
    reblur_module_loss,
    stage_distances,
    trust_ratio_loss,
    wgan_gp_penalty,
)
from train.teacher import (
    RotationTeacher,
    TorchvisionTeacher,
    check_teacher,
    connectors,
    load_rotation_teacher,
    load_teacher,
    save_teacher,
    train_rotation_teacher,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def images(*shape: int) -> torch.Tensor:
    return torch.rand(*shape)


def no_vgg_weights(network: str):
    raise OSError(f"no internet here (test): {network} weights unavailable")


def random_vgg_features(network: str) -> nn.Sequential:
    """Stands in for torchvision's loader in tests of the real path's plumbing (layer cuts, freezing)."""
    config = torchvision.models.vgg.cfgs["D" if network == "vgg16" else "E"]
    return torchvision.models.vgg.make_layers(config)


# ------------------------------------------------------------------------------------------- pixel losses


def test_distance_losses_are_zero_for_identical_inputs():
    x = images(2, 3, 16, 20)
    for loss in (charbonnier, fft_l1, gradient_loss):
        assert float(loss(x, x.clone())) == pytest.approx(0.0, abs=1e-7), loss.__name__
    assert float(hcl_loss([x], [x.clone()])) == 0.0


def test_charbonnier_matches_its_formula():
    x, y = images(2, 3, 8, 8), images(2, 3, 8, 8)
    expected = torch.sqrt((x - y) ** 2 + 1e-6).mean() - 1e-3
    torch.testing.assert_close(charbonnier(x, y), expected)


def test_gradient_loss_equals_a_hand_computation():
    # one 1-channel-per-colour 2 x 3 image against zeros: the loss is that of the image's own differences
    x = torch.zeros(1, 3, 2, 3)
    x[0, 0] = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]])  # red channel; others 0
    x[0, 2] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # blue channel
    # red: horizontal |1-0| + |3-1| + 0 + 0 = 3, vertical |2-0| + |2-1| + |2-3| = 4
    # blue: horizontal |0-1| + 0 + 0 + 0 = 1, vertical |0-1| + 0 + 0 = 1; channel sum 9, divided by W H = 6
    assert float(gradient_loss(x, torch.zeros_like(x))) == pytest.approx(9 / 6)
    # batch mean, and symmetric in its arguments
    batch = torch.cat([x, torch.zeros_like(x)])
    assert float(gradient_loss(torch.zeros_like(batch), batch)) == pytest.approx(9 / 12)


def test_gradient_loss_ignores_a_constant_offset():
    x = images(2, 3, 8, 8)
    assert float(gradient_loss(x + 0.3, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(charbonnier(x + 0.3, x)) > 0.25


def test_fft_l1_matches_its_formula_and_sees_a_shift():
    x = images(2, 3, 16, 16)
    shifted = torch.roll(x, shifts=1, dims=-1)
    value = fft_l1(shifted, x)
    spectrum = torch.fft.fft2(shifted - x)
    expected = (spectrum.real.abs().mean() + spectrum.imag.abs().mean()) / 2
    torch.testing.assert_close(value, expected)
    assert float(value) > 0.1


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="same shape"):
        fft_l1(images(1, 3, 8, 8), images(1, 3, 8, 9))


# ------------------------------------------------------------------------------------------- perceptual


def test_build_perceptual_falls_back_offline_and_warns_once(monkeypatch):
    monkeypatch.setattr(losses, "load_vgg_features", no_vgg_weights)
    monkeypatch.setattr(losses, "_warned_fallbacks", set())
    with pytest.warns(RuntimeWarning, match="unavailable offline") as record:
        loss, description = build_perceptual("vgg19", "relu4_3")
        again, description_again = build_perceptual("vgg19", "relu4_3")
    assert len([w for w in record if "unavailable offline" in str(w.message)]) == 1
    assert description == description_again
    assert description.startswith("VGG19 relu4_3 perceptual loss unavailable offline")
    assert "OSError: no internet here (test)" in description
    assert description.endswith("replaced by FFT L1 (Cho et al., ICCV 2021)")
    assert loss.description == description
    x, y = images(1, 3, 16, 16), images(1, 3, 16, 16)
    torch.testing.assert_close(loss(x, y), fft_l1(x, y))
    assert float(again(x, x)) == 0.0
    assert not list(loss.parameters())  # nothing random hides in the fallback


def test_build_perceptual_warns_again_for_another_layer(monkeypatch):
    monkeypatch.setattr(losses, "load_vgg_features", no_vgg_weights)
    monkeypatch.setattr(losses, "_warned_fallbacks", set())
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        build_perceptual("vgg16", "relu3_3")
        build_perceptual("vgg19", "relu4_3")
        build_perceptual("vgg16", "relu3_3")
    assert len(record) == 2


def test_perceptual_loss_real_path_cuts_the_named_layer_and_stays_frozen(monkeypatch):
    monkeypatch.setattr(losses, "load_vgg_features", random_vgg_features)
    loss, description = build_perceptual("vgg19", "relu4_3")
    assert description == "VGG19 relu4_3 perceptual loss (torchvision ImageNet weights IMAGENET1K_V1), MSE"
    assert isinstance(loss.features_stack[-1], nn.ReLU) and loss.stride == 8
    assert loss.features_stack[-2].out_channels == 512 and sum(isinstance(m, nn.MaxPool2d) for m in loss.features_stack) == 3
    loss.train()
    assert not loss.features_stack.training
    assert not any(p.requires_grad for p in loss.parameters())
    prediction = images(1, 3, 32, 32).requires_grad_(True)
    target = images(1, 3, 32, 32)
    value = loss(prediction, target)
    normalize = losses.ImageNetNormalize()
    expected = F.mse_loss(loss.features_stack(normalize(prediction)), loss.features_stack(normalize(target)))
    torch.testing.assert_close(value, expected)
    value.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert float(loss(target, target)) == 0.0
    vgg16_loss, _ = build_perceptual("vgg16", "relu3_3")
    assert vgg16_loss.features_stack[-2].out_channels == 256 and vgg16_loss.stride == 4
    with pytest.raises(ValueError, match="no layer"):
        losses.PerceptualLoss(network="vgg16", layer="relu3_4")


# ------------------------------------------------------------------------------------------- HCL


def pool(x: torch.Tensor, size: int) -> torch.Tensor:
    """Average pooling to size x size written out, for maps whose side is a multiple of size."""
    n, c, h, w = x.shape
    return x.reshape(n, c, size, h // size, size, w // size).mean(dim=(3, 5))


def test_hcl_loss_equals_a_hand_computation():
    student = [images(2, 3, 8, 8), images(2, 4, 4, 4), images(2, 2, 2, 2), images(2, 2, 1, 1)]
    teacher = [images(*s.shape) for s in student]
    mse = lambda a, b: ((a - b) ** 2).mean()  # noqa: E731
    s, t = student, teacher
    level_8 = (mse(s[0], t[0]) + mse(pool(s[0], 4), pool(t[0], 4)) / 2 + mse(pool(s[0], 2), pool(t[0], 2)) / 4
               + mse(pool(s[0], 1), pool(t[0], 1)) / 8) / (1 + 1 / 2 + 1 / 4 + 1 / 8)
    # a 4 x 4 map skips the 4 x 4 pool; the later pools move up to weights 1/2 and 1/4
    level_4 = (mse(s[1], t[1]) + mse(pool(s[1], 2), pool(t[1], 2)) / 2 + mse(pool(s[1], 1), pool(t[1], 1)) / 4) / 1.75
    level_2 = (mse(s[2], t[2]) + mse(pool(s[2], 1), pool(t[2], 1)) / 2) / 1.5
    level_1 = mse(s[3], t[3])
    torch.testing.assert_close(hcl_loss(student, teacher), level_8 + level_4 + level_2 + level_1)
    torch.testing.assert_close(hcl_loss(student[1:2], teacher[1:2]), level_4)


def test_hcl_loss_skips_pools_not_smaller_than_the_map():
    # equal means everywhere but different layouts: only the full-resolution term differs
    student = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    teacher = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    # pools 4 and 2 are skipped; pool 1 (equal means, 0) keeps weight 1/2 in the normalisation
    assert float(hcl_loss([student], [teacher])) == pytest.approx(1.0 / 1.5)
    assert float(hcl_loss([student], [teacher], pool_sizes=())) == pytest.approx(1.0)


def test_hcl_loss_trains_the_student_only():
    student = images(1, 4, 8, 8).requires_grad_(True)
    teacher = images(1, 4, 8, 8).requires_grad_(True)
    hcl_loss([student], [teacher]).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    with pytest.raises(ValueError, match="differ"):
        hcl_loss([images(1, 4, 8, 8)], [images(1, 5, 8, 8)])


# ------------------------------------------------------------------------------------------- trust ratios


def test_trust_ratio_loss_value():
    target = torch.zeros(2, 3, 8, 8)
    stages = [target + offset for offset in (0.1, 0.2, 0.4)]
    distances = stage_distances(stages, target)
    torch.testing.assert_close(distances, torch.sqrt(torch.tensor([0.01, 0.04, 0.16]) + 1e-6))
    ratios = torch.tensor([0.5, 0.3, 0.2])
    expected = (ratios * distances).sum() + 0.05 * (ratios * torch.log(3 * ratios)).sum()
    torch.testing.assert_close(trust_ratio_loss(stages, target, ratios, temperature=0.05), expected)


def test_trust_ratio_loss_is_minimised_by_the_softmin_of_the_stage_losses():
    target = images(2, 3, 8, 8)
    stages = [target + 0.1 * torch.randn_like(target) * scale for scale in (1.0, 2.0, 3.0)]
    temperature = 0.1
    logits = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([logits], lr=0.05)
    for _ in range(600):
        optimizer.zero_grad()
        trust_ratio_loss(stages, target, torch.softmax(logits, dim=0), temperature=temperature).backward()
        optimizer.step()
    softmin = torch.softmax(-stage_distances(stages, target) / temperature, dim=0)
    torch.testing.assert_close(torch.softmax(logits, dim=0).detach(), softmin, atol=2e-3, rtol=0)
    assert 0.05 < float(softmin.min()) < float(softmin.max()) < 0.8  # a real compromise, not one stage
    # the literal Eq. 1 (temperature 0) puts all trust on the best stage
    for _ in range(600):
        optimizer.zero_grad()
        trust_ratio_loss(stages, target, torch.softmax(logits, dim=0), temperature=0.0).backward()
        optimizer.step()
    assert torch.softmax(logits.detach(), dim=0)[0].item() > 0.95


def test_trust_ratio_loss_weights_the_stage_gradients():
    target = images(1, 3, 8, 8)
    stages = [(target + 0.1).requires_grad_(True), (target - 0.2).requires_grad_(True)]
    ratios = torch.tensor([0.25, 0.75])
    trust_ratio_loss(stages, target, ratios, temperature=0.1).backward()
    # d/dP sqrt(mean((P - G)^2) + eps^2) for a constant offset d: d / (n sqrt(d^2 + eps^2)), n = 192
    expected_first = 0.25 * 0.1 / (192 * np.sqrt(0.01 + 1e-6))
    assert float(stages[0].grad.mean()) == pytest.approx(expected_first, rel=1e-4)
    assert float(stages[1].grad.mean()) == pytest.approx(-0.75 * 0.2 / (192 * np.sqrt(0.04 + 1e-6)), rel=1e-4)
    with pytest.raises(ValueError, match="one ratio per stage"):
        trust_ratio_loss(stages, target, torch.ones(3) / 3, temperature=0.1)


# ------------------------------------------------------------------------------------------- WGAN-GP


class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.weight * x).flatten(1).sum(dim=1)


def test_gradient_penalty_of_a_linear_critic():
    direction = torch.randn(3, 8, 8)
    unit = LinearCritic(direction / direction.norm())
    real, fake = images(4, 3, 8, 8), images(4, 3, 8, 8)
    assert wgan_gp_penalty(unit, real, fake).item() == pytest.approx(0.0, abs=1e-10)
    steep = LinearCritic(2 * direction / direction.norm())
    assert wgan_gp_penalty(steep, real, fake).item() == pytest.approx(1.0, abs=1e-5)
    expected = steep(fake).mean() - steep(real).mean() + 10 * 1.0
    assert critic_loss(steep, real, fake).item() == pytest.approx(expected.item(), abs=1e-4)


def test_critic_and_generator_losses_train_the_right_networks():
    critic = PatchGAN(channels=8, layers=2)
    real = images(2, 3, 32, 32)
    generator_output = images(2, 3, 32, 32).requires_grad_(True)
    fake = generator_output * 1.0
    assert wgan_gp_penalty(critic, real, fake).item() > 0
    critic_loss(critic, real, fake).backward()
    assert all(p.grad is not None for p in critic.parameters())
    assert all(p.grad.abs().sum() > 0 for p in critic.parameters() if p.dim() > 1)
    assert generator_output.grad is None  # the critic step does not reach the generator
    critic.zero_grad(set_to_none=True)
    value = generator_adversarial_loss(critic, fake)
    torch.testing.assert_close(value, -critic(fake).mean())
    value.backward()
    assert generator_output.grad is not None and generator_output.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


# ------------------------------------------------------------------------------------------- reblurring


def tiny_reblur() -> Reblur:
    return Reblur(deblur_widths=(8, 8, 8), deblur_resblocks=1, reblur_channels=8, reblur_resblocks=1)


def test_reblur_deblur_loss_trains_the_deblurring_module_only():
    model = tiny_reblur()
    blurry, sharp = images(2, 3, 16, 16), images(2, 3, 16, 16)
    deblurred = model.deblur(blurry)
    value = reblur_deblur_loss(model, blurry, sharp, deblurred, weight=0.5)
    with torch.no_grad():
        expected = F.l1_loss(deblurred, sharp) + 0.5 * F.l1_loss(model.reblur(deblurred), model.reblur(sharp))
    torch.testing.assert_close(value, expected)
    value.backward()
    assert all(p.grad is None for p in model.reblur.parameters())
    assert all(p.requires_grad for p in model.reblur.parameters())  # no flag was left toggled
    assert all(p.grad is not None for p in model.deblur.parameters())
    # the reblurring term itself reaches M_D: its gradient differs from the plain L1's
    model.zero_grad(set_to_none=True)
    F.l1_loss(model.deblur(blurry), sharp).backward()
    plain = model.deblur.tail.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    reblur_deblur_loss(model, blurry, sharp, model.deblur(blurry), weight=0.5).backward()
    assert not torch.allclose(plain, model.deblur.tail.weight.grad)


def test_reblur_module_loss_trains_the_reblurring_module_only():
    model = tiny_reblur()
    blurry, sharp = images(2, 3, 16, 16), images(2, 3, 16, 16)
    deblurred = model.deblur(blurry)
    value = reblur_module_loss(model, blurry, sharp, deblurred)
    with torch.no_grad():
        pseudo_sharp = model.deblur(sharp)
        expected = F.l1_loss(model.reblur(deblurred), blurry) + F.l1_loss(model.reblur(pseudo_sharp), pseudo_sharp)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert all(p.grad is None for p in model.deblur.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.reblur.parameters())


# ------------------------------------------------------------------------------------------- teachers


def test_rotation_teacher_features_fit_unet_sp_priors():
    model = UNetSP()
    teacher = RotationTeacher(channels=model.prior_channels)
    check_teacher(teacher, model)
    x = images(2, 3, 32, 48)
    features = teacher.features(x)
    priors = model.forward_train(x)["priors"]
    assert len(features) == len(model.prior_channels) == len(priors)
    for feature, prior, channels, stride in zip(features, priors, model.prior_channels, model.prior_strides):
        assert feature.shape == (2, channels, 32 // stride, 48 // stride) == prior.shape
    assert teacher(x).shape == (2, 4)
    hcl_loss(priors, teacher.features(x)).backward()
    assert model.spl.student.level1[0].weight.grad is not None


def test_connectors_bridge_the_vgg_teacher_to_the_student(monkeypatch):
    monkeypatch.setattr(losses, "load_vgg_features", random_vgg_features)
    teacher = load_teacher("torchvision")
    assert isinstance(teacher, TorchvisionTeacher)
    assert teacher.channels == (64, 128, 256) and teacher.strides == (1, 2, 4)
    assert not any(p.requires_grad for p in teacher.parameters())
    model = UNetSP()
    check_teacher(teacher, model)
    bridges = connectors(model.prior_channels, teacher.channels)
    x = images(1, 3, 16, 16)
    features = teacher.features(x)
    priors = model.forward_train(x)["priors"]
    for bridge, prior, feature in zip(bridges, priors, features):
        assert bridge(prior).shape == feature.shape
    same = connectors((32, 64), (32, 128))
    assert isinstance(same[0], nn.Identity) and isinstance(same[1], nn.Conv2d)


def test_load_teacher_offline_says_what_to_do(monkeypatch):
    monkeypatch.setattr(losses, "load_vgg_features", no_vgg_weights)
    with pytest.raises(RuntimeError, match="could not be loaded.*train_rotation_teacher"):
        load_teacher("torchvision")
    with pytest.raises(ValueError, match="teacher kind"):
        load_teacher("imagenet")


class UprightScenes(torch.utils.data.Dataset):
    """Tiny structured images with an up and a down: a bright sky ramp over darker ground at a tilted horizon,
    and an arrow pointing up, standing on the ground. Rotations of them are told apart by their structure."""

    def __init__(self, count: int, size: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        ys, xs = np.mgrid[0:size, 0:size] / (size - 1)
        self.images = []
        for _ in range(count):
            horizon = rng.uniform(0.35, 0.65) + rng.uniform(-0.3, 0.3) * (xs - 0.5)
            sky, ground = rng.uniform(0.6, 1.0, (3, 1, 1)), rng.uniform(0.0, 0.4, (3, 1, 1))
            image = np.where((ys > horizon)[None], ground, sky * (1 - 0.4 * ys)[None])
            centre, half_width, top = rng.uniform(0.25, 0.75), rng.uniform(0.08, 0.15), rng.uniform(0.1, 0.3)
            head = (np.abs(xs - centre) < half_width * (ys - top) / 0.2) & (ys > top) & (ys < top + 0.2)
            shaft = (np.abs(xs - centre) < half_width / 3) & (ys >= top + 0.2) & (ys < horizon)
            image = np.where((head | shaft)[None], rng.uniform(0, 1, (3, 1, 1)), image)
            image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1)
            self.images.append(torch.from_numpy(image.astype(np.float32)))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"sharp": self.images[index]}


def test_train_rotation_teacher_learns_and_round_trips(tmp_path):
    dataset = UprightScenes(40, 32, seed=0)
    teacher, history = train_rotation_teacher(
        dataset, steps=60, batch_size=16, lr=2e-3, seed=0, device="cpu", channels=(16, 32, 64), held_out_fraction=0.25
    )
    assert len(history["loss"]) == 60
    assert np.mean(history["loss"][-10:]) < np.mean(history["loss"][:10]) - 0.3
    assert history["held_out_images"] == 10
    assert history["held_out_accuracy"] > 0.6  # chance is 0.25
    assert not any(p.requires_grad for p in teacher.parameters())

    path = tmp_path / "rotation-teacher.safetensors"
    with pytest.raises(ValueError, match="held_out_accuracy"):
        save_teacher(teacher, path, {"data": "upright scenes", "steps": 60})
    save_teacher(
        teacher,
        path,
        {"data": "40 synthetic upright scenes", "steps": 60, "held_out_accuracy": history["held_out_accuracy"],
         "held_out_images": history["held_out_images"]},
    )
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["channels"] == [16, 32, 64] and card["strides"] == [1, 2, 4] and card["steps"] == 60
    loaded = load_rotation_teacher(path)
    assert loaded.description == card["description"] and "40 synthetic upright scenes" in loaded.description
    x = dataset[0]["sharp"][None]
    for a, b in zip(teacher.features(x), load_teacher("rotation", path=path).features(x)):
        torch.testing.assert_close(a, b)


def test_rotation_batches_are_rotated_as_labelled():
    x = images(4, 3, 8, 8)
    turned = teachers.rotate(x, torch.tensor([0, 1, 2, 3]))
    for k in range(4):
        torch.testing.assert_close(turned[k], torch.rot90(x[k], k, dims=(-2, -1)))
    with pytest.raises(ValueError, match="square"):
        teachers.rotate(images(1, 3, 8, 6), torch.tensor([1]))
