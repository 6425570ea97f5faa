"""Making blurry images from sharp ones: camera-shake kernels, convolution, and GoPro frame averaging.

- ``trajectory_kernel``: a random camera-shake point-spread function, drawn the way Boracchi and Foi,
  "Modeling the Performance of Image Restoration From Motion Blur" (IEEE TIP 2012) draw theirs: a
  continuous random trajectory sampled in time and rasterised with sub-pixel accuracy. The trajectory
  model here is this project's own: a heading that turns with inertia (an autoregressive turning rate),
  a pull back towards the start (a hand holding a camera oscillates about where it aims), rare sharp
  turns (the jerks of a real shake), and a varying speed, so that the kernel is brighter where the
  camera lingered. All its parameters are drawn from the seed.
- ``blur_image`` / ``blur_tensor``: a true convolution (the kernel flipped, not a correlation) with
  reflect-padded borders, same size out as in.
- ``gopro_blur``: Nah, Kim and Lee, "Deep Multi-scale Convolutional Neural Network for Dynamic Scene
  Deblurring" (CVPR 2017): consecutive high-frame-rate frames are averaged in linearised intensity
  (each raised to the power gamma), and the average is raised back to 1/gamma.
- ``moving_camera_blur``: GoPro's synthesis applied to a still photo: the frames a camera would have recorded
  while it moved (``CameraMotion``: a shift along a curved path, a roll about a point and a zoom) are
  rendered from the photo and averaged as ``gopro_blur`` averages real frames. This project's own; unlike a
  kernel, the blur varies across the image (roll and zoom) and is averaged in linear intensity, as real blur is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

PATH_STEPS = 400  # time samples of a camera path before it is densified for rasterisation
SPLAT_SPACING = 0.2  # the densified path moves at most this many pixels between two samples


def _camera_path(rng: np.random.Generator) -> np.ndarray:
    """A random 2-D camera path as complex positions (x + iy), one per equal time step, in arbitrary units."""
    inertia = rng.uniform(0.85, 0.98)  # how long a turning rate persists
    wobble = rng.uniform(0.001, 0.008)  # turning-rate innovation, radians per step
    pull = rng.uniform(0.0, 0.3) / PATH_STEPS  # steering back towards the start, radians per step and unit distance
    turn_probability = rng.uniform(0.0, 3.0) / PATH_STEPS  # up to about three sharp turns per exposure
    speed_spread = rng.uniform(0.0, 0.25)  # log-speed innovation; zero means constant speed
    heading = rng.uniform(0.0, 2.0 * math.pi)

    turn_noise = rng.standard_normal(PATH_STEPS)
    speed_noise = rng.standard_normal(PATH_STEPS)
    turns = rng.random(PATH_STEPS) < turn_probability
    turn_angles = rng.choice([-1.0, 1.0], PATH_STEPS) * rng.uniform(0.5 * math.pi, math.pi, PATH_STEPS)

    position = 0j
    turning_rate = 0.0
    log_speed = 0.0
    path = np.empty(PATH_STEPS + 1, dtype=np.complex128)
    path[0] = position
    for step in range(PATH_STEPS):
        turning_rate = inertia * turning_rate + wobble * turn_noise[step]
        heading += turning_rate
        if position != 0:
            heading += pull * abs(position) * math.sin(math.atan2(-position.imag, -position.real) - heading)
        if turns[step]:
            heading += turn_angles[step]
        log_speed = 0.95 * log_speed + speed_spread * speed_noise[step]
        position += math.exp(log_speed) * complex(math.cos(heading), math.sin(heading))
        path[step + 1] = position
    return path


def _diameter(points: np.ndarray) -> float:
    """The largest distance between two of the points."""
    return float(np.abs(points[:, None] - points[None, :]).max())


def _densify(path: np.ndarray, spacing: float) -> np.ndarray:
    """The path resampled uniformly in time, finely enough that no two neighbours are further apart than spacing."""
    largest_step = float(np.abs(np.diff(path)).max(initial=0.0))
    factor = max(1, math.ceil(largest_step / spacing))
    times = np.linspace(0.0, len(path) - 1, (len(path) - 1) * factor + 1)
    samples = np.arange(len(path))
    return np.interp(times, samples, path.real) + 1j * np.interp(times, samples, path.imag)


def _splat(points: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splatting of equally weighted points (x + iy, pixel units) onto a size x size grid.

    Bilinear weights keep the first moment: the grid's centre of mass is the points' centre of mass.
    """
    x, y = points.real, points.imag
    x0 = np.clip(np.floor(x), 0, size - 2).astype(np.int64)
    y0 = np.clip(np.floor(y), 0, size - 2).astype(np.int64)
    fx, fy = x - x0, y - y0
    grid = np.zeros(size * size)
    for dy, dx, weight in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        grid += np.bincount((y0 + dy) * size + (x0 + dx), weights=weight, minlength=size * size)
    return grid.reshape(size, size)


