"""`webml serve` and AppServer: headers, MIME types and what a static server must refuse."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_webml

FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "chunks/cpu-ABC.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "metadata.json": "application/json",
    "manifest.webmanifest": "application/manifest+json",
    "runtime/tfjs-backend-wasm-simd.wasm": "application/wasm",
    "model/group1-shard1of1.bin": "application/octet-stream",
    "icons/icon-192.png": "image/png",
    "licenses.txt": "text/plain; charset=utf-8",
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A folder shaped like a build, with a secret file next to it."""
    root = tmp_path / "site"
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"contents of {name}")
    (root / "metadata.json").write_text(json.dumps({"generator": "webml", "name": "fake"}))
    (root / "sw.js").write_text('const PRECACHE = {"name": "fake", "version": "0", "files": []};\n')
    (root / ".webml-staging").write_text("hidden")
    (tmp_path / "secret.txt").write_text("outside the site")
    (root / "link-out.txt").symlink_to(tmp_path / "secret.txt")
    (root / "link-in.txt").symlink_to(root / "licenses.txt")
    return root


def fetch(server, path: str, method: str = "GET") -> http.client.HTTPResponse:
    """Send ``path`` exactly as given (no client-side normalization) and read the response."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest(method, path, skip_accept_encoding=True)
    connection.endheaders()
    response = connection.getresponse()
    response.body = response.read()
    connection.close()
    return response


@pytest.mark.parametrize("name", sorted(FILES))
def test_serve_sends_mime_type(site, served, name):
    server = served(site)
    response = fetch(server, f"/{name}")
    assert response.status == 200
    assert response.getheader("Content-Type") == FILES[name]
    assert response.getheader("X-Content-Type-Options") == "nosniff"


def test_serve_isolates_origin_for_wasm_threads(site, served):
    response = fetch(served(site), "/index.html")
    assert response.getheader("Cross-Origin-Opener-Policy") == "same-origin"
    assert response.getheader("Cross-Origin-Embedder-Policy") == "require-corp"
    assert response.getheader("Cross-Origin-Resource-Policy") == "same-origin"
    assert "default-src 'self'" in response.getheader("Content-Security-Policy")


def test_serve_without_isolation_omits_coop_coep(site, served):
    response = fetch(served(site, isolate=False), "/index.html")
    assert response.status == 200
    assert response.getheader("Cross-Origin-Opener-Policy") is None
    assert response.getheader("Cross-Origin-Embedder-Policy") is None


def test_serve_marks_service_worker_no_cache(site, served):
    response = fetch(served(site), "/sw.js")
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/javascript; charset=utf-8"
    assert response.getheader("Cache-Control") == "no-cache"


@pytest.mark.parametrize("path", [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/model/../../secret.txt",
    "/..%5csecret.txt",
    "/link-out.txt",
    "/.webml-staging",
    "/%00index.html",
], ids=["dotdot", "encoded-dotdot", "encoded-slash", "nested-dotdot", "backslash", "symlink-out", "hidden-file",
        "nul-byte"])
def test_serve_rejects_path_outside_site(site, served, path):
    response = fetch(served(site), path)
    assert response.status == 404
    assert b"outside the site" not in response.body


def test_serve_follows_symlink_inside_site(site, served):
    response = fetch(served(site), "/link-in.txt")
    assert response.status == 200
    assert response.body == b"contents of licenses.txt"


def test_serve_lists_no_directory(site, served):
    response = fetch(served(site), "/model/")
    assert response.status == 404
    assert b"group1-shard1of1.bin" not in response.body


def test_serve_root_is_index(site, served):
    response = fetch(served(site), "/")
    assert response.status == 200
    assert response.body == b"contents of index.html"


def test_serve_binds_loopback_by_default(site):
    command = [sys.executable, "-m", "builder", "serve", str(site), "--port", "0"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
    try:
        line = process.stdout.readline()
        assert line.startswith(f"serving {site} at http://127.0.0.1:")
        port = int(line.rsplit(":", 1)[1].split("/")[0])
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/manifest.webmanifest")
        response = connection.getresponse()
        assert response.status == 200
        assert response.getheader("Content-Type") == "application/manifest+json"
        connection.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
    assert process.returncode == 0


def test_serve_rejects_folder_that_is_not_a_build(tmp_path):
    result = run_webml("serve", str(tmp_path), "--port", "0", timeout=60)
    assert result.returncode == 2
    assert "not a webml build" in result.stderr
    assert "Traceback" not in result.stderr
