"""Blur diagnostics: kernels recovered from known synthetic blur, and the classical deconvolution baselines."""

import glob

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from core.blur import blur_image, trajectory_kernel
from core.diagnostics import estimate_kernel, removed_blur_kernel, remaining_blur_kernel, richardson_lucy, wiener

CBSD68 = sorted(glob.glob(str(SHARED_DATA / "sharp" / "CBSD68" / "*.png")))


pytestmark = pytest.mark.usefixtures("one_thread")


def rectangles(height, width, count=60, seed=0):
    """A synthetic texture with edges at every scale and orientation: random coloured rectangles on grey."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 0.5, dtype=np.float32)
    for _ in range(count):
        top, left = rng.integers(0, height), rng.integers(0, width)
        rows, cols = rng.integers(2, 16, size=2)
        image[top : top + rows, left : left + cols] = rng.random(3)
    return image


def natural_crop(height, width):
    if not CBSD68:
        pytest.skip(f"CBSD68 is not in {SHARED_DATA / 'sharp'}")
    from PIL import Image

    return np.asarray(Image.open(CBSD68[0]).convert("RGB"), dtype=np.float32)[:height, :width] / 255


def correlation(a, b):
    return np.corrcoef(np.ravel(a), np.ravel(b))[0, 1]


def psnr(a, b):
    return 10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def assert_is_kernel(kernel, size):
    assert kernel.shape == (size, size) and kernel.dtype == np.float32
    assert kernel.min() >= 0
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_global_kernel_of_a_known_blur_on_a_synthetic_texture(seed):
    sharp = rectangles(96, 96)
    kernel = trajectory_kernel(15, seed=seed)
    estimate = estimate_kernel(sharp, blur_image(sharp, kernel), size=15)
    assert_is_kernel(estimate, 15)
    assert correlation(estimate, kernel) > 0.99  # measured 0.999 to 0.9996


def test_global_kernel_of_a_known_blur_on_a_natural_image():
    sharp = natural_crop(96, 128)
    kernel = trajectory_kernel(15, seed=4)
    estimate = estimate_kernel(sharp, blur_image(sharp, kernel), size=15)
    assert_is_kernel(estimate, 15)
    assert correlation(estimate, kernel) > 0.99  # measured 0.9998


def test_local_kernels_tell_two_blurs_apart():
    """Left half blurred with one kernel, right half with another: each window finds its own."""
    sharp = natural_crop(96, 192)
    left_kernel, right_kernel = trajectory_kernel(15, seed=1), trajectory_kernel(15, seed=2)
    blurry = np.concatenate([blur_image(sharp, left_kernel)[:, :96], blur_image(sharp, right_kernel)[:, 96:]], axis=1)
    left = estimate_kernel(sharp, blurry, center=(48, 40), size=15)  # 60 x 60 window (4 x size), inside the left half
    right = estimate_kernel(sharp, blurry, center=(48, 152), size=15)
    assert_is_kernel(left, 15)
    assert_is_kernel(right, 15)
    assert correlation(left, left_kernel) > 0.9 and correlation(right, right_kernel) > 0.9  # measured 0.998, 0.999
    assert correlation(left, right_kernel) < 0.8 and correlation(right, left_kernel) < 0.8  # measured 0.66, 0.68


def test_identity_blur_gives_a_centred_peak():
    sharp = rectangles(64, 64)
    estimate = estimate_kernel(sharp, sharp, size=15)
    assert_is_kernel(estimate, 15)
    assert np.unravel_index(estimate.argmax(), estimate.shape) == (7, 7)
    assert estimate[7, 7] > 0.5  # measured 0.87: the regulariser spreads a little mass around it


def test_a_shift_moves_the_peak_the_same_way():
    """blurry(y, x) = sharp(y - 2, x + 3) is a delta at displacement (+2, -3) from the kernel's centre."""
    sharp = rectangles(80, 80)
    blurry = np.roll(sharp, (2, -3), axis=(0, 1))
    estimate = estimate_kernel(sharp, blurry, size=15)
    assert np.unravel_index(estimate.argmax(), estimate.shape) == (7 + 2, 7 - 3)


def test_wrappers_take_tensors_and_point_the_right_way():
    output = rectangles(80, 80, seed=3)
    blur_left, blur_amplified = trajectory_kernel(11, seed=6), trajectory_kernel(11, seed=7)
    blurry = torch.from_numpy(blur_image(output, blur_left)).permute(2, 0, 1).unsqueeze(0)
    reblurred = torch.from_numpy(blur_image(output, blur_amplified)).permute(2, 0, 1).unsqueeze(0)
    as_tensor = torch.from_numpy(output).permute(2, 0, 1).unsqueeze(0)
    removed = removed_blur_kernel(as_tensor, blurry, size=11)
    remaining = remaining_blur_kernel(as_tensor, reblurred, center=(40, 40), size=11)
    assert correlation(removed, blur_left) > 0.95
    assert correlation(remaining, blur_amplified) > 0.95


def test_estimate_rejects_what_it_cannot_use():
    sharp = rectangles(64, 64)
    with pytest.raises(ValueError, match="odd"):
        estimate_kernel(sharp, sharp, size=14)
    with pytest.raises(ValueError, match="shape"):
        estimate_kernel(sharp, sharp[:60], size=15)
    with pytest.raises(ValueError, match="outside"):
        estimate_kernel(sharp, sharp, center=(70, 10), size=15)
    with pytest.raises(ValueError, match="too small"):
        estimate_kernel(sharp, sharp, center=(30, 30), window=20, size=31)
    with pytest.raises(ValueError, match="flat"):
        estimate_kernel(np.zeros((64, 64)), np.zeros((64, 64)), size=15)


@pytest.mark.parametrize("restore", [richardson_lucy, wiener], ids=["richardson-lucy", "wiener"])
def test_deconvolution_with_the_true_kernel_raises_psnr(restore):
    sharp = rectangles(64, 64, seed=1)
    kernel = trajectory_kernel(15, seed=5)
    blurry = blur_image(sharp, kernel)
    restored = restore(blurry, kernel)
    assert restored.shape == sharp.shape and restored.dtype == np.float32
    assert restored.min() >= 0 and restored.max() <= 1
    # measured: blurry 16.7 dB, Richardson-Lucy 20.0 dB, Wiener 17.9 dB
    assert psnr(restored, sharp) > psnr(blurry, sharp) + 1.0


def test_deconvolution_works_per_channel_and_on_grey():
    sharp = rectangles(48, 48, seed=2)
    kernel = trajectory_kernel(9, seed=1)
    blurry = blur_image(sharp, kernel)
    grey = richardson_lucy(blurry[..., 1], kernel, iterations=10)
    colour = richardson_lucy(blurry, kernel, iterations=10)
    assert grey.shape == (48, 48)
    np.testing.assert_allclose(grey, colour[..., 1], atol=1e-6)
    with pytest.raises(ValueError, match="sum to 1"):
        wiener(blurry, kernel * 2)
