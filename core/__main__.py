"""Command line of the library.

    python -m core info
    python -m core deblur --model NAME|all --input FILE|DIR --output DIR [--tile N] [--tta-steps N]
    python -m core evaluate --model NAME|all --data DIR [--output DIR] [--limit N]   (pairs, or photos alone)

Bad arguments exit with code 2; a file that fails is named and the others go on, with exit code 1 at the end.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from core.complexity import count_macs, parameter_count
from core.registry import checkpoint_path, create_model, get_card, list_models, shipped_architecture

SIZES = ((256, 256), (720, 1280))


def info(_args: argparse.Namespace) -> int:
    """Registered (paper) networks, and under each one the shipped network where its checkpoint is reduced."""
    header = f"{'model':<14}{'year':>6}{'params':>12}" + "".join(f"{f'GMACs {w}x{h}':>18}" for h, w in SIZES)
    print(header + "  checkpoint")
    for name in list_models():
        card = get_card(name)
        params = parameter_count(create_model(name))
        macs = "".join(f"{count_macs(name, h, w) / 1e9:>18.2f}" for h, w in SIZES)
        weights = "shipped" if checkpoint_path(name).is_file() else "none (untrained)"
        reduced = shipped_architecture(name)
        print(f"{name:<14}{card.year:>6}{params / 1e6:>11.3f}M{macs}  {weights if not reduced else 'reduced, below'}")
        if reduced:
            params = parameter_count(create_model(name, **reduced))
            macs = "".join(f"{count_macs(name, h, w, **reduced) / 1e9:>18.2f}" for h, w in SIZES)
            print(f"{'  shipped':<14}{'':>6}{params / 1e6:>11.3f}M{macs}  shipped: {json.dumps(reduced)}")
        print(f"{'':<14}{card.paper} ({card.venue} {card.year})")
    return 0


def chosen_models(value: str, parser: argparse.ArgumentParser) -> list[str]:
    names = list_models()
    if value == "all":
        return names
    chosen = [name.strip() for name in value.split(",")]
    unknown = [name for name in chosen if name not in names]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(names)} or all")
    return chosen


def input_files(path: Path) -> list[tuple[Path, Path]]:
    """(file, its path relative to the input) for a file or every image under a folder."""
    from core.images import IMAGE_SUFFIXES

    if path.is_file():
        return [(path, Path(path.name))]
    return [(file, file.relative_to(path)) for file in sorted(path.rglob("*")) if file.suffix.lower() in IMAGE_SUFFIXES]


def deblur(args: argparse.Namespace) -> int:
    from core.images import ImageError, read_image, write_png

    models = args.models
    files = input_files(args.input)
    if not files:
        print(f"no images found under {args.input}", file=sys.stderr)
        return 1
    failures = []
    for file, relative in files:
        try:
            image = read_image(file)
        except ImageError as error:
            failures.append(str(error))
            print(f"skipped: {error}", file=sys.stderr)
            continue
        for name in models:
            target = args.output / name / relative if len(models) > 1 else args.output / relative
            target = target.with_suffix(".png")
            try:
                output, seconds = deblurred(image, name, args)
            except (ValueError, RuntimeError) as error:  # e.g. too small for the model, or out of memory
                failures.append(f"{file} ({name}): {error}")
                print(f"skipped: {file} ({name}): {error}", file=sys.stderr)
                continue
            write_png(target, output)
            print(f"{name}: {file} -> {target} ({seconds:.2f} s)")
    if failures:
        print(f"{len(failures)} of {len(files)} file(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def deblurred(image: np.ndarray, name: str, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    """One model's output for one image (adapted at test time when asked and the model can), and its seconds."""
    from core.inference import load_model, restore, to_tensor, to_uint8

    model, _ = load_model(name)
    if args.tta_steps and hasattr(model, "reblur"):
        from core.tta import adapt

        start = time.perf_counter()
        adapted = adapt(model, to_tensor(image), steps=args.tta_steps, lr=args.tta_lr)
        return to_uint8(adapted.image), time.perf_counter() - start
    result = restore(image, name, tile=args.tile)
    return result.image, result.seconds


def evaluation_pairs(root: Path) -> list[tuple[str, Path, Path]]:
    """(name, blurry, sharp) for a GoPro layout (<seq>/blur, <seq>/sharp) or a flat blur/ + sharp/ folder."""
    folders = [root] if (root / "blur").is_dir() else sorted(p for p in root.iterdir() if (p / "blur").is_dir())
    pairs = []
    for folder in folders:
        for blurry in sorted((folder / "blur").iterdir()):
            sharp = folder / "sharp" / blurry.name
            if sharp.is_file():
                pairs.append((str(blurry.relative_to(root)), blurry, sharp))
    return pairs


def niqe_or_nan(image: np.ndarray) -> float:
    """NIQE, or NaN for an image smaller than its 96 x 96 blocks."""
    from core import metrics

    height, width = image.shape[:2]
    return metrics.niqe(image) if min(height, width) >= 96 else math.nan


