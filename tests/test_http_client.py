"""The HTTP client over real sockets: framing, decoding, pooling, redirects, timeouts, faults.

Each test serves a small site on 127.0.0.1 (``tests/crawlsite.py``) whose handlers write
raw HTTP/1.1, so a test can send what a real server rarely does: garbage, a reset, a
body cut short, a gzip bomb. Held responses wait on events, never on sleeps; the few
timeout tests use real timeouts of 0.2 s because real sockets are involved.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
import trustme
from crawlsite import (
    Exchange,
    Gate,
    Request,
    Site,
    chunked,
    compress,
    hang,
    page,
    raw,
    redirect,
    refused_port,
    response,
    static,
)

import treadle
from treadle import CancelledError
from treadle.errors import HTTPError
from treadle.http import (
    DEFAULT_USER_AGENT,
    Client,
    ConnectError,
    Headers,
    InvalidURL,
    ProtocolError,
    ReadTimeout,
    RemoteDisconnected,
    ResponseTooLarge,
    TooManyRedirects,
)
from treadle.testing import wait_all_tasks_blocked

BODY = b"<p>hello, treadle</p>\n" * 50


# --- framing and decoding ------------------------------------------------------------------


async def test_get_with_content_length() -> None:
    routes = {"/hello?x=1": static(200, BODY, headers=[("X-Twice", "a")])}
    async with Site(routes) as site, Client() as client:
        r = await client.get(site.url("/hello?x=1"))
    assert (r.status, r.reason, r.http_version) == (200, "Whatever", "1.1")
    assert r.content == BODY and r.bytes_received == len(BODY)
    assert r.content_type == "text/html; charset=utf-8"
    assert r.headers["content-length"] == str(len(BODY)) and r.headers["X-TWICE"] == "a"
    assert r.url == site.url("/hello?x=1") and r.history == []
    [request] = site.stats.requests
    assert (request.method, request.target, request.version) == ("GET", "/hello?x=1", "HTTP/1.1")
    assert request.header("host") == f"127.0.0.1:{site.port}"
    assert request.header("user-agent") == DEFAULT_USER_AGENT
    assert request.header("accept-encoding") == "gzip, deflate"
    assert request.header("content-length") is None


async def test_chunked_body_with_extensions_and_trailers() -> None:
    wire = chunked(BODY, size=13)
    wire = wire.replace(b"d\r\n", b"d;name=value\r\n", 1)
    wire = wire.removesuffix(b"\r\n") + b"X-Trailer: yes\r\n\r\n"
    head = response(200, b"", headers=[("Transfer-Encoding", "chunked")])
    async with Site({"/": raw(head + wire, then="keep")}) as site, Client() as client:
        r = await client.get(site.url())
        again = await client.get(site.url())
    assert r.content == BODY == again.content
    assert r.bytes_received == len(BODY)
    assert site.stats.connections == 1, "a chunked response ends cleanly and keeps the connection"


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate", "raw-deflate"])
async def test_compressed_bodies_are_decoded(coding: str) -> None:
    packed = compress(BODY, "gzip" if coding == "x-gzip" else coding)
    header = "deflate" if coding == "raw-deflate" else coding
    routes = {"/": static(200, packed, headers=[("Content-Encoding", header)])}
    async with Site(routes) as site, Client() as client:
        r = await client.get(site.url())
    assert r.content == BODY
    assert r.bytes_received == len(packed) < len(BODY)


async def test_gzip_and_chunked_together() -> None:
    packed = compress(BODY, "gzip")
    head = response(
        200, b"", headers=[("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")]
    )
    routes = {"/": raw(head + chunked(packed, 5), then="keep")}
    async with Site(routes) as site, Client() as client:
        r = await client.get(site.url())
    assert r.content == BODY


async def test_corrupt_gzip_is_a_protocol_error() -> None:
    routes = {"/": static(200, b"not gzip at all", headers=[("Content-Encoding", "gzip")])}
    async with Site(routes) as site, Client() as client:
        with pytest.raises(ProtocolError, match="gzip"):
            await client.get(site.url())


async def test_body_delimited_by_close() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    async with Site({"/": raw(head + BODY, then="close")}) as site, Client() as client:
        r = await client.get(site.url())
        assert r.content == BODY
        await client.get(site.url())
    assert site.stats.connections == 2, "a close-delimited response can't keep the connection"


async def test_head_204_and_304_have_no_body() -> None:
    routes = {
        "/head": static(200, b"", headers=[("Content-Length", "1234")]),
        "/204": static(204, b"", content_type=None, headers=[("Content-Length", "0")]),
        "/304": static(304, b"", content_type=None, headers=[("ETag", '"x"')]),
    }
    async with Site(routes) as site, Client() as client:
        head = await client.request("HEAD", site.url("/head"))
        no_content = await client.get(site.url("/204"))
        not_modified = await client.get(site.url("/304"))
        after = await client.get(site.url("/204"))
    assert (head.status, head.content) == (200, b"")
    assert (no_content.status, no_content.content) == (204, b"")
    assert (not_modified.status, not_modified.content) == (304, b"")
    assert after.status == 204
    assert site.stats.connections == 1


async def test_post_sends_body_and_length() -> None:
    async def echo(exchange: Exchange) -> None:
        await exchange.respond(200, exchange.request.body[::-1], content_type="text/plain")

    async with Site({"/echo": echo}) as site, Client(headers={"X-Client": "1"}) as client:
        r = await client.request("post", site.url("/echo"), content=b"abc", headers={"X-Req": "2"})
        empty = await client.request("POST", site.url("/echo"))
    assert r.content == b"cba" and empty.content == b""
    first, second = site.stats.requests
    assert (first.method, first.body, first.header("content-length")) == ("POST", b"abc", "3")
    assert first.header("x-client") == "1" and first.header("x-req") == "2"
    assert second.header("content-length") == "0"


# --- the pool ------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection() -> None:
    async with Site({"/": page("/a")}) as site, Client() as client:
        for _ in range(6):
            r = await client.get(site.url())
            assert r.status == 200
    assert site.stats.connections == 1
    assert [request.connection for request in site.stats.requests] == [1] * 6


async def test_connection_close_is_not_reused() -> None:
    routes = {"/": static(200, BODY, headers=[("Connection", "close")])}
    async with Site(routes) as site, Client() as client:
        for _ in range(3):
            await client.get(site.url())
    assert site.stats.connections == 3


async def test_unread_streamed_body_closes_the_connection() -> None:
    async with Site({"/": static(200, BODY)}) as site, Client() as client:
        async with client.stream("GET", site.url()) as r:
            assert r.status == 200
        with pytest.raises(RuntimeError, match="not been read"):
            r.content  # noqa: B018 (the property raises)
        await client.get(site.url())
    assert site.stats.connections == 2


async def test_pool_is_per_scheme_host_and_port() -> None:
    async with Site({"/": page()}) as one, Site({"/": page()}) as two, Client() as client:
        for _ in range(3):
            await client.get(one.url())
            await client.get(two.url())
        # "localhost" is another host to the pool, though it reaches the same server.
        await client.get(f"http://localhost:{one.port}/")
    assert two.stats.connections == 1
    assert one.stats.connections == 2


async def test_max_per_host_bounds_the_connections_a_server_sees() -> None:
    gate = Gate()
    site = Site({"/": gate.hold(page())})
    async with site, Client(max_per_host=2) as client, gate.pulsing():
        responses = await treadle.gather(*(client.get(site.url()) for _ in range(10)))
    assert [r.status for r in responses] == [200] * 10
    assert site.stats.peak_connections == 2
    assert site.stats.peak_requests == 2
    assert site.stats.connections == 2, "the pool reuses its two connections"


async def test_max_connections_bounds_every_host_together() -> None:
    gate = Gate()
    seen: list[int] = []
    async with Site({"/": gate.hold(page())}) as one, Site({"/": gate.hold(page())}) as two:

        def count(request: Request) -> None:
            seen.append(one.stats.active_requests + two.stats.active_requests)

        one.on_request = two.on_request = count
        async with Client(max_connections=3, max_per_host=3) as client, gate.pulsing():
            urls = [one.url(), two.url()] * 5
            await treadle.gather(*(client.get(url) for url in urls))
    assert len(seen) == 10
    assert max(seen) == 3


async def test_stream_yields_the_body_as_it_arrives() -> None:
    more = treadle.Event()

    async def trickle(exchange: Exchange) -> None:
        head = response(200, b"", headers=[("Transfer-Encoding", "chunked")])
        await exchange.send(head + b"5\r\nfirst\r\n")
        await more.wait()
        await exchange.send(b"7\r\n second\r\n0\r\n\r\n")

    async with Site({"/": trickle}) as site, Client() as client:
        async with client.stream("GET", site.url()) as r:
            chunks = r.aiter_bytes()
            assert await anext(chunks) == b"first"
            more.set()
            rest = [chunk async for chunk in chunks]
        assert rest == [b" second"]
        await client.get(site.url())
    assert site.stats.connections == 1, "a body streamed to its end releases the connection"


async def test_stream_read_caches_the_body() -> None:
    async with (
        Site({"/": static(200, BODY)}) as site,
        Client() as client,
        client.stream("GET", site.url()) as r,
    ):
        assert await r.read() == BODY
        assert await r.read() == BODY == r.content


async def test_cancelled_requests_give_back_their_pool_slots() -> None:
    arrived = treadle.Event()

    async def held(exchange: Exchange) -> None:
        arrived.set()
        await hang(exchange)

    routes = {"/held": held, "/ok": static(200, b"ok")}
    async with Site(routes) as site, Client(max_per_host=1) as client:
        holder = treadle.create_task(client.get(site.url("/held")))
        await arrived.wait()
        # These wait for the one slot; cancel them there, and the holder mid-request.
        queued = [treadle.create_task(client.get(site.url("/ok"))) for _ in range(3)]
        await wait_all_tasks_blocked()
        for task in [holder, *queued]:
            task.cancel()
        results = await treadle.gather(holder, *queued, return_exceptions=True)
        assert all(isinstance(result, CancelledError) for result in results)
        async with treadle.timeout(5):
            assert (await client.get(site.url("/ok"))).content == b"ok"
    assert site.stats.paths == ["/held", "/ok"]


# --- redirects ----------------------------------------------------------------------------


async def test_redirects_are_returned_by_default() -> None:
    async with Site({"/old": redirect("/new"), "/new": page()}) as site, Client() as client:
        r = await client.get(site.url("/old"))
    assert r.status == 302 and r.is_redirect
    assert r.headers["location"] == "/new"
    assert site.stats.paths == ["/old"]


async def test_following_redirects_keeps_the_history() -> None:
    async with Site() as other:
        other["/end"] = static(200, b"the end")
        routes = {
            "/1": redirect("/2", 301),
            "/2": redirect("3", 302),
            "/3": redirect(other.url("/end"), 307),
        }
        async with Site(routes) as site, Client(follow_redirects=True) as client:
            r = await client.get(site.url("/1"))
            not_followed = await client.get(site.url("/1"), follow_redirects=False)
    assert (r.status, r.content, r.url) == (200, b"the end", other.url("/end"))
    assert [(h.status, h.url) for h in r.history] == [
        (301, site.url("/1")),
        (302, site.url("/2")),
        (307, site.url("/3")),
    ]
    assert not_followed.status == 301


@pytest.mark.parametrize(
    ("status", "method"), [(303, "GET"), (302, "GET"), (301, "GET"), (307, "POST"), (308, "POST")]
)
async def test_redirected_post(status: int, method: str) -> None:
    routes = {"/form": redirect("/done", status), "/done": static(200, b"ok")}
    async with Site(routes) as site, Client() as client:
        r = await client.request(
            "POST", site.url("/form"), content=b"a=1", follow_redirects=True
        )
    assert r.content == b"ok"
    form, done = site.stats.requests
    assert (form.method, form.body) == ("POST", b"a=1")
    assert done.method == method
    assert done.body == (b"a=1" if method == "POST" else b"")


async def test_a_redirect_loop_raises_too_many_redirects() -> None:
    routes = {"/a": redirect("/b"), "/b": redirect("/a")}
    async with Site(routes) as site, Client(follow_redirects=True, max_redirects=3) as client:
        with pytest.raises(TooManyRedirects, match="more than 3 redirects"):
            await client.get(site.url("/a"))
        # The pool is still usable: the unread redirect bodies did not leak a connection.
        assert (await client.get(site.url("/a"), follow_redirects=False)).status == 302
    assert site.stats.paths == ["/a", "/b", "/a", "/b", "/a"]


async def test_max_redirects_zero_refuses_the_first_redirect() -> None:
    site = Site({"/a": redirect("/b"), "/b": page()})
    async with site, Client(follow_redirects=True, max_redirects=0) as client:
        with pytest.raises(TooManyRedirects):
            await client.get(site.url("/a"))


# --- connecting and timeouts ---------------------------------------------------------------


async def test_refused_port_is_a_connect_error_naming_the_host() -> None:
    with refused_port() as port:
        async with Client() as client:
            with pytest.raises(ConnectError) as caught:
                await client.get(f"http://127.0.0.1:{port}/")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert isinstance(caught.value, HTTPError)


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full, so new connections hang in the handshake."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))
        yield port


async def test_connect_timeout() -> None:
    with full_backlog() as port:
        async with Client(connect_timeout=0.2) as client:
            started = time.monotonic()
            with pytest.raises(ConnectError, match=r"timed out after 0\.2 s"):
                await client.get(f"http://127.0.0.1:{port}/")
    elapsed = time.monotonic() - started
    # Not the 10 s default; the upper margin is for a busy machine's stalls.
    assert 0.15 < elapsed < 5, f"the 0.2 s connect timeout fired after {elapsed:.2f} s"


async def test_read_timeout_waiting_for_the_head() -> None:
    async with Site({"/": hang}) as site, Client(read_timeout=0.2) as client:
        with pytest.raises(ReadTimeout, match=r"no data from the server for 0\.2 s") as caught:
            await client.get(site.url())
    assert isinstance(caught.value, TimeoutError)


async def test_read_timeout_mid_body() -> None:
    async def stall(exchange: Exchange) -> None:
        await exchange.send(response(200, b"", headers=[("Content-Length", "100")]) + b"x" * 10)
        await hang(exchange)

    async with Site({"/": stall}) as site, Client(read_timeout=0.2) as client:
        with pytest.raises(ReadTimeout):
            await client.get(site.url())
        # Streaming: the head arrives, then the body read times out.
        async with client.stream("GET", site.url()) as r:
            assert r.status == 200
            with pytest.raises(ReadTimeout):
                await r.read()


async def test_total_timeout() -> None:
    async with Site({"/": hang}) as site:
        async with Client(read_timeout=None, timeout=0.2) as client:
            with pytest.raises(ReadTimeout, match=r"took longer than its timeout of 0\.2 s"):
                await client.get(site.url())
        async with Client(read_timeout=None, timeout=None) as client:
            with pytest.raises(ReadTimeout, match="took longer"):
                await client.get(site.url(), timeout=0.2)


# --- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\nbody",
        b"HTTP/1.1 2OO OK\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(40),
    ],
)
async def test_garbage_is_a_protocol_error(garbage: bytes) -> None:
    async with Site({"/": raw(garbage, then="keep")}) as site, Client() as client:
        with pytest.raises(ProtocolError, match="malformed HTTP response"):
            await client.get(site.url())


async def test_switching_protocols_is_a_protocol_error() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    async with Site({"/": raw(head + b"\x81\x00", then="keep")}) as site, Client() as client:
        with pytest.raises(ProtocolError, match="switched protocols"):
            await client.get(site.url())


async def test_closing_mid_body_is_remote_disconnected() -> None:
    cut = response(200, b"", headers=[("Content-Length", "100")]) + b"x" * 10
    async with Site({"/": raw(cut, then="close")}) as site, Client() as client:
        with pytest.raises(RemoteDisconnected, match="after 10 bytes of 100") as caught:
            await client.get(site.url())
    assert isinstance(caught.value, ConnectionError)
    assert isinstance(caught.value, ProtocolError)


async def test_closing_mid_chunked_body_is_remote_disconnected() -> None:
    head = response(200, b"", headers=[("Transfer-Encoding", "chunked")])
    async with Site({"/": raw(head + b"a\r\n01234", then="close")}) as site, Client() as client:
        with pytest.raises(RemoteDisconnected):
            await client.get(site.url())


@pytest.mark.parametrize("then", ["close", "reset"])
async def test_no_response_on_a_fresh_connection(then: str) -> None:
    async with Site({"/": raw(b"", then=then)}) as site, Client() as client:
        with pytest.raises(ConnectionError):
            await client.get(site.url())
    assert site.stats.counts["/"] == 1, "a fresh connection is not retried"


@pytest.mark.parametrize("then", ["close", "reset"])
async def test_stale_keep_alive_connection_is_retried_for_get(then: str) -> None:
    gone = treadle.Event()

    async def answer_then_drop(exchange: Exchange) -> None:
        await exchange.respond(200, b"first")
        exchange.reset() if then == "reset" else exchange.close()
        gone.set()

    routes = {"/": answer_then_drop, "/next": static(200, b"second")}
    async with Site(routes) as site, Client() as client:
        assert (await client.get(site.url())).content == b"first"
        await gone.wait()
        assert (await client.get(site.url("/next"))).content == b"second"
    assert site.stats.connections == 2
    assert [(r.target, r.connection) for r in site.stats.requests] == [("/", 1), ("/next", 2)]


async def test_an_idle_connection_the_server_closed_is_not_written_to() -> None:
    gone = treadle.Event()

    async def answer_then_close(exchange: Exchange) -> None:
        await exchange.respond(200, b"first")
        exchange.close()
        gone.set()

    async with Site({"/": answer_then_close}) as site, Client() as client:
        await client.get(site.url())
        await gone.wait()
        await wait_all_tasks_blocked()
        # The server's FIN is seen before the POST is written: it goes out once, fresh.
        r = await client.request("POST", site.url("/form"), content=b"x")
    assert (r.status, r.requests_sent) == (404, 1)
    assert site.stats.paths == ["/", "/form"]


# --- limits ------------------------------------------------------------------------------


async def test_max_body_size() -> None:
    async with Site({"/": static(200, BODY)}) as site:
        async with Client(max_body_size=len(BODY)) as client:
            assert (await client.get(site.url())).content == BODY
        async with Client(max_body_size=len(BODY) - 1) as client:
            with pytest.raises(ResponseTooLarge, match="larger than max_body_size") as caught:
                await client.get(site.url())
            assert caught.value.limit == len(BODY) - 1
            # The per-request option overrides the client's.
            r = await client.get(site.url(), max_body_size=None)
            assert r.content == BODY


async def bytes_streamed_until_too_large(client: Client, url: str) -> int:
    """Stream ``url``'s body; it must end in ResponseTooLarge. How many bytes came first."""
    received = 0
    async with client.stream("GET", url) as r:
        with pytest.raises(ResponseTooLarge):
            async for chunk in r.aiter_bytes():
                received += len(chunk)
    return received


