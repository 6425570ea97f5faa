"""Model cards and the registry: ``register``, ``create_model``, ``list_models``, ``get_card``.

Each paper's file in ``core/models/`` registers one factory per variant with a ``ModelCard``.
Adding a sixth paper is one new file in ``core/models/`` plus one import line in
``core/models/__init__.py``; nothing here names a model.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

CHECKPOINT_DIR = Path(os.environ.get("DEBLUR_CHECKPOINTS", Path(__file__).resolve().parent.parent / "checkpoints"))


@dataclass(frozen=True)
class ModelCard:
    """What a person needs to know about a registered variant before running it."""

    name: str
    paper: str
    authors: str
    year: int
    venue: str
    summary: str
    params: int  # measured parameter count of the deployed network (tests hold the code to it)
    maps: tuple[str, ...]  # names returned by model(x, return_maps=True), in order
    input_range: tuple[float, float] = (0.0, 1.0)
    paper_params: int | None = None  # the count the paper (or its public release) reports, if any
    checkpoint: str | None = None  # file name inside checkpoints/; defaults to "<name>.safetensors"
    provenance: str = "untrained: no checkpoint has been shipped for this variant yet"
    config: dict = field(default_factory=dict)  # the constructor keywords this variant uses
    # what each map shows, in the paper's terms and with the figure it mirrors: {map name or a numbered family's
    # stem ("prior" for "prior 1-3"): caption} (``core.captions``)
    map_notes: Mapping[str, str] = field(default_factory=dict)
    # a reference model beside the papers (MAXIM with its authors' weights): in the app, the CLI's "all" and the
    # results table (list_models(include_reference=True)), left out of list_models() (the papers' tests)
    reference: bool = False
    title: str = ""  # the variant's own name as its paper writes it ("MAXIM-3S"); the app's labels use it


_FACTORIES: dict[str, Callable] = {}
_CARDS: dict[str, ModelCard] = {}


def register(card: ModelCard):
    """Decorator registering ``factory(**config) -> DeblurModel`` under ``card.name``."""

    def wrap(factory):
        if card.name in _CARDS:
            raise ValueError(f"model {card.name!r} is registered twice")
        _FACTORIES[card.name] = factory
        _CARDS[card.name] = card
        return factory

    return wrap


def unregister(name: str) -> None:
    """Remove a registered variant (a test's throwaway model); the shipped papers are never removed."""
    _CARDS.pop(name)
    _FACTORIES.pop(name)


def _load_all() -> None:
    importlib.import_module("core.models")


def list_models(*, include_reference: bool = False) -> list[str]:
    """The registered variants of the five papers; with ``include_reference``, the reference models too, after them."""
    _load_all()
    papers = [name for name, card in _CARDS.items() if not card.reference]
    return papers + [name for name, card in _CARDS.items() if card.reference] if include_reference else papers


def get_card(name: str) -> ModelCard:
    _load_all()
    if name not in _CARDS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(_CARDS)}")
    return _CARDS[name]


def checkpoint_path(name: str) -> Path:
    card = get_card(name)
    return CHECKPOINT_DIR / (card.checkpoint or f"{name}.safetensors")


def create_model(name: str, pretrained: bool = False, **overrides):
    """Build a registered variant (in eval mode). ``pretrained=True`` loads its shipped weights.

    Weights are read with safetensors (no pickle). A missing or damaged file raises an error
    that names the file.
    """
    card = get_card(name)
    if pretrained:
        verify_checkpoint(checkpoint_path(name))
        # A checkpoint trained in a reduced configuration carries its constructor keywords in its metadata.
        overrides = {**checkpoint_architecture(checkpoint_path(name)), **overrides}
    config = {key: tuple(value) if isinstance(value, list) else value for key, value in {**card.config, **overrides}.items()}
    model = _FACTORIES[name](**config)
    if pretrained:
        load_weights(model, checkpoint_path(name))
    return model.eval()


MANIFEST = "SHA256SUMS"  # ``sha256sum`` format, beside the checkpoints: "<hex digest>  <file name>" per line


def file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, str] | None:
    """{file name: SHA-256} from ``folder/SHA256SUMS``, or None when the folder has no manifest."""
    manifest = Path(folder) / MANIFEST
    if not manifest.is_file():
        return None
    entries = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            entries[name.strip().lstrip("*")] = digest.lower()
    return entries


