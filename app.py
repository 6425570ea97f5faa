"""The comparison app: five deblurring papers side by side on one photo, their inner maps, test-time adaptation.

``build_demo()`` builds the Gradio UI without launching it; ``python app.py`` launches it (Gradio's own
``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` are honoured). The app only presents: every output, metrics
row, mean, kernel, export and adaptation step comes from ``core.compare`` (the engine ``python -m core
evaluate`` / ``deblur`` use too), every picture from ``core.visualize``, every caption from ``core.captions``
and every fact about a model from its card (``core.registry``). What lives here is the page's state (which photo,
which point, which crop), the values its components show, and ``build_demo``.

Named endpoints (``gradio_client``): ``/compare`` (streams: a row and an output per method as each finishes),
``/blur`` (make a blurry photo from a sharp one) and ``/adapt`` (streams every adaptation step). The others are
private to the page.

Images travel as lossless PNG both ways. Nothing is downloaded and no model runs at start-up: weights load on the
first run that needs them. Building the page counts each model's multiply-accumulates on the meta device and times
one convolution (``core.timing``), for the default ticks and the "slow at this size" note.

On Hugging Face ZeroGPU hardware (the ``spaces`` package present, ``SPACES_ZERO_GPU`` set) Compare and Adapt run as
``spaces.GPU`` tasks whose duration is computed from the request (``on_gpu``, ``core.zerogpu``); elsewhere they run
as they are.
"""

from __future__ import annotations

try:  # Hugging Face Spaces: present on ZeroGPU hardware, where it must be imported before torch touches CUDA
    import spaces
except ImportError:
    spaces = None

import contextlib
import functools
import hashlib
import inspect
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np

from core import compare as engine
from core import own, visualize, zerogpu
from core.allocator import reusing_freed_memory
from core.blur import blur_image, trajectory_kernel
from core.captions import maps_note
from core.compare import (
    BASELINE,
    COLUMNS,
    INPUT,
    KERNEL_SIZE,
    METRICS,
    REFERENCE,
    OutputReady,
    PhotoError,
    Result,
    reblur_models,
    scoring_model,
)
from core.images import ImageError, image_shape, read_image, write_png
from core.inference import default_device, device_description, pin_default_device
from core.registry import get_card, list_models, shipped_card, shipped_weights
from core.timing import expected_seconds, runs_quickly
from core.tta import PAPER_LR, Adaptation

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
RUNS_DIR = Path(tempfile.gettempdir()) / "deblur-workbench"  # CSV and ZIP downloads, one folder per run
RUNS_KEPT_S = 24 * 3600
IMAGES_DIR = RUNS_DIR / "images"  # every picture handed to Gradio, one PNG per content (see ``served``)

CONTEXT_CHOICES = [("Blurry input", INPUT), ("Richardson-Lucy (classical, kernel from the sharp reference)", BASELINE)]
MAP_SIDE = 512  # longest side of a map as shown
ZOOM_SIDE = 256
MAX_STEPS = 30

SIZE_CHOICES = [("192 px", "192"), ("320 px (preview)", "320"), ("512 px", "512"), ("768 px", "768"),
                ("full size", "full")]
PREVIEW_SIZE = "320"

DIGITS = {"PSNR (dB)": 2, "SSIM": 4, "LPIPS": 4, "NIQE": 3, "reblur score": 4, "seconds": 2, "Eq. 7 loss": 5}
NOT_APPLICABLE = "—"


# Models and their cards


def weights_line(name: str) -> str:
    """The shipped card's headline, or a plain statement that the model runs on random weights."""
    return shipped_weights(name).headline


def short_title(name: str) -> str:
    return get_card(name).paper.split(":")[0]


def app_models() -> list[str]:
    """The five papers' variants, then the reference models beside them (MAXIM)."""
    return list_models(include_reference=True)


def papers_count() -> int:
    return len({get_card(name).paper for name in list_models()})


def model_label(name: str) -> str:
    """A checkbox's words: paper, year and weights; a reference model says that it is not one of the papers."""
    card, weights = get_card(name), shipped_weights(name)
    if card.reference:
        return (f"reference: {card.title or name}, {card.venue} {card.year}, not one of the {number(papers_count())} "
                f"papers · {weights.short}")
    return f"{name} — {short_title(name)} ({card.year}) · {weights.short}"


def number(count: int) -> str:
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    return words[count] if count < len(words) else str(count)


def model_choices() -> list[tuple[str, str]]:
    return [(model_label(name), name) for name in app_models()]


def typical_shape(size: str) -> tuple[int, int]:
    """(height, width) of a 16:9 photo at a processing size ("full": a 1280x720 frame, GoPro's)."""
    side = processing_side(size) or 1280
    return side * 9 // 16, side


def default_models(size: str = PREVIEW_SIZE, device: str | None = "cpu") -> list[str]:
    """The models ticked when the page opens: the trained papers' variants (an untrained one is there to be
    picked), and a reference model where this machine runs it in a few seconds at that size
    (``core.timing.runs_quickly``: estimated from its multiply-accumulates and this device's measured speed;
    ``device`` None: a GPU, attached only while a model runs, where every model is quick)."""
    height, width = typical_shape(size)
    return [name for name in app_models() if shipped_weights(name).trained
            and (not get_card(name).reference or device is None or runs_quickly(name, height, width, device))]


