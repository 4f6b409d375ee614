"""What every hello-world HTTP server here shares: the response and request framing.

Requests are GETs without bodies, so each ``\\r\\n\\r\\n`` ends one request. A read
may hold part of a request, one request, or several pipelined ones; servers keep
the unterminated tail and answer every complete request with the same fixed
response. A ``Connection`` header listing ``close`` (in any case, with or without
spaces) in a request closes the connection after the answers; otherwise connections
are kept alive (HTTP/1.1 default).

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

__all__ = ["BACKLOG", "HOST", "MAX_HEAD", "RESPONSE", "asks_to_close", "parse_args", "prepare",
           "ready", "split_requests", "unavailable"]

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
    # One call finds the last request's end and splits there (rfind() and two slices
    # cost more). Every request before it ends at one of the \r\n\r\n in ``heads``.
    heads, found, tail = buf.rpartition(b"\r\n\r\n")
    if not found:
        return 0, False, buf
    # Cheap test first: almost no request mentions "close" at all, in any case. Not "in":
    # bytes' "in" first tries its operand as an integer and builds, then drops, a
    # TypeError (about 2,300 instructions of every request, in every server); and
    # partition(), which takes one argument: on 3.11 find() parses an argument tuple.
    lowered = heads.lower()
    close = asks_to_close(lowered) if lowered.partition(b"close")[1] else False
    return heads.count(b"\r\n\r\n") + 1, close, tail


def asks_to_close(lowered_heads: bytes) -> bool:
    """Whether a ``Connection`` header among ``lowered_heads`` (lower-cased) lists "close".

    Header names and the connection options are case-insensitive; a header is
    ``name:`` at the start of a line, optional spaces or tabs, then a comma-separated
    list of options, each with optional whitespace around it (RFC 9110, 7.6.1).
    """
    for line in lowered_heads.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon and name == b"connection" and any(
                option.strip(b" \t") == b"close" for option in value.split(b",")):
            return True
    return False
