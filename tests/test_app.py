"""The app's handlers called directly (no server): what they show, and what a person is told when an input is bad."""

import contextlib
import csv
import json
import zipfile
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

import app
import core.inference
import core.metrics
import core.timing
import core.registry
import core.tile_policy
from core import compare as engine
from core.models.base import MIN_SIDE

FAST = ["lmfn", "reblur-n1"]  # the two quickest models on a CPU


def write(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def frames(generator, groups=None):
    """Every update of a compare run, as dicts named by output."""
    names = app.compare_outputs(groups or app.paper_groups())
    return [dict(zip(names, update)) for update in generator]


def records(table):
    """The rows of a table value as dicts keyed by its headers."""
    return [dict(zip(table["headers"], row)) for row in table["data"]]


def changed(update, name):
    return not (isinstance(update[name], dict) and update[name].get("__type__") == "update")


def test_demo_builds_without_launching_running_a_model_or_trying_lpips(monkeypatch):
    import torch

    import core.complexity

    def forbidden(*args, **kwargs):
        raise AssertionError("build_demo() must not build or run a model, nor try to load LPIPS")

    built_on = []
    create_model = core.registry.create_model

    def only_on_meta(*args, **kwargs):  # counting multiply-accumulates builds a network with no memory, runs nothing
        built_on.append(torch.empty(0).device.type)
        if built_on[-1] != "meta" or kwargs.get("pretrained"):
            forbidden()
        return create_model(*args, **kwargs)

    for module, name in ((core.inference, "load_model"), (core.inference, "restore"), (engine, "load_model"),
                         (engine, "restore")):
        monkeypatch.setattr(module, name, forbidden)
    for module in (core.registry, core.inference, core.tile_policy, core.complexity):
        monkeypatch.setattr(module, "create_model", only_on_meta)
    monkeypatch.setattr(core.metrics, "_LPIPS", core.metrics._LoadOnce(forbidden))
    core.timing.macs.cache_clear()
    demo = app.build_demo()
    assert isinstance(demo, gr.Blocks)
    assert not demo.is_running
    assert set(built_on) <= {"meta"}


def test_every_image_the_page_shows_is_lossless_png():
    demo = app.build_demo()
    images = [b for b in demo.blocks.values() if isinstance(b, (gr.Image, gr.Gallery, gr.ImageSlider))]
    assert len(images) >= 12 and all(image.format == "png" for image in images)


def test_named_endpoints_are_compare_blur_and_adapt_and_the_rest_is_private():
    demo = app.build_demo()
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"compare", "blur", "adapt", "checkpoint"}
    heavy = [fn for fn in demo.fns.values() if fn.api_name in ("compare", "adapt")]
    assert all(fn.concurrency_id == "models" and fn.concurrency_limit == 1 for fn in heavy)


def test_each_paper_has_a_tab_with_a_note_naming_its_maps_and_figures():
    groups = app.paper_groups()
    assert sum(len(names) for _, names in groups) == len(app.app_models())
    assert ["maxim-3s-gopro"] in [names for _, names in groups]  # the reference model has a tab of its own
    for _, names in groups:
        note = app.map_note(names)
        assert "Fig" in note
        assert any(name in note for name in core.registry.get_card(names[0]).maps)


def test_weights_line_shows_the_shipped_headline_or_says_untrained(tmp_path, monkeypatch):
    monkeypatch.setattr(core.registry, "CHECKPOINT_DIR", tmp_path)
    assert app.weights_line("lmfn") == "untrained (random weights)"
    (tmp_path / "lmfn.safetensors").write_bytes(b"")
    (tmp_path / "lmfn.json").write_text(json.dumps({"headline": "LMFN, CPU schedule: 8,000 samples of 128 px"}))
    assert app.weights_line("lmfn") == "LMFN, CPU schedule: 8,000 samples of 128 px"
    assert "LMFN, CPU schedule" in app.models_markdown()


