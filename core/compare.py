"""Comparing methods on photos: the one engine behind the app and ``python -m core evaluate`` / ``deblur``.

Photos in (each with an optional sharp reference, brought to a processing size by ``prepare_photo``); out come,
for every method -- the blurry input itself (``INPUT``), the classical baseline (``BASELINE``: Richardson-Lucy
with the kernel estimated from the reference) and any registered model -- its output and maps, its metrics row
(``COLUMNS``), the mean per method over several photos (``table_rows``), the remaining-blur kernel of any output
at a point (``kernel_at``), and the exports: the rows as CSV (``write_csv``) and every output as lossless PNG in
a ZIP (``write_zip``). ``compare`` streams one event as each output exists and one as its row is complete, so a
caller can show each method as soon as it finished. ``adaptation`` streams the reblurring paper's test-time
adaptation with a metrics row per step.

Missing values follow one rule everywhere: a score that does not apply is left out of its row or given as a
reason in words ("needs a reference", "needs 96 px", "unavailable offline"); the CSV writes that reason or
nothing, the JSON of ``evaluate`` writes null, the app shows the reason or a dash.

Nothing here names a model: methods come from the registry, "trained?" and parameter counts from the shipped
card (``core.registry.shipped_weights``), and the reblur score's M_R from the variants whose card declares a
"reblurred" map.
"""

from __future__ import annotations

import csv
import math
import shutil
import time
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core import own, timing, tta, visualize
from core.diagnostics import estimate_kernel, remaining_blur_kernel, richardson_lucy
from core.images import ImageError, read_image, write_png
from core.inference import default_device, load_model, restore, to_tensor, to_uint8
from core.metrics import LPIPS_MIN_SIDE, MetricUnavailable, lpips_score, niqe, psnr, reblur_score, ssim
from core.models.base import MIN_SIDE
from core.registry import get_card, list_models, shipped_weights

INPUT = "input"  # the blurry photo itself, as a method of the comparison
BASELINE = "richardson-lucy"
REFERENCE = "reference"  # the sharp reference, shown beside the outputs (never a row)
LABELS = {INPUT: "Blurry input", BASELINE: "Richardson-Lucy", REFERENCE: "Sharp reference"}
BASELINE_ITERATIONS = 30
KERNEL_SIZE = 31  # blur kernels estimated and shown: 31 x 31, as core.blur draws them
KERNEL_WINDOW = 4 * KERNEL_SIZE  # pixels around a point used to estimate its remaining-blur kernel
KERNEL_MARGIN = 16  # extra pixels fed to M_R around that window (its 5x5 convolutions see beyond the window)
NIQE_MIN_SIDE = 96  # NIQE's blocks

COLUMNS = ["method", "PSNR (dB)", "SSIM", "LPIPS", "NIQE", "reblur score", "seconds", "parameters", "weights", "image"]
METRICS = ["PSNR (dB)", "SSIM", "LPIPS", "NIQE", "reblur score"]
NEEDS_REFERENCE = "needs a reference"
LPIPS_OFFLINE = "unavailable offline"
PENDING = "computing…"


class PhotoError(ValueError):
    """A photo that cannot be compared (too small at the processing size), with a message a person understands."""


@dataclass
class Photo:
    name: str
    image: np.ndarray  # H x W x 3 float32 in [0, 1] at the processing size
    reference: np.ndarray | None = None  # the same size, or None


@dataclass
class Output:
    key: str  # INPUT, BASELINE or a model name
    label: str
    image: np.ndarray  # H x W x 3 uint8 at the processing size
    seconds: float | None = None
    maps: dict = field(default_factory=dict)  # the model's named maps, from the same forward pass (none when tiled)
    tile: tuple[int, int] | None = None


