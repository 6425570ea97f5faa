"""Does test-time adaptation (the reblurring paper's Algorithm 1) help the shipped Reblur models? Eq. 7 and PSNR
after 0, 5, 10 and 20 steps at the paper's learning rate, on the ``gopro_dev`` pairs' centre crops.

    python benchmarks/tta.py [--models reblur-n1,reblur-n2] [--steps 0 5 10 20] [--crop 256] [--lr 3e-6]

For each model and pair: ``core.tta.adapt_steps`` on the blurry centre crop (the app's and the CLI's
adaptation), the Eq. 7 loss ||M_R(L) - L||_1 and the PSNR against the sharp crop of the image Algorithm 1 returns after each
listed step (the output histogram-matched to step 0's). Printed as a Markdown table of means over the pairs.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="reblur-n1,reblur-n2")
    parser.add_argument("--steps", nargs="+", type=int, default=[0, 5, 10, 20])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-6)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "gopro_dev")
    args = parser.parse_args()

    import numpy as np

    from core.inference import load_model, set_cpu_threads
    from core.metrics import psnr, reblur_score
    from core.tta import Adaptation, adapt_steps
    from train.data import ValidationPairs

    set_cpu_threads()
    pairs = ValidationPairs(args.data, max_side=args.crop)
    wanted = sorted(set(args.steps))
    print(f"{len(pairs)} centre crops of at most {args.crop} px, lr {args.lr:g}\n")
    print("| model | steps | Eq. 7 loss | PSNR (dB) | gain over step 0 (dB) |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        model, trained = load_model(name)
        loss = {step: [] for step in wanted}
        score = {step: [] for step in wanted}
        for index in range(len(pairs)):
            pair = pairs[index]
            blurry, sharp = pair["blur"][None], pair["sharp"].permute(1, 2, 0).numpy()
            with closing(adapt_steps(model, blurry, steps=max(wanted), lr=args.lr)) as events:
                for event in events:
                    if isinstance(event, Adaptation):
                        break
                    if event.step in loss:
                        image = event.image[0].permute(1, 2, 0).clamp(0, 1).numpy()
                        loss[event.step].append(reblur_score(image, model))  # Eq. 7's mean |M_R(L) - L|
                        score[event.step].append(psnr(image, sharp))
        base = float(np.mean(score[0])) if score.get(0) else None
        for step in wanted:
            gain = f"{np.mean(score[step]) - base:+.3f}" if base is not None else ""
            print(f"| {name}{'' if trained else ' (untrained)'} | {step} | {np.mean(loss[step]):.4e} | "
                  f"{np.mean(score[step]):.3f} | {gain} |", flush=True)


if __name__ == "__main__":
    main()
