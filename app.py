"""The comparison app: five deblurring papers side by side on one photo, their inner maps, test-time adaptation.

``build_demo()`` builds the Gradio UI without launching it; ``python app.py`` launches it (Gradio's own
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` are honoured). Every computation is a ``core`` call: restoration
(``core.inference``), metrics (``core.metrics``), test-time adaptation (``core.tta``), kernels and deconvolution
(``core.diagnostics``, ``core.blur``), and every picture a person looks at (``core.visualize``). The handlers here
only gather inputs, call those, and lay out what comes back.

Named endpoints (``gradio_client``): ``/compare`` (streams: a row and an output per method as each finishes),
``/blur`` (make a blurry photo from a sharp one) and ``/adapt`` (streams every adaptation step). The others are
private to the page.

Images travel as lossless PNG both ways. Nothing is downloaded and no model runs at start-up: weights load on the
first run that needs them. On Hugging Face ZeroGPU hardware the model runs are wrapped in ``spaces.GPU``; where the
``spaces`` package is absent they run as they are.
"""

from __future__ import annotations

try:  # Hugging Face Spaces: present on ZeroGPU hardware, where it must be imported before torch touches CUDA
    import spaces
except ImportError:
    spaces = None

import contextlib
import csv
import functools
import hashlib
import inspect
import math
import os
import queue
import shutil
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch

from core import visualize
from core.blur import blur_image, trajectory_kernel
from core.complexity import parameter_count
from core.diagnostics import estimate_kernel, remaining_blur_kernel, richardson_lucy
from core.images import ImageError, read_image, write_png
from core.inference import default_device, load_model, restore, reusing_freed_memory, to_tensor, to_uint8
from core.metrics import MetricUnavailable, lpips_score, niqe, psnr, reblur_score, ssim
from core.models.base import MIN_SIDE
from core.registry import checkpoint_path, get_card, list_models, shipped_card
from core.tta import PAPER_LR, adapt

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
RUNS_DIR = Path(tempfile.gettempdir()) / "deblur-workbench"  # CSV and ZIP downloads, one folder per run
RUNS_KEPT_S = 24 * 3600
IMAGES_DIR = RUNS_DIR / "images"  # every picture handed to Gradio, one PNG per content (see ``served``)

INPUT = "input"  # the blurry photo itself, as a row of the comparison
REFERENCE = "reference"
BASELINE = "richardson-lucy"
CONTEXT_CHOICES = [("Blurry input", INPUT), ("Richardson-Lucy (classical, kernel from the sharp reference)", BASELINE)]
BASELINE_ITERATIONS = 30
KERNEL_SIZE = 31  # blur kernels drawn, estimated and shown: 31 x 31, as core.blur draws them
KERNEL_WINDOW = 4 * KERNEL_SIZE  # pixels around a picked point used to estimate its remaining-blur kernel
KERNEL_MARGIN = 16  # extra pixels fed to M_R around that window (its 5x5 convolutions see beyond the window)
MAP_SIDE = 512  # longest side of a map as shown
ZOOM_SIDE = 256
MAX_STEPS = 30

SIZE_CHOICES = [("192 px", "192"), ("320 px (preview)", "320"), ("512 px", "512"), ("768 px", "768"),
                ("full size", "full")]
PREVIEW_SIZE = "320"

COLUMNS = ["method", "PSNR (dB)", "SSIM", "LPIPS", "NIQE", "reblur score", "seconds", "parameters", "weights", "image"]
METRICS = ["PSNR (dB)", "SSIM", "LPIPS", "NIQE", "reblur score"]
DIGITS = {"PSNR (dB)": 2, "SSIM": 4, "LPIPS": 4, "NIQE": 3, "reblur score": 4, "seconds": 2, "Eq. 7 loss": 5}
LPIPS_OFFLINE = "unavailable offline"
NOT_APPLICABLE = "—"

# What each model's maps are, in its paper's own terms, and which figure they mirror.
MAP_NOTES = {
    "sp-unet": (
        "**prior 1-3**: the learned semantic priors f_pri^i at strides 1, 2, 4 (channel means, colour-mapped as the "
        "paper shows them in Fig. 6-7); **CLC attention 1-2**: f_att^i of the Cross-Level Connection that pulls the "
        "deeper prior into the shallower one (Eq. 3, Fig. 2a); **MLA prior 1-3**: the aggregated priors M^i (Eq. 5, "
        "Fig. 2b); **SAT scale / shift**: mu and sigma with which the Semantic Attention Transformation modulates "
        "each decoder skip, mu (f_de + f_en) + sigma (Eq. 6, Fig. 2c)."
    ),
    "fcn": (
        "**query map 1**: the sigmoid query map of the global feature catcher's query-key mechanism (Sec. 3.2, "
        "Fig. 3b), values in 0..1 that 'represent the importance of each pixel region for deblurring'; **stage 1-3 "
        "output**: the images each stage of the multi-patch network restores, supervised by Eq. 1 (Fig. 2); "
        "**trust ratios**: r_s, the trainable weights of the stage losses in Eq. 1 (Sec. 3.6)."
    ),
    "reblur": (
        "**reblurred**: M_R(L), the reblurring module applied to the deblurred output L (Sec. 3, Fig. 2); "
        "**residual blur**: |M_R(L) - L|, where M_R still finds blur to amplify: clean images are hard to reblur, so "
        "a sharp output leaves it near zero. The remaining-blur kernel at a point you pick (Compare tab) is the "
        "paper's Fig. 1; the Adapt tab runs its test-time adaptation (Algorithm 1)."
    ),
    "lmfn": (
        "**ALFM attention**: the NC x NC channel-to-channel attention softmax(F F^T) across the four RFDB outputs "
        "(4 x 50 channels) of the attention layer fusion module (Eq. 1-2, Fig. 2); **ACFM attention**: the sigmoid "
        "gate W of the pseudo-3-D attention channel fusion module on the last RFDB (Eq. 3, Fig. 3), channel mean."
    ),
    "gradientnet": (
        "**Sobel of input**: the Sobel gradient magnitude of the blurry input, the paper's baseline edge detector "
        "(Fig. 4(b)); **RGCL horizontal / vertical k**: the responses of the 1x3 and 3x1 gradient convolutions "
        "k_1x3 * U and k_3x1 * U of the recurrent gradient convolutional layer (Eq. 7, Fig. 3) in MBRB k, k = 1..10, "
        "at 1/4 resolution: the learned counterpart of Fig. 4(c)-(e)."
    ),
}


