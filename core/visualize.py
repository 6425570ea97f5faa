"""Arrays a person looks at: colour maps with colour bars, zoomed crops, error maps, kernels, curves and grids.

Pure functions of numpy arrays (a CPU tensor is accepted wherever an array is); every image returned is
H x W x 3 uint8, ready to be written as a lossless PNG. Nothing here knows of models or of the UI.

- ``heatmap``: a 2-D map in a colour map with a colour bar beside it. A map with both signs gets a diverging
  colour map centred on zero, anything else a sequential one over its own range (the bar says which numbers).
- ``render_map``: any map a model returns (``model(x, return_maps=True)``) -> an image, chosen by its shape:
  an image (3 channels), a spatial map (1 channel), a square matrix (an attention matrix), a vector (bars).
- ``error_map``: per-pixel absolute error against a reference (mean over channels), on a shared scale.
- ``crop_box`` / ``zoom`` / ``draw_box``: the same square region in every image, enlarged with nearest
  neighbours so that pixels stay pixels.
- ``kernel_image``: a blur kernel, enlarged, normalised to its peak.
- ``curves``: per-step curves (and a trade-off plane) drawn with matplotlib's Agg canvas, as an image.
- ``labelled_grid``: several same-size images side by side, each with its label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SEQUENTIAL = "viridis"
DIVERGING = "coolwarm"
ERRORS = "magma"
KERNELS = "inferno"
BAR_WIDTH = 14  # pixels of the colour bar itself, at least
LABEL_WIDTH = 58  # pixels for the tick labels right of the bar, at least
FONT_SIZE = 12
BAR_FONT_FRACTION = 1 / 16  # tick labels this fraction of the map's height: readable when a gallery shrinks it


def _font(size: int = FONT_SIZE) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def as_uint8(image) -> np.ndarray:
    """H x W x 3 uint8 from uint8, or from floats in [0, 1] (clipped, rounded)."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    return (np.clip(np.nan_to_num(array.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def resize_longest(image: np.ndarray, longest: int) -> np.ndarray:
    """Shrink an H x W x C float image in [0, 1] so that its longer side is at most ``longest`` (Lanczos).

    Never enlarges; the aspect ratio is kept (each side rounded, at least 1 pixel). Returns float32.
    """
    array = np.asarray(image, dtype=np.float32)
    height, width = array.shape[:2]
    if longest < 1:
        raise ValueError(f"the longest side must be at least 1 pixel, got {longest}")
    if max(height, width) <= longest:
        return array
    scale = longest / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(array[:, :, c])).resize(size, Image.LANCZOS))
        for c in range(array.shape[2])
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0).astype(np.float32)


