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

    python benchmarks/training_curves.py --cards checkpoints/sp-unet.json checkpoints/lmfn.json \
        --out benchmarks/results/training/stages.png --target-gain 1.0

draws the shipped checkpoints' whole training instead, from their cards (``runs/`` is not shipped): every stage
one after the other on a cumulative CPU-seconds axis, each stage's validations where its card kept them
(``validation_history``, written by ``python -m train ship`` since 2026-12-04) and its best validation alone where
it did not (its wall seconds then stand in for CPU seconds). With ``--target-gain`` a line ``a + b ln(t)`` is
fitted to the last stage's validations of each card (those of its second half, past the warm-up's rise) and
drawn on to the target, the crops' input plus the gain: an extrapolation, printed with the CPU seconds at which it
would reach the target, not a measurement.
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
from train.data import ValidationPairs, pair_sequence  # noqa: E402
from train.trainer import PreviewPairs  # noqa: E402


def input_scores(val: str, max_side: int, preview: int | None, sequence: str | None = None) -> dict[str, float]:
    """The blurry input's mean PSNR on the validation crops and, with ``preview``, on the resized frames; with
    ``sequence``, on that sequence's pairs only."""
    def mean(pairs) -> float:
        return float(np.mean([
            psnr(pairs[i]["blur"].permute(1, 2, 0).numpy(), pairs[i]["sharp"].permute(1, 2, 0).numpy())
            for i in range(len(pairs)) if sequence is None or pair_sequence(pairs[i]["name"]) == sequence
        ]))

    scores = {"psnr": mean(ValidationPairs(val, max_side=max_side))}
    if preview:
        scores["psnr_preview"] = mean(PreviewPairs(ValidationPairs(val), preview))
    return scores


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def card_curve(card: dict) -> tuple[list[tuple[float, float, float | None]], list[tuple[float, float]]]:
    """A shipped card's training as ``(points, last)``: every known validation ``(cumulative CPU s, crops' PSNR,
    320 px PSNR)`` across its stages, and the last stage's ``(cumulative CPU s, crops' PSNR)`` history."""
    stages = card.get("stages") or [card]
    points, last, offset = [], [], 0.0
    for stage in stages:
        history = stage.get("validation_history") or []
        if history:
            rows = [(offset + seconds, value, preview) for _, seconds, value, preview in history]
        else:
            best = stage.get("validation_best") or {}
            rows = [(offset + stage["wall_seconds"], best["psnr"], best.get("psnr_preview"))] if best else []
        points += rows
        last = [(seconds, value) for seconds, value, _ in rows] if history else []
        # the next stage continued the shipped step's weights: its CPU seconds, not those of the run's later steps
        shipped = next((seconds for step, seconds, _, _ in history if step == stage["steps"]), None)
        offset += shipped if shipped is not None else (history[-1][1] if history else stage["wall_seconds"])
    return points, last