def slow_models_note(size: str, device: str | None = "cpu") -> str:
    """The models that would take more than a few seconds at this size here, with their estimate."""
    if device is None:
        return "A GPU runs every model in seconds."
    height, width = typical_shape(size)
    slow = [(name, expected_seconds(name, height, width, device)) for name in app_models()
            if not runs_quickly(name, height, width, device)]
    if not slow:
        return "Every model runs in a few seconds at this size here."
    return "Slow at this size here: " + ", ".join(f"{name} about {seconds:,.0f} s" for name, seconds in slow) + "."


def default_context(reference) -> list[str]:
    """The blurry input always; the baseline only with a reference (its kernel is estimated from it)."""
    return [INPUT, BASELINE] if reference else [INPUT]


def reach_line() -> str:
    """What the shipped weights reach, from their cards' scores (``python benchmarks/results.py``): PSNR over the
    blurry input on the gopro_dev frames at full size and at the preview size. "" when no card has scores."""
    parts, frames = [], None
    for name in app_models():
        scores = (shipped_card(name) or {}).get("scores") or {}
        full, small = scores.get("gopro_dev"), scores.get(f"gopro_dev_at_{PREVIEW_SIZE}px")
        if not full:
            continue
        frames = full.get("images", frames)
        gains = f"{full['psnr'] - full['input_psnr']:+.2f}"
        if small:
            gains += f" / {small['psnr'] - small['input_psnr']:+.2f}"
        parts.append(f"{get_card(name).title or name} {gains}")
    if not parts:
        return ""
    references = [get_card(name).title or name for name in app_models() if get_card(name).reference]
    return (f"**What the shipped weights reach**: dB of PSNR over the blurry input on {frames} GoPro frames held "
            f"out from training, at full size / at the {PREVIEW_SIZE} px preview: " + ", ".join(parts) + ". The "
            "papers' networks were trained on this project's 2 CPUs (each card says how long), and gain most on the "
            "scene of their real-blur training frames, which several of these frames show (README: Scenes seen and "
            "unseen)"
            + (f"; {' and '.join(references)} runs its authors' weights." if references else "."))


def model_lines() -> str:
    """One line per model, shown under the checkboxes: what it is, and which weights it runs on."""
    lines = [f"- `{name}`: {get_card(name).summary.rstrip('.')}. *Weights: {weights_line(name)}.*" for name in app_models()]
    return "\n".join(lines)


def models_markdown() -> str:
    rows = ["| model | paper | what it is | weights |", "|---|---|---|---|"]
    for name in app_models():
        card = get_card(name)
        rows.append(f"| `{name}` | {card.paper} ({card.venue} {card.year}) | {card.summary} | {weights_line(name)} |")
    return "\n".join(rows)


def paper_groups() -> list[tuple[str, list[str]]]:
    """(paper title, its variants) in registry order: one tab per paper."""
    groups: dict[str, list[str]] = {}
    for name in app_models():
        groups.setdefault(get_card(name).paper, []).append(name)
    return list(groups.items())


def map_note(names: list[str]) -> str:
    card = get_card(names[0])
    return f"**{card.paper}**, {card.authors} ({card.venue} {card.year}).\n\n{maps_note(names[0])}"


def device_text() -> str:
    if zero_gpu():
        return "ZeroGPU (a GPU is attached while a model runs)"
    return device_description()


def zero_gpu() -> bool:
    """Running on Hugging Face ZeroGPU hardware: the ``spaces`` package present and its ``SPACES_ZERO_GPU`` set."""
    return spaces is not None and spaces.config.Config.zero_gpu


def on_gpu(function, duration):
    """On ZeroGPU, a handler that runs models as a ``spaces.GPU`` task asking for ``duration(*args, **kwargs)``
    seconds (computed from the request: ``compare_seconds``, ``adaptation_seconds``); elsewhere the handler itself.

    The task runs in a worker process forked from this one (``core.zerogpu``): it is handed the visitor's own
    checkpoints (``core.own.portable``: a worker forked before they were registered lacks them), models run on the
    GPU inside it (``pin_default_device``), and every value it returns or yields is moved to the CPU before it
    leaves (``core.zerogpu.on_cpu``), so that the page's state holds nothing of the GPU it gave back.
    """
    if not zero_gpu():
        return function
    signature = inspect.signature(function)

    def checkpoints_of(args, kwargs):
        return own.portable(signature.bind_partial(*args, **kwargs).arguments.get("yours"))

    def asked(packed, *args, **kwargs) -> int:
        return duration(*args, **kwargs)

    if inspect.isgeneratorfunction(function):
        def streamed_task(packed, *args, **kwargs):
            pin_default_device(None)
            own.adopt(packed)
            with contextlib.closing(function(*args, **kwargs)) as values:
                for value in values:
                    yield zerogpu.on_cpu(value)

        task = spaces.GPU(duration=asked)(streamed_task)

        @functools.wraps(function)
        def streamed(*args, **kwargs):
            yield from task(checkpoints_of(args, kwargs), *args, **kwargs)

        return streamed

    def returned_task(packed, *args, **kwargs):
        pin_default_device(None)
        own.adopt(packed)
        return zerogpu.on_cpu(function(*args, **kwargs))

    task = spaces.GPU(duration=asked)(returned_task)

    @functools.wraps(function)
    def returned(*args, **kwargs):
        return task(checkpoints_of(args, kwargs), *args, **kwargs)

    return returned


