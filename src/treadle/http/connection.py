"""One HTTP/1.1 connection: write a request, parse the response with httptools, stream the body.

Parsing is httptools' (the llhttp parser, in C): it measured 5.5x faster than h11 on an
8 KiB response (see ``docs/http.md``). This module frames messages and decodes gzip and
deflate bodies; it never parses HTTP by hand. It also guards what a hostile server may
send: heads are bounded (``HeadLimits``), interim 1xx heads are skipped, and a connection
that carried bytes past the end of its response is never reused. HTTP layer: imports
treadle's streams, coordination and errors.
"""

from __future__ import annotations

import dataclasses
import socket
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httptools

from treadle.errors import ProtocolError, ReadTimeout, RemoteDisconnected, ResponseTooLarge
from treadle.streams import StreamReader, StreamWriter
from treadle.timeouts import timeout

__all__ = ["HTTPConnection", "HeadLimits", "Headers", "Response"]

_CHUNK = 65536


class Headers:
    """Response or request headers: ordered (name, value) pairs, looked up case-insensitively."""

    __slots__ = ("_first", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items)
        # The first value of each lower-cased name, made at the first look-up (a client
        # looks up several names per response). Invariant: _items never changes.
        self._first: dict[str, str] | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        first = self._first
        if first is None:
            first = {}
            for key, value in self._items:
                first.setdefault(key.lower(), value)
            self._first = first
        return first.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        lowered = name.lower()
        return [value for key, value in self._items if key.lower() == lowered]

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def items(self) -> list[tuple[str, str]]:
        """Every (name, value) pair, in order."""
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class _Decoder:
    """Undoes a Content-Encoding of gzip or deflate, never producing more than ``limit`` bytes."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # Whether any compressed byte came (an empty body, as after HEAD, decodes to b"").
        self._fed = False
        # gzip: 16 + MAX_WBITS expects a gzip header. "deflate" is sent both zlib-wrapped
        # (as the RFC says) and raw (as some servers do): the first two bytes tell.
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        self._head = b""

    def decode(self, data: bytes, limit: int) -> bytes:
        self._fed = self._fed or bool(data)
        try:
            if self._obj is None:
                self._head += data
                if len(self._head) < 2:
                    return b""
                data, self._head = self._head, b""
                zlib_wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
                self._obj = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
            return self._obj.decompress(data, limit)
        except zlib.error as exc:
            raise ProtocolError(f"the {self.encoding} body could not be decoded: {exc}") from None

    def has_unconsumed(self) -> bool:
        return self._obj is not None and bool(self._obj.unconsumed_tail)

    def flush(self) -> bytes:
        """The last decoded bytes; a ProtocolError if the compressed stream did not end."""
        if not self._fed:
            return b""
        if self._obj is None:
            raise ProtocolError(f"the {self.encoding} body is truncated")
        try:
            tail = self._obj.flush()
        except zlib.error as exc:
            raise ProtocolError(f"the {self.encoding} body could not be decoded: {exc}") from None
        if not self._obj.eof:
            raise ProtocolError(
                f"the {self.encoding} body is truncated: the response ended before the "
                "compressed stream did"
            )
        return tail


@dataclasses.dataclass(frozen=True, slots=True)
class HeadLimits:
    """Bounds on a response head, so a server can't grow the client without end."""

    max_head_size: int
    """Bytes of head (interim 1xx heads included) read before the head must have ended."""
    max_line_size: int
    """Bytes of the status line or of one header line."""
    max_headers: int
    """Header fields in one head."""

    def refuse(self, what: str, option: str, limit: int) -> ProtocolError:
        """The error for a head over one of the limits, saying how to raise it."""
        return ProtocolError(
            f"the response head has {what}, more than {option} ({limit}); if the server "
            f"is trusted, raise the limit with Client({option}=...)"
        )


class _Overflow(Exception):
    """Bytes came after the end of the response (stops the parser; never leaves this module)."""


