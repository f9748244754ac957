"""The HTTP server: a thread of its own, one short-lived thread per connection.

Routes are methods of the app object (`runtime.Telemetry`), each returning
(status, content type, body).  Nothing is spawned per request.  Bodies are
checked for secret values before they leave (defence in depth: no answer is
built from the environment, but a future field must not leak one either).
Request logging goes to the supervisor's log at DEBUG level (a load balancer
checks several times a second).
"""
from __future__ import annotations

import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("containerbuddy")

Response = tuple[int, str, bytes]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a check that got its answer and reset) is no error worth a traceback."""
        import sys
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout)):
            log.debug("telemetry: client %s went away: %s", client_address, exc)
            return
        log.error("telemetry: error while answering %s: %r", client_address, exc)

    def __init__(self, address: tuple[str, int], routes: dict[str, Callable[[dict[str, list[str]]], Response]],
                 secrets: tuple[bytes, ...]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.routes = routes
        self.secrets = secrets
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "containerbuddy"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    timeout = 5  # seconds to read a request: a stalled client must not hold a thread

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        url = urlsplit(self.path)
        route = self.server.routes.get(url.path.rstrip("/") or "/")
        if route is None:
            code, ctype, data = 404, "text/plain; charset=utf-8", b"not found: try /primary, /replica, /health, " \
                b"/status, /metrics\n"
        else:
            try:
                code, ctype, data = route(parse_qs(url.query))
            except Exception as exc:  # noqa: BLE001 - a bug must cost one answer, not the server
                log.exception("telemetry: %s failed", url.path)
                code, ctype, data = 500, "text/plain; charset=utf-8", f"internal error: {type(exc).__name__}\n".encode()
        for secret in self.server.secrets:
            if secret in data:
                log.error("telemetry: an answer to %s contained a secret value; masked", url.path)
                data = data.replace(secret, b"***")
        # One write for the whole answer: a load balancer's check may close (RST) the
        # connection as soon as it has read the status line.
        self.log_request(code)
        head = (f"{self.protocol_version} {code} {HTTPStatus(code).phrase}\r\n"
                f"Server: {self.server_version}\r\nDate: {self.date_time_string()}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(data)}\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n").encode("latin-1")
        self.wfile.write(head + data if body else head)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("telemetry: %s %s", self.address_string(), format % args)


class HttpServer:
    """Listens on (address, port) from `start()` (which raises OSError when it cannot) to `stop()`."""

    def __init__(self, address: str, port: int, routes: dict[str, Callable[[dict[str, list[str]]], Response]],
                 secrets: tuple[str, ...] = ()) -> None:
        self.address = address
        self.port = port
        self.routes = routes
        self.secrets = tuple(s.encode() for s in secrets if s and len(s) >= 4)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server = _Server((self.address, self.port), self.routes, self.secrets)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="telemetry-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server = None
