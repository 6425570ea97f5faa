"""Image quality metrics on arrays; they know nothing of models.

Full-reference metrics follow the deblurring literature's convention: images are H x W x 3 float arrays in
[0, data_range]; SSIM is computed per channel and averaged, with an 11-tap gaussian window of sigma 1.5 and
population (not sample) covariance, via scikit-image (Wang et al. 2004; MATLAB's 3-D SSIM on RGB is wrong).
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity


def _check_pair(x: np.ndarray, y: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in size: {x.shape} vs {y.shape}; a reference must match its image")
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"expected H x W x 3 images, got {x.shape}")
    for name, array in (("image", x), ("reference", y)):
        if not np.isfinite(array).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        if array.min() < 0 or array.max() > data_range:
            raise ValueError(f"{name} values must lie in [0, {data_range}], got [{array.min():.3g}, {array.max():.3g}]")
    return x, y


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
