"""A checkpoint a person brings: a ``.safetensors`` file made by this project, run beside the shipped models.

``python -m train`` (and ``python -m train ship``) write the registered model's name and its architecture keywords
into the file's metadata. ``read_checkpoint`` checks such a file without unpickling anything (safetensors holds only
tensors and a JSON header) and builds the network it describes; ``register`` keeps it under a key of its own,
``own:<model>:<first 12 hex digits of its SHA-256>:<a random token>`` (one per registration, so that two visitors
bringing the same file hold two entries and one forgetting it leaves the other's), which every ``core.compare`` function and ``core.inference``
accept where they accept a registered model's name. Each refusal says why: not a safetensors file, too large,
metadata missing or naming no registered model, architecture keywords the model does not take, tensors that do
not fit the architecture.

Registered checkpoints live in this process only (nothing is written into ``checkpoints/``). The app keeps the
keys a visitor registered in that visitor's session state and calls ``forget`` when the session ends; a key is
not listed anywhere another session can see it. A process forked before a checkpoint was registered (ZeroGPU's
GPU worker) does not have it: ``portable`` packs registered checkpoints as their facts and CPU tensors, which
pickle, and ``adopt`` registers in the receiving process those it lacks, under the same keys.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

PREFIX = "own:"
MAX_BYTES = 256 * 2**20  # four times the largest shipped checkpoint in float32 (MAXIM-3S: 89 MB)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with the reason in words a person can act on."""


@dataclass(frozen=True)
class OwnCheckpoint:
    key: str  # "own:<model>:<sha256[:12]>:<token>"
    model: str  # the registered model the file says it is
    file_name: str  # as the person named it
    architecture: dict  # constructor keywords from the metadata ({}: the registered configuration)
    parameters: int
    sha256: str

    @property
    def label(self) -> str:
        return f"{self.file_name} ({self.model}, yours)"


_lock = threading.Lock()
_registered: dict[str, tuple[OwnCheckpoint, torch.nn.Module]] = {}


def is_own(key: str) -> bool:
    return isinstance(key, str) and key.startswith(PREFIX)


def _metadata(path: Path, shown: str) -> dict:
    """The metadata of a safetensors file, read by ``safetensors.safe_open`` (a JSON header; no code runs)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{shown} is not a safetensors file ({error})") from None


def read_checkpoint(path: str | Path, *, file_name: str | None = None, max_bytes: int = MAX_BYTES):
    """(``OwnCheckpoint``, the network on the CPU in eval mode) for a file made by this project; ``CheckpointError``
    saying why for anything else. Nothing in the file is executed: only its JSON header and tensors are read
    (``safetensors``), checked in the order of the module docstring's refusals."""
    from core.registry import create_model, file_sha256, list_models, load_weights

    path = Path(path)
    shown = file_name or path.name
    if not path.is_file():
        raise CheckpointError(f"{shown}: no such file")
    if not shown.lower().endswith(".safetensors"):
        raise CheckpointError(f"{shown} is not a .safetensors file: the app takes only safetensors checkpoints "
                              "(never pickles: a .pt or .pth file can run code when loaded)")
    size = path.stat().st_size
    if size > max_bytes:
        raise CheckpointError(f"{shown} is {size / 2**20:.0f} MB; checkpoints up to {max_bytes / 2**20:.0f} MB are taken")
    metadata = _metadata(path, shown)
    name = metadata.get("model")
    models = list_models(include_reference=True)
    if not name:
        raise CheckpointError(f"{shown} does not say which model it is (no 'model' in its metadata): export it with "
                              "this project's `python -m train`, which writes the name")
    if name not in models:
        raise CheckpointError(f"{shown} says it is {name!r}, which is no registered model (one of {', '.join(models)})")
    try:
        architecture = json.loads(metadata.get("architecture") or "{}")
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{shown}: its architecture metadata is not JSON ({error})") from None
    if not isinstance(architecture, dict):
        raise CheckpointError(f"{shown}: its architecture metadata is not a set of keywords: {architecture!r}")
    try:
        model = create_model(name, **architecture)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{shown}: {name} cannot be built with its architecture {architecture}: {error}") from None
    try:
        load_weights(model, path)
    except (ValueError, RuntimeError) as error:  # RuntimeError: a tensor of the wrong shape
        reason = str(error).replace(str(path), shown).splitlines()[0]
        raise CheckpointError(f"{shown}: its tensors do not fit {name} with architecture {architecture}: {reason}") from None
    digest = file_sha256(path)
    facts = OwnCheckpoint(key=f"{PREFIX}{name}:{digest[:12]}:{secrets.token_hex(4)}", model=name, file_name=shown, architecture=architecture,
                          parameters=sum(p.numel() for p in model.parameters()), sha256=digest)
    return facts, model.eval()


def register(path: str | Path, *, file_name: str | None = None) -> OwnCheckpoint:
    """Read a checkpoint and keep its network in this process under a new key (``forget`` drops it)."""
    from core.inference import channels_last_weights

    facts, model = read_checkpoint(path, file_name=file_name)
    with _lock:
        _registered[facts.key] = (facts, channels_last_weights(model))
    return facts


def checkpoint(key: str) -> OwnCheckpoint:
    with _lock:
        if key not in _registered:
            raise KeyError(f"no checkpoint {key!r} is registered in this process (it may have been forgotten)")
        return _registered[key][0]


def network(key: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The registered network, moved to ``device`` (once; it stays there)."""
    with _lock:
        if key not in _registered:
            raise KeyError(f"no checkpoint {key!r} is registered in this process (it may have been forgotten)")
        facts, model = _registered[key]
        if next(model.parameters()).device != torch.device(device):
            model = model.to(device)
            _registered[key] = (facts, model)
        return model


def forget(keys) -> None:
    """Drop checkpoints (a session that ended); keys not registered are ignored."""
    with _lock:
        for key in keys or ():
            _registered.pop(key, None)


def portable(keys) -> list[tuple[OwnCheckpoint, dict[str, torch.Tensor]]]:
    """The registered checkpoints among ``keys`` as (facts, state dict on the CPU), for another process."""
    with _lock:
        entries = [_registered[key] for key in keys or () if is_own(key) and key in _registered]
    return [(facts, {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()})
            for facts, model in entries]


def adopt(packed) -> None:
    """Register what ``portable`` packed in another process, under the same keys; keys held already are kept."""
    from core.inference import channels_last_weights
    from core.registry import create_model

    for facts, state in packed or ():
        with _lock:
            if facts.key in _registered:
                continue
        model = create_model(facts.model, **facts.architecture)
        model.load_state_dict(state)
        with _lock:
            _registered.setdefault(facts.key, (facts, channels_last_weights(model.eval())))


def base_model(key: str) -> str:
    """The registered model behind a key: an own checkpoint's model, else the key itself."""
    return checkpoint(key).model if is_own(key) else key

