"""Stage 1 of the tour: blocking sockets, one URL after another.

The baseline the later stages improve on. ``fetch`` connects, sends a GET and reads
until the server closes the connection, and the whole program waits at every step,
so N slow URLs take N times as long as one. Standard library only, plus the tour's
``common`` module (URLs, requests, records, the command line).
"""

from __future__ import annotations

import os
import socket
import sys
import time

from treadle.tour import common


def fetch(url: str) -> common.FetchResult:
    """Fetch one URL, blocking until the whole response has arrived."""
    host, port, path = common.parse_url(url)
    started = time.monotonic()
    with socket.socket() as sock:
        # connect_ex returns an error number instead of raising, so the error we
        # raise can name the URL.
        error = sock.connect_ex((host, port))
        if error:
            raise OSError(error, os.strerror(error), url)
        sock.sendall(common.request_for(host, path))
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return common.record_fetch(url, started, b"".join(chunks))


def fetch_all(urls: list[str]) -> list[common.FetchResult]:
    """Fetch every URL, each one only after the one before has finished."""
    return [fetch(url) for url in urls]


if __name__ == "__main__":
    sys.exit(common.run_by_hand(fetch_all, __spec__.name))
