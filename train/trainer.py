"""The training loop: data, resume, validation, logging and export, for any registered model and recipe.

Reproducibility: every sample is a function of (seed, epoch, index) (``train.data``), batches are cut from a
fixed sequence of sample indices, and torch's generator is reseeded from (seed, rank, step) before each step,
so a run resumed from its state file continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import platform
import re
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset, Sampler

from core.metrics import psnr, ssim
from core.registry import create_model, get_card
from train.data import ValidationPairs, build_dataset, pair_sequence, to_tensor
from train.distributed import Context, barrier, broadcast_parameters
from train.memory import check_fits
from train.recipes import RECIPES

STATE_FILE = "state.pt"


class StepIndexed(Dataset):
    """Global sample index g -> sample (g mod length) of epoch (g div length) of a dataset with set_epoch."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int):
        self.dataset.set_epoch(index // len(self.dataset))
        return self.dataset[index % len(self.dataset)]


class StepBatches(Sampler):
    """Batch ``step`` of the whole run is samples [step * B, (step + 1) * B); rank r takes every world-th one."""

    def __init__(self, start: int, stop: int, batch_size: int, context: Context) -> None:
        if batch_size % context.world:
            raise ValueError(f"batch size {batch_size} must divide evenly over {context.world} processes")
        self.start, self.stop, self.batch_size, self.context = start, stop, batch_size, context

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        for step in range(self.start, self.stop):
            first = step * self.batch_size
            yield list(range(first + self.context.rank, first + self.batch_size, self.context.world))


def step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])


def hardware(context: Context) -> str:
    if context.device.type == "cuda":
        device = torch.cuda.get_device_name(context.device)
    else:
        threads = torch.get_num_threads()
        device = f"{platform.processor() or platform.machine()} CPU, {threads} thread{'' if threads == 1 else 's'}"
    return f"{context.world} x {device}"


@torch.no_grad()
def validate(model, pairs: Dataset, context: Context) -> dict:
    """Mean PSNR / SSIM of the model (eval mode, clamped output) over the validation pairs, and under
    ``by_sequence`` the mean PSNR of each sequence's pairs (a pair's name up to its last "/"; "" for a flat folder).

    The sequences are worth seeing apart: a frame folder of one sequence can train a network on the very scene of
    some validation pairs (their own frames are held out, not their scene), and the mean hides how it does elsewhere.
    """
    model.eval()
    scores = {"psnr": [], "ssim": []}
    sequences: dict[str, list[float]] = {}
    for index in range(len(pairs)):
        pair = pairs[index]
        output = model(pair["blur"].unsqueeze(0).to(context.device)).float().cpu()[0]
        restored = output.permute(1, 2, 0).numpy()
        sharp = pair["sharp"].permute(1, 2, 0).numpy()
        scores["psnr"].append(psnr(restored, sharp))
        scores["ssim"].append(ssim(restored, sharp))
        sequences.setdefault(pair_sequence(pair.get("name", "")), []).append(scores["psnr"][-1])
    model.train()
    means = {key: float(np.mean(values)) for key, values in scores.items()}
    return {**means, "by_sequence": {name: float(np.mean(values)) for name, values in sequences.items()}}


