"""What a person waits for: the app's start-up, then the first model's output and all five papers' outputs.

    python benchmarks/app_latency.py [--size 320] [--runs 2] [--blurry assets/gopro-market-blur.png]

Starts ``python app.py`` in a fresh process (as Hugging Face Spaces does) and measures the seconds until the page
answers. Then, through ``gradio_client``, it sends the 1280x720 GoPro example with every registered model at the
app's default settings (processing size 320 px on a CPU, the input and the classical baseline shown) and times,
from the request, the arrival of the first model's output and of the final update (every output and metric). The
first run is cold (models are built on first use); later runs are warm.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(port: int) -> tuple[subprocess.Popen, float]:
    """``python app.py`` on the port; returns the process and the seconds until its page answered."""
    environment = os.environ | {"GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                if response.status == 200:
                    return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.1)


def time_comparison(client, blurry: Path, reference: Path | None, models: list[str], size: str) -> dict:
    """Seconds from the request to the first model output and to the final update."""
    from gradio_client import handle_file

    start = time.perf_counter()
    job = client.submit(blurry=handle_file(blurry), reference=handle_file(reference) if reference else None,
                        models=models, size=size, api_name="/compare")
    first = None
    for update in job:
        gallery = update[5]
        captions = [item.get("caption") or "" for item in gallery] if isinstance(gallery, list) else []
        if first is None and any(caption.split(" ·")[0] in models for caption in captions):
            first = time.perf_counter() - start
    job.result()
    return {"first": first, "all": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blurry", type=Path, default=ROOT / "assets" / "gopro-market-blur.png")
    parser.add_argument("--reference", type=Path, default=ROOT / "assets" / "gopro-market-sharp.png")
    parser.add_argument("--size", default=None, help="processing size (default: the app's own default)")
    parser.add_argument("--runs", type=int, default=2, help="comparisons in a row (the first is cold)")
    args = parser.parse_args()

    from gradio_client import Client

    import app
    from core.registry import list_models

    size = args.size or app.PREVIEW_SIZE
    port = free_port()
    process, startup = start_app(port)
    try:
        print(f"start-up of python app.py until the page answers: {startup:.1f} s")
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        models = list_models()
        for run in range(args.runs):
            times = time_comparison(client, args.blurry, args.reference, models, size)
            label = "cold" if run == 0 else "warm"
            print(f"run {run + 1} ({label}), {args.blurry.name} at {size} px, {len(models)} models: "
                  f"first model output {times['first']:.1f} s, everything {times['all']:.1f} s")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