def log_fit(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """``(a, b)`` of ``psnr = a + b ln(t)`` by least squares on the second half of ``points`` (at least 3)."""
    tail = points[len(points) // 2:]
    if len(tail) < 3:
        return None
    b, a = np.polyfit(np.log([t for t, _ in tail]), [v for _, v in tail], 1)
    return float(a), float(b)


def plot_cards(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    baseline = input_scores(args.val, args.max_side, args.preview)
    figure, axes = plt.subplots(1, 2, figsize=(10.4, 3.8))
    target = baseline["psnr"] + args.target_gain if args.target_gain else None
    print("| model | stages | CPU s so far | best crops (dB) | fit: dB per doubling of CPU s | CPU s to the target (extrapolated) |")
    print("|---|---|---|---|---|---|")
    for path in args.cards:
        card = json.loads(Path(path).read_text())
        points, last = card_curve(card)
        label = card["model"]
        for axis, index in zip(axes, (1, 2)):
            shown = [(p[0], p[index]) for p in points if p[index] is not None]
            axis.plot([t for t, _ in shown], [v for _, v in shown], marker=".", label=label)
        fit = log_fit(last) if target else None
        reach = ""
        slope = ""
        if fit:
            a, b = fit
            slope = f"{b * np.log(2):+.3f}"
            if b > 0:
                when = float(np.exp((target - a) / b))
                reach = f"{when:,.0f}"
                # drawn at most to 100 times the CPU seconds so far (the table gives the whole figure)
                ts = np.geomspace(last[len(last) // 2][0], min(max(when, last[-1][0]), 100 * last[-1][0]), 50)
                axes[0].plot(ts, a + b * np.log(ts), linestyle=":", color=axes[0].lines[-1].get_color(),
                             label=f"{label}: log fit, extrapolated")
            else:
                reach = "never (flat or falling)"
        stages = len(card.get("stages") or [card])
        print(f"| {label} | {stages} | {points[-1][0]:,.0f} | {max(v for _, v, _ in points):.2f} | {slope} | {reach} |")
    for axis, key, title in zip(axes, ("psnr", "psnr_preview"),
                                (f"validation crops ({args.max_side} px centre)", f"whole frames at the app's {args.preview} px")):
        axis.axhline(baseline[key], color="grey", linestyle="--", label=f"blurry input {baseline[key]:.2f} dB")
        axis.set(xlabel="training CPU seconds, all stages", ylabel="PSNR (dB)", title=title)
        axis.grid(alpha=0.3)
    if target:
        axes[0].axhline(target, color="black", linestyle="-.", linewidth=0.8, label=f"input + {args.target_gain:g} dB")
    for axis in axes:  # stages of very different lengths: a log axis, ticks at 1, 2 and 5 of each decade (1 beyond two decades)
        axis.set_xscale("log")
        low, high = axis.get_xlim()
        axis.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if high / low < 100 else (1.0,)))
        axis.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        axis.xaxis.set_minor_formatter(NullFormatter())
    for axis in axes:
        axis.legend(fontsize=7)
    figure.suptitle(args.title)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--runs", nargs="+", type=Path, help="run folders written by python -m train")
    source.add_argument("--cards", nargs="+", type=Path, help="shipped model cards (checkpoints/<model>.json)")
    parser.add_argument("--target-gain", type=float, help="with --cards: extrapolate each card's last stage to the "
                                                          "crops' input PSNR plus this gain (dB)")
    parser.add_argument("--labels", nargs="+", help="one legend label per run (default: the folder names)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--title", default="")
    parser.add_argument("--val", default=str(ROOT.parent / "shared" / "data" / "gopro_dev"))
    parser.add_argument("--max-side", type=int, default=256, help="the runs' [train] val_max_side")
    parser.add_argument("--preview", type=int, default=320, help="the runs' [train] val_preview")
    parser.add_argument("--sequence", help="with --runs: one gopro_dev sequence's pairs only (logged as "
                                           "psnr_by_sequence since 2026-12-06)")
    args = parser.parse_args(argv)
    if args.cards:
        return plot_cards(args)
    labels = args.labels or [run.name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error("give one label per run")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    max_side, preview = args.max_side, args.preview
    if not any("psnr_preview" in r for run in args.runs for r in read_log(run) if r["kind"] == "val"):
        preview = None
    baseline = input_scores(args.val, max_side, preview, args.sequence)
    keys = [("psnr", f"validation crops ({max_side} px centre)")]
    if preview:
        keys.append(("psnr_preview", f"whole frames at the app's {preview} px"))
    if args.sequence:
        keys = [(key, f"{title}, {args.sequence}") for key, title in keys]

    def value(record: dict, key: str):
        return record.get(f"{key}_by_sequence", {}).get(args.sequence) if args.sequence else record.get(key)

    figure, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.8), squeeze=False)
    rows = []
    for run, label in zip(args.runs, labels):
        records = [r for r in read_log(run) if r["kind"] == "val" and value(r, "psnr") is not None]
        seconds = [r.get("cpu_seconds", r["seconds"]) for r in records]
        for axis, (key, _) in zip(axes[0], keys):
            if records and value(records[0], key) is not None:
                axis.plot(seconds, [value(r, key) for r in records], marker=".", label=label)
        last = records[-1] if records else {}
        rows.append((label, last.get("step"), seconds[-1] if seconds else None,
                     *(value(last, key) for key, _ in keys),
                     *(max((value(r, key) for r in records if value(r, key) is not None), default=None)
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
