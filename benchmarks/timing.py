"""The app's time estimates (``core.timing``) against real runs: per model, first guess and measured seconds.

    python benchmarks/timing.py [--sizes 180x320 720x1280] [--models a,b]

For each model and size: ``core.timing.first_guess`` (its MACs over this device's measured convolution speed,
times ``FIRST_GUESS_OVERHEAD``), then the best of two runs of ``core.inference.restore`` on a GoPro frame of
``../shared/data/gopro_dev`` resized to that size (a random image where the data is absent), and their ratio.
Runs use every thread this process may use, as the app's do. A ratio under 1 means the first guess overstates, as it is meant to; the app replaces it by the measurement
after a model's first run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["180x320", "720x1280"])
    parser.add_argument("--models", help="comma-separated (default: every model the app offers)")
    args = parser.parse_args()

    import numpy as np
    from PIL import Image

    from core import timing
    from core.inference import available_threads, restore
    from core.registry import list_models

    names = args.models.split(",") if args.models else list_models(include_reference=True)
    frames = sorted((ROOT.parent / "shared/data/gopro_dev").glob("*/blur/*.png"))
    source = Image.open(frames[0]).convert("RGB") if frames else None
    print(f"convolution speed: {timing.device_rate() / 1e9:.1f} GMAC/s on {available_threads()} threads "
          "(every thread this process may use, as the app); "
          f"first guess = MACs / speed x {timing.FIRST_GUESS_OVERHEAD}")
    print()
    print("| model | size | GMACs | first guess (s) | measured (s) | measured / guess |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        height, width = (int(side) for side in size.split("x"))
        if source is not None:
            image = np.asarray(source.resize((width, height), Image.LANCZOS), dtype=np.float32) / 255
        else:
            image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
        for name in names:
            guess = timing.first_guess(name, height, width)
            measured = min(restore(image, name).seconds for _ in range(2))
            macs = timing.macs(name, height, width) / 1e9
            print(f"| {name} | {width}x{height} | {macs:.1f} | {guess:.2f} | {measured:.2f} | {measured / guess:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
