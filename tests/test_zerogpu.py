"""The app on ZeroGPU hardware, through the real ``spaces`` package.

Off ZeroGPU, ``spaces.GPU`` hands the function back unchanged, so a test of the decorated path switches the
package's own setting on (``spaces.config.Config.zero_gpu``) and replaces only the three calls that need
Hugging Face's device service and a GPU: scheduling a GPU, releasing it, and the worker's CUDA initialisation.
Everything else is the package's: the duration callable evaluated on the request, the worker process forked for
the task and reused by the next one, and the arguments and every streamed value pickled across the processes.
"""

import pickle
from datetime import timedelta
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import app
from core import own, timing, zerogpu
from core.inference import default_device, pin_default_device

spaces = pytest.importorskip("spaces")


@pytest.fixture
def zero_gpu(monkeypatch):
    """ZeroGPU as the ``spaces`` package sees it, with a fake device service; yields the durations it was asked."""
    from spaces.zero import client, wrappers

    asked = []

    def schedule(*, task_id, request, duration, gpu_size):
        asked.append(duration)
        return SimpleNamespace(allowToken="token", nvidiaIndex=0, nvidiaUUID="uuid", idle=True)

    monkeypatch.setattr(spaces.config.Config, "zero_gpu", True)
    monkeypatch.setattr(client, "schedule", schedule)
    monkeypatch.setattr(client, "release", lambda *args, **kwargs: None)
    monkeypatch.setattr(client, "get_duration_seconds", lambda duration, size: 600)
    monkeypatch.setattr(wrappers, "worker_init", lambda **kwargs: None)  # CUDA's initialisation in the worker
    yield asked
    pin_default_device(None)


class OnTheGpu(torch.Tensor):
    """A CPU tensor that says it is on the GPU, as tensors do in ZeroGPU's patched torch (whose function mode
    answers ``Tensor.device`` the same way): what a model running in the GPU task returns there."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func == torch.Tensor.device.__get__:
            return torch.device("cuda", 0)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


class TorchFinder(pickle.Pickler):
    """Pickles into nothing, recording the device of every torch tensor met on the way (and any module)."""

    def __init__(self):
        import io

        super().__init__(io.BytesIO())
        self.found = []

    def reducer_override(self, value):
        if isinstance(value, torch.Tensor):
            self.found.append(str(value.device))
        elif isinstance(value, torch.nn.Module):
            self.found.append(type(value).__name__)
        return NotImplemented


def torch_objects(value) -> list[str]:
    finder = TorchFinder()
    finder.dump(value)
    return finder.found


@pytest.fixture
def maps_on_the_gpu(monkeypatch):
    """Every model's maps come out of ``run_method`` as tensors on the GPU (in the worker, which is forked after)."""
    from core import compare as engine

    run_method = engine.run_method

    def on_the_gpu(*args, **kwargs):
        output = run_method(*args, **kwargs)
        output.maps = {name: value.as_subclass(OnTheGpu) if isinstance(value, torch.Tensor) else value
                       for name, value in output.maps.items()}
        return output

    monkeypatch.setattr(engine, "run_method", on_the_gpu)


def methods(table) -> list[str]:
    return [dict(zip(table["headers"], row))["method"] for row in table["data"]]


def test_off_zerogpu_the_handlers_are_the_functions_themselves():
    assert not app.zero_gpu()
    assert app.on_gpu(app.compare, app.compare_seconds) is app.compare


def test_the_duration_grows_with_models_pixels_and_steps_and_is_capped():
    small, full = (180, 320), (720, 1280)
    assert zerogpu.run_seconds([], [small]) == zerogpu.MIN_SECONDS
    one = zerogpu.run_seconds(["fcn"], [full])
    assert one < zerogpu.run_seconds(["fcn", "sp-unet"], [full]) < zerogpu.run_seconds(["fcn", "sp-unet"], [full, full])
    assert zerogpu.run_seconds(["fcn"], [small]) < one
    expected = (zerogpu.START_SECONDS + timing.macs("fcn", *full) / zerogpu.GPU_MACS_PER_SECOND
                + 2 * zerogpu.METRICS_SECONDS_PER_MEGAPIXEL * 0.9216)
    assert one == min(zerogpu.MAX_SECONDS, int(np.ceil(expected)))
    assert zerogpu.run_seconds(["maxim-3s-gopro"] * 4, [full] * 30) == zerogpu.MAX_SECONDS
    five, twenty = (zerogpu.adaptation_seconds("lmfn", full, steps, "reblur-n2") for steps in (5, 20))
    assert zerogpu.MIN_SECONDS <= five < twenty <= zerogpu.MAX_SECONDS