def fit_size(height: int, width: int, longest: int) -> tuple[int, int]:
    """(height, width) scaled so that the longer side equals ``longest``, aspect ratio kept."""
    scale = longest / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _nearest(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an H x W x 3 uint8 image to (height, width) with nearest neighbours."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.NEAREST))


def colorize(values, *, vmin: float | None = None, vmax: float | None = None, cmap: str | None = None):
    """A 2-D array -> (H x W x 3 uint8, vmin, vmax, cmap name).

    Without ``cmap``: values of both signs get the diverging map over [-m, m], m = max |value|; others the
    sequential map over [min, max]. ``vmin`` / ``vmax`` override the range. A constant map is drawn mid-scale.
    """
    import matplotlib

    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {array.shape}")
    array = np.nan_to_num(array)
    low, high = float(array.min()), float(array.max())
    if cmap is None:
        cmap = DIVERGING if low < 0 < high else SEQUENTIAL
    if cmap == DIVERGING and vmin is None and vmax is None:
        bound = max(abs(low), abs(high))
        low, high = -bound, bound
    low = low if vmin is None else float(vmin)
    high = high if vmax is None else float(vmax)
    span = high - low
    normalised = np.full(array.shape, 0.5) if span <= 0 else np.clip((array - low) / span, 0.0, 1.0)
    rgb = matplotlib.colormaps[cmap](normalised, bytes=True)[..., :3]
    return np.ascontiguousarray(rgb), low, high, cmap


def _tick(value: float) -> str:
    return f"{value:.3g}"


def colorbar_widths(height: int) -> tuple[int, int, int]:
    """(bar, labels, font size) in pixels for a map ``height`` pixels high: they grow with the map, so that a
    1280 x 720 map shown a fifth of its size in a gallery still has labels of about nine pixels."""
    font_size = max(FONT_SIZE, round(height * BAR_FONT_FRACTION))
    return max(BAR_WIDTH, round(font_size * 1.2)), max(LABEL_WIDTH, round(font_size * 4.8)), font_size


def add_colorbar(image: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    """The image with a vertical colour bar to its right (vmax at the top), tick labels at the ends and middle,
    sized by ``colorbar_widths``."""
    import matplotlib

    height = max(image.shape[0], 96)
    bar_width, label_width, font_size = colorbar_widths(height)
    ramp = np.linspace(1.0, 0.0, height)[:, None].repeat(bar_width, axis=1)
    bar = matplotlib.colormaps[cmap](ramp, bytes=True)[..., :3]
    canvas = Image.new("RGB", (image.shape[1] + 6 + bar_width + label_width, height), "white")
    canvas.paste(Image.fromarray(image), (0, (height - image.shape[0]) // 2))
    left = image.shape[1] + 6
    canvas.paste(Image.fromarray(np.ascontiguousarray(bar)), (left, 0))
    draw = ImageDraw.Draw(canvas)
    font = _font(font_size)
    for fraction, value in ((0.0, vmax), (0.5, (vmin + vmax) / 2), (1.0, vmin)):
        y = min(max(round(fraction * (height - 1)) - font_size // 2, 0), height - font_size - 2)
        draw.text((left + bar_width + 4, y), _tick(value), fill="black", font=font)
    return np.asarray(canvas)


def heatmap(
    values, *, size: tuple[int, int] | None = None, vmin=None, vmax=None, cmap: str | None = None
) -> np.ndarray:
    """A 2-D map colour-mapped (see ``colorize``), resized to ``size`` = (height, width) with nearest
    neighbours, with its colour bar."""
    rgb, low, high, cmap = colorize(values, vmin=vmin, vmax=vmax, cmap=cmap)
    if size is not None:
        rgb = _nearest(rgb, size)
    return add_colorbar(rgb, low, high, cmap)


def bar_chart(values: Sequence[float], labels: Sequence[str], *, title: str = "") -> np.ndarray:
    """A small bar chart of a vector (e.g. FCN's trust ratios), as an image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.6, 2.6), dpi=100)
    axes = figure.add_subplot()
    bars = axes.bar(list(labels), [float(v) for v in values], color="#4c72b0")
    axes.bar_label(bars, fmt="%.3f", fontsize=8)
    axes.set_title(title, fontsize=9)
    axes.tick_params(labelsize=8)
    axes.margins(y=0.2)
    figure.tight_layout()
    return _figure_to_rgb(figure, FigureCanvasAgg)


def render_map(value, *, size: tuple[int, int] | None = None) -> np.ndarray:
    """A model's map -> an image, by the shapes ``model(x, return_maps=True)`` returns (batch of one):

    1 x 3 x H x W: an image, shown as it is (clipped to [0, 1]); 1 x 1 x h x w: a spatial map with a colour bar,
    enlarged to ``size`` (height, width); 1 x K x K: a matrix (an attention matrix) with a colour bar, square, at
    least 320 px; a vector: a bar chart.
    """
    array = np.asarray(value, dtype=np.float64)
    if array.ndim in (3, 4):
        if array.shape[0] != 1:
            raise ValueError(f"expected one map, got a batch of {array.shape[0]}")
        array = array[0]
    if np.ndim(value) == 1:
        return bar_chart(array, [str(i + 1) for i in range(array.size)])
    if np.ndim(value) == 4 and array.shape[0] == 3:
        image = as_uint8(array.transpose(1, 2, 0))
        return _nearest(image, size) if size is not None else image
    if np.ndim(value) == 4 and array.shape[0] == 1:
        return heatmap(array[0], size=size)
    if np.ndim(value) == 3:
        side = max(320, *array.shape)
        return heatmap(array, size=(side, side))
    raise ValueError(f"cannot draw a map of shape {np.shape(value)}")


def error_map(output, reference, *, vmax: float | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """|output - reference| averaged over channels (both uint8 or floats in [0, 1]), colour-mapped on [0, vmax]
    (default: its own maximum) with a colour bar. Use one ``vmax`` for several outputs to compare them."""
    output, reference = _unit(output), _unit(reference)
    if output.shape != reference.shape:
        raise ValueError(f"output and reference differ in size: {output.shape} vs {reference.shape}")
    errors = np.abs(output - reference).mean(axis=2)
    top = float(errors.max()) if vmax is None else float(vmax)
    return heatmap(errors, size=size, vmin=0.0, vmax=max(top, 1e-6), cmap=ERRORS)


def _unit(image) -> np.ndarray:
    array = np.asarray(image)
    return array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)


def error_scale(outputs: Sequence[np.ndarray], reference, *, percentile: float = 99.5) -> float:
    """A shared upper end for the error maps of several outputs: the given percentile of all their errors."""
    reference = _unit(reference)
    errors = np.concatenate([np.abs(_unit(o) - reference).mean(axis=2).ravel() for o in outputs])
    return max(float(np.percentile(errors, percentile)), 1e-6)


def crop_box(height: int, width: int, center: tuple[int, int], side: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a side x side square centred on (y, x), shifted to lie inside the image
    (and shrunk to the image where the image is smaller)."""
    y, x = center
    box_h, box_w = min(side, height), min(side, width)
    top = min(max(int(y) - box_h // 2, 0), height - box_h)
    left = min(max(int(x) - box_w // 2, 0), width - box_w)
    return top, left, top + box_h, left + box_w


def zoom(image, box: tuple[int, int, int, int], *, longest: int = 256) -> np.ndarray:
    """The box cut from an image and enlarged with nearest neighbours to about ``longest`` pixels (integer factor)."""
    top, left, bottom, right = box
    crop = as_uint8(np.asarray(image)[top:bottom, left:right])
    factor = max(1, longest // max(crop.shape[:2]))
    return crop.repeat(factor, axis=0).repeat(factor, axis=1)


def draw_box(image, box: tuple[int, int, int, int], *, color=(255, 48, 48), width: int = 2) -> np.ndarray:
    """A copy of the image with the box outlined."""
    top, left, bottom, right = box
    canvas = Image.fromarray(as_uint8(image).copy())
    ImageDraw.Draw(canvas).rectangle((left, top, right - 1, bottom - 1), outline=color, width=width)
    return np.asarray(canvas)


def kernel_image(kernel, *, side: int = 155) -> np.ndarray:
    """A k x k blur kernel normalised to its peak, enlarged by an integer factor to about ``side`` pixels."""
    array = np.asarray(kernel, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D kernel, got shape {array.shape}")
    peak = float(array.max())
    rgb, _, _, _ = colorize(array / peak if peak > 0 else array, vmin=0.0, vmax=1.0, cmap=KERNELS)
    factor = max(1, side // max(array.shape))
    return rgb.repeat(factor, axis=0).repeat(factor, axis=1)


def _figure_to_rgb(figure, canvas_class) -> np.ndarray:
    canvas = canvas_class(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


MIN_RELATIVE_SPAN = 0.02  # a per-step curve's y axis spans at least this share of its value: tiny changes look tiny


def value_range(values: np.ndarray) -> tuple[float, float] | None:
    """A curve's y limits: its values with a margin, spanning at least ``MIN_RELATIVE_SPAN`` of their size
    (None for values that are all zero)."""
    low, high = float(np.min(values)), float(np.max(values))
    centre = (low + high) / 2
    span = max(high - low, MIN_RELATIVE_SPAN * abs(centre))
    return (centre - 0.6 * span, centre + 0.6 * span) if span > 0 else None


def curves(
    steps: Sequence[int],
    series: dict[str, Sequence[float]],
    *,
    tradeoff: tuple[str, str] | None = None,
    title: str = "",
) -> np.ndarray:
    """Small multiples of per-step curves, one panel per series (NaN points are left out), as an image.

    Each panel's y axis spans at least ``MIN_RELATIVE_SPAN`` of its values' size (no autoscale that stretches a
    change of 1e-6 over the whole panel), and its title gives the change from the first point to the last.

    ``tradeoff=(x name, y name)`` adds a panel with one point per step in the plane of those two series,
    joined in step order and numbered (a perception-distortion plot).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = [name for name, values in series.items() if np.isfinite(np.asarray(values, dtype=float)).any()]
    count = len(panels) + (1 if tradeoff else 0)
    columns = min(4, max(count, 1))
    rows = math.ceil(max(count, 1) / columns)
    figure = Figure(figsize=(3.1 * columns, 2.5 * rows + (0.3 if title else 0)), dpi=90)
    if title:
        figure.suptitle(title, fontsize=10)
    x = np.asarray(steps, dtype=float)
    for index, name in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        y = np.asarray(series[name], dtype=float)
        keep = np.isfinite(y)
        axes.plot(x[keep], y[keep], marker="o", markersize=3, color="#4c72b0")
        limits = value_range(y[keep])
        if limits is not None:
            axes.set_ylim(*limits)
        change = y[keep][-1] - y[keep][0]
        axes.set_title(f"{name} (change {change:+.3g})" if keep.sum() > 1 else name, fontsize=9)
        axes.set_xlabel("step", fontsize=8)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.ticklabel_format(useOffset=False)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    if tradeoff:
        axes = figure.add_subplot(rows, columns, count)
        px = np.asarray(series[tradeoff[0]], dtype=float)
        py = np.asarray(series[tradeoff[1]], dtype=float)
        keep = np.isfinite(px) & np.isfinite(py)
        axes.plot(px[keep], py[keep], marker="o", markersize=3, color="#c44e52")
        for step, a, b in zip(x[keep], px[keep], py[keep]):
            axes.annotate(str(int(step)), (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axes.set_xlabel(tradeoff[0], fontsize=8)
        axes.set_ylabel(tradeoff[1], fontsize=8)
        axes.set_title("trade-off, numbered by step", fontsize=9)
        axes.xaxis.set_major_locator(MaxNLocator(4))
        axes.ticklabel_format(useOffset=False)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
    figure.tight_layout()
    return _figure_to_rgb(figure, FigureCanvasAgg)


def labelled_grid(images: Sequence[np.ndarray], labels: Sequence[str], *, columns: int = 3, gap: int = 6) -> np.ndarray:
    """Images of one size in a grid, each with its label above it, on white."""
    if not images:
        raise ValueError("labelled_grid needs at least one image")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    tiles = [as_uint8(image) for image in images]
    height, width = tiles[0].shape[:2]
    if any(tile.shape[:2] != (height, width) for tile in tiles):
        raise ValueError("labelled_grid needs images of one size")
    columns = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    caption = FONT_SIZE + 8
    size = (columns * width + (columns + 1) * gap, rows * (height + caption) + (rows + 1) * gap)
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    font = _font()
    for index, (tile, label) in enumerate(zip(tiles, labels)):
        row, column = divmod(index, columns)
        left = gap + column * (width + gap)
        top = gap + row * (height + caption + gap)
        draw.text((left, top + 2), label, fill="black", font=font)
        canvas.paste(Image.fromarray(tile), (left, top + caption))
    return np.asarray(canvas)
