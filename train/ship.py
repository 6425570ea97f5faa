"""Ship a training run: weights into ``checkpoints/<model>.safetensors`` and a model card beside them.

    python -m train ship --run runs/lmfn --model lmfn [--weights best.safetensors] [--data ../shared/data/gopro_dev]

The weights are stored in float16 only where that costs less than ``FP16_TOLERANCE_DB`` of PSNR on the
validation pairs (centre crops, measured here, written in the card), else in float32. The card gathers what
``python -m train`` recorded (configuration, data, steps, wall time, hardware, losses actually used, teacher),
a one-line ``headline`` that names every departure from the registered model and the paper's schedule, and the
file's SHA-256. Scores on ``gopro_dev`` and the Köhler photos are added by ``benchmarks/results.py``, which
runs ``python -m core evaluate``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.registry import (
    CHECKPOINT_DIR,
    checkpoint_architecture,
    create_model,
    file_sha256,
    get_card,
    load_weights,
    write_manifest_entry,
)
from train.config import DEFAULTS
from train.data import ValidationPairs
from train.distributed import Context
from train.trainer import kept_weights_step as kept_step, validate

FP16_TOLERANCE_DB = 0.05
GOPRO_FRAMES = DEFAULTS["data"]["frames"]  # the frame windows of GoPro's own pairs
CAMERA_EXTENT = DEFAULTS["data"]["camera_extent"]  # the moving-camera photos' path lengths unless a config sets them


sha256 = file_sha256


def mean_psnr(model, pairs: ValidationPairs) -> float:
    """The trainer's own validation PSNR (``train.trainer.validate``) on the CPU."""
    return validate(model, pairs, Context(rank=0, world=1, device=torch.device("cpu")))["psnr"]


def headline(name: str, run_card: dict, architecture: dict, earlier: list[dict] | None = None,
             out_dir: Path | None = None) -> str:
    """One line naming the architecture (and how it departs from the registered variant) and the schedule; with
    ``earlier`` stages (a run continuing the shipped checkpoint), the steps of every stage and the totals. A start
    from a run file that another checkpoint in ``out_dir`` was shipped from names that checkpoint."""
    def plain(value):
        return tuple(value) if isinstance(value, list) else value

    import inspect

    defaults = {key: parameter.default for key, parameter in
                inspect.signature(type(create_model(name)).__init__).parameters.items()}
    registered = {key: plain(value) for key, value in {**defaults, **get_card(name).config}.items()}
    changes = [f"{key} {plain(value)} (registered {registered.get(key, 'default')})"
               for key, value in architecture.items() if registered.get(key) != plain(value)]
    config = run_card["config"]
    shape = "registered architecture" if not changes else "architecture departing from the registered one: " + ", ".join(changes)
    device = "GPU" if "cuda" in run_card["hardware"].lower() or "nvidia" in run_card["hardware"].lower() else "CPU"
    start = config["train"].get("init")
    if earlier:
        stages = [*earlier, stage_summary(run_card)]
        steps = ", then ".join(f"{stage['steps']:,} steps x {stage['batch_size']} crops of {stage['crop']} px"
                               for stage in stages)
        borrowed = [stage["model"] for stage in earlier if stage.get("model", name) != name]
        lineage = (f" (the first {len(borrowed)} as {borrowed[0]}, whose shipped weights this run started from)"
                   if borrowed else "")
        return (
            f"{name}, {shape}; {device} schedule in {len(stages)} stages, each continuing the last{lineage}: {steps} "
            f"({sum(stage['samples'] for stage in stages):,} samples), "
            f"{sum(stage['wall_seconds'] for stage in stages) / 60:.0f} min on {run_card['hardware']}"
        )
    if start:
        shape += f"; started from {shipped_as(start, out_dir) or start}"
    return (
        f"{name}, {shape}; {device} schedule: {run_card['steps']:,} steps x {config['data']['batch_size']} crops of "
        f"{config['data']['crop']} px ({run_card['samples']:,} samples), {run_card['wall_seconds'] / 60:.0f} min on "
        f"{run_card['hardware']}"
    )


