"""The learning-per-CPU-second tools: LMFN's input skip, the warm-up schedule, the weight average, scale
augmentation and preview validation; each checked against what it promises, not only that it runs."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from PIL import Image
from safetensors.torch import load_file

import train.data as data
from core.registry import create_model
from train.config import load_config, merge
from train.data import FrameFolder, PairedFolder, ValidationPairs, scaled_region
from train.distributed import Context
from train.recipes import make_scheduler
from train.trainer import PreviewPairs, WeightAverage, train

CPU = Context(rank=0, world=1, device=torch.device("cpu"))
GOPRO_DEV = SHARED_DATA / "gopro_dev"
needs_data = pytest.mark.skipif(not GOPRO_DEV.is_dir(), reason=f"the shared data folder {SHARED_DATA} is absent")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for index in range(4):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"p{index}.png")
    return folder


def test_lmfn_with_the_input_skip_starts_as_the_identity_and_still_trains():
    torch.manual_seed(0)
    model = create_model("lmfn", residual=True).eval()
    x = torch.rand(1, 3, 48, 40)
    torch.testing.assert_close(model(x), x)
    plain = create_model("lmfn").eval()
    assert (plain(x) - x).abs().mean() > 0.01  # the registered network predicts the image, not a correction
    model.train()
    output = model.forward_train(torch.rand(2, 3, 32, 32))["output"]
    output.mean().backward()
    assert model.upsampler[0].weight.grad.abs().sum() > 0


def test_warmup_ramps_linearly_then_decays_by_cosine_to_the_floor():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([parameter], lr=1e-3)
    config = {"optim": {"lr": 1e-3}, "schedule": {"kind": "cosine", "steps": 110, "warmup": 10, "min_lr": 1e-5}}
    scheduler = make_scheduler(optimizer, config)
    rates = []
    for _ in range(110):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(rates[:10], [1e-4 * (i + 1) for i in range(10)], rtol=1e-9)
    assert rates[10] == pytest.approx(1e-3)
    assert rates[60] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5, rel=1e-6)  # half way down the cosine
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert scheduler.get_last_lr()[0] == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="warm-up"):
        make_scheduler(optimizer, {**config, "schedule": {"kind": "step", "steps": 10, "warmup": 2}})


def test_weight_average_follows_its_formula_and_swaps_back():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    average = WeightAverage(model, decay=0.5)
    values = [1.0, 2.0, 4.0]
    expected = 0.0
    for step, value in enumerate(values):
        model.weight.data.fill_(value)
        average.update(model)
        decay = min(0.5, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * value
    with average.swapped_in(model):
        assert model.weight.detach().flatten().tolist() == pytest.approx([expected] * 2)
    assert model.weight.detach().flatten().tolist() == [4.0, 4.0]  # the live weights are back
    with pytest.raises(ValueError):
        WeightAverage(model, decay=1.0)


def test_resume_with_weight_average_and_warmup_matches_an_uninterrupted_run(photos, tmp_path):
    config = merge(load_config("lmfn"), {
        "architecture": {"residual": True},
        "data": {"crop": 32, "batch_size": 2, "workers": 0},
        "optim": {"name": "adamw", "lr": 1e-3},
        "schedule": {"kind": "cosine", "steps": 6, "warmup": 2, "min_lr": 1e-6},
        "train": {"log_every": 1, "save_every": 2, "val_every": 2, "ema": 0.9},
    })
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train(model_name="lmfn", data=[str(photos)], out=straight, config=config, context=CPU, max_steps=4, progress=False)
    train(model_name="lmfn", data=[str(photos)], out=interrupted, config=config, context=CPU, max_steps=2,
          progress=False)
    train(model_name="lmfn", data=[str(photos)], out=interrupted, config=config, context=CPU, max_steps=4,
          resume=True, progress=False)
    a, b = load_file(str(straight / "last.safetensors")), load_file(str(interrupted / "last.safetensors"))
    assert all(torch.equal(a[key], b[key]) for key in a)
    # the export is the average, not the live weights
    state = torch.load(straight / "state.pt", weights_only=True)
    live = state["model"]["upsampler.0.weight"]
    assert not torch.equal(a["upsampler.0.weight"], live)
    torch.testing.assert_close(a["upsampler.0.weight"], state["average"]["average"]["upsampler.0.weight"])
    records = [json.loads(line) for line in (interrupted / "log.jsonl").read_text().splitlines()]
    assert all(r["cpu_seconds"] > 0 for r in records if r["kind"] == "train")


def test_scaled_region_draws_log_uniform_factors_within_the_range():
    rng = np.random.default_rng(0)
    sides = np.array([scaled_region(64, (1.0, 4.0), rng) for _ in range(4000)])
    assert sides.min() >= 64 and sides.max() <= 256
    assert abs(np.mean(sides <= 128) - 0.5) < 0.03  # log-uniform: half the factors below 2
    assert scaled_region(64, None, rng) == 64 and scaled_region(None, (1.0, 4.0), rng) is None
    with pytest.raises(ValueError, match="scale"):
        PairedFolder(GOPRO_DEV, crop=32, seed=0, scale=(0.5, 2.0))


def test_frame_folder_with_scale_downscales_a_larger_region(monkeypatch):
    """A frame that is a horizontal ramp: a crop seen downscaled by f spans f times the ramp's range."""
    ramp = np.tile(np.linspace(0, 1, 400, dtype=np.float32)[None, :, None], (400, 1, 3))
    monkeypatch.setattr(data, "read_rgb", lambda path: ramp)
    monkeypatch.setattr(data, "frame_sequences", lambda root: [("seq", {n: f"{n}.png" for n in range(1, 30)})])
    monkeypatch.setattr(data, "random_flips", lambda arrays, rng: list(arrays))
    plain = FrameFolder("unused", crop=32, seed=0)
    scaled = FrameFolder("unused", crop=32, seed=0, scale=(4.0, 4.0))
    span = lambda sample: float(sample["sharp"][0, 0, -1] - sample["sharp"][0, 0, 0])  # noqa: E731
    assert plain[0]["sharp"].shape == scaled[0]["sharp"].shape == (3, 32, 32)
    assert span(scaled[0]) == pytest.approx(4 * span(plain[0]), rel=0.05)


