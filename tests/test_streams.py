"""Streams: StreamReader, StreamWriter and open_connection over real sockets on 127.0.0.1.

Where treadle mirrors asyncio a test takes ``fw`` and runs the same body on both
(asyncio is the oracle); on treadle it runs through ``run_test``, so it also fails on a
leaked task or an error the loop reported. Tests of treadle's own choices (and of its
internals, said so) run on treadle only.
"""

from __future__ import annotations

import array
import ast
import contextlib
import errno
import os
import random
import socket
import ssl
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from loopback import HandOver, abort, buffered, write_in_random_chunks
from oracle_runners import TREADLE

import treadle
import treadle.streams
import treadle.tls
from treadle import (
    IncompleteReadError,
    LimitOverrunError,
    create_task,
    get_running_loop,
    open_connection,
)
from treadle.testing import wait_all_tasks_blocked

# --- helpers ----------------------------------------------------------------------------


def set_limits(writer: Any, high: int, low: int) -> None:
    target = writer.transport if hasattr(writer, "transport") else writer
    target.set_write_buffer_limits(high=high, low=low)


@dataclass
class Pair:
    """Both ends of one connection: the client's streams and the server handler's."""

    server: Any
    reader: Any
    writer: Any
    peer_reader: Any
    peer_writer: Any


@contextlib.asynccontextmanager
async def connected(
    fw: Any, *, small_buffers: bool = False, **client_kwargs: Any
) -> AsyncIterator[Pair]:
    """A server on 127.0.0.1 port 0 and one client connected to it.

    With ``small_buffers`` the kernel's socket buffers are made small (before the
    connection is made, so TCP's window follows), and a peer that does not read pushes
    back after a few hundred kilobytes rather than tens of megabytes.
    """
    handler = HandOver(fw.get_running_loop())
    server = await fw.start_server(handler, "127.0.0.1", 0)
    try:
        address = server.sockets[0].getsockname()[:2]
        if small_buffers:
            client = socket.socket()
            for sock in (server.sockets[0], client):  # accepted sockets inherit these
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
            client.connect(address)  # the listener's backlog completes it
            reader, writer = await fw.open_connection(sock=client, **client_kwargs)
        else:
            reader, writer = await fw.open_connection(*address, **client_kwargs)
        try:
            peer_reader, peer_writer = await handler.accepted
            try:
                yield Pair(server, reader, writer, peer_reader, peer_writer)
            except BaseException:
                abort(peer_writer)  # a failed test: don't wait for unread bytes to flush
                abort(writer)
                raise
            finally:
                peer_writer.close()
                await peer_writer.wait_closed()
        finally:
            writer.close()
            await writer.wait_closed()
    finally:
        handler.release()
        server.close()
        await server.wait_closed()


# --- reading ----------------------------------------------------------------------------


