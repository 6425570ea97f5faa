"""Will a training run fit in memory? An estimate before the first step, and a refusal that says what fits.

The estimate adds:
- the network's activation peak over one ``forward_train`` and its backward, traced on the meta device
  (``core.tile_policy.PeakMemory``: no memory is allocated, no arithmetic done) at the run's batch and crop,
  times ``ACTIVATION_MARGIN`` for what the trace does not see (the recipe's second passes and loss networks,
  the allocator's fragmentation, oneDNN's scratch buffers);
- the weights, their gradients and two Adam moments (4 x the parameters' bytes), and the EMA copy if any;
- the decoded frames a frame folder keeps (uint8, once per data-loading process: ``train.data.FrameFolder``);
- ``PROCESS_BYTES`` for the interpreter, torch and the rest of the process.
Checked on this project's CPU runs (README, Training): LMFN, batch 8 of 128 px, peaked at 1.8 GB resident.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from core.tile_policy import PeakMemory
from core.registry import create_model

ACTIVATION_MARGIN = 1.5
PROCESS_BYTES = 1.0 * 2**30
GIB = 2**30


class DoesNotFit(MemoryError):
    """A run whose estimated peak exceeds the memory available; the message names what would fit."""


def activation_bytes(model_name: str, architecture: dict, batch_size: int, crop: int) -> int:
    """Peak bytes of live tensors over forward_train and backward of every returned image, on the meta device."""
    with torch.device("meta"):
        model = create_model(model_name, **architecture).train()
        batch = torch.empty(batch_size, 3, crop, crop)
    with PeakMemory() as tracker:
        outputs = model.forward_train(batch)
        images = [value for value in outputs.values() if isinstance(value, torch.Tensor) and value.requires_grad]
        images += [item for value in outputs.values() if isinstance(value, list) for item in value
                   if isinstance(item, torch.Tensor) and item.requires_grad]
        sum(image.float().mean() for image in images).backward()
    return tracker.peak


def frame_cache_bytes(dataset) -> int:
    """Bytes of the decoded frames the dataset's frame folders keep (each frame read once, kept as uint8)."""
    from PIL import Image

    from train.data import FrameFolder

    total = 0
    for source in getattr(dataset, "sources", [dataset]):
        if isinstance(source, FrameFolder):
            used = {source.sequences[s][1][n] for s, centre, reach in source.items
                    for n in range(centre - reach, centre + reach + 1)}
            if used:
                with Image.open(next(iter(used))) as image:
                    width, height = image.size
                total += len(used) * width * height * 3
    return total


def estimate(model_name: str, config: dict, dataset=None) -> dict[str, int]:
    """The run's estimated peak resident memory and its parts, in bytes."""
    architecture = config.get("architecture", {})
    data = config["data"]
    with torch.device("meta"):
        parameters = sum(p.numel() * p.element_size() for p in create_model(model_name, **architecture).parameters())
    processes = max(1, data["workers"]) if dataset is not None else 1
    parts = {
        "activations": int(ACTIVATION_MARGIN * activation_bytes(model_name, architecture, data["batch_size"], data["crop"])),
        "weights, gradients, optimiser": 4 * parameters + (parameters if config["train"].get("ema") else 0),
        "decoded frames": frame_cache_bytes(dataset) * processes if dataset is not None else 0,
        "process": int(PROCESS_BYTES),
    }
    parts["total"] = sum(parts.values())
    return parts


def available_bytes() -> int:
    """Memory the run can have now: MemAvailable of /proc/meminfo (Linux), else the physical memory."""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_fits(model_name: str, config: dict, dataset=None, available: int | None = None) -> dict[str, int]:
    """The estimate when it fits ``available`` (default: now available); ``DoesNotFit`` otherwise, naming the
    estimate, the memory available, and the largest batch (at this crop) and crop (at this batch) that fit,
    and the CPU schedule of ``train/configs/cpu/`` when there is one."""
    from train.config import CONFIG_DIR, load_config

    available = available_bytes() if available is None else available
    parts = estimate(model_name, config, dataset)
    if parts["total"] <= available:
        return parts
    data = config["data"]
    fixed = parts["total"] - parts["activations"]
    per_sample = parts["activations"] / data["batch_size"]
    room = available - fixed
    batch = int(room // per_sample) if room > 0 else 0
    crop = int((room / parts["activations"]) ** 0.5 * data["crop"]) // 16 * 16 if room > 0 else 0
    options = []
    if batch >= 1:
        options.append(f"batch {batch} at crop {data['crop']}")
    if crop >= 32:
        options.append(f"crop {crop} at batch {data['batch_size']}")
    cpu_schedule = CONFIG_DIR / "cpu" / f"{model_name}.toml"
    if cpu_schedule.is_file():
        cpu_total = estimate(model_name, load_config(model_name, cpu_schedule), dataset)["total"]
        options.append(f"--config {cpu_schedule.relative_to(CONFIG_DIR.parent.parent)} "
                       f"(estimated {cpu_total / GIB:.1f} GiB)")
    breakdown = ", ".join(f"{key} {value / GIB:.1f}" for key, value in parts.items() if key != "total")
    raise DoesNotFit(
        f"{model_name}: this run would need about {parts['total'] / GIB:.1f} GiB ({breakdown} GiB; batch "
        f"{data['batch_size']} of {data['crop']} px), but {available / GIB:.1f} GiB is available. "
        + (f"Settings that fit: {'; '.join(options)}." if options else "No batch or crop of this network fits.")
    )
