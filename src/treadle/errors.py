"""Every exception treadle raises of its own, in one leaf module.

This module imports nothing from treadle. Where asyncio has an exception of the same
meaning, the name and base class match it; timeouts raise the builtin ``TimeoutError``.
"""

from __future__ import annotations

__all__ = [
    "CancelledError",
    "ConnectError",
    "HTTPError",
    "IncompleteReadError",
    "InvalidStateError",
    "InvalidURL",
    "LimitOverrunError",
    "ProtocolError",
    "QueueEmpty",
    "QueueFull",
    "QueueShutDown",
    "ReadTimeout",
    "RemoteDisconnected",
    "ResponseTooLarge",
    "SitemapError",
    "TooManyRedirects",
]


class CancelledError(BaseException):
    """The task or future was cancelled.

    A ``BaseException`` (as in asyncio since 3.8) so that ``except Exception`` in user
    code does not swallow a cancellation by accident.
    """

    # No slots of its own, so its layout is BaseException's: ``treadle.aio`` makes
    # asyncio's CancelledError a subclass of this one (a class's bases can be swapped
    # only between bases of the same layout), so ``except CancelledError`` in treadle's
    # code also catches the cancellations of asyncio's tasks.
    __slots__ = ()


class InvalidStateError(Exception):
    """A future was used in a way its state does not allow, such as setting a result twice."""


class IncompleteReadError(EOFError):
    """The stream ended before the expected number of bytes arrived.

    ``partial`` holds the bytes that did arrive; ``expected`` the count asked for
    (``None`` when reading up to a separator).
    """

    def __init__(self, partial: bytes, expected: int | None) -> None:
        wanted = "undefined" if expected is None else repr(expected)
        super().__init__(f"{len(partial)} bytes read on a total of {wanted} expected bytes")
        self.partial = partial
        self.expected = expected

    def __reduce__(self) -> tuple[type[IncompleteReadError], tuple[bytes, int | None]]:
        return type(self), (self.partial, self.expected)


class LimitOverrunError(Exception):
    """A line or separator search ran past the stream's buffer limit.

    ``consumed`` is how many bytes are buffered and would have to be consumed.
    """

    def __init__(self, message: str, consumed: int) -> None:
        super().__init__(message)
        self.consumed = consumed

    def __reduce__(self) -> tuple[type[LimitOverrunError], tuple[str, int]]:
        return type(self), (self.args[0], self.consumed)


class QueueEmpty(Exception):
    """``get_nowait()`` found the queue empty."""


class QueueFull(Exception):
    """``put_nowait()`` found the queue full."""


class QueueShutDown(Exception):
    """The queue was shut down: no more puts, and no more gets once it is empty."""


class HTTPError(Exception):
    """Base of every error the HTTP client raises.

    ``requests_sent`` counts the requests the failed call wrote to the wire (redirects
    and the client's transparent retry of a stale connection included), so a caller's
    own retry loop can bound what reaches the server.
    """

    requests_sent: int = 0


class InvalidURL(HTTPError, ValueError):
    """The URL can't be requested: not http or https, no host, or malformed."""


class ConnectError(HTTPError):
    """Could not connect (or finish the TLS handshake) within the connect timeout."""


class ReadTimeout(HTTPError, TimeoutError):
    """The server sent nothing for a whole read timeout, or the request overran its total."""


class ProtocolError(HTTPError):
    """The server's response broke HTTP/1.1 (or the connection closed mid-response)."""


class RemoteDisconnected(ProtocolError, ConnectionError):
    """The server closed the connection before the response was complete.

    A ``ConnectionError`` too, so code that retries connection failures retries this.
    """


class ResponseTooLarge(HTTPError):
    """The response body is larger than the client's ``max_body_size``."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit

    def __reduce__(self) -> tuple[type[ResponseTooLarge], tuple[str, int]]:
        return type(self), (self.args[0], self.limit)


class TooManyRedirects(HTTPError):
    """Following redirects went past the client's ``max_redirects``."""


class SitemapError(ValueError):
    """A sitemap could not be read: not well-formed XML, a refused DOCTYPE, too large."""
