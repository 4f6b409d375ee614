"""Stage 1 of the tour: blocking sockets, one URL after another.

The baseline the later stages improve on. ``fetch`` connects, sends a GET and reads
until the server closes the connection, and the whole program waits at every step,
so N slow URLs take N times as long as one. Standard library only.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.parse
from dataclasses import dataclass


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


def fetch(url: str) -> FetchResult:
    """Fetch one URL, blocking until the whole response has arrived."""
    host, port, path = parse_url(url)
    started = time.monotonic()
    with socket.socket() as sock:
        # connect_ex returns an error number instead of raising, so the error we
        # raise can name the URL.
        error = sock.connect_ex((host, port))
        if error:
            raise OSError(error, os.strerror(error), url)
        sock.sendall(request_for(host, path))
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return FetchResult(url, body_of(b"".join(chunks)), started, time.monotonic())


def fetch_all(urls: list[str]) -> list[FetchResult]:
    """Fetch every URL, each one only after the one before has finished."""
    return [fetch(url) for url in urls]


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
