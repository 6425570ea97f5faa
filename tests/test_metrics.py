"""Metrics (core/metrics.py) against known values and independent computations written here.

NIQE is checked step by step (gaussian window, MSCN, AGGD fit, MATLAB's half-scale imresize) against code in this
file, end to end against MATLAB's documented value for the baboon test image, and on the GoPro dev pairs (every
sharp frame must score better than its blurry partner). LPIPS is checked offline: the network is blocked, so the
tests never download and behave the same on a machine with internet.
"""

from __future__ import annotations

import math
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter

from core import metrics
from core.metrics import MetricUnavailable, fit_aggd, imresize_half, lpips_available, lpips_score, mscn_coefficients
from core.metrics import niqe, psnr, reblur_score, ssim
from core.models.reblur import Reblur

GOPRO_DEV = SHARED_DATA / "gopro_dev"
BABOON = SHARED_DATA / "sharp" / "Set14" / "baboon.png"
MATLAB_BABOON_NIQE = 5.72957338  # MATLAB R2021a, Y channel, border 0 (BasicSR 1.4.2's calculate_niqe docstring)


def textured(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A deterministic natural-ish test image in [0, 1]: smoothed noise at two scales plus fine noise."""
    rng = np.random.default_rng(seed)
    coarse = gaussian_filter(rng.random((height, width, 3)), sigma=(6, 6, 0))
    fine = gaussian_filter(rng.random((height, width, 3)), sigma=(1, 1, 0))
    image = 0.5 + 3.0 * (coarse - coarse.mean()) + 1.5 * (fine - fine.mean())
    return np.clip(image, 0.0, 1.0)


def read_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


# PSNR and SSIM


def test_identical_images_give_psnr_inf_and_ssim_one():
    image = textured(48, 64)
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("offset", [0.1, 0.02])
def test_psnr_of_a_constant_offset_is_the_formula(offset):
    image = 0.2 + 0.6 * textured(40, 56)  # in [0.2, 0.8]: the offset never clips
    assert psnr(image, image + offset) == pytest.approx(10 * math.log10(1.0 / offset**2), abs=1e-9)
    assert psnr(255 * image, 255 * (image + offset), data_range=255.0) == pytest.approx(-20 * math.log10(offset))


def ssim_by_hand(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """Wang et al. 2004 per channel: gaussian sigma 1.5 truncated at 3.5 sigma (11 taps), population moments,
    the 5-pixel border a valid 11 x 11 window cannot reach left out, channels averaged."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(z):
        return gaussian_filter(z, sigma=1.5, truncate=3.5)

    scores = []
    for channel in range(3):
        a, b = x[..., channel], y[..., channel]
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        scores.append(ssim_map[5:-5, 5:-5].mean())
    return float(np.mean(scores))


def test_ssim_agrees_with_an_independent_computation():
    x = textured(64, 80, seed=1)
    noise = 0.02 * np.random.default_rng(2).standard_normal(x.shape)
    y = np.clip(gaussian_filter(x, sigma=(1.2, 1.2, 0)) + noise, 0, 1)
    expected = ssim_by_hand(x, y)
    assert 0.3 < expected < 0.95  # a fixture that actually differs
    assert ssim(x, y) == pytest.approx(expected, abs=1e-6)


# Input validation


def tiny_reblur() -> Reblur:
    return Reblur(deblur_widths=(4, 4, 4), deblur_resblocks=1, reblur_channels=4, reblur_resblocks=1).eval()


PAIR_METRICS = {"psnr": psnr, "ssim": ssim, "lpips_score": lpips_score}
SINGLE_METRICS = {"niqe": niqe, "reblur_score": lambda image: reblur_score(image, tiny_reblur())}


@pytest.mark.parametrize("name", PAIR_METRICS)
def test_pair_metrics_reject_mismatched_shapes_and_ranges(name):
    metric = PAIR_METRICS[name]
    image = textured(64, 64)
    with pytest.raises(ValueError, match="differ in size"):
        metric(image, image[:, :60])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1"):
        metric(image, image + 0.5)
    with pytest.raises(ValueError, match="NaN"):
        metric(image, np.where(image > 0.5, np.nan, image))
    with pytest.raises(ValueError, match="H x W x 3"):
        metric(image[..., 0], image[..., 0])


@pytest.mark.parametrize("name", SINGLE_METRICS)
def test_single_image_metrics_reject_bad_images(name):
    metric = SINGLE_METRICS[name]
    image = textured(96, 96)
    with pytest.raises(ValueError, match="H x W x 3"):
        metric(image[..., :2])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1"):
        metric(image * 2.0)
    with pytest.raises(ValueError, match="infinite"):
        metric(np.where(image > 0.5, np.inf, image))


def test_niqe_rejects_what_it_cannot_measure():
    with pytest.raises(ValueError, match="at least 96 x 96"):
        niqe(textured(95, 200))
    with pytest.raises(ValueError, match="at least 96 x 96"):
        niqe(textured(100, 100), crop_border=4)
    with pytest.raises(ValueError, match="flat"):
        niqe(np.full((96, 192, 3), 0.5))
    with pytest.raises(ValueError, match="crop_border"):
        niqe(textured(96, 96), crop_border=-1)


# NIQE, step by step


def test_gaussian_window_is_the_one_shipped_with_the_pristine_model():
    with np.load(metrics.NIQE_PARAMS_FILE, allow_pickle=False) as params:
        shipped = params["gaussian_window"]
    np.testing.assert_allclose(metrics.matlab_gaussian_window(), shipped, rtol=0, atol=1e-15)


def test_mscn_coefficients_match_an_independent_computation():
    grey = np.random.default_rng(3).integers(0, 256, size=(37, 45)).astype(np.float64)
    offsets = np.arange(-3, 4)
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * (7 / 6) ** 2))
    window /= window.sum()
    padded = np.pad(grey, 3, mode="edge")  # MATLAB imfilter 'replicate'
    mean = np.zeros_like(grey)
    mean_of_squares = np.zeros_like(grey)
    for i in range(7):
        for j in range(7):
            patch = padded[i : i + grey.shape[0], j : j + grey.shape[1]]
            mean += window[i, j] * patch
            mean_of_squares += window[i, j] * patch**2
    expected = (grey - mean) / (np.sqrt(np.abs(mean_of_squares - mean**2)) + 1)
    # the implementation filters in single precision (MATLAB's result needs it): agreement to single's rounding
    np.testing.assert_allclose(mscn_coefficients(grey), expected, rtol=0, atol=2e-4)