class _ResponseParser:
    """The httptools callbacks for one response: collects status, headers and body chunks.

    Interim heads (1xx but 101) are parsed and forgotten. Anything after the end of the
    final response sets ``overflow`` and is dropped with the connection.
    """

    def __init__(self, limits: HeadLimits, *, head_only: bool) -> None:
        self.limits = limits
        # A response to HEAD: it has no body, whatever its head says.
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.reason = ""
        self.headers_done = False
        self.message_done = False
        # Read when the head is parsed: httptools forgets it once the message completes.
        self.keep_alive = False
        self.body: list[bytes] = []
        # Set when bytes followed the end of the response: the connection can't be reused.
        self.overflow = False
        # Bytes fed before the final head ended (interim heads included).
        self.head_bytes = 0
        # Bytes of header fields parsed so far (interim heads included).
        self.field_bytes = 0
        # Set between the end of an interim head and the end of its (empty) message.
        self._interim = False
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        if self.message_done:
            raise _Overflow()

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")
        if len(self.reason) > self.limits.max_line_size:
            limit = self.limits.max_line_size
            raise self.limits.refuse("a longer status line", "max_line_size", limit)

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self.limits
        if len(self.headers) >= limits.max_headers:
            raise limits.refuse("more header fields", "max_headers", limits.max_headers)
        if len(name) + len(value) + 2 > limits.max_line_size:
            raise limits.refuse(
                f"a header line of {len(name) + len(value) + 2} bytes",
                "max_line_size",
                limits.max_line_size,
            )
        if value.endswith(b"\t") and name.lower() == b"transfer-encoding":
            # llhttp takes "chunked<TAB>" for an unknown coding and would read the chunk
            # framing as a body delimited by close: refuse rather than misframe.
            raise ProtocolError(
                "malformed HTTP response: the Transfer-Encoding value ends in a tab, "
                "which the parser can't frame reliably"
            )
        # A field value excludes the whitespace around it (RFC 9110 5.5).
        self.headers.append((name.decode("latin-1"), value.decode("latin-1").strip(" \t")))
        # Counted exactly here too: a whole oversized head may come in a single read.
        self.field_bytes += len(name) + len(value) + 4
        if self.field_bytes > limits.max_head_size:
            raise limits.refuse(
                f"{self.field_bytes} bytes of fields", "max_head_size", limits.max_head_size
            )

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # 100 Continue, 103 Early Hints...: the real answer follows (RFC 9110 15.2).
            self._interim = True
            return
        self.status = status
        self.headers_done = True
        self.keep_alive = bool(self.parser.should_keep_alive())
        if self.head_only:
            self.message_done = True

    def on_body(self, body: bytes) -> None:
        if self.message_done:  # a body after the head of a HEAD response
            raise _Overflow()
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            self.headers = []
            self.reason = ""
            return
        self.message_done = True

    def feed(self, data: bytes) -> None:
        """Parse ``data``: a ProtocolError if it breaks HTTP/1.1 or a head limit."""
        if not self.headers_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise ProtocolError(
                "the server switched protocols, which this client does not support"
            ) from None
        except httptools.HttpParserError as exc:
            cause = exc.__context__
            if isinstance(cause, _Overflow) or self.message_done:
                self.overflow = True
                return
            if isinstance(cause, ProtocolError):
                raise cause from None
            raise ProtocolError(f"malformed HTTP response: {exc}") from None
        if not self.headers_done and self.head_bytes > self.limits.max_head_size:
            raise self.limits.refuse(
                f"{self.head_bytes} bytes without its end",
                "max_head_size",
                self.limits.max_head_size,
            )


