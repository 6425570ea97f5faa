"""The trainer's validation (``train.trainer.validate``) of checkpoints, each ``gopro_dev`` sequence apart.

    python benchmarks/validation_by_sequence.py [--models fcn,reblur-n1] [--checkpoints runs/x/best.safetensors ...]
        [--val ../shared/data/gopro_dev] [--threads 1]

Prints, for the blurry input and each shipped model (``--models``) or checkpoint file made by ``python -m train``
(``--checkpoints``), the mean PSNR of the 256 px centre crops and of the whole frames at the app's 320 px preview,
over all pairs and per sequence: what a training run logs as ``psnr``, ``psnr_preview`` and their
``*_by_sequence``. A sequence whose frames a training run saw (``../shared/data/gopro_frames``) is marked "seen":
its pairs' own frames are held out of training, its scene is not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.own import read_checkpoint  # noqa: E402
from core.registry import create_model  # noqa: E402
from train.config import DEFAULTS  # noqa: E402
from train.data import ValidationPairs, seen_sequences  # noqa: E402
from train.distributed import Context  # noqa: E402
from train.trainer import PreviewPairs, validate  # noqa: E402

PREVIEW = 320
CPU = Context(rank=0, world=1, device=torch.device("cpu"))


class Identity(torch.nn.Module):
    """The blurry input as a 'model': the line every gain is measured from."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def scores(model: torch.nn.Module, crops: ValidationPairs, frames: PreviewPairs) -> tuple[dict, dict]:
    with torch.inference_mode():
        return validate(model.eval(), crops, CPU), validate(model.eval(), frames, CPU)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated shipped models")
    parser.add_argument("--checkpoints", nargs="*", default=[], type=Path)
    parser.add_argument("--val", type=Path, default=ROOT.parent / "shared" / "data" / "gopro_dev")
    parser.add_argument("--frames", type=Path, default=ROOT.parent / "shared" / "data" / "gopro_frames")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    crops = ValidationPairs(args.val, max_side=DEFAULTS["train"]["val_max_side"])
    frames = PreviewPairs(ValidationPairs(args.val), PREVIEW)
    seen = seen_sequences(args.frames)
    entries = [("blurry input", Identity())]
    entries += [(name, create_model(name, pretrained=True)) for name in filter(None, args.models.split(","))]
    entries += [(str(path), read_checkpoint(path)[1]) for path in args.checkpoints]
    sequences = None
    for label, model in entries:
        crop, preview = scores(model, crops, frames)
        if sequences is None:
            sequences = sorted(crop["by_sequence"], key=lambda name: (name not in seen, name))
            heads = [f"{name}{' (seen)' if name in seen else ''}" for name in sequences]
            print("| weights | crops: all | " + " | ".join(f"crops: {head}" for head in heads) + f" | {PREVIEW} px: all | "
                  + " | ".join(f"{PREVIEW} px: {head}" for head in heads) + " |")
            print("|---" * (2 * len(sequences) + 3) + "|")
        print(f"| {label} | {crop['psnr']:.3f} | " + " | ".join(f"{crop['by_sequence'][name]:.3f}" for name in sequences)
              + f" | {preview['psnr']:.3f} | " + " | ".join(f"{preview['by_sequence'][name]:.3f}" for name in sequences)
              + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
