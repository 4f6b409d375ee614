"""Hostile clients against ``start_server``, over TCP and TLS.

Clients that trickle a byte at a time, reset mid-request, half-close and then read,
never read, connect and say nothing, arrive by the dozen at once, hang up during the
TLS handshake, send garbage instead of a handshake, or make the handler fail. Through
all of it a well-behaved client's echo round trip must keep working, handler errors
must be reported with the peer's address, the server must close and finish, and no
descriptor or task may be left behind. Each behaviour has its own test; a hypothesis
test throws drawn mixes of them at one server.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hostile_peers import (
    TIME_LIMIT,
    open_fds,
    reset,
    run_checked,
    server_address,
    tls_contexts,
)
from hypothesis import given
from hypothesis import strategies as st

import treadle
from treadle.testing import wait_all_tasks_blocked

LINE = b"ping " + b"." * 994 + b"\n"  # 1000 bytes


@dataclass
class Served:
    """What the server saw: its writers, the handler errors and the log records."""

    server: Any
    tls: bool
    writers: list[Any] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    logs: list[logging.LogRecord] = field(default_factory=list)

    @property
    def address(self) -> tuple[str, int]:
        return server_address(self.server)


class _Records(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__()
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


async def echo_lines(served: Served, reader: Any, writer: Any) -> None:
    """Echo each line; a line ``boom`` makes the handler fail."""
    served.writers.append(writer)
    async for line in reader:
        if line == b"boom\n":
            raise RuntimeError("the handler was asked to fail")
        writer.write(line)
        await writer.drain()


@contextlib.asynccontextmanager
async def echo_server(tls: bool) -> AsyncIterator[Served]:
    """An echo server; on the way out it closes, cancels its clients and must finish."""
    served = Served(server=None, tls=tls)
    loop = treadle.get_running_loop()
    loop.set_exception_handler(lambda _, context: served.errors.append(context))
    records = _Records(served.logs)
    logging.getLogger("treadle").addHandler(records)

    async def handler(reader: Any, writer: Any) -> None:
        await echo_lines(served, reader, writer)

    server_context = tls_contexts()[0] if tls else None
    served.server = await treadle.start_server(
        handler, "127.0.0.1", 0, ssl=server_context, ssl_handshake_timeout=5
    )
    try:
        yield served
    finally:
        logging.getLogger("treadle").removeHandler(records)
        served.server.close()
        served.server.close_clients()
        async with treadle.timeout(10):
            await served.server.wait_closed()


async def connect(served: Served) -> tuple[Any, Any]:
    host, port = served.address
    if served.tls:
        return await treadle.open_connection(
            host, port, ssl=tls_contexts()[1], server_hostname="localhost"
        )
    return await treadle.open_connection(host, port)


async def round_trip(served: Served) -> None:
    """A well-behaved client: one echo round trip, then a clean close."""
    async with treadle.timeout(10):
        reader, writer = await connect(served)
        try:
            writer.write(LINE)
            await writer.drain()
            assert await reader.readline() == LINE
        finally:
            writer.close()
            await writer.wait_closed()


async def raw_socket(served: Served) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await treadle.sock_connect(sock, served.address)
    except BaseException:
        sock.close()
        raise
    return sock


# --- the hostile clients: each runs until it has done its worst, then returns a cleanup --

Cleanup = Callable[[], Awaitable[None]]


async def nothing() -> None:
    return None


async def trickler(served: Served) -> Cleanup:
    """Sends a line a byte at a time, yielding between bytes, and reads the echo."""
    reader, writer = await connect(served)
    try:
        for byte in LINE:
            writer.write(bytes([byte]))
            await writer.drain()
            await treadle.sleep(0)
        async with treadle.timeout(10):
            assert await reader.readline() == LINE
    finally:
        writer.close()
        await writer.wait_closed()
    return nothing


async def resetter(served: Served) -> Cleanup:
    """Connects, sends half a request, and resets the connection."""
    sock = await raw_socket(served)
    await treadle.sock_sendall(sock, LINE[:500])
    await wait_all_tasks_blocked()
    reset(sock)
    return nothing


async def half_closer(served: Served) -> Cleanup:
    """Sends a line, shuts down its sending side, and reads the echo and then EOF."""
    if served.tls:
        return await trickler(served)  # TLS has no half-close
    sock = await raw_socket(served)
    with sock:
        await treadle.sock_sendall(sock, LINE)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        async with treadle.timeout(10):
            while data := await treadle.sock_recv(sock, 65536):
                received += data
        assert received == LINE
    return nothing


async def idler(served: Served) -> Cleanup:
    """Connects and says nothing; it is still connected when the server closes."""
    sock = await raw_socket(served)

    async def close() -> None:
        sock.close()

    return close


async def non_reader(served: Served) -> Cleanup:
    """Sends lines without ever reading the echoes, until the server stops taking them.

    The server must block in drain() rather than buffer: its write buffer stays near the
    high-water mark, and the client can't push more than the socket buffers hold.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.setblocking(False)
    try:
        await treadle.sock_connect(sock, served.address)
        if served.tls:
            context = tls_contexts()[1]
            _reader, writer = await treadle.open_connection(
                sock=sock, ssl=context, server_hostname="localhost"
            )
        else:
            _reader, writer = await treadle.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        await push_until_refused(served, writer)
    except BaseException:
        # A failed run closes its socket now: left to the garbage collector, it would
        # fail whichever later test is running then (ResourceWarning, fd count).
        writer.abort()
        raise

    async def close() -> None:
        writer.abort()
        await writer.wait_closed()

    return close


