"""Training configuration: one readable TOML file per model in ``train/configs/``, merged over defaults."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (ZeroGPU Spaces run 3.10.13): the same parser, as the tomli package
    import tomli as tomllib

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

DEFAULTS = {
    "architecture": {},  # constructor keywords over the registered variant's (a reduced configuration)
    "data": {"crop": 256, "batch_size": 16, "weights": [], "workers": 2, "length": 100_000,
             "scale": None,  # [low, high]: real-blur crops downscaled by a log-uniform factor (train.data)
             "frames": [7, 13],  # [fewest, most] frames a frame folder's window averages (GoPro: 7 to 13)
             "photo_blur": "kernel",  # sharp photos blurred by a shake kernel, or "camera": a moving camera's frames
             "camera_extent": [0.5, 32.0],  # [shortest, longest] camera path in crop pixels ("camera" only)
             "noise": None},  # [low, high]: std of Gaussian noise on real-blur crops' blurry images (train.data)
    "optim": {"name": "adam", "lr": 1e-4, "betas": [0.9, 0.999], "weight_decay": 0.0},
    "schedule": {"kind": "constant", "steps": 100_000},
    "loss": {},
    "train": {
        "seed": 0,
        "log_every": 10,
        "val_every": 1000,
        "save_every": 1000,
        "keep_every": 0,  # also keep the exported (EMA) weights of every N-th step as step-NNNNNN.safetensors; 0: none
        "val_max_side": 256,  # centre crop of each validation pair, for speed on CPU; None for full frames
        "amp": True,  # bfloat16 autocast on CUDA
        "cpu_bf16": False,  # bfloat16 autocast on the CPU
        "ema": 0.0,  # decay of an exponential moving average of the weights, validated and exported; 0: none
        "val_preview": None,  # also validate on whole frames resized as the app resizes them (longest side)
        "best": "psnr",  # what picks best.safetensors: "psnr" (crops) or "psnr+preview" (crops + val_preview frames)
        "threads": None,  # torch threads (None: torch's default)
        "memory_check": True,  # refuse a CPU run whose estimated peak exceeds the available memory (train.memory)
        "channels_last": True,
        "fp16_export": False,
        "init": None,  # a .safetensors file to start from (tensors matching by name and shape)
    },
}


def merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(model: str, path: str | Path | None = None) -> dict:
    """Defaults, then ``train/configs/<model>.toml``, then ``path`` (if given) on top."""
    default_file = CONFIG_DIR / f"{model}.toml"
    if not default_file.is_file():
        raise FileNotFoundError(f"no training config for {model!r}: expected {default_file}")
    config = merge(DEFAULTS, tomllib.loads(default_file.read_text()))
    if path is not None:
        config = merge(config, tomllib.loads(Path(path).read_text()))
    if config.get("model") != model:
        raise ValueError(f"config names model {config.get('model')!r}, but --model is {model!r}")
    return config
