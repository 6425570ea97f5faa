"""Training and validation data: real GoPro pairs, GoPro pairs made from frames, and synthetic camera shake.

Every training dataset returns ``{"blur": 3 x H x W float32 tensor in [0, 1], "sharp": the same}``. A sample
is a function of ``(seed, epoch, index)`` alone: its random crop, flips, frame window, kernel and noise are
drawn from a generator seeded with those three numbers, so it is reproducible and does not depend on how
many DataLoader workers there are or which one draws it. Call ``set_epoch`` before iterating a DataLoader
for the epoch (workers copy the dataset when iteration starts; with ``persistent_workers=True`` they keep
the copy they made first, so leave it off).

File lists are built once, at construction, by sorted globs; images are decoded per sample with PIL.

GoPro pair names: the pairs in GOPRO_Large-style folders made for this project are named
``<start>_avg<N>.png``. Measured against the frames of GOPR0477_11_00 (tests/test_data.py), such a pair
averages the frame files numbered ``start + 1 .. start + N`` (``<start>`` counts from 0, the frame files
from 1), and its sharp image is frame ``start + 1 + N // 2``: the later middle frame, N being even there.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from core.blur import CameraMotion, blur_image, gopro_blur, moving_camera_blur, trajectory_kernel

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
PAIR_NAME = re.compile(r"(\d+)_avg(\d+)")
VIDEO_DIFFERENCE = 0.08  # mean absolute difference of neighbouring thumbnails below which frames are a video
HELD_OUT_MARGIN = 6  # frames kept free on each side of a validation pair's frames: half the longest window


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file decoded by PIL as H x W x 3 uint8 RGB."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def image_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """The image files in a folder (and its sub-folders when ``recursive``), sorted."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(path for path in candidates if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator that all randomness of one sample comes from."""
    return np.random.default_rng([seed, epoch, index])