def sample_aggd(alpha: float, beta_left: float, beta_right: float, n: int, seed: int) -> np.ndarray:
    """Asymmetric generalised gaussian samples: |x| / beta ~ Gamma(1/alpha)^(1/alpha) on each side, the left
    side drawn with probability beta_left / (beta_left + beta_right) (the density is continuous at 0)."""
    rng = np.random.default_rng(seed)
    left = rng.random(n) < beta_left / (beta_left + beta_right)
    magnitude = rng.gamma(1 / alpha, 1.0, size=n) ** (1 / alpha)
    return np.where(left, -beta_left * magnitude, beta_right * magnitude)


@pytest.mark.parametrize("alpha, beta_left, beta_right", [(1.4, 0.5, 1.1), (2.0, math.sqrt(2), math.sqrt(2))])
def test_aggd_fit_recovers_known_parameters(alpha, beta_left, beta_right):
    fitted = fit_aggd(sample_aggd(alpha, beta_left, beta_right, n=400_000, seed=4))
    assert fitted[0] == pytest.approx(alpha, abs=0.03)
    assert fitted[1] == pytest.approx(beta_left, rel=0.02)
    assert fitted[2] == pytest.approx(beta_right, rel=0.02)


def test_aggd_fit_of_a_one_sided_sample_is_nan():
    assert all(math.isnan(value) for value in fit_aggd(np.abs(sample_aggd(1.0, 1.0, 1.0, n=100, seed=5))))


def matlab_resize_matrix(n_in: int, scale: float) -> np.ndarray:
    """MATLAB imresize's 'contributions' for bicubic with antialiasing, written out in general as a dense matrix."""

    def keys(d):
        d = np.abs(d)
        return (1.5 * d**3 - 2.5 * d**2 + 1) * (d <= 1) + (-0.5 * d**3 + 2.5 * d**2 - 4 * d + 2) * ((d > 1) & (d <= 2))

    n_out = math.ceil(n_in * scale)
    kernel_width = 4 / scale
    u = np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    indices = left[:, None] + np.arange(math.ceil(kernel_width) + 2)[None, :]
    weights = scale * keys(scale * (u[:, None] - indices))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(1, n_in + 1), np.arange(n_in, 0, -1)])
    indices = mirror[np.mod(indices - 1, mirror.size).astype(int)] - 1
    matrix = np.zeros((n_out, n_in))
    for row in range(n_out):
        np.add.at(matrix[row], indices[row], weights[row])
    return matrix


def test_imresize_half_matches_matlab_contributions():
    grey = 255 * textured(38, 52, seed=6)[..., 0]
    expected = matlab_resize_matrix(38, 0.5) @ grey @ matlab_resize_matrix(52, 0.5).T
    np.testing.assert_allclose(imresize_half(grey), expected, rtol=0, atol=1e-9)


# NIQE, end to end


@pytest.mark.skipif(not BABOON.is_file(), reason=f"shared test image absent: {BABOON}")
def test_niqe_matches_matlab_on_baboon():
    # double-precision local filters give 5.72996 (4e-4 off); MATLAB's value needs the single-precision ones
    assert niqe(read_rgb(BABOON)) == pytest.approx(MATLAB_BABOON_NIQE, abs=5e-5)


def gopro_pairs() -> list[tuple[Path, Path]]:
    return [(path, path.parent.parent / "blur" / path.name) for path in sorted(GOPRO_DEV.glob("*/sharp/*.png"))]