def test_compare_streams_each_output_before_the_next_model_runs(pair):
    blurry, reference = pair
    updates = frames(app.compare(blurry, reference, models=FAST, context=[app.INPUT], size="full"))
    shown = [len(u["gallery"]) for u in updates if changed(u, "gallery")]
    assert shown[:3] == [2, 3, 4]  # input + reference at once, then one more output per model, in turn
    rows = records(updates[-1]["table"])
    assert [row["method"] for row in rows] == ["Blurry input", "lmfn", "reblur-n1"]
    for row in rows:
        assert np.isfinite(float(row["PSNR (dB)"])) and 0 < float(row["SSIM"]) <= 1  # against the reference
        assert row["LPIPS"] == engine.LPIPS_OFFLINE or np.isfinite(float(row["LPIPS"]))
    pending = [u for u in updates if changed(u, "table") and "computing…" in str(u["table"]["data"])]
    assert pending, "a row shows up as soon as its output does, before its metrics"
    final = updates[-1]
    assert all(image.dtype == np.uint8 and image.shape == (64, 96, 3) for image, _ in final["gallery"])
    assert final["slider"][0].shape == final["slider"][1].shape == (64, 96, 3)
    assert len(final["maps 3"]) == 2  # LMFN's tab: ALFM and ACFM
    assert all(image.ndim == 3 for image, _ in final["maps 3"])


def test_compare_writes_csv_and_zip_of_lossless_pngs_with_per_image_rows_and_the_mean(pair, tmp_path):
    blurry, reference = pair
    second = write(tmp_path / "alley.png", np.asarray(Image.open(blurry))[::-1].copy())
    second_reference = write(tmp_path / "refs-alley.png", np.asarray(Image.open(reference))[::-1].copy())
    (tmp_path / "alley-ref").mkdir()
    matched = write(tmp_path / "alley-ref" / "alley.png", np.asarray(Image.open(second_reference)))
    final = frames(app.compare(blurry, reference, [second], [matched], models=["lmfn"], context=[], size="full"))[-1]
    rows = records(final["table"])
    assert [row["image"] for row in rows] == ["street.png", "alley.png", "mean of 2"]
    psnrs = [float(row["PSNR (dB)"]) for row in rows]
    assert psnrs[2] == pytest.approx((psnrs[0] + psnrs[1]) / 2, abs=0.01)
    with open(final["csv"], newline="") as file:
        written = list(csv.DictReader(file))
    assert [row["image"] for row in written] == ["street.png", "alley.png", "mean of 2"]
    assert float(written[0]["PSNR (dB)"]) == pytest.approx(psnrs[0], abs=0.01)
    with zipfile.ZipFile(final["zip"]) as archive:
        names = set(archive.namelist())
        assert {"street/lmfn.png", "street/reference.png", "alley/lmfn.png", "metrics.csv"} <= names
        with archive.open("street/lmfn.png") as file:
            image = Image.open(file)
            assert image.format == "PNG" and image.size == (96, 64)
            shown = next(image for image, caption in final["gallery"] if caption.startswith("lmfn"))
            assert (np.asarray(image) == shown).all()  # exactly the pixels shown


def test_processing_size_shrinks_photo_and_reference_alike(pair):
    blurry, reference = pair
    final = frames(app.compare(blurry, reference, models=["lmfn"], context=[], size="192"))[-1]
    assert final["gallery"][0][0].shape == (64, 96, 3)  # never enlarged
    crowd = [app.ASSETS / f"gopro-crowd-{kind}.png" for kind in ("blur", "sharp")]
    photos = app.gather_photos(*crowd, None, None, "192")
    assert photos[0].image.shape == photos[0].reference.shape == (108, 192, 3)


def test_a_mismatched_reference_is_refused_with_a_warning_and_the_run_goes_on(pair, tmp_path):
    blurry, _ = pair
    other = write(tmp_path / "other.png", np.zeros((50, 50, 3), np.uint8))
    with pytest.warns(UserWarning, match="50x50 but the photo is 96x64"):
        final = frames(app.compare(blurry, other, models=["lmfn"], context=[], size="full"))[-1]
    assert records(final["table"])[0]["PSNR (dB)"] == engine.NEEDS_REFERENCE and final["errors"] == []


def test_a_file_that_is_not_an_image_is_named_skipped_and_the_others_run(pair, tmp_path):
    blurry, reference = pair
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.warns(UserWarning, match="notes.png"):
        final = frames(app.compare(blurry, reference, [str(text)], models=["lmfn"], context=[], size="full"))[-1]
    assert [row["image"] for row in records(final["table"])] == ["street.png"]