@needs_data
def test_preview_pairs_are_whole_frames_resized_as_the_app_resizes():
    from core.visualize import resize_longest

    pairs = ValidationPairs(GOPRO_DEV)
    preview = PreviewPairs(pairs, 320)
    first = pairs[0]["blur"].permute(1, 2, 0).numpy()
    assert preview[0]["blur"].shape == (3, 180, 320)
    np.testing.assert_array_equal(preview[0]["blur"].permute(1, 2, 0).numpy(), resize_longest(first, 320))
    assert math.isclose(len(preview), len(pairs))


def test_the_card_states_the_recipe_actually_used():
    from train.config import CONFIG_DIR
    from train.ship import recipe_summary

    summary = recipe_summary(load_config("lmfn", CONFIG_DIR / "cpu" / "lmfn.toml"))
    for fact in ("AdamW lr 0.001, betas (0.9, 0.9)", "100-step linear warm-up, then cosine to 1e-06",
                 "bfloat16 autocast on the CPU", "EMA of the weights (0.999)", "[1, 4]", "pixel loss charbonnier"):
        assert fact in summary, (fact, summary)
    paper = recipe_summary(load_config("lmfn"))
    assert "Adam lr 0.0001" in paper and "float32" in paper and "EMA" not in paper and "warm-up" not in paper
    assert "frame windows" not in paper  # GoPro's own 7 to 13 frames go unsaid
    fewer = recipe_summary(load_config("reblur-n2", CONFIG_DIR / "cpu" / "reblur-n2-stage2.toml"))
    assert "frame windows of 1 to 13 frames (GoPro: 7 to 13)" in fewer and "noise" not in fewer
    noisy = recipe_summary(load_config("lmfn", CONFIG_DIR / "trials" / "lmfn-noise-b.toml"))
    assert "Gaussian noise of std U[0, 0.02] added to real-blur inputs" in noisy
    camera = load_config("fcn", CONFIG_DIR / "cpu" / "fcn-stage5.toml")
    assert recipe_summary(camera).endswith("averaged as GoPro's (train.data.MovingCameraFolder)")  # the default paths
    longer = recipe_summary(merge(camera, {"data": {"camera_extent": [0.5, 64.0]}}))
    assert "(train.data.MovingCameraFolder, camera paths of 0.5 to 64 crop pixels)" in longer


