"""Stage 3 of the tour: callbacks for every URL at once, so the fetches overlap.

Stage 2's callbacks already let one loop serve any number of sockets; here we start
every fetch before running the loop, and each pass of ``run_once`` serves whichever
sockets are ready. N slow URLs now take about as long as one. Only ``fetch_all``
changes. Standard library only, plus the tour's ``common`` module.
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
    """Start every fetch, then run the loop until all of them are done."""
    results = []
    try:
        fetchers = [Fetcher(url) for url in urls]
        for fetcher in fetchers:
            fetcher.start()
        for fetcher in fetchers:
            # Each pass serves every ready socket, not just this fetcher's.
            while fetcher.result is None:
                run_once()
            results.append(fetcher.result)
    finally:
        close_abandoned(selector)
    return results


if __name__ == "__main__":
    sys.exit(run_by_hand(fetch_all, __spec__.name))