def processing_shape(path, size: str) -> tuple[int, int]:
    """(height, width) a photo will be processed at, from its file's header (a 16:9 frame at that size when the file
    cannot be read: the handler itself then says why)."""
    side = processing_side(size)
    try:
        height, width = image_shape(path)
    except ImageError:
        return typical_shape(size)
    scale = 1.0 if side is None else min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def compare_seconds(blurry, reference=None, more=None, more_references=None, models=None, context=(), size=PREVIEW_SIZE,
                    yours=None, progress=None) -> int:
    """The GPU seconds a Compare request asks for on ZeroGPU: its models on its photos at its size."""
    shapes = [processing_shape(path, size) for path in [blurry, *(more or [])] if path]
    return zerogpu.run_seconds(list(models or []), shapes, baseline=BASELINE in (context or []))


def adaptation_seconds(blurry, reference=None, name="reblur-n2", steps=5, lr=PAPER_LR, size=PREVIEW_SIZE, yours=None,
                       progress=None) -> int:
    """The GPU seconds an Adapt request asks for on ZeroGPU: its steps of its model on its photo at its size."""
    shape = processing_shape(blurry, size) if blurry else typical_shape(size)
    return zerogpu.adaptation_seconds(name, shape, int(steps or 0), engine.scoring_model())


# What the page holds of a run


@dataclass
class Drawn:
    """The pictures drawn of one photo's result, kept so that showing them again costs nothing."""

    maps: dict[str, list] = field(default_factory=dict)  # key -> [(image, caption)] of the model's maps
    errors: dict[str, np.ndarray] = field(default_factory=dict)  # key -> its error map against the reference
    kernels: dict[str, np.ndarray | None] = field(default_factory=dict)  # key -> its kernel at the point, drawn
    error_scale: float | None = None


@dataclass
class Session:
    results: list[Result] = field(default_factory=list)  # core.compare's, one per photo
    drawn: list[Drawn] = field(default_factory=list)
    point: tuple[int, int] | None = None  # (y, x) for the zoom and the kernels, shared by every photo
    crop: int = 96

    @property
    def photos(self) -> list[engine.Photo]:
        return [result.photo for result in self.results]


# Inputs


def processing_side(size: str) -> int | None:
    """The longest side to process at, or None for full size."""
    if size == "full":
        return None
    if size not in {value for _, value in SIZE_CHOICES}:
        raise gr.Error(f"Unknown processing size {size!r}; choose one of: {', '.join(v for _, v in SIZE_CHOICES)}.")
    return int(size)


def gather_photos(blurry, reference, more, more_references, size: str) -> list[engine.Photo]:
    """The photo (with its reference) and any further photos (references matched by file name); every file that
    cannot be used is named in a warning, and the others go on."""
    side = processing_side(size)
    references = {Path(path).stem: path for path in more_references or []}
    jobs = [(Path(blurry).name, blurry, reference)] if blurry else []
    jobs += [(Path(path).name, path, references.get(Path(path).stem)) for path in more or []]
    if reference and not blurry:
        gr.Warning("A sharp reference was given without a blurry photo: it is ignored.")
    photos = []
    for name, path, reference_path in jobs:
        try:
            photo, notes = engine.read_photo(name, path, reference_path, side)
        except ImageError as error:
            gr.Warning(f"{name} skipped: {error}")
            continue
        except PhotoError as error:
            gr.Warning(str(error))
            continue
        for note in notes:
            gr.Warning(f"{note}, so the metrics that need one are left out.")
        photos.append(photo)
    return photos


# Values the components show


