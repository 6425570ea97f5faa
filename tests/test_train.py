"""The training sub-project: every recipe runs and learns, data parallel replicas agree, resume is exact."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from core.registry import create_model, list_models, load_weights
from train.config import CONFIG_DIR, load_config, merge, tomllib
from train.distributed import Context
from train.recipes import RECIPES
from train.teacher import RotationTeacher, save_teacher
from train.trainer import train

ROOT = Path(__file__).resolve().parent.parent
CPU = Context(rank=0, world=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Eight small structured 'sharp photos' (smooth shapes and edges, not noise)."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    for index in range(8):
        image = np.stack([np.sin(6 * xx * (c + 1) + rng.uniform(0, 6)) * 0.4 + 0.5 for c in range(3)], axis=2)
        corner = rng.integers(10, 50, size=2)
        image[corner[0] : corner[0] + 30, corner[1] : corner[1] + 30] = rng.uniform(0, 1, size=3)
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / f"photo{index}.png")
    return folder


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    torch.manual_seed(0)
    save_teacher(RotationTeacher(channels=(32, 64, 128)), path, {"data": "test", "steps": 0, "held_out_accuracy": 0.0})
    return path


def tiny_config(name, teacher_path, **train):
    config = merge(load_config(name), {"data": {"crop": 32, "batch_size": 2, "workers": 0},
                                       "train": {"log_every": 1, "save_every": 2, "val_every": 2, **train}})
    if config["recipe"] == "sp":
        config["loss"]["teacher"] = str(teacher_path)
    return config


def test_every_registered_model_has_a_config_naming_a_recipe():
    for name in list_models():
        config = load_config(name)
        assert (CONFIG_DIR / f"{name}.toml").is_file()
        assert config["recipe"] in RECIPES


@pytest.mark.parametrize("name", list_models())
def test_recipe_runs_end_to_end_and_exports_a_loadable_checkpoint(name, photos, teacher_path, tmp_path):
    config = tiny_config(name, teacher_path)
    card = train(model_name=name, data=[str(photos)], out=tmp_path, config=config, context=CPU, max_steps=2,
                 progress=False)
    assert card["steps"] == 2 and card["samples"] == 4
    assert card["losses_used"] and card["hardware"]
    on_disk = json.loads((tmp_path / "card.json").read_text())
    assert on_disk["model"] == name and on_disk["losses_used"] == card["losses_used"]
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in records if r["kind"] == "train")
    assert (tmp_path / "curves.png").stat().st_size > 0
    model = create_model(name)
    load_weights(model, tmp_path / "last.safetensors")  # weights only, matching the registered architecture


def overfit_loss(metrics, name):
    """The part of each recipe's loss that must fall on a fixed batch (the adversarial term is a game, not a descent)."""
    if name == "gradientnet":
        return metrics["content"] + metrics["gradient"]
    return metrics["loss"]


@pytest.mark.parametrize("name", list_models())
def test_recipe_overfits_one_fixed_batch(name, teacher_path):
    torch.manual_seed(0)
    model = create_model(name).train()
    config = tiny_config(name, teacher_path)  # the paper's optimiser and learning rate
    recipe = RECIPES[config["recipe"]](model, config, CPU)
    generator = torch.Generator().manual_seed(0)
    sharp = torch.rand(2, 3, 32, 32, generator=generator).add(torch.linspace(0, 1, 32)).div(2)
    batch = {"blur": (sharp + torch.roll(sharp, 2, dims=-1) + torch.roll(sharp, 4, dims=-1)) / 3, "sharp": sharp}
    first = overfit_loss(recipe.step(batch), name)
    best = first
    for _ in range(100):
        best = min(best, overfit_loss(recipe.step(batch), name))
        if best < first / 2:
            break
    assert best < first / 2, (name, first, best)


