"""Per-test web sites on loopback for the HTTP client and crawler tests.

A ``Site`` routes request paths to handler coroutines that write raw HTTP/1.1 bytes,
so a test can serve what no well-behaved server would: garbage, a reset (SO_LINGER 0
then close), a body cut short, a response held open until the test says so. The site
records what it saw: connections and requests open at once (and their peaks), the
paths requested in order, and a count per path. Built on treadle's ``start_server``.
Also the keys of a crawl record's JSON Lines line, which the crawler tests check.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import html
import os
import socket
import ssl as ssl_module
import struct
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Self

import treadle
from treadle import CancelledError, StreamReader, StreamWriter, start_server
from treadle.testing import wait_all_tasks_blocked

__all__ = [
    "HTML",
    "RECORD_FIELDS",
    "Exchange",
    "Gate",
    "Handler",
    "Request",
    "Site",
    "Stats",
    "chunked",
    "compress",
    "hang",
    "html_page",
    "not_found",
    "open_fds",
    "page",
    "raw",
    "redirect",
    "refused_port",
    "reset",
    "reset_reused_connections",
    "response",
    "sequence",
    "static",
]

HTML = "text/html; charset=utf-8"

# The keys of a crawl record's JSON Lines line, in their stable order.
RECORD_FIELDS = [
    "url",
    "status",
    "next_url",
    "exception",
    "size",
    "content_type",
    "encoding",
    "num_urls",
    "num_new_urls",
    "started",
    "elapsed",
    "tries",
    "referrer",
    "depth",
    "error_kind",
]


@dataclasses.dataclass(slots=True)
class Request:
    """One request as the site read it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int
    """Which connection of the site it came on (1 for the first accepted)."""

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    @property
    def path(self) -> str:
        """The target without its query."""
        return self.target.partition("?")[0]


@dataclasses.dataclass(slots=True)
class Stats:
    """What the site saw."""

    connections: int = 0
    open_connections: int = 0
    peak_connections: int = 0
    active_requests: int = 0
    peak_requests: int = 0
    # Every request in order of arrival, and the loop time each arrived at.
    requests: list[Request] = dataclasses.field(default_factory=list)
    times: list[float] = dataclasses.field(default_factory=list)
    counts: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def paths(self) -> list[str]:
        """The request targets, in order of arrival."""
        return [request.target for request in self.requests]


