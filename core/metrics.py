"""Image quality metrics on arrays; they know nothing of models.

Every metric takes H x W x 3 float arrays in [0, data_range] (data_range 1 unless a function says otherwise) and
raises ValueError with a message a user understands when an input does not fit.

- ``psnr``, ``ssim``: full reference. SSIM follows the deblurring literature's convention: computed per channel and
  averaged, with an 11-tap gaussian window of sigma 1.5 and population (not sample) covariance, via scikit-image
  (Wang et al. 2004; MATLAB's 3-D SSIM on RGB is wrong).
- ``lpips_score``: full reference, LPIPS v0.1 with its AlexNet trunk (Zhang et al. 2018) through the ``lpips``
  package. The trunk needs torchvision's ImageNet AlexNet weights, which torch hub downloads once into its cache;
  where they cannot be had (offline), ``lpips_score`` raises ``MetricUnavailable``: a score from random weights is
  never returned. ``lpips_available`` says which case holds; the attempt is made once per process, on first use.
- ``niqe``: no reference, NIQE (Mittal, Soundararajan, Bovik, "Making a 'Completely Blind' Image Quality
  Analyzer", IEEE SPL 2013), written here after the authors' MATLAB release, with the pristine model vendored in
  ``core/data`` (see its ATTRIBUTION.md). Lower is better.
- ``reblur_score``: no reference, the reblurring paper's Sec. 3 clue (Nah et al., "Clean Images are Hard to
  Reblur"): how much a trained reblurring module M_R still changes the image. Lower is sharper.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import math
import re
import socket
import threading
import urllib.request
import warnings
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import numpy as np
from scipy import ndimage
from scipy.special import gamma
from skimage.metrics import structural_similarity

DATA_DIR = Path(__file__).resolve().parent / "data"


class MetricUnavailable(RuntimeError):
    """A metric cannot be computed on this machine (e.g. its network weights cannot be downloaded)."""


def _check_image(image: np.ndarray, name: str = "image", data_range: float = 1.0) -> np.ndarray:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 {name}, got an array of shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.min() < 0 or array.max() > data_range:
        raise ValueError(f"{name} values must lie in [0, {data_range}], got [{array.min():.3g}, {array.max():.3g}]")
    return array


def _check_pair(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in size: {x.shape} vs {y.shape}; a reference must match its image")
    return _check_image(x, "image", data_range), _check_image(y, "reference", data_range)


def psnr(x: np.ndarray, y: np.ndarray, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels; inf for identical images."""
    x, y = _check_pair(x, y, data_range)
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def ssim(x: np.ndarray, y: np.ndarray, *, data_range: float = 1.0) -> float:
    """SSIM per channel, averaged (gaussian weights, sigma 1.5, population covariance)."""
    x, y = _check_pair(x, y, data_range)
    return float(
        structural_similarity(
            x, y, data_range=data_range, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


# LPIPS

LPIPS_MIN_SIDE = 32  # AlexNet's strided convolution and two max-pools need a few pixels to leave a feature map
_PROBE_TIMEOUT_S = 5.0


class _LoadOnce:
    """Calls ``build() -> (value, description)`` on first use, once per process, and remembers the outcome.

    A build that raises ``MetricUnavailable`` is remembered as a failure: later calls answer at once with the same
    message instead of trying (and waiting on a download) again.
    """

    def __init__(self, build: Callable[[], tuple[object, str]]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._outcome: tuple[object | None, str] | None = None

    def get(self) -> tuple[object | None, str]:
        with self._lock:
            if self._outcome is None:
                try:
                    self._outcome = self._build()
                except MetricUnavailable as error:
                    self._outcome = (None, str(error))
            return self._outcome


def _sha256_prefix_ok(path: Path, prefix: str) -> bool:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest().startswith(prefix)


def _probe_download_host(url: str) -> None:
    """Fail within seconds where the weights' host cannot be reached, instead of waiting on urllib's open timeout.

    Behind a proxy the host is reached through it, so nothing is probed: the download itself decides.
    """
    if urllib.request.getproxies().get(urlparse(url).scheme):
        return
    host = urlparse(url).hostname
    try:
        socket.create_connection((host, 443), timeout=_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise MetricUnavailable(f"cannot reach {host} ({error})") from error


def _build_lpips_alexnet() -> tuple[object, str]:
    """The lpips package's LPIPS v0.1 with its ImageNet AlexNet trunk, or MetricUnavailable saying why not."""
    try:
        import lpips
        import torch
        from torchvision.models import AlexNet_Weights
    except ImportError as error:
        raise MetricUnavailable(
            f"LPIPS unavailable: {error}; install the lpips version pinned in requirements.txt"
        ) from error
    url = AlexNet_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    expected = re.search(r"-([0-9a-f]+)\.", cached.name)
    if cached.is_file():
        # torch hub checks the hash only when it downloads; a file put there by hand is checked here, before loading.
        if expected and not _sha256_prefix_ok(cached, expected.group(1)):
            raise MetricUnavailable(
                f"LPIPS unavailable: the cached AlexNet weights {cached} fail their SHA-256 check "
                f"(expected a digest starting {expected.group(1)}); delete the file or replace it with a good copy"
            )
    else:
        try:
            _probe_download_host(url)
        except MetricUnavailable as error:
            raise MetricUnavailable(
                f"LPIPS unavailable offline: torchvision's ImageNet AlexNet weights are not in the torch hub cache "
                f"({cached}) and {error}; copy {cached.name} from {url} there to enable LPIPS"
            ) from error
    try:
        with warnings.catch_warnings():
            # lpips 0.1.4 still asks torchvision for pretrained=True, deprecated since torchvision 0.13; same weights.
            warnings.filterwarnings("ignore", message=r".*deprecated since 0\.13", category=UserWarning)
            network = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=False, verbose=False)
    except OSError as error:  # urllib's URLError included; torch hub removes its partial download itself
        raise MetricUnavailable(f"LPIPS unavailable offline: downloading {url} failed: {error}") from error
    except RuntimeError as error:  # a hash mismatch of the download, or a damaged cached file
        raise MetricUnavailable(f"LPIPS unavailable: loading the AlexNet weights failed: {error}") from error
    version = importlib.metadata.version("lpips")
    return network.eval(), f"LPIPS ready: lpips {version}, v0.1 linear layers, AlexNet ImageNet weights {cached}"


_LPIPS = _LoadOnce(_build_lpips_alexnet)


def lpips_available() -> tuple[bool, str]:
    """(True, what was loaded) where LPIPS can run, else (False, why not). Tries once per process, then remembers."""
    network, message = _LPIPS.get()
    return network is not None, message


def lpips_score(x: np.ndarray, y: np.ndarray) -> float:
    """LPIPS v0.1 (AlexNet) distance between an image and its reference, both in [0, 1]; 0 for identical images.

    Runs on the CPU in float32. Raises ``MetricUnavailable`` where the AlexNet weights cannot be loaded.
    """
    x, y = _check_pair(x, y, 1.0)
    if min(x.shape[:2]) < LPIPS_MIN_SIDE:
        raise ValueError(f"LPIPS needs images of at least {LPIPS_MIN_SIDE} x {LPIPS_MIN_SIDE} pixels, got {x.shape}")
    network, message = _LPIPS.get()
    if network is None:
        raise MetricUnavailable(message)
    import torch

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).float()

    with torch.inference_mode():
        distance = network(tensor(x), tensor(y), normalize=True)  # normalize: [0, 1] -> the [-1, 1] LPIPS expects
    return float(distance.reshape(()))


# NIQE

NIQE_BLOCK = 96  # block side at full scale (the authors' setting; their pristine model was fitted with it)
NIQE_PARAMS_FILE = DATA_DIR / "niqe_pris_params.npz"


@functools.cache
def _niqe_pristine_model() -> tuple[np.ndarray, np.ndarray]:
    """Mean (36,) and covariance (36 x 36) of the multivariate gaussian fitted to the pristine images' features."""
    if not NIQE_PARAMS_FILE.is_file():
        raise FileNotFoundError(f"NIQE pristine model not found: {NIQE_PARAMS_FILE}")
    with np.load(NIQE_PARAMS_FILE, allow_pickle=False) as params:
        return params["mu_pris_param"].reshape(-1).copy(), params["cov_pris_param"].copy()


def matlab_gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``: a sampled 2-D gaussian normalised to sum 1."""
    offsets = np.arange(size) - (size - 1) / 2
    window = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    window[window < np.finfo(float).eps * window.max()] = 0
    return window / window.sum()


def mscn_coefficients(grey: np.ndarray) -> np.ndarray:
    """Mean-subtracted, contrast-normalised coefficients (NIQE Eq. 1): (I - mu) / (sigma + 1).

    mu and sigma are the local gaussian-weighted mean and standard deviation (7 x 7, sigma 7/6) with the border
    replicated, as MATLAB's ``imfilter(..., 'replicate')``; ``grey`` is on the [0, 255] scale. The two filters run
    in single precision, the rest in double: MATLAB's documented NIQE of BasicSR's baboon test image (5.72957338,
    R2021a) is reproduced to 2e-5 that way and missed by 4e-4 with double-precision filters, whose variance
    (E[I^2] - mu^2) lacks the rounding noise that single precision leaves in flat regions.
    """
    window = matlab_gaussian_window().astype(np.float32)

    def local_mean(values: np.ndarray) -> np.ndarray:
        return ndimage.correlate(values.astype(np.float32), window, mode="nearest").astype(np.float64)

    mu = local_mean(grey)
    variance = local_mean(grey * grey) - mu * mu
    return (grey - mu) / (np.sqrt(np.abs(variance)) + 1.0)


@functools.cache
def _aggd_lookup() -> tuple[np.ndarray, np.ndarray]:
    """The authors' shape grid 0.2:0.001:10 and the moment ratio Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)) on it."""
    shapes = 0.2 + 0.001 * np.arange(9801)
    ratios = gamma(2 / shapes) ** 2 / (gamma(1 / shapes) * gamma(3 / shapes))
    return shapes, ratios


def fit_aggd(values: np.ndarray) -> tuple[float, float, float]:
    """Moment-matching fit of an asymmetric generalised gaussian: (shape alpha, left scale, right scale).

    The authors' estimator (Lasmar et al. 2009, as in their ``estimateaggdparam.m``): the shape is the grid value
    whose moment ratio is nearest the sample's, corrected for asymmetry. A symmetric GGD is the case left = right.
    NaN where the sample has no negative or no positive values (a flat block), which NIQE then leaves out.
    """
    values = np.ravel(np.asarray(values, dtype=np.float64))
    left, right = values[values < 0], values[values > 0]
    if left.size == 0 or right.size == 0:
        return math.nan, math.nan, math.nan
    sigma_left = math.sqrt(np.mean(left * left))
    sigma_right = math.sqrt(np.mean(right * right))
    gamma_hat = sigma_left / sigma_right
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values * values)
    r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    shapes, ratios = _aggd_lookup()
    alpha = float(shapes[np.argmin((ratios - r_hat_norm) ** 2)])
    to_scale = math.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, sigma_left * to_scale, sigma_right * to_scale


def _niqe_block_features(block: np.ndarray) -> list[float]:
    """18 features: AGGD fit of the MSCN block (shape, mean scale), then of its products with the 4 neighbours."""
    alpha, beta_left, beta_right = fit_aggd(block)
    features = [alpha, (beta_left + beta_right) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):  # horizontal, vertical, two diagonals (circular, per block)
        alpha, beta_left, beta_right = fit_aggd(block * np.roll(block, shift, axis=(0, 1)))
        mean = (beta_right - beta_left) * gamma(2 / alpha) / gamma(1 / alpha)
        features += [alpha, mean, beta_left, beta_right]
    return features


def _cubic(distance: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5, MATLAB ``imresize``'s 'bicubic'."""
    d = np.abs(distance)
    return np.where(
        d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1, np.where(d <= 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0.0)
    )


def imresize_half(grey: np.ndarray) -> np.ndarray:
    """MATLAB ``imresize(grey, 0.5)`` (bicubic, antialiased) on a 2-D float array with even sides.

    For the factor 1/2 MATLAB's antialiasing stretches the cubic kernel to 8 taps, 0.5 * cubic(0.5 * d) at
    d = +-0.5, +-1.5, +-2.5, +-3.5 input pixels from each output pixel's centre (they sum to 1, so MATLAB's
    normalisation changes nothing), and mirrors the border with the edge pixel repeated. This is that
    computation, rows first as MATLAB orders equal scales, so it agrees with MATLAB to floating-point rounding.
    """
    taps = 0.5 * _cubic(0.5 * (np.arange(8) - 3.5))
    for axis in (0, 1):
        size = grey.shape[axis]
        if size % 2:
            raise ValueError(f"imresize_half needs even sides, got {grey.shape}")
        pad = [(0, 0), (0, 0)]
        pad[axis] = (4, 4)
        padded = np.pad(grey, pad, mode="symmetric")
        # output pixel o is centred on input coordinate 2 o + 0.5; its taps are inputs 2 o - 3 ... 2 o + 4
        taken = [np.take(padded, np.arange(1 + k, 1 + k + size, 2), axis=axis) for k in range(8)]
        grey = sum(weight * part for weight, part in zip(taps, taken))
    return grey


def rgb_to_matlab_y(image: np.ndarray) -> np.ndarray:
    """Luma on [16, 235] as MATLAB's ``rgb2ycbcr`` gives it for the image saved as an 8-bit file and read back.

    RGB is quantised to 8 bits, Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, rounded half away from zero.
    """
    rgb8 = np.floor(image * 255.0 + 0.5)
    return np.floor(16.0 + rgb8 @ np.array([65.481, 128.553, 24.966]) / 255.0 + 0.5)


def niqe(image: np.ndarray, *, crop_border: int = 0) -> float:
    """NIQE of an H x W x 3 image in [0, 1]; lower is better (more natural).

    Follows the authors' MATLAB release (``computequality.m``) with their pristine model and settings: the Y
    channel on [0, 255] (``rgb_to_matlab_y``; the BasicSR convention, where the release itself uses
    ``rgb2gray``), cropped to whole 96 x 96 blocks, features at two scales (the second after ``imresize_half``,
    with 48 x 48 blocks), 36 features per block from ``mscn_coefficients`` and ``fit_aggd``, then the distance
    sqrt((mu_p - mu) ((S_p + S) / 2)^+ (mu_p - mu)^T) between the pristine gaussian (mu_p, S_p) and the one
    fitted to the image's blocks (mean ignoring NaN, covariance over the blocks without NaN, as MATLAB's
    ``nanmean`` / ``nancov``). ``crop_border`` pixels are dropped from each edge first.
    """
    image = _check_image(image)
    if not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    if crop_border:
        image = image[crop_border:-crop_border, crop_border:-crop_border]
    rows, cols = image.shape[0] // NIQE_BLOCK, image.shape[1] // NIQE_BLOCK
    if rows == 0 or cols == 0:
        raise ValueError(
            f"NIQE needs at least {NIQE_BLOCK} x {NIQE_BLOCK} pixels (after cropping {crop_border} border pixels), "
            f"got {image.shape[0]} x {image.shape[1]}"
        )
    grey = rgb_to_matlab_y(image)[: rows * NIQE_BLOCK, : cols * NIQE_BLOCK]

    per_scale = []
    for scale in (1, 2):
        mscn = mscn_coefficients(grey)
        side = NIQE_BLOCK // scale
        per_scale.append(
            [
                _niqe_block_features(mscn[r * side : (r + 1) * side, c * side : (c + 1) * side])
                for r in range(rows)
                for c in range(cols)
            ]
        )
        if scale == 1:
            grey = imresize_half(grey)
    features = np.concatenate([np.array(f) for f in per_scale], axis=1)  # blocks x 36

    complete = features[~np.isnan(features).any(axis=1)]
    if complete.shape[0] == 0:
        raise ValueError("NIQE is undefined for this image: every block is flat (no contrast to fit)")
    mu = np.nanmean(features, axis=0)
    # MATLAB's cov normalises by N - 1, or by N for a single observation (a zero matrix)
    cov = np.cov(complete, rowvar=False, ddof=1 if complete.shape[0] > 1 else 0)
    mu_pristine, cov_pristine = _niqe_pristine_model()
    difference = mu_pristine - mu
    pooled = (cov_pristine + cov) / 2
    inverse = np.linalg.pinv(pooled, rtol=max(pooled.shape) * np.finfo(float).eps)  # MATLAB pinv's tolerance
    return float(math.sqrt(difference @ inverse @ difference))


# Reblurring


def reblur_score(image: np.ndarray, model) -> float:
    """How much the reblurring module M_R still amplifies blur in ``image``: mean |M_R(x) - x| on the [0, 1] scale.

    The reblurring paper's Sec. 3 clue as a no-reference sharpness score: M_R is trained to amplify the blur left
    in a deblurred image and to leave a sharp one unaltered, so x is treated as a deblurred output and a lower
    score means sharper (0: nothing left to reblur). Only meaningful with a *trained* M_R (the weights shipped with
    a Reblur checkpoint); with untrained weights it measures nothing but the initialisation. Scores from
    different M_R weights are not comparable: report which model (and checkpoint) produced a score.

    ``model`` is a Reblur instance (anything with the module at ``.reblur``); M_R is stride-free, so the image is
    not padded. It runs under ``torch.inference_mode`` on the model's device and dtype, and the model's mode
    (train / eval) is left as it is.
    """
    import torch

    x = _check_image(image)
    reblur = getattr(model, "reblur", None)
    if not isinstance(reblur, torch.nn.Module):
        raise TypeError(f"reblur_score needs a Reblur model with its M_R at .reblur, got {type(model).__name__}")
    parameter = next(reblur.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    with torch.inference_mode():
        tensor = torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0).to(device=device, dtype=dtype)
        residual = reblur(tensor) - tensor
        return float(residual.abs().double().mean())
