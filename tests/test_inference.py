import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from core.inference import (
    auto_tile,
    bytes_per_pixel,
    load_model,
    restore,
    tile_apply,
    tile_starts,
    to_float_rgb,
    to_tensor,
    to_uint8,
)
from core.metrics import psnr


def photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 0.5 + 0.3 * np.sin(xx / 7.0 + rng.uniform(0, 6)) * np.cos(yy / 11.0)
    return np.clip(base[:, :, None] + rng.normal(0, 0.05, (height, width, 3)), 0, 1).astype(np.float32)


def test_conversions_cover_grey_alpha_16_bit_and_pil():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_float_rgb(grey).shape == (3, 4, 3)
    assert np.allclose(to_float_rgb(grey)[..., 1], grey / 255.0)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    assert np.array_equal(to_float_rgb(rgba)[..., 0], np.ones((2, 2)))  # alpha dropped, colour kept as stored
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert to_float_rgb(deep).max() == 1.0
    assert to_float_rgb(Image.new("L", (5, 4), 128)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_float_rgb(np.full((2, 2, 3), 2.0))
    x = to_tensor(np.full((4, 6, 3), 51, np.uint8))
    assert x.shape == (1, 3, 4, 6) and np.array_equal(to_uint8(x), np.full((4, 6, 3), 51, np.uint8))


def test_tiling_an_identity_returns_the_image():
    x = torch.rand(1, 3, 100, 130)
    torch.testing.assert_close(tile_apply(lambda t: t, x, tile=48, overlap=12), x)


def test_tiling_a_local_network_matches_the_whole_run_exactly_with_enough_overlap():
    torch.manual_seed(0)
    network = nn.Sequential(*(nn.Conv2d(3, 3, 3, padding=1) for _ in range(4))).eval()  # receptive radius 4
    x = torch.rand(1, 3, 90, 120)
    with torch.no_grad():
        whole = network(x)
        tiled = tile_apply(network, x, tile=40, overlap=15)  # 5 discarded pixels >= radius 4
    # blending only mixes tiles where each is exact: anything beyond float error is a seam
    assert (tiled - whole)[..., 8:-8, 8:-8].abs().max() < 1e-5


def test_tiled_and_untiled_reblur_agree_above_45_db():
    image = photo(160, 224)
    whole = restore(image, "reblur-n1", tile=0)
    tiled = restore(image, "reblur-n1", tile=96, overlap=24)
    assert tiled.tile == (96, 96) and whole.tile is None
    assert psnr(tiled.image / 255.0, whole.image / 255.0) > 45.0


def test_restore_keeps_size_reports_time_and_returns_maps_when_asked():
    image = (photo(37, 53) * 255).astype(np.uint8)
    result = restore(image, "lmfn", return_maps=True)
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
    assert result.seconds > 0
    assert list(result.maps) == ["ALFM attention", "ACFM attention"]


def test_weights_load_once_per_process():
    assert load_model("lmfn")[0] is load_model("lmfn")[0]


def test_tile_size_follows_the_memory_budget():
    per_pixel = bytes_per_pixel("reblur-n1")
    assert per_pixel > 3 * 64 * 4  # at least a few full-resolution 64-channel float maps per pixel
    assert auto_tile("reblur-n1", 256, 256, budget_bytes=10**10) is None
    tile_h, tile_w = auto_tile("reblur-n1", 4000, 6000, budget_bytes=200_000_000)
    assert tile_h * tile_w * per_pixel <= 200_000_000 and tile_h % 16 == 0 and tile_w % 16 == 0


def test_automatic_tiles_do_not_overhang_a_wide_image():
    tile_h, tile_w = auto_tile("fcn", 720, 1280)  # FCN needs ~7.9 kB per pixel: 1280x720 does not fit 1.5 GB
    computed = len(tile_starts(720, tile_h, 32)) * len(tile_starts(1280, tile_w, 32)) * tile_h * tile_w
    assert computed < 1.35 * 720 * 1280, (tile_h, tile_w, computed)
