import matplotlib
import numpy as np
import pytest

from core import visualize


def test_colorize_puts_the_ends_of_the_range_at_the_ends_of_the_colour_map():
    values = np.array([[0.0, 0.5], [1.0, 2.0]])
    rgb, low, high, cmap = visualize.colorize(values)
    ends = matplotlib.colormaps[cmap]([0.0, 1.0], bytes=True)[:, :3]
    assert (low, high, cmap) == (0.0, 2.0, visualize.SEQUENTIAL)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert (rgb[0, 0] == ends[0]).all() and (rgb[1, 1] == ends[1]).all()


def test_colorize_centres_a_signed_map_on_zero_with_a_diverging_map():
    rgb, low, high, cmap = visualize.colorize(np.array([[-1.0, 0.0, 4.0]]))
    middle = matplotlib.colormaps[visualize.DIVERGING](0.5, bytes=True)[:3]
    assert (low, high, cmap) == (-4.0, 4.0, visualize.DIVERGING)
    assert np.abs(rgb[0, 1].astype(int) - np.array(middle)).max() <= 1


def test_a_constant_map_is_drawn_mid_scale_without_dividing_by_zero():
    rgb, low, high, _ = visualize.colorize(np.full((3, 3), 7.0))
    assert low == high == 7.0 and (rgb == rgb[0, 0]).all()


def test_colorbar_keeps_the_image_and_labels_the_range():
    image = np.zeros((120, 80, 3), np.uint8)
    with_bar = visualize.add_colorbar(image, -1.0, 1.0, visualize.DIVERGING)
    assert with_bar.shape == (120, 80 + 6 + visualize.BAR_WIDTH + visualize.LABEL_WIDTH, 3)
    assert (with_bar[:, :80] == 0).all()
    bar = with_bar[:, 86 : 86 + visualize.BAR_WIDTH]
    assert not (bar[0] == bar[-1]).all()  # the bar runs from one end of the map to the other
    labels = with_bar[:, 86 + visualize.BAR_WIDTH :]
    assert (labels < 128).any()  # tick labels are drawn


def test_colorbar_labels_grow_with_the_map_so_a_shrunk_frame_stays_readable():
    frame = visualize.add_colorbar(np.zeros((720, 1280, 3), np.uint8), 0.0, 1.0, visualize.SEQUENTIAL)
    bar, labels, font = visualize.colorbar_widths(720)
    assert font == 45 and frame.shape[1] == 1280 + 6 + bar + labels
    ink = (frame[:, 1286 + bar :] < 128).any(axis=(1, 2))
    first = np.flatnonzero(ink)  # the top label's rows: about a font size high, not 12 px
    assert first.size and np.flatnonzero(ink[: first[0] + 2 * font]).size >= 0.5 * font


def test_render_map_draws_each_kind_of_map_by_its_shape():
    image = visualize.render_map(np.full((1, 3, 8, 10), 0.5))
    assert image.shape == (8, 10, 3) and (image == 128).all()
    spatial = visualize.render_map(np.random.default_rng(0).random((1, 1, 4, 5)), size=(40, 50))
    assert spatial.shape[0] == 96 and spatial.shape[1] > 50  # enlarged to the size, bar beside (at least 96 high)
    assert (spatial[28:38, :10] == spatial[28, 0]).all()  # nearest neighbours: the first map pixel is a 10x10 block
    assert not (spatial[28:68, :10] == spatial[28, 0]).all()
    matrix = visualize.render_map(np.eye(200)[None])
    assert matrix.shape[0] == 320 and matrix.shape[1] > 320
    bars = visualize.render_map(np.array([0.2, 0.3, 0.5]))
    assert bars.ndim == 3 and bars.shape[2] == 3
    with pytest.raises(ValueError, match="batch"):
        visualize.render_map(np.zeros((2, 1, 4, 4)))


def test_error_map_is_zero_for_identical_images_and_brightest_where_they_differ():
    reference = np.full((100, 120, 3), 0.5)  # at least as tall as the colour bar, so not padded
    output = reference.copy()
    output[5, 7] = 1.0
    drawn = visualize.error_map(output, reference, vmax=0.5)
    low, high = matplotlib.colormaps[visualize.ERRORS]([0.0, 1.0], bytes=True)[:, :3]
    assert (drawn[5, 7] == high).all() and (drawn[0, 0] == low).all()
    with pytest.raises(ValueError, match="differ in size"):
        visualize.error_map(output[:10], reference)