def trajectory_kernel(size: int = 31, *, length: float | None = None, seed: int) -> np.ndarray:
    """A random camera-shake blur kernel: size x size float32, non-negative, summing to 1.

    ``length`` is the trajectory's extent in pixels, the largest distance between two of its points
    (default: drawn from the seed, between 0.2 and 0.7 of ``size - 1``). The kernel's centre of mass
    is its central pixel, so blurring with it does not shift the image. A lopsided path whose far end
    would leave the support is shrunk about its centre of mass until it fits, so its extent can come
    out below ``length``. The same seed gives the same kernel; the same seed with another ``length``
    gives the same path, rescaled.
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be an odd integer >= 3, got {size}")
    rng = np.random.default_rng(seed)
    drawn_length = rng.uniform(0.2, 0.7) * (size - 1)
    if length is None:
        length = drawn_length
    elif not 0 <= length <= size - 1:
        raise ValueError(f"length must be between 0 and size - 1 = {size - 1} pixels, got {length}")

    path = _camera_path(rng)
    path = path - path.mean()
    extent = _diameter(path)
    points = _densify(path * (length / extent), SPLAT_SPACING) if extent > 0 else path * 0
    points = points - points.mean()
    reach = float(np.maximum(np.abs(points.real), np.abs(points.imag)).max())
    half = (size - 1) / 2
    if reach > half:
        points = points * (half / reach)
    kernel = _splat(points + complex(half, half), size)
    return (kernel / kernel.sum()).astype(np.float32)


def _reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflect padding by ``pad`` on all four sides, repeating the reflection when ``pad`` exceeds the image."""
    while pad > 0:
        height, width = x.shape[-2:]
        if min(height, width) == 1:
            return F.pad(x, (pad, pad, pad, pad), mode="replicate")
        step = min(pad, height - 1, width - 1)
        x = F.pad(x, (step, step, step, step), mode="reflect")
        pad -= step
    return x


def _check_kernel(kernel: np.ndarray | torch.Tensor) -> None:
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"expected an odd square k x k kernel, got shape {tuple(kernel.shape)}")