async def test_max_body_size_while_streaming_a_chunked_body() -> None:
    head = response(200, b"", headers=[("Transfer-Encoding", "chunked")])
    routes = {"/": raw(head + chunked(b"y" * 5000, 100), then="keep")}
    async with Site(routes) as site, Client(max_body_size=1000) as client:
        assert await bytes_streamed_until_too_large(client, site.url()) <= 1000


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_gzip_bomb_is_capped(coding: str) -> None:
    bomb = compress(bytes(64 * 1024 * 1024), coding)
    assert len(bomb) < 100_000
    routes = {"/": static(200, bomb, headers=[("Content-Encoding", coding)])}
    async with Site(routes) as site, Client(max_body_size=1_000_000) as client:
        with pytest.raises(ResponseTooLarge):
            await client.get(site.url())
        assert await bytes_streamed_until_too_large(client, site.url()) <= 1_000_000


# --- what the client refuses -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.org/file",
        "mailto:someone@example.org",
        "http://",
        "http:///path",
        "example.org/page",
        "http://127.0.0.1:99999/",
        "http://[::1/",
    ],
)
async def test_invalid_urls(url: str) -> None:
    async with Client() as client:
        with pytest.raises(InvalidURL) as caught:
            await client.get(url)
    assert isinstance(caught.value, ValueError)