def test_best_can_be_chosen_on_crops_and_preview_frames_together(photos, tmp_path):
    rng = np.random.default_rng(2)
    for index, sequence in enumerate(("SEQ", "SEQ", "OTHER")):  # a tiny GoPro-layout validation folder
        sharp = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        blurry = ((sharp.astype(np.float32) + np.roll(sharp, 2, axis=1)) / 2).astype(np.uint8)
        for kind, image in (("blur", blurry), ("sharp", sharp)):
            (tmp_path / "val" / sequence / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "val" / sequence / kind / f"{10 * index + 1:06d}_avg07.png")
    config = merge(load_config("lmfn"), {
        "architecture": {"residual": True}, "data": {"crop": 32, "batch_size": 2, "workers": 0},
        "optim": {"name": "adamw", "lr": 3e-3},
        "train": {"log_every": 1, "save_every": 1, "val_every": 1, "val_preview": 32, "best": "psnr+preview"},
    })
    card = train(model_name="lmfn", data=[str(photos)], out=tmp_path / "run", config=config, context=CPU,
                 max_steps=4, progress=False, val=tmp_path / "val")
    validations = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    validations = [r for r in validations if r["kind"] == "val"]
    chosen = max(validations, key=lambda r: r["psnr"] + r["psnr_preview"])
    assert card["validation_best"]["step"] == chosen["step"]
    for record in validations:  # each sequence's mean is logged beside the mean of all three pairs
        for size in ("psnr", "psnr_preview"):
            apart = record[f"{size}_by_sequence"]
            assert set(apart) == {"SEQ", "OTHER"} and min(apart.values()) <= record[size] <= max(apart.values())
            assert record[size] == pytest.approx((2 * apart["SEQ"] + apart["OTHER"]) / 3)
    assert "psnr_by_sequence" not in card["validation_best"]
    with pytest.raises(ValueError, match="val_preview"):
        train(model_name="lmfn", data=[str(photos)], out=tmp_path / "other", context=CPU, max_steps=1,
              progress=False, val=tmp_path / "val", config=merge(config, {"train": {"val_preview": None}}))


def test_the_selection_rule_prefers_a_step_that_gains_at_both_sizes():
    from train.trainer import selection_score

    crops_only = {"psnr": 29.9, "psnr_preview": 28.9}  # better crops, below the input at the preview size
    both = {"psnr": 29.8, "psnr_preview": 29.3}
    assert selection_score(crops_only, {"best": "psnr"}) > selection_score(both, {"best": "psnr"})
    assert selection_score(both, {"best": "psnr+preview"}) > selection_score(crops_only, {"best": "psnr+preview"})
    with pytest.raises(ValueError, match="best must be"):
        selection_score(both, {"best": "ssim"})


def test_a_cards_stages_line_up_on_one_cpu_seconds_axis_and_a_log_trend_is_recovered():
    from benchmarks.training_curves import card_curve, log_fit

    # stage 1 kept only its best; stage 2 its validations [step, CPU s, crops, 320 px], shipped at step 300 of 400
    history = [[100, 100.0, 29.5, None], [200, 200.0, 29.6, 29.1], [300, 400.0, 29.7, 29.2], [400, 800.0, 29.65, 29.2]]
    card = {"stages": [
        {"wall_seconds": 1000.0, "validation_best": {"step": 500, "psnr": 29.4, "psnr_preview": 29.0}},
        {"wall_seconds": 400.0, "steps": 300, "validation_history": history},
    ]}
    points, last = card_curve(card)
    assert points == [(1000.0, 29.4, 29.0), (1100.0, 29.5, None), (1200.0, 29.6, 29.1), (1400.0, 29.7, 29.2),
                      (1800.0, 29.65, 29.2)]  # stage 2 after stage 1's seconds
    assert last == [(t, v) for t, v, _ in points[1:]]
    a, b = log_fit([(t, 29.0 + 0.5 * math.log(t)) for t in (10.0, 20.0, 40.0, 80.0, 160.0, 320.0)])
    assert b == pytest.approx(0.5) and a == pytest.approx(29.0)
    assert log_fit(last) is None  # two points in the second half: too few to fit


def test_curves_of_one_sequence_read_its_logged_means_and_its_own_input(tmp_path, capsys):
    from benchmarks.training_curves import input_scores, main

    rng = np.random.default_rng(4)
    for index, sequence in enumerate(("SEEN", "SEEN", "OTHER")):
        sharp = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
        blurry = ((sharp.astype(np.float32) + np.roll(sharp, 1 + 2 * index, axis=1)) / 2).astype(np.uint8)
        for kind, image in (("blur", blurry), ("sharp", sharp)):
            (tmp_path / "val" / sequence / kind).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "val" / sequence / kind / f"{10 * index + 1:06d}_avg07.png")
    run = tmp_path / "run"
    run.mkdir()
    records = [{"kind": "val", "step": step, "seconds": 2.0 * step, "cpu_seconds": float(step), "psnr": 20.0 + step,
                "psnr_preview": 19.0, "psnr_by_sequence": {"SEEN": 21.0 + step, "OTHER": 18.0 + step},
                "psnr_preview_by_sequence": {"SEEN": 19.5, "OTHER": 18.0}} for step in (1, 2)]
    (run / "log.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    main(["--runs", str(run), "--out", str(tmp_path / "other.png"), "--val", str(tmp_path / "val"),
          "--max-side", "32", "--preview", "32", "--sequence", "OTHER"])
    table = capsys.readouterr().out.splitlines()
    other = input_scores(str(tmp_path / "val"), 32, 32, "OTHER")
    assert other != input_scores(str(tmp_path / "val"), 32, 32)  # the one pair's own input, not the mean of three
    assert table[2] == f"| blurry input | | | {other['psnr']:.2f} | {other['psnr_preview']:.2f} | | |"
    assert table[3] == "| run | 2 | 2 | 20.00 | 18.00 | 20.00 | 18.00 |"  # OTHER's last and best, not the means
    assert (tmp_path / "other.png").is_file()


