"""The HTTP/1.1 client: ``Client`` with a keep-alive connection pool per (scheme, host, port).

``Client.request`` connects (or reuses an idle connection), writes the request, and
returns a ``Response`` whose body is read whole (the default) or streamed. Timeouts
cover connecting, each read, and the whole request; caps bound the head and the body.
Redirects are returned as they are unless following is asked for. Every failure is an
``HTTPError`` that gives back the connection's pool permits, and every call counts the
requests it wrote (``requests_sent``). HTTP layer: imports treadle's streams and tls,
coordination and errors.
"""

from __future__ import annotations

import enum
import ssl as ssl_module
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

from treadle.errors import (
    ConnectError,
    HTTPError,
    InvalidURL,
    ReadTimeout,
    RemoteDisconnected,
    TooManyRedirects,
)
from treadle.http.connection import HeadLimits, HTTPConnection, Response, _StaleConnection
from treadle.locks import Semaphore
from treadle.sleeping import check_delay
from treadle.timeouts import timeout
from treadle.tls import open_connection

__all__ = ["DEFAULT_MAX_BODY_SIZE", "DEFAULT_USER_AGENT", "Client"]

DEFAULT_USER_AGENT = "treadle-http/0.1"
# The default cap on a decoded body: large for a page, small enough that a gzip bomb
# stops long before it hurts.
DEFAULT_MAX_BODY_SIZE = 32 * 1024 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

Key = tuple[str, str, int]


class _Unset(enum.Enum):
    """Marks an option left to the client's default (None already means "no limit")."""

    UNSET = enum.auto()


_UNSET = _Unset.UNSET


class _Target:
    """A URL split into what the request needs."""

    def __init__(self, url: str) -> None:
        if not isinstance(url, str):
            raise InvalidURL(f"the URL must be a string, got {url!r}")
        try:
            parts = urllib.parse.urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise InvalidURL(f"only http and https URLs can be requested, got {url!r}")
        if not parts.hostname:
            raise InvalidURL(f"the URL {url!r} has no host")
        self.url = url
        self.scheme = scheme
        self.host = parts.hostname
        self.port = port if port is not None else _DEFAULT_PORTS[scheme]
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if not target.isascii() or any(ch in target for ch in " \r\n\t"):
            # What goes on the wire is ASCII: anything else is UTF-8, percent-encoded;
            # escapes already there are kept as they are.
            target = urllib.parse.quote(target, safe="/?&=%:@!$'()*+,;~-._[]")
        self.target = target
        if not self.host.isascii():
            try:
                self.host = self.host.encode("idna").decode("ascii")
            except UnicodeError as exc:
                raise InvalidURL(f"the host of {url!r} is not a valid domain name: {exc}") from None
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = (
            host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
        )

    @property
    def key(self) -> Key:
        return (self.scheme, self.host, self.port)


def _check_header(name: str, value: str) -> None:
    if any(ch in name for ch in ":\r\n") or any(ch in value for ch in "\r\n"):
        raise ValueError(f"header {name!r}: {value!r} contains a line break or a colon in its name")


class _Pool:
    """Idle keep-alive connections per key, and the limits on connections in use."""

    def __init__(self, max_connections: int, max_per_host: int) -> None:
        self.max_per_host = max_per_host
        self.total = Semaphore(max_connections)
        self.per_host: dict[Key, Semaphore] = {}
        self.idle: dict[Key, list[HTTPConnection]] = {}
        self.closed = False

    def host_limit(self, key: Key) -> Semaphore:
        limit = self.per_host.get(key)
        if limit is None:
            limit = self.per_host[key] = Semaphore(self.max_per_host)
        return limit

    def take_idle(self, key: Key) -> HTTPConnection | None:
        idle = self.idle.get(key)
        while idle:
            connection = idle.pop()
            if connection.looks_reusable():
                return connection
            connection.close()
        return None

    def put_idle(self, connection: HTTPConnection) -> None:
        if self.closed or not connection.reusable or connection.writer.is_closing():
            connection.close()
            return
        idle = self.idle.setdefault(connection.key, [])
        idle.append(connection)
        if len(idle) > self.max_per_host:
            idle.pop(0).close()

    def close(self) -> None:
        self.closed = True
        for idle in self.idle.values():
            for connection in idle:
                connection.close()
        self.idle.clear()