def test_the_request_sizes_its_duration_from_the_photo_at_the_chosen_size(pair):
    blurry, reference = pair
    assert app.processing_shape(blurry, "full") == (64, 96)
    assert app.processing_shape(blurry, "192") == (64, 96)  # never enlarged
    assert app.processing_shape(reference + ".missing", "320") == app.typical_shape("320")
    assert app.compare_seconds(blurry, reference, models=["lmfn"], size="full") == zerogpu.run_seconds(["lmfn"], [(64, 96)])


def test_compare_runs_as_a_gpu_task_with_its_duration_and_hands_back_only_the_cpu(zero_gpu, maps_on_the_gpu, pair):
    blurry, reference = pair
    handler = app.on_gpu(app.served(app.compare), app.compare_seconds)
    assert handler is not app.compare
    updates = list(handler(blurry, reference, models=["lmfn"], context=[app.INPUT], size="full"))
    assert zero_gpu == [timedelta(seconds=app.compare_seconds(blurry, reference, models=["lmfn"], size="full"))]
    names = app.compare_outputs(app.paper_groups())
    final = dict(zip(names, updates[-1]))
    assert methods(final["table"]) == ["Blurry input", "lmfn"]
    assert final["session"].results[0].outputs["lmfn"].image.shape == (64, 96, 3)
    maps = final["session"].results[0].outputs["lmfn"].maps
    assert maps and all(type(value) is torch.Tensor for value in maps.values())  # moved before they left
    assert set(torch_objects(updates)) == {"cpu"}  # all that crossed from the worker, gr.State's session included


def test_a_checkpoint_registered_after_the_worker_was_forked_still_runs_there(zero_gpu, pair, own_checkpoint):
    blurry, reference = pair
    handler = app.on_gpu(app.served(app.compare), app.compare_seconds)
    list(handler(blurry, models=["lmfn"], context=[], size="full"))  # forks the worker
    facts = own.register(own_checkpoint, file_name="mine.safetensors")
    try:
        updates = list(handler(blurry, reference, models=[facts.key], context=[], size="full", yours=[facts.key]))
        final = dict(zip(app.compare_outputs(app.paper_groups()), updates[-1]))
        assert methods(final["table"]) == ["mine.safetensors (lmfn, yours)"]
        assert len(zero_gpu) == 2
    finally:
        own.forget([facts.key])


def test_adaptation_streams_from_the_gpu_task_and_asks_for_its_steps(zero_gpu, pair):
    blurry, reference = pair
    handler = app.on_gpu(app.served(app.adaptation), app.adaptation_seconds)
    updates = list(handler(blurry, reference, "lmfn", 2, 1e-5, "full"))
    assert len(updates) == 4  # step 0, steps 1 and 2, the summary
    assert zero_gpu == [timedelta(seconds=app.adaptation_seconds(blurry, reference, "lmfn", 2, 1e-5, "full"))]
    assert set(torch_objects(updates)) <= {"cpu"}


def test_the_app_process_pins_the_cpu_on_zerogpu(zero_gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as ZeroGPU's patched torch answers there
    assert default_device() == torch.device("cuda")
    app.build_demo()  # the page's own process; a GPU task unpins in its worker (on_gpu)
    assert default_device() == torch.device("cpu")


def test_own_checkpoints_travel_to_another_process_under_their_keys(own_checkpoint):
    facts = own.register(own_checkpoint, file_name="mine.safetensors")
    try:
        packed = pickle.loads(pickle.dumps(own.portable([facts.key, "lmfn"])))
        assert [entry[0].key for entry in packed] == [facts.key]
        before = own.network(facts.key).state_dict()
        own.forget([facts.key])
        own.adopt(packed)
        after = own.network(facts.key).state_dict()
        assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    finally:
        own.forget([facts.key])


def test_on_cpu_moves_tensors_at_any_depth_and_keeps_the_rest():
    tensor = torch.ones(2)
    value = {"a": [tensor, (1, "x")], "b": np.zeros(2)}
    assert zerogpu.on_cpu(value) is value and zerogpu.on_cpu(tensor) is tensor  # nothing to move: nothing rebuilt
    elsewhere = torch.arange(3.0).as_subclass(OnTheGpu)
    assert elsewhere.device.type == "cuda"
    moved = zerogpu.on_cpu({"a": [(elsewhere, 1)], "b": SimpleNamespace()})
    inner = moved["a"][0][0]
    assert type(inner) is torch.Tensor and inner.device.type == "cpu" and inner.tolist() == [0.0, 1.0, 2.0]


def test_the_space_front_matter_names_the_pinned_gradio_and_zerogpus_python():
    import gradio
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    header = readme.split("---\n")[1]
    fields = dict(line.split(": ", 1) for line in header.strip().splitlines())
    assert fields["sdk"] == "gradio" and fields["sdk_version"] == gradio.__version__
    assert fields["python_version"].strip('"') == "3.10"  # ZeroGPU runs 3.10.13 only; CPU hardware takes it too
    assert (Path(__file__).resolve().parents[1] / fields["app_file"]).is_file()
