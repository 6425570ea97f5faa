"""Blur diagnostics: the blur kernel that relates two images, and classical non-blind deconvolution.

- ``estimate_kernel``: the kernel k with ``blurry = k * sharp`` (a true convolution, the convention of
  ``core.blur.blur_image``), globally or in a window around a pixel, by regularised least squares in the
  Fourier domain. Both images are differentiated first (horizontal and vertical differences), because
  the blur relation holds for gradients too (d(k * s) = k * ds), and gradient images are near zero in
  flat regions, which leaves far less boundary energy to wrap around the FFT than the images themselves.
  The gradients are then tapered to zero at the window's border (a Tukey window), zero-padded by the
  kernel size so the circular convolution is a linear one, and solved for

      K = sum_c conj(S_c) B_c / (sum_c |S_c|^2 + reg * mean(sum_c |S_c|^2)),

  summing over both gradient directions and all colour channels (one kernel for all of them). ``reg`` is
  relative to the mean spectral power of the sharp gradients, so the same value serves any image size,
  intensity scale or window. The result is cropped to ``size x size`` around zero displacement, its
  negative values are clipped and it is normalised to sum to 1.
- ``remaining_blur_kernel``: Reblur's Figure 1, the kernel that takes a deblurred output L to its
  reblurred image M_R(L) (the paper cites Cho and Lee's kernel estimation; any least-squares estimate
  between L and M_R(L) shows the same thing, which is what the architecture notes describe).
  ``removed_blur_kernel``: the kernel that takes L to the blurry input B, i.e. the blur the network undid.
- ``richardson_lucy`` and ``wiener``: scikit-image's non-blind deconvolutions per channel, for context when
  a kernel is known. The image is reflect-padded by the kernel size first, since both assume zero or
  periodic borders, and cropped back; results are clipped to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal.windows import tukey
from skimage import restoration

TAPER_FRACTION = 0.5  # share of each window side that the Tukey taper rolls off (half at each end)


def _as_image(image, name: str) -> np.ndarray:
    """H x W or H x W x C array, or a 1 x C x H x W / C x H x W tensor -> float64 H x W x C."""
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.dim() == 4:
            if tensor.shape[0] != 1:
                raise ValueError(f"{name}: expected a single image, got a batch of {tensor.shape[0]}")
            tensor = tensor[0]
        if tensor.dim() != 3:
            raise ValueError(f"{name}: expected a C x H x W tensor, got shape {tuple(image.shape)}")
        array = tensor.permute(1, 2, 0).double().numpy()
    else:
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array / 255.0
        array = array.astype(np.float64)
        if array.ndim == 2:
            array = array[..., None]
    if array.ndim != 3:
        raise ValueError(f"{name}: expected an H x W or H x W x C image, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_size(size: int) -> None:
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd integer >= 3, got {size}")


def _window(height: int, width: int, center, window: int) -> tuple[slice, slice]:
    """A window x window region around center, shifted to lie inside the image where it would overhang."""
    y, x = center
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(f"center {center} lies outside the {width}x{height} image")
    top = min(max(y - window // 2, 0), max(height - window, 0))
    left = min(max(x - window // 2, 0), max(width - window, 0))
    return slice(top, top + window), slice(left, left + window)


def estimate_kernel(sharp, blurry, *, center=None, window=None, size: int = 31, reg: float = 1e-2) -> np.ndarray:
    """The size x size kernel k with blurry ~= k * sharp (true convolution); float32, non-negative, sums to 1.

    ``sharp`` and ``blurry`` are H x W or H x W x C images of the same shape (uint8, or floats on one
    scale). With ``center=(y, x)`` only a ``window`` x ``window`` region around that pixel is used
    (default 4 * size), which is how a spatially varying blur is probed; with ``center=None`` the whole
    image is. ``reg`` is the Wiener regulariser relative to the mean power of the sharp gradients.
    The kernel's centre pixel is zero displacement, as in ``core.blur.trajectory_kernel``.
    """
    _check_size(size)
    if reg <= 0:
        raise ValueError(f"reg must be positive, got {reg}")
    sharp = _as_image(sharp, "sharp")
    blurry = _as_image(blurry, "blurry")
    if sharp.shape != blurry.shape:
        raise ValueError(f"sharp and blurry differ in shape: {sharp.shape} and {blurry.shape}")
    if center is not None:
        window = 4 * size if window is None else int(window)
        rows, cols = _window(sharp.shape[0], sharp.shape[1], center, window)
        sharp, blurry = sharp[rows, cols], blurry[rows, cols]
    elif window is not None:
        raise ValueError("window needs a center; leave both out for a global estimate")
    height, width = sharp.shape[0] - 1, sharp.shape[1] - 1
    if min(height, width) < size:
        raise ValueError(f"the region is {width + 1}x{height + 1}, too small for a {size}x{size} kernel")

    taper = np.outer(tukey(height, TAPER_FRACTION), tukey(width, TAPER_FRACTION))[..., None]
    fft_shape = (height + size, width + size)
    correlation = np.zeros((fft_shape[0], fft_shape[1] // 2 + 1), dtype=np.complex128)
    power = np.zeros(correlation.shape)
    for axis in (0, 1):
        # Differences along one axis, cropped by one pixel along the other so both directions share a grid.
        sharp_grad = np.diff(sharp, axis=axis)[:height, :width] * taper
        blurry_grad = np.diff(blurry, axis=axis)[:height, :width] * taper
        sharp_spectrum = np.fft.rfft2(sharp_grad, fft_shape, axes=(0, 1))
        blurry_spectrum = np.fft.rfft2(blurry_grad, fft_shape, axes=(0, 1))
        correlation += (np.conj(sharp_spectrum) * blurry_spectrum).sum(axis=-1)
        power += (np.abs(sharp_spectrum) ** 2).sum(axis=-1)
    if power.mean() == 0:
        raise ValueError("the sharp image is flat in this region: it carries no information about the blur")

    kernel = np.fft.irfft2(correlation / (power + reg * power.mean()), fft_shape)
    radius = size // 2
    kernel = np.roll(kernel, (radius, radius), axis=(0, 1))[:size, :size]
    kernel = np.clip(kernel, 0.0, None)
    total = kernel.sum()
    if total <= 0:
        raise ValueError("no positive kernel relates these images (are they unrelated?)")
    return (kernel / total).astype(np.float32)


def remaining_blur_kernel(output, reblurred, center=None, size: int = 31, *, window=None, reg: float = 1e-2):
    """Reblur's Figure 1: the kernel that takes the deblurred ``output`` L to its reblurred M_R(L).

    A point-like kernel means M_R finds no blur left to amplify; a streak points along the blur that the
    deblurring left behind.
    """
    return estimate_kernel(output, reblurred, center=center, window=window, size=size, reg=reg)


def removed_blur_kernel(output, blurry, center=None, size: int = 31, *, window=None, reg: float = 1e-2):
    """The kernel that takes the deblurred ``output`` back to the ``blurry`` input: the blur that was removed."""
    return estimate_kernel(output, blurry, center=center, window=window, size=size, reg=reg)


def _deconvolve_channels(blurry, kernel, deconvolve) -> np.ndarray:
    image = np.asarray(blurry)
    if image.dtype == np.uint8:
        image = image / 255.0
    image = image.astype(np.float64)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    psf = np.asarray(kernel, dtype=np.float64)
    _check_size(psf.shape[0])
    if psf.ndim != 2 or psf.shape[0] != psf.shape[1]:
        raise ValueError(f"expected a square kernel, got shape {psf.shape}")
    if (psf < 0).any() or not np.isclose(psf.sum(), 1.0, atol=1e-3):
        raise ValueError("the kernel must be non-negative and sum to 1")
    pad = psf.shape[0]
    channels = image[..., None] if image.ndim == 2 else image
    restored = np.empty_like(channels)
    for c in range(channels.shape[-1]):
        padded = np.pad(channels[..., c], pad, mode="reflect")
        restored[..., c] = deconvolve(padded, psf)[pad:-pad, pad:-pad]
    restored = np.clip(restored, 0.0, 1.0)
    return (restored[..., 0] if image.ndim == 2 else restored).astype(np.float32)


def richardson_lucy(blurry, kernel, iterations: int = 30) -> np.ndarray:
    """Richardson-Lucy deconvolution (skimage) of an H x W (x C) image in [0, 1], per channel, clipped."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    return _deconvolve_channels(
        blurry, kernel, lambda channel, psf: restoration.richardson_lucy(channel, psf, num_iter=iterations)
    )


def wiener(blurry, kernel, balance: float = 1e-2) -> np.ndarray:
    """Wiener-Hunt deconvolution (skimage, Laplacian regulariser weighted by ``balance``), per channel, clipped."""
    if balance <= 0:
        raise ValueError(f"balance must be positive, got {balance}")
    return _deconvolve_channels(blurry, kernel, lambda channel, psf: restoration.wiener(channel, psf, balance))