def formatted(column: str, value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_APPLICABLE
    if isinstance(value, str):
        return value
    if column == "parameters":
        return f"{value / 1e6:.2f}M"
    return f"{value:.{DIGITS[column]}f}"


def table_value(results: list[Result]) -> dict:
    text = ("image", "method", "weights")
    data = [[row.get(c) or "" if c in text else formatted(c, row.get(c)) for c in COLUMNS]
            for row in engine.table_rows(results)]
    return {"headers": COLUMNS, "data": data}


def caption(output: engine.Output) -> str:
    return output.label if output.seconds is None else f"{output.label} · {output.seconds:.2f} s"


def gallery_value(result: Result) -> list:
    captions = {key: caption(output) for key, output in result.outputs.items()}
    return [(image, captions.get(key, label)) for key, label, image in engine.shown_images(result)]


def slider_value(result: Result, left: str | None, right: str | None):
    images = {key: image for key, _, image in engine.shown_images(result)}
    if left not in images or right not in images:
        return None
    return images[left], images[right]


def slider_choices(result: Result, left: str | None, right: str | None):
    """Dropdown updates for the slider's two sides, keeping the current choices where they still exist.

    Left: the input, the reference or any output; right: any output (by default the latest).
    """
    everything = [(label, key) for key, label, _ in engine.shown_images(result)]
    if not everything:
        return gr.Dropdown(choices=[], value=None), gr.Dropdown(choices=[], value=None), None, None
    restored = [(label, key) for label, key in everything if key not in (INPUT, REFERENCE)] or everything
    models = [key for _, key in restored if key != BASELINE] or [key for _, key in restored]
    left = left if left in [key for _, key in everything] else everything[0][1]
    right = right if right in [key for _, key in restored] else models[-1]
    return gr.Dropdown(choices=everything, value=left), gr.Dropdown(choices=restored, value=right), left, right


def center_of(photo: engine.Photo, point: tuple[int, int] | None) -> tuple[int, int]:
    height, width = photo.image.shape[:2]
    if point is None:
        return height // 2, width // 2
    return min(point[0], height - 1), min(point[1], width - 1)


def zoom_values(session: Session, result: Result):
    """The picker (the input with the zoomed box drawn) and the zoomed crops of every image."""
    photo = result.photo
    box = visualize.crop_box(*photo.image.shape[:2], center_of(photo, session.point), session.crop)
    picker = visualize.draw_box(photo.image, box)
    crops = [(visualize.zoom(image, box, longest=ZOOM_SIDE), label) for _, label, image in engine.shown_images(result)]
    return picker, crops


def kernel_values(session: Session, index: int) -> list:
    """The remaining-blur kernel of every output at the session's point (none on photos too small to estimate one)."""
    result, drawn = session.results[index], session.drawn[index]
    if not engine.kernel_fits(result.photo.image):
        return []
    point = center_of(result.photo, session.point)
    shown = []
    for key, output in result.outputs.items():
        if key not in drawn.kernels:
            try:
                drawn.kernels[key] = visualize.kernel_image(engine.kernel_at(output.image, point, engine.scorer()))
            except ValueError:  # a flat region carries no information about blur: nothing to show there
                drawn.kernels[key] = None
        if drawn.kernels[key] is not None:
            shown.append((drawn.kernels[key], output.label))
    return shown


def error_values(result: Result, drawn: Drawn) -> list:
    reference = result.photo.reference
    if reference is None:
        return []
    if drawn.error_scale is None:  # one scale for every output, set by the blurry input's own error
        drawn.error_scale = visualize.error_scale([visualize.as_uint8(result.photo.image)], reference)
    for key, output in result.outputs.items():
        if key not in drawn.errors:
            drawn.errors[key] = visualize.error_map(output.image, reference, vmax=drawn.error_scale)
    return [(drawn.errors[key], f"{output.label}: |output - reference|") for key, output in result.outputs.items()]


def drawn_maps(result: Result, drawn: Drawn, key: str) -> list:
    if key not in drawn.maps:
        image = result.photo.image
        size = visualize.fit_size(*image.shape[:2], min(MAP_SIDE, max(image.shape[:2])))
        drawn.maps[key] = [(visualize.render_map(value, size=size), f"{engine.label(key)} · {name}")
                           for name, value in result.outputs[key].maps.items()]
    return drawn.maps[key]


def maps_values(result: Result, drawn: Drawn, groups: list[tuple[str, list[str]]]) -> list[list]:
    """Each paper's maps: its variants', then those of the visitor's checkpoints of one of its variants."""
    ran = result.outputs
    yours = [key for key in ran if own.is_own(key)]
    return [[item for name in [*names, *(key for key in yours if engine.own_model(key) in names)] if name in ran
             for item in drawn_maps(result, drawn, name)] for _, names in groups]


def panels(session: Session, index: int, left: str | None, right: str | None, groups) -> dict:
    """Everything the page shows for one photo of the session."""
    result, drawn = session.results[index], session.drawn[index]
    left_update, right_update, left, right = slider_choices(result, left, right)
    picker, crops = zoom_values(session, result)
    values = {
        "gallery": gallery_value(result), "left": left_update, "right": right_update,
        "slider": slider_value(result, left, right), "picker": picker, "zoom": crops,
        "kernels": kernel_values(session, index), "errors": error_values(result, drawn),
    }
    values |= {f"maps {i}": maps for i, maps in enumerate(maps_values(result, drawn, groups))}
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
    for old in IMAGES_DIR.rglob("*.png"):
        if time.time() - old.stat().st_mtime > RUNS_KEPT_S:
            old.unlink(missing_ok=True)
            if old.parent != IMAGES_DIR and not any(old.parent.iterdir()):
                old.parent.rmdir()
    return Path(tempfile.mkdtemp(prefix="run-", dir=RUNS_DIR))


# Pictures handed to Gradio


def png_file(image: np.ndarray, name: str | None = None) -> str:
    """The picture as a PNG file named by its content, written whole (``write_png``) before its name is handed on.
    With ``name``, the file is ``<name>.png`` in a folder named by the content: a picture that becomes an input
    (a made-blurry photo) keeps a name a person can read in the table, the captions and the ZIP."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{image.shape} {image.dtype} ".encode() + image.tobytes()).hexdigest()
    path = IMAGES_DIR / digest / f"{name}.png" if name else IMAGES_DIR / f"{digest}.png"
    try:
        os.utime(path)  # shown again: kept from the sweep of old pictures (``new_run_dir``) for another day
    except FileNotFoundError:
        write_png(path, image, private=True)
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
    """The handler run inside ``core.allocator.reusing_freed_memory``: its activations reuse freed heap memory, and
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
    stem = Path(sharp).stem
    return (png_file(visualize.as_uint8(blurry), f"{stem}-blurred-{int(length)}px-seed{int(seed)}"),
            png_file(visualize.as_uint8(image), stem), visualize.kernel_image(kernel))


def model_choices_with(yours) -> list[tuple[str, str]]:
    """The Models choices of a session: the shipped ones, then the visitor's checkpoints."""
    return model_choices() + [(f"{engine.label(key)} · {own.checkpoint(key).parameters / 1e6:.2f}M parameters", key)
                              for key in yours or []]


def add_checkpoint(file, yours=None, chosen=None, adapt_choice=None):
    """Register a visitor's checkpoint for this session: it joins Models (ticked) and the Adapt tab's models.
    Refused with the reason, and nothing changes, for a file that is not a checkpoint this project made."""
    yours = list(yours or [])
    if not file:
        raise gr.Error("Choose a .safetensors checkpoint made by `python -m train` first.")
    path = Path(file)
    try:
        facts = own.register(path, file_name=path.name)
    except own.CheckpointError as error:
        raise gr.Error(f"Checkpoint refused: {error}") from None
    yours.append(facts.key)
    choices = model_choices_with(yours)
    adapt_choices = [*app_models(), *yours]
    status = (f"Added **{engine.label(facts.key)}**: {facts.parameters:,} parameters, architecture "
              f"{facts.architecture or 'as registered'}, SHA-256 {facts.sha256[:12]}. It runs in this browser session "
              "only and is dropped when you leave.")
    return (yours, gr.update(choices=choices, value=[*(chosen or []), facts.key]),
            gr.update(choices=adapt_choices, value=adapt_choice), status, facts.key)


def forget_checkpoints(yours) -> None:
    """A session ended: its checkpoints go (``gr.State``'s delete callback)."""
    own.forget(yours)


def context_for(reference, context):
    """The context choices after the reference changed: the baseline ticked with a reference, never without."""
    chosen = [key for key in context or [] if key != BASELINE]
    return chosen + [BASELINE] if reference else chosen


def compare(blurry, reference=None, more=None, more_references=None, models=None, context=(INPUT, BASELINE),
            size=PREVIEW_SIZE, yours=None, progress=gr.Progress()):
    """Stream the comparison: after each method, its output; after its metrics, its row; at the end, downloads.
    ``yours``: the keys of the checkpoints this visitor registered (``add_checkpoint``), which may be picked too."""
    if not models and not context:
        raise gr.Error("Pick at least one model (or the blurry input or the classical baseline).")
    photos = gather_photos(blurry, reference, more, more_references, size)
    if not photos:
        raise gr.Error("Give a blurry photo: upload, paste or drop one, or click an example.")
    unknown = [name for name in models or [] if name not in app_models() and name not in (yours or [])]
    if unknown:
        raise gr.Error(f"Unknown model(s) {', '.join(unknown)}; choose from {', '.join(app_models())}"
                       f"{' or a checkpoint of yours' if yours else ''}.")
    groups = paper_groups()
    names = compare_outputs(groups)
    keys = engine.smallest_first(models or []) + ([BASELINE] if BASELINE in (context or []) else [])
    show_input = INPUT in (context or [])
    session = Session()
    total = len(photos) * (len(keys) + show_input)
    done = 0
    events = engine.compare(photos, models or [], with_input=show_input, with_baseline=BASELINE in (context or []))
    for event in events:
        if event.index == len(session.results):
            session.results.append(event.result)
            session.drawn.append(Drawn())
        name = event.result.photo.name
        if isinstance(event, OutputReady):
            label = event.result.outputs[event.key].label
            if event.key == INPUT:
                status = f"{name}: running {', '.join(keys) or 'its metrics'}…"
            else:
                status = f"{name}: **{label}** done, computing its metrics…"
            yield frame(names, panels(session, event.index, None, None, groups) | {
                "session": session, "photo": photo_choices(session, event.index),
                "table": table_value(session.results), "status": status,
            })
            continue
        done += 1
        progress((done, total), desc=f"{name}: {engine.label(event.key)} done")
        yield frame(names, {"table": table_value(session.results), "status": f"{done} of {total} done."})
    run_dir = new_run_dir()
    csv_path = engine.write_csv(run_dir / "metrics.csv", engine.table_rows(session.results))
    zip_path = engine.write_zip(run_dir / "outputs.zip", session.results, csv_path)
    yield frame(names, panels(session, 0, None, None, groups) | {  # complete, for API callers that take the last
        "session": session, "photo": photo_choices(session, 0), "table": table_value(session.results),
        "csv": str(csv_path), "zip": str(zip_path), "status": done_text(session.results, keys),
    })


NEW_PHOTO = "A new photo: press **Compare** to run the models on it (the last run's results were cleared)."
STOPPED = "Stopped. The methods that finished before Stop are shown; press **Compare** to run again."


def cleared(groups) -> tuple:
    """Compare's outputs emptied, for a new photo or reference: no result of the photo before stays beside it."""
    empty_choices = gr.update(choices=[], value=None)
    values = {"table": {"headers": COLUMNS, "data": []}, "csv": None, "zip": None, "status": NEW_PHOTO,
              "session": None, "photo": gr.update(choices=[], value=None, visible=False), "gallery": [],
              "left": empty_choices, "right": empty_choices, "slider": None, "picker": None, "zoom": [],
              "kernels": [], "errors": []}
    values |= {name: [] for name in compare_outputs(groups) if name.startswith("maps ")}
    return frame(compare_outputs(groups), values)


def adaptation_cleared() -> tuple:
    """The adaptation tab's outputs emptied, for a new photo."""
    return None, None, None, None, "A new photo: press **Adapt** to adapt a model on it."


def done_text(results: list[Result], keys: list[str]) -> str:
    """What ran, at which size, which weights were used, and why a model has no maps."""
    models = [key for key in keys if key != BASELINE]
    untrained = [key for key in models if not own.is_own(key) and not shipped_weights(key).trained]
    height, width = results[0].photo.image.shape[:2]
    scorer_name = scoring_model()
    scorer_note = "" if shipped_weights(scorer_name).trained else " (untrained: the score measures nothing yet)"
    lines = [f"Done: {len(keys)} method(s) on {len(results)} photo(s) at {width}x{height} px"
             f"{'' if len(results) == 1 else ' (the first)'}. Reblur score: M_R of `{scorer_name}`{scorer_note}."]
    if untrained:
        lines.append(f"Untrained (random weights): {', '.join(untrained)}.")
    outputs = results[0].outputs
    tiled = [key for key in models if key in outputs and outputs[key].tile is not None]
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
    return slider_value(session.results[int(index or 0)], left, right)


def pick_point(session: Session | None, index, evt: gr.SelectData):
    """A click on the picker: zoom there, and estimate every output's remaining blur there."""
    if session is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    x, y = evt.index
    session.point = (int(y), int(x))
    for drawn in session.drawn:
        drawn.kernels.clear()
    index = int(index or 0)
    picker, crops = zoom_values(session, session.results[index])
    return session, picker, crops, kernel_values(session, index)


def set_crop(session: Session | None, index, crop):
    if session is None:
        return gr.skip(), gr.skip()
    session.crop = int(crop)
    return zoom_values(session, session.results[int(index or 0)])


def adaptation(blurry, reference=None, name="reblur-n2", steps=5, lr=PAPER_LR, size=PREVIEW_SIZE, yours=None,
               progress=gr.Progress()):
    """Stream Reblur's test-time adaptation (Algorithm 1) of any model (Reblur's own M_R, or the shipped Reblur's
    lent to the others): the output, the metrics and the curves after every step.

    ``core.compare.adaptation`` computes one step per update it streams; when Gradio closes this stream (the
    visitor pressed Stop or left), closing it closes that generator, so no further step runs.
    """
    if name not in app_models() and name not in (yours or []):
        raise gr.Error(f"No model {name!r} to adapt: one of {', '.join(app_models())}.")
    steps = int(steps)
    if not 0 <= steps <= MAX_STEPS:
        raise gr.Error(f"Steps must be between 0 and {MAX_STEPS}, got {steps}.")
    if lr is None or not (math.isfinite(float(lr)) and float(lr) > 0):
        raise gr.Error(f"The learning rate must be a positive number (the paper uses {PAPER_LR:g}), got {lr}.")
    photos = gather_photos(blurry, reference, None, None, size)
    if not photos:
        raise gr.Error("Give a blurry photo first (Compare tab): upload, paste or drop one, or click an example.")
    photo = photos[0]
    trained = own.is_own(name) or shipped_weights(name).trained
    history: list[dict] = []
    with contextlib.closing(engine.adaptation(photo, name, steps=steps, lr=float(lr))) as events:
        for event in events:
            if isinstance(event, Adaptation):
                yield adaptation_frame(history[0]["image"], history, photo, adaptation_summary(event, name, trained))
                return
            history.append(event.row | {"image": event.image})
            if event.step == 0:
                yield adaptation_frame(event.image, history, photo, f"Step 0 of {steps}: the model's own output.")
                continue
            progress((event.step, steps), desc=f"adaptation step {event.step} of {steps}")
            status = f"Step {event.step} of {steps}: Eq. 7 loss {event.row['Eq. 7 loss']:.5f}."
            yield adaptation_frame(history[0]["image"], history, photo, status)


def adaptation_frame(first: np.ndarray, history: list[dict], photo: engine.Photo, status: str):
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


def adaptation_summary(result: Adaptation, name: str, trained: bool) -> str:
    text = f"Done: {result.steps_done} step(s) of Algorithm 1 on `{name}`, then histogram matching to step 0."
    if result.cancelled:
        text += " Stopped early."
    if result.diverged:
        text += f" Diverged: {result.message}."
    if result.drifted:
        text += f" Warning: {result.message}."
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


OWN_NOTE = """Trained a model with `python -m train`? Drop its `.safetensors` file here to compare it with the
shipped ones (its metadata names the model and architecture). It stays in this browser session only: never saved
with the app's checkpoints, never shown to anyone else, dropped when you leave. Refused, with the reason, if it is
not such a file; nothing in it is executed."""

ADAPT_NOTE = """Reblur's self-supervised test-time adaptation (Algorithm 1): a copy of M_D is fine-tuned on this
one photo so that M_R finds its output hard to reblur, then histogram-matched to the first output. It uses the photo,
reference and processing size of the Compare tab. Any model can be adapted this way (not in the paper): a Reblur
model against its own M_R, every other one (its whole network) against the shipped Reblur's M_R.

The **Eq. 7 loss** is how much M_R still changes the current output (mean |M_R(L) - L|, per pixel and channel): each
step lowers it for the output it was computed on, but the step also changes the output, so the next step's loss
can be higher. At the paper's learning rate (3e-6) a few steps change a trained model's output by little; each curve
is drawn on a scale of at least 2% of its value, so that changes too small to matter look as flat as they are, and
its title gives the change from the first step to the last."""

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
    names = app_models()
    if zero_gpu():  # this process may not run on the GPU, only the GPU tasks (on_gpu) may: the remaining-blur
        pin_default_device("cpu")  # kernels at a clicked point (small) are estimated here, on the CPU
    on_cuda = zero_gpu() or default_device().type == "cuda"
    heavy = {"concurrency_id": "models", "concurrency_limit": 1}
    initial_size = "full" if on_cuda else PREVIEW_SIZE
    timed_on = None if on_cuda else str(default_device())  # the device whose speed the time estimates use
    untrained = [name for name in names if not shipped_weights(name).trained]
    with gr.Blocks(title="Deblurring workbench", delete_cache=(3600, 6 * 3600)) as demo:
        yours = gr.State([], delete_callback=forget_checkpoints)  # this visitor's checkpoints (core.own keys)
        gr.Markdown(INTRO)
        reach = reach_line()
        if reach:
            gr.Markdown(reach, elem_id="reach")
        if untrained:
            gr.Markdown(f"⚠️ No trained weights are shipped yet for: {', '.join(untrained)}. Those run on their "
                        "**untrained (random weights)** initialisation and their outputs show only that.")
        session = gr.State()
        with gr.Tabs():
            with gr.Tab("Compare", id="compare"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        # Examples and Compare first, so that a 1280x720 screen shows both without scrolling; the
                        # photo inputs they fill are built here and drawn below them.
                        blurry = gr.Image(label="Blurry photo", type="filepath", image_mode=None, format="png",
                                          sources=["upload", "clipboard"], elem_id="blurry", height=220, render=False)
                        reference = gr.Image(label="Sharp reference (optional: PSNR, SSIM, LPIPS, error maps)",
                                             type="filepath", image_mode=None, format="png", height=220,
                                             sources=["upload", "clipboard"], elem_id="reference", render=False)
                        example_list, example_labels = example_rows()
                        gr.Examples(example_list, inputs=[blurry, reference], example_labels=example_labels,
                                    label="Examples (click one)", api_visibility="private")
                        with gr.Row():
                            compare_button = gr.Button("Compare", variant="primary", elem_id="compare-button")
                            stop_button = gr.Button("Stop", variant="stop", elem_id="stop-button")
                        with gr.Tabs():
                            with gr.Tab("Blurry photo", id="photo"):
                                with gr.Row():
                                    blurry.render()
                                    reference.render()
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
                        gr.Markdown(ATTRIBUTION)
                        models = gr.CheckboxGroup(model_choices(), value=default_models(initial_size, timed_on),
                                                  label="Models", info=slow_models_note(initial_size, timed_on),
                                                  elem_id="models")
                        with gr.Accordion("Your own checkpoint", open=False):
                            checkpoint_file = gr.File(label="A .safetensors file made by python -m train",
                                                      file_types=[".safetensors"], type="filepath",
                                                      elem_id="own-checkpoint")
                            checkpoint_status = gr.Markdown(OWN_NOTE, elem_id="own-status")
                            checkpoint_key = gr.Textbox(visible=False)
                        gr.Markdown(model_lines(), elem_classes="model-lines")
                        context = gr.CheckboxGroup(CONTEXT_CHOICES, value=default_context(None), label="For context",
                                                    elem_id="context")
                        size = gr.Radio(SIZE_CHOICES, value=initial_size, elem_id="size",
                                        label="Processing size (longest side)",
                                        info=f"Device: {device_text()}. Full size is slow on a CPU (FCN: minutes).")
                    with gr.Column(scale=2):
                        status = gr.Markdown("Results appear here, each model as soon as it finishes.", label="Status",
                                             elem_id="status")
                        photo = gr.Dropdown(label="Photo shown", choices=[], visible=False, interactive=True)
                        gallery = gr.Gallery(label="Side by side", format="png", columns=5, height="auto",
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
                            zoom = gr.Gallery(label="The same crop everywhere", format="png", columns=4, height="auto",
                                              object_fit="contain", elem_id="zoom", scale=3)
                        gr.Markdown("**Remaining blur at the point**: the kernel that takes each output to M_R of "
                                    "it, as in Reblur's Fig. 1 (a single dot: no blur left to amplify).")
                        kernels = gr.Gallery(label="Remaining blur", format="png", columns=6, height="auto",
                                             object_fit="contain", elem_id="kernels")
                        gr.Markdown("**Error maps** |output - reference|, on one scale for all (needs a sharp "
                                    "reference).")
                        errors = gr.Gallery(label="Error maps", format="png", columns=4, height="auto",
                                            object_fit="contain", elem_id="errors")
                        table = gr.Dataframe(headers=COLUMNS, label="Metrics", interactive=False, wrap=True,
                                             column_widths=[METRIC_WIDTHS.get(c, "96px") for c in COLUMNS],
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
                    adapt_model = gr.Dropdown(app_models(), value=scoring_model(), label="Model")  # a trained one
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
        checkpoint_file.upload(add_checkpoint, [checkpoint_file, yours, models, adapt_model],
                               [yours, models, adapt_model, checkpoint_status, checkpoint_key], api_name="checkpoint",
                               concurrency_limit=2)
        compare_event = compare_button.click(
            on_gpu(served(releasing_memory(compare)), compare_seconds),
            [blurry, reference, more, more_references, models, context, size, yours],
            [components[name] for name in compare_outputs(groups)], api_name="compare", show_progress_on=[status],
            **heavy,
        )
        stop_button.click(lambda: STOPPED, None, status, cancels=[compare_event], api_visibility="private",
                          show_progress="hidden")
        compare_panel = [components[name] for name in compare_outputs(groups)]
        for photo_input in (blurry, reference):  # a new photo or reference: the results beside it are not its own
            photo_input.change(functools.partial(cleared, groups), None, compare_panel, api_visibility="private",
                               show_progress="hidden")
        size.change(lambda chosen: gr.update(info=slow_models_note(chosen, timed_on)), size, models,
                    api_visibility="private", show_progress="hidden")
        reference.change(context_for, [reference, context], context, api_visibility="private", show_progress="hidden")
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
            on_gpu(served(releasing_memory(adaptation)), adaptation_seconds), [blurry, reference, adapt_model, steps, lr, size, yours],
            [adapted, adapt_slider, curve, adapt_table, adapt_status], api_name="adapt",
            show_progress_on=[adapt_status], **heavy,
        )
        adapt_stop.click(lambda: "Stopped: the steps before Stop are shown.", None, adapt_status,
                         cancels=[adapt_event], api_visibility="private", show_progress="hidden")
        blurry.change(adaptation_cleared, None, [adapted, adapt_slider, curve, adapt_table, adapt_status],
                      api_visibility="private", show_progress="hidden")
    return demo.queue(max_size=queue_size, default_concurrency_limit=4)


API_NOTE = """## From Python
Every result is also an API endpoint (`/compare`, `/blur`, `/adapt`, `/checkpoint`); see *Use via API* at the bottom
of the page. `/checkpoint` registers a `.safetensors` file of yours for the client's session and returns its key,
which `/compare` and `/adapt` then take as a model name.

```python
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860/")
table, csv_path, zip_path, status, *views = client.predict(
    blurry=handle_file("assets/gopro-crowd-blur.png"), reference=handle_file("assets/gopro-crowd-sharp.png"),
    models=["lmfn", "reblur-n2"], size="320", api_name="/compare")
*_, mine = client.predict(file=handle_file("runs/my-run/best.safetensors"), api_name="/checkpoint")
table, *_ = client.predict(blurry=handle_file("assets/gopro-crowd-blur.png"), models=["lmfn", mine], size="320",
                           api_name="/compare")
```"""


CSS = """
/* A gallery caption ("maxim-3s-gopro · 3.58 s") wraps onto a second line rather than ending in an ellipsis. */
.caption-label { white-space: normal !important; max-width: 100% !important; }
/* Table headers break between words, never inside one ("SS IM"); the columns are wide enough (METRIC_WIDTHS). */
th .header-content span { word-break: keep-all !important; overflow-wrap: normal !important; }
"""
METRIC_WIDTHS = {"method": "150px", "LPIPS": "140px", "weights": "220px", "image": "200px"}  # others 96 px


MAX_UPLOAD_BYTES = 50 * 2**20  # per file; a 50-megapixel PNG fits, anything bigger is refused before decoding


def launch_options() -> dict:
    """What ``launch`` needs beyond Gradio's defaults: serve the examples, cap uploads, show errors, the page's CSS."""
    return {"allowed_paths": [str(ASSETS)], "max_file_size": MAX_UPLOAD_BYTES, "show_error": True, "css": CSS}


if __name__ == "__main__":
    build_demo().launch(**launch_options())
