"""Faults and limits: resets, dead and stalled peers, running out of descriptors, leaks, load.

The misbehaving peer is usually a plain blocking socket driven by the test itself, so
it can do what a well-behaved stream never would: reset the connection (SO_LINGER 0),
close with bytes unread, or never read at all. Where treadle mirrors asyncio a test
takes ``fw`` and runs on both (asyncio is the oracle).
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from loopback import abort, address_of, buffered, echo_lines, open_fds, reset

import treadle
from treadle import get_running_loop, open_connection, start_server
from treadle.testing import VirtualClock
from treadle.timeouts import timeout

# --- helpers ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def raw_peer(
    fw: Any, *, small_buffers: bool = False
) -> AsyncIterator[tuple[Any, Any, socket.socket]]:
    """A client stream connected to a plain blocking socket the test drives by hand."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        if small_buffers:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        reader, writer = await fw.open_connection(*listener.getsockname())
        peer, _ = listener.accept()  # already in the backlog: does not block
    with peer:
        try:
            yield reader, writer, peer
        finally:
            abort(writer)
            with contextlib.suppress(ConnectionError):  # asyncio re-raises the loss here
                await writer.wait_closed()


# --- resets, dead peers and closed peers ------------------------------------------------


def test_a_reset_during_a_read_is_an_error_not_eof(fw: Any) -> None:
    async def main() -> None:
        async with raw_peer(fw) as (reader, writer, peer):
            peer.sendall(b"partial")
            assert await reader.read(100) == b"partial"
            reading = fw.create_task(reader.read(100))
            await fw.settle()
            reset(peer)
            with pytest.raises(ConnectionResetError):
                await reading
            assert isinstance(reader.exception(), ConnectionResetError)
            with pytest.raises(ConnectionResetError):
                await reader.read(100)  # and it stays an error
            with pytest.raises(ConnectionResetError):
                await reader.readline()
            writer.close()  # closing after the reset is quiet

    fw.run_guarded(main())


def test_a_reset_before_the_read_is_an_error_too(fw: Any) -> None:
    async def main() -> None:
        async with raw_peer(fw) as (reader, _, peer):
            reset(peer)
            with pytest.raises(ConnectionResetError):
                await reader.readexactly(10)

    fw.run_guarded(main())


@pytest.mark.parametrize("how", ["reset", "close"])
def test_writing_to_a_dead_peer_raises_at_drain(fw: Any, how: str) -> None:
    async def main() -> None:
        async with raw_peer(fw) as (_, writer, peer):
            reset(peer) if how == "reset" else peer.close()
            chunk = b"w" * 65536
            for _ in range(200):
                writer.write(chunk)  # must not be where the error surfaces first
                try:
                    await writer.drain()
                except ConnectionError:
                    break
            else:
                pytest.fail("drain() never reported the dead peer")

    fw.run_guarded(main())


def test_a_drain_waiting_on_a_stalled_peer_raises_when_it_resets(fw: Any) -> None:
    async def main() -> None:
        async with raw_peer(fw, small_buffers=True) as (_, writer, peer):
            writer.write(b"s" * (4 * 1024 * 1024))
            draining = fw.create_task(writer.drain())
            await fw.settle()
            assert not draining.done()
            reset(peer)
            with pytest.raises(ConnectionError):
                await draining

    fw.run_guarded(main())