def recipe_summary(config: dict) -> str:
    """The optimisation recipe of a run in one line: optimiser, schedule, precision, weight average, augmentation."""
    optim, schedule, settings, data = config["optim"], config["schedule"], config["train"], config["data"]
    parts = [f"{optim['name'].replace('adamw', 'AdamW').replace('adam', 'Adam')} lr {optim['lr']:g}, betas "
             f"({', '.join(f'{b:g}' for b in optim['betas'])}), weight decay {optim.get('weight_decay', 0):g}"]
    shape = schedule["kind"] + (f" to {schedule['min_lr']:g}" if schedule["kind"] == "cosine" else "")
    if schedule.get("warmup"):
        shape = f"{schedule['warmup']}-step linear warm-up, then {shape}"
    parts.append(f"{shape} over {schedule['steps']:,} steps")
    parts.append("bfloat16 autocast on the CPU" if settings.get("cpu_bf16") else "float32")
    if settings.get("ema"):
        parts.append(f"EMA of the weights ({settings['ema']:g}) validated and exported")
    if data.get("scale"):
        parts.append(f"real-blur crops downscaled by a log-uniform factor in [{data['scale'][0]:g}, {data['scale'][1]:g}]")
    if list(data.get("frames") or GOPRO_FRAMES) != list(GOPRO_FRAMES):
        parts.append(f"frame windows of {data['frames'][0]} to {data['frames'][1]} frames (GoPro: "
                     f"{GOPRO_FRAMES[0]} to {GOPRO_FRAMES[1]})")
    if data.get("noise"):
        parts.append(f"Gaussian noise of std U[{data['noise'][0]:g}, {data['noise'][1]:g}] added to real-blur inputs")
    if data.get("photo_blur", "kernel") == "camera":
        extent = data.get("camera_extent") or CAMERA_EXTENT
        changed = list(extent) != list(CAMERA_EXTENT)
        paths = f", camera paths of {extent[0]:g} to {extent[1]:g} crop pixels" if changed else ""
        parts.append("sharp photos blurred by a moving camera's frames averaged as GoPro's "
                     f"(train.data.MovingCameraFolder{paths})")
    if config["loss"].get("pixel"):
        parts.append(f"pixel loss {config['loss']['pixel']}")
    return "; ".join(parts)


def stage_summary(card: dict) -> dict:
    """One training stage as a shipped card's ``stages`` lists it (from a run's card.json)."""
    config = card["config"]
    return {"steps": card["steps"], "samples": card["samples"], "wall_seconds": card["wall_seconds"],
            "batch_size": config["data"]["batch_size"], "crop": config["data"]["crop"], "lr": config["optim"]["lr"],
            "seed": config["train"]["seed"], "init": config["train"].get("init"), "hardware": card["hardware"],
            "recipe": recipe_summary(config), "losses_used": card.get("losses_used"), "teacher": card.get("teacher"),
            "validation_best": card.get("validation_best"),
            **({"run_steps": card["run_steps"]} if "run_steps" in card else {}),
            **({"chosen_by": card["chosen_by"]} if card.get("chosen_by") else {}),
            **({"validation_history": card["validation_history"]} if card.get("validation_history") else {})}


def validation_history(run: Path) -> list[list]:
    """Every validation of a run, from its ``log.jsonl``, as compact rows ``[step, CPU seconds, crops' PSNR,
    preview PSNR or None]``, so that a shipped card keeps the curve after ``runs/`` is gone
    (``benchmarks/training_curves.py --cards`` draws it). Wall seconds stand in for CPU seconds in logs that
    predate the ``cpu_seconds`` field; [] without a log."""
    log = run / "log.jsonl"
    if not log.is_file():
        return []
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [[r["step"], round(r.get("cpu_seconds", r["seconds"]), 1), round(r["psnr"], 4),
             None if r.get("psnr_preview") is None else round(r["psnr_preview"], 4)]
            for r in records if r.get("kind") == "val"]


def described_checkpoint(start: str | None, out_dir: Path | None) -> dict | None:
    """The card of ``start`` when it is a shipped checkpoint in ``out_dir`` (``<model>.safetensors`` beside
    ``<model>.json``) that its card still describes (the same SHA-256); None otherwise, e.g. once a later stage of
    that model has replaced the file."""
    if not start or out_dir is None or not Path(start).is_file():
        return None
    card_path = Path(out_dir) / f"{Path(start).stem}.json"
    if Path(start).resolve().parent != Path(out_dir).resolve() or not card_path.is_file():
        return None
    card = json.loads(card_path.read_text())
    return card if card.get("sha256") == sha256(Path(start)) else None


