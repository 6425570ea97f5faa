"""Time estimates before a model runs (core.timing): MACs against the device's measured speed, then the real run."""

import pytest

from core import timing


@pytest.fixture(autouse=True)
def fresh_observations(monkeypatch):
    monkeypatch.setattr(timing, "_OBSERVED", {})


def test_an_estimate_grows_with_the_padded_pixels_and_the_macs():
    small = timing.expected_seconds("reblur-n1", 180, 320)
    assert small > 0
    assert timing.expected_seconds("reblur-n1", 360, 640) == pytest.approx(4 * small, rel=0.05)
    assert timing.macs("maxim-3s-gopro", 180, 320) == timing.macs("maxim-3s-gopro", 192, 320)  # padded to 64
    assert timing.macs("maxim-3s-gopro", 180, 320) > 10 * timing.macs("reblur-n1", 180, 320)


def test_a_real_run_replaces_the_first_guess_for_that_model_on_that_device():
    guess = timing.expected_seconds("reblur-n1", 180, 320)
    timing.observe("reblur-n1", "cpu", 180, 320, 3 * guess)
    assert timing.expected_seconds("reblur-n1", 180, 320) == pytest.approx(3 * guess)
    assert timing.expected_seconds("reblur-n1", 360, 640) == pytest.approx(12 * guess, rel=0.05)
    assert timing.expected_seconds("reblur-n2", 180, 320) == pytest.approx(timing.first_guess("reblur-n2", 180, 320))


def test_quick_means_within_a_few_seconds():
    seconds = timing.expected_seconds("reblur-n1", 180, 320)
    timing.observe("reblur-n1", "cpu", 180, 320, timing.QUICK_SECONDS / 2)
    assert timing.runs_quickly("reblur-n1", 180, 320)
    timing.observe("reblur-n1", "cpu", 180, 320, timing.QUICK_SECONDS * 2)
    assert not timing.runs_quickly("reblur-n1", 180, 320)
    assert seconds > 0
