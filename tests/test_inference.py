import contextlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from core.inference import load_model, restore, set_cpu_threads, to_float_rgb, to_tensor, to_uint8
from core.tile_policy import TILE_SHARE, auto_tile, bytes_per_pixel, overview
from core.tiling import tile_apply, tile_starts
from core.metrics import psnr
from core.registry import checkpoint_path, list_models, shipped_architecture
from core.statistics import Statistics, record, replay, statistic_modules

ROOT = Path(__file__).resolve().parent.parent

# Networks whose output depends on where their own input is cut into patches agree with the whole run only as far
# as their weights make the patch borders matter little: FCN's shipped weights do on blurry photos (below; python
# benchmarks/tiling_agreement.py), random weights do not (about 32 dB), so the untrained FCN is not held to it.
MULTI_PATCH = {
    "fcn": "untrained FCN: its first stages run on 8, 4 and 2 patches of the input, each zero-padded at its own "
    "borders, and a tile's patch borders are not the image's; with random weights that costs ~32 dB of agreement",
}


# A trained multi-patch network still computes a tile's patch borders where the whole image has none, and how much
# that shows depends on what its weights do to the photo: far less on a blurry photo than on the noisy synthetic
# texture of `photo`, which FCN's weights change heavily (README, Benchmarks, for the figures). A multi-patch network
# is therefore held to the same 45 dB on the crop of a real blurry photo that it was trained for; the others on the
# texture.
def blurry_crop(height, width):
    return to_float_rgb(Image.open(ROOT / "assets" / "gopro-crowd-blur.png"))[200 : 200 + height, 400 : 400 + width]


def held_to_agreement(name: str) -> bool:
    return name not in MULTI_PATCH or checkpoint_path(name).is_file()


@pytest.fixture(autouse=True, scope="module")
def _threads_set_by_restore():
    """restore() sets the thread count once per process: let it happen before a test narrows it to one."""
    set_cpu_threads()