def test_a_photo_too_small_for_the_models_is_explained(tmp_path):
    tiny = write(tmp_path / "tiny.png", np.zeros((10, 12, 3), np.uint8))
    with pytest.warns(UserWarning, match="at least 16 pixels"), pytest.raises(gr.Error, match="Give a blurry photo"):
        frames(app.compare(tiny, models=["lmfn"], size="full"))


def test_missing_inputs_and_unknown_choices_raise_messages_a_person_understands(pair):
    blurry, _ = pair
    with pytest.raises(gr.Error, match="Give a blurry photo"):
        frames(app.compare(None, models=["lmfn"]))
    with pytest.raises(gr.Error, match="Pick at least one model"):
        frames(app.compare(blurry, models=[], context=[]))
    with pytest.raises(gr.Error, match="Unknown model"):
        frames(app.compare(blurry, models=["nafnet"]))
    with pytest.raises(gr.Error, match="processing size"):
        frames(app.compare(blurry, models=["lmfn"], size="33"))


def test_the_classical_baseline_needs_a_reference_and_says_so(pair):
    blurry, reference = pair
    final = frames(app.compare(blurry, models=[], context=[app.BASELINE], size="full"))[-1]
    assert records(final["table"])[0]["PSNR (dB)"] == "needs a reference"
    final = frames(app.compare(blurry, reference, models=[], context=[app.BASELINE], size="full"))[-1]
    row = records(final["table"])[0]
    assert row["method"] == "Richardson-Lucy" and np.isfinite(float(row["PSNR (dB)"]))


