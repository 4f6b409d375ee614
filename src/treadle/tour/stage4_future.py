"""Stage 4 of the tour: a Future stands for a result that is not known yet.

In stage 3 every step of a fetch registered its next callback with the selector
itself. Here ``when_ready`` hands back a Future for "this socket is ready", and a
Fetcher hands back a Future for its FetchResult: code that wants a result adds a
done-callback to a Future and never touches the selector. Standard library only,
plus the tour's ``common`` module.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
from collections.abc import Callable
from selectors import EVENT_READ, EVENT_WRITE
from typing import Any

from treadle.tour.common import (
    FetchResult,
    close_abandoned,
    parse_url,
    record_fetch,
    request_for,
    run_by_hand,
)

# The one selector every socket in this stage registers with, as in the talk.
# (treadle itself keeps its selector inside a loop object; the tour keeps it bare.)
selector = selectors.DefaultSelector()


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
        self.future.set_result(record_fetch(self.url, self.started, b"".join(self.chunks)))


def run_once() -> None:
    """Wait until some socket is ready, then run the callback registered for it."""
    for key, _events in selector.select():
        callback = key.data
        callback()


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
        close_abandoned(selector)
    return results


if __name__ == "__main__":
    sys.exit(run_by_hand(fetch_all, __spec__.name))