class HTTPConnection:
    """A keep-alive HTTP/1.1 connection to one (scheme, host, port)."""

    def __init__(
        self, key: tuple[str, str, int], reader: StreamReader, writer: StreamWriter
    ) -> None:
        self.key = key
        self.reader = reader
        self.writer = writer
        # How many responses this connection has carried (a reused one may have gone stale).
        self.responses = 0
        self.reusable = True

    def __repr__(self) -> str:
        scheme, host, port = self.key
        return f"<HTTPConnection {scheme}://{host}:{port} responses={self.responses}>"

    def looks_reusable(self) -> bool:
        """Whether this idle connection may carry another request.

        Not if the server closed it or sent anything unasked while it was idle (a late
        body after a HEAD, a second answer). Over plain TCP the socket is peeked
        without blocking; TLS can't be peeked (session tickets arrive unasked).
        """
        if not self.reusable or self.writer.is_closing():
            return False
        if self.reader.at_eof() or self.reader.buffered() or self.reader.exception():
            return False
        sock = self.writer.get_extra_info("socket")
        if self.key[0] != "http" or sock is None:
            return True
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True  # nothing to read: the healthy case
        except OSError:
            return False
        return False  # b"" (the server closed it) or bytes nobody asked for

    async def send_request(self, head: bytes, body: bytes) -> None:
        """Write one request; a RemoteDisconnected (or _StaleConnection) if the socket broke."""
        try:
            self.writer.write(head + body if len(body) < 65536 else head)
            if len(body) >= 65536:
                self.writer.write(body)
            await self.writer.drain()
        except OSError as exc:
            self.reusable = False
            if self.responses:
                raise _StaleConnection() from exc
            raise RemoteDisconnected(
                f"the connection broke while sending the request: {exc}"
            ) from exc

    async def receive(
        self, read_timeout: float | None, limits: HeadLimits, *, head_only: bool
    ) -> _ResponseParser:
        """Read until the final response head is parsed; the parser, with any body bytes so far.

        On a reused connection, a close or reset before any response byte raises
        ``_StaleConnection`` (the caller may retry on a fresh connection).
        """
        parser = _ResponseParser(limits, head_only=head_only)
        while not parser.headers_done:
            try:
                data = await self._read(read_timeout)
            except RemoteDisconnected as exc:
                if self.responses and not parser.head_bytes:
                    raise _StaleConnection() from exc.__cause__
                raise
            if not data:
                self.reusable = False
                if self.responses and not parser.head_bytes:
                    raise _StaleConnection()
                raise RemoteDisconnected("the server closed the connection before responding")
            parser.feed(data)
        return parser

    async def _read(self, read_timeout: float | None) -> bytes:
        try:
            async with timeout(read_timeout):
                return await self.reader.read(_CHUNK)
        except TimeoutError:
            self.reusable = False
            raise ReadTimeout(f"no data from the server for {read_timeout} s") from None
        except OSError as exc:
            self.reusable = False
            raise RemoteDisconnected(
                f"the connection broke while reading the response: {exc!r}"
            ) from exc

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


class _StaleConnection(Exception):
    """A reused keep-alive connection turned out to be closed before any response byte came.

    Internal: the client retries or raises RemoteDisconnected; never seen by callers.
    """


