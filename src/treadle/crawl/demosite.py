"""The demo site's server: ``DemoSite`` content served over HTTP/1.1 by treadle's own server.

Requests are framed by httptools' request parser; connections are kept alive; a page
with a ``delay_hint`` is answered after that many seconds, one with a ``trickle`` sent
a piece at a time. The server counts the requests for each path (the site's busy pages
answer by attempt) and the connections it sees at once, so tests (and the curious) can
check a crawler's limits.
Crawler layer: imports treadle's servers and streams.
"""

from __future__ import annotations

import email.utils
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Self

import httptools

from treadle.crawl.demosite_content import DemoSite
from treadle.servers import Server, start_server
from treadle.sleeping import sleep
from treadle.streams import StreamReader, StreamWriter

__all__ = ["DemoSiteServer", "ServerStats"]


@dataclass(slots=True)
class ServerStats:
    """What the server saw: requests, and connections (open now and at most at once)."""

    requests: int = 0
    connections: int = 0
    open_connections: int = 0
    peak_connections: int = 0
    # Requests in progress right now, and the most at once.
    active_requests: int = 0
    peak_requests: int = 0
    paths: list[str] = field(default_factory=list)


class _Request:
    """What the server needs of one request: its target, Host header and keep-alive."""

    __slots__ = ("host", "keep_alive", "target")

    def __init__(self) -> None:
        self.target = b""
        self.host = ""
        self.keep_alive = True


class _RequestParser:
    """httptools callbacks: collects each request of a connection as it completes."""

    def __init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.current = _Request()
        self.ready: list[_Request] = []

    def on_url(self, url: bytes) -> None:
        self.current.target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"host":
            self.current.host = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.current.keep_alive = bool(self.parser.should_keep_alive())

    def on_message_complete(self) -> None:
        self.ready.append(self.current)
        self.current = _Request()


class DemoSiteServer:
    """Serves a ``DemoSite``. ``async with DemoSiteServer(site) as server:`` on a free port."""

    def __init__(
        self, site: DemoSite, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0
    ) -> None:
        if not latency >= 0:
            raise ValueError(f"latency must be zero or more seconds, got {latency!r}")
        self.site = site
        # Mean seconds added to every response, spread evenly over 0 to twice the mean
        # (seeded, so a crawl of the same site sees the same delays), like a real network.
        self.latency = latency
        self._random = random.Random(site.seed)
        self.host = host
        self.port = port
        self.stats = ServerStats()
        # Requests per target so far (the site's busy pages answer by attempt).
        self._attempts: Counter[str] = Counter()
        self._server: Server | None = None

    @property
    def origin(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Start listening (on a free port if ``port`` was 0)."""
        self._server = await start_server(self._serve, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and end the open connections."""
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            server.close_clients()
            await server.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: StreamReader, writer: StreamWriter) -> None:
        stats = self.stats
        stats.connections += 1
        stats.open_connections += 1
        stats.peak_connections = max(stats.peak_connections, stats.open_connections)
        parser = _RequestParser()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                try:
                    parser.parser.feed_data(data)
                except httptools.HttpParserError:
                    writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    return
                while parser.ready:
                    request = parser.ready.pop(0)
                    await self._answer(request, writer)
                    if not request.keep_alive:
                        return
        except ConnectionError:
            return  # the client went away; nothing to answer
        finally:
            stats.open_connections -= 1

    async def _answer(self, request: _Request, writer: StreamWriter) -> None:
        stats = self.stats
        stats.requests += 1
        stats.active_requests += 1
        stats.peak_requests = max(stats.peak_requests, stats.active_requests)
        try:
            target = request.target.decode("latin-1")
            stats.paths.append(target)
            origin = f"http://{request.host}" if request.host else self.origin
            self._attempts[target] += 1
            response = self.site.response_for(
                target, origin=origin, attempt=self._attempts[target]
            )
            delay = response.delay_hint
            if self.latency:
                delay += self._random.uniform(0.0, 2 * self.latency)
            if delay > 0:
                await sleep(delay)
            head = [f"HTTP/1.1 {response.status} {response.reason}"]
            head.extend(f"{name}: {value}" for name, value in response.headers)
            head.append(f"Content-Length: {len(response.body)}")
            head.append(f"Date: {email.utils.formatdate(usegmt=True)}")
            head.append("Server: treadle-demo-site")
            if not request.keep_alive:
                head.append("Connection: close")
            head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
            if response.trickle > 0:
                writer.write(head_bytes)
                await _trickle(writer, response.body, response.trickle)
            else:
                writer.write(head_bytes + response.body)
            await writer.drain()
        finally:
            stats.active_requests -= 1


_TRICKLE_PIECES = 8


async def _trickle(writer: StreamWriter, body: bytes, seconds: float) -> None:
    """Send ``body`` in ``_TRICKLE_PIECES`` pieces spread over ``seconds``."""
    size = -(-len(body) // _TRICKLE_PIECES)
    for start in range(0, len(body), size):
        await sleep(seconds / _TRICKLE_PIECES)
        writer.write(body[start : start + size])
        await writer.drain()
