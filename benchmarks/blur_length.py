"""A rough size of the blur in validation pairs: the straight-line motion kernel that best reblurs the sharp frame.

    python benchmarks/blur_length.py [--data ../shared/data/gopro_dev] [--pairs 2] [--crop 256]

For the first ``--pairs`` pairs of each sequence, on the grey ``--crop`` px centre crop of both frames, every
straight-line kernel of the listed lengths (pixels at full size) and 12 angles is applied to the sharp crop, and the
one whose result is closest to the blurry crop (mean squared error away from a 40 px border) is printed with that
fit's PSNR. Real camera blur is curved and varies over the frame, so a length is an estimate of the blur's extent,
for comparing scenes with each other and with the training data's blur (``train.data.MovingCameraFolder``'s camera
paths), not a measurement of any one trajectory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import convolve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.blur import _splat  # noqa: E402  (the project's bilinear splatting of a path onto a kernel grid)

LENGTHS = (1, 2, 4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80)
ANGLES = np.arange(0.0, np.pi, np.pi / 12)
BORDER = 40


def line_kernel(length: float, angle: float) -> np.ndarray:
    """A normalised straight-line kernel of ``length`` pixels at ``angle`` radians: evenly spaced points along the
    line, splatted bilinearly as ``core.blur``'s camera trajectories are."""
    size = (int(np.ceil(length)) | 1) + 2
    centre = size // 2
    along = np.linspace(-length / 2, length / 2, max(int(length * 4), 1))
    kernel = _splat(centre * (1 + 1j) + along * np.cos(angle) - 1j * along * np.sin(angle), size)
    return kernel / kernel.sum()


def centre_crop(path: Path, crop: int) -> np.ndarray:
    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255.0
    top, left = (grey.shape[0] - crop) // 2, (grey.shape[1] - crop) // 2
    return grey[top: top + crop, left: left + crop]


def best_line(blurry: np.ndarray, sharp: np.ndarray) -> tuple[float, float, float]:
    """(length, angle in degrees, PSNR of the fit in dB) of the best straight-line kernel."""
    inner = (slice(BORDER, -BORDER),) * 2
    best = (np.inf, 0.0, 0.0)
    for length in LENGTHS:
        for angle in ANGLES:
            error = float(np.mean((convolve(sharp, line_kernel(length, angle), mode="reflect") - blurry)[inner] ** 2))
            best = min(best, (error, float(length), float(np.degrees(angle))))
    return best[1], best[2], (-10.0 * np.log10(best[0]) if best[0] > 0 else np.inf)  # inf: an exact fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "gopro_dev")
    parser.add_argument("--pairs", type=int, default=2, help="pairs per sequence")
    parser.add_argument("--crop", type=int, default=256)
    args = parser.parse_args(argv)
    print("| pair | line length (px, full size) | angle (deg) | fit PSNR (dB) |\n|---|---|---|---|")
    for sequence in sorted(folder for folder in args.data.iterdir() if (folder / "blur").is_dir()):
        for blurry in sorted((sequence / "blur").iterdir())[: args.pairs]:
            length, angle, fit = best_line(centre_crop(blurry, args.crop), centre_crop(sequence / "sharp" / blurry.name,
                                                                                       args.crop))
            print(f"| {sequence.name}/{blurry.name} | {length:g} | {angle:.0f} | {fit:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
