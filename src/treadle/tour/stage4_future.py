"""Stage 4 of the tour: a Future stands for a result that is not known yet.

In stage 3 every step of a fetch registered its next callback with the selector
itself. Here ``when_ready`` hands back a Future for "this socket is ready", and a
Fetcher hands back a Future for its FetchResult: code that wants a result adds a
done-callback to a Future and never touches the selector. The selector, the loop
and the non-blocking connect are stage 2's, imported. Standard library only, plus the
tour's ``common`` module and stage 2.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from selectors import EVENT_READ, EVENT_WRITE
from typing import Any

from treadle.tour import common
from treadle.tour.stage2_callbacks import check_connected, run_once, selector, start_connecting


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
        self.future = Future()  # resolves to this fetch's FetchResult
        self.url = url
        self.host, self.port, self.path = common.parse_url(url)
        self.chunks: list[bytes] = []
        self.started = 0.0

    def start(self) -> Future:
        """Begin connecting; return the Future of the whole fetch."""
        self.started = time.monotonic()
        self.sock = start_connecting(self.host, self.port)
        when_ready(self.sock, EVENT_WRITE).add_done_callback(self.connected)
        return self.future

    def connected(self, _ready: Future) -> None:
        """Send the request, then wait for the socket to be readable."""
        check_connected(self.sock, self.url)
        # The request is tiny: the kernel's send buffer takes it all at once.
        self.sock.sendall(common.request_for(self.host, self.path))
        when_ready(self.sock, EVENT_READ).add_done_callback(self.readable)

    def readable(self, _ready: Future) -> None:
        """Keep what arrived and wait for more; at EOF, resolve the fetch's Future."""
        if chunk := self.sock.recv(4096):
            self.chunks.append(chunk)
            when_ready(self.sock, EVENT_READ).add_done_callback(self.readable)
            return
        self.sock.close()
        self.future.set_result(common.record_fetch(self.url, self.started, b"".join(self.chunks)))


def run_until_done(future: Future) -> Any:
    """Run the loop until future is done, serving every ready socket meanwhile; its result."""
    while not future.done:
        run_once()
    return future.result


def fetch_all(urls: list[str]) -> list[common.FetchResult]:
    """Start every fetch, then run the loop until all of their Futures are done."""
    try:
        futures = [Fetcher(url).start() for url in urls]
        return [run_until_done(future) for future in futures]
    finally:
        common.close_abandoned(selector)


if __name__ == "__main__":
    sys.exit(common.run_by_hand(fetch_all, __spec__.name))