# Models and their cards


def reblur_models() -> list[str]:
    """The variants with a reblurring module M_R: those whose card declares a "reblurred" map."""
    return [name for name in list_models() if "reblurred" in get_card(name).maps]


def scoring_model() -> str:
    """The variant whose M_R scores every output's reblur score: a trained one where there is one."""
    names = reblur_models()
    trained = [name for name in names if checkpoint_path(name).is_file()]
    return (trained or names)[-1]


def weights_line(name: str) -> str:
    """The shipped card's headline, or a plain statement that the model runs on random weights."""
    if not checkpoint_path(name).is_file():
        return "untrained (random weights)"
    try:
        card = shipped_card(name) or {}
    except ValueError:  # a card that is not valid JSON says nothing more than that weights exist
        card = {}
    return card.get("headline") or "trained weights (no model card shipped)"


def short_title(name: str) -> str:
    return get_card(name).paper.split(":")[0]


def model_choices() -> list[tuple[str, str]]:
    return [(f"{name} — {short_title(name)} ({get_card(name).year})", name) for name in list_models()]


def model_lines() -> str:
    """One line per model, shown under the checkboxes: what it is, and which weights it runs on."""
    lines = [f"- `{name}`: {get_card(name).summary.rstrip('.')}. *Weights: {weights_line(name)}.*" for name in list_models()]
    return "\n".join(lines)


def models_markdown() -> str:
    rows = ["| model | paper | what it is | weights |", "|---|---|---|---|"]
    for name in list_models():
        card = get_card(name)
        rows.append(f"| `{name}` | {card.paper} ({card.venue} {card.year}) | {card.summary} | {weights_line(name)} |")
    return "\n".join(rows)


def paper_groups() -> list[tuple[str, list[str]]]:
    """(paper title, its variants) in registry order: one tab per paper."""
    groups: dict[str, list[str]] = {}
    for name in list_models():
        groups.setdefault(get_card(name).paper, []).append(name)
    return list(groups.items())


def map_note(names: list[str]) -> str:
    card = get_card(names[0])
    note = next((MAP_NOTES[key] for key in (*names, *(n.split("-")[0] for n in names)) if key in MAP_NOTES), None)
    note = note or "The maps this model declares on its card: " + ", ".join(card.maps) + "."
    return f"**{card.paper}**, {card.authors} ({card.venue} {card.year}).\n\n{note}"


def device_text() -> str:
    if spaces is not None and os.environ.get("SPACES_ZERO_GPU"):
        return "ZeroGPU (a GPU is attached while a model runs)"
    device = default_device()
    if device.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(device)}"
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"CPU ({threads} threads)"


def on_gpu(function):
    """ZeroGPU's ``spaces.GPU`` where the ``spaces`` package is present; the function itself elsewhere."""
    return spaces.GPU(duration=180)(function) if spaces is not None else function


# What a run holds


@dataclass
class Output:
    key: str  # INPUT, BASELINE or a model name
    label: str
    image: np.ndarray  # H x W x 3 uint8 at the processing size
    seconds: float | None = None
    maps: list = field(default_factory=list)  # (image, caption) of the model's maps, drawn
    error: np.ndarray | None = None  # the error map against the reference, drawn
    kernel: np.ndarray | None = None  # the remaining-blur kernel at the session's point, drawn


@dataclass
class Photo:
    name: str
    image: np.ndarray  # H x W x 3 float32 in [0, 1] at the processing size
    reference: np.ndarray | None
    outputs: dict[str, Output] = field(default_factory=dict)
    rows: dict[str, dict] = field(default_factory=dict)  # key -> the metrics row
    error_scale: float | None = None


@dataclass
class Session:
    photos: list[Photo]
    point: tuple[int, int] | None = None  # (y, x) for the zoom and the kernels, shared by every photo
    crop: int = 96


# Inputs


def processing_side(size: str) -> int | None:
    """The longest side to process at, or None for full size."""
    if size == "full":
        return None
    if size not in {value for _, value in SIZE_CHOICES}:
        raise gr.Error(f"Unknown processing size {size!r}; choose one of: {', '.join(v for _, v in SIZE_CHOICES)}.")
    return int(size)


def read_photo(path: str, what: str) -> np.ndarray | None:
    """A file as a float image, or None after a warning naming the file and what is wrong with it."""
    try:
        return read_image(path)
    except ImageError as error:
        gr.Warning(f"{what} skipped: {error}")
        return None


def prepare_photo(name: str, path: str, reference_path: str | None, side: int | None) -> Photo | None:
    """One photo (and its reference) read and brought to the processing size; None (with a warning) if unusable."""
    image = read_photo(path, name)
    if image is None:
        return None
    reference = read_photo(reference_path, f"The reference of {name}") if reference_path else None
    if reference is not None and reference.shape != image.shape:
        gr.Warning(
            f"The reference of {name} is {reference.shape[1]}x{reference.shape[0]} but the photo is "
            f"{image.shape[1]}x{image.shape[0]}: a reference must show the same view at the same size, "
            "so the metrics that need one are left out."
        )
        reference = None
    if side is not None:
        image = visualize.resize_longest(image, side)
        reference = None if reference is None else visualize.resize_longest(reference, side)
    if min(image.shape[:2]) < MIN_SIDE:
        gr.Warning(
            f"{name} skipped: it is {image.shape[1]}x{image.shape[0]} at this processing size; every model needs "
            f"at least {MIN_SIDE} pixels on each side (choose a larger size, or a larger photo)."
        )
        return None
    return Photo(name=name, image=image, reference=reference)


