"""A/B curves of training recipes: validation PSNR against training CPU seconds, one line per run.

    python benchmarks/training_curves.py --runs runs/trials/lmfn-a-paper runs/trials/lmfn-b-residual \
        --out benchmarks/results/lmfn-ab-residual.png --title "LMFN: input skip"

Each run folder is one written by ``python -m train`` (its ``log.jsonl``). The x axis is the training process's
CPU seconds (``cpu_seconds``, validation excluded; wall seconds for logs that predate it), so runs that shared
the machine compare fairly. The left panel is PSNR on the validation crops (``[train] val_max_side``, ``--max-side``), the
right one on whole frames resized as the app resizes them (``[train] val_preview``, ``--preview``) where the
runs logged it; the
dashed lines are the blurry input's scores on the same images. A table of each run's last and best values
is printed as Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.metrics import psnr  # noqa: E402
from train.data import ValidationPairs  # noqa: E402
from train.trainer import PreviewPairs  # noqa: E402


def input_scores(val: str, max_side: int, preview: int | None) -> dict[str, float]:
    """The blurry input's mean PSNR on the validation crops and, with ``preview``, on the resized frames."""
    def mean(pairs) -> float:
        return float(np.mean([
            psnr(pairs[i]["blur"].permute(1, 2, 0).numpy(), pairs[i]["sharp"].permute(1, 2, 0).numpy())
            for i in range(len(pairs))
        ]))

    scores = {"psnr": mean(ValidationPairs(val, max_side=max_side))}
    if preview:
        scores["psnr_preview"] = mean(PreviewPairs(ValidationPairs(val), preview))
    return scores


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, type=Path)
    parser.add_argument("--labels", nargs="+", help="one legend label per run (default: the folder names)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--title", default="")
    parser.add_argument("--val", default=str(ROOT.parent / "shared" / "data" / "gopro_dev"))
    parser.add_argument("--max-side", type=int, default=256, help="the runs' [train] val_max_side")
    parser.add_argument("--preview", type=int, default=320, help="the runs' [train] val_preview")
    args = parser.parse_args(argv)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error("give one label per run")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    max_side, preview = args.max_side, args.preview
    if not any("psnr_preview" in r for run in args.runs for r in read_log(run) if r["kind"] == "val"):
        preview = None
    baseline = input_scores(args.val, max_side, preview)
    keys = [("psnr", f"validation crops ({max_side} px centre)")]
    if preview:
        keys.append(("psnr_preview", f"whole frames at the app's {preview} px"))
    figure, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False)
    rows = []
    for run, label in zip(args.runs, labels):
        records = [r for r in read_log(run) if r["kind"] == "val"]
        seconds = [r.get("cpu_seconds", r["seconds"]) for r in records]
        for axis, (key, _) in zip(axes[0], keys):
            if records and key in records[0]:
                axis.plot(seconds, [r[key] for r in records], marker=".", label=label)
        last = records[-1] if records else {}
        rows.append((label, last.get("step"), seconds[-1] if seconds else None,
                     *(last.get(key) for key, _ in keys), *(max((r[key] for r in records if key in r), default=None)
                                                            for key, _ in keys)))
    for axis, (key, title) in zip(axes[0], keys):
        axis.axhline(baseline[key], color="grey", linestyle="--", label=f"blurry input {baseline[key]:.2f} dB")
        axis.set(xlabel="training CPU seconds", ylabel="PSNR (dB)", title=title)
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    figure.suptitle(args.title)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=90)
    names = [title for _, title in keys]
    print(f"| run | steps | CPU s | {' | '.join('last ' + n for n in names)} | {' | '.join('best ' + n for n in names)} |")
    print("|---" * (3 + 2 * len(keys)) + "|")
    print(f"| blurry input | | | {' | '.join(f'{baseline[k]:.2f}' for k, _ in keys)} | |" + " |" * (len(keys) - 1))
    for row in rows:
        cells = [str(row[0]), f"{row[1]:,}" if row[1] else "", f"{row[2]:.0f}" if row[2] else ""]
        cells += [f"{value:.2f}" if value is not None else "" for value in row[3:]]
        print("| " + " | ".join(cells) + " |")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
