"""Reading and writing image files: every photo a person may give, and lossless atomic PNG output."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.inference import to_float_rgb

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
MAX_PIXELS = 50_000_000  # larger files are refused before decoding (decompression bombs included)


class ImageError(ValueError):
    """A file that cannot be used as an image, with a message a person understands."""


def image_shape(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header alone (nothing decoded); ``ImageError`` if unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from error
    return height, width


def read_image(path: str | Path) -> np.ndarray:
    """H x W x 3 float32 in [0, 1]: EXIF orientation applied, 16-bit kept at full depth, grey expanded,
    alpha dropped, CMYK and palette converted, the first frame of an animation."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(f"{path}: {width}x{height} is larger than the {MAX_PIXELS / 1e6:.0f}-megapixel limit")
            image.seek(0)
            image = ImageOps.exif_transpose(image)
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                array = np.asarray(image, dtype=np.uint32).clip(0, 65535).astype(np.uint16)
            elif image.mode in ("RGB", "L", "RGBA", "LA"):
                array = np.asarray(image)
            else:
                array = np.asarray(image.convert("RGB"))
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageError(f"{path}: refused as a possible decompression bomb ({error})") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(f"{path}: not a readable image ({error})") from error
    return to_float_rgb(array)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore at once (not atomic with respect to other threads)
    os.umask(mask)
    return mask


def write_png(path: str | Path, image: np.ndarray, *, private: bool = False) -> None:
    """Write an H x W x 3 uint8 image as PNG atomically: a temporary file in the same folder, then a rename.

    The file gets the mode a plainly created file would (0666 less the umask), or 0600 when ``private`` (a
    picture of one visitor's session, in a folder other users of the machine can list)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".png.tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o600 if private else 0o666 & ~current_umask())
        with os.fdopen(handle, "wb") as file:
            Image.fromarray(image).save(file, format="PNG")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