def test_a_pairs_sequence_and_the_sequences_a_frame_folder_holds(tmp_path):
    assert data.pair_sequence("GOPR0384_11_02/000698_avg08.png") == "GOPR0384_11_02"
    assert data.pair_sequence("000698_avg08.png") == ""  # a flat blur/ + sharp/ folder
    frame = np.full((24, 32, 3), 128, dtype=np.uint8)
    for sequence in ("SEQ_A", "SEQ_B"):
        (tmp_path / "frames" / sequence).mkdir(parents=True)
        for number in range(1, 9):
            Image.fromarray(frame).save(tmp_path / "frames" / sequence / f"{number:06d}.png")
    (tmp_path / "frames" / "notes").mkdir()  # a folder without numbered frames is no sequence
    assert data.seen_sequences(tmp_path / "frames") == {"SEQ_A", "SEQ_B"}
    assert data.seen_sequences(tmp_path / "absent") == set()


def test_stored_scores_of_other_weights_stop_the_results_rebuild(tmp_path, monkeypatch, capsys):
    import benchmarks.results as results

    monkeypatch.setattr(results, "RESULTS", tmp_path)
    shipped = results.weights_digest("lmfn")
    assert shipped is not None and results.weights_digest("input") is None
    rows = [{"model": "input", "psnr": 27.0, "ssim": 0.8, "images": 1}, {"model": "lmfn", "psnr": 28.0, "ssim": 0.9,
                                                                         "images": 1}]
    (tmp_path / "gopro_dev").mkdir()
    report = tmp_path / "gopro_dev" / "evaluation.json"
    report.write_text(json.dumps({"summary": rows, "images": []}))
    results.stamp_digests(report)  # what run_evaluations does after each evaluation
    stamped = {row["model"]: row for row in json.loads(report.read_text())["summary"]}
    assert stamped["lmfn"]["weights_sha256"] == shipped and "weights_sha256" not in stamped["input"]
    assert results.stale_scores(results.summaries()) == ({}, [])

    stamped["lmfn"]["weights_sha256"] = "0" * 64  # measured on weights shipped before the current file
    report.write_text(json.dumps({"summary": list(stamped.values()), "images": []}))
    assert results.stale_scores(results.summaries()) == ({"lmfn": ["gopro_dev"]}, [])
    monkeypatch.setattr(results, "update_cards", lambda scores: pytest.fail("cards rebuilt from stale scores"))
    monkeypatch.setattr(results, "update_readme", lambda text: pytest.fail("README rebuilt from stale scores"))
    assert results.main(["--skip-eval", "--sets", "gopro_dev"]) == 1
    assert "python benchmarks/results.py --models lmfn" in capsys.readouterr().err

    del stamped["lmfn"]["weights_sha256"]  # a row from before the stamp: used, with a note
    report.write_text(json.dumps({"summary": list(stamped.values()), "images": []}))
    assert results.stale_scores(results.summaries()) == ({}, ["lmfn"])


def test_the_blur_length_estimate_recovers_a_known_straight_blur():
    from scipy.ndimage import convolve

    from benchmarks.blur_length import best_line, line_kernel

    assert line_kernel(12, 0.3).sum() == pytest.approx(1.0)
    vertical = line_kernel(16, np.pi / 2)  # a line through the centre: one column, 16 px long, centred
    centre = vertical.shape[0] // 2
    rows, columns = np.nonzero(vertical > 1e-9)
    assert set(columns) == {centre} and rows.max() - rows.min() >= 15
    assert (np.arange(vertical.shape[0]) * vertical.sum(axis=1)).sum() == pytest.approx(centre, abs=0.5)
    sharp = np.random.default_rng(3).random((128, 128))
    blurry = convolve(sharp, line_kernel(16, np.pi / 2), mode="reflect")
    length, angle, fit = best_line(blurry, sharp)
    assert (length, round(angle)) == (16.0, 90) and fit > 60
