"""A checkpoint a person brings (core.own): one made by a 2-step training run compares beside the shipped models
from Python and the command line; every kind of bad file is refused with its reason, and nothing is unpickled."""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from core import compare as engine
from core import own
from core.__main__ import main
from core.registry import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def exported(own_checkpoint):
    return own_checkpoint


def photo(seed=0, height=40, width=52):
    rng = np.random.default_rng(seed)
    return engine.prepare_photo("p.png", rng.random((height, width, 3)).astype(np.float32))


def test_a_trained_checkpoint_registers_and_compares_beside_a_shipped_model(exported):
    facts = own.register(exported)
    try:
        assert facts.model == "lmfn" and facts.architecture == {"residual": True} and own.is_own(facts.key)
        again = own.register(exported)  # the same file twice (two visitors): two entries, forgotten one by one
        assert again.key != facts.key and again.sha256 == facts.sha256
        own.forget([again.key])
        assert own.checkpoint(facts.key) == facts
        expected = create_model("lmfn", residual=True)
        expected.load_state_dict({k: v.float() for k, v in load_file(str(exported)).items()})
        results = [event.result for event in engine.compare([photo()], ["lmfn", facts.key], with_baseline=False)]
        result = results[-1]
        assert set(result.outputs) == {engine.INPUT, "lmfn", facts.key}
        with torch.inference_mode():
            direct = expected.eval()(torch.from_numpy(photo().image).permute(2, 0, 1)[None])
        mine = result.outputs[facts.key].image.astype(np.float32) / 255
        assert np.abs(mine - direct[0].permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6  # its own weights ran
        assert not np.array_equal(result.outputs[facts.key].image, result.outputs["lmfn"].image)
        row = result.rows[facts.key]
        assert row["method"] == "my-lmfn.safetensors (lmfn, yours)" and row["weights"].startswith("yours: my-lmfn")
        assert row["parameters"] == sum(p.numel() for p in expected.parameters())
    finally:
        own.forget([facts.key])
    with pytest.raises(KeyError):
        own.checkpoint(facts.key)


def test_a_registered_checkpoint_adapts_at_test_time(exported):
    facts = own.register(exported)
    try:
        events = list(engine.adaptation(photo(), facts.key, steps=1, lr=3e-6, scored=False))
        assert [event.step for event in events[:-1]] == [0, 1] and events[-1].steps_done == 1
    finally:
        own.forget([facts.key])


def saved(path, state, metadata):
    save_file(state, str(path), metadata={"format": "pt", **metadata})
    return path


@pytest.mark.parametrize("case, reason", [
    ("pickle", "not a safetensors file"),
    ("suffix", "not a .safetensors file"),
    ("empty", "not a safetensors file"),
    ("no model", "does not say which model"),
    ("unknown model", "no registered model"),
    ("bad architecture", "cannot be built"),
    ("wrong tensors", "do not fit"),
    ("too large", "MB; checkpoints up to"),
])
def test_each_bad_checkpoint_is_refused_with_its_reason(exported, tmp_path, case, reason):
    weights = {key: value for key, value in create_model("reblur-n1").state_dict().items()}
    if case == "pickle":  # a pickle named .safetensors is read as bytes, never unpickled
        path = tmp_path / "evil.safetensors"
        path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    elif case == "suffix":
        path = tmp_path / "model.pth"
        path.write_bytes(exported.read_bytes())
    elif case == "empty":
        path = tmp_path / "empty.safetensors"
        path.write_bytes(b"")
    elif case == "no model":
        path = saved(tmp_path / "a.safetensors", weights, {"architecture": "{}"})
    elif case == "unknown model":
        path = saved(tmp_path / "a.safetensors", weights, {"architecture": "{}", "model": "restormer"})
    elif case == "bad architecture":
        path = saved(tmp_path / "a.safetensors", weights, {"architecture": json.dumps({"wings": 2}), "model": "lmfn"})
    elif case == "wrong tensors":  # Reblur's tensors labelled as LMFN
        path = saved(tmp_path / "a.safetensors", weights, {"architecture": "{}", "model": "lmfn"})
    else:
        path = exported
    with pytest.raises(own.CheckpointError, match=reason):
        own.read_checkpoint(path, max_bytes=1000 if case == "too large" else own.MAX_BYTES)


def test_the_command_line_runs_a_checkpoint_beside_a_model_and_refuses_a_bad_one(exported, tmp_path, capsys):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    assert main(["deblur", "--model", "lmfn", "--checkpoint", str(exported), "--input", str(tmp_path / "p.png"),
                 "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "lmfn" / "p.png").is_file()
    assert (tmp_path / "out" / "my-lmfn-lmfn" / "p.png").is_file()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SystemExit) as exit_info:
        main(["deblur", "--checkpoint", str(bad), "--input", str(tmp_path / "p.png"), "--output", str(tmp_path / "o")])
    assert exit_info.value.code == 2 and "not a safetensors file" in capsys.readouterr().err
