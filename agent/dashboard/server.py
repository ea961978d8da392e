"""The dashboard's HTTP side: static page, a JSON snapshot and the Server-Sent Events stream.

Stdlib only (``ThreadingHTTPServer``): one thread per open page is fine for a local tool, and it
keeps the agent's dependency list what it is. Binds 127.0.0.1 unless told otherwise: the page
shows what the cameras see (as labels), which is nobody else's business on the LAN by default.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import types
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from agent.dashboard.state import CLOSED, DashboardState

log = logging.getLogger(__name__)

STATIC = types.MappingProxyType(
    {
        "/": ("index.html", "text/html; charset=utf-8"),
        "/index.html": ("index.html", "text/html; charset=utf-8"),
        "/app.js": ("app.js", "text/javascript; charset=utf-8"),
        "/style.css": ("style.css", "text/css; charset=utf-8"),
        "/favicon.svg": ("favicon.svg", "image/svg+xml"),
        "/favicon.ico": ("favicon.svg", "image/svg+xml"),  # what browsers ask for unprompted
    }
)
KEEPALIVE_S = 10.0
SECURITY_HEADERS = (
    # Only this server's own files: the page shows what cameras see (as labels); no script, style
    # or connection from elsewhere may join it, and no other site may frame it.
    (
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)
MAX_BODY = 4096


def static_file(name: str) -> bytes:
    # One part per joinpath call: Python 3.10's Traversable takes only one.
    return resources.files("agent.dashboard").joinpath("static").joinpath(name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in STATIC:
            name, ctype = STATIC[path]
            self._send(HTTPStatus.OK, ctype, static_file(name))
        elif path == "/api/state":
            body = json.dumps(self.server.state.snapshot()).encode()
            self._send(HTTPStatus.OK, "application/json", body)
        elif path == "/events":
            self._stream()
        else:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

    def do_POST(self) -> None:
        """``/api/dismiss`` with ``{"device": id}``. JSON only: a cross-site form cannot send it,
        and a cross-site script would need a CORS preflight this server never grants."""
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        if path != "/api/dismiss":
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
            return
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            self._send(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "text/plain", b"application/json only\n")
            return
        if not 0 < length <= MAX_BODY:
            self._send(HTTPStatus.BAD_REQUEST, "text/plain", b"body too large or empty\n")
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            body = None
        device = body.get("device") if isinstance(body, dict) else None
        if not isinstance(device, str):
            self._send(HTTPStatus.BAD_REQUEST, "text/plain", b'expected {"device": "<id>"}\n')
            return
        found = self.server.state.dismiss(device)
        self._send(HTTPStatus.OK if found else HTTPStatus.NOT_FOUND, "application/json",
                   json.dumps({"dismissed": found}).encode())  # fmt: skip

    def _headers(self) -> None:
        for name, value in SECURITY_HEADERS:
            self.send_header(name, value)
        self.send_header("Cache-Control", "no-store")

    def _send(self, status: HTTPStatus, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._headers()
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        state = self.server.state
        q = state.attach()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self._headers()
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            self._event(state.snapshot())
            while not self.server.stopping.is_set():
                try:
                    item = q.get(timeout=KEEPALIVE_S)
                except queue.Empty:
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                if item is CLOSED:
                    break
                self._event(item)
        except (BrokenPipeError, ConnectionResetError):
            log.debug("page went away")
        finally:
            state.detach(q)

    def _event(self, message: object) -> None:
        self.wfile.write(b"data: " + json.dumps(message).encode() + b"\n\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: DashboardState) -> None:
        self.state = state
        self.stopping = threading.Event()
        super().__init__(address, _Handler)


class DashboardServer:
    """HTTP server around a :class:`DashboardState`; ``serve_forever`` until :meth:`stop`."""

    def __init__(self, state: DashboardState, host: str = "127.0.0.1", port: int = 8088) -> None:
        self.state = state
        self._httpd = _Server((host, port), state)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/"

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.25)

    def stop(self) -> None:
        """Ends open event streams and the accept loop (call from another thread or a signal)."""
        self._httpd.stopping.set()
        self.state.close()
        threading.Thread(target=self._httpd.shutdown, daemon=True).start()

    def close(self) -> None:
        self._httpd.server_close()