def earlier_stages(run_card: dict, name: str, out_dir: Path) -> list[dict]:
    """The stages behind the shipped checkpoint when this run started from it: ``[train] init`` naming
    ``<out_dir>/<name>.safetensors`` (still the file its card describes) or the run file it was shipped from
    (the card's ``weights_from``, ``<run folder>/<file>``); or naming another model's shipped checkpoint in
    ``out_dir`` that its card still describes, whose stages are then listed with that model's name; [] otherwise."""
    start = run_card["config"]["train"].get("init")
    other = described_checkpoint(start, out_dir) if start and Path(start).stem != name else None
    if other is not None:  # another model's shipped checkpoint (Reblur-n2 starts from Reblur-n1's): its stages
        return [{"losses_used": other.get("losses_used"), "teacher": other.get("teacher"), **stage,
                 "model": other["model"]} for stage in other.get("stages") or [stage_summary(other)]]
    target = out_dir / f"{name}.safetensors"
    shipped = out_dir / f"{name}.json"
    if not start or not target.is_file() or not shipped.is_file():
        return []
    card = json.loads(shipped.read_text())
    shipped_from = card.get("weights_from") == f"{Path(start).parent.name}/{Path(start).name}"
    if Path(start).resolve() != target.resolve() and not shipped_from:
        return []
    if card.get("sha256") != sha256(target):
        raise ValueError(f"{target} is not the file {shipped} describes: cannot say what this run continued")
    stages = card.get("stages") or [stage_summary(card)]
    # stages shipped before cards listed their losses and teacher: those the shipped card recorded for them all
    return [{"losses_used": card.get("losses_used"), "teacher": card.get("teacher"), **stage} for stage in stages]


def as_of_shipped_step(run: Path, run_card: dict, weights: str) -> dict:
    """The run card counted up to the step whose weights are shipped: ``best.safetensors`` holds the weights
    of the best validation, ``step-NNNNNN.safetensors`` those of step N (``[train] keep_every``), and either saw
    only the steps (samples, seconds) before it; the run's own length is kept under ``run_steps``, and a kept
    step's validation (None where the run did not validate it) becomes the card's ``validation_best``."""
    best = run_card.get("validation_best")
    log = run / "log.jsonl"
    kept = kept_step(weights)
    if kept is None and (weights != "best.safetensors" or not best):
        return run_card
    step = best["step"] if kept is None else kept
    records = ([json.loads(line) for line in log.read_text().splitlines() if line.strip()]
               if log.is_file() else [])
    if kept is not None:
        if kept > run_card["steps"]:
            raise ValueError(f"{run / weights}: step {kept} is past the run's last step ({run_card['steps']})")
        validated = next((r for r in records if r["kind"] == "val" and r["step"] == kept), None)
        run_card = {**run_card, "validation_best": (
            {"step": kept, **{k: validated[k] for k in ("psnr", "ssim", "psnr_preview") if k in validated}}
            if validated else None)}
    if step >= run_card["steps"]:
        return run_card
    at = next((r for r in records if r["kind"] in ("val", "train") and r["step"] == step), None)
    if at is None:
        if kept is not None:
            raise ValueError(f"{run / weights}: the run's log has no record of step {step}")
        return run_card
    batch = run_card["config"]["data"]["batch_size"]
    return {**run_card, "run_steps": run_card["steps"], "steps": step, "samples": step * batch,
            "wall_seconds": round(at["seconds"], 1)}


def shipped_as(start: str, out_dir: Path | None) -> str | None:
    """``"the shipped <model> weights (<run>/<file>)"`` when a card in ``out_dir`` was shipped from the run file
    ``start``; ``"the shipped <model> weights (<file>: N stages, SHA-256 <prefix>)"`` when ``start`` is a shipped
    checkpoint in ``out_dir`` that its card still describes (a later stage of that model replaces the file, so the
    digest says which weights these were); None otherwise."""
    if out_dir is None or not Path(out_dir).is_dir():
        return None
    card = described_checkpoint(start, out_dir)
    if card is not None:
        stages = len(card.get("stages") or [card])
        return (f"the shipped {card['model']} weights ({Path(start).name}: {stages} stage{'s' * (stages > 1)}, "
                f"SHA-256 {card['sha256'][:12]})")
    source = f"{Path(start).parent.name}/{Path(start).name}"
    for path in sorted(Path(out_dir).glob("*.json")):
        card = json.loads(path.read_text())
        if card.get("weights_from") == source:
            rounded = ", before their float16 rounding" if card.get("precision", {}).get("dtype") == "float16" else ""
            return f"the shipped {card['model']} weights ({source}{rounded})"
    return None