class Response:
    """An HTTP response: status, headers, and a body read whole or streamed.

    ``await response.read()`` returns the decoded body (gzip and deflate undone); or
    iterate ``response.aiter_bytes()``. The connection returns to the pool once the body
    has been read to the end, or is closed by ``aclose()``.
    """

    def __init__(
        self,
        *,
        url: str,
        method: str,
        parser: _ResponseParser,
        connection: HTTPConnection,
        read_timeout: float | None,
        max_body_size: int | None,
        release: Any,
    ) -> None:
        self.url = url
        self.method = method
        self.status: int = parser.status
        self.reason = parser.reason
        self.http_version: str = parser.parser.get_http_version()
        self.headers = Headers(parser.headers)
        # The redirect responses that led here, oldest first (when following redirects).
        self.history: list[Response] = []
        # Requests the call wrote to the wire for this response (retries and redirects
        # included); set by the client.
        self.requests_sent = 1
        # The head of the request this response answers, as written to the wire (set by
        # the client; a crawler archiving the exchange records it).
        self.request_head = b""
        self._parser = parser
        self._connection: HTTPConnection | None = connection
        self._read_timeout = read_timeout
        self._max_body_size = max_body_size
        self._release = release
        self._content: bytes | None = None
        self._raw_size = 0
        self._decoded_size = 0
        encoding = (self.headers.get("content-encoding") or "").strip().lower()
        self._decoder = _Decoder(encoding) if encoding in ("gzip", "deflate", "x-gzip") else None
        if self._decoder is not None and encoding == "x-gzip":
            self._decoder = _Decoder("gzip")
        # No body at all: HEAD, 204, 304 (interim 1xx heads never get here).
        self._no_body = method == "HEAD" or self.status in (204, 304)
        # Body delimited by the connection closing (no length, not chunked).
        self._until_close = (
            not self._no_body
            and "content-length" not in self.headers
            and "chunked" not in (self.headers.get("transfer-encoding") or "").lower()
        )
        if self._no_body:
            self._finish(keep_alive=parser.keep_alive)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} {self.url}>"

    @property
    def content_type(self) -> str | None:
        """The Content-Type header, if any."""
        return self.headers.get("content-type")

    @property
    def is_redirect(self) -> bool:
        """Whether this is a redirect with a Location to follow."""
        return self.status in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def content(self) -> bytes:
        """The body, once ``read()`` has returned it."""
        if self._content is None:
            raise RuntimeError("the body has not been read yet: await response.read() first")
        return self._content

    @property
    def bytes_received(self) -> int:
        """How many body bytes came over the wire (before decoding)."""
        return self._raw_size

    async def read(self) -> bytes:
        """The whole decoded body (cached after the first call)."""
        if self._content is None:
            self._content = b"".join([chunk async for chunk in self.aiter_bytes()])
        return self._content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The decoded body, chunk by chunk, as it arrives.

        Any failure (or leaving early) closes the connection and gives back its permits.
        """
        try:
            async for chunk in self._aiter_decoded():
                yield chunk
        except BaseException:
            self.aclose_now()
            raise

    async def _aiter_decoded(self) -> AsyncIterator[bytes]:
        async for raw in self._aiter_raw():
            if self._decoder is None:
                self._count_decoded(len(raw))
                yield raw
                continue
            limit = self._room()
            data = self._decoder.decode(raw, limit)
            self._count_decoded(len(data))
            if self._decoder.has_unconsumed():
                self._too_large()
            if data:
                yield data
        if self._decoder is not None:
            tail = self._decoder.flush()
            self._count_decoded(len(tail))
            if tail:
                yield tail

    def _room(self) -> int:
        if self._max_body_size is None:
            return 0  # zlib: no limit
        return self._max_body_size - self._decoded_size + 1

    def _count_decoded(self, size: int) -> None:
        self._decoded_size += size
        if self._max_body_size is not None and self._decoded_size > self._max_body_size:
            self._too_large()

    def _too_large(self) -> None:
        assert self._max_body_size is not None
        self.aclose_now()
        raise ResponseTooLarge(
            f"the response body of {self.url} is larger than max_body_size "
            f"({self._max_body_size} bytes)",
            self._max_body_size,
        )

    async def _aiter_raw(self) -> AsyncIterator[bytes]:
        parser = self._parser
        while True:
            while parser.body:
                chunk = parser.body.pop(0)
                self._raw_size += len(chunk)
                yield chunk
            if parser.message_done or self._connection is None:
                break
            data = await self._connection._read(self._read_timeout)
            if not data:
                if self._until_close:
                    self._finish(keep_alive=False)
                    return
                self.aclose_now()
                raise RemoteDisconnected(
                    f"the server closed the connection mid-body after {self._raw_size} bytes"
                    + (
                        f" of {self.headers.get('content-length')}"
                        if "content-length" in self.headers
                        else ""
                    )
                )
            parser.feed(data)
        if parser.message_done:
            self._finish(keep_alive=parser.keep_alive)

    def _finish(self, *, keep_alive: bool) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        connection.responses += 1
        if not keep_alive or self._parser.overflow:
            connection.reusable = False
        self._release(connection)

    def aclose_now(self) -> None:
        """Drop the rest of the body and close the connection (it can't be reused)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()
            self._release(connection)

    async def aclose(self) -> None:
        """Release the connection: back to the pool if the body was read, else closed."""
        self.aclose_now()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
