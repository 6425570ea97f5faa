"""The launched server serves its own assets and nothing else: path traversal and absolute paths through
Gradio's file routes get nothing, uploads are capped, and one session's files are not listed anywhere."""

from pathlib import Path

import httpx
import pytest

import app
from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET_MARKERS = ("root:x:0:0", "import gradio", "[project]", "safetensors")




@pytest.fixture(scope="module")
def server():
    demo = app.build_demo()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **app.launch_options())
    yield f"http://127.0.0.1:{port}"
    demo.close()


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
