"""The app as an API: a launched server driven through gradio_client, as the README shows."""

import csv
import math
import zipfile

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

import app
from core.compare import BASELINE, INPUT, LPIPS_OFFLINE
from conftest import launched
from core.registry import get_card, list_models

BLURRY = app.ASSETS / "gopro-crowd-blur.png"  # a 640x360 GoPro example, processed at 192x108
SHARP = app.ASSETS / "gopro-crowd-sharp.png"
SIZE = "192"




@pytest.fixture(scope="module")
def client():
    with launched() as url:
        yield Client(url, verbose=False)


def png(path) -> Image.Image:
    image = Image.open(path)
    assert image.format == "PNG", f"{path} is {image.format}, not a lossless PNG"
    return image


def test_compare_runs_an_example_through_all_five_papers_streaming_finite_metrics_and_pngs(client):
    job = client.submit(blurry=handle_file(BLURRY), reference=handle_file(SHARP), models=list_models(), size=SIZE,
                        context=[INPUT, BASELINE], api_name="/compare")
    table, csv_path, zip_path, status, _, gallery, _, _, slider, _, zoom, kernels, errors, *maps = job.result()
    updates = job.outputs()
    assert len(updates) >= 2 * len(list_models())  # an output, then its row, for every model: streamed
    rows = {row[0]: dict(zip(table["headers"], row)) for row in table["data"]}
    assert set(rows) == {*list_models(), "Blurry input", "Richardson-Lucy"}
    for method, values in rows.items():
        for column in ("PSNR (dB)", "SSIM", "NIQE", "reblur score"):
            assert math.isfinite(float(values[column])), (method, column, values[column])
        assert values["LPIPS"] == LPIPS_OFFLINE or math.isfinite(float(values["LPIPS"]))
        if method in list_models():
            assert float(values["seconds"]) > 0 and values["parameters"].endswith("M")
    assert status.startswith("Done")
    assert len(gallery) == len(list_models()) + 3  # the input, the reference, the baseline and every model
    for item in gallery + zoom + kernels + errors:
        png(item["image"])
    assert all(png(item["image"]).size == (192, 108) for item in gallery)
    assert png(slider[0]).size == png(slider[1]).size == (192, 108)
    papers = len({get_card(name).paper for name in list_models()})  # the reference model's tab comes last
    assert all(len(group) > 0 for group in maps[:papers])  # every paper's tab has its maps
    assert all(len(group) == 0 for group in maps[papers:])  # MAXIM did not run
    with open(csv_path, newline="") as file:
        assert len(list(csv.DictReader(file))) == len(rows)
    with zipfile.ZipFile(zip_path) as archive:
        names = archive.namelist()
        assert {f"gopro-crowd-blur/{name}.png" for name in list_models()} <= set(names)
        with archive.open(f"gopro-crowd-blur/{list_models()[0]}.png") as file:
            assert Image.open(file).format == "PNG"


def test_adapt_streams_one_update_per_step(client):
    job = client.submit(blurry=handle_file(BLURRY), reference=handle_file(SHARP), name="reblur-n1", steps=3,
                        size=SIZE, api_name="/adapt")
    adapted, slider, curve, table, status = job.result()
    steps = [update[4].split(":")[0] for update in job.outputs()]
    assert steps == ["Step 0 of 3", "Step 1 of 3", "Step 2 of 3", "Step 3 of 3", "Done"]  # streamed, step by step
    assert status.startswith("Done: 3 step(s)")
    steps = [dict(zip(table["headers"], row)) for row in table["data"]]
    assert [row["step"] for row in steps] == ["0", "1", "2", "3"]
    assert all(math.isfinite(float(row["Eq. 7 loss"])) for row in steps[1:])  # the loss of every step
    assert png(adapted).size == (192, 108) and png(curve).size[0] > 300
    before, after = (np.asarray(png(path)) for path in slider)
    assert before.shape == after.shape == (108, 192, 3)


def test_blur_makes_a_blurry_input_and_its_reference_from_a_sharp_photo(client):
    blurry, reference, kernel = client.predict(sharp=handle_file(SHARP), length=12, seed=5, api_name="/blur")
    blurry, reference = np.asarray(png(blurry)), np.asarray(png(reference))
    assert blurry.shape == reference.shape == (360, 640, 3)
    assert (reference == np.asarray(Image.open(SHARP))).all()
    assert np.abs(blurry.astype(int) - reference).mean() > 2
    png(kernel)


def test_two_sessions_do_not_see_each_others_checkpoint(client, own_checkpoint):
    other = Client(client.src, verbose=False)  # a second visitor: its own session
    *_, key = client.predict(file=handle_file(own_checkpoint), api_name="/checkpoint")
    assert key.startswith("own:lmfn:")
    with pytest.raises(Exception, match="Unknown model|not in the list of choices"):  # refused before it runs
        other.predict(blurry=handle_file(BLURRY), models=[key], context=[INPUT], size=SIZE, api_name="/compare")
    table, *_ = client.predict(blurry=handle_file(BLURRY), models=[key], context=[INPUT], size=SIZE,
                               api_name="/compare")
    assert "my-lmfn.safetensors (lmfn, yours)" in {row[0] for row in table["data"]}