def gather_photos(blurry, reference, more, more_references, size: str) -> list[Photo]:
    """The photo (with its reference) and any further photos (references matched by file name)."""
    side = processing_side(size)
    references = {Path(path).stem: path for path in more_references or []}
    jobs = [(Path(blurry).name, blurry, reference)] if blurry else []
    jobs += [(Path(path).name, path, references.get(Path(path).stem)) for path in more or []]
    if reference and not blurry:
        gr.Warning("A sharp reference was given without a blurry photo: it is ignored.")
    photos = [prepare_photo(name, path, ref, side) for name, path, ref in jobs]
    return [photo for photo in photos if photo is not None]


# Metrics


def lpips_or_note(image: np.ndarray, reference: np.ndarray):
    try:
        return lpips_score(image, reference)
    except MetricUnavailable:
        return LPIPS_OFFLINE
    except ValueError:  # smaller than LPIPS's network can see
        return NOT_APPLICABLE


def niqe_or_note(image: np.ndarray):
    try:
        return niqe(image)
    except ValueError:  # under 96 x 96 pixels, or flat everywhere
        return "needs 96 px"


def measure(image: np.ndarray, reference: np.ndarray | None, scorer) -> dict:
    """Every metric that applies to an output (uint8) given the reference (or None) and an M_R for the reblur score."""
    x = image.astype(np.float64) / 255.0
    row = {"NIQE": niqe_or_note(x), "reblur score": reblur_score(x, scorer)}
    if reference is not None:
        row |= {"PSNR (dB)": psnr(x, reference), "SSIM": ssim(x, reference), "LPIPS": lpips_or_note(x, reference)}
    return row


def formatted(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_APPLICABLE
    if isinstance(value, str):
        return value
    if column == "parameters":
        return f"{value / 1e6:.2f}M"
    return f"{value:.{DIGITS[column]}f}"


def table_rows(photos: list[Photo]) -> list[dict]:
    """A row per (photo, method), then with several photos the mean per method over the photos that have it."""
    rows = [row for photo in photos for row in photo.rows.values()]
    if len(photos) > 1:
        for method in dict.fromkeys(row["method"] for row in rows):
            same = [row for row in rows if row["method"] == method]
            mean = {"image": f"mean of {len(same)}", "method": method, "weights": same[0].get("weights", "")}
            for column in (*METRICS, "seconds"):
                numbers = [row[column] for row in same if isinstance(row.get(column), (int, float))]
                mean[column] = float(np.mean(numbers)) if numbers else same[0].get(column)
            mean["parameters"] = same[0].get("parameters")
            rows.append(mean)
    return rows


def table_value(photos: list[Photo]) -> dict:
    data = [[formatted(c, row.get(c)) if c not in ("image", "method", "weights") else row.get(c, "") for c in COLUMNS]
            for row in table_rows(photos)]
    return {"headers": COLUMNS, "data": data}


# Running the methods


def run_method(key: str, photo: Photo, scorer_name: str) -> Output:
    """The input itself, the classical baseline, or a model's restoration (with its maps, drawn)."""
    if key == INPUT:
        return Output(INPUT, "Blurry input", visualize.as_uint8(photo.image))
    if key == BASELINE:
        start = time.perf_counter()
        kernel = estimate_kernel(photo.reference, photo.image, size=KERNEL_SIZE)
        image = richardson_lucy(photo.image, kernel, iterations=BASELINE_ITERATIONS)
        return Output(BASELINE, "Richardson-Lucy", visualize.as_uint8(image), time.perf_counter() - start)
    result = restore(photo.image, key, return_maps=True)
    size = visualize.fit_size(*photo.image.shape[:2], min(MAP_SIDE, max(photo.image.shape[:2])))
    maps = [(visualize.render_map(value, size=size), f"{key} · {name}") for name, value in result.maps.items()]
    return Output(key, key, result.image, result.seconds, maps)


def pending_row(photo: Photo, output: Output) -> dict:
    row = {"image": photo.name, "method": output.label, "seconds": output.seconds}
    return row | {column: "computing…" for column in METRICS}


def method_row(photo: Photo, output: Output, scorer) -> dict:
    row = {"image": photo.name, "method": output.label, "weights": "", "seconds": output.seconds}
    if output.key not in (INPUT, BASELINE):
        model, trained = load_model(output.key, str(default_device()))
        row |= {"weights": "trained" if trained else "untrained", "parameters": parameter_count(model)}
    return row | measure(output.image, photo.reference, scorer)


def reblurred_by(model, image: np.ndarray) -> np.ndarray:
    """M_R of a Reblur model applied to an H x W x 3 image in [0, 1]: the image it would reblur to."""
    device = next(model.reblur.parameters()).device
    with torch.inference_mode():
        return to_uint8(model.reblur(to_tensor(image).to(device))).astype(np.float64) / 255.0


def kernel_at(output: Output, point: tuple[int, int], scorer) -> np.ndarray:
    """Reblur's Fig. 1 for any output: the kernel taking it to its reblurred image, near the point, drawn."""
    height, width = output.image.shape[:2]
    top, left, bottom, right = visualize.crop_box(height, width, point, KERNEL_WINDOW + 2 * KERNEL_MARGIN)
    patch = output.image[top:bottom, left:right].astype(np.float64) / 255.0
    kernel = remaining_blur_kernel(
        patch, reblurred_by(scorer, patch), center=(point[0] - top, point[1] - left), size=KERNEL_SIZE,
        window=KERNEL_WINDOW,
    )
    return visualize.kernel_image(kernel)


# What the page shows of a run


def outputs_with_reference(photo: Photo) -> list[tuple[str, str, np.ndarray]]:
    """(key, label, image) of the reference (when there is one) and every output."""
    shown = [(key, output.label, output.image) for key, output in photo.outputs.items()]
    if photo.reference is not None:
        reference = (REFERENCE, "Sharp reference", visualize.as_uint8(photo.reference))
        shown.insert(1 if INPUT in photo.outputs else 0, reference)
    return shown


def caption(output: Output) -> str:
    return output.label if output.seconds is None else f"{output.label} · {output.seconds:.2f} s"


def gallery_value(photo: Photo) -> list:
    captions = {key: caption(output) for key, output in photo.outputs.items()}
    return [(image, captions.get(key, label)) for key, label, image in outputs_with_reference(photo)]


def slider_value(photo: Photo, left: str | None, right: str | None):
    images = {key: image for key, _, image in outputs_with_reference(photo)}
    if left not in images or right not in images:
        return None
    return images[left], images[right]


def slider_choices(photo: Photo, left: str | None, right: str | None):
    """Dropdown updates for the slider's two sides, keeping the current choices where they still exist.

    Left: the input, the reference or any output; right: any output (by default the latest).
    """
    everything = [(label, key) for key, label, _ in outputs_with_reference(photo)]
    if not everything:
        return gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None), None, None
    restored = [(label, key) for label, key in everything if key not in (INPUT, REFERENCE)] or everything
    models = [key for _, key in restored if key != BASELINE] or [key for _, key in restored]
    left = left if left in [key for _, key in everything] else everything[0][1]
    right = right if right in [key for _, key in restored] else models[-1]
    return gr.Dropdown(choices=everything, value=left), gr.Dropdown(choices=restored, value=right), left, right