def photo(height, width, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 0.5 + 0.3 * np.sin(xx / 7.0 + rng.uniform(0, 6)) * np.cos(yy / 11.0)
    return np.clip(base[:, :, None] + rng.normal(0, 0.05, (height, width, 3)), 0, 1).astype(np.float32)


def test_conversions_cover_grey_alpha_16_bit_and_pil():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert to_float_rgb(grey).shape == (3, 4, 3)
    assert np.allclose(to_float_rgb(grey)[..., 1], grey / 255.0)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    assert np.array_equal(to_float_rgb(rgba)[..., 0], np.ones((2, 2)))  # alpha dropped, colour kept as stored
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert to_float_rgb(deep).max() == 1.0
    assert to_float_rgb(Image.new("L", (5, 4), 128)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_float_rgb(np.full((2, 2, 3), 2.0))
    x = to_tensor(np.full((4, 6, 3), 51, np.uint8))
    assert x.shape == (1, 3, 4, 6) and np.array_equal(to_uint8(x), np.full((4, 6, 3), 51, np.uint8))


def test_tiling_an_identity_returns_the_image():
    x = torch.rand(1, 3, 100, 130)
    torch.testing.assert_close(tile_apply(lambda t: t, x, tile=48, overlap=12), x)


def test_tiling_a_local_network_matches_the_whole_run_exactly_with_enough_overlap():
    torch.manual_seed(0)
    network = nn.Sequential(*(nn.Conv2d(3, 3, 3, padding=1) for _ in range(4))).eval()  # receptive radius 4
    x = torch.rand(1, 3, 90, 120)
    with torch.no_grad():
        whole = network(x)
        tiled = tile_apply(network, x, tile=40, overlap=15)  # 5 discarded pixels >= radius 4
    # blending only mixes tiles where each is exact: anything beyond float error is a seam
    assert (tiled - whole)[..., 8:-8, 8:-8].abs().max() < 1e-5


class PooledNormalised(nn.Module):
    """conv, instance norm, ReLU, squeeze-and-excitation, conv, group norm: local except for its statistics."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.InstanceNorm2d(8, affine=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.excite = nn.Sequential(nn.Conv2d(8, 8, 1), nn.Sigmoid())
        self.tail = nn.Conv2d(8, 3, 3, padding=1)
        self.group_norm = nn.GroupNorm(1, 3)

    def forward(self, x):
        features = torch.relu(self.norm(self.head(x)))
        return self.group_norm(self.tail(features * self.excite(self.pool(features))))


def pooled_normalised() -> PooledNormalised:
    torch.manual_seed(0)
    network = PooledNormalised().eval()
    with torch.no_grad():  # affine weights away from their identity defaults, so a wrong one shows
        for norm in (network.norm, network.group_norm):
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    return network


def test_shared_statistics_make_a_pooled_and_normalised_network_tile_exactly(one_thread):
    network = pooled_normalised()
    assert statistic_modules(network) == [network.norm, network.pool, network.group_norm]
    x = torch.rand(2, 3, 90, 120) * torch.tensor([1.0, 0.3]).view(2, 1, 1, 1)  # two images, different statistics
    x[:, :, :, 60:] += 0.5  # the halves differ, so each tile's own statistics are wrong
    with torch.no_grad():
        whole = network(x)
        own = tile_apply(network, x, tile=40, overlap=15)
        statistics = record(network, x)
        with replay(network, statistics):
            shared = tile_apply(network, x, tile=40, overlap=15)
    assert (own - whole)[..., 8:-8, 8:-8].abs().max() > 1e-2
    assert (shared - whole)[..., 8:-8, 8:-8].abs().max() < 1e-5
    assert not network._forward_hooks and not any(module._forward_hooks for module in network.modules())


def test_a_batch_of_tiles_uses_each_images_statistics():
    network = pooled_normalised()
    x = torch.rand(2, 3, 64, 64)
    x[1] = x[1] * 0.2 + 0.7
    with torch.no_grad():
        statistics = record(network, x)
        with replay(network, statistics):
            left, right = network(x[..., :40]), network(x[..., 24:])
            batched = network(torch.cat([x[..., :40], x[..., 24:]]))  # tile-major: tile 0 of both, then tile 1
            with pytest.raises(ValueError, match="whole number of tiles"):
                network(x[:1, :, :, :40])
    torch.testing.assert_close(batched, torch.cat([left, right]))


def test_replay_refuses_statistics_from_a_different_sequence_of_calls():
    network = pooled_normalised()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        statistics = record(network, x)
        with replay(network, Statistics(1, statistics.values[:-1])), pytest.raises(RuntimeError, match="more often"):
            network(x)
        with replay(network, Statistics(1, statistics.values + statistics.values)), pytest.raises(RuntimeError):
            network(x)


def test_replay_hooks_leave_other_threads_alone():
    network = pooled_normalised()
    x, other = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    outputs = {}
    with torch.no_grad():
        expected = network(other)
        with replay(network, record(network, x)):
            thread = threading.Thread(target=lambda: outputs.update(other=network(other)))
            thread.start()
            thread.join()
    torch.testing.assert_close(outputs["other"], expected, rtol=0, atol=0)


def test_the_record_pass_runs_on_the_largest_downscaled_copy_that_fits():
    x = torch.rand(1, 3, 300, 400)
    per_pixel = bytes_per_pixel("gradientnet")
    assert overview(x, "gradientnet", budget_bytes=int(per_pixel * 300 * 400)) is x
    small = overview(x, "gradientnet", budget_bytes=int(per_pixel * 150 * 200))
    height, width = small.shape[-2:]
    assert height * width * per_pixel <= per_pixel * 150 * 200 and (height, width) in ((149, 199), (150, 200))
    assert 0 <= small.min() and small.max() <= 1


def test_only_tiled_runs_set_hooks_and_none_are_left_behind(one_thread):
    image = photo(48, 64)
    model, _ = load_model("gradientnet")
    pool = next(module for module in statistic_modules(model) if isinstance(module, nn.AdaptiveAvgPool2d))
    hooks_seen = []
    probe = pool.register_forward_pre_hook(lambda module, inputs: hooks_seen.append(len(module._forward_hooks)))
    try:
        whole = restore(image, "gradientnet", tile=0)
        with torch.inference_mode():
            expected = to_uint8(model(to_tensor(image)))
        assert set(hooks_seen) == {0} and np.array_equal(whole.image, expected)  # the untiled path, untouched
        hooks_seen.clear()
        restore(image, "gradientnet", tile=32)
        assert set(hooks_seen) == {1}  # record pass and tiles
    finally:
        probe.remove()
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in model.modules())


@pytest.mark.parametrize(
    "name",
    [
        name if held_to_agreement(name) else pytest.param(name, marks=pytest.mark.skip(reason=MULTI_PATCH[name]))
        for name in list_models()
    ],
)
def test_tiled_and_untiled_outputs_agree_above_45_db_multi_patch_networks_on_a_real_blurry_crop(name, one_thread):
    # 128 px tiles with the app's 32 px overlap (tiles of 96 px cap it at 24): LMFN's weights trained on camera
    # paths up to 64 px (2026-12-07) reach further than that, 43 dB at 96 px against 50-51 dB at 128
    image = blurry_crop(224, 256) if name in MULTI_PATCH else photo(224, 256)
    with not_the_identity(name):
        whole = restore(image, name, tile=0)
        tiled = restore(image, name, tile=128, overlap=32)  # sharing the whole image's statistics, if it has any
    assert tiled.tile == (128, 128) and whole.tile is None
    assert psnr(whole.image / 255.0, image) < 45.0  # tiles returning their input would fail the next line
    assert psnr(tiled.image / 255.0, whole.image / 255.0) > 45.0


@contextlib.contextmanager
def not_the_identity(name):
    """An untrained GradientNet returns its input (its output conv starts at zero): give that conv PyTorch's
    default random weights for the duration, so that the whole network shapes the output."""
    model, trained = load_model(name)
    head = model.output[0] if name == "gradientnet" and not trained else None
    saved = None if head is None else {key: value.clone() for key, value in head.state_dict().items()}
    if head is not None:
        torch.manual_seed(0)
        head.reset_parameters()
    try:
        yield
    finally:
        if head is not None:
            head.load_state_dict(saved)


def test_restore_keeps_size_reports_time_and_returns_maps_when_asked():
    image = (photo(37, 53) * 255).astype(np.uint8)
    result = restore(image, "lmfn", return_maps=True)
    assert result.image.shape == image.shape and result.image.dtype == np.uint8
    assert result.seconds > 0
    assert list(result.maps) == ["ALFM attention", "ACFM attention"]


def test_weights_load_once_per_process():
    assert load_model("lmfn")[0] is load_model("lmfn")[0] is load_model("lmfn", "cpu")[0]
    assert load_model("lmfn", torch.device("cpu"))[0] is load_model("lmfn")[0]


def test_tile_size_follows_the_memory_budget():
    per_pixel = bytes_per_pixel("reblur-n1")
    width = (shipped_architecture("reblur-n1").get("deblur_widths") or [64])[0]  # the network restore runs
    assert per_pixel > 3 * width * 4  # at least a few full-resolution float feature maps per pixel
    assert auto_tile("reblur-n1", 256, 256, budget_bytes=10**10) is None
    tile_h, tile_w = auto_tile("reblur-n1", 4000, 6000, budget_bytes=200_000_000)
    assert tile_h * tile_w * per_pixel <= TILE_SHARE * 200_000_000 and tile_h % 16 == 0 and tile_w % 16 == 0
    assert tile_h * tile_w * per_pixel > 0.8 * TILE_SHARE * 200_000_000  # the largest that fits, near enough


def test_automatic_tiles_do_not_overhang_a_wide_image():
    budget = int(0.7 * bytes_per_pixel("fcn") * 720 * 1280)  # 1280x720 does not fit: two or more tiles
    tile_h, tile_w = auto_tile("fcn", 720, 1280, budget_bytes=budget)
    computed = len(tile_starts(720, tile_h, 32)) * len(tile_starts(1280, tile_w, 32)) * tile_h * tile_w
    assert computed < 1.35 * 720 * 1280, (tile_h, tile_w, computed)


MAPPED_SCRIPT = """
import ctypes, os, sys, torch
from core.allocator import _libc, reusing_freed_memory

class MallInfo(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

info = _libc().mallinfo2
info.restype = MallInfo

def resident():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def allocate():  # bytes mapped from the kernel for one 88 MB tensor (above glibc's largest mmap threshold, 32 MB)
    before = info().hblkhd
    x = torch.rand(1, 24, 720, 1280)
    return info().hblkhd - before

outside = allocate()
with reusing_freed_memory():
    inside = allocate()
    held = resident()
after = allocate()
print(outside, inside, after, held - resident())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
@pytest.mark.parametrize("mode", ["call", "keep", "off"])
def test_reusing_freed_memory_serves_large_tensors_from_the_heap_then_hands_them_back(mode):
    env = {**os.environ, "DEBLUR_REUSE_MEMORY": mode}
    run = subprocess.run([sys.executable, "-c", MAPPED_SCRIPT], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    outside, inside, after, returned = map(int, run.stdout.split())
    size = 24 * 720 * 1280 * 4
    assert outside >= size  # glibc's default: mapped from the kernel, unmapped when freed
    if mode == "off":
        assert inside >= size and after >= size
    elif mode == "call":
        assert inside == 0 and after >= size  # from the heap inside, glibc's default again after
        assert returned >= 0.9 * size  # the freed tensor's pages went back to the system on leaving
    else:
        assert inside == 0 and after == 0 and returned < 0.1 * size  # kept: the heap holds it for the next call


def test_an_unknown_reuse_mode_is_refused(monkeypatch):
    from core.allocator import reuse_mode

    monkeypatch.setenv("DEBLUR_REUSE_MEMORY", "sometimes")
    with pytest.raises(ValueError, match="call, keep or off"):
        reuse_mode()


def test_peak_memory_counts_new_tensors_not_in_place_results():
    from core.tile_policy import PeakMemory

    with torch.device("meta"):
        x = torch.empty(1, 8, 100, 100)
    with torch.inference_mode(), PeakMemory() as tracker:
        y = torch.relu(x)  # new: 320,000 bytes
        y.add_(x).relu_()  # in place: no new memory
        z = y * 2  # new
        del z
        w = y + 1  # new, after z was freed
    assert tracker.peak == 2 * 8 * 100 * 100 * 4
    del y, w


@pytest.mark.parametrize("name", list_models())
def test_the_op_floor_times_every_counted_operation(name):
    """benchmarks/op_floor.py sums the times of the operations it traced: those must carry all the MACs the
    benchmarks' FLOP floor counts, or its floor would be too low."""
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.op_floor import counted_operations, materialise
    from core.complexity import count_macs

    flops = 0
    for func, spec, calls in counted_operations(name, 96, 128):
        args, kwargs = materialise(spec, "meta")
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            func(*args, **kwargs)
        flops += calls * counter.get_total_flops()
    assert flops // 2 == count_macs(name, 96, 128, **shipped_architecture(name))
