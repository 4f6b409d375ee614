"""What every hello-world HTTP server here shares: the response and request framing.

Requests are GETs without bodies, so each ``\\r\\n\\r\\n`` ends one request. A read
may hold part of a request, one request, or several pipelined ones; servers keep
the unterminated tail and answer every complete request with the same fixed
response. ``Connection: close`` in a request closes the connection after the
answers; otherwise connections are kept alive (HTTP/1.1 default).

Also re-exports the server helpers from ``../echo/_serverlib.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "echo"))

from _serverlib import (
    BACKLOG,
    HOST,
    parse_args,
    prepare,
    ready,
    unavailable,
)

__all__ = ["BACKLOG", "HOST", "MAX_HEAD", "RESPONSE", "parse_args", "prepare", "ready",
           "split_requests", "unavailable"]

BODY = b"Hello, World!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
MAX_HEAD = 64 * 1024  # a longer unterminated request head is an error: close


def split_requests(buf: bytes) -> tuple[int, bool, bytes]:
    """Count complete request heads in ``buf``.

    Returns (number of complete requests, whether one asked to close, unconsumed tail).
    """
    count = buf.count(b"\r\n\r\n")
    if not count:
        return 0, False, buf
    end = buf.rfind(b"\r\n\r\n") + 4
    heads = buf[:end] if end < len(buf) else buf
    # Cheap test first: almost no request mentions "close" at all. (find(), not "in":
    # bytes' "in" first tries its operand as an integer and builds, then drops, a
    # TypeError: about 2,300 instructions of every request, in every server.)
    close = heads.find(b"lose") >= 0 and b"connection: close" in heads.lower()
    return count, close, buf[end:]
