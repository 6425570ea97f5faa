"""The shipped checkpoints' scores: runs ``python -m core evaluate`` on gopro_dev and on the Köhler photos, writes
the scores into each model card (``checkpoints/<model>.json``) and the results table into the README.

    python benchmarks/results.py [--data ../shared/data] [--models all] [--sets gopro_dev,gopro_dev_320,kohler]
        [--skip-eval]

Three sets: the gopro_dev pairs at full size, the same pairs shrunk to the app's default 320 px processing size
(``evaluate --size 320``: both images resized as the app resizes them), and the Köhler photos (NIQE only).
Every model runs each image whole (``--tile 0``), as the papers evaluate: MAXIM's grid branches cut
the whole input into a fixed grid, so its tiles would not compute what the whole image does. The raw per-image
results stay in ``benchmarks/results/<set>/evaluation.{csv,json}``; ``--skip-eval``
rebuilds the cards and the table from them without running the models again.

Each model's summary row is stamped with the SHA-256 of the checkpoint it was measured on ("weights_sha256"), and the
cards and table are rebuilt only from rows whose digest matches the shipped file: after a new checkpoint is shipped,
``--skip-eval`` stops and names the models to measure again, rather than putting old scores on new weights. Rows
written before the stamp existed carry no digest: they are used, and a note names their models.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.__main__ import write_report  # noqa: E402
from core.registry import checkpoint_path, file_sha256, list_models, shipped_card  # noqa: E402
from train.data import seen_sequences  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- results:start -->", "<!-- results:end -->"
SETS = {"gopro_dev": ("gopro_dev", None), "gopro_dev_320": ("gopro_dev", 320), "kohler": ("real_blurry/kohler", None)}
PREVIEW = 320


def run_evaluations(data: Path, models: str, sets: list[str]) -> None:
    """Evaluate; with named models (not ``all``) only their rows are replaced in the stored results."""
    for key in sets:
        folder, size = SETS[key]
        whole = models == "all" or not (RESULTS / key / "evaluation.json").is_file()  # a new set: every model
        output = RESULTS / key if whole else RESULTS / key / f"partial-{os.getpid()}"  # two runs at once keep apart
        command = [sys.executable, "-m", "core", "evaluate", "--model", "all" if whole else models,
                   "--data", str(data / folder),
                   "--output", str(output), "--tile", "0", *(["--size", str(size)] if size else [])]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
        stamp_digests(output / "evaluation.json")
        if not whole:
            merge_partial(RESULTS / key, output)


def merge_partial(folder: Path, partial: Path) -> None:
    """Replace the stored rows of the models in ``partial`` (the input's rows too: recomputed, identical)."""
    stored = json.loads((folder / "evaluation.json").read_text())
    new = json.loads((partial / "evaluation.json").read_text())
    for part in ("summary", "images"):
        replaced = {row["model"] for row in new[part]}
        stored[part] = [row for row in stored[part] if row["model"] not in replaced] + new[part]
    write_report(folder, stored["summary"], stored["images"])
    for name in ("evaluation.json", "evaluation.csv"):
        (partial / name).unlink(missing_ok=True)
    partial.rmdir()


def weights_digest(name: str) -> str | None:
    """SHA-256 of the model's shipped checkpoint file, None for a model without one (the input, a baseline)."""
    if name not in list_models(include_reference=True):
        return None
    path = checkpoint_path(name)
    return file_sha256(path) if path.is_file() else None


def stamp_digests(report: Path) -> None:
    """Write into each summary row the digest of the checkpoint its model was measured on (the file has not changed
    since: the evaluation has just run on it)."""
    stored = json.loads(report.read_text())
    for row in stored["summary"]:
        digest = weights_digest(row["model"])
        if digest:
            row["weights_sha256"] = digest
    report.write_text(json.dumps(stored, indent=2, allow_nan=False))


def stale_scores(scores: dict[str, dict[str, dict]]) -> tuple[dict[str, list[str]], list[str]]:
    """({model: [sets whose row was measured on other weights than the shipped file]}, [models whose rows carry no
    digest]): the first must be measured again before a card or the table shows them."""
    stale, unchecked = {}, set()
    digest = functools.cache(weights_digest)  # each file hashed once, not once per set
    for key, rows in scores.items():
        for name, row in rows.items():
            if name not in list_models(include_reference=True):
                continue
            recorded, shipped = row.get("weights_sha256"), digest(name)
            if recorded is None:
                unchecked.add(name)
            elif recorded != shipped:
                stale.setdefault(name, []).append(key)
    return stale, sorted(unchecked)


def summaries() -> dict[str, dict[str, dict]]:
    """{set: {model: summary row}} from the evaluation JSON files."""
    found = {}
    for key in SETS:
        path = RESULTS / key / "evaluation.json"
        report = json.loads(path.read_text()) if path.is_file() else {"summary": []}
        found[key] = {row["model"]: row for row in report["summary"]}
    return found


def update_cards(scores: dict[str, dict[str, dict]]) -> None:
    gopro, kohler, preview = scores["gopro_dev"], scores["kohler"], scores["gopro_dev_320"]
    for name in list_models(include_reference=True):
        card = shipped_card(name)
        if card is None or (name not in gopro and name not in preview):
            continue
        card["scores"] = {**card.get("scores", {}),  # what other commands measured (MAXIM's conversion) stays
            **({"gopro_dev": {"psnr": gopro[name]["psnr"], "ssim": gopro[name]["ssim"],
                              "input_psnr": gopro["input"]["psnr"], "input_ssim": gopro["input"]["ssim"],
                              "niqe": gopro[name].get("niqe"), "input_niqe": gopro["input"].get("niqe"),
                              "images": gopro[name]["images"], "seconds_per_image": gopro[name]["seconds"],
                              **({"timed_on": gopro[name]["timed_on"]} if gopro[name].get("timed_on") else {})}}
               if name in gopro else {}),
            **({f"gopro_dev_at_{PREVIEW}px": {"psnr": preview[name]["psnr"], "ssim": preview[name]["ssim"],
                                              "input_psnr": preview["input"]["psnr"],
                                              "input_ssim": preview["input"]["ssim"]}} if name in preview else {}),
            **({"kohler": {"niqe": kohler[name]["niqe"], "input_niqe": kohler["input"]["niqe"],
                           "images": kohler[name]["images"]}} if name in kohler else {}),
            "command": "python benchmarks/results.py",
        }
        checkpoint_path(name).with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def number(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def signed(value, reference) -> str:
    return "n/a" if value is None or reference is None else f"{value - reference:+.2f}"


def table(scores: dict[str, dict[str, dict]]) -> str:
    gopro, kohler, preview = scores["gopro_dev"], scores["kohler"], scores["gopro_dev_320"]
    empty = {"psnr": None, "ssim": None}
    lines = [
        f"| model | weights | gopro_dev PSNR (dB) | gain | SSIM | NIQE | at {PREVIEW} px: PSNR | gain | SSIM | "
        "Köhler NIQE (lower is better) | s / 1280x720 image | timed on |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| blurry input | - | {number(gopro['input']['psnr'], 2)} | - | {number(gopro['input']['ssim'], 4)} | "
        f"{number(gopro['input'].get('niqe'), 2)} | "
        f"{number(preview.get('input', empty)['psnr'], 2)} | - | {number(preview.get('input', empty)['ssim'], 4)} | "
        f"{number(kohler['input']['niqe'], 2)} | - | - |",
    ]
    for name in list_models(include_reference=True):  # the five papers' variants, then the reference (MAXIM)
        if name not in gopro and name not in preview:
            continue
        card = shipped_card(name)
        weights = card["headline"] if card else "untrained (random weights)"
        small, full = preview.get(name, empty), gopro.get(name, {**empty, "seconds": None})
        lines.append(
            f"| {name} | {weights} | {number(full['psnr'], 2)} | {signed(full['psnr'], gopro['input']['psnr'])} | "
            f"{number(full['ssim'], 4)} | {number(full.get('niqe'), 2)} | {number(small['psnr'], 2)} | "
            f"{signed(small['psnr'], preview.get('input', empty)['psnr'])} | {number(small['ssim'], 4)} | "
            f"{number(kohler.get(name, {'niqe': None})['niqe'], 2)} | {number(full['seconds'], 2)} | "
            f"{full.get('timed_on') or 'not recorded (before timings named their machine)'} |"
        )
    images = gopro["input"]["images"], kohler["input"]["images"]
    lines.append("")
    lines.append(f"{images[0]} gopro_dev pairs (full 1280x720 frames, and the same pairs shrunk to the app's default "
                 f"{PREVIEW} px as the app shrinks them: `evaluate --size {PREVIEW}`) and {images[1]} Köhler photos; "
                 "NIQE on the full gopro_dev frames beside the Köhler photos' (the sharp frames' own: "
                 "`python benchmarks/niqe_pairs.py`); written by `python benchmarks/results.py` from `python -m core evaluate`.")
    return "\n".join(lines)


def image_rows(key: str) -> list[dict]:
    path = RESULTS / key / "evaluation.json"
    return json.loads(path.read_text())["images"] if path.is_file() else []


def gains_by_scene(rows: list[dict], seen: set[str]) -> dict[str, dict[bool, list[float]]]:
    """{model: {seen?: [PSNR gain over the input, per pair]}}: a pair is "seen" when its sequence (the first part of
    its image path) is one of ``seen``, the sequences whose frames the training data holds."""
    inputs = {row["image"]: row["psnr"] for row in rows if row["model"] == "input"}
    gains: dict[str, dict[bool, list[float]]] = {}
    for row in rows:
        if row["model"] == "input" or row["psnr"] is None or row["image"] not in inputs:
            continue
        sequence = Path(row["image"]).parts[0]
        gains.setdefault(row["model"], {True: [], False: []})[sequence in seen].append(row["psnr"] - inputs[row["image"]])
    return gains


def scene_table(seen: set[str]) -> str:
    """The PSNR gains of the results table split by scene: the pairs of a sequence the training frames come from,
    and the pairs of the sequences no training data shows."""
    full, small = gains_by_scene(image_rows("gopro_dev"), seen), gains_by_scene(image_rows("gopro_dev_320"), seen)

    def cell(gains: dict[str, dict[bool, list[float]]], name: str, key: bool) -> str:
        values = gains.get(name, {}).get(key, [])
        return f"{sum(values) / len(values):+.2f}" if values else "n/a"

    counts = {key: len(next(iter(full.values()), {}).get(key, [])) for key in (True, False)}
    lines = [
        f"| model | gain, scene seen in training ({counts[True]} pairs) | gain, unseen scenes ({counts[False]} pairs) | "
        f"at {PREVIEW} px: seen | at {PREVIEW} px: unseen |",
        "|---|---|---|---|---|",
    ]
    for name in list_models(include_reference=True):
        if name in full or name in small:
            lines.append(f"| {name} | {cell(full, name, True)} | {cell(full, name, False)} | {cell(small, name, True)} | "
                         f"{cell(small, name, False)} |")
    lines.append("")
    lines.append(f"The same rows split by scene: a pair is of a seen scene when its sequence ({', '.join(sorted(seen))}) "
                 "is one whose frames `../shared/data/gopro_frames` holds (its own frames and 6 either side are held out "
                 "of training, its scene is not); the mean gain over the input's PSNR, per pair.")
    return "\n".join(lines)


def update_readme(text: str, start: str = START, end: str = END) -> None:
    """Replace the README's text between the ``start`` and ``end`` markers (also used by readme_info.py)."""
    readme = ROOT / "README.md"
    content = readme.read_text()
    if start not in content or end not in content:
        raise SystemExit(f"README.md has no {start} ... {end} block to fill")
    before, rest = content.split(start, 1)
    _, after = rest.split(end, 1)
    readme.write_text(f"{before}{start}\n{text}\n{end}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--models", default="all")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--skip-eval", action="store_true", help="reuse benchmarks/results/*/evaluation.json")
    args = parser.parse_args(argv)
    sets = args.sets.split(",")
    unknown = [key for key in sets if key not in SETS]
    if unknown:
        parser.error(f"unknown sets {unknown}; choose from {', '.join(SETS)}")
    if not args.skip_eval:
        run_evaluations(args.data, args.models, sets)
    scores = summaries()
    stale, unchecked = stale_scores(scores)
    if stale:
        names = ",".join(sorted(stale))
        print("error: scores measured on other weights than the shipped checkpoints: "
              + "; ".join(f"{name} ({', '.join(keys)})" for name, keys in sorted(stale.items()))
              + f". Measure them again: python benchmarks/results.py --models {names}", file=sys.stderr)
        return 1
    if unchecked:
        print(f"note: the stored scores of {', '.join(unchecked)} carry no weights digest (measured before the stamp "
              "existed): not checked against the shipped files", file=sys.stderr)
    update_cards(scores)
    text = table(scores) + "\n\n" + scene_table(seen_sequences(args.data / "gopro_frames"))
    update_readme(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
