"""A static file server for built apps, on Python's ``http.server``.

It sends the headers the app needs (correct MIME types, cross-origin isolation so the WASM backend
can use threads, ``no-cache`` for the service worker script) and refuses what a static server
must not serve: paths outside the folder (``..``, encoded forms, symlinks that lead out),
directory listings, and oversized requests.
"""

from __future__ import annotations

import http.server
import logging
import os
import posixpath
import socket
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable

from .render import CONTENT_SECURITY_POLICY

log = logging.getLogger(__name__)

MIME_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".wasm": "application/wasm",
    ".bin": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_COUNT = 100
# Seconds a connection may stay silent (while sending a request or between requests) before the
# server closes it, so that stalled clients do not hold threads forever.
IDLE_TIMEOUT_SECONDS = 30.0
# Connections the kernel queues before the server accepts them; Python's default of 5 makes a
# burst of page loads wait for TCP retransmissions. Linux caps it at net.core.somaxconn.
LISTEN_BACKLOG = 512
# Files whose content changes between builds under the same name: browsers must revalidate them.
# Everything else is revalidated too ("no-cache" keeps it cached but checked); the service worker
# is what makes the app fast and offline, not the HTTP cache.
NO_CACHE = "no-cache"


class AppRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Serves one folder with the app's headers; set ``root`` on a subclass."""

    root: Path
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}
    server_version = "webml"
    sys_version = ""
    isolate = True
    csp = True
    post_handlers: dict[str, Callable[[AppRequestHandler, bytes], tuple[int, dict[str, Any]]]] = {}
    max_body_bytes = 256 * 1024
    # StreamRequestHandler applies this as the socket timeout of each connection.
    timeout = IDLE_TIMEOUT_SECONDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(self.root), **kwargs)

    def parse_request(self) -> bool:
        if len(self.raw_requestline) > MAX_URL_BYTES:
            # send_error logs the request line and end_headers reads the path; parse_request sets both.
            self.requestline = self.request_version = self.command = self.path = ""
            self.send_error(414, "Request-URI too long")
            return False
        if not super().parse_request():
            return False
        if len(self.headers) > MAX_HEADER_COUNT:
            self.send_error(431, "Too many request headers")
            return False
        return True

    def translate_path(self, path: str) -> str:
        """Map a URL path to a file inside ``root``, or to a path that does not exist.

        ``http.server`` already drops ``..`` segments after percent-decoding; on top of that the
        resolved path (symlinks followed) must stay inside the root.
        """
        path = urllib.parse.urlsplit(path).path
        try:
            decoded = urllib.parse.unquote(path, errors="strict")
        except UnicodeDecodeError:
            # Percent-escapes that are not UTF-8, such as the overlong "%c0%ae" for ".".
            return str(self.root / ".webml-rejected")
        if "\x00" in decoded or "\\" in decoded:
            return str(self.root / ".webml-rejected")
        parts = [p for p in posixpath.normpath(decoded).split("/") if p and p not in (".", "..")]
        candidate = self.root.joinpath(*parts) if parts else self.root
        resolved = Path(os.path.realpath(candidate))
        if resolved != self.root and self.root not in resolved.parents:
            return str(self.root / ".webml-rejected")
        return str(resolved)

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(404, "Not found")
        return None

    def send_head(self) -> Any:
        # Hidden files (staging markers, editor files) are never served.
        relative = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if any(part.startswith(".") for part in relative.split("/") if part):
            self.send_error(404, "Not found")
            return None
        return super().send_head()

    def end_headers(self) -> None:
        if self.isolate:
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if self.csp:
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY + "; frame-ancestors 'none'")
        self.send_header("Cache-Control", NO_CACHE)
        if self.path.split("?")[0].endswith("/sw.js"):
            self.send_header("Service-Worker-Allowed", "./")
        super().end_headers()

    def do_POST(self) -> None:
        route = urllib.parse.urlsplit(self.path).path
        handler = self.post_handlers.get(route)
        if handler is None:
            self.send_error(405, "Method not allowed")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self.send_error(411, "Length required")
            return
        length = int(length_header)
        if length > self.max_body_bytes:
            self.send_error(413, f"Request body over {self.max_body_bytes} bytes")
            return
        body = self.rfile.read(length)
        status, payload = handler(self, body)
        import json

        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def log_error(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


class _TrackingServer(http.server.ThreadingHTTPServer):
    """A threaded server that remembers open connections so that ``stop`` can cut them."""

    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.connections: set[Any] = set()
        self.connections_lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver prints a traceback on stderr; a client that disconnects early or times out
        # is routine for a server, so it becomes one log line.
        error = sys.exc_info()[1]
        log.info("%s: request failed: %s: %s", client_address[0], type(error).__name__, error)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            open_connections = list(self.connections)
        for connection in open_connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class AppServer:
    """A threaded HTTP server for one folder; use as a context manager or call start/stop."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0, *, isolate: bool = True,
                 post_handlers: dict[str, Callable] | None = None, max_body_bytes: int = 256 * 1024,
                 csp: bool = True, idle_timeout: float = IDLE_TIMEOUT_SECONDS) -> None:
        """Serve ``root``; ``csp=False`` omits the app's Content-Security-Policy header (for pages
        that are not webml apps, such as the benchmarks' baseline page). ``idle_timeout`` is in
        seconds."""
        handler = type("BoundHandler", (AppRequestHandler,), {
            "root": Path(os.path.realpath(root)), "isolate": isolate, "csp": csp,
            "post_handlers": dict(post_handlers or {}), "max_body_bytes": max_body_bytes, "timeout": idle_timeout,
        })
        self.httpd = _TrackingServer((host, port), handler)
        self.thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.httpd.server_address[0]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def start(self) -> AppServer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="webml-server", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: close the listening socket and every open connection, so that the next
        request fails as it would with the server gone."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.httpd.close_connections()
        if self.thread is not None:
            self.thread.join(timeout=5)

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
