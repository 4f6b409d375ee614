"""The HTTP client against hostile servers: regressions first, then a fuzzer.

Every server here runs on 127.0.0.1 (``tests/crawlsite.py``) and writes raw bytes:
interim 1xx answers, heads that never end, bytes after the end of a response, resets
mid-body, truncated gzip. The fuzzer at the end generates such responses with
hypothesis and checks the client's promises over keep-alive sequences: each request
gets exactly its own answer or an ``HTTPError``, never hangs, and gives back its pool
permit.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from crawlsite import (
    Exchange,
    Handler,
    Site,
    chunked,
    compress,
    hang,
    open_fds,
    raw,
    redirect,
    response,
    sequence,
    static,
)

import treadle
from treadle.errors import HTTPError
from treadle.http import (
    Client,
    ProtocolError,
    ReadTimeout,
    RemoteDisconnected,
    ResponseTooLarge,
)
from treadle.http.client import DEFAULT_MAX_BODY_SIZE
from treadle.testing import wait_all_tasks_blocked

BODY = b"<p>hostile</p>\n" * 40


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    before = open_fds()
    yield
    assert open_fds() == before, "the test left file descriptors open"


def reset_reused_connections() -> Handler:
    """A handler answering the first request of each connection and resetting on the rest."""
    answered: set[int] = set()

    async def handler(exchange: Exchange) -> None:
        if exchange.request.connection in answered:
            exchange.reset()
            return
        answered.add(exchange.request.connection)
        await exchange.respond(200, b"ok")

    return handler


# --- 1xx interim responses -----------------------------------------------------------------


@pytest.mark.parametrize("interim", [b"100 Continue", b"103 Early Hints\r\nLink: </s.css>"])
@pytest.mark.parametrize("merged", [True, False], ids=["one-read", "two-reads"])
async def test_interim_responses_are_skipped(interim: bytes, merged: bool) -> None:
    head = b"HTTP/1.1 " + interim + b"\r\n\r\n"

    async def answer(exchange: Exchange) -> None:
        if merged:
            await exchange.send(head + response(200, b"first"))
            return
        await exchange.send(head)
        await wait_all_tasks_blocked()  # the client has read the interim head alone
        await exchange.send(response(200, b"first"))

    routes = {"/a": answer, "/b": static(200, b"second")}
    async with Site(routes) as site, Client() as client:
        first = await client.get(site.url("/a"))
        second = await client.get(site.url("/b"))
    assert (first.status, first.reason, first.content) == (200, "Whatever", b"first")
    assert "link" not in first.headers, "the interim head's fields are not merged in"
    assert (second.status, second.content) == (200, b"second")
    assert site.stats.connections == 1


async def test_switching_protocols_is_never_pooled() -> None:
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    routes = {"/up": raw(head, then="keep"), "/b": static(200, b"second")}
    async with Site(routes) as site, Client(max_per_host=1) as client:
        with pytest.raises(ProtocolError, match="switched protocols"):
            await client.get(site.url("/up"))
        assert (await client.get(site.url("/b"))).content == b"second"
    assert site.stats.connections == 2


# --- permits after a failed redirect ---------------------------------------------------------


def _redirect_with_body(body: bytes, *headers: tuple[str, str], then: str = "keep") -> Handler:
    head = response(302, b"", content_type=None, headers=[("Location", "/ok"), *headers])
    return raw(head + body, then=then)


async def _stall_mid_body(exchange: Exchange) -> None:
    head = response(
        302, b"", content_type=None, headers=[("Location", "/ok"), ("Content-Length", "50")]
    )
    await exchange.send(head + b"x" * 5)
    await hang(exchange)


async def _reset_mid_body(exchange: Exchange) -> None:
    head = response(
        302, b"", content_type=None, headers=[("Location", "/ok"), ("Content-Length", "50")]
    )
    await exchange.send(head + b"x" * 5)
    await wait_all_tasks_blocked()
    exchange.reset()


REDIRECT_FAILURES: dict[str, tuple[Handler, type[HTTPError]]] = {
    "bad-gzip": (
        _redirect_with_body(b"not gzip", ("Content-Encoding", "gzip"), ("Content-Length", "8")),
        ProtocolError,
    ),
    "bad-chunk": (
        _redirect_with_body(b"zz\r\nhello\r\n", ("Transfer-Encoding", "chunked")),
        ProtocolError,
    ),
    "reset": (_reset_mid_body, RemoteDisconnected),
    "read-timeout": (_stall_mid_body, ReadTimeout),
    "deadline": (_stall_mid_body, ReadTimeout),
}


@pytest.mark.parametrize("failure", REDIRECT_FAILURES)
async def test_a_failed_redirect_body_gives_back_its_permit(failure: str) -> None:
    handler, error = REDIRECT_FAILURES[failure]
    routes = {"/r": handler, "/ok": static(200, b"ok")}
    options = (
        {"timeout": 0.3, "read_timeout": None} if failure == "deadline" else {"read_timeout": 0.3}
    )
    client = Client(max_per_host=1, follow_redirects=True, **options)  # type: ignore[arg-type]
    async with Site(routes) as site, client:
        with pytest.raises(error):
            await client.get(site.url("/r"))
        async with treadle.timeout(5):
            assert (await client.get(site.url("/ok"))).content == b"ok"


# --- the size of the head ----------------------------------------------------------------


async def _endless_headers(exchange: Exchange) -> None:
    await exchange.send(b"HTTP/1.1 200 OK\r\n")
    line = b"X-Filler: " + b"f" * 2000 + b"\r\n"
    while True:
        await exchange.send(line * 10)


async def _one_long_header(exchange: Exchange) -> None:
    await exchange.send(
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"L" * 20_000 + b"\r\nContent-Length: 0\r\n\r\n"
    )


async def _many_headers(exchange: Exchange) -> None:
    await exchange.send(b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 500 + b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize(
    ("handler", "limit"),
    [
        (_endless_headers, "max_head_size"),
        (_one_long_header, "max_line_size"),
        (_many_headers, "max_headers"),
    ],
)
async def test_the_response_head_is_bounded(handler: object, limit: str) -> None:
    routes = {"/": handler, "/ok": static(200, b"ok")}
    async with Site(routes) as site, Client(max_per_host=1) as client:  # type: ignore[arg-type]
        with pytest.raises(ProtocolError, match=f"{limit}.*raise") as caught:
            await client.get(site.url(), timeout=5)
        assert "Client(" in str(caught.value)
        assert (await client.get(site.url("/ok"))).content == b"ok"


async def test_head_limits_can_be_raised() -> None:
    site = Site({"/long": _one_long_header, "/many": _many_headers})
    async with site, Client(max_line_size=30_000, max_headers=1000) as client:
        assert (await client.get(site.url("/long"))).headers["x-long"] == "L" * 20_000
        assert len((await client.get(site.url("/many"))).headers) == 501
    with pytest.raises(ValueError, match="max_head_size"):
        Client(max_head_size=0)


# --- every failure is an HTTPError ------------------------------------------------------------


async def test_reset_mid_body_on_a_reused_connection_is_remote_disconnected() -> None:
    async def cut(exchange: Exchange) -> None:
        await exchange.send(response(200, b"", headers=[("Content-Length", "100")]) + b"x" * 10)
        await wait_all_tasks_blocked()
        exchange.reset()

    async with Site({"/": sequence(static(200, b"ok"), cut)}) as site, Client() as client:
        await client.get(site.url())
        with pytest.raises(RemoteDisconnected) as caught:
            await client.get(site.url())
    assert isinstance(caught.value, HTTPError) and isinstance(caught.value, ConnectionError)
    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_a_reset_before_the_answer_is_remote_disconnected() -> None:
    async with Site({"/": raw(b"", then="reset")}) as site, Client() as client:
        with pytest.raises(RemoteDisconnected) as caught:
            await client.get(site.url())
    assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_a_stale_post_is_remote_disconnected() -> None:
    async with Site({"/": reset_reused_connections()}) as site, Client() as client:
        await client.get(site.url())
        with pytest.raises(RemoteDisconnected) as caught:
            await client.request("POST", site.url(), content=b"x")
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert site.stats.counts["/"] == 2, "the POST was not sent again on a new connection"


# --- bytes after the end of a response --------------------------------------------------------


EXTRA = {
    "second-response": (b"GET", response(200, b"first") + response(200, b"EVIL")),
    "garbage": (b"GET", response(200, b"first") + b"garbage\r\n"),
    "body-after-head": (b"HEAD", response(200, b"EVIL")),
    "body-after-204": (b"GET", b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nEVIL"),
    "body-after-304": (
        b"GET",
        b"HTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL",
    ),
}


@pytest.mark.parametrize("case", EXTRA)
async def test_bytes_after_a_response_discard_the_connection(case: str) -> None:
    method, wire = EXTRA[case]
    routes = {"/a": raw(wire, then="keep"), "/b": static(200, b"second")}
    async with Site(routes) as site, Client() as client:
        first = await client.request(method.decode(), site.url("/a"))
        second = await client.get(site.url("/b"))
    assert b"EVIL" not in first.content and b"garbage" not in first.content
    if case in ("second-response", "garbage"):
        assert first.content == b"first"
    assert second.content == b"second"
    assert site.stats.connections == 2, "the polluted connection was not reused"


async def test_bytes_arriving_on_an_idle_connection_discard_it() -> None:
    async def late(exchange: Exchange) -> None:
        await exchange.respond(200, b"first")
        await wait_all_tasks_blocked()
        await exchange.send(response(200, b"EVIL"))
        arrived.set()

    arrived = treadle.Event()
    async with Site({"/a": late, "/b": static(200, b"second")}) as site, Client() as client:
        assert (await client.get(site.url("/a"))).content == b"first"
        await arrived.wait()
        await wait_all_tasks_blocked()
        assert (await client.get(site.url("/b"))).content == b"second"
    assert site.stats.connections == 2


# --- compressed bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_truncated_compressed_body_is_a_protocol_error(coding: str) -> None:
    packed = compress(BODY * 10, coding)
    routes = {"/": static(200, packed[: len(packed) // 2], headers=[("Content-Encoding", coding)])}
    async with Site(routes) as site, Client() as client:
        with pytest.raises(ProtocolError, match="truncated"):
            await client.get(site.url())


async def test_the_default_client_caps_a_gzip_bomb() -> None:
    bomb = gzip.compress(bytes(DEFAULT_MAX_BODY_SIZE + 1), compresslevel=1)
    routes = {"/": static(200, bomb, headers=[("Content-Encoding", "gzip")])}
    async with Site(routes) as site, Client() as client:
        assert client.max_body_size == DEFAULT_MAX_BODY_SIZE
        with pytest.raises(ResponseTooLarge):
            await client.get(site.url())


# --- retry accounting -------------------------------------------------------------------------


async def _answer_then_close(exchange: Exchange) -> None:
    await exchange.respond(200, b"first")
    exchange.close()


async def test_a_transparent_retry_is_counted() -> None:
    routes = {"/": sequence(_answer_then_close, static(200, b"second"))}
    async with Site(routes) as site, Client() as client:
        first = await client.get(site.url())
        await wait_all_tasks_blocked()
        second = await client.get(site.url())
    assert (first.requests_sent, second.requests_sent) == (1, 1)
    # The server's FIN was seen before writing: no request was lost to the stale one.
    assert site.stats.counts["/"] == 2


async def test_requests_lost_to_a_stale_connection_are_counted() -> None:
    async with Site({"/": reset_reused_connections()}) as site, Client() as client:
        await client.get(site.url())
        again = await client.get(site.url())
        assert (again.content, again.requests_sent) == (b"ok", 2)
        with pytest.raises(RemoteDisconnected) as caught:
            await client.get(site.url(), retry_stale=False)
        assert caught.value.requests_sent == 1
    assert site.stats.counts["/"] == 4


async def test_redirects_count_their_requests() -> None:
    routes = {"/r": redirect("/ok"), "/ok": static(200, b"ok")}
    async with Site(routes) as site, Client(follow_redirects=True) as client:
        assert (await client.get(site.url("/r"))).requests_sent == 2


async def test_an_error_counts_its_requests() -> None:
    async with Site({"/": raw(b"nonsense", then="close")}) as site, Client() as client:
        with pytest.raises(ProtocolError) as caught:
            await client.get(site.url())
    assert caught.value.requests_sent == 1


# the fuzzer follows (below)
_ = chunked