async def test_header_injection_is_refused() -> None:
    async with Site({"/": page()}) as site, Client() as client:
        for headers in ({"X-A": "ok\r\nX-Injected: 1"}, {"X-A": "ok\nb"}, {"X-A: b": "c"}):
            with pytest.raises(ValueError, match="line break"):
                await client.get(site.url(), headers=headers)
    assert site.stats.requests == [], "nothing was sent"
    with pytest.raises(ValueError, match="line break"):
        Client(headers={"X-A": "one\r\ntwo"})


@pytest.mark.parametrize(
    "options",
    [
        {"max_connections": 0},
        {"max_per_host": 0},
        {"max_per_host": 2.5},
        {"connect_timeout": -1},
        {"read_timeout": float("nan")},
        {"timeout": -0.5},
        {"max_body_size": -1},
        {"max_redirects": -1},
    ],
)
def test_bad_constructor_arguments(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        Client(**options)  # type: ignore[arg-type]


async def test_bad_request_timeout() -> None:
    async with Client() as client:
        with pytest.raises(ValueError, match="timeout"):
            await client.get("http://127.0.0.1:1/", timeout=-1)


async def test_a_closed_client_refuses_requests() -> None:
    client = Client()
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get("http://127.0.0.1:1/")


# --- TLS ---------------------------------------------------------------------------------


async def test_https_with_a_trusted_ca(ca: trustme.CA, server_context: ssl.SSLContext) -> None:
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    async with Site({"/": static(200, BODY)}, ssl=server_context) as site:
        assert site.url().startswith("https://127.0.0.1:")
        async with Client(ssl=trusting) as client:
            first = await client.get(site.url())
            second = await client.get(f"https://localhost:{site.port}/")
            third = await client.get(site.url())
    assert first.content == second.content == third.content == BODY
    assert site.stats.connections == 2, "one kept-alive TLS connection per host name"
    assert [r.header("host") for r in site.stats.requests] == [
        f"127.0.0.1:{site.port}",
        f"localhost:{site.port}",
        f"127.0.0.1:{site.port}",
    ]


async def test_https_verification_failure_is_a_connect_error(
    server_context: ssl.SSLContext,
) -> None:
    async with Site({"/": static(200, BODY)}, ssl=server_context) as site, Client() as client:
        with pytest.raises(ConnectError, match=r"TLS with 127\.0\.0\.1") as caught:
            await client.get(site.url())
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert site.stats.requests == []


# --- known bugs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "wire"), [("/caf\u00e9", "/caf%C3%A9"), ("/\u65e5\u672c", "/%E6%97%A5%E6%9C%AC")]
)
async def test_non_ascii_path_is_percent_encoded(path: str, wire: str) -> None:
    async with Site({wire: static(200, b"found")}) as site, Client() as client:
        r = await client.get(site.url(path))
    assert site.stats.paths == [wire]
    assert r.content == b"found"


async def test_raw_deflate_with_a_one_byte_first_chunk() -> None:
    head = response(
        200, b"", headers=[("Transfer-Encoding", "chunked"), ("Content-Encoding", "deflate")]
    )
    routes = {"/": raw(head + chunked(compress(BODY, "raw-deflate"), 1), then="keep")}
    async with Site(routes) as site, Client() as client:
        r = await client.get(site.url())
    assert r.content == BODY


def test_headers_are_looked_up_case_insensitively_first_value_first() -> None:
    headers = Headers([("Set-Cookie", "a=1"), ("content-type", "text/html"), ("SET-COOKIE", "b=2")])
    assert headers.get("set-cookie") == "a=1"
    assert headers["Content-Type"] == headers.get("CONTENT-TYPE") == "text/html"
    assert headers.get("Location") is None
    assert headers.get("location", "-") == "-"
    assert "SET-cookie" in headers and "etag" not in headers
    assert headers.get_all("Set-Cookie") == ["a=1", "b=2"]
    with pytest.raises(KeyError):
        headers["etag"]