def test_read_n_then_read_all_until_eof(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            assert await p.reader.read(0) == b""
            p.peer_writer.write(b"hello world")
            assert await p.reader.read(5) == b"hello"
            p.peer_writer.write(b"!")
            p.peer_writer.write_eof()
            assert not p.reader.at_eof()
            assert await p.reader.read() == b" world!"
            assert p.reader.at_eof()
            assert await p.reader.read() == b""
            assert await p.reader.read(10) == b""

    fw.run_guarded(main())


def test_readline_returns_lines_then_the_partial_tail_then_nothing(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            p.peer_writer.write(b"one\ntwo\nthree")
            p.peer_writer.write_eof()
            assert await p.reader.readline() == b"one\n"
            assert await p.reader.readline() == b"two\n"
            assert not p.reader.at_eof()  # "three" is still buffered
            assert await p.reader.readline() == b"three"
            assert p.reader.at_eof()
            assert await p.reader.readline() == b""

    fw.run_guarded(main())


def test_readexactly_and_incomplete_read(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            reading = fw.create_task(p.reader.readexactly(6))
            p.peer_writer.write(b"abc")
            await fw.settle()
            assert not reading.done()
            p.peer_writer.write(b"defghij")
            assert await reading == b"abcdef"
            assert await p.reader.readexactly(0) == b""
            p.peer_writer.write_eof()
            with pytest.raises(fw.IncompleteReadError) as info:
                await p.reader.readexactly(10)
            assert info.value.partial == b"ghij"
            assert info.value.expected == 10
            assert await p.reader.read() == b""

    fw.run_guarded(main())


def test_readuntil_a_separator_split_across_segments(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            reading = fw.create_task(p.reader.readuntil(b"\r\n\r\n"))
            p.peer_writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r")
            await fw.settle()
            assert not reading.done()
            p.peer_writer.write(b"\nbody")
            assert await reading == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
            p.peer_writer.write_eof()
            with pytest.raises(fw.IncompleteReadError) as info:
                await p.reader.readuntil(b"\r\n\r\n")
            assert info.value.partial == b"body"
            assert info.value.expected is None
            with pytest.raises(ValueError):
                await p.reader.readuntil(b"")

    fw.run_guarded(main())


def test_async_iteration_yields_lines(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            p.peer_writer.writelines([b"a\nb", b"\nc"])
            p.peer_writer.write_eof()
            assert [line async for line in p.reader] == [b"a\n", b"b\n", b"c"]

    fw.run_guarded(main())


def test_readuntil_past_the_limit_keeps_the_bytes_buffered(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw, limit=16) as p:
            # The separator is there, but further in than the limit.
            p.peer_writer.write(b"a" * 40 + b"\n")
            with pytest.raises(fw.LimitOverrunError) as info:
                await p.reader.readuntil(b"\n")
            assert info.value.consumed == 40
            assert await p.reader.readexactly(41) == b"a" * 40 + b"\n"
            # No separator within the limit at all.
            p.peer_writer.write(b"b" * 40)
            with pytest.raises(fw.LimitOverrunError):
                await p.reader.readuntil(b"\n")
            p.peer_writer.write(b"\nshort\n")
            assert await p.reader.readexactly(40) == b"b" * 40
            assert await p.reader.readuntil(b"\n") == b"\n"
            assert await p.reader.readline() == b"short\n"

    fw.run_guarded(main())


def test_a_chunk_of_exactly_limit_bytes_before_the_separator_is_accepted(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw, limit=16) as p:
            p.peer_writer.write(b"a" * 16 + b"\n" + b"b" * 16 + b"\r\n")
            assert await p.reader.readline() == b"a" * 16 + b"\n"
            assert await p.reader.readuntil(b"\r\n") == b"b" * 16 + b"\r\n"

    fw.run_guarded(main())


def test_read_with_a_huge_n_returns_what_is_there(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            p.peer_writer.write(b"small")
            assert await p.reader.read(2**40) == b"small"
            p.peer_writer.write(b"again")
            assert await p.reader.read(sys.maxsize) == b"again"

    fw.run_guarded(main())


async def test_readline_past_the_limit_raises_and_keeps_the_bytes() -> None:
    # asyncio turns this into ValueError and throws the line away; treadle raises
    # LimitOverrunError and keeps every byte, so the caller decides what to drop.
    async with connected(treadle, limit=16) as p:
        p.peer_writer.write(b"x" * 30 + b"\nnext\n")
        with pytest.raises(LimitOverrunError):
            await p.reader.readline()
        assert await p.reader.readexactly(31) == b"x" * 30 + b"\n"
        assert await p.reader.readline() == b"next\n"


def test_limit_must_be_positive(fw: Any) -> None:
    async def main() -> None:
        for limit in (0, -1):
            with pytest.raises(ValueError):
                await fw.open_connection("127.0.0.1", 9, limit=limit)

    fw.run_guarded(main())


def test_two_tasks_reading_at_once_is_a_clear_error(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            first = fw.create_task(p.reader.read(10))
            await fw.settle()
            with pytest.raises(RuntimeError):
                await p.reader.read(10)
            with pytest.raises(RuntimeError):
                await p.reader.readline()
            p.peer_writer.write(b"for the first")
            assert await first == b"for the fi"
            assert await p.reader.read(10) == b"rst"

    fw.run_guarded(main())


async def test_the_second_reader_error_says_what_is_wrong() -> None:
    async with connected(treadle) as p:
        first = create_task(p.reader.readexactly(3))
        await wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="only one task may read a stream at a time"):
            await p.reader.readuntil(b"\n")
        p.peer_writer.write(b"abc")
        assert await first == b"abc"


async def test_a_cancelled_reader_leaves_the_next_readers_wait_alone() -> None:
    # White-box. A reader cancelled while it waits, whose waiter the readiness callback
    # then forgets (a spurious wake-up: nothing to receive), runs its exit only after
    # another task has begun to wait on the same stream: that exit must not forget the
    # other task's waiter, or the bytes that come next wake nobody.
    async with connected(treadle) as p:
        cancelled = create_task(p.reader.read(10))
        await wait_all_tasks_blocked()
        cancelled.cancel()
        p.reader._conn._on_readable()  # ready, but with nothing to receive
        assert p.reader._conn.read_waiter is None

        async def write_once_all_wait() -> None:
            await wait_all_tasks_blocked()
            assert cancelled.cancelled()
            p.peer_writer.write(b"for second")

        writing = create_task(write_once_all_wait())
        async with treadle.timeout(10):  # this task waits before the cancelled one exits
            assert await p.reader.read(10) == b"for second"
        await writing


async def test_a_read_with_bytes_waiting_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # White-box: the fast path reads straight from the socket, no reader, no Future.
    async with connected(treadle) as p:
        p.peer_writer.write(b"ready\n")
        await p.peer_writer.drain()
        loop = get_running_loop()
        sock = p.writer.get_extra_info("socket")
        registered: list[int] = []
        real_add_reader = treadle.EventLoop.add_reader

        def spy(self: Any, fd: Any, *args: Any) -> None:
            registered.append(fd)
            real_add_reader(self, fd, *args)

        monkeypatch.setattr(treadle.EventLoop, "add_reader", spy)
        monkeypatch.setattr(loop, "create_future", None)  # any Future would fail
        assert await p.reader.readline() == b"ready\n"
        monkeypatch.undo()
        assert registered == []
        assert not loop.has_reader(sock)


async def test_a_reader_that_stops_reading_stops_buffering() -> None:
    # White-box: the readiness callback pauses once twice the limit is buffered.
    limit = 4096
    async with connected(treadle, limit=limit, small_buffers=True) as p:
        loop = get_running_loop()
        sock = p.writer.get_extra_info("socket")
        waiting = create_task(p.reader.read(1))
        await wait_all_tasks_blocked()
        assert loop.has_reader(sock)  # registered once it had to wait
        payload = random.Random(3).randbytes(1024 * 1024)
        sending = create_task(send_all(p.peer_writer, payload))
        assert await waiting == payload[:1]
        await wait_all_tasks_blocked()
        assert not sending.done()
        assert len(p.reader._conn.rbuf) < 2 * limit + 65536
        assert not loop.has_reader(sock)
        rest = await p.reader.readexactly(len(payload) - 1)
        assert rest == payload[1:]
        await sending


async def send_all(writer: Any, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


# --- writing ----------------------------------------------------------------------------


def test_write_writelines_and_write_eof(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            assert p.writer.can_write_eof()
            p.writer.write(b"x")
            p.writer.writelines([bytearray(b"y"), memoryview(b"z"), b"\n"])
            await p.writer.drain()
            p.writer.write_eof()
            with pytest.raises(RuntimeError):
                p.writer.write(b"too late")
            assert await p.peer_reader.read() == b"xyz\n"
            assert p.peer_reader.at_eof()
            # Only the sending side is closed: the reply still arrives.
            p.peer_writer.write(b"reply")
            p.peer_writer.close()
            assert await p.reader.read() == b"reply"

    fw.run_guarded(main())


async def test_a_memoryview_of_wide_items_is_sent_whole() -> None:
    # A memoryview of array("i") has four bytes per item: a partial send must keep the
    # unsent bytes, not count the bytes sent as items (that dropped the tail). Treadle
    # only: asyncio 3.11-3.13 slices such a view by items and loses bytes the same way.
    data = array.array("i", range(200_000))
    async with connected(treadle, small_buffers=True) as p:
        p.writer.write(memoryview(data))
        drained = create_task(p.writer.drain())
        received = await p.peer_reader.readexactly(len(data) * data.itemsize)
        await drained
        assert received == data.tobytes()


async def test_a_socket_closed_under_the_stream_fails_and_touches_no_other_file() -> None:
    """Reads and writes on a socket closed under the stream fail with EBADF, as recv and
    send on it would; the descriptor's number, given to another socket meanwhile, is
    neither read nor written (the connection reads and writes the number itself)."""
    async with connected(treadle) as p:
        sock = p.writer.get_extra_info("socket")
        fd = sock.fileno()
        other, other_peer = socket.socketpair()
        try:
            other_peer.sendall(b"not yours")
            sock.close()  # the caller's bug: the stream owns this socket
            os.dup2(other.fileno(), fd)  # the number now names another socket
            with pytest.raises(OSError) as read_error:
                await p.reader.read(100)
            assert read_error.value.errno == errno.EBADF
            p.writer.write(b"stray")
            with pytest.raises(OSError) as write_error:
                await p.writer.drain()
            assert write_error.value.errno == errno.EBADF
            other.setblocking(False)
            assert other.recv(100) == b"not yours"  # nothing was read from it
            other_peer.setblocking(False)
            with pytest.raises(BlockingIOError):
                other_peer.recv(100)  # nothing was written to it
        finally:
            os.close(fd)
            other.close()
            other_peer.close()


def test_an_ssl_socket_is_refused_with_what_to_pass_instead(fw: Any) -> None:
    # Streams read and write the descriptor: an SSLSocket's would give them ciphertext.
    async def main() -> None:
        plain = socket.socket()
        tls_socket = ssl.create_default_context().wrap_socket(
            plain, server_hostname="example.test", do_handshake_on_connect=False
        )
        with tls_socket, pytest.raises(TypeError, match="SSLSocket"):
            await fw.open_connection(sock=tls_socket)

    fw.run_guarded(main())


def test_write_needs_bytes(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            with pytest.raises(TypeError):
                p.writer.write("text")

    fw.run_guarded(main())


def test_close_flushes_then_the_peer_sees_eof(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            assert not p.writer.is_closing()
            p.writer.write(b"bye")
            p.writer.close()
            assert p.writer.is_closing()
            await p.writer.wait_closed()
            assert await p.peer_reader.read() == b"bye"
            assert p.peer_reader.at_eof()
            p.writer.close()  # closing twice is harmless

    fw.run_guarded(main())


async def test_the_writer_closes_at_the_end_of_async_with() -> None:
    async with connected(treadle) as p:
        async with p.writer as writer:
            assert writer is p.writer
            writer.write(b"inside")
        assert p.writer.is_closing()
        assert p.writer.get_extra_info("socket").fileno() == -1
        assert await p.peer_reader.read() == b"inside"


def test_get_extra_info(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            listening = p.server.sockets[0].getsockname()
            assert p.writer.get_extra_info("peername") == listening
            client = p.writer.get_extra_info("sockname")
            assert client[0] == "127.0.0.1" and client[1] != 0
            assert p.peer_writer.get_extra_info("peername") == client
            assert p.peer_writer.get_extra_info("sockname") == listening
            sock = p.writer.get_extra_info("socket")
            assert sock.getsockname() == client and sock.family == socket.AF_INET
            assert p.writer.get_extra_info("no such thing", 42) == 42
            assert p.writer.get_extra_info("no such thing") is None

    fw.run_guarded(main())


def test_local_addr(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw, local_addr=("127.0.0.1", 0)) as p:
            assert p.writer.get_extra_info("sockname")[0] == "127.0.0.1"

    fw.run_guarded(main())


# --- backpressure -----------------------------------------------------------------------

HIGH, LOW = 64 * 1024, 16 * 1024


def test_drain_blocks_above_high_water_until_the_peer_reads(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw, small_buffers=True) as p:
            set_limits(p.writer, HIGH, LOW)
            chunk = random.Random(4).randbytes(256 * 1024)
            rounds = 64  # 16 MB: far more than the kernel buffers hold
            progress = {"written": 0, "max_buffered": 0}

            async def produce() -> None:
                for _ in range(rounds):
                    p.writer.write(chunk)
                    size = buffered(p.writer)
                    progress["max_buffered"] = max(progress["max_buffered"], size)
                    await p.writer.drain()
                    progress["written"] += len(chunk)

            producer = fw.create_task(produce())
            for _ in range(100):  # until the producer stops making progress
                before = progress["written"]
                await fw.settle()
                if progress["written"] == before:
                    break
            assert not producer.done()
            assert progress["written"] < rounds * len(chunk) // 4
            assert progress["max_buffered"] <= HIGH + len(chunk)
            assert buffered(p.writer) > LOW  # else drain() would have returned
            received = await p.peer_reader.readexactly(rounds * len(chunk))
            await producer
            assert received == chunk * rounds
            assert progress["max_buffered"] <= HIGH + len(chunk)

    fw.run_guarded(main())


def test_several_tasks_draining_at_once_all_wake(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw, small_buffers=True) as p:
            set_limits(p.writer, HIGH, LOW)
            payload = b"d" * (2 * 1024 * 1024)
            p.writer.write(payload)
            assert buffered(p.writer) > HIGH
            drains = [fw.create_task(p.writer.drain()) for _ in range(3)]
            await fw.settle()
            assert not any(d.done() for d in drains)
            assert await p.peer_reader.readexactly(len(payload)) == payload
            for d in drains:
                await d
            await p.writer.drain()

    fw.run_guarded(main())


async def test_a_cancelled_drain_leaves_the_others_waiting() -> None:
    async with connected(treadle, small_buffers=True) as p:
        set_limits(p.writer, HIGH, LOW)
        payload = b"c" * (2 * 1024 * 1024)
        p.writer.write(payload)
        first, second = create_task(p.writer.drain()), create_task(p.writer.drain())
        await wait_all_tasks_blocked()
        await TREADLE.cancel_and_wait(first)
        assert not second.done()
        assert await p.peer_reader.readexactly(len(payload)) == payload
        await second


def test_set_write_buffer_limits_rejects_low_above_high() -> None:
    async def main() -> None:
        async with connected(treadle) as p:
            with pytest.raises(ValueError):
                p.writer.set_write_buffer_limits(high=10, low=20)

    TREADLE.run_guarded(main())


def test_every_byte_in_order_with_random_chunk_sizes_both_ways(fw: Any) -> None:
    async def main() -> None:
        async with connected(fw) as p:
            payload = random.Random(5).randbytes(6 * 1024 * 1024)

            async def send() -> None:
                await write_in_random_chunks(p.writer, payload, random.Random(6), 150_000)
                p.writer.write_eof()

            async def echo() -> None:
                rng = random.Random(7)
                while data := await p.peer_reader.read(rng.randint(1, 150_000)):
                    p.peer_writer.write(data)
                    await p.peer_writer.drain()
                p.peer_writer.write_eof()

            async def receive() -> bytes:
                rng = random.Random(8)
                chunks = []
                while data := await p.reader.read(rng.randint(1, 150_000)):
                    chunks.append(data)
                return b"".join(chunks)

            sending, echoing = fw.create_task(send()), fw.create_task(echo())
            received = await receive()
            await sending
            await echoing
            assert len(received) == len(payload)
            assert received == payload

    fw.run_guarded(main())


# --- connecting -------------------------------------------------------------------------


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections (bound, not listening)."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield reserved.getsockname()[1]


def test_a_refused_connection_raises_connection_refused(fw: Any, refused_port: int) -> None:
    async def main() -> None:
        with pytest.raises(ConnectionRefusedError) as info:
            await fw.open_connection("127.0.0.1", refused_port)
        assert str(refused_port) in str(info.value)

    fw.run_guarded(main())


async def test_the_refusal_names_the_host_and_every_address_tried(
    refused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def two_addresses(host: Any, port: Any, **kwargs: Any) -> list[Any]:
        assert host == "multi.test"
        tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(*tcp, ("127.0.0.1", port)), (*tcp, ("127.0.0.2", port))]

    monkeypatch.setattr(treadle.streams, "getaddrinfo", two_addresses)
    with pytest.raises(ConnectionRefusedError) as info:
        await open_connection("multi.test", refused_port)
    message = str(info.value)
    assert f"multi.test:{refused_port}" in message
    assert f"127.0.0.1:{refused_port}" in message
    assert f"127.0.0.2:{refused_port}" in message


async def test_an_unknown_host_names_the_host() -> None:
    with pytest.raises(socket.gaierror, match=r"nonexistent\.invalid"):
        await open_connection("nonexistent.invalid", 80)


async def test_open_connection_over_an_existing_socket() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sock = socket.create_connection(listener.getsockname())
        peer, _ = listener.accept()
        with peer:
            reader, writer = await open_connection(sock=sock)
            async with writer:
                assert sock.gettimeout() == 0  # made non-blocking for the loop
                peer.sendall(b"over sock=\n")
                assert await reader.readline() == b"over sock=\n"
    with socket.socket() as unused, pytest.raises(ValueError):
        await open_connection("127.0.0.1", 9, sock=unused)
    with pytest.raises(ValueError):
        await open_connection("127.0.0.1")


async def test_exceptions_carry_what_they_describe() -> None:
    error = IncompleteReadError(b"ab", 5)
    assert (error.partial, error.expected) == (b"ab", 5)
    assert isinstance(error, EOFError)
    overrun = LimitOverrunError("too long", 7)
    assert overrun.consumed == 7


# --- a peer that accepts and resets at once ------------------------------------------------


def reset_at_once(writer: Any) -> None:
    """Close the server side with SO_LINGER 0, so the kernel sends a reset (RST)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    abort(writer)


def test_a_reset_right_after_accept_belongs_to_the_first_read_not_the_connect(fw: Any) -> None:
    async def main() -> None:
        async def resetter(reader: Any, writer: Any) -> None:
            reset_at_once(writer)

        server = await fw.start_server(resetter, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # The connect succeeded: open_connection must not report "could not connect".
        reader, writer = await fw.open_connection("127.0.0.1", port)
        await fw.settle()
        with pytest.raises(ConnectionResetError):
            await reader.read(10)
        writer.close()
        with contextlib.suppress(ConnectionResetError):
            await writer.wait_closed()
        server.close()
        await server.wait_closed()

    fw.run_guarded(main())


# --- the shape of the read path -----------------------------------------------------------
#
# One receive routine: every read path (the readiness callback, read()'s fast path, the
# fill of readexactly/readuntil, TLS) receives through Connection.receive, which alone
# calls a socket's recv in streams.py and classifies the outcome; over TLS the socket is
# read in one place too. And the streams ask their connection to change its state.

RECEIVING_CALLS = {"recv", "recv_into", "recvfrom", "recvfrom_into", "recvmsg"}
# os.read, as streams.py names it: a plain connection reads its descriptor with it.
RECEIVING_FUNCTIONS = {"_read"}
MUTATING_METHODS = {"append", "clear", "extend", "insert", "pop", "remove", "update"}


def _functions_calling(
    source: str, names: set[str], functions: frozenset[str] = frozenset()
) -> list[str]:
    """``Class.method`` (or ``function``) for each call of an attribute named in ``names``,
    or of a function named in ``functions``."""
    found: list[str] = []

    def visit(node: ast.AST, where: list[str]) -> None:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            where = [*where, node.name]
        if isinstance(node, ast.Call) and (
            (isinstance(node.func, ast.Attribute) and node.func.attr in names)
            or (isinstance(node.func, ast.Name) and node.func.id in functions)
        ):
            found.append(".".join(where))
        for child in ast.iter_child_nodes(node):
            visit(child, where)

    visit(ast.parse(source), [])
    return found


def _connection_edits(source: str, class_name: str) -> list[str]:
    """Places in ``class_name`` that change the connection's fields rather than ask it."""
    [cls] = [
        n
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.ClassDef) and n.name == class_name
    ]

    def mentions_connection(node: ast.AST, aliases: set[str]) -> bool:
        return any(
            (isinstance(n, ast.Attribute) and n.attr == "_conn")
            or (isinstance(n, ast.Name) and n.id in aliases)
            for n in ast.walk(node)
        )

    edits = []
    for method in cls.body:
        if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        aliases: set[str] = set()  # local names bound to the connection or its fields
        for node in ast.walk(method):
            if isinstance(node, ast.Assign) and mentions_connection(node.value, aliases):
                aliases.update(t.id for t in node.targets if isinstance(t, ast.Name))
        for node in ast.walk(method):
            # What each statement changes: the object an assignment, a del or an
            # in-place operator reaches into, or the receiver of a mutating call.
            changed: list[ast.expr] = []
            if isinstance(node, ast.Assign | ast.Delete):
                changed = [
                    t.value for t in node.targets if isinstance(t, ast.Attribute | ast.Subscript)
                ]
            elif isinstance(node, ast.AugAssign):
                target = node.target
                changed = [
                    target.value if isinstance(target, ast.Attribute | ast.Subscript) else target
                ]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in MUTATING_METHODS
            ):
                changed = [node.func.value]
            if any(mentions_connection(c, aliases) for c in changed):
                edits.append(f"{class_name}.{method.name}:{node.lineno}")
    return edits


def _source(module: Any) -> str:
    # The .py beside the module: in the compiled build, __file__ is the extension module.
    path = Path(module.__file__)
    return path.with_name(path.name.split(".")[0] + ".py").read_text(encoding="utf-8")


def test_one_receive_routine_reads_the_socket() -> None:
    streams_source = _source(treadle.streams)
    assert _functions_calling(streams_source, RECEIVING_CALLS, RECEIVING_FUNCTIONS) == [
        "Connection.receive"
    ]
    assert _functions_calling(_source(treadle.tls), RECEIVING_CALLS) == [
        "TLSLayer.receive_ciphertext"
    ]


def test_the_streams_ask_their_connection_and_never_edit_it() -> None:
    source = _source(treadle.streams)
    assert _connection_edits(source, "StreamReader") == []
    assert _connection_edits(source, "StreamWriter") == []
    # The check itself finds edits, direct and through a local name.
    edits = (
        "class R:\n"
        "    def a(self):\n        self._conn.eof = True\n"
        "    def b(self):\n        buffer = self._conn.rbuf\n        del buffer[:3]\n"
        "    def c(self):\n        c = self._conn\n        c.rbuf.clear()\n"
        "    def d(self):\n        c = self._conn\n        c.rbuf += b'x'\n"
        "    def e(self):\n        buffer = self._conn.rbuf\n        buffer += b'x'\n"
        "    def f(self, connection):\n        self._conn = connection\n"
        "    def g(self):\n        c = self._conn\n        return c.take(c.rbuf.find(b'x'))\n"
    )
    assert _connection_edits(edits, "R") == ["R.a:3", "R.b:6", "R.c:9", "R.d:12", "R.e:15"]