def evaluate(args: argparse.Namespace) -> int:
    from core import metrics
    from core.images import ImageError

    pairs = evaluation_pairs(args.data)
    if not pairs:  # no sharp references: blurry photos only, scored without a reference (NIQE)
        pairs = [(str(relative), file, None) for file, relative in input_files(args.data)]
    pairs = pairs[: args.limit or None]
    if not pairs:
        print(f"no blur/sharp pairs nor images found under {args.data}", file=sys.stderr)
        return 1
    lpips_ok, lpips_message = metrics.lpips_available()
    if not lpips_ok:
        print(f"note: {lpips_message}", file=sys.stderr)
    rows, failures = [], []
    for label, blurry_path, sharp_path in pairs:
        try:  # a pair that cannot be read or run is named and left out; the others are scored
            scored = score_pair(label, blurry_path, sharp_path, args, lpips_ok)
        except (ImageError, ValueError, RuntimeError) as error:
            failures.append(f"{label}: {error}")
            print(f"skipped: {label}: {error}", file=sys.stderr)
            continue
        rows += scored
    if not rows:
        print("no pair could be scored:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    summary = []
    for name in ["input", *args.models]:
        mine = [row for row in rows if row["model"] == name]
        summary.append({"model": name, **{key: float(np.mean([row[key] for row in mine]))
                                          for key in ("psnr", "ssim", "lpips", "niqe", "seconds")}, "images": len(mine)})
    print(f"{'model':<12}{'PSNR':>8}{'SSIM':>8}{'LPIPS':>8}{'NIQE':>8}{'s/image':>9}")
    for row in summary:
        print(f"{row['model']:<12}{row['psnr']:>8.2f}{row['ssim']:>8.4f}{row['lpips']:>8.4f}{row['niqe']:>8.2f}{row['seconds']:>9.2f}")
    if args.output:
        write_report(args.output, summary, rows)
    if failures:
        print(f"{len(failures)} of {len(pairs)} left out:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def score_pair(label: str, blurry_path: Path, sharp_path: Path | None, args: argparse.Namespace, lpips_ok: bool):
    """The rows of one pair (or photo): the input and every model, with their metrics and seconds."""
    from core import metrics
    from core.images import read_image
    from core.inference import restore

    blurry = read_image(blurry_path)
    sharp = read_image(sharp_path) if sharp_path is not None else None
    if sharp is not None and sharp.shape != blurry.shape:
        raise ValueError(f"the sharp image is {sharp.shape[1]}x{sharp.shape[0]}, the blurry one "
                         f"{blurry.shape[1]}x{blurry.shape[0]}")
    if getattr(args, "size", None):  # the app's processing size: both images shrunk alike (Lanczos)
        from core.visualize import resize_longest

        blurry = resize_longest(blurry, args.size)
        sharp = None if sharp is None else resize_longest(sharp, args.size)
    candidates = [("input", blurry, 0.0)]
    for name in args.models:
        result = restore(blurry, name, tile=args.tile)
        candidates.append((name, result.image.astype(np.float32) / 255.0, result.seconds))
    rows = []
    for name, output, seconds in candidates:
        referenced = sharp is not None
        row = {"model": name, "image": label,
               "psnr": metrics.psnr(output, sharp) if referenced else math.nan,
               "ssim": metrics.ssim(output, sharp) if referenced else math.nan,
               "lpips": metrics.lpips_score(output, sharp) if lpips_ok and referenced else math.nan,
               "niqe": niqe_or_nan(output), "seconds": seconds}
        rows.append(row)
        print(f"{name:<12} {label}: PSNR {row['psnr']:.2f} SSIM {row['ssim']:.4f} NIQE {row['niqe']:.2f}",
              file=sys.stderr)
    return rows


def write_report(folder: Path, summary: list[dict], rows: list[dict]) -> None:
    """``evaluation.csv`` (one row per image and method; a missing score as nan) and ``evaluation.json``
    (the summary and the rows; a missing score as null) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "evaluation.csv").open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({key: math.nan if value is None else value for key, value in row.items()} for row in rows)
    report = {"summary": summary, "images": rows}
    (folder / "evaluation.json").write_text(json.dumps(json_safe(report), indent=2, allow_nan=False))


def json_safe(value):
    """NaN and infinities (an unavailable LPIPS, a PSNR of identical images) as JSON null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Deblurring workbench command line.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="every registered model: parameters, MACs at 256x256 and 1280x720").set_defaults(
        run=info
    )
    run = commands.add_parser("deblur", help="restore a photo or a folder of photos to lossless PNGs")
    run.add_argument("--model", required=True, help="a registered name, several separated by commas, or all")
    run.add_argument("--input", required=True, type=Path, help="an image file or a folder (searched recursively)")
    run.add_argument("--output", required=True, type=Path, help="output folder; mirrors the input tree")
    run.add_argument("--tile", type=int, help="tile side in pixels (default: from a memory budget; 0: never tile)")
    run.add_argument("--tta-steps", type=int, default=0, help="test-time adaptation steps (Reblur models only)")
    run.add_argument("--tta-lr", type=float, default=3e-6, help="test-time adaptation learning rate (paper: 3e-6)")
    run.set_defaults(run=deblur)
    score = commands.add_parser("evaluate", help="PSNR, SSIM, LPIPS, NIQE and time on blur/sharp pairs")
    score.add_argument("--model", required=True, help="a registered name, several separated by commas, or all")
    score.add_argument("--data", required=True, type=Path,
                       help="GoPro layout (<seq>/blur, <seq>/sharp), blur/+sharp/, or photos alone (NIQE only)")
    score.add_argument("--output", type=Path, help="folder for evaluation.csv and evaluation.json")
    score.add_argument("--tile", type=int, help="tile side (default: from a memory budget)")
    score.add_argument("--limit", type=int, help="only the first N pairs")
    score.add_argument("--size", type=int,
                       help="shrink every photo (and its reference) to this longest side first, as the app does")
    score.set_defaults(run=evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("deblur", "evaluate"):
        args.models = chosen_models(args.model, parser)
        source = args.input if args.command == "deblur" else args.data
        if not source.exists():
            parser.error(f"{source} does not exist")
        if args.command == "deblur" and args.tta_steps < 0:
            parser.error("--tta-steps must be >= 0")
        if args.tile is not None and args.tile < 0:
            parser.error("--tile must be >= 0")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
