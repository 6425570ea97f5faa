"""How closely tiled output matches the untiled output of every registered model, in PSNR (dB).

    python benchmarks/tiling_agreement.py [--size 256x320] [--tile 160] [--overlap 32] [--models a,b]

Uses a GoPro blurry crop from ../shared/data/gopro_dev when present (else a synthetic texture). Local networks
agree to numerical precision once the overlap covers their receptive field; networks with image-wide statistics
(instance norm, squeeze-and-excitation pooling) see different statistics per tile unless the tiles share the whole
image's (``core.statistics``). Both are printed: each tile on its own statistics, and tiles sharing the statistics
of a record pass on the whole image (which fits here, so they are exact); models without such statistics show
the same figure twice. The last column is the seconds of the shared run, record pass included.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.images import read_image  # noqa: E402
from core.inference import restore  # noqa: E402
from core.metrics import psnr  # noqa: E402
from core.registry import list_models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256x320", help="HxW")
    parser.add_argument("--tile", type=int, default=160)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument("--models", help="comma-separated (default: all)")
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    blurry = sorted((ROOT.parent / "shared" / "data" / "gopro_dev").glob("*/blur/*.png"))
    if blurry:
        image = read_image(blurry[0])[200 : 200 + height, 400 : 400 + width]
        source = blurry[0].name
    else:
        image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
        source = "random texture"
    print(f"{source}, {width}x{height}, tiles {args.tile} px, overlap {args.overlap} px\n")
    print("| model | weights | tiled vs untiled PSNR (dB), own statistics | shared statistics | seconds, shared |")
    print("|---|---|---|---|---|")
    for name in args.models.split(",") if args.models else list_models():
        torch.manual_seed(0)  # untrained weights: the same network on every run, whichever models are listed
        whole = restore(image, name, tile=0)
        own = restore(image, name, tile=args.tile, overlap=args.overlap, share_statistics=False)
        shared = restore(image, name, tile=args.tile, overlap=args.overlap)
        agreement = [psnr(tiled.image / 255.0, whole.image / 255.0) for tiled in (own, shared)]
        print(f"| {name} | {'trained' if whole.trained else 'untrained'} | {agreement[0]:.2f} | {agreement[1]:.2f} | "
              f"{shared.seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
