"""core.compare, the one engine behind the app and the command line: its rules, the app and ``evaluate`` agreeing
cell for cell, and a sixth paper taken by the engine, the app and the command line with no other edit."""

import ast
import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch import nn

import app
from core import compare as engine
from core.__main__ import main
from core.complexity import parameter_count
from core.inference import load_model
from core.models.base import DeblurModel, channel_mean
from core.registry import ModelCard, list_models, register, shipped_weights, unregister

ROOT = Path(__file__).resolve().parent.parent


def write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def photos(folder: Path, names=("street", "alley")) -> list[tuple[str, str]]:
    """Small blurry photos (64 x 96) with their sharp references, in a blur/ + sharp/ layout."""
    rng = np.random.default_rng(0)
    pairs = []
    for name in names:
        sharp = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
        blurry = ((sharp.astype(int) + np.roll(sharp, 2, axis=1) + np.roll(sharp, 4, axis=1)) // 3).astype(np.uint8)
        pairs.append((write(folder / "blur" / f"{name}.png", blurry), write(folder / "sharp" / f"{name}.png", sharp)))
    return pairs


def read_csv(path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return reader.fieldnames, list(reader)


def test_app_py_imports_no_torch_and_no_metric_kernel_or_export_code():
    tree = ast.parse((ROOT / "app.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {module for module in imported if module.split(".")[0] == "torch"}
    assert not imported & {"core.metrics", "core.diagnostics", "core.complexity", "csv", "zipfile", "threading", "queue"}


def test_the_apps_csv_and_evaluates_csv_agree_cell_for_cell(tmp_path):
    """The same two photos through the app's Compare and ``python -m core evaluate --baseline``: the same columns,
    and, seconds apart, the same value in every cell of every per-photo row and every mean."""
    (street, street_sharp), (alley, alley_sharp) = photos(tmp_path / "data")
    names = app.compare_outputs(app.paper_groups())
    updates = list(app.compare(street, street_sharp, [alley], [alley_sharp], models=["lmfn"],
                               context=[engine.INPUT, engine.BASELINE], size="full"))
    app_columns, app_rows = read_csv(dict(zip(names, updates[-1]))["csv"])
    assert main(["evaluate", "--model", "lmfn", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
                 "--baseline"]) == 0
    cli_columns, cli_rows = read_csv(tmp_path / "out" / "evaluation.csv")
    assert app_columns == cli_columns == engine.COLUMNS

    def keyed(rows):
        return {(row["method"], Path(row["image"]).name): {k: v for k, v in row.items() if k not in ("image", "seconds")}
                for row in rows}

    app_keyed, cli_keyed = keyed(app_rows), keyed(cli_rows)
    assert set(app_keyed) == set(cli_keyed) == {
        (method, image) for method in ("Blurry input", "lmfn", "Richardson-Lucy")
        for image in ("street.png", "alley.png", "mean of 2")}
    assert app_keyed == cli_keyed
    assert float(app_keyed[("lmfn", "street.png")]["PSNR (dB)"]) > 0  # a real number, not two empty cells


def test_evaluate_gains_the_reblur_score_the_baseline_and_the_zip(tmp_path):
    photos(tmp_path / "data", names=("street",))
    assert main(["evaluate", "--model", "lmfn", "--data", str(tmp_path / "data"), "--output", str(tmp_path / "out"),
                 "--baseline", "--zip"]) == 0
    report = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert [row["model"] for row in report["images"]] == ["input", "lmfn", engine.BASELINE]
    assert all(np.isfinite(row["reblur"]) and np.isfinite(row["psnr"]) for row in report["images"])
    with zipfile.ZipFile(tmp_path / "out" / "outputs.zip") as archive:
        names = set(archive.namelist())
    assert {f"blur/street/{key}.png" for key in ("input", "reference", "lmfn", engine.BASELINE)} <= names
    assert {"blur/street/comparison.png", "evaluation.csv"} <= names


def test_means_count_the_photos_that_have_a_score_and_keep_a_reason_no_photo_overcomes():
    rows = [{"method": "m", "key": "m", "image": "a", "PSNR (dB)": 20.0, "SSIM": engine.NEEDS_REFERENCE, "seconds": 1.0},
            {"method": "m", "key": "m", "image": "b", "PSNR (dB)": "needs 96 px", "SSIM": engine.NEEDS_REFERENCE,
             "seconds": 3.0},
            {"method": "m", "key": "m", "image": "c", "PSNR (dB)": 26.0, "SSIM": engine.NEEDS_REFERENCE, "seconds": None}]
    [mean] = engine.mean_rows(rows)
    assert mean["PSNR (dB)"] == 23.0 and mean["seconds"] == 2.0 and mean["SSIM"] == engine.NEEDS_REFERENCE
    assert mean["image"] == "mean of 3" and mean["images"] == 3


def test_trained_and_parameter_counts_come_from_the_card_and_match_the_network_that_runs():
    for name in list_models():
        weights = shipped_weights(name)
        model, trained = load_model(name)
        assert weights.trained == trained and weights.parameters == parameter_count(model), name


def test_a_photo_too_small_and_a_mismatched_reference_are_explained():
    with pytest.raises(engine.PhotoError, match="at least 16 pixels"):
        engine.prepare_photo("tiny.png", np.zeros((10, 40, 3), np.float32))
    with pytest.raises(engine.PhotoError, match="40x20 but the photo is 40x30"):
        engine.prepare_photo("a.png", np.zeros((30, 40, 3), np.float32), np.zeros((20, 40, 3), np.float32))


# A sixth paper


class Toy(DeblurModel):
    """A throwaway sixth paper: one convolution's residual added to its input."""

    pad_multiple = 4

    def __init__(self, *, width: int = 3) -> None:
        super().__init__()
        self.residual = nn.Conv2d(3, width, 3, padding=1)

    def _restore(self, x, maps):
        residual = self.residual(x)
        maps.add("toy residual", channel_mean(residual))
        return x + 0.1 * residual


SIXTH = "toy-sixth"


@pytest.fixture
def sixth(tmp_path):
    """The sixth paper's whole footprint: its model file (``Toy``), its registration, its checkpoint and its card.
    Registered for this test only."""
    from safetensors.torch import save_file

    checkpoint = tmp_path / "checkpoints" / f"{SIXTH}.safetensors"
    checkpoint.parent.mkdir()
    network = Toy()
    save_file(network.state_dict(), str(checkpoint))
    (checkpoint.with_suffix(".json")).write_text(json.dumps({
        "headline": "toy-sixth, registered architecture; GPU schedule: 12 steps", "trained": True,
        "parameters": parameter_count(network), "steps": 12, "hardware": "1 x GPU"}))
    card = ModelCard(name=SIXTH, paper="A Toy Paper: Residuals for Tests", authors="A. Tester", year=2026,
                     venue="Tests", summary="One convolution's residual.", params=parameter_count(network),
                     maps=("toy residual",), checkpoint=str(checkpoint),
                     map_notes={"toy residual": "the channel mean of the residual (Fig. 1)"})
    register(card)(lambda **config: Toy(**config))
    try:
        yield SIXTH
    finally:
        unregister(SIXTH)


def test_a_sixth_paper_is_taken_by_the_engine_the_app_and_the_command_line_with_no_other_edit(sixth, tmp_path):
    (blurry, sharp), = photos(tmp_path / "data", names=("street",))
    weights = shipped_weights(sixth)
    assert weights.trained and weights.short == "GPU-trained, 12 steps"

    events = list(engine.compare([engine.read_photo("street.png", blurry, sharp)[0]], [sixth], with_baseline=False))
    result = events[-1].result
    assert set(result.outputs[sixth].maps) == {"toy residual"}
    assert result.rows[sixth]["weights"] == "trained" and result.rows[sixth]["parameters"] == weights.parameters

    demo = app.build_demo()
    checkboxes = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "models")
    assert (f"{sixth} — A Toy Paper (2026) · GPU-trained, 12 steps", sixth) in checkboxes.choices
    assert sixth in checkboxes.value  # trained: ticked by default
    groups = app.paper_groups()
    tab = next(i for i, (_, names) in enumerate(groups) if names == [sixth])
    assert "the channel mean of the residual (Fig. 1)" in app.map_note([sixth])
    names = app.compare_outputs(groups)
    final = dict(zip(names, list(app.compare(blurry, sharp, models=[sixth], context=[], size="full"))[-1]))
    assert [caption for _, caption in final[f"maps {tab}"]] == [f"{sixth} · toy residual"]
    assert [row[0] for row in final["table"]["data"]] == [sixth]

    assert main(["deblur", "--model", sixth, "--input", blurry, "--output", str(tmp_path / "out")]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "street.png"))
    assert np.array_equal(written, result.outputs[sixth].image)
    assert main(["evaluate", "--model", sixth, "--data", str(tmp_path / "data"), "--output", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert [row["model"] for row in report["summary"]] == ["input", sixth]


def test_the_kernels_command_draws_what_the_apps_kernel_panel_shows(tmp_path):
    """At the centre, then at a clicked point: the same pixels from ``python -m core kernels`` as on the page."""
    import gradio as gr

    blurry = str(app.ASSETS / "gopro-crowd-blur.png")  # 640x360, processed at 320x180
    names = app.compare_outputs(app.paper_groups())
    final = dict(zip(names, list(app.compare(blurry, models=["lmfn"], context=[engine.INPUT], size="320"))[-1]))
    session = final["session"]
    for point in (None, (30, 40)):
        if point is None:
            shown = final["kernels"]
            at = []
        else:
            event = gr.SelectData(None, {"index": [point[1], point[0]], "value": None, "selected": True})
            *_, shown = app.pick_point(session, 0, event)
            at = ["--at", f"{point[0]},{point[1]}"]
        shown = {caption: image for image, caption in shown}
        assert set(shown) == {"Blurry input", "lmfn"}
        folder = tmp_path / str(point)
        assert main(["kernels", "--model", "lmfn", "--input", blurry, "--output", str(folder), "--size", "320",
                     *at]) == 0
        for key, caption in ((engine.INPUT, "Blurry input"), ("lmfn", "lmfn")):
            assert np.array_equal(np.asarray(Image.open(folder / f"{key}.png")), shown[caption]), (point, key)
    centre, moved = (np.asarray(Image.open(tmp_path / str(p) / "input.png")) for p in (None, (30, 40)))
    assert not np.array_equal(centre, moved)  # another point, another kernel
    with pytest.raises(SystemExit):
        main(["kernels", "--model", "lmfn", "--input", blurry, "--output", str(tmp_path / "k"), "--at", "middle"])
