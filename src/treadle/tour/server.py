"""A slow HTTP/1.0 server for the tour, running in background threads on loopback.

Every path gets a deterministic body (``expected_body``) sent in small chunks over
about ``delay`` seconds, so N fetches one after another take about N * delay and N
overlapping fetches about delay. One thread per connection. Standard library only;
imports nothing from treadle.
"""

from __future__ import annotations

import hashlib
import socketserver
import sys
import threading
from types import TracebackType
from typing import Any, Self

HOST = "127.0.0.1"
CHUNKS = 5  # the body goes out in this many pieces, delay / CHUNKS apart
LINES = 64  # lines in every body: a few kilobytes, more than one recv's worth


class TourServerError(Exception):
    """The tour server could not start."""


def expected_body(path: str) -> bytes:
    """The body the server sends for path: the same every time, different per path."""
    lines = []
    for number in range(LINES):
        digest = hashlib.sha256(f"{path}#{number}".encode()).hexdigest()
        lines.append(f"{path} line {number:02d} {digest}\n")
    return "".join(lines).encode()


class _Server(socketserver.ThreadingTCPServer):
    """The listening socket plus what every connection's thread shares."""

    # Many clients connect at once; with the default listen backlog of 5 the
    # kernel would drop their SYNs, and each would retry a whole second later.
    request_queue_size = 1024
    # server_close() joins every connection thread, so none outlive the server.
    daemon_threads = False
    block_on_close = True

    def __init__(self, port: int, delay: float) -> None:
        super().__init__((HOST, port), _Handler)
        self.delay = delay
        self.stopping = threading.Event()  # set on close: cut slow responses short
        self._lock = threading.Lock()
        self._open = 0  # connections being served now
        self.peak = 0  # Invariant: peak >= _open; most connections served at once

    def connection_opened(self) -> None:
        with self._lock:
            self._open += 1
            self.peak = max(self.peak, self._open)

    def connection_closed(self) -> None:
        with self._lock:
            self._open -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up early is no error; anything else is reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(socketserver.StreamRequestHandler):
    """Answers one request: headers at once, then the body slowly, then close."""

    server: _Server

    def handle(self) -> None:
        self.server.connection_opened()
        try:
            self._respond()
        finally:
            # Before the socket closes, so a client that saw EOF sees the count drop.
            self.server.connection_closed()

    def _respond(self) -> None:
        request_line = self.rfile.readline(8192).decode("latin-1").split()
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass  # the headers do not matter to this server
        if len(request_line) != 3 or request_line[0] != "GET":
            self._send_head("400 Bad Request", 0)
            return
        body = expected_body(request_line[1])
        self._send_head("200 OK", len(body))
        piece = -(-len(body) // CHUNKS)  # ceiling division
        for start in range(0, len(body), piece):
            if self.server.stopping.wait(self.server.delay / CHUNKS):
                return
            self.wfile.write(body[start : start + piece])

    def _send_head(self, status: str, length: int) -> None:
        self.wfile.write(
            f"HTTP/1.0 {status}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {length}\r\n"
            "Connection: close\r\n"
            "\r\n".encode("ascii")
        )


class SlowServer:
    """The tour's server: ``with SlowServer(delay=0.5) as server: server.url("/page/1")``.

    Binds 127.0.0.1 (port 0 picks a free port) when started, serves from background
    threads, and on close stops them all and closes every socket.
    """

    def __init__(self, delay: float = 0.5, port: int = 0) -> None:
        self.delay = delay
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind and start serving; raise TourServerError if the port cannot be bound."""
        if self._server is not None:
            raise RuntimeError("the tour server is already running")
        try:
            server = _Server(self._requested_port, self.delay)
        except OSError as error:
            raise TourServerError(
                f"tour server could not bind {HOST}:{self._requested_port}: {error}"
            ) from error
        # A short poll interval so close() need not wait long for serve_forever.
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="tour-server"
        )
        thread.start()
        self._server, self._thread = server, thread

    def close(self) -> None:
        """Stop serving, cut slow responses short, and join every thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.stopping.set()
        server.shutdown()
        thread.join()
        server.server_close()
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        port: int = self._running().server_address[1]
        return port

    def url(self, path: str) -> str:
        """The http:// URL of path on this server."""
        return f"http://{HOST}:{self.port}{path}"

    @property
    def peak_connections(self) -> int:
        """The most connections served at once since start (or reset_peak)."""
        return self._running().peak

    def reset_peak(self) -> None:
        """Start counting peak_connections afresh."""
        self._running().peak = 0

    def _running(self) -> _Server:
        if self._server is None:
            raise RuntimeError("the tour server is not running")
        return self._server
