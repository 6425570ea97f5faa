"""Command line of the library.

    python -m core info
    python -m core deblur --model NAME|all --input FILE|DIR --output DIR [--tile N] [--tta-steps N]
    python -m core evaluate --model NAME|all --data DIR [--output DIR] [--limit N] [--size N] [--baseline] [--zip]
                                                                            (pairs, or photos alone)
    python -m core kernels --model NAME|all --input FILE --output DIR [--at Y,X] [--size N]

``deblur``, ``evaluate`` and ``kernels`` run ``core.compare``, the engine of the app: the same outputs, the same
rows (columns, missing-value rules, reblur score), means, exports and remaining-blur kernels.

Bad arguments exit with code 2; a file that fails is named and the others go on, with exit code 1 at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from core.complexity import count_macs, parameter_count
from core.registry import create_model, get_card, list_models, shipped_architecture, shipped_weights

SIZES = ((256, 256), (720, 1280))


def info(_args: argparse.Namespace) -> int:
    """Registered (paper) networks, and under each one the shipped network where its checkpoint is reduced."""
    header = f"{'model':<14}{'year':>6}{'params':>12}" + "".join(f"{f'GMACs {w}x{h}':>18}" for h, w in SIZES)
    print(header + "  checkpoint")
    for name in list_models(include_reference=True):
        card = get_card(name)
        params = parameter_count(create_model(name))
        macs = "".join(f"{count_macs(name, h, w) / 1e9:>18.2f}" for h, w in SIZES)
        weights = "shipped" if shipped_weights(name).trained else "none (untrained)"
        reduced = shipped_architecture(name)
        print(f"{name:<14}{card.year:>6}{params / 1e6:>11.3f}M{macs}  {weights if not reduced else 'shipped network below'}")
        if reduced:
            params = parameter_count(create_model(name, **reduced))
            macs = "".join(f"{count_macs(name, h, w, **reduced) / 1e9:>18.2f}" for h, w in SIZES)
            print(f"{'  shipped':<14}{'':>6}{params / 1e6:>11.3f}M{macs}  shipped: {json.dumps(reduced)}")
        print(f"{'':<14}{card.paper} ({card.venue} {card.year})")
    return 0


def chosen_models(value: str, parser: argparse.ArgumentParser) -> list[str]:
    """The models named, or for "all" the five papers' and the reference models beside them (MAXIM)."""
    names = list_models(include_reference=True)
    if value == "all":
        return names
    chosen = [name.strip() for name in value.split(",")]
    unknown = [name for name in chosen if name not in names]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(names)} or all")
    return chosen


def folder_name(key: str) -> str:
    """Where a method's files go: its name, or for a checkpoint of the user's the file's stem and its model."""
    from core import own

    if not own.is_own(key):
        return key
    facts = own.checkpoint(key)
    return f"{Path(facts.file_name).stem}-{facts.model}"


def input_files(path: Path) -> list[tuple[Path, Path]]:
    """(file, its path relative to the input) for a file or every image under a folder."""
    from core.images import IMAGE_SUFFIXES

    if path.is_file():
        return [(path, Path(path.name))]
    return [(file, file.relative_to(path)) for file in sorted(path.rglob("*")) if file.suffix.lower() in IMAGE_SUFFIXES]