def test_closing_a_tls_stream_after_the_peer_reset_it(
    fw: Any, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls_contexts

    def tls_peer_that_resets(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        conn.settimeout(10)
        with server_context.wrap_socket(conn, server_side=True) as tls:
            assert tls.recv(1) == b"!"  # the client is ready
            reset(tls)

    async def main() -> None:
        loop = fw.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            peer = loop.run_in_executor(None, tls_peer_that_resets, listener)
            reader, writer = await fw.open_connection(
                *listener.getsockname(), ssl=client_context, server_hostname="localhost"
            )
        fd = writer.get_extra_info("socket").fileno()
        writer.write(b"!")
        await peer
        with pytest.raises(ConnectionResetError):
            await reader.read(10)
        try:
            writer.close()
        finally:
            abort(writer)
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        if fw.module is treadle:
            assert not loop.has_reader(fd)

    fw.run_guarded(main())


def test_a_peer_that_closes_gives_eof(fw: Any) -> None:
    async def main() -> None:
        async with raw_peer(fw) as (reader, _, peer):
            peer.sendall(b"tail")
            peer.close()
            assert await reader.read(100) == b"tail"
            assert await reader.read(100) == b""
            assert reader.at_eof()
            assert await reader.readline() == b""
            with pytest.raises(fw.IncompleteReadError) as info:
                await reader.readexactly(1)
            assert info.value.partial == b""
            assert reader.exception() is None

    fw.run_guarded(main())


def test_a_peer_that_never_reads_keeps_the_writer_bounded(fw: Any) -> None:
    async def main() -> None:
        async with raw_peer(fw, small_buffers=True) as (_, writer, _peer):
            chunk = b"m" * 100_000
            progress = {"written": 0, "max_buffered": 0}

            async def produce() -> None:
                for _ in range(320):  # 32 MB
                    writer.write(chunk)
                    progress["max_buffered"] = max(progress["max_buffered"], buffered(writer))
                    await writer.drain()
                    progress["written"] += len(chunk)

            producer = fw.create_task(produce())
            for _ in range(100):
                before = progress["written"]
                await fw.settle()
                if progress["written"] == before:
                    break
            assert not producer.done()
            assert progress["written"] < 8 * 1024 * 1024
            # The default high-water mark (64 KiB) plus the one write that crossed it.
            assert progress["max_buffered"] <= 64 * 1024 + len(chunk)
            await fw.cancel_and_wait(producer)

    fw.run_guarded(main())


# --- timeouts and cancellation ----------------------------------------------------------


async def test_a_read_cut_short_by_a_timeout_leaves_the_stream_usable(
    virtual_clock: VirtualClock,
) -> None:
    async with raw_peer(treadle) as (reader, _, peer):
        peer.sendall(b"half a ")
        with pytest.raises(TimeoutError):
            async with timeout(5):
                await reader.readline()
        with pytest.raises(TimeoutError):
            async with timeout(5):
                await reader.readexactly(100)
        peer.sendall(b"line\n")
        assert await reader.readline() == b"half a line\n"
        peer.sendall(b"more")
        assert await reader.read(100) == b"more"


def test_a_read_cancelled_by_wait_for_leaves_the_stream_usable(fw: Any) -> None:
    async def main() -> None:
        async with raw_peer(fw) as (reader, _, peer):
            with pytest.raises(TimeoutError):
                await fw.wait_for(reader.readuntil(b"."), 0.05)
            peer.sendall(b"next.")
            assert await reader.readuntil(b".") == b"next."

    fw.run_guarded(main())


# --- running out of file descriptors ----------------------------------------------------


@contextlib.contextmanager
def descriptors_exhausted() -> Iterator[None]:
    """Lower RLIMIT_NOFILE and use every descriptor below it; undo both on exit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(open_fds() + 32, soft), hard))
        while True:
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
            assert len(fillers) < 10_000
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_accept_out_of_descriptors_logs_once_serves_on_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = get_running_loop()
    async with await start_server(echo_lines, "127.0.0.1", 0) as server:
        server._accept_retry_delay = 0.05
        address = address_of(server)
        # Count accept attempts (white-box): the retry re-registers server._accept_ready.
        attempts = 0
        three_failures = loop.create_future()
        real_accept_ready = server._accept_ready

        def counting(listener: socket.socket) -> None:
            nonlocal attempts
            attempts += 1
            real_accept_ready(listener)
            if attempts == 3:
                three_failures.set_result(None)

        server._accept_ready = counting  # type: ignore[method-assign]
        loop.add_reader(server.sockets[0], counting, server.sockets[0])

        reader, writer = await open_connection(*address)
        writer.write(b"before\n")
        assert await reader.readline() == b"before\n"
        late = socket.socket()  # made now: there will be no descriptor for it later
        try:
            late.setblocking(False)
            with descriptors_exhausted():
                assert late.connect_ex(address) in (0, errno.EINPROGRESS)
                async with timeout(10):
                    await three_failures  # accept() failed three times
                writer.write(b"during\n")  # the connected client is still served
                assert await reader.readline() == b"during\n"
            failures = [r for r in caplog.records if "accept() failed" in r.getMessage()]
            assert len(failures) == 1
            assert failures[0].name == "treadle"
            # Descriptors are free again: the next retry accepts the waiting client.
            late_reader, late_writer = await open_connection(sock=late)
        except BaseException:
            late.close()
            raise
        async with late_writer:
            late_writer.write(b"late\n")
            async with timeout(10):
                assert await late_reader.readline() == b"late\n"
        writer.close()
        await writer.wait_closed()
        reader, writer = await open_connection(*address)
        async with writer:
            writer.write(b"after\n")
            assert await reader.readline() == b"after\n"
        assert len([r for r in caplog.records if "accept() failed" in r.getMessage()]) == 1


# --- leaks and load ---------------------------------------------------------------------


@pytest.mark.parametrize(("tls", "connections"), [(False, 1000), (True, 100)], ids=["tcp", "tls"])
async def test_many_connections_one_after_another_leave_no_descriptor_behind(
    tls: bool, connections: int, tls_contexts: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = tls_contexts
    serving: dict[str, Any] = {"ssl": server_context} if tls else {}
    connecting: dict[str, Any] = (
        {"ssl": client_context, "server_hostname": "localhost"} if tls else {}
    )
    before = open_fds()
    async with await start_server(echo_lines, "127.0.0.1", 0, **serving) as server:
        address = address_of(server)
        for i in range(connections):
            reader, writer = await open_connection(*address, **connecting)
            line = b"%d\n" % i
            writer.write(line)
            assert await reader.readline() == line
            writer.close()
            await writer.wait_closed()
    assert open_fds() == before


@pytest.fixture
def fd_headroom() -> Iterator[None]:
    """At least 4096 descriptors: a thousand connections take two each, in one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_concurrent_clients_all_get_their_answers(fw: Any, fd_headroom: None) -> None:
    clients = 1000

    async def main() -> None:
        loop = fw.get_running_loop()
        all_connected = loop.create_future()
        connected = 0
        active = peak = 0

        async def handler(reader: Any, writer: Any) -> None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            try:
                await echo_lines(reader, writer)
            finally:
                active -= 1

        async def client(i: int) -> bytes:
            nonlocal connected
            reader, writer = await fw.open_connection(*address)
            try:
                connected += 1
                if connected == clients:
                    all_connected.set_result(None)
                await all_connected  # every client is connected before any talks
                writer.write(b"client %d\n" % i)
                await writer.drain()
                return bytes(await reader.readline())
            finally:
                writer.close()
                await writer.wait_closed()

        async with await fw.start_server(handler, "127.0.0.1", 0, backlog=clients) as server:
            address = address_of(server)
            tasks = [fw.create_task(client(i)) for i in range(clients)]
            answers = [await task for task in tasks]
            assert answers == [b"client %d\n" % i for i in range(clients)]
            assert peak == clients

    fw.run_guarded(main())
