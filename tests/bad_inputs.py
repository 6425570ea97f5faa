"""A corpus of awkward uploads, written into a folder: what a public Space meets. Shared by the library's and the
app's tests. Each entry: file name -> (what it is, expected outcome): "error" (a clear message), or the H x W the
image must decode to (upright, RGB)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(side: int = 40_000) -> bytes:
    """A small file whose header declares side x side pixels (1.6 gigapixels by default)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (3 * 16 + 1))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 3 + yy) % 256, (yy * 2) % 256, (xx + 2 * yy) % 256], axis=2)
    return (base + rng.integers(0, 16, base.shape)).clip(0, 255).astype(np.uint8)


def _save(image: Image.Image, format_name: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def write_corpus(folder: Path) -> dict[str, tuple[str, object]]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.fromarray(_photo(48, 64))
    png, jpeg = _save(photo, "PNG"), _save(photo, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    frames = [Image.fromarray(_photo(32, 40, seed)) for seed in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files = {
        "text.png": (b"this is not an image, only a text file with a .png name\n", "a text file renamed .png", "error"),
        "truncated.png": (png[: len(png) // 2], "a PNG cut in half", "error"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "a JPEG cut in half", "error"),
        "empty.png": (b"", "a zero-byte file", "error"),
        "bomb.png": (bomb_png(), "a decompression bomb (40000 x 40000 declared)", "error"),
        "tiny.png": (_save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), "a 1 x 1 image", (1, 1)),
        "sliver.png": (_save(Image.fromarray(_photo(5000, 7)), "PNG"), "a 7 x 5000 image", (5000, 7)),
        "deep.png": (_save(Image.fromarray((np.arange(40 * 50, dtype=np.uint16) * 31).reshape(40, 50)), "PNG"),
                     "a 16-bit greyscale PNG", (40, 50)),
        "alpha.png": (_save(photo.convert("RGBA"), "PNG"), "RGBA (alpha dropped, colours kept)", (48, 64)),
        "grey.png": (_save(photo.convert("L"), "PNG"), "greyscale", (48, 64)),
        "palette.png": (_save(photo.convert("P"), "PNG"), "palette", (48, 64)),
        "cmyk.jpg": (_save(photo.convert("CMYK"), "JPEG"), "a CMYK JPEG", (48, 64)),
        "rotated.jpg": (_save(photo, "JPEG", exif=exif.tobytes()), "an EXIF-rotated phone photo", (64, 48)),
        "animated.gif": (gif.getvalue(), "an animated GIF (first frame)", (32, 40)),
    }
    for name, (data, _, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: (what, outcome) for name, (_, what, outcome) in files.items()}
