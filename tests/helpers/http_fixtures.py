"""A real HTTP file server on loopback for download tests: a `ThreadingHTTPServer` on 127.0.0.1
(port 0) in a thread of the test process, serving registered files, counting requests per path
and injecting faults (404, truncated body, wrong bytes).

Use it from a test module as `from .helpers import http_fixtures` and
`file_server = http_fixtures.file_server` (a module attribute, so ruff sees no unused import).
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

FAULTS = ("404", "truncate", "corrupt")


class FileServer:
    """Serves `files[path]` (bytes or a file) at http://127.0.0.1:<port>/<path>.

    `faults[path]` makes a path misbehave: "404"; "truncate" (announces the full length, sends
    half, closes); "corrupt" (the right length, wrong bytes). `fault_times[path]` limits a
    fault to the first n requests. `requests` counts GETs per path.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes | Path] = {}
        self.faults: dict[str, str] = {}
        self.fault_times: dict[str, int] = {}
        self.requests: Counter[str] = Counter()
        # Seconds to wait before answering a path: keeps a download in flight so that
        # concurrent clients really overlap.
        self.delays: dict[str, float] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                with server._lock:
                    server.requests[path] += 1
                    fault = server._fault(path)
                time.sleep(server.delays.get(path, 0.0))
                body = server.files.get(path)
                if body is None or fault == "404":
                    self.send_error(404)
                    return
                data = body.read_bytes() if isinstance(body, Path) else body
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif fault == "corrupt":
                    self.wfile.write(bytes(b ^ 0xFF for b in data[:64]) + data[64:])
                else:
                    self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _fault(self, path: str) -> str | None:
        fault = self.faults.get(path)
        if fault is None:
            return None
        if path in self.fault_times:
            if self.fault_times[path] <= 0:
                return None
            self.fault_times[path] -= 1
        return fault

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(
        self, path: str, body: bytes | Path, fault: str | None = None, times: int | None = None
    ) -> str:
        """Serves `body` at `path` (optionally with a fault for the first `times` requests)."""
        if fault is not None:
            assert fault in FAULTS, fault
            self.faults[path] = fault
            if times is not None:
                self.fault_times[path] = times
        self.files[path] = body
        return self.url(path)


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    server = FileServer()
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def closed_port_url(path: str) -> str:
    """A loopback URL nothing listens on: connections are refused, as when offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{path}"
