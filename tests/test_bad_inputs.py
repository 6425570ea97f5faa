"""Every awkward upload of ``tests/bad_inputs.py`` through the library's reader: a clear message naming the file,
or an upright RGB image of the right size."""

import numpy as np
import pytest

from bad_inputs import write_corpus
from core.images import ImageError, read_image


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    return folder, write_corpus(folder)


def test_each_awkward_file_gives_an_upright_image_or_a_clear_error(corpus):
    folder, entries = corpus
    for name, (what, outcome) in entries.items():
        path = folder / name
        if outcome == "error":
            with pytest.raises(ImageError) as caught:
                read_image(path)
            assert name in str(caught.value), f"{what}: the message does not name the file"
        else:
            image = read_image(path)
            assert image.shape == (*outcome, 3), f"{what}: decoded to {image.shape}"
            assert image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1, what


def test_sixteen_bit_keeps_more_than_256_levels(corpus):
    folder, _ = corpus
    levels = np.round(read_image(folder / "deep.png")[:, :, 0] * 65535).astype(np.int64)
    assert np.array_equal(levels.ravel(), np.arange(40 * 50) * 31)  # every 16-bit level kept, not rounded to 8 bits


def test_rotated_photo_is_shown_upright(corpus):
    folder, _ = corpus
    upright = read_image(folder / "rotated.jpg")
    assert upright.shape[:2] == (64, 48)  # stored 48 x 64 landscape, displayed portrait