class Client:
    """An HTTP/1.1 client with keep-alive pooling. Use it as ``async with Client() as c:``.

    ``max_connections`` bounds the connections in use at once, ``max_per_host`` those to
    one (scheme, host, port). ``connect_timeout``, ``read_timeout`` (each read) and
    ``timeout`` (the whole request, body included when read whole) are seconds, or
    None for no limit. ``max_body_size`` caps the decoded body (None: no cap).
    ``max_head_size``, ``max_line_size`` and ``max_headers`` bound the response head.
    ``retry_stale`` retries an idempotent request once on a fresh connection when a
    reused one turns out closed before answering (counted in ``requests_sent``).
    Certificates are verified unless ``ssl`` is an SSLContext that says otherwise.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_per_host: int = 10,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 30.0,
        timeout: float | None = 60.0,
        max_body_size: int | None = DEFAULT_MAX_BODY_SIZE,
        max_head_size: int = 65536,
        max_line_size: int = 8192,
        max_headers: int = 100,
        retry_stale: bool = True,
        follow_redirects: bool = False,
        max_redirects: int = 10,
        ssl: ssl_module.SSLContext | None = None,
        headers: Mapping[str, str] | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        for option, count in (
            ("max_connections", max_connections),
            ("max_per_host", max_per_host),
            ("max_head_size", max_head_size),
            ("max_line_size", max_line_size),
            ("max_headers", max_headers),
        ):
            if not isinstance(count, int) or count < 1:
                raise ValueError(f"{option} must be a positive integer, got {count!r}")
        for name, delay in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("timeout", timeout),
        ):
            check_delay(delay, name)
        if max_body_size is not None and (not isinstance(max_body_size, int) or max_body_size < 0):
            raise ValueError(f"max_body_size must be a non-negative integer, got {max_body_size!r}")
        if not isinstance(max_redirects, int) or max_redirects < 0:
            raise ValueError(f"max_redirects must be a non-negative integer, got {max_redirects!r}")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.timeout = timeout
        self.max_body_size = max_body_size
        self.head_limits = HeadLimits(max_head_size, max_line_size, max_headers)
        self.retry_stale = retry_stale
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self._ssl = ssl
        self._headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"}
        for name, value in (headers or {}).items():
            _check_header(name, value)
            self._headers[name] = value
        self._pool = _Pool(max_connections, max_per_host)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every pooled connection; the client can't be used afterwards."""
        self._pool.close()

    def _ssl_context(self) -> ssl_module.SSLContext:
        if self._ssl is None:
            self._ssl = ssl_module.create_default_context()
        return self._ssl

    async def get(self, url: str, **options: Any) -> Response:
        """``request("GET", url, ...)``."""
        return await self.request("GET", url, **options)

    @asynccontextmanager
    async def stream(self, method: str, url: str, **options: Any) -> AsyncIterator[Response]:
        """``async with client.stream("GET", url) as response:`` with the body unread."""
        response = await self.request(method, url, stream=True, **options)
        try:
            yield response
        finally:
            await response.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes = b"",
        timeout: float | _Unset | None = _UNSET,
        follow_redirects: bool | None = None,
        max_body_size: int | _Unset | None = _UNSET,
        stream: bool = False,
        retry_stale: bool | None = None,
    ) -> Response:
        """Send one request; the response (the last one, when following redirects).

        With ``stream=False`` the body is read before returning (``response.content``);
        with ``stream=True`` read it with ``read()``/``aiter_bytes()`` and ``aclose()`` it.
        Every failure raises an ``HTTPError``. ``response.requests_sent`` (or the error's)
        counts the requests this call wrote to the wire.
        """
        if self._pool.closed:
            raise RuntimeError("this Client is closed")
        method = method.upper()
        total = self.timeout if isinstance(timeout, _Unset) else timeout
        check_delay(total, "timeout")
        body_cap = self.max_body_size if isinstance(max_body_size, _Unset) else max_body_size
        follow = self.follow_redirects if follow_redirects is None else follow_redirects
        retry = self.retry_stale if retry_stale is None else retry_stale
        wire = _WireCount()
        try:
            async with _Deadline(total):
                response = await self._send(
                    method, _Target(url), headers, content, body_cap, wire, retry
                )
                try:
                    history: list[Response] = []
                    while follow and response.is_redirect:
                        if len(history) >= self.max_redirects:
                            raise TooManyRedirects(
                                f"more than {self.max_redirects} redirects, starting from {url}"
                            )
                        await response.read()
                        history.append(response)
                        location = response.headers["location"]
                        next_url = urllib.parse.urljoin(response.url, location)
                        if response.status == 303 or (
                            response.status in (301, 302) and method == "POST"
                        ):
                            method, content = "GET", b""
                        response = await self._send(
                            method, _Target(next_url), headers, content, body_cap, wire, retry
                        )
                    response.history = history
                    response.requests_sent = wire.requests
                    if not stream:
                        await response.read()
                except BaseException:
                    # Whatever failed (a body, the deadline, a bad Location), the
                    # connection can't be reused and its permits come back now.
                    response.aclose_now()
                    raise
                return response
        except _DeadlineExceeded:
            error = ReadTimeout(f"the request to {url} took longer than its timeout of {total} s")
            error.requests_sent = wire.requests
            raise error from None
        except HTTPError as exc:
            exc.requests_sent = wire.requests
            raise

    async def _send(
        self,
        method: str,
        target: _Target,
        headers: Mapping[str, str] | None,
        content: bytes,
        max_body_size: int | None,
        wire: _WireCount,
        retry_stale: bool,
    ) -> Response:
        head = self._head(method, target, headers, content)
        key = target.key
        host_limit = self._pool.host_limit(key)
        await host_limit.acquire()
        try:
            await self._pool.total.acquire()
        except BaseException:
            host_limit.release()
            raise
        released = False

        def release(connection: HTTPConnection | None) -> None:
            """Give the permits back (once), and the connection to the pool if any."""
            nonlocal released
            if not released:
                released = True
                if connection is not None:
                    self._pool.put_idle(connection)
                self._pool.total.release()
                host_limit.release()

        try:
            # A reused connection may have been closed by the server while idle; a
            # request that meets that before any response byte is retried once, fresh.
            for attempt in range(2):
                connection = self._pool.take_idle(key) if attempt == 0 else None
                if connection is None:
                    connection = await self._connect(target)
                wire.requests += 1
                try:
                    await connection.send_request(head, content)
                    parser = await connection.receive(
                        self.read_timeout, self.head_limits, head_only=method == "HEAD"
                    )
                except _StaleConnection as exc:
                    connection.close()
                    if retry_stale and method in _IDEMPOTENT and attempt == 0:
                        continue
                    raise RemoteDisconnected(
                        f"{target.host_header} closed a reused connection before responding"
                    ) from exc.__cause__
                except BaseException:
                    connection.close()
                    raise
                response = Response(
                    url=target.url,
                    method=method,
                    parser=parser,
                    connection=connection,
                    read_timeout=self.read_timeout,
                    max_body_size=max_body_size,
                    release=release,
                )
                response.request_head = head
                return response
            raise AssertionError("unreachable: the second attempt always returns or raises")
        except BaseException:
            release(None)
            raise

    async def _connect(self, target: _Target) -> HTTPConnection:
        ssl = self._ssl_context() if target.scheme == "https" else None
        try:
            async with timeout(self.connect_timeout):
                reader, writer = await open_connection(
                    target.host,
                    target.port,
                    ssl=ssl,
                    server_hostname=target.host if ssl else None,
                )
        except TimeoutError:
            raise ConnectError(
                f"connecting to {target.host_header} timed out after {self.connect_timeout} s"
            ) from None
        except ssl_module.SSLError as exc:
            raise ConnectError(f"TLS with {target.host_header} failed: {exc}") from exc
        except OSError as exc:
            # open_connection's message already names the host and the addresses tried.
            raise ConnectError(exc.strerror if exc.errno is not None else str(exc)) from exc
        return HTTPConnection(target.key, reader, writer)

    def _head(
        self, method: str, target: _Target, headers: Mapping[str, str] | None, content: bytes
    ) -> bytes:
        merged = dict(self._headers)
        for name, value in (headers or {}).items():
            _check_header(name, value)
            merged[name] = value
        lines = [f"{method} {target.target} HTTP/1.1", f"Host: {target.host_header}"]
        lowered = {name.lower() for name in merged}
        lines.extend(f"{name}: {value}" for name, value in merged.items() if name.lower() != "host")
        if (content or method in ("POST", "PUT", "PATCH")) and "content-length" not in lowered:
            lines.append(f"Content-Length: {len(content)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _WireCount:
    """How many requests one ``Client.request`` call has written to the wire."""

    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0


class _DeadlineExceeded(Exception):
    """The whole-request deadline passed (turned into ReadTimeout by ``request``)."""


class _Deadline:
    """``async with _Deadline(seconds):`` bounds the whole request; its expiry raises
    ``_DeadlineExceeded`` (a class, not an async generator: it runs per request)."""

    __slots__ = ("_timeout",)

    def __init__(self, seconds: float | None) -> None:
        self._timeout = timeout(seconds)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(exc_type, exc, traceback)
        except TimeoutError as expired:
            exc = expired
        # A read or connect timeout raised inside is a TimeoutError too, and goes on as
        # it is; any other (the deadline's own expiry) becomes _DeadlineExceeded.
        if isinstance(exc, TimeoutError) and not isinstance(exc, ReadTimeout | ConnectError):
            raise _DeadlineExceeded() from None
