"""The padding and map-cropping contract of core.models.base, on a tiny model written here."""

import torch
from torch import nn

from core.models.base import DeblurModel, channel_mean, pad_to_multiple


class Shrinker(DeblurModel):
    pad_multiple = (8, 16)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def _restore(self, x, maps):
        maps.add("half", channel_mean(x)[..., ::2, ::2])
        maps.add("vector", torch.arange(3.0))
        self.seen = x.shape
        return self.conv(x) + 2.0


def test_padding_reaches_the_multiple_and_keeps_the_image_in_the_top_left():
    x = torch.rand(1, 3, 67, 93)
    padded = pad_to_multiple(x, 8, 16)
    assert padded.shape[-2:] == (72, 96)
    assert torch.equal(padded[..., :67, :93], x)
    assert torch.equal(padded[..., 67, :93], x[..., 65, :])  # reflection about the last row


def test_padding_an_image_smaller_than_the_pad_replicates():
    x = torch.rand(1, 3, 16, 17)
    padded = pad_to_multiple(x, 16, 64)  # 47 extra columns: more than reflection can supply
    assert padded.shape[-2:] == (16, 64)
    assert torch.equal(padded[..., -1], x[..., -1])


def test_model_sees_padded_input_and_returns_cropped_clamped_output_and_maps():
    model = Shrinker().eval()
    image, maps = model(torch.rand(1, 3, 67, 93), return_maps=True)
    assert model.seen[-2:] == (72, 96)
    assert image.shape[-2:] == (67, 93)
    assert image.max() == 1.0  # +2 pushed everything above the range: clamped in eval
    assert maps["half"].shape[-2:] == (34, 47)
    assert torch.equal(maps["vector"], torch.arange(3.0))


def test_train_mode_returns_raw_values():
    model = Shrinker().train()
    assert model(torch.rand(1, 3, 32, 32)).max() > 1.0
