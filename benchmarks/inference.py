"""Inference latency, peak memory and the FLOP floor of every registered model on this machine.

    python benchmarks/inference.py [--threads 2] [--sizes 256x256 720x1280 4000x6000] [--models a,b] [--skip-slow]
                                   [--huge-pages] [--reuse-memory call|keep|off] [--op-floor]

Each (model, size) runs in a fresh process (so its peak resident memory is its own), through
``core.inference.restore`` with the automatic tile size; latency is the best of ``--repeats`` runs after a
warm-up (one run for images over 4 megapixels). The FLOP floor is the model's MACs x 2 divided by the
throughput of a 3x3 convolution (96 channels, 256x256) measured in the same session: a model cannot run
faster than its convolutions allow. Each model is the network ``restore`` runs: the shipped checkpoint's (reduced)
architecture where one is shipped, the registered one otherwise; the table says which. ``--reuse-memory`` sets
``DEBLUR_REUSE_MEMORY`` (``core.allocator.reusing_freed_memory``) for the runs. ``--op-floor`` adds, for each
untiled run, the time its own counted operations take alone (``benchmarks/op_floor.py``): a floor that knows the
network's convolution shapes, where the FLOP floor knows only its MACs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def conv_gflops(threads: int, channels: int = 96) -> float:
    """Throughput of a channels -> channels 3x3 convolution on a 256x256 channels-last map (best of 5 after a
    warm-up): 96 channels is the FLOP floor's probe; ``benchmarks/op_floor.py --widths`` asks for other widths."""
    import torch

    torch.set_num_threads(threads)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.rand(1, channels, 256, 256).contiguous(memory_format=torch.channels_last)
    best = float("inf")
    with torch.inference_mode():
        conv(x)
        for _ in range(5):
            start = time.perf_counter()
            conv(x)
            best = min(best, time.perf_counter() - start)
    return 2 * channels * channels * 9 * 256 * 256 / best / 1e9


def measure(name: str, height: int, width: int, threads: int, repeats: int, op_floor: bool) -> dict:
    import numpy as np
    import torch

    from core.complexity import count_macs
    from core.inference import restore
    from core.registry import shipped_architecture

    torch.set_num_threads(threads)
    image = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    first = restore(image, name, device="cpu")
    times = [first.seconds]
    for _ in range(repeats if height * width <= 4_000_000 else 0):
        times.append(restore(image, name, device="cpu").seconds)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB -> GiB
    alone = None
    if op_floor and first.tile is None:  # after the runs: its own tensors must not count in the peak
        from benchmarks.op_floor import counted_operations, seconds_alone
        from core.allocator import reusing_freed_memory

        with reusing_freed_memory():
            alone = sum(calls * seconds_alone(func, spec, 3) for func, spec, calls in counted_operations(name, height, width))
    return {"model": name, "size": f"{width}x{height}", "seconds": min(times), "peak_gib": peak,
            "tile": first.tile, "gmacs": count_macs(name, height, width, **shipped_architecture(name)) / 1e9,
            "ops_alone": alone}


def alone_columns(result: dict) -> str:
    alone = result["ops_alone"]
    return " | |" if alone is None else f" {alone:.2f} | {result['seconds'] / alone:.2f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["256x256", "720x1280", "4000x6000"], help="HxW")
    parser.add_argument("--models", help="comma-separated (default: all)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-slow", type=float, default=600.0, help="skip runs whose floor exceeds this many s")
    parser.add_argument("--huge-pages", action="store_true", help="THP_MEM_ALLOC_ENABLE=1 (PyTorch's huge-page option)")
    parser.add_argument("--reuse-memory", choices=["call", "keep", "off"],
                        help="DEBLUR_REUSE_MEMORY for the runs (core.allocator.reusing_freed_memory; default call)")
    parser.add_argument("--op-floor", action="store_true",
                        help="also time each untiled run's counted operations alone (benchmarks/op_floor.py)")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.huge_pages:
        os.environ["THP_MEM_ALLOC_ENABLE"] = "1"  # inherited by the measuring processes
    if args.reuse_memory:
        os.environ["DEBLUR_REUSE_MEMORY"] = args.reuse_memory  # inherited by the measuring processes
    if args.one:
        name, size = args.one.split("@")
        height, width = map(int, size.split("x"))
        print(json.dumps(measure(name, height, width, args.threads, args.repeats, args.op_floor)))
        return

    from core.complexity import count_macs
    from core.registry import checkpoint_path, list_models, shipped_architecture

    gflops = conv_gflops(args.threads)
    print(f"3x3 convolution throughput: {gflops:.0f} GFLOP/s ({args.threads} threads)\n")
    extra = (" ops alone (s) | x ops alone |", "---|---|") if args.op_floor else ("", "")
    print("| model | network | size | tile | GMACs | seconds | FLOP floor (s) | x floor | peak memory (GiB) |" + extra[0])
    print(f"|---|---|---|---|---|---|---|---|---|{extra[1]}")
    models = args.models.split(",") if args.models else list_models()
    for name in models:
        network = ("shipped, reduced" if shipped_architecture(name) else "shipped") if checkpoint_path(name).is_file() \
            else "registered, untrained"
        for size in args.sizes:
            height, width = map(int, size.split("x"))
            floor = 2 * count_macs(name, height, width, **shipped_architecture(name)) / (gflops * 1e9)
            if floor > args.skip_slow:
                print(f"| {name} | {network} | {width}x{height} | | {floor * gflops / 2:.0f} | skipped | {floor:.0f} | | |"
                      + (" | |" if args.op_floor else ""), flush=True)
                continue
            command = [sys.executable, __file__, "--one", f"{name}@{size}", "--threads", str(args.threads),
                       "--repeats", str(args.repeats)] + (["--op-floor"] if args.op_floor else [])
            result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            print(f"| {name} | {network} | {result['size']} | {'x'.join(map(str, result['tile'])) if result['tile'] else 'whole'} | {result['gmacs']:.1f} | "
                  f"{result['seconds']:.2f} | {floor:.2f} | {result['seconds'] / floor:.2f} | {result['peak_gib']:.2f} |"
                  + (alone_columns(result) if args.op_floor else ""), flush=True)


if __name__ == "__main__":
    main()