@pytest.mark.skipif(not gopro_pairs(), reason=f"shared GoPro dev pairs absent: {GOPRO_DEV}")
def test_niqe_ranks_every_sharp_gopro_frame_better_than_its_blurry_partner():
    pairs = gopro_pairs()
    assert len(pairs) == 11
    for sharp_path, blurry_path in pairs:  # full 1280 x 720, nothing downscaled
        sharp, blurry = niqe(read_rgb(sharp_path)), niqe(read_rgb(blurry_path))
        assert sharp < blurry, f"{sharp_path.relative_to(GOPRO_DEV)}: sharp {sharp:.3f} vs blurry {blurry:.3f}"


def test_niqe_is_deterministic_and_leaves_its_input_alone():
    image = np.round(255 * textured(200, 300, seed=7)) / 255  # 8-bit values, as read from a file
    kept = image.copy()
    first = niqe(image)
    assert niqe(image) == first
    assert niqe(image.astype(np.float32)) == pytest.approx(first, abs=1e-6)
    np.testing.assert_array_equal(image, kept)


# LPIPS


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (every name lookup fails, as on this project's machines), an empty torch hub cache in tmp_path,
    and a fresh once-per-process loader. Yields the list of host names looked up."""
    looked_up = []

    def no_network(host, *args, **kwargs):
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (network blocked by the test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(metrics, "_LPIPS", metrics._LoadOnce(metrics._build_lpips_alexnet))
    return looked_up


def test_lpips_offline_is_unavailable_fast_tried_once_and_leaves_no_file(offline, tmp_path):
    image = textured(64, 64)
    start = time.perf_counter()
    available, message = lpips_available()
    first = time.perf_counter() - start
    assert not available
    assert "unavailable offline" in message and "alexnet-owt-7be5be79.pth" in message
    start = time.perf_counter()
    assert lpips_available() == (False, message)
    for _ in range(2):
        with pytest.raises(MetricUnavailable, match="unavailable offline"):
            lpips_score(image, image)
    repeated = time.perf_counter() - start
    assert len(offline) == 1, f"the download host was looked up {len(offline)} times; once per process is the rule"
    assert first < 15.0 and repeated < 0.1, (first, repeated)  # the first includes importing lpips and torchvision
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # nothing partial to be taken for weights later


def test_lpips_refuses_damaged_cached_weights_without_loading_them(offline, tmp_path):
    cached = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a download")
    available, message = lpips_available()
    assert not available and "SHA-256" in message and str(cached) in message
    assert offline == []  # the cached file was judged without touching the network


def test_lpips_plumbing_with_a_random_backbone(monkeypatch):
    # PLUMBING ONLY: a randomly initialised AlexNet trunk stands in for the ImageNet one that cannot be downloaded
    # here; these numbers are not LPIPS scores. lpips_score itself never builds a random trunk.
    import lpips

    builds = []

    def random_backbone():
        builds.append(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval(), "TEST PLUMBING: random AlexNet"

    monkeypatch.setattr(metrics, "_LPIPS", metrics._LoadOnce(random_backbone))
    x = textured(64, 72, seed=8)
    y = np.clip(x + 0.1 * np.random.default_rng(9).standard_normal(x.shape), 0, 1)
    assert lpips_available() == (True, "TEST PLUMBING: random AlexNet")
    assert lpips_score(x, x) == 0.0
    distance = lpips_score(x, y)
    assert distance > 0 and lpips_score(y, x) == pytest.approx(distance, rel=1e-6)
    network = metrics._LPIPS.get()[0]
    as_lpips_input = lambda image: torch.from_numpy(2 * image - 1).permute(2, 0, 1)[None].float()  # noqa: E731
    with torch.no_grad():
        expected = float(network(as_lpips_input(x), as_lpips_input(y)))  # LPIPS wants NCHW RGB in [-1, 1]
    assert distance == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="at least 32"):
        lpips_score(x[:20], x[:20])
    assert len(builds) == 1  # built once, on first use, then reused


# Reblurring


def test_reblur_score_is_zero_without_a_residual_and_grows_with_it():
    model = tiny_reblur()
    tail = model.reblur.tail
    image = textured(20, 28, seed=10)
    with torch.no_grad():
        tail.weight.zero_()
        tail.bias.zero_()
    assert reblur_score(image, model) == 0.0
    with torch.no_grad():
        tail.bias.fill_(0.01)  # M_R(x) = x + 0.01 everywhere
    assert reblur_score(image, model) == pytest.approx(0.01, rel=1e-4)
    with torch.no_grad():
        tail.bias.zero_()
        torch.nn.init.normal_(tail.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    scores = []
    for factor in (1.0, 2.0, 4.0):
        with torch.no_grad():
            scaled = tiny_reblur()
            scaled.load_state_dict(model.state_dict())
            scaled.reblur.tail.weight.mul_(factor)
        scores.append(reblur_score(image, scaled))
    assert 0 < scores[0] < scores[1] < scores[2]
    assert scores[2] == pytest.approx(4 * scores[0], rel=1e-4)  # the residual is linear in the last conv


def test_reblur_score_needs_a_reblurring_module():
    with pytest.raises(TypeError, match=r"\.reblur"):
        reblur_score(textured(16, 16), torch.nn.Identity())