def blur_tensor(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """N x C x H x W convolved with a k x k kernel per channel: true convolution, reflect borders, same size."""
    if x.ndim != 4:
        raise ValueError(f"expected an N x C x H x W batch, got shape {tuple(x.shape)}")
    _check_kernel(kernel)
    channels, size = x.shape[1], kernel.shape[0]
    weight = kernel.flip(0, 1).to(dtype=x.dtype, device=x.device).expand(channels, 1, size, size)
    return F.conv2d(_reflect_pad(x, size // 2), weight, groups=channels)


def blur_image(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """H x W x 3 image (float in [0, 1], or uint8) convolved with the kernel per channel; H x W x 3 float32."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got an array of shape {array.shape}")
    _check_kernel(np.asarray(kernel))
    if array.dtype == np.uint8:
        array = array / np.float32(255)
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)
    with torch.no_grad():
        y = blur_tensor(x, torch.from_numpy(np.asarray(kernel, dtype=np.float32)))
    return y.squeeze(0).permute(1, 2, 0).numpy().copy()


def gopro_blur(frames: Sequence[np.ndarray], gamma: float = 2.2) -> tuple[np.ndarray, np.ndarray]:
    """GoPro synthesis of one blurry image from consecutive sharp frames; returns (blurry, sharp) float32.

    Frames are H x W x 3, uint8 or float in [0, 1]. The blurry image is mean(frame ** gamma) ** (1 / gamma).
    The sharp target is ``frames[len(frames) // 2]``: the middle frame, and for an even count the later
    of the two middle ones, which is the frame the GoPro dataset pairs with its even-count averages
    (measured on its GOPR0477_11_00 pairs, see tests/test_data.py).
    """
    if len(frames) == 0:
        raise ValueError("gopro_blur needs at least one frame")
    shape = np.shape(frames[0])
    if len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"expected H x W x 3 RGB frames, got shape {shape}")
    linear_sum = np.zeros(shape, dtype=np.float64)
    lookup = (np.arange(256) / 255.0) ** gamma
    for frame in frames:
        frame = np.asarray(frame)
        if frame.shape != shape:
            raise ValueError(f"all frames must have the same shape, got {shape} and {frame.shape}")
        if frame.dtype == np.uint8:
            linear_sum += lookup[frame]
        elif np.issubdtype(frame.dtype, np.floating):
            linear_sum += np.clip(frame, 0.0, 1.0) ** gamma
        else:
            raise ValueError(f"frames must be uint8 or float in [0, 1], got dtype {frame.dtype}")
    blurry = (linear_sum / len(frames)) ** (1.0 / gamma)
    sharp = np.asarray(frames[len(frames) // 2])
    sharp = sharp / np.float32(255) if sharp.dtype == np.uint8 else sharp
    return blurry.astype(np.float32), np.asarray(sharp, dtype=np.float32)


@dataclass(frozen=True)
class CameraMotion:
    """A camera's motion over one exposure, as where each pixel of a frame comes from in the mid-exposure one.

    At time t in [-1/2, 1/2] (0: mid-exposure, the sharp frame) the pixel at q, in pixels from ``centre``,
    shows what the sharp frame shows at ``centre + exp(zoom t) R(roll t) q + shift t + curve t^2``: ``shift``
    (x, y) is the path's chord in pixels over the exposure, ``curve`` (x, y) bends it, ``roll`` is the rotation
    over the exposure in radians and ``zoom`` the log of the scale change; ``centre`` (x, y) is where roll and
    zoom pivot, in pixels of the image the motion is applied to (it may lie outside it).
    """

    shift: tuple[float, float]
    curve: tuple[float, float] = (0.0, 0.0)
    roll: float = 0.0
    zoom: float = 0.0
    centre: tuple[float, float] = (0.0, 0.0)

    def sources(self, x: torch.Tensor, y: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where pixels (x, y) (any shape) of the frame at each time come from: two T x shape tensors."""
        t = times.reshape(-1, *([1] * x.dim()))
        scale, angle = torch.exp(self.zoom * t), self.roll * t
        cos, sin = torch.cos(angle), torch.sin(angle)
        dx, dy = x - self.centre[0], y - self.centre[1]
        source_x = self.centre[0] + scale * (cos * dx - sin * dy) + self.shift[0] * t + self.curve[0] * t * t
        source_y = self.centre[1] + scale * (sin * dx + cos * dy) + self.shift[1] * t + self.curve[1] * t * t
        return source_x, source_y

    def reach(self, height: int, width: int) -> float:
        """The furthest any pixel of a height x width image moves during the exposure, in pixels."""
        corners_x = torch.tensor([0.0, width - 1.0, 0.0, width - 1.0], dtype=torch.float64)
        corners_y = torch.tensor([0.0, 0.0, height - 1.0, height - 1.0], dtype=torch.float64)
        times = torch.linspace(-0.5, 0.5, 65, dtype=torch.float64)
        source_x, source_y = self.sources(corners_x, corners_y, times)
        return float(torch.hypot(source_x - corners_x, source_y - corners_y).max())


def moving_camera_blur(
    image: np.ndarray, motion: CameraMotion, frames: int, margin: int, gamma: float = 2.2
) -> tuple[np.ndarray, np.ndarray]:
    """The GoPro synthesis of a photo seen by a moving camera; returns (blurry, sharp) float32.

    ``image``: H x W x 3, uint8 or float in [0, 1]. ``frames`` (odd) frames at equally spaced times across the
    exposure are rendered from its linearised intensity (bilinear; reflected beyond its borders) and averaged,
    then raised back to 1/gamma; the middle frame is the image itself, the sharp target. Both come back
    without ``margin`` pixels on each side, the room the motion draws from; ``motion``'s ``centre`` is in the
    coordinates of the cropped result. A margin of at least ``motion.reach`` of the result keeps every sample
    inside the photo.
    """
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got an array of shape {array.shape}")
    if frames < 1 or frames % 2 == 0:
        raise ValueError(f"frames must be an odd number >= 1 (the middle one is the sharp frame), got {frames}")
    height, width = array.shape[0] - 2 * margin, array.shape[1] - 2 * margin
    if margin < 0 or height < 1 or width < 1:
        raise ValueError(f"a margin of {margin} leaves nothing of a {array.shape[0]} x {array.shape[1]} image")
    array = array / np.float32(255) if array.dtype == np.uint8 else np.clip(array.astype(np.float32), 0.0, 1.0)
    sharp = array[margin : margin + height, margin : margin + width]
    if frames == 1:
        return sharp.copy(), sharp.copy()
    linear = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0) ** gamma
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                          indexing="ij")
    source_x, source_y = motion.sources(x, y, torch.linspace(-0.5, 0.5, frames))
    full_height, full_width = linear.shape[-2:]
    grid = torch.stack([(2 * (source_x + margin) + 1) / full_width - 1,
                        (2 * (source_y + margin) + 1) / full_height - 1], dim=-1)
    with torch.no_grad():
        rendered = F.grid_sample(linear.expand(frames, -1, -1, -1), grid, mode="bilinear",
                                 padding_mode="reflection", align_corners=False)
    blurry = rendered.mean(0).clamp(0.0, 1.0) ** (1.0 / gamma)
    return blurry.permute(1, 2, 0).numpy().astype(np.float32), sharp.copy()
