"""Running a registered model on an image: conversion, device, caching and timing, as pure functions."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np
import torch

from core.registry import checkpoint_path, create_model


@dataclass(frozen=True)
class Restoration:
    image: np.ndarray  # H x W x 3, uint8
    seconds: float
    trained: bool


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 (or float in [0, 1]) -> 1 x 3 x H x W float32 in [0, 1]."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got an array of shape {array.shape}")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """1 x 3 x H x W in [0, 1] -> H x W x 3 uint8, rounded."""
    array = tensor.detach().clamp(0, 1).squeeze(0).permute(1, 2, 0).cpu().numpy()
    return (array * 255.0 + 0.5).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def load_model(name: str) -> tuple[torch.nn.Module, bool]:
    """The process-wide instance of a model: shipped weights when present, else its untrained initialisation."""
    trained = checkpoint_path(name).is_file()
    return create_model(name, pretrained=trained), trained


def restore(image: np.ndarray, name: str) -> Restoration:
    model, trained = load_model(name)
    start = time.perf_counter()
    with torch.inference_mode():
        output = model(to_tensor(image))
    return Restoration(to_uint8(output), time.perf_counter() - start, trained)
