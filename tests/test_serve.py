"""`webml serve` and AppServer: headers, MIME types and what a static server must refuse."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
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


# Hardening: more encodings, limits, timeouts and concurrency -------------------------------------


@pytest.mark.parametrize("path", [
    "/%252e%252e/secret.txt",
    "/%c0%ae%c0%ae/secret.txt",
    "/%ff",
    "/linkdir/secret.txt",
    "http://evil.example/../secret.txt",
    "//secret.txt",
    "/model/..%2f..%2fsecret.txt",
], ids=["double-encoded", "overlong-utf8", "invalid-utf8", "symlinked-folder-out", "absolute-form", "double-slash",
        "encoded-slash-in-folder"])
def test_serve_rejects_more_escape_forms(site, served, path):
    (site / "linkdir").symlink_to(site.parent)
    response = fetch(served(site), path)
    assert response.status == 404
    assert b"outside the site" not in response.body


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes, then read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GET /" + b"a" * (9 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(101)) + b"\r\n", b"431"),
    (b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
], ids=["long-url", "too-many-headers", "long-header"])
def test_serve_limits_request_size(site, served, request_bytes, status):
    response = raw_exchange(served(site).port, request_bytes)
    assert response.split(b" ")[1] == status


def test_serve_limits_post_body(site, served):
    received = []

    def echo(handler, body):
        received.append(body)
        return 200, {"bytes": len(body)}

    server = served(site, post_handlers={"/collect": echo}, max_body_bytes=1000)
    small = raw_exchange(server.port, b"POST /collect HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    assert small.split(b" ")[1] == b"200"
    large = raw_exchange(server.port, b"POST /collect HTTP/1.1\r\nContent-Length: 1001\r\n\r\n" + b"x" * 1001)
    assert large.split(b" ")[1] == b"413"
    no_length = raw_exchange(server.port, b"POST /collect HTTP/1.1\r\n\r\n")
    assert no_length.split(b" ")[1] == b"411"
    assert received == [b"hello"]


def test_serve_closes_idle_connection(site, served):
    server = served(site, idle_timeout=1.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
        idle.sendall(b"GET /index.html HTTP/1.1\r\n")  # and never finishes the request
        started = time.monotonic()
        assert idle.recv(1024) == b""
        assert time.monotonic() - started < 8
    # The stalled client held one thread only, so the server still responds.
    assert fetch(server, "/index.html").status == 200


def test_serve_concurrent_gets_right_bytes(tmp_path, served):
    # Files of different sizes (up to 300 KiB) and contents, each fetched by several threads at once.
    root = tmp_path / "many"
    generator = np.random.default_rng(5)
    expected = {}
    for i in range(40):
        data = generator.integers(0, 256, size=int(generator.integers(1, 300_000)), dtype=np.uint8).tobytes()
        name = f"model/group1-shard{i}of40.bin"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        expected[name] = data
    server = served(root)
    names = sorted(expected) * 8  # 320 requests
    start = threading.Barrier(len(names))

    def get(name: str) -> tuple[str, int, bytes]:
        start.wait(timeout=60)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            connection.request("GET", "/" + name)
            response = connection.getresponse()
            return name, response.status, response.read()
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(get, names))
    assert len(results) == 320
    wrong = [(name, status, len(body)) for name, status, body in results if status != 200 or body != expected[name]]
    assert wrong == []


def test_serve_listens_on_ipv6_loopback(site, served):
    try:
        server = served(site, host="::1")
    except OSError as exc:
        pytest.skip(f"this machine has no IPv6 loopback: {exc}")
    connection = http.client.HTTPConnection("::1", server.port, timeout=10)
    connection.request("GET", "/index.html")
    response = connection.getresponse()
    assert response.status == 200
    assert response.read() == b"contents of index.html"
    assert server.url == f"http://[::1]:{server.port}/"
    connection.close()