class Exchange:
    """The handler's side of one request: write bytes, reset, or close the connection
    (``reader`` is the connection's, to see what the client does next)."""

    def __init__(
        self, site: Site, request: Request, reader: StreamReader, writer: StreamWriter
    ) -> None:
        self.site = site
        self.request = request
        self.reader = reader
        self.writer = writer
        # Set once the handler ends the connection; the site stops serving it.
        self.ended = False

    async def send(self, data: bytes) -> None:
        """Write ``data`` and wait for it to be taken by the socket."""
        self.writer.write(data)
        await self.writer.drain()

    async def wait_client_closed(self) -> bool:
        """Wait until the client sends more or closes; True if it closed (FIN or reset)."""
        try:
            more = await self.reader.read(1)
        except ConnectionError:
            more = b""
        if not more:
            self.ended = True
        return not more

    async def respond(
        self,
        status: int = 200,
        body: bytes | str = b"",
        *,
        content_type: str | None = HTML,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a whole response with a Content-Length."""
        await self.send(response(status, body, content_type=content_type, headers=headers))

    def close(self) -> None:
        """End the connection with an orderly FIN once the written bytes are flushed."""
        self.ended = True
        self.writer.close()

    def reset(self) -> None:
        """End the connection with a TCP reset (SO_LINGER 0, then close)."""
        self.ended = True
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.abort()


Handler = Callable[[Exchange], Awaitable[None]]


class Site:
    """A web site on 127.0.0.1, a free port: ``async with Site({"/": page("/a")}) as site:``.

    ``routes`` maps a request target (path and query) to a handler; unknown targets
    get a 404. With ``keep_alive=False`` the site closes the connection after each
    response (so every request of a client comes on a fresh connection).
    """

    def __init__(
        self,
        routes: dict[str, Handler] | None = None,
        *,
        keep_alive: bool = True,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.routes: dict[str, Handler] = dict(routes or {})
        self.keep_alive = keep_alive
        self.stats = Stats()
        self.port = 0
        self._ssl = ssl
        self._server: treadle.Server | None = None
        # The handlers' connections seen so far (to number them).
        self._connections = 0
        # Called with each request as it arrives (before its handler runs).
        self.on_request: Callable[[Request], None] | None = None

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:port`` (``https`` when serving TLS)."""
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def url(self, target: str = "/") -> str:
        """The absolute URL of ``target`` on this site."""
        return self.origin + target

    def __setitem__(self, target: str, handler: Handler) -> None:
        self.routes[target] = handler

    async def start(self) -> None:
        self._server = await start_server(self._serve, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end every open connection (held handlers are cancelled)."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            server.close_clients()
            await server.wait_closed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: StreamReader, writer: StreamWriter) -> None:
        stats = self.stats
        self._connections += 1
        number = self._connections
        stats.connections += 1
        stats.open_connections += 1
        stats.peak_connections = max(stats.peak_connections, stats.open_connections)
        try:
            while True:
                request = await _read_request(reader, number)
                if request is None:
                    return
                exchange = Exchange(self, request, reader, writer)
                await self._answer(exchange)
                if exchange.ended:
                    return
                closing = (request.header("connection") or "").lower() == "close"
                if closing or not self.keep_alive:
                    writer.close()
                    return
        except (ConnectionError, treadle.IncompleteReadError):
            return  # the client went away
        finally:
            stats.open_connections -= 1

    async def _answer(self, exchange: Exchange) -> None:
        stats = self.stats
        request = exchange.request
        stats.requests.append(request)
        stats.times.append(treadle.get_running_loop().time())
        stats.counts[request.target] += 1
        stats.active_requests += 1
        stats.peak_requests = max(stats.peak_requests, stats.active_requests)
        try:
            if self.on_request is not None:
                self.on_request(request)
            handler = self.routes.get(request.target, not_found)
            await handler(exchange)
        finally:
            stats.active_requests -= 1


async def _read_request(reader: StreamReader, connection: int) -> Request | None:
    """The next request on the connection, or None at a clean EOF between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except treadle.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
    request = Request(method, target, version, headers, b"", connection)
    length = int(request.header("content-length") or 0)
    if length:
        request.body = await reader.readexactly(length)
    return request


# --- building responses ------------------------------------------------------------------


def response(
    status: int = 200,
    body: bytes | str = b"",
    *,
    content_type: str | None = HTML,
    headers: Iterable[tuple[str, str]] = (),
    reason: str = "Whatever",
) -> bytes:
    """A whole HTTP/1.1 response with a Content-Length."""
    if isinstance(body, str):
        body = body.encode()
    lines = [f"HTTP/1.1 {status} {reason}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(f"{name}: {value}" for name, value in headers)
    names = {name.lower() for name, _ in headers}
    if "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(body: bytes, size: int = 7) -> bytes:
    """``body`` in the chunked transfer coding, ``size`` bytes a chunk."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


def compress(body: bytes, coding: str) -> bytes:
    """``body`` compressed as ``gzip``, ``deflate`` (zlib-wrapped) or ``raw-deflate``."""
    if coding == "gzip":
        return gzip.compress(body)
    if coding == "deflate":
        return zlib.compress(body)
    if coding == "raw-deflate":
        packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return packer.compress(body) + packer.flush()
    raise ValueError(coding)


def html_page(*hrefs: str, title: str = "page", extra: str = "") -> str:
    """An HTML page linking to each of ``hrefs``."""
    links = "".join(f'<a href="{html.escape(href)}">link {i}</a>\n' for i, href in enumerate(hrefs))
    return f"<!doctype html><title>{title}</title><body>\n{links}{extra}</body>\n"


# --- handlers ----------------------------------------------------------------------------


async def not_found(exchange: Exchange) -> None:
    await exchange.respond(404, "not here", content_type="text/plain")


def page(*hrefs: str, extra: str = "") -> Handler:
    """A handler answering an HTML page that links to ``hrefs``."""

    async def handler(exchange: Exchange) -> None:
        await exchange.respond(200, html_page(*hrefs, extra=extra))

    return handler


def static(
    status: int = 200,
    body: bytes | str = b"",
    *,
    content_type: str | None = HTML,
    headers: Iterable[tuple[str, str]] = (),
) -> Handler:
    """A handler answering the same response each time."""
    data = response(status, body, content_type=content_type, headers=headers)

    async def handler(exchange: Exchange) -> None:
        await exchange.send(data)

    return handler


def reset_reused_connections(answer: Handler) -> Handler:
    """A handler letting ``answer`` answer the first request of each connection and
    resetting the connection on any later one (one handler may serve several paths)."""
    answered: set[int] = set()

    async def handler(exchange: Exchange) -> None:
        if exchange.request.connection in answered:
            exchange.reset()
            return
        answered.add(exchange.request.connection)
        await answer(exchange)

    return handler


def raw(data: bytes, *, then: str = "close") -> Handler:
    """A handler writing ``data`` as is, then ``"close"``, ``"reset"`` or ``"keep"``."""

    async def handler(exchange: Exchange) -> None:
        if data:
            await exchange.send(data)
        if then == "close":
            exchange.close()
        elif then == "reset":
            exchange.reset()

    return handler


def redirect(location: str, status: int = 302) -> Handler:
    """A handler answering a redirect to ``location``."""
    return static(status, b"", content_type=None, headers=[("Location", location)])


def sequence(*handlers: Handler) -> Handler:
    """A handler that answers its n-th request with ``handlers[n]`` (the last one after)."""
    calls = 0

    async def handler(exchange: Exchange) -> None:
        nonlocal calls
        chosen = handlers[min(calls, len(handlers) - 1)]
        calls += 1
        await chosen(exchange)

    return handler


async def reset(exchange: Exchange) -> None:
    """Reset the connection without answering."""
    exchange.reset()


async def hang(exchange: Exchange) -> None:
    """Never answer (until the site closes and cancels the handler)."""
    await treadle.get_running_loop().create_future()


class Gate:
    """Holds requests until the test lets them through.

    ``hold(handler)`` wraps a handler so that it first waits at the gate;
    ``held_pages(count)`` is a site whose root links to ``count`` held pages. ``open()``
    lets everyone through from then on; ``release()`` lets through only those waiting
    now. ``pulse()`` is a task body that releases the waiting batch each time every
    task is blocked: the client under test has sent all it will send, so the server
    sees exactly as many requests at once as the client allows.
    """

    def __init__(self) -> None:
        self._event = treadle.Event()
        # Set when a request reaches the gate (wakes ``pulse``).
        self._arrived = treadle.Event()
        self._opened = False
        self.waiting = 0

    def hold(self, handler: Handler) -> Handler:
        async def held(exchange: Exchange) -> None:
            if not self._opened:
                self.waiting += 1
                self._arrived.set()
                try:
                    await self._event.wait()
                finally:
                    self.waiting -= 1
            await handler(exchange)

        return held

    def held_pages(self, count: int) -> dict[str, Handler]:
        """A site's routes: ``/`` links to ``/slow/0`` ... ``/slow/<count - 1>``, pages
        that wait at this gate."""
        slow = [f"/slow/{i}" for i in range(count)]
        return {"/": page(*slow)} | {path: self.hold(page()) for path in slow}

    def release(self) -> None:
        event, self._event = self._event, treadle.Event()
        event.set()

    def open(self) -> None:
        self._opened = True
        self._event.set()

    @contextlib.asynccontextmanager
    async def pulsing(self) -> AsyncIterator[None]:
        """Run ``pulse`` for the duration of the block; open the gate at its end."""
        task = treadle.create_task(self.pulse(), name="gate-pulse")
        try:
            yield
        finally:
            task.cancel()
            await treadle.gather(task, return_exceptions=True)
            self.open()

    async def pulse(self) -> None:
        try:
            while True:
                # Nothing held yet: wait for a request to reach the gate.
                await self._arrived.wait()
                await wait_all_tasks_blocked()
                self._arrived.clear()
                self.release()
        except CancelledError:
            self.open()
            raise


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """``with refused_port() as port:`` a port on 127.0.0.1 where nothing listens, bound
    and never listening for the whole block. Held, not let go: a port let go could be
    taken and answered by another process (other test suites share the machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))
