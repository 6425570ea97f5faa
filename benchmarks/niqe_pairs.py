"""Does this project's NIQE (``core.metrics.niqe``) prefer the sharp frames of GoPro pairs to their blurry ones?

    python benchmarks/niqe_pairs.py [--data ../shared/data/gopro_dev]

Prints NIQE (lower is more natural) of each pair's blurry and sharp frame, whole, and their means: a check that
the no-reference score the app and the results table show moves the way deblurring should move it, on the
pairs where the ground truth is known.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.__main__ import evaluation_pairs  # noqa: E402  (the pairs `python -m core evaluate` scores)
from core.images import read_image  # noqa: E402
from core.metrics import niqe  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "gopro_dev",
                        help="GoPro-layout pairs: <sequence>/blur/*.png and <sequence>/sharp/*.png")
    args = parser.parse_args(argv)
    rows = []
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder")
    for name, blurry, sharp in evaluation_pairs(args.data):
        row = niqe(read_image(blurry)), niqe(read_image(sharp))
        rows.append(row)
        print(f"{name}: blurry {row[0]:.2f}, sharp {row[1]:.2f}", flush=True)
    if not rows:
        parser.error(f"no pairs under {args.data}")
    blurry_mean, sharp_mean = np.mean(rows, axis=0)
    better = sum(sharp < blurry for blurry, sharp in rows)
    print(f"mean of {len(rows)} pairs: blurry {blurry_mean:.2f}, sharp {sharp_mean:.2f}; the sharp frame scores better "
          f"on {better} of {len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