@dataclass
class Result:
    """One photo's part of a comparison: every method's output and row, in the order they ran."""

    photo: Photo
    outputs: dict[str, Output] = field(default_factory=dict)
    rows: dict[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputReady:
    """A method's output exists (its row is pending: ``PENDING`` in its metric columns)."""

    index: int  # which photo
    key: str
    result: Result


@dataclass(frozen=True)
class RowReady:
    """A method's row is complete (for the baseline without a reference: a row that says so, and no output)."""

    index: int
    key: str
    result: Result


# Photos


def reference_problem(name: str, image: np.ndarray, reference: np.ndarray) -> str | None:
    """Why a reference cannot be used with its photo, or None."""
    if reference.shape == image.shape:
        return None
    return (f"The reference of {name} is {reference.shape[1]}x{reference.shape[0]} but the photo is "
            f"{image.shape[1]}x{image.shape[0]}: a reference must show the same view at the same size")


def prepare_photo(name: str, image: np.ndarray, reference: np.ndarray | None = None,
                  side: int | None = None) -> Photo:
    """A photo (and its reference, which must be its size) shrunk alike to ``side`` pixels on its longest side
    (never enlarged; None: as it is). Raises PhotoError when it is then too small for the models."""
    if reference is not None and reference_problem(name, image, reference):
        raise PhotoError(reference_problem(name, image, reference))
    if side is not None:
        image = visualize.resize_longest(image, side)
        reference = None if reference is None else visualize.resize_longest(reference, side)
    if min(image.shape[:2]) < MIN_SIDE:
        raise PhotoError(
            f"{name} skipped: it is {image.shape[1]}x{image.shape[0]} at this processing size; every model needs "
            f"at least {MIN_SIDE} pixels on each side (choose a larger size, or a larger photo)."
        )
    return Photo(name, image, reference)


def read_photo(name: str, path, reference_path=None, side: int | None = None) -> tuple[Photo, list[str]]:
    """A photo file (and its reference file) as a ``Photo``, with notes on a reference that had to be dropped
    (unreadable, or another size). A photo that cannot be used raises ``ImageError`` or ``PhotoError``."""
    image = read_image(path)
    notes, reference = [], None
    if reference_path:
        try:
            reference = read_image(reference_path)
        except ImageError as error:
            notes.append(f"The reference of {name} skipped: {error}")
        if reference is not None and reference_problem(name, image, reference):
            notes.append(reference_problem(name, image, reference))
            reference = None
    return prepare_photo(name, image, reference, side), notes


# Methods


def reblur_models() -> list[str]:
    """The variants with a reblurring module M_R: those whose card declares a "reblurred" map."""
    return [name for name in list_models() if "reblurred" in get_card(name).maps]


def scoring_model() -> str:
    """The variant whose M_R scores every output's reblur score: a trained one where there is one."""
    names = reblur_models()
    trained = [name for name in names if shipped_weights(name).trained]
    return (trained or names)[-1]


def scorer():
    """The shared instance of ``scoring_model()``, on the default device."""
    return load_model(scoring_model(), str(default_device()))[0]


def label(key: str) -> str:
    return own.checkpoint(key).label if own.is_own(key) else LABELS.get(key, key)


def own_model(key: str) -> str:
    """The registered model a person's checkpoint is of."""
    return own.checkpoint(key).model


def smallest_first(models: Sequence[str]) -> list[str]:
    """Models in the order their outputs come soonest: fewest parameters first."""
    return sorted(models, key=lambda key: own.checkpoint(key).parameters if own.is_own(key) else get_card(key).params)


def run_method(key: str, photo: Photo, *, tile: int | None = None, return_maps: bool = True) -> Output:
    """The input itself, the classical baseline (which needs the photo's reference), or a model's restoration."""
    if key == INPUT:
        return Output(INPUT, label(INPUT), visualize.as_uint8(photo.image))
    if key == BASELINE:
        if photo.reference is None:
            raise ValueError(f"{label(BASELINE)} {NEEDS_REFERENCE}: its kernel is estimated from the sharp photo")
        start = time.perf_counter()
        kernel = estimate_kernel(photo.reference, photo.image, size=KERNEL_SIZE)
        image = richardson_lucy(photo.image, kernel, iterations=BASELINE_ITERATIONS)
        return Output(BASELINE, label(BASELINE), visualize.as_uint8(image), time.perf_counter() - start)
    result = restore(photo.image, key, tile=tile, return_maps=return_maps)
    if not own.is_own(key):  # a person's checkpoint may be narrower or wider than the registered model's timing
        timing.observe(key, str(default_device()), *photo.image.shape[:2], result.seconds)
    return Output(key, label(key), result.image, result.seconds, result.maps, result.tile)


# Rows


def lpips_or_reason(image: np.ndarray, reference: np.ndarray):
    try:
        return lpips_score(image, reference)
    except MetricUnavailable:
        return LPIPS_OFFLINE
    except ValueError:  # smaller than LPIPS's network can see
        return f"needs {LPIPS_MIN_SIDE} px"


def niqe_or_reason(image: np.ndarray):
    if min(image.shape[:2]) < NIQE_MIN_SIDE:
        return f"needs {NIQE_MIN_SIDE} px"
    try:
        return niqe(image)
    except ValueError:  # flat everywhere: no natural-scene statistics to compare
        return "flat image"


def measure(image: np.ndarray, reference: np.ndarray | None, model) -> dict:
    """Every metric that applies to an image (uint8, or floats in [0, 1]) given the reference (or None) and an M_R
    (``model``, for the reblur score)."""
    x = image.astype(np.float64) / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    row = {"NIQE": niqe_or_reason(x), "reblur score": reblur_score(x, model)}
    if reference is None:
        return row | {"PSNR (dB)": NEEDS_REFERENCE, "SSIM": NEEDS_REFERENCE, "LPIPS": NEEDS_REFERENCE}
    return row | {"PSNR (dB)": psnr(x, reference), "SSIM": ssim(x, reference), "LPIPS": lpips_or_reason(x, reference)}


def method_facts(key: str) -> dict:
    """The columns of a row that come from the method, not from its output: weights and parameters."""
    if key in (INPUT, BASELINE):
        return {"weights": "", "parameters": None}
    if own.is_own(key):
        facts = own.checkpoint(key)
        return {"weights": f"yours: {facts.file_name} (SHA-256 {facts.sha256[:12]})", "parameters": facts.parameters}
    weights = shipped_weights(key)
    return {"weights": "trained" if weights.trained else "untrained", "parameters": weights.parameters}


def pending_row(photo: Photo, output: Output) -> dict:
    row = {"image": photo.name, "method": output.label, "key": output.key, "seconds": output.seconds}
    return row | method_facts(output.key) | {column: PENDING for column in METRICS}


def method_row(photo: Photo, output: Output, model) -> dict:
    """The complete row of one method's output on one photo (``model``: the M_R of the reblur score). The input
    is scored as it is (the photo at the processing size), an output as the 8-bit image it was delivered as."""
    row = {"image": photo.name, "method": output.label, "key": output.key, "seconds": output.seconds}
    row |= method_facts(output.key)
    scored = photo.image if output.key == INPUT else output.image
    return row | measure(scored, photo.reference, model)


def unavailable_row(photo: Photo, key: str, reason: str) -> dict:
    return {"image": photo.name, "method": label(key), "key": key, **method_facts(key),
            **{column: reason for column in METRICS}}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def mean_rows(rows: list[dict]) -> list[dict]:
    """Per method, the mean of each score over the photos that have it ("mean of N" in the image column, N under
    "images"); a score no photo has keeps the first row's reason."""
    means = []
    for method in dict.fromkeys(row["method"] for row in rows):
        same = [row for row in rows if row["method"] == method]
        mean = {"image": f"mean of {len(same)}", "method": method, "key": same[0].get("key"), "images": len(same),
                "weights": same[0].get("weights", ""), "parameters": same[0].get("parameters")}
        for column in (*METRICS, "seconds"):
            numbers = [row[column] for row in same if is_number(row.get(column))]
            mean[column] = float(np.mean(numbers)) if numbers else same[0].get(column)
        means.append(mean)
    return means


def table_rows(results: Sequence[Result]) -> list[dict]:
    """A row per (photo, method), then with several photos the mean per method."""
    rows = [row for result in results for row in result.rows.values()]
    return rows + (mean_rows(rows) if len(results) > 1 else [])


# The comparison


def compare(photos: Sequence[Photo], models: Sequence[str] = (), *, with_input: bool = True,
            with_baseline: bool = True, tile: int | None = None,
            with_maps: bool = True) -> Iterator[OutputReady | RowReady]:
    """Run every method on every photo, streaming an event as each output exists and as each row is complete.

    Per photo: the input at once (its metrics wait until the models ran, so a first use of LPIPS does not delay
    the first model), then the models smallest first, then the baseline (a row saying it needs a reference when
    the photo has none). The results are the events' ``result`` (one per photo, filled in as they stream).
    """
    model = scorer()
    keys = smallest_first(models) + ([BASELINE] if with_baseline else [])
    for index, photo in enumerate(photos):
        result = Result(photo)
        if with_input:
            result.outputs[INPUT] = run_method(INPUT, photo)
            result.rows[INPUT] = pending_row(photo, result.outputs[INPUT])
            yield OutputReady(index, INPUT, result)
        for key in keys:
            if key == BASELINE and photo.reference is None:
                result.rows[key] = unavailable_row(photo, key, NEEDS_REFERENCE)
                yield RowReady(index, key, result)
                continue
            output = run_method(key, photo, tile=tile, return_maps=with_maps)
            result.outputs[key] = output
            result.rows[key] = pending_row(photo, output)
            yield OutputReady(index, key, result)
            result.rows[key] = method_row(photo, output, model)
            yield RowReady(index, key, result)
        if with_input:
            result.rows[INPUT] = method_row(photo, result.outputs[INPUT], model)
            yield RowReady(index, INPUT, result)


def shown_images(result: Result) -> list[tuple[str, str, np.ndarray]]:
    """(key, label, image) of the reference (when there is one, after the input) and every output."""
    shown = [(key, output.label, output.image) for key, output in result.outputs.items()]
    if result.photo.reference is not None:
        reference = (REFERENCE, label(REFERENCE), visualize.as_uint8(result.photo.reference))
        shown.insert(1 if INPUT in result.outputs else 0, reference)
    return shown


# Kernels


def reblurred_by(model, image: np.ndarray) -> np.ndarray:
    """M_R of a Reblur model applied to an H x W x 3 image in [0, 1]: the image it would reblur to (in [0, 1])."""
    device = next(model.reblur.parameters()).device
    with torch.inference_mode():
        return to_uint8(model.reblur(to_tensor(image).to(device))).astype(np.float64) / 255.0


def kernel_fits(image: np.ndarray) -> bool:
    """Whether an image is large enough to estimate a kernel in."""
    return min(image.shape[:2]) > 2 * KERNEL_SIZE


def kernel_at(image: np.ndarray, point: tuple[int, int], model) -> np.ndarray:
    """Reblur's Fig. 1 for any output (uint8): the KERNEL_SIZE kernel taking it to M_R of it, near ``point``
    (y, x). Raises ValueError where the region is flat (it carries no information about blur)."""
    height, width = image.shape[:2]
    top, left, bottom, right = visualize.crop_box(height, width, point, KERNEL_WINDOW + 2 * KERNEL_MARGIN)
    patch = image[top:bottom, left:right].astype(np.float64) / 255.0
    return remaining_blur_kernel(patch, reblurred_by(model, patch), center=(point[0] - top, point[1] - left),
                                 size=KERNEL_SIZE, window=KERNEL_WINDOW)


# Exports


def csv_value(value):
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def write_csv(path: Path, rows: list[dict]) -> Path:
    """The rows (``table_rows``) as CSV with ``COLUMNS``: numbers in full, a reason in words, nothing for None."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: csv_value(row.get(column)) for column in COLUMNS})
    return path


def file_stem(key: str) -> str:
    """A method's key as a file name on every system: a person's checkpoint's colons become hyphens."""
    return key.replace(":", "-")


def write_zip(path: Path, results: Sequence[Result], csv_path: Path | None = None) -> Path:
    """Every image of the comparison as lossless PNG (a folder per photo: ``<key>.png`` and a labelled
    ``comparison.png``), and the CSV when given."""
    path = Path(path)
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        for result in results:
            stem = Path(result.photo.name).with_suffix("").as_posix()
            shown = shown_images(result)
            if not shown:
                continue
            for key, _, image in shown:
                write_png(folder / stem / f"{file_stem(key)}.png", image)
            grid = visualize.labelled_grid([image for _, _, image in shown], [text for _, text, _ in shown])
            write_png(folder / stem / "comparison.png", grid)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:  # PNG is compressed already
            for file in sorted(folder.rglob("*.png")):
                archive.write(file, file.relative_to(folder))
            if csv_path is not None:
                archive.write(csv_path, Path(csv_path).name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path


# Test-time adaptation, scored


@dataclass(frozen=True)
class AdaptedStep:
    """One step of ``adaptation``: step 0 is the model's own output. ``row`` holds "step", "Eq. 7 loss" (NaN at
    step 0) and the metrics."""

    step: int
    image: np.ndarray  # H x W x 3 uint8
    row: dict


def adaptation_critic(model) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """(the model whose M_R is Eq. 7's and scores the reblur score, the ``critic`` to pass to ``core.tta``): a Reblur
    model itself and None (its own M_R), any other model the ``scorer()`` and its M_R."""
    judge = model if tta.has_reblur_module(model) else scorer()
    return judge, None if judge is model else judge.reblur


def adaptation(photo: Photo, name: str, *, steps: int, lr: float, scored: bool = True):
    """Reblur's Algorithm 1 on a photo with model ``name``, any registered one: a Reblur variant adapts its M_D
    against its own M_R, any other model its whole network against the M_R of ``scoring_model()`` (the shipped
    Reblur's, as the reblur score uses). Yields an ``AdaptedStep`` for step 0 and after every update (with its
    metrics when ``scored``), then the ``core.tta.Adaptation``. Closing it cancels."""
    if name not in list_models(include_reference=True) and not own.is_own(name):
        raise ValueError(f"no registered model {name!r}: one of {', '.join(list_models(include_reference=True))}")
    model, _ = load_model(name, str(default_device()))
    judge, critic = adaptation_critic(model)
    with closing(tta.adapt_steps(model, to_tensor(photo.image), steps=steps, lr=lr, critic=critic)) as events:
        for event in events:
            if isinstance(event, tta.Adaptation):
                yield event
                return
            image = to_uint8(event.image)
            row = {"step": event.step, "Eq. 7 loss": event.loss}
            if scored:
                row |= measure(image, photo.reference, judge)
            yield AdaptedStep(event.step, image, row)