def test_error_scale_is_shared_and_never_zero():
    reference = np.zeros((10, 10, 3))
    assert visualize.error_scale([reference], reference) == pytest.approx(1e-6)
    assert visualize.error_scale([np.full((10, 10, 3), 0.25)], reference) == pytest.approx(0.25)


def test_crop_box_is_centred_and_shifted_inside_the_image():
    assert visualize.crop_box(100, 200, (50, 100), 20) == (40, 90, 60, 110)
    assert visualize.crop_box(100, 200, (0, 199), 20) == (0, 180, 20, 200)
    assert visualize.crop_box(30, 40, (15, 20), 64) == (0, 0, 30, 40)


def test_zoom_enlarges_by_an_integer_factor_and_keeps_pixels_sharp():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    crop = visualize.zoom(image, (1, 1, 3, 3), longest=8)
    assert crop.shape == (8, 8, 3)
    assert (crop[:4, :4] == image[1, 1]).all() and (crop[4:, 4:] == image[2, 2]).all()


def test_draw_box_outlines_only_the_box():
    marked = visualize.draw_box(np.zeros((20, 20, 3)), (5, 5, 15, 15), color=(255, 0, 0), width=1)
    assert (marked[5, 5:15] == (255, 0, 0)).all() and (marked[10, 10] == 0).all() and (marked[0, 0] == 0).all()


def test_kernel_image_puts_the_peak_at_the_top_of_the_scale():
    kernel = np.zeros((31, 31))
    kernel[15, 15] = 0.25
    drawn = visualize.kernel_image(kernel, side=155)
    top = matplotlib.colormaps[visualize.KERNELS](1.0, bytes=True)[:3]
    assert drawn.shape == (155, 155, 3)
    assert (drawn[77, 77] == top).all() and not (drawn[0, 0] == top).all()


def test_resize_longest_shrinks_keeping_the_aspect_and_never_enlarges():
    image = np.random.default_rng(0).random((300, 400, 3)).astype(np.float32)
    small = visualize.resize_longest(image, 200)
    assert small.shape == (150, 200, 3) and small.dtype == np.float32 and 0 <= small.min() <= small.max() <= 1
    assert visualize.resize_longest(image, 1000).shape == image.shape
    flat = visualize.resize_longest(np.full((40, 80, 3), 0.25, np.float32), 20)
    assert np.allclose(flat, 0.25, atol=1e-6)


def test_curves_draws_one_panel_per_series_with_values_and_skips_nan():
    steps = [0, 1, 2, 3]
    series = {"loss": [np.nan, 0.3, 0.2, 0.1], "PSNR (dB)": [20, 21, 22, 23], "LPIPS": [np.nan] * 4}
    one = visualize.curves(steps, {"loss": series["loss"]})
    both = visualize.curves(steps, series, tradeoff=("PSNR (dB)", "loss"))
    assert one.dtype == np.uint8 and one.ndim == 3
    assert both.shape[1] > one.shape[1]  # the empty LPIPS series draws no panel, the trade-off one more


def test_a_curve_of_tiny_changes_is_drawn_on_an_honest_scale():
    low, high = visualize.value_range(np.array([1.2e-4, 1.2e-4 + 1e-9, 1.2e-4 + 2e-9]))
    assert high - low >= visualize.MIN_RELATIVE_SPAN * 1.2e-4  # a change of 2e-9 stays a flat line
    low, high = visualize.value_range(np.array([20.0, 25.0]))
    assert low < 20 and high > 25 and high - low < 7  # a real change fills the panel
    assert visualize.value_range(np.zeros(3)) is None


def test_labelled_grid_lays_out_rows_and_refuses_mixed_sizes():
    tiles = [np.full((10, 12, 3), value, np.uint8) for value in (0, 100, 200)]
    grid = visualize.labelled_grid(tiles, ["a", "b", "c"], columns=2)
    assert grid.shape[1] == 2 * 12 + 3 * 6 and grid.shape[0] > 2 * 10
    with pytest.raises(ValueError, match="one size"):
        visualize.labelled_grid([tiles[0], np.zeros((5, 5, 3), np.uint8)], ["a", "b"])
