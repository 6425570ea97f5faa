"""What a fresh activation costs: an out-of-place and an in-place add on 24-channel 1280x720 maps (88 MB), one
thread, with glibc's default allocator and inside ``core.allocator.reusing_freed_memory`` (each in a fresh process).

    python benchmarks/allocator.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(mode: str, repeats: int) -> tuple[float, float]:
    import time

    import torch

    from core.allocator import reusing_freed_memory

    torch.set_num_threads(1)
    a, b = torch.rand(1, 24, 720, 1280), torch.rand(1, 24, 720, 1280)

    def best(step) -> float:
        step()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        return min(times) * 1000

    with reusing_freed_memory() if mode == "reuse" else contextlib.nullcontext():
        return best(lambda: a + b), best(lambda: a.add_(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(*measure(args.one, args.repeats))
        return
    print("| allocator | a + b (ms) | a.add_(b) (ms) |\n|---|---|---|")
    for mode, label in (("default", "glibc default"), ("reuse", "reusing_freed_memory")):
        run = subprocess.run([sys.executable, __file__, "--one", mode, "--repeats", str(args.repeats)],
                             check=True, capture_output=True, text=True)
        out_of_place, in_place = map(float, run.stdout.split())
        print(f"| {label} | {out_of_place:.1f} | {in_place:.1f} |")


if __name__ == "__main__":
    main()
