"""Stage 4 of the tour: a Future stands for a result that is not known yet.

In stage 3 every step of a fetch registered its next callback with the selector
itself. Here ``when_ready`` hands back a Future for "this socket is ready", and a
Fetcher hands back a Future for its FetchResult: code that wants a result adds a
done-callback to a Future and never touches the selector. Standard library only.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from selectors import EVENT_READ, EVENT_WRITE
from typing import Any

# The one selector every socket in this stage registers with, as in the talk.
# (treadle itself keeps its selector inside a loop object; the tour keeps it bare.)
selector = selectors.DefaultSelector()


@dataclass(frozen=True)
class FetchResult:
    """One URL's response body, and when its fetch started and finished (monotonic)."""

    url: str
    body: bytes
    started: float
    finished: float


def parse_url(url: str) -> tuple[str, int, str]:
    """Split an http:// URL into the host, the port and the path to request."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// URL: {url!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, path


def request_for(host: str, path: str) -> bytes:
    """The bytes of a plain HTTP/1.0 GET; the server closes the connection when done."""
    return f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode("ascii")


def body_of(response: bytes) -> bytes:
    """Everything after the blank line that ends an HTTP response's headers."""
    _headers, blank_line, body = response.partition(b"\r\n\r\n")
    if not blank_line:
        raise ValueError("the response has no blank line after its headers")
    return body


class Future:
    """A result that is not known yet.

    Whoever learns the result calls set_result; whoever needs it adds a callback,
    which runs with the Future once the result is in.
    """

    def __init__(self) -> None:
        self.done = False
        self.result: Any = None
        self._callbacks: list[Callable[[Future], None]] = []

    def add_done_callback(self, callback: Callable[[Future], None]) -> None:
        """Run callback(self) when the result is set."""
        self._callbacks.append(callback)

    def set_result(self, result: Any) -> None:
        """Record the result and run every callback waiting for it."""
        self.result = result
        self.done = True
        for callback in self._callbacks:
            callback(self)


def when_ready(sock: socket.socket, events: int) -> Future:
    """A Future that resolves once sock is ready for events (EVENT_READ or EVENT_WRITE)."""
    future = Future()

    def on_ready() -> None:
        selector.unregister(sock)
        future.set_result(None)

    selector.register(sock, events, on_ready)
    return future


class Fetcher:
    """Fetches one URL by chaining callbacks on Futures: connected, then readable."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.host, self.port, self.path = parse_url(url)
        self.chunks: list[bytes] = []
        self.started = 0.0
        self.future = Future()  # resolves to this fetch's FetchResult

    def start(self) -> Future:
        """Begin connecting; return the Future of the whole fetch."""
        self.started = time.monotonic()
        self.sock = socket.socket()
        self.sock.setblocking(False)
        # A non-blocking connect returns at once (EINPROGRESS). The socket turns
        # writable when the handshake is over, and SO_ERROR then says how it went.
        self.sock.connect_ex((self.host, self.port))
        when_ready(self.sock, EVENT_WRITE).add_done_callback(self.connected)
        return self.future

    def connected(self, _ready: Future) -> None:
        """Send the request, then wait for the socket to be readable."""
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self.sock.close()
            raise OSError(error, os.strerror(error), self.url)
        # The request is tiny: the kernel's send buffer takes it all at once.
        self.sock.sendall(request_for(self.host, self.path))
        when_ready(self.sock, EVENT_READ).add_done_callback(self.readable)

    def readable(self, _ready: Future) -> None:
        """Keep what arrived and wait for more; at EOF, resolve the fetch's Future."""
        if chunk := self.sock.recv(4096):
            self.chunks.append(chunk)
            when_ready(self.sock, EVENT_READ).add_done_callback(self.readable)
            return
        self.sock.close()
        body = body_of(b"".join(self.chunks))
        self.future.set_result(FetchResult(self.url, body, self.started, time.monotonic()))


def run_once() -> None:
    """Wait until some socket is ready, then run the callback registered for it."""
    for key, _events in selector.select():
        callback = key.data
        callback()


def close_abandoned() -> None:
    """After a failure, close the sockets other fetches left registered."""
    for key in list(selector.get_map().values()):
        selector.unregister(key.fileobj)
        if isinstance(key.fileobj, socket.socket):
            key.fileobj.close()


def fetch_all(urls: list[str]) -> list[FetchResult]:
    """Start every fetch, then run the loop until all of their Futures are done."""
    results = []
    try:
        futures = [Fetcher(url).start() for url in urls]
        for future in futures:
            # Each pass serves every ready socket, not just this future's.
            while not future.done:
                run_once()
            results.append(future.result)
    finally:
        close_abandoned()
    return results


# --- Running a stage by hand: the same in every stage ----------------------------


def describe(error: Exception) -> str:
    """One line saying what went wrong, for the command line."""
    if isinstance(error, ConnectionRefusedError) and error.filename:
        return f"{error.filename} refused the connection (ConnectionRefusedError)"
    return f"{error} ({type(error).__name__})"


def main(argv: list[str] | None = None) -> int:
    """Fetch the URLs named on the command line; print one line each and the total."""
    urls = sys.argv[1:] if argv is None else argv
    if not urls:
        print(f"usage: python -m {__spec__.name} URL...", file=sys.stderr)
        return 2
    began = time.monotonic()
    try:
        results = fetch_all(urls)
    except (OSError, ValueError) as error:
        print(f"error: {describe(error)}", file=sys.stderr)
        return 1
    for result in results:
        start, end = result.started - began, result.finished - began
        print(f"{result.url}  {len(result.body)} bytes  {start:.2f}s -> {end:.2f}s")
    print(f"fetched {len(results)} URL(s) in {time.monotonic() - began:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