def write_manifest_entry(path: Path) -> None:
    """Add or replace ``path``'s line in the manifest of its folder."""
    path = Path(path)
    entries = read_manifest(path.parent) or {}
    entries[path.name] = file_sha256(path)
    lines = "".join(f"{digest}  {name}\n" for name, digest in sorted(entries.items()))
    (path.parent / MANIFEST).write_text(lines)


def verify_checkpoint(path: Path) -> None:
    """Refuse a checkpoint that its folder's SHA-256 manifest does not vouch for (tampered, swapped or foreign).

    A folder without a manifest (a person's own runs, ``DEBLUR_CHECKPOINTS``) is trusted as it is: the file is
    still read without pickle.
    """
    path = Path(path)
    entries = read_manifest(path.parent)
    if entries is None:
        return
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    if path.name not in entries:
        raise ValueError(f"checkpoint file {path} is not listed in {path.parent / MANIFEST}: refused")
    if file_sha256(path) != entries[path.name]:
        raise ValueError(
            f"checkpoint file {path} does not match its SHA-256 in {path.parent / MANIFEST} "
            "(modified or swapped): refused"
        )


def checkpoint_architecture(path: Path) -> dict:
    """The constructor keywords stored in a checkpoint's metadata (``{}`` for the registered configuration)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        architecture = json.loads(metadata.get("architecture") or "{}")
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"checkpoint file {path} is damaged or not a safetensors file: {error}") from error
    if not isinstance(architecture, dict):
        raise ValueError(f"checkpoint file {path} has malformed architecture metadata: {architecture!r}")
    return architecture


def shipped_architecture(name: str) -> dict:
    """The constructor keywords of the network ``create_model(name, pretrained=True)`` builds: the shipped
    checkpoint's reduced configuration, or ``{}`` (the registered one) when none is shipped or it is registered."""
    path = checkpoint_path(name)
    return checkpoint_architecture(path) if path.is_file() else {}


def shipped_card(name: str) -> dict | None:
    """The JSON model card shipped beside a checkpoint (``checkpoints/<name>.json``), or None when there is none."""
    path = checkpoint_path(name).with_suffix(".json")
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_weights(model, path: Path) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"checkpoint file {path} is damaged or not a safetensors file: {error}") from error
    own = model.state_dict()
    state = {key: value.to(own[key].dtype) if key in own else value for key, value in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint file {path} does not match the model: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})"
        )


@dataclass(frozen=True)
class Weights:
    """Which weights a variant runs on, from its shipped card: the one owner of "trained?" and parameter counts."""

    trained: bool
    parameters: int  # of the network that runs: a reduced checkpoint's own count, else the registered network's
    headline: str  # the shipped card's headline, or "untrained (random weights)"
    short: str  # a few words for a checkbox: "CPU-trained, 4,000 steps", "untrained"


def shipped_weights(name: str) -> Weights:
    """What ``create_model(name, pretrained=True)`` would load, read from the checkpoint's card (no model is built).

    Trained when the checkpoint file exists. The parameter count is the shipped card's ``parameters`` (a reduced
    architecture has fewer than the registered network), else the registry's ``ModelCard.params``.
    """
    card = get_card(name)
    if not checkpoint_path(name).is_file():
        return Weights(False, card.params, "untrained (random weights)", "untrained")
    try:
        shipped = shipped_card(name) or {}
    except ValueError:  # a card that is not valid JSON says nothing more than that weights exist
        shipped = {}
    headline = shipped.get("headline") or "trained weights (no model card shipped)"
    return Weights(True, int(shipped.get("parameters") or card.params), headline, _short_headline(shipped))


def _short_headline(shipped: dict) -> str:
    """ "CPU-trained, 4,000 steps" from a shipped card's fields, with ", reduced width" where the architecture's
    sizes were reduced (numbers among its overrides) and ", architecture changed" where only switches were (LMFN's
    input skip)."""
    if shipped.get("reference"):
        return "its authors' weights"
    hardware = str(shipped.get("hardware") or "")
    where = "GPU" if any(word in hardware for word in ("GPU", "cuda", "CUDA")) else "CPU" if "CPU" in hardware else ""
    words = [f"{where}-trained" if where else "trained"]
    if shipped.get("steps"):
        words.append(f"{int(shipped['steps']):,} steps")
    overrides = shipped.get("architecture_overrides") or {}
    if overrides:
        sized = any(not isinstance(value, bool) and isinstance(value, (int, float, list, tuple))
                    for value in overrides.values())
        words.append("reduced width" if sized else "architecture changed")
    return ", ".join(words)
