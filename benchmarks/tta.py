"""Does test-time adaptation (the reblurring paper's Algorithm 1) help the shipped models? PSNR on the ``gopro_dev``
pairs' centre crops and NIQE on Köhler's real camera shake after 0, 5, 10 and 20 steps at the paper's learning rate.

    python benchmarks/tta.py [--models all] [--steps 0 5 10 20] [--crop 256] [--pairs 11] [--kohler 4]
        [--kohler-crop 256] [--lr 3e-6]

For each model: ``core.tta.adapt_steps`` (the app's and the CLI's adaptation) on each blurry centre crop; a Reblur
model adapts its M_D against its own M_R, every other model its whole network against the M_R that scores every
output's reblur score (``core.compare.scoring_model``: the shipped Reblur's), as ``core.compare.adaptation`` does.
After each listed step: the Eq. 7 loss ||M_R(L) - L||_1 (that critic's), the PSNR against the sharp crop of the
image Algorithm 1 returns (histogram-matched to step 0's) and, on the first ``--kohler`` Köhler photos' centre
crops, its NIQE (lower is better). A run that diverges is reported with its message. Printed as a Markdown table
of means.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def centre_crop(image, side: int):
    height, width = image.shape[:2]
    top, left = max(0, (height - side) // 2), max(0, (width - side) // 2)
    return image[top : top + side, left : left + side]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="all", help="comma-separated, or all (every model the app offers)")
    parser.add_argument("--steps", nargs="+", type=int, default=[0, 5, 10, 20])
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--pairs", type=int, default=11, help="gopro_dev pairs used (the first N, in name order)")
    parser.add_argument("--kohler", type=int, default=4, help="Köhler photos scored by NIQE (0: none)")
    parser.add_argument("--kohler-crop", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-6)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    import numpy as np

    from core.compare import adaptation_critic
    from core.images import read_image
    from core.inference import load_model, set_cpu_threads, to_tensor
    from core.metrics import niqe, psnr, reblur_score
    from core.registry import list_models
    from core.tta import Adaptation, adapt_steps
    from train.data import ValidationPairs

    set_cpu_threads()
    pairs = ValidationPairs(args.data / "gopro_dev", max_side=args.crop)
    pairs = [pairs[index] for index in range(min(args.pairs, len(pairs)))]
    kohler = sorted((args.data / "real_blurry" / "kohler").glob("*.png"))[: args.kohler]
    kohler = [centre_crop(read_image(path), args.kohler_crop) for path in kohler]
    names = list_models(include_reference=True) if args.models == "all" else args.models.split(",")
    wanted = sorted(set(args.steps))
    print(f"{len(pairs)} gopro_dev centre crops of at most {args.crop} px; {len(kohler)} Köhler centre crops of "
          f"{args.kohler_crop} px (NIQE); lr {args.lr:g}\n")
    print("| model | M_R | steps | Eq. 7 loss | PSNR (dB) | PSNR gain (dB) | Köhler NIQE | NIQE change |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        model, trained = load_model(name)
        judge, critic = adaptation_critic(model)  # as core.compare.adaptation chooses it
        loss, score, quality = ({step: [] for step in wanted} for _ in range(3))
        notes: list[str] = []

        def run(blurry, on_step):
            with closing(adapt_steps(model, blurry, steps=max(wanted), lr=args.lr, critic=critic)) as events:
                for event in events:
                    if isinstance(event, Adaptation):
                        if event.diverged:
                            notes.append(event.message)
                        break
                    if event.step in loss:
                        on_step(event.step, event.image[0].permute(1, 2, 0).clamp(0, 1).numpy())

        for pair in pairs:
            sharp = pair["sharp"].permute(1, 2, 0).numpy()

            def on_pair(step, image, sharp=sharp):
                loss[step].append(reblur_score(image, judge))  # Eq. 7's mean |M_R(L) - L|
                score[step].append(psnr(image, sharp))

            run(pair["blur"][None], on_pair)
        for photo in kohler:
            run(to_tensor(photo), lambda step, image: quality[step].append(niqe(image)))
        base_psnr = np.mean(score[0]) if score[0] else None
        base_niqe = np.mean(quality[0]) if quality[0] else None
        borrowed = "own" if critic is None else "shipped Reblur's"
        for step in wanted:
            mean_psnr = f"{np.mean(score[step]):.3f}" if score[step] else ""
            gain = f"{np.mean(score[step]) - base_psnr:+.3f}" if score[step] and base_psnr is not None else ""
            mean_niqe = f"{np.mean(quality[step]):.3f}" if quality[step] else ""
            change = f"{np.mean(quality[step]) - base_niqe:+.3f}" if quality[step] and base_niqe is not None else ""
            mean_loss = f"{np.mean(loss[step]):.4e}" if loss[step] else ""
            print(f"| {name}{'' if trained else ' (untrained)'} | {borrowed} | {step} | {mean_loss} | {mean_psnr} | "
                  f"{gain} | {mean_niqe} | {change} |", flush=True)
        for note in sorted(set(notes)):
            print(f"| {name} | {borrowed} | diverged | {note} | | | | |", flush=True)


if __name__ == "__main__":
    main()
