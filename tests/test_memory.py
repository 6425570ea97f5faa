"""A training run that would not fit in memory is refused before its first step, with what would fit."""

import subprocess
import sys
from pathlib import Path

import pytest

from train.config import load_config
from train.memory import GIB, DoesNotFit, activation_bytes, check_fits, estimate

ROOT = Path(__file__).resolve().parent.parent


def test_activation_estimate_grows_with_batch_and_pixels():
    one = activation_bytes("lmfn", {}, 1, 64)
    assert activation_bytes("lmfn", {}, 4, 64) == pytest.approx(4 * one, rel=0.05)
    assert activation_bytes("lmfn", {}, 1, 128) == pytest.approx(4 * one, rel=0.1)


def test_check_fits_refuses_with_the_estimate_the_memory_and_settings_that_fit():
    config = load_config("lmfn")  # batch 16 of 256 px
    total = estimate("lmfn", config)["total"]
    assert check_fits("lmfn", config, available=int(total * 1.01))["total"] == total
    with pytest.raises(DoesNotFit) as refusal:
        check_fits("lmfn", config, available=int(2.0 * GIB))
    message = str(refusal.value)
    assert f"about {total / GIB:.1f} GiB" in message and "2.0 GiB is available" in message
    assert "batch 16 of 256 px" in message
    suggested_batch = int(message.split("Settings that fit: batch ")[1].split(" ")[0])
    assert 1 <= suggested_batch < 16
    fitting = {**config, "data": {**config["data"], "batch_size": suggested_batch}}
    check_fits("lmfn", fitting, available=int(2.0 * GIB))  # the suggestion does fit
    assert "train/configs/cpu/lmfn.toml" in message


def test_the_registered_fcn_run_is_refused_from_the_command_line(tmp_path):
    photos = ROOT / "assets"
    result = subprocess.run(
        [sys.executable, "-m", "train", "--model", "fcn", "--data", str(photos), "--out", str(tmp_path / "run"),
         "--max-steps", "2", "--no-val"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "fcn: this run would need about" in result.stderr
    assert "Settings that fit" in result.stderr and "train/configs/cpu/fcn.toml" in result.stderr
    assert not (tmp_path / "run" / "state.pt").exists()
