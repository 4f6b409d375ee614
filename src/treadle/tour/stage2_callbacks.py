"""Stage 2 of the tour: non-blocking sockets, a selector and callbacks.

Stage 1 waited inside connect and recv. Here each socket is non-blocking, the
selector says when one is ready, and what to do next lives in a callback; a loop
(``run_once``, again and again) runs the callbacks. Still one URL at a time, so it
is no faster yet: stage 3 collects the reward. Standard library only, plus the
tour's ``common`` module.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
from selectors import EVENT_READ, EVENT_WRITE

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


class Fetcher:
    """Fetches one URL as a chain of callbacks: connected, then readable until EOF."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.host, self.port, self.path = parse_url(url)
        self.chunks: list[bytes] = []
        self.started = 0.0
        self.result: FetchResult | None = None  # set when the fetch is done

    def start(self) -> None:
        """Begin connecting; the selector calls connected when that is over."""
        self.started = time.monotonic()
        self.sock = socket.socket()
        self.sock.setblocking(False)
        # A non-blocking connect returns at once (EINPROGRESS). The socket turns
        # writable when the handshake is over, and SO_ERROR then says how it went.
        self.sock.connect_ex((self.host, self.port))
        selector.register(self.sock, EVENT_WRITE, self.connected)

    def connected(self) -> None:
        """Send the request, then have the selector call readable as data arrives."""
        selector.unregister(self.sock)
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self.sock.close()
            raise OSError(error, os.strerror(error), self.url)
        # The request is tiny: the kernel's send buffer takes it all at once.
        self.sock.sendall(request_for(self.host, self.path))
        selector.register(self.sock, EVENT_READ, self.readable)

    def readable(self) -> None:
        """Keep what arrived; at EOF, close up and record the result."""
        if chunk := self.sock.recv(4096):
            self.chunks.append(chunk)
            return
        selector.unregister(self.sock)
        self.sock.close()
        self.result = record_fetch(self.url, self.started, b"".join(self.chunks))


def run_once() -> None:
    """Wait until some socket is ready, then run the callback registered for it."""
    for key, _events in selector.select():
        callback = key.data
        callback()


def fetch_all(urls: list[str]) -> list[FetchResult]:
    """Fetch every URL, running the loop until each is done before starting the next."""
    results = []
    try:
        for url in urls:
            fetcher = Fetcher(url)
            fetcher.start()
            while fetcher.result is None:
                run_once()
            results.append(fetcher.result)
    finally:
        close_abandoned(selector)
    return results


if __name__ == "__main__":
    sys.exit(run_by_hand(fetch_all, __spec__.name))