def center_of(photo: Photo, point: tuple[int, int] | None) -> tuple[int, int]:
    height, width = photo.image.shape[:2]
    if point is None:
        return height // 2, width // 2
    return min(point[0], height - 1), min(point[1], width - 1)


def zoom_values(session: Session, photo: Photo):
    """The picker (the input with the zoomed box drawn) and the zoomed crops of every image."""
    box = visualize.crop_box(*photo.image.shape[:2], center_of(photo, session.point), session.crop)
    picker = visualize.draw_box(photo.image, box)
    shown = outputs_with_reference(photo)
    crops = [(visualize.zoom(image, box, longest=ZOOM_SIDE), label) for _, label, image in shown]
    return picker, crops


def kernel_values(session: Session, photo: Photo, scorer_name: str) -> list:
    """The remaining-blur kernel of every output at the session's point (none on photos too small to estimate one)."""
    if min(photo.image.shape[:2]) <= 2 * KERNEL_SIZE:
        return []
    scorer, _ = load_model(scorer_name, str(default_device()))
    point = center_of(photo, session.point)
    shown = []
    for output in photo.outputs.values():
        if output.kernel is None:
            try:
                output.kernel = kernel_at(output, point, scorer)
            except ValueError:  # a flat region carries no information about blur: nothing to show there
                continue
        shown.append((output.kernel, output.label))
    return shown


def error_values(photo: Photo) -> list:
    if photo.reference is None:
        return []
    if photo.error_scale is None:  # one scale for every output, set by the blurry input's own error
        photo.error_scale = visualize.error_scale([visualize.as_uint8(photo.image)], photo.reference)
    for output in photo.outputs.values():
        if output.error is None:
            output.error = visualize.error_map(output.image, photo.reference, vmax=photo.error_scale)
    return [(output.error, f"{output.label}: |output - reference|") for output in photo.outputs.values()]


def maps_values(photo: Photo, groups: list[tuple[str, list[str]]]) -> list[list]:
    ran = photo.outputs
    return [[item for name in names if name in ran for item in ran[name].maps] for _, names in groups]


def panels(session: Session, index: int, left: str | None, right: str | None, groups) -> dict:
    """Everything the page shows for one photo of the session."""
    photo = session.photos[index]
    left_update, right_update, left, right = slider_choices(photo, left, right)
    picker, crops = zoom_values(session, photo)
    values = {
        "gallery": gallery_value(photo), "left": left_update, "right": right_update,
        "slider": slider_value(photo, left, right), "picker": picker, "zoom": crops,
        "kernels": kernel_values(session, photo, scorer_name=scoring_model()), "errors": error_values(photo),
    }
    values |= {f"maps {i}": maps for i, maps in enumerate(maps_values(photo, groups))}
    return values


def frame(names: list[str], values: dict) -> tuple:
    """One update of an event's outputs, in their order; an output not in ``values`` is left as it is."""
    return tuple(values.get(name, gr.skip()) for name in names)


# Downloads


def new_run_dir() -> Path:
    """A fresh folder for one run's downloads; folders of runs, and pictures, older than a day are removed."""
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    for old in RUNS_DIR.iterdir():
        if old.is_dir() and old != IMAGES_DIR and time.time() - old.stat().st_mtime > RUNS_KEPT_S:
            shutil.rmtree(old, ignore_errors=True)
    for old in IMAGES_DIR.glob("*.png"):
        if time.time() - old.stat().st_mtime > RUNS_KEPT_S:
            old.unlink(missing_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=RUNS_DIR))