class WeightAverage:
    """An exponential moving average of a model's floating-point parameters and buffers (``[train] ema``).

    After optimiser step t: average <- d * average + (1 - d) * weights with d = min(decay, (1 + t) / (10 + t)),
    the usual warm-up, so that the average of a short run is not dominated by its starting weights.
    ``swapped_in`` puts the average into the model for validation or export and restores the live weights.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"[train] ema must be between 0 and 1 (exclusive), got {decay}")
        self.decay = decay
        self.updates = 0
        self.names = [name for name, value in model.state_dict().items() if value.is_floating_point()]
        self.average = {name: value.detach().clone() for name, value in model.state_dict().items() if name in self.names}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        live = model.state_dict()
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_([self.average[n] for n in self.names], [live[n] for n in self.names], 1.0 - decay)
        self.updates += 1

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        state = model.state_dict()
        live = {name: state[name].detach().clone() for name in self.names}
        model.load_state_dict(self.average, strict=False)
        try:
            yield model
        finally:
            model.load_state_dict(live, strict=False)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "average": dict(self.average)}

    def load_state_dict(self, state: dict) -> None:
        self.updates = state["updates"]
        for name in self.names:
            self.average[name].copy_(state["average"][name])


class PreviewPairs(Dataset):
    """Validation pairs as the app shows them: each whole frame resized to ``longest`` px on its longest side
    (``core.visualize.resize_longest``, the app's resize) before the model runs."""

    def __init__(self, pairs: ValidationPairs, longest: int) -> None:
        from core.visualize import resize_longest

        self.items = []
        for index in range(len(pairs)):
            pair = pairs[index]
            resized = {
                key: to_tensor(resize_longest(pair[key].permute(1, 2, 0).numpy(), longest)) for key in ("blur", "sharp")
            }
            resized["name"] = pair["name"]
            self.items.append(resized)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def export_weights(model, path: Path, *, fp16: bool, architecture: dict | None = None, name: str | None = None) -> None:
    """Weights only (safetensors: no pickled objects), optionally in float16.

    ``architecture`` (constructor keywords that differ from the registered variant, e.g. a reduced width)
    is written into the file's metadata, where ``create_model(..., pretrained=True)`` reads it back; ``name``,
    the registered model, too, so that the file can be brought to the app on its own (``core.own``).
    """
    state = {
        key: (value.half() if fp16 and value.is_floating_point() else value).detach().cpu().contiguous()
        for key, value in model.state_dict().items()
    }
    metadata = {"format": "pt", "architecture": json.dumps(architecture or {})} | ({"model": name} if name else {})
    save_file(state, str(path), metadata=metadata)


def plot_curves(log_path: Path, out_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    train_rows = [r for r in records if r["kind"] == "train"]
    val_rows = [r for r in records if r["kind"] == "val"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key in (train_rows[0] if train_rows else {}):
        if key in ("kind", "step", "lr", "seconds") or not isinstance(train_rows[0][key], float):
            continue
        left.plot([r["step"] for r in train_rows], [r[key] for r in train_rows], label=key)
    left.set(xlabel="step", ylabel="loss", yscale="log", title="training losses")
    left.legend(fontsize=7)
    if val_rows:
        right.plot([r["step"] for r in val_rows], [r["psnr"] for r in val_rows], marker="o")
    right.set(xlabel="step", ylabel="PSNR (dB)", title="validation")
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)


def train(
    *,
    model_name: str,
    data: list[str],
    out: Path,
    config: dict,
    context: Context,
    max_steps: int | None = None,
    resume: bool = False,
    val: str | None = None,
    progress: bool = True,
) -> dict:
    """Train ``model_name`` with its recipe; returns the model card written next to the exported weights."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = config["train"]
    seed = settings["seed"]
    total = config["schedule"]["steps"] if max_steps is None else max_steps
    batch_size = config["data"]["batch_size"]

    if settings.get("threads"):
        torch.set_num_threads(int(settings["threads"]))
    if context.device.type == "cpu" and settings.get("cpu_bf16") and not cpu_has_bfloat16():
        print("warning: [train] cpu_bf16 asks for bfloat16 autocast, but this CPU has no bfloat16 instructions "
              "(avx512_bf16 or AMX), where it is emulated and several times slower; training in float32", flush=True)
        settings["cpu_bf16"] = False  # the card's recipe says float32, as it ran
    torch.manual_seed(seed)
    architecture = config.get("architecture", {})
    model = create_model(model_name, **architecture).train().to(context.device)
    if settings["channels_last"]:
        to_channels_last(model)
    if settings.get("init") and not resume:
        initialise_from(model, Path(settings["init"]))
    broadcast_parameters(model, context)
    recipe = RECIPES[config["recipe"]](model, config, context)
    for module in recipe.modules.values():
        broadcast_parameters(module, context)

    dataset = build_dataset(
        data,
        crop=config["data"]["crop"],
        seed=seed,
        length=config["data"]["length"],
        weights=config["data"]["weights"] or None,
        held_out=val,
        scale=config["data"].get("scale"),
        frames=config["data"]["frames"],
        photo_blur=config["data"]["photo_blur"],
        camera_extent=config["data"]["camera_extent"],
        noise=config["data"].get("noise"),
    )
    if context.device.type == "cpu" and settings.get("memory_check", True):
        check_fits(model_name, config, dataset)  # before anything large is allocated: a clear refusal, not the OOM killer
    pairs = ValidationPairs(val, max_side=settings["val_max_side"]) if val else None
    preview = (
        PreviewPairs(ValidationPairs(val), settings["val_preview"]) if val and settings.get("val_preview") else None
    )
    if settings["best"] == "psnr+preview" and pairs is not None and preview is None:
        raise ValueError('[train] best = "psnr+preview" needs [train] val_preview (the preview size to validate at)')
    average = WeightAverage(model, settings["ema"]) if settings.get("ema") else None

    start, best, elapsed = 0, None, 0.0
    state_path = out / STATE_FILE
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location=context.device, weights_only=True)
        model.load_state_dict(state["model"])
        recipe.load_state_dict(state["recipe"])
        start, best, elapsed = state["step"], state["best"], state["seconds"]
        if average is not None:
            average.load_state_dict(state["average"])
    elif resume:
        raise FileNotFoundError(f"--resume given but there is no {state_path}")

    loader = DataLoader(
        StepIndexed(dataset),
        batch_sampler=StepBatches(start, total, batch_size, context),
        num_workers=config["data"]["workers"],
    )
    log_path = out / "log.jsonl"
    if context.main and not resume:
        log_path.write_text("")
    bar = None
    if progress and context.main:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=start, desc=model_name, unit="step")

    last_validation = None
    began = time.perf_counter() - elapsed
    cpu_began = time.process_time() - (state.get("cpu_seconds", elapsed) if resume else 0.0)
    step = start
    for step, batch in enumerate(loader, start=start):
        torch.manual_seed(step_seed(seed, context.rank, step))
        batch = {key: value.to(context.device, non_blocking=True) for key, value in batch.items()}
        if settings["channels_last"]:
            batch = {key: value.contiguous(memory_format=torch.channels_last) for key, value in batch.items()}
        losses = recipe.step(batch)
        if average is not None:
            average.update(model)
        lr = recipe.lr
        recipe.end_step()
        done = step + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{losses['loss']:.4f}")
        if context.main and (done % settings["log_every"] == 0 or done == total):
            record = {"kind": "train", "step": done, "lr": lr, "seconds": time.perf_counter() - began,
                      "cpu_seconds": time.process_time() - cpu_began, **losses}
            with log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")
        if pairs is not None and (done % settings["val_every"] == 0 or done == total):
            if context.main:
                paused, cpu_paused = time.perf_counter(), time.process_time()
                with average.swapped_in(model) if average is not None else nullcontext(model) as evaluated:
                    last_validation = validate(evaluated, pairs, context)
                    apart = {"psnr_by_sequence": last_validation.pop("by_sequence")}  # logged, not a selection score
                    if preview is not None:
                        previewed = validate(evaluated, preview, context)
                        last_validation["psnr_preview"] = previewed["psnr"]
                        apart["psnr_preview_by_sequence"] = previewed["by_sequence"]
                    record = {"kind": "val", "step": done, "seconds": paused - began,
                              "cpu_seconds": cpu_paused - cpu_began, **last_validation, **apart}
                    with log_path.open("a") as log:
                        log.write(json.dumps(record) + "\n")
                    if best is None or selection_score(last_validation, settings) > selection_score(best, settings):
                        best = {"step": done, **last_validation}
                        export_weights(evaluated, out / "best.safetensors", fp16=settings["fp16_export"], name=model_name,
                                       architecture=architecture)
                began += time.perf_counter() - paused  # the clocks count training time only
                cpu_began += time.process_time() - cpu_paused
            barrier(context)
        if context.main and settings["keep_every"] and done % settings["keep_every"] == 0:
            # every N-th step's weights, for a choice by measures the run does not take (full frames, Köhler NIQE)
            with average.swapped_in(model) if average is not None else nullcontext(model) as evaluated:
                export_weights(evaluated, out / kept_weights_name(done), fp16=settings["fp16_export"],
                               name=model_name, architecture=architecture)
        if context.main and (done % settings["save_every"] == 0 or done == total):
            save_state(state_path, model, recipe, done, best, time.perf_counter() - began, average,
                       cpu_seconds=time.process_time() - cpu_began)
    if bar is not None:
        bar.close()

    card = {}
    if context.main:
        with average.swapped_in(model) if average is not None else nullcontext(model) as evaluated:
            export_weights(evaluated, out / "last.safetensors", fp16=settings["fp16_export"], architecture=architecture,
                           name=model_name)
        if log_path.stat().st_size:
            plot_curves(log_path, out / "curves.png")
        card = model_card(
            model_name, config, recipe, data, val, step + 1 if total > start else start, batch_size, context,
            time.perf_counter() - began, best, last_validation,
        )
        (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    barrier(context)
    return card


def kept_weights_name(step: int) -> str:
    """The file ``[train] keep_every`` writes for a step's weights; ``kept_weights_step`` reads the step back."""
    return f"step-{step:06d}.safetensors"


def kept_weights_step(name: str) -> int | None:
    """The step of a file written by ``[train] keep_every`` (``step-000500.safetensors``: 500); None otherwise."""
    match = re.fullmatch(r"step-(\d+)\.safetensors", name)
    return int(match.group(1)) if match else None


def initialise_from(model, path: Path) -> list[str]:
    """Start from another run's exported weights (``[train] init``): every tensor whose name and shape match
    is copied (e.g. Reblur-n2's M_D from a Reblur-n1 run); the rest keep their fresh initialisation.
    Returns the names copied; refuses a file that matches nothing."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"[train] init: no weights file {path}")
    source = load_file(str(path))
    own = model.state_dict()
    copied = [key for key, value in source.items() if key in own and own[key].shape == value.shape]
    if not copied:
        raise ValueError(f"[train] init: no tensor of {path} matches the model")
    model.load_state_dict({key: source[key].to(own[key].dtype) for key in copied}, strict=False)
    return copied


def cpu_has_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX). Without either, bfloat16 autocast is
    emulated: on an AVX2-only CPU, LMFN's step took 18 s under it against 2.5 s in float32 (2026-12-03)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def to_channels_last(model) -> None:
    """Channels-last weights for every 4-D parameter (3-D convolutions, e.g. LMFN's ACFM, keep their layout)."""
    for parameter in model.parameters():
        if parameter.dim() == 4:
            parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)


SELECTIONS = ("psnr", "psnr+preview")


def selection_score(validation: dict, settings: dict) -> float:
    """What picks ``best.safetensors`` (``[train] best``): the crops' PSNR ("psnr"), or with "psnr+preview" its sum
    with the PSNR of the whole frames at ``val_preview`` (the app's preview size), so that a step that gains on
    crops at full size while it loses at the preview size is not taken for the best."""
    if settings["best"] not in SELECTIONS:
        raise ValueError(f"[train] best must be one of {', '.join(SELECTIONS)}, got {settings['best']!r}")
    if settings["best"] == "psnr+preview":
        return validation["psnr"] + validation["psnr_preview"]
    return validation["psnr"]


def save_state(path: Path, model, recipe, step: int, best, seconds: float, average=None, *, cpu_seconds=None) -> None:
    """The resumable state (never shipped): written to a temporary file and renamed, so never half-written."""
    temporary = path.with_suffix(".tmp")
    state = {"model": model.state_dict(), "recipe": recipe.state_dict(), "step": step, "best": best,
             "seconds": seconds, "cpu_seconds": seconds if cpu_seconds is None else cpu_seconds}
    if average is not None:
        state["average"] = average.state_dict()
    torch.save(state, temporary)
    temporary.replace(path)


def model_card(name, config, recipe, data, val, steps, batch_size, context, seconds, best, last) -> dict:
    card = get_card(name)
    return {
        "model": name,
        "paper": card.paper,
        "config": config,
        "data": [str(Path(path)) for path in data],
        "validation": str(val) if val else None,
        "steps": steps,
        "samples": steps * batch_size,
        "wall_seconds": round(seconds, 1),
        "hardware": hardware(context),
        "losses_used": recipe.losses_used,
        "teacher": getattr(getattr(recipe, "teacher", None), "description", None),
        "validation_best": best,
        "validation_last": last,
        "torch": torch.__version__,
    }
