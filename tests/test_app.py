import numpy as np
import gradio as gr
import pytest

import app
from core.registry import checkpoint_path, list_models


def test_demo_builds_without_launching_and_shows_lossless_images():
    demo = app.build_demo()
    assert isinstance(demo, gr.Blocks)
    images = [block for block in demo.blocks.values() if isinstance(block, gr.Image)]
    assert images and all(image.format == "png" for image in images)


def test_run_restores_same_size_uint8_and_says_when_weights_are_untrained():
    photo = np.random.default_rng(0).integers(0, 256, size=(40, 52, 3), dtype=np.uint8)
    name = list_models()[0]
    output, status = app.run(photo, name)
    assert output.shape == photo.shape and output.dtype == np.uint8
    assert status.startswith(name)
    if not checkpoint_path(name).is_file():
        assert "untrained" in status


def test_run_without_an_image_gives_a_message():
    with pytest.raises(gr.Error):
        app.run(None, list_models()[0])