def deblur(args: argparse.Namespace) -> int:
    from core import compare as engine
    from core.images import ImageError, read_image, write_png

    models = args.models
    files = input_files(args.input)
    if not files:
        print(f"no images found under {args.input}", file=sys.stderr)
        return 1
    failures = []
    for file, relative in files:
        try:
            photo = engine.prepare_photo(str(file), read_image(file))
        except (ImageError, engine.PhotoError) as error:
            failures.append(str(error))
            print(f"skipped: {error}", file=sys.stderr)
            continue
        for name in models:
            target = args.output / folder_name(name) / relative if len(models) > 1 else args.output / relative
            target = target.with_suffix(".png")
            try:
                output, seconds = deblurred(photo, name, args)
            except (ValueError, RuntimeError) as error:  # e.g. out of memory
                failures.append(f"{file} ({name}): {error}")
                print(f"skipped: {file} ({name}): {error}", file=sys.stderr)
                continue
            write_png(target, output)
            print(f"{name}: {file} -> {target} ({seconds:.2f} s)")
    if failures:
        print(f"{len(failures)} of {len(files)} file(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def deblurred(photo, name: str, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    """One model's output for one photo (adapted at test time when asked: ``core.compare.adaptation``), and its seconds:
    ``core.compare``'s, as the app computes it."""
    from core import compare as engine

    if args.tta_steps:
        start = time.perf_counter()
        for step in engine.adaptation(photo, name, steps=args.tta_steps, lr=args.tta_lr, scored=False):
            if isinstance(step, engine.AdaptedStep):
                image = step.image  # the last step's, histogram-matched: the adaptation's output
        return image, time.perf_counter() - start
    output = engine.run_method(name, photo, tile=args.tile, return_maps=False)
    return output.image, output.seconds


def kernels(args: argparse.Namespace) -> int:
    """The app's "remaining blur at the point": for the input and every model's output, the kernel taking it to
    M_R of it (Reblur's Fig. 1), drawn as the app draws it, one PNG per method."""
    from core import compare as engine
    from core import visualize
    from core.images import ImageError, write_png

    try:
        photo, _ = engine.read_photo(args.input.name, args.input, None, args.size)
    except (ImageError, engine.PhotoError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not engine.kernel_fits(photo.image):
        print(f"error: {photo.name} is too small at this size to estimate a {engine.KERNEL_SIZE}x{engine.KERNEL_SIZE} "
              "kernel in", file=sys.stderr)
        return 1
    height, width = photo.image.shape[:2]
    point = args.at if args.at is not None else (height // 2, width // 2)
    if not (0 <= point[0] < height and 0 <= point[1] < width):
        print(f"error: the point {point[0]},{point[1]} lies outside the {width}x{height} photo", file=sys.stderr)
        return 1
    scorer, failures = engine.scorer(), []
    for key in [engine.INPUT, *args.models]:
        output = engine.run_method(key, photo, tile=args.tile, return_maps=False)
        try:
            kernel = engine.kernel_at(output.image, point, scorer)
        except ValueError as error:  # a flat region carries no information about blur
            failures.append(f"{key}: {error}")
            print(f"skipped: {key}: {error}", file=sys.stderr)
            continue
        target = args.output / f"{folder_name(key)}.png"
        write_png(target, visualize.kernel_image(kernel))
        print(f"{key}: kernel at y={point[0]}, x={point[1]} (M_R of {engine.scoring_model()}) -> {target}")
    return 1 if failures else 0


def point(value: str) -> tuple[int, int]:
    try:
        y, x = (int(part) for part in value.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected Y,X in pixels, got {value!r}") from error
    return y, x


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


# evaluation.json's keys for core.compare's columns (benchmarks/results.py reads them)
JSON_KEYS = {"PSNR (dB)": "psnr", "SSIM": "ssim", "LPIPS": "lpips", "NIQE": "niqe", "reblur score": "reblur",
             "seconds": "seconds", "parameters": "parameters", "weights": "weights"}


def json_row(row: dict) -> dict:
    """A row of ``core.compare`` for evaluation.json: the method's key under "model", a score as a number or null
    (a reason in words is null there; the CSV keeps it)."""
    from core.compare import is_number

    values = {key: row.get(column) if is_number(row.get(column)) or key == "weights" else None
              for column, key in JSON_KEYS.items()}
    extra = {"images": row["images"]} if "images" in row else {}
    return {"model": row["key"], "image": row["image"], **values, **extra}


def evaluate(args: argparse.Namespace) -> int:
    """The app's comparison (``core.compare``) over a folder: the same rows, means, columns and exports."""
    from core import compare as engine
    from core import metrics
    from core.images import ImageError
    from core.inference import machine_description

    pairs = evaluation_pairs(args.data)
    if not pairs:  # no sharp references: blurry photos only, scored without a reference (NIQE, reblur score)
        pairs = [(str(relative), file, None) for file, relative in input_files(args.data)]
    pairs = pairs[: args.limit or None]
    if not pairs:
        print(f"no blur/sharp pairs nor images found under {args.data}", file=sys.stderr)
        return 1
    lpips_ok, lpips_message = metrics.lpips_available()
    if not lpips_ok:
        print(f"note: {lpips_message}", file=sys.stderr)
    results, failures = [], []
    for label, blurry_path, sharp_path in pairs:
        try:  # a pair that cannot be read or run is named and left out; the others are scored
            photo, notes = engine.read_photo(label, blurry_path, sharp_path, args.size)
            if notes:  # a pair is scored against its reference or not at all
                raise engine.PhotoError("; ".join(notes))
            results.append(compared(photo, args))
        except (ImageError, ValueError, RuntimeError) as error:
            failures.append(f"{label}: {error}")
            print(f"skipped: {label}: {error}", file=sys.stderr)
    if not results:
        print("no pair could be scored:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    rows = [row for result in results for row in result.rows.values()]
    summary = engine.mean_rows(rows)
    print(f"{'model':<16}{'PSNR':>8}{'SSIM':>8}{'LPIPS':>8}{'NIQE':>8}{'reblur':>8}{'s/image':>9}")
    for row in map(json_row, summary):
        numbers = [math.nan if row[key] is None else row[key] for key in ("psnr", "ssim", "lpips", "niqe", "reblur")]
        seconds = math.nan if row["seconds"] is None else row["seconds"]
        print(f"{row['model']:<16}" + "".join(f"{value:>8.{digits}f}" for value, digits in zip(numbers, (2, 4, 4, 2, 4)))
              + f"{seconds:>9.2f}")
    if args.output:
        timed_on = f"{time.strftime('%Y-%m-%d')}, {machine_description()}"  # the seconds differ from machine to machine
        write_report(args.output, [json_row(row) | {"timed_on": timed_on} for row in summary],
                     [json_row(row) for row in rows],
                     table=engine.table_rows(results))
        if args.zip:
            engine.write_zip(args.output / "outputs.zip", results, args.output / "evaluation.csv")
    if failures:
        print(f"{len(failures)} of {len(pairs)} left out:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


def compared(photo, args: argparse.Namespace):
    """One photo through ``core.compare.compare``: the input, every model and (with --baseline) Richardson-Lucy."""
    from core import compare as engine

    for event in engine.compare([photo], args.models, with_baseline=args.baseline, tile=args.tile,
                                with_maps=False):
        if isinstance(event, engine.RowReady):
            row = event.result.rows[event.key]
            scores = " ".join(f"{column} {row[column]:.4g}" for column in engine.METRICS if engine.is_number(row[column]))
            print(f"{row['key']:<16} {photo.name}: {scores}", file=sys.stderr)
    return event.result


def write_report(folder: Path, summary: list[dict], rows: list[dict], table: list[dict] | None = None) -> None:
    """``evaluation.json`` (the summary and the rows, keyed as ``json_row`` keys them; a missing score as null)
    and ``evaluation.csv`` in ``folder``: ``table`` (``core.compare`` rows, with their means) written by
    ``core.compare.write_csv``, the app's columns and rules; without ``table`` (a merge of stored JSON rows), the
    same columns rebuilt from the JSON rows, where a missing score is an empty cell."""
    from core import compare as engine

    folder.mkdir(parents=True, exist_ok=True)
    if table is None:
        columns = {key: column for column, key in JSON_KEYS.items()}
        table = [{"method": engine.label(row["model"]), "image": row["image"],
                  **{column: row.get(key) for key, column in columns.items()}} for row in rows]
    engine.write_csv(folder / "evaluation.csv", table)
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
    run.add_argument("--model", help="a registered name, several separated by commas, or all")
    run.add_argument("--checkpoint", type=Path, action="append", default=[], metavar="FILE",
                     help="a .safetensors file made by `python -m train` (repeatable), run beside --model")
    run.add_argument("--input", required=True, type=Path, help="an image file or a folder (searched recursively)")
    run.add_argument("--output", required=True, type=Path, help="output folder; mirrors the input tree")
    run.add_argument("--tile", type=int, help="tile side in pixels (default: from a memory budget; 0: never tile)")
    run.add_argument("--tta-steps", type=int, default=0, help="test-time adaptation steps (Reblur's Eq. 7; models without an M_R borrow the shipped Reblur's)")
    run.add_argument("--tta-lr", type=float, default=3e-6, help="test-time adaptation learning rate (paper: 3e-6)")
    run.set_defaults(run=deblur)
    score = commands.add_parser("evaluate", help="the app's metrics table (PSNR, SSIM, LPIPS, NIQE, reblur score, "
                                                 "time) on blur/sharp pairs")
    score.add_argument("--model", help="a registered name, several separated by commas, or all")
    score.add_argument("--checkpoint", type=Path, action="append", default=[], metavar="FILE",
                     help="a .safetensors file made by `python -m train` (repeatable), run beside --model")
    score.add_argument("--data", required=True, type=Path,
                       help="GoPro layout (<seq>/blur, <seq>/sharp), blur/+sharp/, or photos alone (NIQE only)")
    score.add_argument("--output", type=Path, help="folder for evaluation.csv and evaluation.json")
    score.add_argument("--tile", type=int, help="tile side (default: from a memory budget)")
    score.add_argument("--limit", type=int, help="only the first N pairs")
    score.add_argument("--size", type=int,
                       help="shrink every photo (and its reference) to this longest side first, as the app does")
    score.add_argument("--baseline", action="store_true",
                       help="add the classical baseline (Richardson-Lucy, kernel estimated from the reference)")
    score.add_argument("--zip", action="store_true",
                       help="also write outputs.zip into --output: every output as lossless PNG, and the CSV")
    score.set_defaults(run=evaluate)
    blur = commands.add_parser("kernels", help="the remaining-blur kernel of each output at a point, as the app shows")
    blur.add_argument("--model", help="a registered name, several separated by commas, or all")
    blur.add_argument("--checkpoint", type=Path, action="append", default=[], metavar="FILE",
                     help="a .safetensors file made by `python -m train` (repeatable), run beside --model")
    blur.add_argument("--input", required=True, type=Path, help="an image file")
    blur.add_argument("--output", required=True, type=Path, help="folder for <method>.png")
    blur.add_argument("--at", type=point, help="the point, Y,X in pixels at the processing size (default: centre)")
    blur.add_argument("--size", type=int, help="shrink the photo to this longest side first, as the app does")
    blur.add_argument("--tile", type=int, help="tile side (default: from a memory budget)")
    blur.set_defaults(run=kernels)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in ("deblur", "evaluate", "kernels"):
        if not args.model and not args.checkpoint:
            parser.error("name a model (--model) or a checkpoint of your own (--checkpoint FILE)")
        args.models = chosen_models(args.model, parser) if args.model else []
        for file in args.checkpoint:
            from core import own

            try:
                args.models.append(own.register(file).key)
            except own.CheckpointError as error:
                parser.error(f"--checkpoint: {error}")
        source = args.data if args.command == "evaluate" else args.input
        if not source.exists():
            parser.error(f"{source} does not exist")
        if args.command == "deblur" and args.tta_steps < 0:
            parser.error("--tta-steps must be >= 0")
        if args.tile is not None and args.tile < 0:
            parser.error("--tile must be >= 0")
        if args.command == "evaluate" and args.zip and not args.output:
            parser.error("--zip needs --output")
        if getattr(args, "size", None) is not None and args.size < 16:
            parser.error("--size must be at least 16")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
