"""What every stage of the tour needs and none of them is about.

URL parsing, the GET request, the per-URL record with its body and its start and
finish times, closing what a failed fetch left open, and running a stage by hand from
the command line. Keeping them here leaves each stage file with its idea. Standard
library only: the stages import it (and name what they use as ``common.<name>``, so a
reader sees which calls are not the lesson), and it imports nothing from treadle.
"""

from __future__ import annotations

import selectors
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
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


def _body_of(response: bytes) -> bytes:
    """Everything after the blank line that ends an HTTP response's headers."""
    _headers, blank_line, body = response.partition(b"\r\n\r\n")
    if not blank_line:
        raise ValueError("the response has no blank line after its headers")
    return body


def record_fetch(url: str, started: float, response: bytes) -> FetchResult:
    """The record of a fetch that began at ``started`` and has just read all of response."""
    return FetchResult(url, _body_of(response), started, time.monotonic())


def close_abandoned(selector: selectors.BaseSelector) -> None:
    """After a failure, close the sockets other fetches left registered with selector."""
    for key in list(selector.get_map().values()):
        selector.unregister(key.fileobj)
        if isinstance(key.fileobj, socket.socket):
            key.fileobj.close()


# --- Running a stage by hand -------------------------------------------------------


def _describe(error: Exception) -> str:
    """One line saying what went wrong, for the command line."""
    if isinstance(error, ConnectionRefusedError) and error.filename:
        return f"{error.filename} refused the connection (ConnectionRefusedError)"
    return f"{error} ({type(error).__name__})"


def run_by_hand(
    fetch_all: Callable[[list[str]], Sequence[FetchResult]],
    module: str,
    argv: list[str] | None = None,
) -> int:
    """``python -m <module> URL...``: fetch the URLs, print one line each and the total.

    Returns the exit status: 0, 1 when a fetch failed (one line on stderr), or 2 when
    no URL was given.
    """
    urls = sys.argv[1:] if argv is None else argv
    if not urls:
        print(f"usage: python -m {module} URL...", file=sys.stderr)
        return 2
    began = time.monotonic()
    try:
        results = fetch_all(urls)
    except (OSError, ValueError) as error:
        print(f"error: {_describe(error)}", file=sys.stderr)
        return 1
    for result in results:
        start, end = result.started - began, result.finished - began
        print(f"{result.url}  {len(result.body)} bytes  {start:.2f}s -> {end:.2f}s")
    print(f"fetched {len(results)} URL(s) in {time.monotonic() - began:.2f}s")
    return 0
