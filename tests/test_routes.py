"""The launched server serves its own assets and nothing else: path traversal and absolute paths through
Gradio's file routes get nothing, uploads are capped, and one session's files are not listed anywhere."""

from pathlib import Path

import re

import httpx
import pytest
from gradio_client import Client, handle_file

import app
from conftest import launched

ROOT = Path(__file__).resolve().parent.parent
SECRET_MARKERS = ("root:x:0:0", "import gradio", "[project]", "safetensors")




@pytest.fixture(scope="module")
def server():
    with launched() as url:
        yield url


def raw_get(base: str, path: str) -> httpx.Response:
    """GET with the path sent exactly as written (no client-side normalisation of ``..``)."""
    with httpx.Client(timeout=30) as client:
        request = client.build_request("GET", base)
        request.url = request.url.copy_with(raw_path=path.encode())
        return client.send(request)


ATTEMPTS = [
    "/gradio_api/file=/etc/passwd",
    "/file=/etc/passwd",
    f"/gradio_api/file={ROOT / 'app.py'}",
    f"/gradio_api/file={ROOT / 'pyproject.toml'}",
    f"/gradio_api/file={ROOT / 'assets' / '..' / 'app.py'}",
    f"/gradio_api/file={ROOT / 'assets'}/%2e%2e/app.py",
    f"/gradio_api/file={ROOT / 'assets'}/..%2fapp.py",
    "/gradio_api/file=../../../../../../etc/passwd",
    "/gradio_api/file=..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/gradio_api/file=%2fetc%2fpasswd",
    "/static/../../../../etc/passwd",
    "/assets/..%2f..%2f..%2fetc%2fpasswd",
    f"/gradio_api/file={ROOT / 'checkpoints' / 'SHA256SUMS'}",
    f"/gradio_api/file={ROOT}",
    f"/gradio_api/file={ROOT / 'assets'}",
]


@pytest.mark.parametrize("path", ATTEMPTS)
def test_traversal_and_absolute_paths_get_nothing(server, path):
    response = raw_get(server, path)
    body = response.text
    assert response.status_code >= 400 or not any(marker in body for marker in SECRET_MARKERS), (
        f"{path} answered {response.status_code} with {body[:200]!r}"
    )
    assert response.status_code != 200 or "<html" in body.lower()[:200], f"{path} served a file"


def test_the_apps_own_assets_are_served(server):
    example = sorted((ROOT / "assets").glob("*.png"))[0]
    response = raw_get(server, f"/gradio_api/file={example}")
    assert response.status_code == 200 and response.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_uploads_over_the_cap_are_refused(server):
    limit = app.MAX_UPLOAD_BYTES
    with httpx.Client(timeout=60) as client:
        small = client.post(f"{server}/gradio_api/upload", files={"files": ("ok.png", b"\x89PNG" + b"0" * 1000)})
        big = client.post(f"{server}/gradio_api/upload", files={"files": ("big.png", b"0" * (limit + 1024))})
    assert small.status_code == 200
    assert big.status_code >= 400 and "size" in big.text.lower(), big.text[:200]


def test_a_sessions_downloads_are_reachable_only_through_their_content_digest(server):
    """Gradio serves a returned file from a copy in its cache, under a folder named by a SHA-256 digest: the
    owner's link works; the original in the app's run folder, the cache folders and the run folders are not
    served or listed, so another session reaches a download only by already holding its exact bytes."""
    before = set(app.RUNS_DIR.glob("run-*")) if app.RUNS_DIR.is_dir() else set()
    client = Client(server, verbose=False, download_files=False)
    outputs = client.predict(blurry=handle_file(ROOT / "assets" / "gopro-crowd-blur.png"), models=[],
                             context=["input"], size="192", api_name="/compare")
    csv_file, zip_file = outputs[1], outputs[2]
    for served in (csv_file, zip_file):
        assert re.search(r"/[0-9a-f]{64}/[^/]+$", served["path"]), served["path"]
        response = raw_get(server, served["url"].removeprefix(server))
        assert response.status_code == 200
    # The run folder this request wrote (other runs may be writing theirs at the same time).
    (run,) = [run for run in set(app.RUNS_DIR.glob("run-*")) - before
              if (run / "outputs.zip").is_file() and (run / "outputs.zip").read_bytes() == response.content]
    cache = Path(zip_file["path"]).parent
    for path in (run / "outputs.zip", run / "metrics.csv", run, app.RUNS_DIR, cache, cache.parent):
        response = raw_get(server, f"/gradio_api/file={path}")
        assert response.status_code >= 400, (path, response.status_code)
        if path.is_dir():  # nothing listed: no entry of the folder is named in the answer
            assert not [entry.name for entry in path.iterdir() if entry.name in response.text], (path, response.text)