async def push_until_refused(served: Served, writer: Any) -> None:
    """Write until 20 drains in a row time out; the server's buffers must stay bounded."""
    sent = 0
    unchanged = 0
    while unchanged < 20:
        writer.write(LINE * 16)
        try:
            async with treadle.timeout(0.005):
                await writer.drain()
            sent += 16 * len(LINE)
            unchanged = 0
        except TimeoutError:
            unchanged += 1
        assert sent < 64 * 1024 * 1024, "the server took 64 MiB it could not send"
        for server_writer in served.writers:
            assert server_writer.get_write_buffer_size() <= 64 * 1024 + 16 * len(LINE)


async def crowd(served: Served, size: int = 60) -> Cleanup:
    """Many clients connect at once, and each makes a round trip."""
    async with treadle.TaskGroup() as group:
        for _ in range(size):
            group.create_task(round_trip(served))
    return nothing


async def handshake_quitter(served: Served) -> Cleanup:
    """Over TLS: starts the handshake and hangs up in the middle of it (over TCP: idles)."""
    if not served.tls:
        return await resetter(served)
    sock = await raw_socket(served)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = tls_contexts()[1].wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    await treadle.sock_sendall(sock, hello[: len(hello) // 2])
    await wait_all_tasks_blocked()
    sock.close()
    return nothing


async def garbage_sender(served: Served) -> Cleanup:
    """Sends bytes that are not a TLS handshake (over TCP: not a line), then closes."""
    sock = await raw_socket(served)
    with sock:
        await treadle.sock_sendall(sock, b"GET / HTTP/1.0\r\n\r\n" * 10)
        sock.shutdown(socket.SHUT_WR)
        async with treadle.timeout(10):
            while await treadle.sock_recv(sock, 65536):
                pass
    return nothing


async def handler_breaker(served: Served) -> Cleanup:
    """Makes the handler raise: the error must be reported with this client's address."""
    reader, writer = await connect(served)
    async with writer:
        address = writer.get_extra_info("sockname")
        errors_before = len(served.errors)
        writer.write(b"boom\n")
        await writer.drain()
        async with treadle.timeout(10):
            assert await reader.read() == b""
            while len(served.errors) == errors_before:
                await treadle.sleep(0)
    context = served.errors[errors_before]
    assert isinstance(context["exception"], RuntimeError)
    assert context["peername"] == address
    assert f"{address[0]}:{address[1]}" in context["message"]
    served.errors.remove(context)
    return nothing


HOSTILE = {
    "trickler": trickler,
    "resetter": resetter,
    "half_closer": half_closer,
    "idler": idler,
    "non_reader": non_reader,
    "crowd": crowd,
    "handshake_quitter": handshake_quitter,
    "garbage_sender": garbage_sender,
    "handler_breaker": handler_breaker,
}


async def survive(tls: bool, behaviours: list[str]) -> None:
    """Run the hostile clients one after another with a well-behaved client between them."""
    async with echo_server(tls) as served:
        # The cleanups run even if a client fails, so a failed run leaks no socket.
        async with contextlib.AsyncExitStack() as cleanups:
            for name in behaviours:
                cleanups.push_async_callback(await HOSTILE[name](served))
                await round_trip(served)  # the others are still served
        await round_trip(served)
    check_reports(served, behaviours)


# Clients whose connection ends in a reset: the echo handler's read fails, and that is
# reported (with the peer's address) as a handler error.
RESETTING = {"resetter", "non_reader", "handshake_quitter"}
# Clients that break off or spoil a TLS handshake: logged as a warning naming the peer.
SPOILING_TLS = {"resetter", "idler", "handshake_quitter", "garbage_sender", "non_reader"}


def check_reports(served: Served, behaviours: list[str]) -> None:
    """Every report names its peer, and only the rude clients caused any."""
    for context in served.errors:
        assert isinstance(context["exception"], ConnectionResetError), context
        assert f"client {context['peername'][0]}:{context['peername'][1]}" in context["message"]
    if served.errors:
        assert RESETTING & set(behaviours)
    for record in served.logs:
        assert record.levelno == logging.WARNING
        assert "connection from 127.0.0.1:" in record.getMessage()
    if served.logs:
        assert served.tls and SPOILING_TLS & set(behaviours)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_server_survives(tls: bool, name: str) -> None:
    run_checked(treadle, lambda: survive(tls, [name]))


@pytest.mark.parametrize("how", ["handshake_quitter", "garbage_sender"])
def test_a_failed_tls_handshake_is_logged_with_the_peer(how: str) -> None:
    async def main() -> None:
        async with echo_server(True) as served:
            await HOSTILE[how](served)
            async with treadle.timeout(10):
                while not served.logs:
                    await treadle.sleep(0)
            await round_trip(served)
        [record] = served.logs
        assert record.levelno == logging.WARNING
        assert "127.0.0.1:" in record.getMessage()

    run_checked(treadle, main)


@pytest.mark.timeout(TIME_LIMIT)
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@given(behaviours=st.lists(st.sampled_from(sorted(set(HOSTILE) - {"crowd"})), max_size=6))
def test_the_server_survives_a_drawn_mix(tls: bool, behaviours: list[str]) -> None:
    run_checked(treadle, lambda: survive(tls, behaviours))


# --- regressions the hostile clients found ----------------------------------------------


async def test_wait_closed_leaves_no_socket_of_a_handler_that_returned_with_unsent_bytes() -> None:
    async def handler(reader: Any, writer: Any) -> None:
        writer.write(b"x" * 8_000_000)  # more than the socket buffers hold; no drain

    before = open_fds()
    server = await treadle.start_server(handler, "127.0.0.1", 0)
    with socket.create_connection(server_address(server)):  # never reads
        await wait_all_tasks_blocked()
        server.close()
        server.close_clients()
        async with treadle.timeout(10):
            await server.wait_closed()
        assert open_fds() == before + 1, "the server left the connection's socket open"
