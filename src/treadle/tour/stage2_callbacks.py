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

from treadle.tour import common

# The one selector every socket in this stage registers with, as in the talk.
# (treadle itself keeps its selector inside a loop object; the tour keeps it bare.)
selector = selectors.DefaultSelector()


def start_connecting(host: str, port: int) -> socket.socket:
    """A non-blocking socket whose connect to host and port is under way.

    A non-blocking connect returns at once (EINPROGRESS). The socket turns writable
    when the handshake is over, and ``check_connected`` then says how it went.
    """
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex((host, port))
    return sock


def check_connected(sock: socket.socket, url: str) -> None:
    """Once sock is writable: if its connect failed, close it and raise, naming url."""
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        sock.close()
        raise OSError(error, os.strerror(error), url)


class Fetcher:
    """Fetches one URL as a chain of callbacks: connected, then readable until EOF."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.host, self.port, self.path = common.parse_url(url)
        self.chunks: list[bytes] = []
        self.started = 0.0
        self.result: common.FetchResult | None = None  # set when the fetch is done

    def start(self) -> None:
        """Begin connecting; the selector calls connected when that is over."""
        self.started = time.monotonic()
        self.sock = start_connecting(self.host, self.port)
        selector.register(self.sock, EVENT_WRITE, self.connected)

    def connected(self) -> None:
        """Send the request, then have the selector call readable as data arrives."""
        selector.unregister(self.sock)
        check_connected(self.sock, self.url)
        # The request is tiny: the kernel's send buffer takes it all at once.
        self.sock.sendall(common.request_for(self.host, self.path))
        selector.register(self.sock, EVENT_READ, self.readable)

    def readable(self) -> None:
        """Keep what arrived; at EOF, close up and record the result."""
        if chunk := self.sock.recv(4096):
            self.chunks.append(chunk)
            return
        selector.unregister(self.sock)
        self.sock.close()
        self.result = common.record_fetch(self.url, self.started, b"".join(self.chunks))


def run_once() -> None:
    """Wait until some socket is ready, then run the callback registered for it."""
    for key, _events in selector.select():
        callback = key.data
        callback()


def run_until_fetched(fetcher: Fetcher) -> common.FetchResult:
    """Run the loop until fetcher has its result, serving every ready socket meanwhile."""
    while fetcher.result is None:
        run_once()
    return fetcher.result


def fetch_all(urls: list[str]) -> list[common.FetchResult]:
    """Fetch every URL, running the loop until each is done before starting the next."""
    try:
        results = []
        for url in urls:
            fetcher = Fetcher(url)
            fetcher.start()
            results.append(run_until_fetched(fetcher))
        return results
    finally:
        common.close_abandoned(selector)


if __name__ == "__main__":
    sys.exit(common.run_by_hand(fetch_all, __spec__.name))