def random_crop(arrays: Sequence[np.ndarray], crop: int | None, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random crop x crop window of each H x W x C array; reflect-padded first where smaller than crop."""
    if crop is None:
        return list(arrays)
    height, width = arrays[0].shape[:2]
    pad_h, pad_w = max(0, crop - height), max(0, crop - width)
    if pad_h or pad_w:
        padding = ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
        arrays = [np.pad(array, padding, mode="reflect") for array in arrays]
        height, width = height + pad_h, width + pad_w
    top = int(rng.integers(0, height - crop + 1))
    left = int(rng.integers(0, width - crop + 1))
    return [array[top : top + crop, left : left + crop] for array in arrays]


def scaled_region(crop: int | None, scale: tuple[float, float] | None, rng: np.random.Generator) -> int | None:
    """The side of the region to cut for a crop seen downscaled by a factor drawn log-uniformly from ``scale``
    (``None``: no rescaling, the region is the crop)."""
    if crop is None or scale is None or scale[1] <= 1.0:
        return crop
    factor = math.exp(rng.uniform(math.log(scale[0]), math.log(scale[1])))
    return max(crop, round(crop * factor))


def downscale(arrays: Sequence[np.ndarray], side: int) -> list[np.ndarray]:
    """H x W x C float arrays resized to side x side (bilinear, antialiased, as ``core.tile_policy.overview``)."""
    if all(array.shape[0] == side and array.shape[1] == side for array in arrays):
        return list(arrays)
    stacked = torch.from_numpy(np.stack([np.asarray(a, dtype=np.float32) for a in arrays])).permute(0, 3, 1, 2)
    resized = F.interpolate(stacked, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return list(resized.clamp(0, 1).permute(0, 2, 3, 1).numpy())


def random_flips(arrays: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """The same random horizontal and vertical flips (each with probability 1/2) of each H x W x C array."""
    horizontal, vertical = rng.random(2) < 0.5
    arrays = [array[:, ::-1] if horizontal else array for array in arrays]
    return [array[::-1] if vertical else array for array in arrays]


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """H x W x 3, uint8 or float in [0, 1] -> 3 x H x W float32 tensor in [0, 1]."""
    if array.dtype == np.uint8:
        array = array / np.float32(255)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))


def pair_frame_numbers(name: str) -> range:
    """The frame numbers (as in ``000166.jpg``) a GoPro pair named ``<start>_avg<N>.png`` was averaged from."""
    match = PAIR_NAME.fullmatch(Path(name).stem)
    if match is None:
        raise ValueError(f"{name!r} is not a GoPro pair name of the form <start>_avg<N>.png")
    start, count = int(match[1]), int(match[2])
    return range(start + 1, start + 1 + count)


def list_pairs(root: str | Path) -> list[tuple[str, Path, Path]]:
    """(name, blurry file, sharp file) of a GoPro-layout folder, sorted by sequence and file name.

    Layouts: ``<root>/<seq>/blur/*`` with ``<root>/<seq>/sharp/*`` of the same names (GOPRO_Large),
    or a flat ``<root>/blur`` with ``<root>/sharp``. Names are ``<seq>/<file>`` (``<file>`` when flat).
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    if (root / "blur").is_dir() and (root / "sharp").is_dir():
        folders = [root]
    else:
        folders = sorted(child for child in root.iterdir() if (child / "blur").is_dir() and (child / "sharp").is_dir())
    pairs = []
    for folder in folders:
        for blurry in image_files(folder / "blur"):
            sharp = folder / "sharp" / blurry.name
            if not sharp.is_file():
                raise ValueError(f"{blurry} has no sharp counterpart {sharp}")
            pairs.append((str(blurry.relative_to(root).parent.parent / blurry.name), blurry, sharp))
    if not pairs:
        raise ValueError(f"{root} holds no GoPro-layout pairs (<seq>/blur/*.png with <seq>/sharp/*.png)")
    return pairs


def held_out_frames(root: str | Path, margin: int = 0) -> dict[str, set[int]]:
    """For each sequence of a GoPro-layout folder, the frame numbers its ``<start>_avg<N>`` pairs were made from,
    widened by ``margin`` frames on each side of each pair.

    Pairs not named that way are ignored (their frames cannot be known).
    """
    frames: dict[str, set[int]] = {}
    for _, blurry, _ in list_pairs(root):
        if PAIR_NAME.fullmatch(blurry.stem):
            numbers = pair_frame_numbers(blurry.name)
            sequence = blurry.parent.parent.name
            frames.setdefault(sequence, set()).update(range(numbers.start - margin, numbers.stop + margin))
    return frames


def numbered_frames(folder: Path) -> dict[int, Path]:
    """The image files of a folder named by an integer (``000001.jpg``), keyed by that integer."""
    return {int(path.stem): path for path in image_files(folder) if path.stem.isdigit()}


def frame_sequences(root: str | Path) -> list[tuple[str, dict[int, Path]]]:
    """(name, numbered frames) of a folder of numbered frames, or of each such sub-folder of a folder of folders."""
    root = Path(root)
    frames = numbered_frames(root)
    if frames:
        return [(root.name, frames)]
    sequences = ((child.name, numbered_frames(child)) for child in sorted(root.iterdir()) if child.is_dir())
    return [(name, frames) for name, frames in sequences if frames]


def pair_sequence(name: str) -> str:
    """The sequence of a validation pair named as ``list_pairs`` names it (``<seq>/<file>``; "" when flat)."""
    return name.rpartition("/")[0]


def seen_sequences(root: str | Path) -> set[str]:
    """The names of the frame sequences a frame folder holds (``frame_sequences``); none when it is absent: the
    validation pairs of these sequences show a scene a run on that folder trained on."""
    return {name for name, _ in frame_sequences(root)} if Path(root).is_dir() else set()


def _thumbnail(path: Path) -> tuple[tuple[int, int], np.ndarray]:
    with Image.open(path) as image:
        size = image.size
        image.draft("RGB", (image.width // 8, image.height // 8))
        return size, np.asarray(image.convert("RGB").resize((64, 64), Image.Resampling.BOX), dtype=np.float32) / 255


def looks_like_video(frames: Mapping[int, Path], min_frames: int = 7) -> bool:
    """Whether numbered images are consecutive frames of one video rather than numbered photos.

    True when at least ``min_frames`` of them have consecutive numbers and two neighbours in the middle
    of that run have the same size and nearly the same content (photo collections such as McMaster,
    1.png .. 18.png, or DIV2K, 0001.png .., are numbered consecutively too).
    """
    numbers = sorted(frames)
    best_start, best_length, start = 0, 0, 0
    for position in range(1, len(numbers) + 1):
        if position == len(numbers) or numbers[position] != numbers[position - 1] + 1:
            if position - start > best_length:
                best_start, best_length = start, position - start
            start = position
    if best_length < min_frames:
        return False
    middle = numbers[best_start + best_length // 2]
    (size_a, thumb_a), (size_b, thumb_b) = _thumbnail(frames[middle - 1]), _thumbnail(frames[middle])
    return size_a == size_b and float(np.abs(thumb_a - thumb_b).mean()) < VIDEO_DIFFERENCE


def odd_window_halves(min_frames: int, max_frames: int) -> tuple[int, int]:
    """(fewest, most) half-widths of the odd frame windows between ``min_frames`` and ``max_frames`` frames (odd, so
    that the sharp target is the true middle frame); ValueError when there is none."""
    halves = min_frames // 2, (max_frames - 1) // 2
    if min_frames < 1 or halves[1] < halves[0]:
        raise ValueError(f"no odd frame count between min_frames={min_frames} and max_frames={max_frames}")
    return halves


class RandomPairs(Dataset):
    """A dataset of (blurry, sharp) crops whose every sample is a function of (seed, epoch, index).

    Subclasses implement ``__len__`` and ``draw(index, rng)``; ``MixedDataset`` calls ``draw`` with its own
    generator, so that two draws of the same item in one epoch still get different crops.
    """

    def __init__(
        self, crop: int | None, seed: int, scale: Sequence[float] | None = None, noise: Sequence[float] | None = None
    ) -> None:
        if crop is not None and crop < 1:
            raise ValueError(f"crop must be a positive number of pixels or None, got {crop}")
        if scale is not None and not (len(scale) == 2 and 1.0 <= scale[0] <= scale[1]):
            raise ValueError(f"scale must be [low, high] with 1 <= low <= high, got {scale}")
        if noise is not None and not (len(noise) == 2 and 0.0 <= noise[0] <= noise[1]):
            raise ValueError(f"noise must be [low, high] standard deviations with 0 <= low <= high, got {noise}")
        self.crop = crop
        self.scale = tuple(scale) if scale is not None else None
        self.noise = tuple(noise) if noise is not None else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        return self.draw(index, sample_rng(self.seed, self.epoch, index))

    def draw(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _finish(self, blurry: np.ndarray, sharp: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if self.noise is not None:  # drawn only when asked for, so that the crops of a run without it are unchanged
            sigma = rng.uniform(*self.noise)
            blurry = blurry / np.float32(255) if blurry.dtype == np.uint8 else blurry  # decoded pairs are uint8
            blurry = np.clip(blurry + sigma * rng.standard_normal(blurry.shape, dtype=np.float32), 0.0, 1.0)
        blurry, sharp = random_flips([blurry, sharp], rng)
        return {"blur": to_tensor(blurry), "sharp": to_tensor(sharp)}


class PairedFolder(RandomPairs):
    """Real blurry/sharp pairs in the GoPro layout (see ``list_pairs``), randomly cropped and flipped; with
    ``scale``, each crop is cut from a region up to ``scale[1]`` times larger and downscaled (blur included);
    with ``noise``, Gaussian noise of a standard deviation drawn uniformly from it is added to the blurry crop."""

    def __init__(
        self,
        root: str | Path,
        crop: int | None,
        seed: int,
        scale: Sequence[float] | None = None,
        noise: Sequence[float] | None = None,
    ) -> None:
        super().__init__(crop, seed, scale, noise)
        self.root = Path(root)
        self.pairs = list_pairs(self.root)

    def __len__(self) -> int:
        return len(self.pairs)

    def draw(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        _, blurry_path, sharp_path = self.pairs[index]
        blurry, sharp = read_rgb(blurry_path), read_rgb(sharp_path)
        if blurry.shape != sharp.shape:
            raise ValueError(f"{blurry_path} is {blurry.shape[:2]} but {sharp_path} is {sharp.shape[:2]}")
        region = scaled_region(self.crop, self.scale, rng)
        blurry, sharp = random_crop([blurry, sharp], region, rng)
        if region != self.crop:
            blurry, sharp = downscale([blurry, sharp], self.crop)
        return self._finish(blurry, sharp, rng)


class FrameFolder(RandomPairs):
    """GoPro pairs synthesised on the fly from consecutive high-frame-rate frames (``core.blur.gopro_blur``).

    ``root`` is a folder of numbered frames (``000001.jpg`` ..) or a folder of such folders. Item i is one
    sharp frame, the centre of its window; each draw averages a random odd number of consecutive frames
    between ``min_frames`` and ``max_frames`` centred on it (odd, so the sharp target is the true middle
    frame). Near a sequence end or an excluded stretch only the windows that fit are drawn from.

    ``exclude``: frame numbers never used in any window, in every sequence, or a mapping from sequence
    (sub-folder) name to the frame numbers to leave out of that sequence (see ``held_out_frames``).
    ``scale``: [low, high]; each crop is cut from a region a log-uniform factor in that range larger and the
    blurred pair downscaled to the crop, so that small blur (the app's preview sizes) is seen as well as the
    full-size blur of the frames.
    ``noise``: [low, high]; Gaussian noise of a standard deviation drawn uniformly in that range is added to the
    blurry crop. An average of N frames holds about 1/sqrt(N) of one frame's sensor noise, so without it every
    blurry input is cleaner than its sharp target, unlike a real blurred photo (Köhler's, a user's).
    """

    def __init__(
        self,
        root: str | Path,
        crop: int | None,
        seed: int,
        min_frames: int = 7,
        max_frames: int = 13,
        exclude: Iterable[int] | Mapping[str, Iterable[int]] = (),
        scale: Sequence[float] | None = None,
        noise: Sequence[float] | None = None,
    ) -> None:
        super().__init__(crop, seed, scale, noise)
        self.root = Path(root)
        self.min_half, self.max_half = odd_window_halves(min_frames, max_frames)
        self.sequences = frame_sequences(self.root)
        self._frames: dict[Path, np.ndarray] = {}
        if not self.sequences:
            raise ValueError(f"{self.root} holds no numbered frames (000001.png ..) nor folders of them")
        self.items: list[tuple[int, int, int]] = []  # (sequence, centre frame, largest half-width that fits)
        for sequence, (name, frames) in enumerate(self.sequences):
            excluded = set(exclude.get(name, ()) if isinstance(exclude, Mapping) else exclude)
            allowed = sorted(set(frames) - excluded)
            before = {number: 0 for number in allowed}  # allowed consecutive frames just before each frame
            for number in allowed:
                before[number] = before[number - 1] + 1 if number - 1 in before else 0
            after = {number: 0 for number in allowed}
            for number in reversed(allowed):
                after[number] = after[number + 1] + 1 if number + 1 in after else 0
            for number in allowed:
                reach = min(before[number], after[number], self.max_half)
                if reach >= self.min_half:
                    self.items.append((sequence, number, reach))
        if not self.items:
            raise ValueError(f"{self.root} has no {2 * self.min_half + 1} consecutive frames outside the excluded ones")

    def __len__(self) -> int:
        return len(self.items)

    def window(self, index: int, rng: np.random.Generator) -> list[Path]:
        """The frame files of item ``index``'s window for this draw, in order."""
        sequence, centre, reach = self.items[index]
        half = int(rng.integers(self.min_half, reach + 1))
        frames = self.sequences[sequence][1]
        return [frames[number] for number in range(centre - half, centre + half + 1)]

    def frame(self, path: Path) -> np.ndarray:
        """A decoded frame, kept for the life of this process (a 720p sequence of 300 frames is 0.8 GB):
        each draw averages up to 13 frames, and decoding them again for every crop dominated training on CPU."""
        if path not in self._frames:
            self._frames[path] = read_rgb(path)
        return self._frames[path]

    def draw(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        region = scaled_region(self.crop, self.scale, rng)
        frames = random_crop([self.frame(path) for path in self.window(index, rng)], region, rng)
        blurry, sharp = gopro_blur(frames)
        if region != self.crop:
            blurry, sharp = downscale([blurry, sharp], self.crop)
        return self._finish(blurry, sharp, rng)


class SyntheticFolder(RandomPairs):
    """Sharp photos (png/jpg.., found recursively) blurred on the fly by a random camera-shake kernel.

    Each draw: a crop of the photo with a margin of half a kernel on each side, convolved with
    ``trajectory_kernel(kernel_size)`` and cut back to ``crop``, so that no crop is blurred across a
    padded border; then Gaussian noise of a standard deviation drawn uniformly from ``noise_sigma``.
    """

    def __init__(
        self,
        root: str | Path,
        crop: int | None,
        seed: int,
        kernel_size: int = 31,
        noise_sigma: tuple[float, float] = (0.0, 0.01),
    ) -> None:
        super().__init__(crop, seed)
        self.root = Path(root)
        self.kernel_size = kernel_size
        self.noise_sigma = noise_sigma
        self.photos = image_files(self.root, recursive=True)
        if not self.photos:
            raise ValueError(f"{self.root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    def __len__(self) -> int:
        return len(self.photos)

    def draw(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        photo = read_rgb(self.photos[index])
        margin = self.kernel_size // 2 if self.crop is not None else 0
        (region,) = random_crop([photo], None if self.crop is None else self.crop + 2 * margin, rng)
        kernel = trajectory_kernel(self.kernel_size, seed=int(rng.integers(2**63 - 1)))
        inner = (slice(margin, region.shape[0] - margin), slice(margin, region.shape[1] - margin))
        blurry = blur_image(region, kernel)[inner]
        sigma = rng.uniform(*self.noise_sigma)
        blurry = np.clip(blurry + sigma * rng.standard_normal(blurry.shape, dtype=np.float32), 0.0, 1.0)
        return self._finish(blurry, region[inner], rng)


class MovingCameraFolder(RandomPairs):
    """Sharp photos (found recursively) made into GoPro pairs: ``core.blur.moving_camera_blur`` renders the frames
    a moving camera would have recorded and averages them in linear intensity, as GoPro averages real frames.

    Each draw: an odd frame count between ``min_frames`` and ``max_frames`` (GoPro: 7 to 13; 1 is a still
    camera, the pair's blurry image is its sharp one); a camera motion whose path's chord is drawn log-uniformly
    from ``extent`` pixels of the final crop in a uniform direction, bent by up to half its length, with a roll
    of up to ``roll`` radians about a pivot within one region of the crop's centre and a zoom of up to ``zoom``
    (log scale) over the exposure; with ``scale``, a region up to ``scale[1]`` times the crop (as large as the
    photo allows) is blurred and downscaled to the crop, as ``FrameFolder`` does; then Gaussian noise of a
    standard deviation drawn uniformly from ``noise_sigma``. The parameter ranges are this project's choice; the
    default ``extent`` (0.5 to 32 crop px, ``[data] camera_extent``) was set to cover GoPro's 7 to 13 frame windows
    at 1280 x 720 and below, whose straight-line fits (``benchmarks/blur_length.py``) reach 48 px on an unseen
    GOPR0374 pair; the later stages of LMFN, FCN and GradientNet draw paths up to 64 px.
    """

    def __init__(
        self,
        root: str | Path,
        crop: int | None,
        seed: int,
        min_frames: int = 7,
        max_frames: int = 13,
        scale: Sequence[float] | None = None,
        extent: tuple[float, float] = (0.5, 32.0),
        roll: float = 0.03,
        zoom: float = 0.04,
        noise_sigma: tuple[float, float] = (0.0, 0.005),
    ) -> None:
        super().__init__(crop, seed, scale)
        if crop is None:
            raise ValueError("MovingCameraFolder draws crops: give a crop size")
        self.root = Path(root)
        self.min_half, self.max_half = odd_window_halves(min_frames, max_frames)
        if not 0 < extent[0] <= extent[1]:
            raise ValueError(f"the camera path lengths must satisfy 0 < shortest <= longest, got {tuple(extent)}")
        self.extent, self.roll, self.zoom, self.noise_sigma = extent, roll, zoom, noise_sigma
        self.photos = image_files(self.root, recursive=True)
        if not self.photos:
            raise ValueError(f"{self.root} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    def __len__(self) -> int:
        return len(self.photos)

    def motion(self, region: int, rng: np.random.Generator) -> CameraMotion:
        """A random camera motion for a region x region crop, in that region's pixels."""
        factor = region / self.crop
        length = math.exp(rng.uniform(math.log(self.extent[0]), math.log(self.extent[1]))) * factor
        heading, bend = rng.uniform(0.0, 2.0 * math.pi, size=2)
        curve = rng.uniform(0.0, 0.5) * length
        pivot = rng.uniform(-0.5, 1.5, size=2) * region
        return CameraMotion(shift=(length * math.cos(heading), length * math.sin(heading)),
                            curve=(curve * math.cos(bend), curve * math.sin(bend)),
                            roll=float(rng.uniform(-self.roll, self.roll)), zoom=float(rng.uniform(-self.zoom, self.zoom)),
                            centre=(float(pivot[0]), float(pivot[1])))

    def draw(self, index: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        photo = read_rgb(self.photos[index])
        frames = 2 * int(rng.integers(self.min_half, self.max_half + 1)) + 1
        region = min(scaled_region(self.crop, self.scale, rng), max(self.crop, min(photo.shape[:2]) - 8))
        motion = self.motion(region, rng)
        margin = math.ceil(motion.reach(region, region)) + 2
        (patch,) = random_crop([photo], region + 2 * margin, rng)
        blurry, sharp = moving_camera_blur(patch, motion, frames, margin)
        if region != self.crop:
            blurry, sharp = downscale([blurry, sharp], self.crop)
        sigma = rng.uniform(*self.noise_sigma)
        blurry = np.clip(blurry + sigma * rng.standard_normal(blurry.shape, dtype=np.float32), 0.0, 1.0)
        return self._finish(blurry, sharp, rng)


PHOTO_BLURS = ("kernel", "camera")  # how sharp photos are blurred: SyntheticFolder, MovingCameraFolder


class MixedDataset(Dataset):
    """``length`` samples, sample i from a source chosen by a weighted draw seeded with (seed, epoch, i).

    The item of that source is drawn uniformly with the same generator, which also drives the source's crop,
    flips and blur (for ``RandomPairs`` sources); any other dataset is simply indexed.
    """

    def __init__(self, sources: Sequence[Dataset], weights: Sequence[float], length: int, seed: int) -> None:
        if not sources or len(weights) != len(sources):
            raise ValueError(f"need one weight per source, got {len(weights)} weights for {len(sources)} sources")
        weights = np.asarray(weights, dtype=np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"weights must be non-negative and not all zero, got {weights.tolist()}")
        if any(len(source) == 0 for source in sources):
            raise ValueError("every source needs at least one sample")
        self.sources = list(sources)
        self.probabilities = weights / weights.sum()
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        for source in self.sources:
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length} samples")
        rng = sample_rng(self.seed, self.epoch, index)
        source = self.sources[rng.choice(len(self.sources), p=self.probabilities)]
        item = int(rng.integers(len(source)))
        return source.draw(item, rng) if isinstance(source, RandomPairs) else source[item]


class ValidationPairs(Dataset):
    """Whole GoPro-layout pairs in a fixed order, for validation: {"blur", "sharp", "name"}.

    ``max_side``: crop each image about its centre to at most this many pixels a side, for speed.
    """

    def __init__(self, root: str | Path, max_side: int | None = None) -> None:
        self.root = Path(root)
        self.max_side = max_side
        self.pairs = list_pairs(self.root)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        name, blurry_path, sharp_path = self.pairs[index]
        blurry, sharp = read_rgb(blurry_path), read_rgb(sharp_path)
        if blurry.shape != sharp.shape:
            raise ValueError(f"{blurry_path} is {blurry.shape[:2]} but {sharp_path} is {sharp.shape[:2]}")
        if self.max_side is not None:
            height, width = blurry.shape[:2]
            top, left = max(0, (height - self.max_side) // 2), max(0, (width - self.max_side) // 2)
            window = (slice(top, top + self.max_side), slice(left, left + self.max_side))
            blurry, sharp = blurry[window], sharp[window]
        return {"blur": to_tensor(blurry), "sharp": to_tensor(sharp), "name": name}


def _has_pairs(folder: Path) -> bool:
    if (folder / "blur").is_dir() and (folder / "sharp").is_dir():
        return True
    return any((child / "blur").is_dir() and (child / "sharp").is_dir() for child in folder.iterdir())


def dataset_type(path: str | Path) -> type[RandomPairs]:
    """Which dataset a folder is: ``PairedFolder`` (GoPro layout), ``FrameFolder`` (numbered video frames,
    or folders of them) or ``SyntheticFolder`` (photos). ValueError for anything else."""
    folder = Path(path)
    if not folder.exists():
        raise ValueError(f"dataset path {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"dataset path {folder} is not a folder")
    if _has_pairs(folder):
        return PairedFolder
    sequences = frame_sequences(folder)
    videos = [name for name, frames in sequences if looks_like_video(frames)]
    if videos and len(videos) == len(sequences):
        return FrameFolder
    if videos:
        raise ValueError(f"{folder} mixes video frame folders {videos} with other numbered images; name one of them")
    for directory, subdirectories, _ in os.walk(folder):
        inner = Path(directory)
        if inner != folder and {"blur", "sharp"} <= set(subdirectories):
            raise ValueError(f"{folder} is not one dataset: it holds GoPro pairs under {inner}; name that folder")
        if inner != folder and looks_like_video(numbered_frames(inner)):
            raise ValueError(f"{folder} is not one dataset: it holds video frames in {inner}; name that folder")
    if image_files(folder, recursive=True):
        return SyntheticFolder
    raise ValueError(f"{folder} is neither GoPro-layout pairs, nor numbered video frames, nor a folder of photos")


def build_dataset(
    paths: Sequence[str | Path],
    crop: int | None,
    seed: int,
    length: int,
    weights: Sequence[float] | None = None,
    *,
    held_out: str | Path | None = None,
    scale: Sequence[float] | None = None,
    frames: Sequence[int] = (7, 13),
    photo_blur: str = "kernel",
    noise: Sequence[float] | None = None,
    camera_extent: Sequence[float] = (0.5, 32.0),
) -> MixedDataset:
    """One training dataset of ``length`` samples from several folders, each read as ``dataset_type`` says.

    ``weights``: how often each path is drawn from (default: equally). ``held_out``: a GoPro-layout
    validation folder; the frames its ``<start>_avg<N>`` pairs were made from, and ``HELD_OUT_MARGIN``
    frames either side of each pair, are excluded from every frame folder (by sequence name), and a pair
    folder sharing a file with it is refused. ``scale``: downscaling range for real-blur sources (frame and pair
    folders; see ``FrameFolder``); sharp photos are blurred at their own scale, with kernels of every size.
    ``frames``: (fewest, most) frames a frame folder's windows average, GoPro's 7 to 13 by default; a fewest of 1
    also draws pairs with no blur or little (one or three frames), from which a network learns to leave sharp
    regions as they are. ``photo_blur``: how folders of sharp photos are blurred, "kernel" (``SyntheticFolder``,
    a camera-shake kernel) or "camera" (``MovingCameraFolder``, frames of a moving camera averaged as GoPro's,
    with the same ``frames`` and ``scale`` and camera paths of ``camera_extent`` crop pixels). ``noise``: [low, high]
    standard deviations of Gaussian noise added to the blurry crops of real-blur sources (see ``FrameFolder``; the
    photo sources add their own).
    """
    if photo_blur not in PHOTO_BLURS:
        raise ValueError(f"photo_blur must be one of {', '.join(PHOTO_BLURS)}, got {photo_blur!r}")
    if not paths:
        raise ValueError("build_dataset needs at least one dataset path")
    excluded = held_out_frames(held_out, HELD_OUT_MARGIN) if held_out is not None else {}
    validation_files = {blurry.resolve() for _, blurry, _ in list_pairs(held_out)} if held_out is not None else set()
    sources: list[RandomPairs] = []
    for path in paths:
        kind = dataset_type(path)
        if kind is FrameFolder:
            sources.append(FrameFolder(path, crop, seed, min_frames=frames[0], max_frames=frames[1], exclude=excluded,
                                       scale=scale, noise=noise))
        elif kind is PairedFolder:
            sources.append(PairedFolder(path, crop, seed, scale=scale, noise=noise))
        elif photo_blur == "camera":
            sources.append(MovingCameraFolder(path, crop, seed, min_frames=frames[0], max_frames=frames[1], scale=scale,
                                              extent=(float(camera_extent[0]), float(camera_extent[1]))))
        else:
            sources.append(kind(path, crop, seed))
        if kind is PairedFolder and validation_files & {blurry.resolve() for _, blurry, _ in sources[-1].pairs}:
            raise ValueError(f"{path} shares pairs with the held-out validation folder {held_out}")
    return MixedDataset(sources, weights if weights is not None else [1.0] * len(sources), length, seed)
