"""The shipped checkpoints: each loads through the registry, matches its card, and restores a real GoPro crop
better than the blurry input (a weak, honest floor that catches a broken or mismatched checkpoint)."""

import json

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from core import metrics
from core.images import read_image
from core.registry import CHECKPOINT_DIR, checkpoint_path, create_model, list_models, shipped_card
from train.ship import sha256

SHIPPED = [name for name in list_models() if checkpoint_path(name).is_file()]
PAIR = SHARED_DATA / "gopro_dev" / "GOPR0384_11_02"
CARD_FIELDS = ("headline", "data", "validation", "steps", "samples", "wall_seconds", "hardware", "losses_used",
               "teacher", "precision", "sha256", "scores", "config")


def test_every_shipped_checkpoint_has_a_card_and_a_manifest_line():
    from core.registry import read_manifest

    listed = read_manifest(CHECKPOINT_DIR) or {}
    for name in SHIPPED:
        assert shipped_card(name) is not None, f"{name} ships weights without a card"
        assert checkpoint_path(name).name in listed, f"{name} is not in the SHA-256 manifest"


def test_checkpoints_fit_the_size_budget():
    total = sum(path.stat().st_size for path in CHECKPOINT_DIR.glob("*.safetensors"))
    assert total < 150 * 2**20, f"checkpoints take {total / 2**20:.1f} MiB"


@pytest.mark.parametrize("name", SHIPPED)
def test_card_describes_the_file(name):
    card = shipped_card(name)
    missing = [field for field in CARD_FIELDS if field not in card]
    assert not missing, f"{name}.json lacks {missing}"
    assert card["model"] == name and card["trained"] is True
    assert card["sha256"] == sha256(checkpoint_path(name)), f"{checkpoint_path(name)} differs from its card"
    model = create_model(name, pretrained=True)
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    assert card["validation"] and "gopro_dev" in card["validation"]  # validated on held-out pairs
    json.dumps(card, allow_nan=False)


@pytest.mark.skipif(not PAIR.is_dir(), reason=f"needs {PAIR}")
@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_restores_better_than_the_input(name, one_thread):
    blurry_path = sorted((PAIR / "blur").glob("*.png"))[0]
    blurry = read_image(blurry_path)[200:456, 400:656]
    sharp = read_image(PAIR / "sharp" / blurry_path.name)[200:456, 400:656]
    model = create_model(name, pretrained=True)
    with torch.no_grad():
        output = model(torch.from_numpy(np.ascontiguousarray(blurry)).permute(2, 0, 1)[None])[0]
    output = output.permute(1, 2, 0).numpy()
    gain = metrics.psnr(output, sharp) - metrics.psnr(blurry, sharp)
    assert gain > 0.0, f"{name}: {gain:+.2f} dB against the blurry input"


def shipped_copy(tmp_path, monkeypatch, name="lmfn"):
    """A folder holding a freshly exported ``name`` checkpoint and its manifest, made the checkpoint folder."""
    import core.registry as registry
    from train.trainer import export_weights

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    export_weights(create_model(name), folder / f"{name}.safetensors", fp16=True)
    registry.write_manifest_entry(folder / f"{name}.safetensors")
    monkeypatch.setattr(registry, "CHECKPOINT_DIR", folder)
    return folder


def test_manifest_accepts_the_file_it_lists(tmp_path, monkeypatch):
    shipped_copy(tmp_path, monkeypatch)
    create_model("lmfn", pretrained=True)


def test_tampered_checkpoint_is_refused_naming_the_file(tmp_path, monkeypatch):
    folder = shipped_copy(tmp_path, monkeypatch)
    path = folder / "lmfn.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"lmfn\.safetensors does not match its SHA-256"):
        create_model("lmfn", pretrained=True)


def test_swapped_or_unlisted_checkpoint_is_refused(tmp_path, monkeypatch):
    folder = shipped_copy(tmp_path, monkeypatch)
    from train.trainer import export_weights

    export_weights(create_model("lmfn"), folder / "lmfn.safetensors", fp16=False)  # another valid file, swapped in
    with pytest.raises(ValueError, match="SHA-256"):
        create_model("lmfn", pretrained=True)
    export_weights(create_model("gradientnet"), folder / "gradientnet.safetensors", fp16=True)
    with pytest.raises(ValueError, match="not listed"):
        create_model("gradientnet", pretrained=True)


def test_a_checkbox_says_reduced_width_only_where_sizes_were_reduced():
    from core.registry import shipped_weights

    assert shipped_weights("fcn").short.endswith("reduced width")  # channels 24 for the paper's 96
    assert shipped_weights("lmfn").short.endswith("architecture changed")  # the input skip, the paper's widths
    assert "reduced" not in shipped_weights("sp-unet").short  # the registered architecture
