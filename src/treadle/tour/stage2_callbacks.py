"""Stage 2 of the tour: non-blocking sockets, a selector and callbacks.

Stage 1 waited inside connect and recv. Here each socket is non-blocking, the
selector says when one is ready, and what to do next lives in a callback; a loop
(``run_once``, again and again) runs the callbacks. Still one URL at a time, so it
is no faster yet: stage 3 collects the reward. Standard library only.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import time
import urllib.parse
from dataclasses import dataclass
from selectors import EVENT_READ, EVENT_WRITE

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
        body = body_of(b"".join(self.chunks))
        self.result = FetchResult(self.url, body, self.started, time.monotonic())


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
