import contextlib
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data from the project root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny networks and convolutions run many times faster on one thread than on two on a shared 2-CPU machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def free_port() -> int:
    """A TCP port free on the loopback interface right now (for servers the tests launch)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def launched(demo=None):
    """A demo (by default the app's own) served on a free loopback port: its URL, and the server closed afterwards."""
    import app

    demo = demo or app.build_demo()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                **app.launch_options())
    try:
        yield demo.local_url.rstrip("/")
    finally:
        try:
            demo.close()
        except RuntimeError:  # "deque mutated during iteration", seen on Python 3.10: Gradio sets its server's
            if demo.server:   # asyncio stop event from this thread while that loop may be iterating its waiters;
                demo.server.close()  # the flag is set by then, so the close is finished by hand


@pytest.fixture
def pair(tmp_path):
    """A small blurry photo (64 x 96) and its sharp reference, as PNG files named as a person would name them."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sharp = (rng.random((64, 96, 3)) * 255).astype(np.uint8)
    blurry = ((sharp[:, :-2].astype(int) + sharp[:, 1:-1] + sharp[:, 2:]) // 3).astype(np.uint8)
    blurry = np.concatenate([blurry, sharp[:, -2:]], axis=1)
    paths = tmp_path / "street.png", tmp_path / "street-sharp.png"
    Image.fromarray(blurry).save(paths[0])
    Image.fromarray(sharp).save(paths[1])
    return str(paths[0]), str(paths[1])


@pytest.fixture(scope="session")
def own_checkpoint(tmp_path_factory):
    """A visitor's checkpoint as ``python -m train`` exports it: ``last.safetensors`` of a 2-step LMFN run (with the
    global input skip, an architecture keyword in its metadata), renamed as a person might."""
    import numpy as np
    from PIL import Image

    from train.config import load_config, merge
    from train.distributed import Context
    from train.trainer import train

    folder = tmp_path_factory.mktemp("own")
    photos = folder / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8)).save(photos / f"p{index}.png")
    config = merge(load_config("lmfn"), {"architecture": {"residual": True},
                                         "data": {"crop": 32, "batch_size": 2, "workers": 0},
                                         "train": {"log_every": 1, "save_every": 2, "val_every": 100}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model_name="lmfn", data=[str(photos)], out=folder / "run", config=config,
              context=Context(rank=0, world=1, device=torch.device("cpu")), max_steps=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    mine = folder / "my-lmfn.safetensors"
    (folder / "run" / "last.safetensors").rename(mine)
    return mine
