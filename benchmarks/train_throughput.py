"""Training throughput of every registered model with its paper's recipe: samples per second at 128 px crops.

    python benchmarks/train_throughput.py [--batch 4] [--steps 5] [--threads 2] [--models a,b] [--bf16]
        [--schedule train/configs/cpu/{model}.toml] [--teacher rotation|efficientnet]

Measures optimisation steps only (the recipe's full step: every loss, every optimiser, GradientNet's five critic
steps) on a fixed random batch, after one warm-up step; data loading runs in worker processes during training
and is not included. SP uses an untrained rotation teacher of the right shape (its cost is the same), or with
``--teacher efficientnet`` the ImageNet EfficientNet-Lite0 teacher. ``--schedule`` merges a config file per
model (``{model}`` in the path is the model's name) over the paper's, e.g. a CPU schedule with its architecture
and recipe settings, crop and batch still set by ``--crop`` and ``--batch``; ``--bf16`` turns on the CPU's
bfloat16 autocast (``[train] cpu_bf16``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.registry import create_model, list_models  # noqa: E402
from train.config import load_config, merge  # noqa: E402
from train.distributed import Context  # noqa: E402
from train.recipes import RECIPES  # noqa: E402
from train.teacher import RotationTeacher, save_teacher  # noqa: E402
from train.trainer import to_channels_last  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", help="comma-separated models (default: all)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on the CPU")
    parser.add_argument("--schedule", help="a config file per model, {model} standing for its name")
    parser.add_argument("--teacher", choices=("rotation", "efficientnet"), default="rotation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)
    context = Context(rank=0, world=1, device=torch.device("cpu"))
    teacher = Path(tempfile.mkdtemp()) / "teacher.safetensors"
    save_teacher(RotationTeacher(), teacher, {"data": "benchmark", "steps": 0, "held_out_accuracy": 0.0})
    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(f"| model | recipe | samples/s ({args.crop} px, batch {args.batch}, {args.threads} threads, {precision}) "
          "| s/step |")
    print("|---|---|---|---|")
    for name in args.models.split(",") if args.models else list_models():
        torch.manual_seed(0)
        schedule = args.schedule.format(model=name) if args.schedule else None
        config = merge(load_config(name, schedule if schedule and Path(schedule).is_file() else None),
                       {"data": {"crop": args.crop, "batch_size": args.batch}, "train": {"cpu_bf16": args.bf16}})
        if config["recipe"] == "sp":
            config["loss"]["teacher"] = str(teacher) if args.teacher == "rotation" else "efficientnet"
        model = create_model(name, **config["architecture"]).train()
        if config["train"]["channels_last"]:  # as the trainer does
            to_channels_last(model)
        recipe = RECIPES[config["recipe"]](model, config, context)
        sharp = torch.rand(args.batch, 3, args.crop, args.crop)
        batch = {"blur": torch.roll(sharp, 3, dims=-1).add(sharp).div(2), "sharp": sharp}
        if config["train"]["channels_last"]:
            batch = {key: value.contiguous(memory_format=torch.channels_last) for key, value in batch.items()}
        recipe.step(batch)
        start = time.perf_counter()
        for _ in range(args.steps):
            recipe.step(batch)
        seconds = (time.perf_counter() - start) / args.steps
        print(f"| {name} | {config['recipe']} | {args.batch / seconds:.2f} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()
