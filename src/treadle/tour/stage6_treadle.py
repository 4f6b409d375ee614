"""Stage 6 of the tour: the same program with async/await, on treadle itself.

Stage 5 built its own Future, Task and loop to drive generators. treadle's are the
same ideas grown up, so here ``yield from`` becomes ``await``, stage 5's connect and
read_all become ``treadle.open_connection`` and ``StreamReader.read``, and
``treadle.gather`` plus ``treadle.run`` replace the hand-made Tasks and loop. Imports
the standard library and treadle's public API only.
"""

from __future__ import annotations

import sys
import time
import urllib.parse
from dataclasses import dataclass

import treadle


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


async def fetch(url: str) -> FetchResult:
    """Fetch one URL: stage 5's fetch, with ``await`` wherever it said ``yield from``."""
    host, port, path = parse_url(url)
    started = time.monotonic()
    try:
        reader, writer = await treadle.open_connection(host, port)
    except OSError as error:
        error.filename = url  # every stage's connection error names the URL
        raise
    async with writer:  # closes the connection, and waits for that, on the way out
        writer.write(request_for(host, path))
        response = await reader.read()  # no size: everything until the server closes
    return FetchResult(url, body_of(response), started, time.monotonic())


async def fetch_every(urls: list[str]) -> list[FetchResult]:
    """Run a fetch per URL concurrently; their results in the order of urls."""
    return await treadle.gather(*(fetch(url) for url in urls))


def fetch_all(urls: list[str]) -> list[FetchResult]:
    """Run the fetches on a fresh treadle loop until all of them are done.

    If one fails, ``treadle.run`` cancels the others and closes their connections
    before the error comes out here.
    """
    return treadle.run(fetch_every(urls))


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