def write_csv(path: Path, photos: list[Photo]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in table_rows(photos):
            writer.writerow({column: "" if row.get(column) is None else row[column] for column in COLUMNS})
    return path


def write_zip(path: Path, photos: list[Photo], csv_path: Path) -> Path:
    """Every image of the run as lossless PNG (one folder per photo, a labelled grid of each) and the CSV."""
    folder = path.with_suffix("")
    folder.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        stem = Path(photo.name).stem
        shown = outputs_with_reference(photo)
        if not shown:
            continue
        for key, _, image in shown:
            write_png(folder / stem / f"{key}.png", image)
        grid = visualize.labelled_grid([image for _, _, image in shown], [label for _, label, _ in shown])
        write_png(folder / stem / "comparison.png", grid)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:  # PNG is compressed already
        for file in sorted(folder.rglob("*.png")):
            archive.write(file, file.relative_to(folder))
        archive.write(csv_path, csv_path.name)
    shutil.rmtree(folder)
    return path


# Pictures handed to Gradio


def png_file(image: np.ndarray) -> str:
    """The picture as a PNG file named by its content, written whole (``write_png``) before its name is handed on."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{image.shape} {image.dtype} ".encode() + image.tobytes()).hexdigest()
    path = IMAGES_DIR / f"{digest}.png"
    try:
        os.utime(path)  # shown again: kept from the sweep of old pictures (``new_run_dir``) for another day
    except FileNotFoundError:
        write_png(path, image)
    return str(path)


def with_files(value):
    """An output value with every picture in it (alone, or in a gallery's or a slider's tuples) as a PNG file."""
    if isinstance(value, np.ndarray):
        return png_file(value)
    if isinstance(value, (list, tuple)):
        return type(value)(with_files(item) for item in value)
    return value


def served(handler):
    """The handler as the page calls it: every picture it returns or streams is handed to Gradio as a PNG file.

    Gradio stores a picture it is handed as an array by rewriting, in place, a cache file named after its content
    (``gradio.processing_utils.save_pil_to_cache``). Two sessions showing the same picture, or one stream showing
    it again in its next update, then rewrite a file that a visitor may be downloading at that moment, who gets a
    truncated image or a broken connection. A file is instead copied into the cache under a temporary name, renamed
    into place and never rewritten (``save_file_to_cache``). The handlers themselves keep returning arrays.
    """
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def streamed(*args, **kwargs):
            with contextlib.closing(handler(*args, **kwargs)) as updates:  # closed when Gradio closes this one
                for value in updates:
                    yield with_files(value)

        return streamed

    @functools.wraps(handler)
    def returned(*args, **kwargs):
        return with_files(handler(*args, **kwargs))

    return returned


def releasing_memory(handler):
    """The handler run inside ``core.inference.reusing_freed_memory``: its activations reuse freed heap memory, and
    when the request ends, however it ends, the free heap goes back to the system (unless
    ``DEBLUR_REUSE_MEMORY=keep``): between requests an idle app holds its weights, not the last run's activations."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def streamed(*args, **kwargs):
            with reusing_freed_memory():
                yield from handler(*args, **kwargs)

        return streamed

    @functools.wraps(handler)
    def returned(*args, **kwargs):
        with reusing_freed_memory():
            return handler(*args, **kwargs)

    return returned


# Handlers


def make_blurry(sharp, length: float = 15, seed: float = 0):
    """A sharp photo blurred by a random camera-shake kernel; it becomes the input, the photo its reference."""
    if not sharp:
        raise gr.Error("Give a sharp photo first (upload, paste or drop one).")
    try:
        image = read_image(sharp)
    except ImageError as error:
        raise gr.Error(str(error)) from error
    kernel = trajectory_kernel(KERNEL_SIZE, length=float(length), seed=int(seed))
    blurry = blur_image(image, kernel)
    gr.Info("The blurry photo and its sharp reference are now the inputs: press Compare.")
    return visualize.as_uint8(blurry), visualize.as_uint8(image), visualize.kernel_image(kernel)


def compare(blurry, reference=None, more=None, more_references=None, models=None, context=(INPUT, BASELINE),
            size=PREVIEW_SIZE, progress=gr.Progress()):
    """Stream the comparison: after each method, its output; after its metrics, its row; at the end, downloads."""
    if not models and not context:
        raise gr.Error("Pick at least one model (or the blurry input or the classical baseline).")
    photos = gather_photos(blurry, reference, more, more_references, size)
    if not photos:
        raise gr.Error("Give a blurry photo: upload, paste or drop one, or click an example.")
    unknown = [name for name in models or [] if name not in list_models()]
    if unknown:
        raise gr.Error(f"Unknown model(s) {', '.join(unknown)}; choose from {', '.join(list_models())}.")
    groups = paper_groups()
    names = compare_outputs(groups)
    keys = sorted(models or [], key=lambda name: get_card(name).params)  # smallest first: first output soonest
    keys += [BASELINE] if BASELINE in (context or []) else []
    show_input = INPUT in (context or [])
    session = Session(photos)
    scorer_name = scoring_model()
    scorer, _ = load_model(scorer_name, str(default_device()))
    total = len(photos) * (len(keys) + show_input)
    done = 0
    for index, photo in enumerate(photos):
        if show_input:  # shown at once; its metrics (and LPIPS's one-off loading attempt) wait until the models ran
            photo.outputs[INPUT] = run_method(INPUT, photo, scorer_name)
            photo.rows[INPUT] = pending_row(photo, photo.outputs[INPUT])
            yield frame(names, panels(session, index, None, None, groups) | {
                "session": session, "photo": photo_choices(session, index), "table": table_value(photos),
                "status": f"{photo.name}: running {', '.join(keys) or 'its metrics'}…",
            })
        for key in keys:
            progress((done, total), desc=f"{photo.name}: running {key}")
            if key == BASELINE and photo.reference is None:
                photo.rows[key] = {"image": photo.name, "method": "Richardson-Lucy",
                                   "PSNR (dB)": "needs a reference"}
                done += 1
                continue
            output = run_method(key, photo, scorer_name)
            photo.outputs[key] = output
            photo.rows[key] = pending_row(photo, output)
            yield frame(names, panels(session, index, None, None, groups) | {
                "session": session, "photo": photo_choices(session, index), "table": table_value(photos),
                "status": f"{photo.name}: **{output.label}** done, computing its metrics…",
            })
            photo.rows[key] = method_row(photo, output, scorer)
            done += 1
            yield frame(names, {"table": table_value(photos), "status": f"{done} of {total} done."})
        if show_input:
            progress((done, total), desc=f"{photo.name}: metrics of the input")
            photo.rows[INPUT] = method_row(photo, photo.outputs[INPUT], scorer)
            done += 1
            yield frame(names, {"table": table_value(photos), "status": f"{done} of {total} done."})
    run_dir = new_run_dir()
    csv_path = write_csv(run_dir / "metrics.csv", photos)
    zip_path = write_zip(run_dir / "outputs.zip", photos, csv_path)
    yield frame(names, panels(session, 0, None, None, groups) | {  # complete, for API callers that take the last
        "session": session, "photo": photo_choices(session, 0), "table": table_value(photos), "csv": str(csv_path),
        "zip": str(zip_path), "status": done_text(photos, keys, scorer_name),
    })


def done_text(photos: list[Photo], keys: list[str], scorer_name: str) -> str:
    """What ran, at which size, which weights were used, and why a model has no maps."""
    device = str(default_device())
    models = [key for key in keys if key != BASELINE]
    untrained = [key for key in models if not load_model(key, device)[1]]
    height, width = photos[0].image.shape[:2]
    scorer_note = "" if load_model(scorer_name, device)[1] else " (untrained: the score measures nothing yet)"
    lines = [f"Done: {len(keys)} method(s) on {len(photos)} photo(s) at {width}x{height} px"
             f"{'' if len(photos) == 1 else ' (the first)'}. Reblur score: M_R of `{scorer_name}`{scorer_note}."]
    if untrained:
        lines.append(f"Untrained (random weights): {', '.join(untrained)}.")
    tiled = [key for key in models if key in photos[0].outputs and not photos[0].outputs[key].maps]
    if tiled:
        lines.append(f"No maps for {', '.join(tiled)}: the image ran in tiles; maps need a smaller processing size.")
    return " ".join(lines)


def photo_choices(session: Session, index: int):
    choices = [(photo.name, i) for i, photo in enumerate(session.photos)]
    return gr.Dropdown(choices=choices, value=index, visible=len(choices) > 1)


def show(session: Session | None, index, left, right):
    """Re-draw the panels for another photo (or after the slider's sides change)."""
    if session is None:
        return frame(panel_names(paper_groups()), {})
    groups = paper_groups()
    return frame(panel_names(groups), panels(session, int(index or 0), left, right, groups))


def show_slider(session: Session | None, index, left, right):
    if session is None:
        return None
    return slider_value(session.photos[int(index or 0)], left, right)


def pick_point(session: Session | None, index, evt: gr.SelectData):
    """A click on the picker: zoom there, and estimate every output's remaining blur there."""
    if session is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    x, y = evt.index
    session.point = (int(y), int(x))
    for photo in session.photos:
        for output in photo.outputs.values():
            output.kernel = None
    photo = session.photos[int(index or 0)]
    picker, crops = zoom_values(session, photo)
    return session, picker, crops, kernel_values(session, photo, scoring_model())


def set_crop(session: Session | None, index, crop):
    if session is None:
        return gr.skip(), gr.skip()
    session.crop = int(crop)
    return zoom_values(session, session.photos[int(index or 0)])


def adaptation(blurry, reference=None, name="reblur-n2", steps=5, lr=PAPER_LR, size=PREVIEW_SIZE,
               progress=gr.Progress()):
    """Stream Reblur's test-time adaptation (Algorithm 1): the output, the metrics and the curves after every step."""
    if name not in reblur_models():
        choices = ", ".join(reblur_models())
        raise gr.Error(f"Test-time adaptation needs a model with a reblurring module: one of {choices}.")
    steps = int(steps)
    if not 0 <= steps <= MAX_STEPS:
        raise gr.Error(f"Steps must be between 0 and {MAX_STEPS}, got {steps}.")
    if lr is None or not (math.isfinite(float(lr)) and float(lr) > 0):
        raise gr.Error(f"The learning rate must be a positive number (the paper uses {PAPER_LR:g}), got {lr}.")
    photos = gather_photos(blurry, reference, None, None, size)
    if not photos:
        raise gr.Error("Give a blurry photo first (Compare tab): upload, paste or drop one, or click an example.")
    photo = photos[0]
    model, trained = load_model(name, str(default_device()))
    updates: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work() -> None:
        try:  # step 0 comes from the adaptation's own first forward (on_first): no separate run of the model
            result = adapt(model, to_tensor(photo.image), steps=steps, lr=float(lr), cancel=stop.is_set,
                           on_first=lambda image: updates.put(("step", 0, math.nan, to_uint8(image))),
                           callback=lambda step, loss, image: updates.put(("step", step, loss, to_uint8(image))))
            updates.put(("done", result))
        except Exception as error:  # every failure is handed to the loop below (which waits on the queue) and shown
            updates.put(("error", error))

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    history: list[dict] = []
    try:
        while True:
            item = updates.get()
            if item[0] == "error":
                raise gr.Error(f"Adaptation failed: {item[1]}")
            if item[0] == "done":
                yield adaptation_frame(history[0]["image"], history, photo, adaptation_summary(item[1], name, trained))
                break
            _, step, loss, image = item
            history.append(step_row(step, loss, image, photo.reference, model))
            if step == 0:
                yield adaptation_frame(image, history, photo, f"Step 0 of {steps}: the model's own output.")
                continue
            progress((step, steps), desc=f"adaptation step {step} of {steps}")
            status = f"Step {step} of {steps}: Eq. 7 loss {loss:.5f}."
            yield adaptation_frame(history[0]["image"], history, photo, status)
    finally:
        stop.set()


def step_row(step: int, loss: float, image: np.ndarray, reference, model) -> dict:
    return {"step": step, "Eq. 7 loss": loss, "image": image} | measure(image, reference, model)


def adaptation_frame(first: np.ndarray, history: list[dict], photo: Photo, status: str):
    """The latest output, step 0 against it, the curves, the per-step table and the status."""
    numeric = [c for c in ("Eq. 7 loss", *METRICS) if any(isinstance(r.get(c), float) for r in history)]
    series = {c: [r[c] if isinstance(r.get(c), float) else math.nan for r in history] for c in numeric}
    perception = "LPIPS" if "LPIPS" in series else "NIQE"
    distortion = "PSNR (dB)" if photo.reference is not None else "reblur score"
    tradeoff = (distortion, perception) if distortion in series and perception in series else None
    plot = visualize.curves([r["step"] for r in history], series, tradeoff=tradeoff,
                            title="Test-time adaptation: loss and metrics per step (perception-distortion: Fig. S2)")
    table = {"headers": ["step", "Eq. 7 loss", *METRICS],
             "data": [[str(r["step"]), *(formatted(c, r.get(c)) for c in ("Eq. 7 loss", *METRICS))] for r in history]}
    latest = history[-1]["image"]
    return latest, (first, latest), plot, table, status


def adaptation_summary(result, name: str, trained: bool) -> str:
    text = f"Done: {result.steps_done} step(s) of Algorithm 1 on `{name}`, then histogram matching to step 0."
    if result.cancelled:
        text += " Stopped early."
    if result.diverged:
        text += f" Diverged: {result.message}."
    if not trained:
        text += " The model is untrained (random weights): its M_R finds nothing meaningful to undo yet."
    return text


# Layout


def compare_outputs(groups) -> list[str]:
    return ["table", "csv", "zip", "status", "session", "photo", *panel_names(groups)]


def panel_names(groups) -> list[str]:
    maps = [f"maps {i}" for i in range(len(groups))]
    return ["gallery", "left", "right", "slider", "picker", "zoom", "kernels", "errors", *maps]


def example_rows() -> tuple[list[list], list[str]]:
    pairs = [("gopro-market", "GoPro market, 1280x720"), ("gopro-basketball", "GoPro basketball, 640x360"),
             ("gopro-crowd", "GoPro crowd, 640x360")]
    rows = [[str(ASSETS / f"{stem}-blur.png"), str(ASSETS / f"{stem}-sharp.png")] for stem, _ in pairs]
    labels = [f"{label} (with its sharp frame)" for _, label in pairs]
    rows += [[str(ASSETS / "kohler-blurry1-1.png"), None], [str(ASSETS / "real-toy.png"), None]]
    labels += ["Köhler real camera shake (no reference)", "Real blurry photo (no reference)"]
    return rows, labels


ADAPT_NOTE = """Reblur's self-supervised test-time adaptation (Algorithm 1): a copy of M_D is fine-tuned on this
one photo so that M_R finds its output hard to reblur, then histogram-matched to the first output. It uses the photo,
reference and processing size of the Compare tab."""

INTRO = """# Deblurring workbench
Five published deblurring networks on the same photo, side by side, with each paper's own internals made visible.
**1.** Click an example or drop a blurry photo. **2.** Pick models and press **Compare**. **3.** Drag the slider;
click the small picture to zoom everywhere at once; open *Inside the papers* and *Adapt at test time*."""

ATTRIBUTION = """<small>GoPro: Nah, Kim, Lee, CVPR 2017 (CC BY 4.0) · Köhler et al., ECCV 2012 · Lai et al., CVPR 2016
(research use) · details in `assets/README.md`</small>"""


def build_demo(queue_size: int = 32) -> gr.Blocks:
    """The whole UI, wired, with its queue set; nothing runs until an event arrives.

    ``queue_size``: how many events may wait in the queue, all endpoints together (runs in progress do not count);
    one more is refused at once, with Gradio's own "busy, try again" message (HTTP 503), rather than left waiting.
    """
    groups = paper_groups()
    names = list_models()
    on_cuda = default_device().type == "cuda" or (spaces is not None and bool(os.environ.get("SPACES_ZERO_GPU")))
    heavy = {"concurrency_id": "models", "concurrency_limit": 1}
    untrained = [name for name in names if not checkpoint_path(name).is_file()]
    with gr.Blocks(title="Deblurring workbench", delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown(INTRO)
        if untrained:
            gr.Markdown(f"⚠️ No trained weights are shipped yet for: {', '.join(untrained)}. Those run on their "
                        "**untrained (random weights)** initialisation and their outputs show only that.")
        session = gr.State()
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        with gr.Tabs():
                            with gr.Tab("Blurry photo", id="photo"):
                                blurry = gr.Image(label="Blurry photo", type="filepath", image_mode=None, format="png",
                                                  sources=["upload", "clipboard"], elem_id="blurry")
                                reference = gr.Image(label="Sharp reference (optional: PSNR, SSIM, LPIPS, error maps)",
                                                     type="filepath", image_mode=None, format="png",
                                                     sources=["upload", "clipboard"], elem_id="reference")
                                with gr.Accordion("Several photos", open=False):
                                    more = gr.File(label="More blurry photos", file_count="multiple",
                                                   file_types=["image"])
                                    more_references = gr.File(label="Their sharp references (matched by file name)",
                                                              file_count="multiple", file_types=["image"])
                            with gr.Tab("Make it blurry", id="synthetic"):
                                sharp = gr.Image(label="Sharp photo", type="filepath", image_mode=None, format="png",
                                                 sources=["upload", "clipboard"])
                                with gr.Row():
                                    length = gr.Slider(0, KERNEL_SIZE - 1, value=15, step=1,
                                                       label="Camera-shake trajectory length (px)")
                                    seed = gr.Number(value=0, precision=0, label="Seed")
                                blur_button = gr.Button("Blur it")
                                kernel_view = gr.Image(label="Blur kernel used (31x31)", format="png",
                                                       interactive=False, height=180)
                        example_list, example_labels = example_rows()
                        gr.Examples(example_list, inputs=[blurry, reference], example_labels=example_labels,
                                    label="Examples", api_visibility="private")
                        gr.Markdown(ATTRIBUTION)
                        with gr.Row():
                            compare_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                            stop_button = gr.Button("Stop", variant="stop")
                        models = gr.CheckboxGroup(model_choices(), value=names, label="Models", elem_id="models")
                        gr.Markdown(model_lines(), elem_classes="model-lines")
                        context = gr.CheckboxGroup(CONTEXT_CHOICES, value=[INPUT, BASELINE], label="For context")
                        size = gr.Radio(SIZE_CHOICES, value="full" if on_cuda else PREVIEW_SIZE, elem_id="size",
                                        label="Processing size (longest side)",
                                        info=f"Device: {device_text()}. Full size is slow on a CPU (FCN: minutes).")
                    with gr.Column(scale=2):
                        status = gr.Markdown("Results appear here, each model as soon as it finishes.", label="Status",
                                             elem_id="status")
                        photo = gr.Dropdown(label="Photo shown", choices=[], visible=False, interactive=True)
                        gallery = gr.Gallery(label="Side by side", format="png", columns=5, height=420,
                                             object_fit="contain", elem_id="gallery")
                        with gr.Row():
                            left = gr.Dropdown(label="Slider: left", choices=[], interactive=True)
                            right = gr.Dropdown(label="Slider: right", choices=[], interactive=True)
                        slider = gr.ImageSlider(label="Before / after", format="png", elem_id="slider")
                        with gr.Row():
                            with gr.Column(scale=1, min_width=200):
                                picker = gr.Image(label="Click a point", format="png", interactive=False,
                                                  elem_id="picker")
                                crop = gr.Slider(32, 256, value=96, step=8, label="Crop side (px)")
                            zoom = gr.Gallery(label="The same crop everywhere", format="png", columns=4, height=360,
                                              object_fit="contain", elem_id="zoom", scale=3)
                        gr.Markdown("**Remaining blur at the point**: the kernel that takes each output to M_R of "
                                    "it, as in Reblur's Fig. 1 (a single dot: no blur left to amplify).")
                        kernels = gr.Gallery(label="Remaining blur", format="png", columns=8, height=200,
                                             object_fit="contain", elem_id="kernels")
                        gr.Markdown("**Error maps** |output - reference|, on one scale for all (needs a sharp "
                                    "reference).")
                        errors = gr.Gallery(label="Error maps", format="png", columns=4, height=360,
                                            object_fit="contain", elem_id="errors")
                        table = gr.Dataframe(headers=COLUMNS, label="Metrics", interactive=False, wrap=True,
                                             elem_id="metrics")
                        gr.Markdown("LPIPS reads *unavailable offline* where its AlexNet weights cannot be downloaded. "
                                    "Metrics are computed at the processing size.")
                        with gr.Row():
                            csv_button = gr.DownloadButton("Download the metrics (CSV)")
                            zip_button = gr.DownloadButton("Download every output (lossless PNG, ZIP)")
            with gr.Tab("Inside the papers", id="papers"):
                gr.Markdown("Each paper's own maps, from the same forward pass that produced its output in Compare.")
                map_galleries = []
                with gr.Tabs():
                    for paper, variants in groups:
                        with gr.Tab(" · ".join(variants), id=f"paper-{variants[0]}"):
                            gr.Markdown(map_note(variants))
                            map_galleries.append(gr.Gallery(label=f"Maps of {' and '.join(variants)}", format="png",
                                                            columns=4, height=560, object_fit="contain",
                                                            elem_id=f"maps-{variants[0]}"))
            with gr.Tab("Adapt at test time", id="adapt"):
                gr.Markdown(ADAPT_NOTE)
                with gr.Row():
                    adapt_model = gr.Dropdown(reblur_models(), value=reblur_models()[-1], label="Model")
                    steps = gr.Slider(0, MAX_STEPS, value=5, step=1, label="Steps", elem_id="adapt-steps")
                    lr = gr.Number(value=PAPER_LR, label=f"Learning rate (paper: {PAPER_LR:g})")
                with gr.Row():
                    adapt_button = gr.Button("Adapt", variant="primary", elem_id="adapt-button")
                    adapt_stop = gr.Button("Stop", variant="stop")
                adapt_status = gr.Markdown(label="Status", elem_id="adapt-status")
                with gr.Row():
                    adapted = gr.Image(label="Adapted output", format="png", interactive=False)
                    adapt_slider = gr.ImageSlider(label="Step 0 / latest step", format="png")
                curve = gr.Image(label="Curves", format="png", interactive=False, elem_id="adapt-curve")
                adapt_table = gr.Dataframe(label="Per step", interactive=False)
            with gr.Tab("About", id="about"):
                gr.Markdown("## Models\n" + models_markdown())
                gr.Markdown(API_NOTE)

        components = {"table": table, "csv": csv_button, "zip": zip_button, "status": status, "session": session,
                      "photo": photo, "gallery": gallery, "left": left, "right": right, "slider": slider,
                      "picker": picker, "zoom": zoom, "kernels": kernels, "errors": errors}
        components |= {f"maps {i}": gallery for i, gallery in enumerate(map_galleries)}
        compare_event = compare_button.click(
            on_gpu(served(releasing_memory(compare))), [blurry, reference, more, more_references, models, context, size],
            [components[name] for name in compare_outputs(groups)], api_name="compare", show_progress_on=[status],
            **heavy,
        )
        stop_button.click(None, None, None, cancels=[compare_event], api_visibility="private")
        blur_button.click(served(make_blurry), [sharp, length, seed], [blurry, reference, kernel_view],
                          api_name="blur", concurrency_limit=2)
        view = [components[name] for name in panel_names(groups)]
        photo.input(served(show), [session, photo, left, right], view, api_visibility="private", show_progress="hidden")
        for side in (left, right):
            side.input(served(show_slider), [session, photo, left, right], slider, api_visibility="private",
                       show_progress="hidden")
        picker.select(served(pick_point), [session, photo], [session, picker, zoom, kernels], api_visibility="private")
        crop.release(served(set_crop), [session, photo, crop], [picker, zoom], api_visibility="private",
                     show_progress="hidden")
        adapt_event = adapt_button.click(
            on_gpu(served(releasing_memory(adaptation))), [blurry, reference, adapt_model, steps, lr, size],
            [adapted, adapt_slider, curve, adapt_table, adapt_status], api_name="adapt",
            show_progress_on=[adapt_status], **heavy,
        )
        adapt_stop.click(None, None, None, cancels=[adapt_event], api_visibility="private")
    return demo.queue(max_size=queue_size, default_concurrency_limit=4)


API_NOTE = """## From Python
Every result is also an API endpoint (`/compare`, `/blur`, `/adapt`); see *Use via API* at the bottom of the page.

```python
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860/")
table, csv_path, zip_path, status, *views = client.predict(
    blurry=handle_file("assets/gopro-crowd-blur.png"), reference=handle_file("assets/gopro-crowd-sharp.png"),
    models=["lmfn", "reblur-n2"], size="320", api_name="/compare")
```"""


MAX_UPLOAD_BYTES = 50 * 2**20  # per file; a 50-megapixel PNG fits, anything bigger is refused before decoding


def launch_options() -> dict:
    """What ``launch`` needs beyond Gradio's defaults: serve the examples, cap uploads, show errors."""
    return {"allowed_paths": [str(ASSETS)], "max_file_size": MAX_UPLOAD_BYTES, "show_error": True}


if __name__ == "__main__":
    build_demo().launch(**launch_options())