def test_resume_matches_an_uninterrupted_run(photos, teacher_path, tmp_path):
    name = "gradientnet"  # the recipe with the most state: two optimisers, a critic, a random gradient penalty
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    config = tiny_config(name, teacher_path)
    train(model_name=name, data=[str(photos)], out=straight, config=config, context=CPU, max_steps=4, progress=False)
    train(model_name=name, data=[str(photos)], out=interrupted, config=config, context=CPU, max_steps=2, progress=False)
    train(model_name=name, data=[str(photos)], out=interrupted, config=config, context=CPU, max_steps=4, resume=True,
          progress=False)
    a, b = load_file(str(straight / "last.safetensors")), load_file(str(interrupted / "last.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    log = [json.loads(line) for line in (interrupted / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2, 3, 4]


def test_resume_without_state_is_an_error(photos, teacher_path, tmp_path):
    with pytest.raises(FileNotFoundError, match="state.pt"):
        train(model_name="lmfn", data=[str(photos)], out=tmp_path, config=tiny_config("lmfn", teacher_path),
              context=CPU, max_steps=1, resume=True, progress=False)


def test_fp16_export_halves_the_floats(photos, teacher_path, tmp_path):
    config = tiny_config("lmfn", teacher_path, fp16_export=True)
    train(model_name="lmfn", data=[str(photos)], out=tmp_path, config=config, context=CPU, max_steps=1, progress=False)
    weights = load_file(str(tmp_path / "last.safetensors"))
    assert all(value.dtype == torch.float16 for value in weights.values() if value.is_floating_point())
    model = create_model("lmfn")
    load_weights(model, tmp_path / "last.safetensors")
    assert next(model.parameters()).dtype == torch.float32


def test_two_process_data_parallel_keeps_identical_replicas(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
               str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), str(photos)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    initial = create_model("lmfn").state_dict()
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)
    assert any(not torch.equal(rank0[key], initial[key]) for key in rank0)  # and they did train


def test_cli_refuses_bad_arguments_with_exit_code_2(tmp_path):
    for arguments in (["--model", "nonexistent", "--data", str(tmp_path), "--out", str(tmp_path)],
                      ["--model", "lmfn", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]):
        result = subprocess.run([sys.executable, "-m", "train", *arguments], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        assert "error" in result.stderr


def test_every_cpu_schedule_loads_and_names_its_model():
    for path in sorted((CONFIG_DIR / "cpu").glob("*.toml")):
        model = tomllib.loads(path.read_text())["model"]  # a later stage of a schedule names its model too
        assert path.stem.split("-stage")[0] == model
        config = load_config(model, path)
        assert config["recipe"] in RECIPES
        create_model(model, **config["architecture"])  # the reduced architecture builds


def test_reduced_architecture_travels_with_the_weights(photos, teacher_path, tmp_path, monkeypatch):
    import core.registry as registry
    from train.ship import ship

    reduced = {"deblur_widths": [8, 16, 24], "deblur_resblocks": 1, "reblur_channels": 8}
    config = merge(tiny_config("reblur-n1", teacher_path), {"architecture": reduced})
    train(model_name="reblur-n1", data=[str(photos)], out=tmp_path / "run", config=config, context=CPU,
          max_steps=2, progress=False, val=None)
    card = ship(tmp_path / "run", "reblur-n1", weights="last.safetensors", out_dir=tmp_path / "ckpt")
    assert "deblur_widths (8, 16, 24) (registered" in card["headline"]
    monkeypatch.setattr(registry, "CHECKPOINT_DIR", tmp_path / "ckpt")
    model = registry.create_model("reblur-n1", pretrained=True)  # builds the reduced network from the metadata
    expected = create_model("reblur-n1", deblur_widths=(8, 16, 24), deblur_resblocks=1, reblur_channels=8)
    assert sum(p.numel() for p in model.parameters()) == card["parameters"] == sum(p.numel() for p in expected.parameters())
    assert card["parameters"] < sum(p.numel() for p in create_model("reblur-n1").parameters()) / 10


def test_a_run_continuing_the_shipped_checkpoint_ships_as_a_second_stage(photos, teacher_path, tmp_path):
    from train.ship import ship

    reduced = {"deblur_widths": [8, 16, 24], "deblur_resblocks": 1, "reblur_channels": 8}
    first = merge(tiny_config("reblur-n1", teacher_path), {"architecture": reduced})
    train(model_name="reblur-n1", data=[str(photos)], out=tmp_path / "one", config=first, context=CPU,
          max_steps=2, progress=False, val=None)
    ship(tmp_path / "one", "reblur-n1", weights="last.safetensors", out_dir=tmp_path / "ckpt")
    second = merge(first, {"train": {"seed": 1, "init": str(tmp_path / "ckpt" / "reblur-n1.safetensors")}})
    train(model_name="reblur-n1", data=[str(photos)], out=tmp_path / "two", config=second, context=CPU,
          max_steps=2, progress=False, val=None)
    with (tmp_path / "two" / "log.jsonl").open("a") as log:  # as a validated run's log holds it
        log.write(json.dumps({"kind": "val", "step": 2, "seconds": 3.0, "cpu_seconds": 2.5, "psnr": 20.0}) + "\n")
    card = ship(tmp_path / "two", "reblur-n1", weights="last.safetensors", out_dir=tmp_path / "ckpt")
    assert [stage["seed"] for stage in card["stages"]] == [0, 1]
    assert card["stages"][-1]["validation_history"] == [[2, 2.5, 20.0, None]]  # the curve, kept per stage
    assert "validation_history" not in card and "validation_history" not in card["stages"][0]
    assert card["steps"] == 4 and card["samples"] == 8  # totals; each stage's own figures under "stages"
    assert "2 stages" in card["headline"] and "2 steps x 2 crops of 32 px, then 2 steps x 2 crops" in card["headline"]
    third = merge(second, {"train": {"seed": 2}})  # the card now describes the second stage's file
    train(model_name="reblur-n1", data=[str(photos)], out=tmp_path / "three", config=third, context=CPU,
          max_steps=1, progress=False, val=None)
    assert len(ship(tmp_path / "three", "reblur-n1", weights="last.safetensors", out_dir=tmp_path / "ckpt")["stages"]) == 3
    fourth = merge(second, {"train": {"seed": 3, "init": str(tmp_path / "three" / "last.safetensors")}})
    train(model_name="reblur-n1", data=[str(photos)], out=tmp_path / "four", config=fourth, context=CPU,
          max_steps=1, progress=False, val=None)  # from the run file the shipped stage came from, not the checkpoint
    stages = ship(tmp_path / "four", "reblur-n1", weights="last.safetensors", out_dir=tmp_path / "ckpt")["stages"]
    assert [stage["seed"] for stage in stages] == [0, 1, 2, 3]
    (tmp_path / "ckpt" / "reblur-n1.safetensors").write_bytes(b"not what the card describes")
    with pytest.raises(ValueError, match="describes"):
        ship(tmp_path / "three", "reblur-n1", weights="last.safetensors", out_dir=tmp_path / "ckpt")


def test_kept_steps_ship_as_that_steps_weights_and_say_what_chose_them(photos, teacher_path, tmp_path):
    from train.ship import ship

    reduced = {"deblur_widths": [8, 16, 24], "deblur_resblocks": 1, "reblur_channels": 8}
    config = merge(tiny_config("reblur-n1", teacher_path, keep_every=2), {"architecture": reduced})
    train(model_name="reblur-n1", data=[str(photos)], out=tmp_path / "run", config=config, context=CPU,
          max_steps=5, progress=False, val=None)
    kept = sorted(path.name for path in (tmp_path / "run").glob("step-*.safetensors"))
    assert kept == ["step-000002.safetensors", "step-000004.safetensors"]
    second, fourth = (load_file(str(tmp_path / "run" / name)) for name in kept)
    assert any(not torch.equal(second[key], fourth[key]) for key in second)  # each the weights of its own step
    with pytest.raises(ValueError, match="chose"):
        ship(tmp_path / "run", "reblur-n1", weights=kept[0], out_dir=tmp_path / "ckpt")
    card = ship(tmp_path / "run", "reblur-n1", weights=kept[0], out_dir=tmp_path / "ckpt",
                chosen_by="the full frames")
    assert card["steps"] == 2 and card["run_steps"] == 5 and card["samples"] == 4
    assert card["chosen_by"] == "the full frames" and "step 2 of a run stopped at step 5" in card["headline"]
    shipped = load_file(str(tmp_path / "ckpt" / "reblur-n1.safetensors"))
    assert all(torch.equal(shipped[key].float(), second[key].float()) for key in second)
    with (tmp_path / "run" / "log.jsonl").open("a") as log:  # a validated run's log: the last kept step's record
        log.write(json.dumps({"kind": "val", "step": 5, "seconds": 3.0, "cpu_seconds": 2.5, "psnr": 21.0}) + "\n")
    (tmp_path / "run" / "step-000005.safetensors").write_bytes((tmp_path / "run" / "last.safetensors").read_bytes())
    card = ship(tmp_path / "run", "reblur-n1", weights="step-000005.safetensors", out_dir=tmp_path / "other",
                chosen_by="the last step")
    assert card["steps"] == 5 and "run_steps" not in card and card["validation_best"] == {"step": 5, "psnr": 21.0}
    assert card["headline"].endswith("; chosen by the last step")


def test_a_shipped_card_keeps_its_runs_validation_curve(tmp_path):
    from train.ship import stage_summary, validation_history

    run = tmp_path / "run"
    run.mkdir()
    assert validation_history(run) == []  # no log: nothing to keep
    lines = [
        {"kind": "train", "step": 10, "seconds": 5.0, "cpu_seconds": 4.0, "loss": 0.3},
        {"kind": "val", "step": 200, "seconds": 99.94, "cpu_seconds": 91.26, "psnr": 29.512345, "ssim": 0.87,
         "psnr_preview": 29.012345},
        {"kind": "val", "step": 400, "seconds": 210.0, "psnr": 29.6},  # an older log: wall seconds, no preview
    ]
    (run / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    history = validation_history(run)
    assert history == [[200, 91.3, 29.5123, 29.0123], [400, 210.0, 29.6, None]]
    card = {"steps": 400, "samples": 3200, "wall_seconds": 210.0, "hardware": "cpu", "validation_history": history,
            "config": {"data": {"batch_size": 8, "crop": 128},
                       "optim": {"name": "adamw", "lr": 1e-3, "betas": [0.9, 0.9]},
                       "train": {"seed": 0}, "schedule": {"kind": "cosine", "min_lr": 1e-6, "steps": 400}, "loss": {}}}
    assert stage_summary(card)["validation_history"] == history


def test_the_headline_says_whether_the_run_behind_an_earlier_step_ran_its_schedule():
    from train.ship import shipped_step

    card = {"steps": 2250, "config": {"schedule": {"steps": 2500}}}
    assert shipped_step(card) == ""  # the run's last step is shipped: nothing to add
    assert shipped_step({**card, "run_steps": 2500}).endswith("step 2,250, the best validation of its 2,500-step run")
    assert shipped_step({**card, "run_steps": 2400}).endswith("a run stopped at step 2,400 of 2,500")


def test_a_start_from_another_checkpoints_run_file_names_that_checkpoint(tmp_path):
    from train.ship import shipped_as

    (tmp_path / "reblur-n1.json").write_text(json.dumps(
        {"model": "reblur-n1", "weights_from": "n1-stage4/best.safetensors", "precision": {"dtype": "float16"}}))
    assert shipped_as("runs/n1-stage4/best.safetensors", tmp_path) == (
        "the shipped reblur-n1 weights (n1-stage4/best.safetensors, before their float16 rounding)")
    assert shipped_as("runs/n1-stage4/last.safetensors", tmp_path) is None  # not the file that was shipped
    assert shipped_as("runs/n1-stage4/best.safetensors", tmp_path / "absent") is None
    from train.ship import sha256

    shipped = tmp_path / "reblur-n1.safetensors"  # a start from the shipped file itself: named with its digest
    shipped.write_bytes(b"weights")
    card = {"model": "reblur-n1", "sha256": sha256(shipped), "stages": [{}, {}, {}, {}, {}]}
    (tmp_path / "reblur-n1.json").write_text(json.dumps(card))
    assert shipped_as(str(shipped), tmp_path) == (
        f"the shipped reblur-n1 weights (reblur-n1.safetensors: 5 stages, SHA-256 {sha256(shipped)[:12]})")
    shipped.write_bytes(b"other weights")  # no longer the file the card describes
    assert shipped_as(str(shipped), tmp_path) is None


def test_init_copies_matching_tensors_from_another_run(photos, teacher_path, tmp_path):
    from train.trainer import initialise_from

    train(model_name="reblur-n1", data=[str(photos)], out=tmp_path / "n1", config=tiny_config("reblur-n1", teacher_path),
          context=CPU, max_steps=1, progress=False)
    n1 = load_file(str(tmp_path / "n1" / "last.safetensors"))
    n2 = create_model("reblur-n2")
    copied = initialise_from(n2, tmp_path / "n1" / "last.safetensors")
    assert all(key.startswith(("deblur.", "reblur.")) for key in copied)
    assert all(torch.equal(n2.state_dict()[key], n1[key]) for key in copied)
    assert all(key in copied for key in n1 if key.startswith("deblur."))  # all of M_D
    with pytest.raises(ValueError, match="matches"):
        initialise_from(create_model("lmfn"), tmp_path / "n1" / "last.safetensors")


def shifted_batch() -> dict:
    """Two random 32 px 'sharp' images and their average with a 3 px horizontal shift as the blurry input."""
    sharp = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return {"blur": (sharp + torch.roll(sharp, 3, dims=-1)) / 2, "sharp": sharp}


def seeded_recipe(name: str, settings: dict):
    """A freshly initialised model (seed 0, the same weights every call) in training mode and its recipe."""
    torch.manual_seed(0)
    model = create_model(name).train()
    return model, RECIPES[name](model, settings, CPU)


def test_gradientnet_can_add_a_charbonnier_term_and_its_card_says_so(teacher_path):
    from train import losses

    config = merge(tiny_config("gradientnet", teacher_path), {"loss": {"adversarial": 0.0, "critic_steps": 0}})
    with_pixel = merge(config, {"loss": {"charbonnier": 2.0}})
    batch = shifted_batch()
    sharp = batch["sharp"]
    results = []
    for settings in (config, with_pixel):
        model, recipe = seeded_recipe("gradientnet", settings)
        with torch.no_grad():
            expected = 2.0 * losses.charbonnier(model.forward_train(batch["blur"])["output"].float(), sharp).item()
        results.append((recipe.step(batch)["loss"], expected, recipe.losses_used))
    (plain, _, plain_losses), (pixel, charbonnier, pixel_losses) = results
    assert pixel == pytest.approx(plain + charbonnier, rel=1e-4)
    assert not any("Charbonnier" in line for line in plain_losses)
    assert "2.0 x Charbonnier on the restored image (not in the paper)" in pixel_losses


def test_gradientnet_weighs_an_offline_content_stand_in_by_its_own_weight(teacher_path, monkeypatch):
    from train import losses

    def unavailable(**_):
        raise OSError("no VGG19 weights here")

    monkeypatch.setattr(losses, "PerceptualLoss", unavailable)  # the stand-in, whatever this machine can load
    config = merge(tiny_config("gradientnet", teacher_path), {"loss": {"adversarial": 0.0, "critic_steps": 0}})
    batch = shifted_batch()
    results = []
    for loss in ({"content": 0.05}, {"content": 10.0, "content_fallback": 0.05}, {"content": 10.0}):
        _, recipe = seeded_recipe("gradientnet", merge(config, {"loss": loss}))
        results.append((recipe.step(batch)["loss"], recipe.losses_used[0]))
    (stand_in, plain_text), (own, own_text), (paper, paper_text) = results
    assert own == pytest.approx(stand_in, rel=1e-5) and paper > 10 * own  # FFT L1 dominates at the paper's 10
    assert plain_text.startswith("0.05 x VGG19 relu4_3 perceptual loss unavailable offline")
    assert own_text.startswith("0.05 x VGG19 relu4_3") and "VGG19 features would be weighted 10.0" in own_text
    assert paper_text.startswith("10.0 x VGG19 relu4_3")


def test_fcn_can_add_an_fft_term_on_its_final_stage_and_its_card_says_so(teacher_path):
    from train import losses

    config = tiny_config("fcn", teacher_path)
    with_fft = merge(config, {"loss": {"fft": 0.5}})
    batch = shifted_batch()
    sharp = batch["sharp"]
    results = []
    for settings in (config, with_fft):
        model, recipe = seeded_recipe("fcn", settings)
        with torch.no_grad():
            stages = model.forward_train(batch["blur"])["stages"]
            expected = losses.fft_l1(stages[-1].float(), sharp).item()
            first = losses.fft_l1(stages[0].float(), sharp).item()
        results.append((recipe.step(batch), expected, first, recipe.losses_used))
    (plain, _, _, plain_losses), (fft, final, first, fft_losses) = results
    assert final != pytest.approx(first, rel=1e-3)  # the stages differ, so the test can tell which one is used
    assert fft["fft"] == pytest.approx(final, rel=1e-4)
    assert fft["loss"] == pytest.approx(plain["loss"] + 0.5 * final, rel=1e-4)
    assert "fft" not in plain and not any("FFT" in line for line in plain_losses)
    assert "0.5 x FFT L1 (Cho et al., ICCV 2021) on the final stage's output (not in the paper)" in fft_losses


def test_a_cpu_without_bfloat16_trains_in_float32_and_the_card_says_so(photos, teacher_path, tmp_path, monkeypatch):
    import train.trainer as trainer

    monkeypatch.setattr(trainer, "cpu_has_bfloat16", lambda: False)
    config = tiny_config("lmfn", teacher_path, cpu_bf16=True)
    card = train(model_name="lmfn", data=[str(photos)], out=tmp_path, config=config, context=CPU, max_steps=1,
                 progress=False)
    assert card["config"]["train"]["cpu_bf16"] is False
    from train.ship import recipe_summary
    assert "float32" in recipe_summary(card["config"]) and "bfloat16" not in recipe_summary(card["config"])


def test_a_start_from_another_models_shipped_checkpoint_carries_its_stages_under_its_name(tmp_path):
    from train.ship import earlier_stages, sha256

    start = tmp_path / "reblur-n1.safetensors"
    start.write_bytes(b"reblur-n1 weights")
    stages = [{"steps": 700, "samples": 2800}, {"steps": 600, "samples": 4800}]
    (tmp_path / "reblur-n1.json").write_text(json.dumps(
        {"model": "reblur-n1", "sha256": sha256(start), "stages": stages, "teacher": None, "losses_used": ["L1"]}))
    run_card = {"config": {"train": {"init": str(start)}}}
    earlier = earlier_stages(run_card, "reblur-n2", tmp_path)
    assert [stage["steps"] for stage in earlier] == [700, 600] and {stage["model"] for stage in earlier} == {"reblur-n1"}
    assert earlier[0]["losses_used"] == ["L1"]
    start.write_bytes(b"a later reblur-n1 stage")  # the card no longer describes the file: nothing to carry
    assert earlier_stages(run_card, "reblur-n2", tmp_path) == []
