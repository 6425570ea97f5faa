"""Property-based tests of the decoding and conversion path (``core.images.read_image``, ``to_float_rgb``):
whatever bytes or arrays arrive, the result is an H x W x 3 float32 image in [0, 1] or an error that says why,
never a crash of another kind."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from core.images import ImageError, read_image
from core.inference import to_float_rgb

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
sides = st.integers(min_value=1, max_value=24)


@st.composite
def uint8_images(draw):
    height, width = draw(sides), draw(sides)
    channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    shape = (height, width) if channels is None else (height, width, channels)
    return draw(arrays(np.uint8, shape))


def expected_rgb(array: np.ndarray) -> np.ndarray:
    """The documented conversion, written independently: grey repeated, alpha dropped, scaled to [0, 1]."""
    scale = 65535.0 if array.dtype == np.uint16 else 255.0
    values = array.astype(np.float64) / scale
    if values.ndim == 2:
        values = values[:, :, None]
    if values.shape[2] in (1, 2):
        values = values[:, :, :1].repeat(3, axis=2)
    return values[:, :, :3]


@SETTINGS
@given(uint8_images())
def test_any_uint8_array_becomes_rgb_in_unit_range(array):
    result = to_float_rgb(array)
    assert result.dtype == np.float32 and result.shape == (*array.shape[:2], 3)
    np.testing.assert_allclose(result, expected_rgb(array), atol=1e-6)


@SETTINGS
@given(arrays(np.float32, st.tuples(sides, sides, st.just(3)), elements=st.floats(-2, 2, width=32)))
def test_float_arrays_outside_the_unit_range_are_refused(array):
    if array.min() >= 0 and array.max() <= 1:
        assert np.array_equal(to_float_rgb(array), array)
    else:
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            to_float_rgb(array)


PNG_MODES = {None: "L", 1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@SETTINGS
@given(uint8_images())
def test_png_files_of_every_layout_round_trip_exactly(tmp_path, array):
    channels = None if array.ndim == 2 else array.shape[2]
    stored = array if channels not in (1,) else array[:, :, 0]
    path = tmp_path / "image.png"
    Image.fromarray(stored, mode=PNG_MODES[channels]).save(path)
    np.testing.assert_allclose(read_image(path), expected_rgb(array), atol=1e-6)


@SETTINGS
@given(arrays(np.uint16, st.tuples(sides, sides)))
def test_sixteen_bit_grey_keeps_its_depth(tmp_path, array):
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)  # mode I;16
    np.testing.assert_allclose(read_image(path), expected_rgb(array), atol=1e-6)


@SETTINGS
@given(st.binary(min_size=1, max_size=2048), st.sampled_from([".png", ".jpg", ".gif", ".tif", ".webp"]))
def test_arbitrary_bytes_give_an_image_or_a_clear_error(tmp_path, data, suffix):
    path = tmp_path / f"upload{suffix}"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except ImageError as error:
        assert str(path) in str(error)
    else:
        assert image.ndim == 3 and image.shape[2] == 3 and 0 <= image.min() <= image.max() <= 1


def encoded(format_name: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(buffer, format=format_name)
    return buffer.getvalue()


VALID = {"png": encoded("PNG"), "jpg": encoded("JPEG")}


@SETTINGS
@given(st.sampled_from(sorted(VALID)), st.floats(0.0, 0.999))
def test_truncated_files_give_an_image_or_a_clear_error(tmp_path, kind, fraction):
    data = VALID[kind]
    path = tmp_path / f"cut.{kind}"
    path.write_bytes(data[: max(1, int(len(data) * fraction))])
    try:
        image = read_image(path)
    except ImageError as error:
        assert "cut." in str(error)
    else:
        assert image.shape == (40, 56, 3)