def test_picking_a_point_moves_the_zoom_and_the_kernels_there(pair):
    blurry, reference = pair
    final = frames(app.compare(blurry, reference, models=["reblur-n1"], context=[app.INPUT], size="full"))[-1]
    session = final["session"]
    event = gr.SelectData(None, {"index": [90, 60], "value": None, "selected": True})
    session, picker, crops, kernels = app.pick_point(session, 0, event)
    assert session.point == (60, 90)
    top, left, _, right = app.visualize.crop_box(64, 96, (60, 90), session.crop)
    assert picker.shape == (64, 96, 3) and (picker[top, left:right] == (255, 48, 48)).all()
    assert len(crops) == 3 and len(kernels) == 2  # input, reference, output; kernels of input and output
    picker, crops = app.set_crop(session, 0, 32)
    assert crops[0][0].shape[0] == (app.ZOOM_SIDE // 32) * 32


def test_make_blurry_blurs_a_sharp_photo_into_the_inputs_and_shows_its_kernel(pair):
    _, reference = pair
    blurry_file, sharp_file, kernel = app.make_blurry(reference, 12, 3)
    # files a person can read the names of, in the table, the captions and the ZIP (not a content hash)
    assert Path(blurry_file).name == f"{Path(reference).stem}-blurred-12px-seed3.png"
    assert Path(sharp_file).name == Path(reference).name
    blurry, sharp = np.asarray(Image.open(blurry_file)), np.asarray(Image.open(sharp_file))
    assert blurry.shape == sharp.shape == (64, 96, 3) and blurry.dtype == np.uint8
    assert (sharp == np.asarray(Image.open(reference))).all()
    assert np.abs(blurry.astype(int) - sharp).mean() > 5
    assert kernel.shape[0] == kernel.shape[1] >= 31
    with pytest.raises(gr.Error, match="sharp photo"):
        app.make_blurry(None, 12, 3)


def test_adaptation_streams_step_zero_then_every_step(pair):
    blurry, reference = pair
    updates = list(app.adaptation(blurry, reference, "reblur-n1", 2, 3e-6, "full"))
    assert [u[4].split(":")[0] for u in updates] == ["Step 0 of 2", "Step 1 of 2", "Step 2 of 2", "Done"]
    table = records(updates[-1][3])
    assert [row["step"] for row in table] == ["0", "1", "2"]
    assert table[0]["Eq. 7 loss"] == app.NOT_APPLICABLE and np.isfinite(float(table[2]["Eq. 7 loss"]))  # per step
    assert all(np.isfinite(float(row["PSNR (dB)"])) for row in table)  # with a reference
    assert updates[1][0].shape == updates[-1][0].shape == (64, 96, 3) and updates[-1][2].ndim == 3


def test_a_model_without_its_own_reblurring_module_adapts_against_the_shipped_one(pair):
    blurry, reference = pair
    updates = list(app.adaptation(blurry, reference, "lmfn", 1, 3e-6, "full"))
    assert [u[4].split(":")[0] for u in updates] == ["Step 0 of 1", "Step 1 of 1", "Done"]
    assert np.isfinite(float(records(updates[-1][3])[1]["Eq. 7 loss"]))


def test_adaptation_refuses_bad_settings_with_a_message(pair):
    blurry, _ = pair
    with pytest.raises(gr.Error, match="learning rate"):
        list(app.adaptation(blurry, None, "reblur-n1", 2, 0.0, "full"))
    with pytest.raises(gr.Error, match="between 0 and"):
        list(app.adaptation(blurry, None, "reblur-n1", app.MAX_STEPS + 1, 3e-6, "full"))
    with pytest.raises(gr.Error, match="No model"):
        list(app.adaptation(blurry, None, "no-such-model", 2, 3e-6, "full"))
    with pytest.raises(gr.Error, match="Give a blurry photo"):
        list(app.adaptation(None, None, "reblur-n1", 2, 3e-6, "full"))


def test_every_awkward_upload_is_named_or_run_and_the_app_goes_on(pair, tmp_path):
    """The corpus of ``tests/bad_inputs.py`` uploaded at once beside a good photo: each unreadable or too-small file
    is named in a warning, every decodable one runs (upright, RGB), and the next request is served as usual."""
    from bad_inputs import write_corpus

    blurry, reference = pair
    entries = write_corpus(tmp_path / "uploads")
    uploads = [str(tmp_path / "uploads" / name) for name in entries]
    with pytest.warns(UserWarning) as warned:
        final = frames(app.compare(blurry, reference, uploads, models=["lmfn"], context=[], size="full"))[-1]
    messages = " ".join(str(warning.message) for warning in warned)
    runnable = {name for name, (_, outcome) in entries.items() if outcome != "error" and min(outcome) >= MIN_SIDE}
    for name in set(entries) - runnable:
        assert name in messages, f"{entries[name][0]}: not named in any warning"
    rows = {row["image"] for row in records(final["table"])}
    assert rows == {"street.png", *runnable, f"mean of {len(runnable) + 1}"}
    again = frames(app.compare(blurry, reference, models=["lmfn"], context=[], size="full"))[-1]
    assert [row["image"] for row in records(again["table"])] == ["street.png"]


def test_heavy_handlers_hand_memory_back_when_they_end_however_they_end(monkeypatch):
    events = []

    @contextlib.contextmanager
    def reusing():
        events.append("enter")
        try:
            yield
        finally:
            events.append("exit")

    monkeypatch.setattr(app, "reusing_freed_memory", reusing)

    def stream():
        yield 1
        yield 2

    updates = app.releasing_memory(stream)()
    assert next(updates) == 1 and events == ["enter"]  # not released while the request runs
    updates.close()  # a visitor who cancels: Gradio closes the stream
    assert events == ["enter", "exit"]

    def failing():
        raise ValueError("bad photo")

    with pytest.raises(ValueError):
        app.releasing_memory(failing)()
    assert events[2:] == ["enter", "exit"]
    assert app.releasing_memory(lambda: 3)() == 3 and events[4:] == ["enter", "exit"]


def test_the_page_ticks_only_trained_models_and_the_baseline_only_with_a_reference(tmp_path, monkeypatch):
    demo = app.build_demo()
    boxes = {block.elem_id: block for block in demo.blocks.values() if isinstance(block, gr.CheckboxGroup)}
    trained = [name for name in core.registry.list_models() if core.registry.shipped_weights(name).trained]
    assert [name for name in boxes["models"].value if name in trained] == trained
    assert boxes["context"].value == [app.INPUT]
    for label, name in boxes["models"].choices:  # every checkbox says which weights it runs on
        assert label.endswith(core.registry.shipped_weights(name).short)
    assert app.context_for("sharp.png", [app.INPUT]) == [app.INPUT, app.BASELINE]
    assert app.context_for(None, [app.INPUT, app.BASELINE]) == [app.INPUT]
    assert app.context_for(None, []) == []
    monkeypatch.setattr(core.registry, "CHECKPOINT_DIR", tmp_path)  # nothing shipped: nothing ticked
    assert app.default_models() == []


def test_the_reference_model_says_it_is_not_a_paper_and_is_ticked_only_where_it_runs_in_seconds(monkeypatch):
    label = dict((name, text) for text, name in app.model_choices())["maxim-3s-gopro"]
    assert label.startswith("reference: MAXIM-3S, CVPR 2022, not one of the five papers")
    assert "trained" not in label.split("·")[-1]  # its authors' weights, not trained here
    estimates = {}
    monkeypatch.setattr(app, "runs_quickly", lambda name, height, width, device: estimates[name] <= 10)
    monkeypatch.setattr(app, "expected_seconds", lambda name, height, width, device: estimates[name])
    papers = [name for name in core.registry.list_models() if core.registry.shipped_weights(name).trained]
    estimates = dict.fromkeys(app.app_models(), 1.0) | {"maxim-3s-gopro": 4.0}
    assert app.default_models("320") == papers + ["maxim-3s-gopro"]
    assert app.slow_models_note("320") == "Every model runs in a few seconds at this size here."
    estimates["maxim-3s-gopro"] = 95.0
    assert app.default_models("full") == papers
    assert app.slow_models_note("full") == "Slow at this size here: maxim-3s-gopro about 95 s."
    assert app.default_models("full", device=None)[-1] == "maxim-3s-gopro"  # a GPU: every model is quick


def test_the_banner_states_what_the_shipped_weights_reach_from_their_cards(tmp_path, monkeypatch):
    line = app.reach_line()
    for name in core.registry.list_models(include_reference=True):
        scores = (core.registry.shipped_card(name) or {}).get("scores", {})
        if "gopro_dev" in scores:
            gain = scores["gopro_dev"]["psnr"] - scores["gopro_dev"]["input_psnr"]
            assert f"{core.registry.get_card(name).title or name} {gain:+.2f}" in line
    monkeypatch.setattr(core.registry, "CHECKPOINT_DIR", tmp_path)  # nothing shipped: no banner
    assert app.reach_line() == ""


def test_a_visitors_checkpoint_joins_models_compares_shows_its_maps_and_adapts(pair, own_checkpoint):
    blurry, reference = pair
    yours, models, adapt_models, status, key = app.add_checkpoint(str(own_checkpoint), [], ["lmfn"], "reblur-n1")
    try:
        assert yours == [key] and models["value"] == ["lmfn", key] and key in dict(
            (value, label) for label, value in models["choices"])
        assert key in adapt_models["choices"] and adapt_models["value"] == "reblur-n1"
        assert "my-lmfn.safetensors" in status and "this browser session only" in status
        with pytest.raises(gr.Error, match="Unknown model"):  # another session's list does not hold it
            list(app.compare(blurry, reference, models=["lmfn", key], context=[app.INPUT], size="full", yours=[]))
        *_, last = app.compare(blurry, reference, models=["lmfn", key], context=[app.INPUT], size="full", yours=yours)
        names = app.compare_outputs(app.paper_groups())
        values = dict(zip(names, last))
        rows = records(values["table"])
        assert {"lmfn", "my-lmfn.safetensors (lmfn, yours)"} <= {row["method"] for row in rows}
        lmfn_group = next(i for i, (paper, group) in enumerate(app.paper_groups()) if "lmfn" in group)
        captions = [caption for _, caption in values[f"maps {lmfn_group}"]]
        assert any(c.startswith("my-lmfn.safetensors") for c in captions) and any(c.startswith("lmfn ·") for c in captions)
        updates = list(app.adaptation(blurry, reference, key, 1, 3e-6, "full", yours=yours))
        assert updates[-1][4].startswith("Done: 1 step(s)")
    finally:
        app.forget_checkpoints(yours)


def test_a_file_that_is_no_checkpoint_of_this_project_is_refused_and_nothing_changes(tmp_path):
    bad = tmp_path / "weights.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(gr.Error, match="Checkpoint refused: weights.safetensors is not a safetensors file"):
        app.add_checkpoint(str(bad), [], ["lmfn"], "reblur-n1")
    with pytest.raises(gr.Error, match="Choose a .safetensors"):
        app.add_checkpoint(None, [], ["lmfn"], "reblur-n1")
