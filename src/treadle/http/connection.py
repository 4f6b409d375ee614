"""One HTTP/1.1 connection: write a request, parse the response with httptools, stream the body.

Parsing is httptools' (the llhttp parser, in C): it measured 5.5x faster than h11 on an
8 KiB response (see ``docs/http.md``). This module frames messages and decodes gzip and
deflate bodies; it never parses HTTP by hand. HTTP layer: imports treadle's streams,
coordination and errors.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httptools

from treadle.errors import ProtocolError, ReadTimeout, RemoteDisconnected, ResponseTooLarge
from treadle.streams import StreamReader, StreamWriter
from treadle.timeouts import timeout

__all__ = ["HTTPConnection", "Headers", "Response"]

_CHUNK = 65536


class Headers:
    """Response or request headers: ordered (name, value) pairs, looked up case-insensitively."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lowered = name.lower()
        for key, value in self._items:
            if key.lower() == lowered:
                return value
        return default

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
        # gzip: 16 + MAX_WBITS expects a gzip header. "deflate" is sent both zlib-wrapped
        # (as the RFC says) and raw (as some servers do): the first two bytes tell.
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        self._head = b""

    def decode(self, data: bytes, limit: int) -> bytes:
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
        if self._obj is None:
            if self._head:
                raise ProtocolError(f"the {self.encoding} body is truncated")
            return b""
        try:
            return self._obj.flush()
        except zlib.error as exc:
            raise ProtocolError(f"the {self.encoding} body could not be decoded: {exc}") from None


class _ResponseParser:
    """The httptools callbacks for one response: collects status, headers and body chunks."""

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.reason = ""
        self.headers_done = False
        self.message_done = False
        # Read when the head is parsed: httptools forgets it once the message completes.
        self.keep_alive = False
        self.body: list[bytes] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.message_done = True

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise ProtocolError(
                "the server switched protocols, which this client does not support"
            ) from None
        except httptools.HttpParserError as exc:
            raise ProtocolError(f"malformed HTTP response: {exc}") from None


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

    async def send_request(self, head: bytes, body: bytes) -> None:
        self.writer.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.writer.write(body)
        await self.writer.drain()

    async def receive(self, read_timeout: float | None) -> _ResponseParser:
        """Read until the response head is parsed; the parser, with any body bytes so far."""
        parser = _ResponseParser()
        while not parser.headers_done:
            data = await self._read(read_timeout)
            if not data:
                if self.responses and not parser.headers and not parser.reason:
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
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.reusable = False
            if self.responses and isinstance(exc, ConnectionResetError):
                raise _StaleConnection() from exc
            raise

    def close(self) -> None:
        self.reusable = False
        self.writer.close()


class _StaleConnection(Exception):
    """A reused keep-alive connection turned out to be closed before any response byte came."""


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
        self.status: int = parser.parser.get_status_code()
        self.reason = parser.reason
        self.http_version: str = parser.parser.get_http_version()
        self.headers = Headers(parser.headers)
        # The redirect responses that led here, oldest first (when following redirects).
        self.history: list[Response] = []
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
        # No body at all: HEAD, 1xx, 204, 304.
        self._no_body = method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200
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
        """The decoded body, chunk by chunk, as it arrives."""
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
        if not keep_alive:
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
