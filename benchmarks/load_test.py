"""Many visitors at once: how long each request waits when several gradio_client clients ask together.

    python benchmarks/load_test.py [--clients 8] [--requests 3] [--size 320] [--blurry assets/gopro-market-blur.png]

Starts ``python app.py`` in a fresh process (as ``benchmarks/app_latency.py`` does). A lone client first sends each
request of the mix twice over, one after another; the second pass is the latency of a visitor who has the app to
themself (the first, not counted, builds and loads every model). Then ``--clients`` clients, each in its own thread
and session, send ``--requests`` requests each, all starting together. The mix (``MIX``, which ``tests/test_load.py`` also uses):
comparisons with one or two light models and adaptations of 1-3 steps, each client in its own order. A request's
latency runs from its submission to its answer with every file downloaded, as ``Client.predict`` does it; model runs
share one slot, so under load most of it is waiting in the queue. Prints a markdown table: per-request p50 / p95 / max
and the wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # also when imported as benchmarks.load_test (tests/test_load.py)

from app_latency import free_port, start_app  # noqa: E402


def compare(*models, context=()):
    return "/compare", {"models": list(models), "context": list(context)}


def adapt(name, steps):
    return "/adapt", {"name": name, "steps": steps}


MIX = [compare("lmfn"), compare("reblur-n1"), compare("lmfn", "reblur-n2", context=["input"]),
       adapt("reblur-n1", 1), adapt("reblur-n2", 2), adapt("reblur-n1", 3)]


def schedule(client: int, requests: int) -> list[int]:
    """The requests (indices into MIX) of one client: each client both compares and adapts, in its own order."""
    return [(client + 2 * k) % len(MIX) for k in range(requests)]


def described(request) -> str:
    api_name, arguments = request
    if api_name == "/adapt":
        return f"adapt {arguments['name']} {arguments['steps']} step(s)"
    return "compare " + " + ".join([*arguments["models"], *arguments["context"]])


def timed(client, request, blurry: Path, reference: Path, size: str) -> tuple[str, float | str]:
    """(endpoint, seconds until the answer) or (endpoint, why it failed) for one request."""
    from gradio_client import handle_file

    api_name, arguments = request
    start = time.perf_counter()
    try:
        client.predict(blurry=handle_file(blurry), reference=handle_file(reference), size=size, api_name=api_name,
                       **arguments)
    except Exception as error:  # a refused or failed request is counted and named in the report, not fatal
        return api_name, f"{type(error).__name__}: {error}"
    return api_name, time.perf_counter() - start


def row(label: str, answers: list[tuple[str, float | str]], wall: float | None = None) -> str:
    seconds = [value for _, value in answers if isinstance(value, float)]
    failed = len(answers) - len(seconds)
    p50, p95 = np.percentile(seconds, [50, 95]) if seconds else (float("nan"), float("nan"))
    top = max(seconds, default=float("nan"))
    wall_text = "" if wall is None else f"{wall:.1f}"
    return f"| {label} | {len(answers)} | {failed} | {p50:.1f} | {p95:.1f} | {top:.1f} | {wall_text} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=3, help="requests per client")
    parser.add_argument("--size", default=None, help="processing size (default: the app's own default)")
    parser.add_argument("--blurry", type=Path, default=ROOT / "assets" / "gopro-market-blur.png")
    parser.add_argument("--reference", type=Path, default=ROOT / "assets" / "gopro-market-sharp.png")
    args = parser.parse_args()

    from gradio_client import Client

    import app

    size = args.size or app.PREVIEW_SIZE
    port = free_port()
    process, _ = start_app(port)
    url = f"http://127.0.0.1:{port}/"
    try:
        lone = Client(url, verbose=False)
        for request in MIX:  # warm-up: every model built and its weights loaded
            timed(lone, request, args.blurry, args.reference, size)
        began = time.perf_counter()
        alone = [timed(lone, request, args.blurry, args.reference, size) for request in MIX]
        alone_wall = time.perf_counter() - began
        lone.close()
        start = threading.Barrier(args.clients)

        def visitor(index: int) -> tuple[float, list, float]:
            client = Client(url, verbose=False)
            start.wait()  # every client is connected: from here on they all ask at once
            began = time.perf_counter()
            answers = [timed(client, MIX[i], args.blurry, args.reference, size)
                       for i in schedule(index, args.requests)]
            client.close()
            return began, answers, time.perf_counter()

        with ThreadPoolExecutor(args.clients) as pool:
            runs = list(pool.map(visitor, range(args.clients)))
    finally:
        process.terminate()
        process.wait(timeout=30)

    answers = [answer for _, client_answers, _ in runs for answer in client_answers]
    wall = max(end for _, _, end in runs) - min(began for began, _, _ in runs)
    load = f"{args.clients} clients x {args.requests} requests at once"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.blurry.name} (reference {args.reference.name}) at processing size {size}, {cpus} CPUs, "
          f"{time.strftime('%Y-%m-%d')}; the mix: {', '.join(described(request) for request in MIX)}.\n")
    print("| scenario | requests | failed | p50 (s) | p95 (s) | max (s) | wall (s) |")
    print("|---|---|---|---|---|---|---|")
    print(row("1 client, one request at a time", alone, alone_wall))
    print(row(load, answers, wall))
    for api_name in ("/compare", "/adapt"):
        some = [answer for answer in answers if answer[0] == api_name]
        if some:
            print(row(f"{load}: {api_name} only", some))
    failures = [value for _, value in alone + answers if isinstance(value, str)]
    for failure in dict.fromkeys(failures):
        print(f"\nfailed ({failures.count(failure)}x): {failure}")


if __name__ == "__main__":
    main()
