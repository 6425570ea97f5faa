"""Command line of the training sub-project.

    python -m train --model NAME --data PATH [PATH ...] --out DIR [--config FILE] [--max-steps N] [--resume]
    python -m train teacher --data PATH [PATH ...] --out FILE [--steps N]
    python -m train ship --run DIR --model NAME          (weights + model card into checkpoints/)
    torchrun --nproc-per-node 2 -m train --model NAME ...      (data parallel, gloo on CPU / NCCL on CUDA)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_VAL = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gopro_dev"


def train_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m train", description="Train a registered model with its paper's recipe.")
    parser.add_argument("--model", required=True, help="registered model name (python -m core info lists them)")
    parser.add_argument("--data", nargs="+", required=True, help="GoPro-layout pairs, frame folders or sharp photos")
    parser.add_argument("--out", required=True, type=Path, help="output folder (state, log, curves, weights, card)")
    parser.add_argument("--config", help="a TOML file overriding train/configs/<model>.toml")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (the schedule keeps its length)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from <out>/state.pt")
    parser.add_argument("--val", default=str(DEFAULT_VAL) if DEFAULT_VAL.is_dir() else None,
                        help="held-out GoPro-layout validation folder (default: ../shared/data/gopro_dev)")
    parser.add_argument("--no-val", action="store_true", help="skip validation")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)

    from core.registry import list_models
    from train.config import load_config
    from train.distributed import initialise, shutdown
    from train.trainer import train

    if args.model not in list_models():
        parser.error(f"unknown model {args.model!r}; choose from {', '.join(list_models())}")
    for path in args.data:
        if not Path(path).exists():
            parser.error(f"--data path does not exist: {path}")
    try:
        config = load_config(args.model, args.config)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    from train.memory import DoesNotFit

    context = initialise(args.device)
    try:
        card = train(model_name=args.model, data=args.data, out=args.out, config=config, context=context,
                     max_steps=args.max_steps, resume=args.resume, val=None if args.no_val else args.val)
    except DoesNotFit as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    if context.main:
        print(f"wrote {args.out}/last.safetensors and card.json; best validation: {card.get('validation_best')}")
    return 0


def teacher_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m train teacher",
                                     description="Train SP's label-free rotation teacher on sharp images.")
    parser.add_argument("--data", nargs="+", required=True, help="sharp photos, frame folders or GoPro pairs")
    parser.add_argument("--out", required=True, type=Path, help="output .safetensors (a .json card is written beside)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if _cuda() else "cpu")
    args = parser.parse_args(argv)

    import numpy as np

    from train.data import build_dataset
    from train.teacher import save_teacher, train_rotation_teacher

    dataset = build_dataset(args.data, crop=args.crop, seed=args.seed, length=100_000)
    held_out = build_dataset(args.data, crop=args.crop, seed=args.seed + 1, length=256)
    def progress(step: int, history: dict) -> None:
        if step % 50 == 0 or step == args.steps:
            recent = slice(-50, None)
            print(f"step {step}: loss {np.mean(history['loss'][recent]):.3f}, "
                  f"batch accuracy {np.mean(history['accuracy'][recent]):.3f}", flush=True)

    teacher, history = train_rotation_teacher(dataset, args.steps, args.batch_size, args.lr, args.seed, args.device,
                                              held_out=held_out, progress=progress)
    card = {"data": [str(p) for p in args.data], "steps": args.steps,
            "held_out_accuracy": history["held_out_accuracy"], "batch_size": args.batch_size, "crop": args.crop}
    save_teacher(teacher, args.out, card)
    print(f"wrote {args.out}; held-out rotation accuracy {history['held_out_accuracy']:.3f}")
    return 0


def ship_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m train ship",
                                     description="Copy a run's weights into checkpoints/ with a model card.")
    parser.add_argument("--run", required=True, type=Path, help="a folder written by python -m train")
    parser.add_argument("--model", required=True, help="the registered model the run trained")
    parser.add_argument("--weights", default="best.safetensors",
                        help="file in the run folder (default: best; step-NNNNNN.safetensors: a kept step's)")
    parser.add_argument("--chosen-by", help="what chose a kept step's weights (required for one), for the card")
    parser.add_argument("--data", type=Path, default=DEFAULT_VAL if DEFAULT_VAL.is_dir() else None,
                        help="pairs on which the float16 cost is measured (default: ../shared/data/gopro_dev)")
    args = parser.parse_args(argv)
    for needed in (args.run / args.weights, args.run / "card.json"):
        if not needed.is_file():
            parser.error(f"{needed} does not exist")

    from train.ship import ship

    try:
        card = ship(args.run, args.model, weights=args.weights, data=args.data, chosen_by=args.chosen_by)
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote checkpoints/{args.model}.safetensors ({card['precision']}) and {args.model}.json: {card['headline']}")
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["teacher"]:
        return teacher_command(argv[1:])
    if argv[:1] == ["ship"]:
        return ship_command(argv[1:])
    return train_command(argv)


if __name__ == "__main__":
    sys.exit(main())