def shipped_step(run_card: dict) -> str:
    """The headline's note when the shipped weights are an earlier step's than the run's last."""
    if "run_steps" not in run_card:  # the run's last weights (a run stopped early says so in its chosen_by)
        return f"; chosen by {run_card['chosen_by']}" if run_card.get("chosen_by") else ""
    length = run_card["config"]["schedule"]["steps"]
    run = (f"its {length:,}-step run" if run_card["run_steps"] >= length
           else f"a run stopped at step {run_card['run_steps']:,} of {length:,}")
    if run_card.get("chosen_by"):
        return f"; the weights of step {run_card['steps']:,} of {run}, chosen by {run_card['chosen_by']}"
    return f"; the weights of step {run_card['steps']:,}, the best validation of {run}"


def ship(run: Path, name: str, *, weights: str = "best.safetensors", data: Path | None = None,
         crop: int = 256, out_dir: Path = CHECKPOINT_DIR, chosen_by: str | None = None) -> dict:
    """``chosen_by``: what picked a kept step's weights (``step-NNNNNN.safetensors``, written by ``[train]
    keep_every``) over the run's own best validation; required for such a file, named in the card."""
    run = Path(run)
    source = run / weights
    run_card = json.loads((run / "card.json").read_text())
    if run_card["model"] != name:
        raise ValueError(f"{run} trained {run_card['model']!r}, not {name!r}")
    if kept_step(weights) is not None and not chosen_by:
        raise ValueError(f"{weights} is a kept step's weights: say what chose them (chosen_by, --chosen-by)")
    run_card = {**as_of_shipped_step(run, run_card, weights), "validation_history": validation_history(run)}
    if chosen_by:
        run_card["chosen_by"] = chosen_by
    architecture = checkpoint_architecture(source)
    model = create_model(name, **architecture)
    load_weights(model, source)
    model.eval()

    precision = {"dtype": "float32"}
    if data is not None:
        pairs = ValidationPairs(data, max_side=crop)
        full = mean_psnr(model, pairs)
        half = create_model(name, **architecture)
        half.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
        rounded = mean_psnr(half.eval(), pairs)
        cost = full - rounded
        precision = {
            "dtype": "float16" if abs(cost) < FP16_TOLERANCE_DB else "float32",
            "fp16_psnr_cost_db": round(cost, 4),
            "measured_on": f"{len(pairs)} centre crops of at most {crop} px from {data}",
        }
    earlier = earlier_stages(run_card, name, out_dir)  # read before the shipped files are replaced
    state = {
        key: (value.half() if precision["dtype"] == "float16" and value.is_floating_point() else value).contiguous()
        for key, value in load_file(str(source)).items()
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.safetensors"
    temporary = target.with_suffix(".tmp")
    save_file(state, str(temporary), metadata={"format": "pt", "architecture": json.dumps(architecture), "model": name})
    temporary.replace(target)
    write_manifest_entry(target)

    card = {
        "model": name,
        "headline": headline(name, run_card, architecture, earlier, out_dir) + shipped_step(run_card),
        "trained": True,
        "paper": run_card["paper"],
        "architecture_overrides": architecture,
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_file": target.name,
        "weights_from": f"{run.name}/{weights}",
        "sha256": sha256(target),
        "bytes": target.stat().st_size,
        "precision": precision,
        "recipe": recipe_summary(run_card["config"]),
        **({"run_steps": run_card["run_steps"]} if "run_steps" in run_card else {}),
        **({"chosen_by": run_card["chosen_by"]} if run_card.get("chosen_by") else {}),
        **{key: run_card[key] for key in ("data", "validation", "steps", "samples", "wall_seconds", "hardware",
                                           "losses_used", "teacher", "validation_best", "validation_last", "torch",
                                           "config")},
        **({"validation_history": run_card["validation_history"]} if run_card["validation_history"] else {}),
        "scores": {},  # filled by benchmarks/results.py from `python -m core evaluate`
    }
    if earlier:  # totals over every stage; each stage's own figures (this run's last) under "stages"
        card["stages"] = [*earlier, stage_summary(run_card)]
        for key in ("steps", "samples", "wall_seconds"):
            card[key] = sum(stage[key] for stage in card["stages"])
        card.pop("validation_history", None)  # each stage's own, under "stages"
    (out_dir / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return card
