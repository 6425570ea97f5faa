"""How fast this machine runs each model's own counted operations, alone: a second floor beside the FLOP floor.

    python benchmarks/op_floor.py [--threads 2] [--sizes 256x256 720x1280] [--models a,b] [--repeats 3]
    python benchmarks/op_floor.py --widths 3 16 24 32 48 50 64 96 128     # a C -> C 3x3 convolution per width

The FLOP floor of ``benchmarks/inference.py`` divides a model's MACs by one probe, a 96-channel 3x3 convolution.
A network built of narrower or odd-width convolutions cannot reach that probe on this CPU, however little else
the engine spends: oneDNN computes channels in vector blocks (16 floats with AVX-512), so a 24-channel
convolution does the work of a 32-channel one. This script measures that limit directly. It traces one forward
on the meta device (the network ``restore`` runs, channels-last weights and input as ``load_model`` and
``to_tensor`` give them), records every operation that the MAC count counts (convolutions and matrix products)
with its shapes, strides and arguments, then runs each distinct one alone on random tensors of those shapes
(best of ``--repeats`` after a warm-up, inside ``reusing_freed_memory`` as ``restore`` is) and sums the times.
The sum is the time those operations take by themselves; element-wise work, which the MAC count leaves out, is
what a full run adds on top.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils.flop_counter import flop_registry  # noqa: E402
from torch.utils._pytree import tree_map  # noqa: E402


# Under inference mode these reach the dispatch mode whole (FlopCounterMode counts what they decompose into)
_COMPOSITE = {torch.ops.aten.conv2d.default, torch.ops.aten.conv3d.default, torch.ops.aten.conv_transpose2d.input,
              torch.ops.aten.matmul.default, torch.ops.aten.linear.default}


class _Counted(TorchDispatchMode):
    """Records each call of an operation the MAC count counts: (op, args with tensors as (shape, stride, dtype))."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()
        self.specs: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket not in flop_registry and func not in _COMPOSITE:
            return func(*args, **kwargs)
        spec = tree_map(lambda a: ("tensor", tuple(a.shape), tuple(a.stride()), a.dtype)
                        if isinstance(a, torch.Tensor) else a, (args, kwargs))
        self.calls[(func, repr(spec))] += 1
        self.specs[(func, repr(spec))] = spec
        return func(*args, **kwargs)


def counted_operations(name: str, height: int, width: int) -> list[tuple]:
    """[(op, (args, kwargs) with tensors as specs, calls)] of one inference forward of the network restore runs."""
    from core.inference import channels_last_weights
    from core.registry import create_model, shipped_architecture

    with torch.device("meta"):
        model = channels_last_weights(create_model(name, **shipped_architecture(name)))
        image = torch.empty(1, height, width, 3).permute(0, 3, 1, 2)  # to_tensor's layout: channels-last
    mode = _Counted()
    with torch.inference_mode(), mode:
        model(image)
    return [(key[0], mode.specs[key], calls) for key, calls in mode.calls.items()]


def _is_tensor(spec) -> bool:
    return isinstance(spec, tuple) and bool(spec) and spec[0] == "tensor"


def materialise(spec, device: str = "cpu"):
    """(args, kwargs) with each tensor spec made a tensor of its shape, strides and dtype (normal noise off meta)."""
    def make(a):
        if not _is_tensor(a):
            return a
        tensor = torch.empty_strided(a[1], a[2], dtype=a[3], device=device)
        return tensor if device == "meta" else tensor.normal_()

    return tree_map(make, spec, is_leaf=_is_tensor)


def seconds_alone(func, spec, repeats: int) -> float:
    args, kwargs = materialise(spec)
    best = float("inf")
    with torch.inference_mode():
        func(*args, **kwargs)
        for _ in range(repeats):
            start = time.perf_counter()
            func(*args, **kwargs)
            best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", nargs="+", default=["256x256", "720x1280"], help="HxW")
    parser.add_argument("--models", help="comma-separated (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--widths", nargs="+", type=int,
                        help="only time a C -> C 3x3 convolution at 256x256 per C (benchmarks.inference.conv_gflops)")
    args = parser.parse_args()
    from benchmarks.inference import conv_gflops

    if args.widths:
        print(f"| channels | GFLOP/s ({args.threads} threads, 3x3, 256x256, channels-last) |\n|---|---|")
        for width in args.widths:
            print(f"| {width} | {conv_gflops(args.threads, width):.0f} |")
        return

    from core.complexity import count_macs
    from core.allocator import reusing_freed_memory
    from core.registry import list_models, shipped_architecture

    torch.set_num_threads(args.threads)
    gflops = conv_gflops(args.threads)
    print(f"3x3 convolution probe (96 channels): {gflops:.0f} GFLOP/s ({args.threads} threads)\n")
    print("| model | size | GMACs | distinct ops | FLOP floor (s) | ops alone (s) | ops alone (GFLOP/s) |"
          " ops alone / FLOP floor |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models.split(",") if args.models else list_models():
        for size in args.sizes:
            height, width = map(int, size.split("x"))
            macs = count_macs(name, height, width, **shipped_architecture(name))
            operations = counted_operations(name, height, width)
            with reusing_freed_memory():
                alone = sum(calls * seconds_alone(func, spec, args.repeats) for func, spec, calls in operations)
            floor = 2 * macs / (gflops * 1e9)
            print(f"| {name} | {width}x{height} | {macs / 1e9:.1f} | {len(operations)} | {floor:.2f} | {alone:.2f} | "
                  f"{2 * macs / alone / 1e9:.0f} | {alone / floor:.2f} |", flush=True)


if __name__ == "__main__":
    main()
