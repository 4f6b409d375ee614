"""treadle.aio's stream transport, against asyncio's on the same loop and on asyncio's loop.

Every test body runs four times: on treadle.aio with treadle's transport (the one under
test) twice, once with each of its two copies of ``write`` (the transport class's, which
the pure build uses, and its data path's, which the compiled build uses), on treadle.aio
with asyncio's transport (``transport="asyncio"``), and on stock asyncio (the oracle).
Real sockets on 127.0.0.1 port 0 (and a UNIX socket); tests synchronise on futures the
protocols resolve, never on sleeps.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
import ssl
import sys
import tempfile
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from unittest import mock

import pytest

import treadle.aio
import treadle.aio.transport
from treadle.aio.transport import SocketTransport
from treadle.describe import describe_callback

_T = TypeVar("_T")

# "treadle+other-write": treadle's transport with the write this build does not use.
KINDS = ["treadle", "treadle+other-write", "treadle.aio+asyncio-transport", "asyncio"]


@pytest.fixture(params=KINDS)
def run(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Coroutine[Any, Any, _T]], _T]:
    """Run a coroutine to completion on a fresh loop of the kind under test."""
    kind = request.param
    if kind == "treadle+other-write":
        monkeypatch.setattr(
            treadle.aio.transport, "_DATA_PATH_WRITES", not treadle.aio.transport._DATA_PATH_WRITES
        )

    def make_loop() -> asyncio.AbstractEventLoop:
        if kind in ("treadle", "treadle+other-write"):
            return treadle.aio.new_event_loop(transport="treadle")
        if kind == "treadle.aio+asyncio-transport":
            return treadle.aio.new_event_loop(transport="asyncio")
        return asyncio.SelectorEventLoop()

    def runner(coro: Coroutine[Any, Any, _T]) -> _T:
        with asyncio.Runner(loop_factory=make_loop) as r:
            return r.run(asyncio.wait_for(coro, 30))

    runner.kind = kind  # type: ignore[attr-defined]
    return runner


class Recorder(asyncio.Protocol):
    """Records every callback, in order; futures for connection_made/lost and eof."""

    def __init__(self, *, keep_open_on_eof: bool = False) -> None:
        loop = asyncio.get_running_loop()
        self.events: list[str] = []
        self.data = bytearray()
        self.made: asyncio.Future[asyncio.Transport] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.wanted = 0
        self.got_wanted: asyncio.Future[None] = loop.create_future()
        self.keep_open_on_eof = keep_open_on_eof
        self.writing_paused = 0
        self.writing_resumed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.events.append("made")
        self.transport: Any = transport
        self.made.set_result(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.events.append("data")
        self.data += data
        if self.wanted and len(self.data) >= self.wanted and not self.got_wanted.done():
            self.got_wanted.set_result(None)

    def eof_received(self) -> bool:
        self.events.append("eof")
        self.eof.set_result(None)
        return self.keep_open_on_eof

    def pause_writing(self) -> None:
        self.events.append("pause_writing")
        self.writing_paused += 1

    def resume_writing(self) -> None:
        self.events.append("resume_writing")
        if not self.writing_resumed.done():
            self.writing_resumed.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append("lost")
        self.lost.set_result(exc)

    async def receive(self, nbytes: int) -> bytes:
        self.wanted = nbytes
        if len(self.data) < nbytes:
            await self.got_wanted
        return bytes(self.data)


async def connected_pair(
    server_protocol: Callable[[], asyncio.BaseProtocol] | None = None,
    client_protocol: Callable[[], asyncio.BaseProtocol] | None = None,
) -> tuple[Any, Any, asyncio.Server]:
    """A server and a client protocol connected over loopback TCP, both made."""
    loop = asyncio.get_running_loop()
    servers: list[Any] = []

    def make_server_protocol() -> asyncio.BaseProtocol:
        protocol = (server_protocol or Recorder)()
        servers.append(protocol)
        return protocol

    server = await loop.create_server(make_server_protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(client_protocol or Recorder, "127.0.0.1", port)
    while not servers:
        await asyncio.sleep(0)
    await servers[0].made
    return servers[0], client, server


def write_until_buffered(transport: Any) -> bytes:
    """Write 1 MiB pieces until the socket stops taking them; return all that was written."""
    written = []
    while not transport.get_write_buffer_size():
        piece = os.urandom(1 << 20)
        transport.write(piece)
        written.append(piece)
    return b"".join(written)


async def closed(server: asyncio.Server, *protocols: Any) -> None:
    for protocol in protocols:
        if protocol.transport is not None:
            protocol.transport.close()
        await protocol.lost
    server.close()
    await server.wait_closed()


def test_the_treadle_kind_uses_treadles_transport(run: Any) -> None:
    async def main() -> str:
        server, client, listener = await connected_pair()
        name = type(client.transport).__name__
        await closed(listener, server, client)
        return name

    treadles = run.kind in ("treadle", "treadle+other-write")
    expected = "SocketTransport" if treadles else "_SelectorSocketTransport"
    assert run(main()) == expected


def test_echo_and_extra_info(run: Any) -> None:
    async def main() -> None:
        server, client, listener = await connected_pair()
        transport = client.transport
        sock = transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert transport.get_extra_info("peername") == listener.sockets[0].getsockname()
        assert transport.get_extra_info("sockname") == sock.getsockname()
        assert server.transport.get_extra_info("peername") == sock.getsockname()
        assert transport.get_extra_info("nonesuch", "dflt") == "dflt"
        assert transport.get_protocol() is client
        assert transport.is_reading() and not transport.is_closing()
        assert transport.can_write_eof()
        transport.write(b"hello ")
        transport.writelines([b"wor", bytearray(b"ld"), memoryview(b"!!")])
        assert await server.receive(13) == b"hello world!!"
        with pytest.raises(TypeError, match="bytes-like"):
            transport.write("text")
        await closed(listener, server, client)
        assert client.events == ["made", "lost"]

    run(main())


def test_large_write_pauses_and_resumes_writing_and_loses_nothing(run: Any) -> None:
    async def main() -> None:
        server, client, listener = await connected_pair()
        server.transport.pause_reading()  # the peer reads nothing until told
        transport = client.transport
        transport.set_write_buffer_limits(high=64 * 1024)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        payload = write_until_buffered(transport)
        transport.write(payload)  # a second copy, to be sure to pass the high mark
        payload += payload
        assert transport.get_write_buffer_size() > 64 * 1024
        assert client.writing_paused == 1
        transport.write(b"tail")  # buffered behind the rest, in order
        assert client.writing_paused == 1  # paused once, not once per write
        server.transport.resume_reading()
        await client.writing_resumed
        assert transport.get_write_buffer_size() <= 16 * 1024
        assert await server.receive(len(payload) + 4) == payload + b"tail"
        assert transport.get_write_buffer_size() == 0
        await closed(listener, server, client)

    run(main())


def test_writelines_of_many_and_of_large_chunks_loses_nothing(run: Any) -> None:
    # More chunks than one writev takes (IOV_MAX, 1,024 on Linux), and chunks larger than
    # the socket takes at once, with bytes, bytearrays and memoryviews mixed in.
    async def main() -> None:
        server, client, listener = await connected_pair()
        many = [bytes([i % 251]) * 3 for i in range(2500)]
        large = [os.urandom(3 << 20), bytearray(os.urandom(1 << 20)), b"",
                 memoryview(os.urandom(2 << 20))]
        client.transport.writelines(many)
        client.transport.writelines(large)
        expected = b"".join(many) + b"".join(bytes(chunk) for chunk in large)
        assert await server.receive(len(expected)) == expected
        await closed(listener, server, client)

    run(main())


def test_limits_are_checked(run: Any) -> None:
    async def main() -> None:
        server, client, listener = await connected_pair()
        with pytest.raises(ValueError, match="high"):
            client.transport.set_write_buffer_limits(high=1, low=2)
        client.transport.set_write_buffer_limits(low=100)
        assert client.transport.get_write_buffer_limits() == (100, 400)
        await closed(listener, server, client)

    run(main())


def test_pause_reading_holds_data_back_until_resumed(run: Any) -> None:
    async def main() -> None:
        server, client, listener = await connected_pair()
        server.transport.pause_reading()
        server.transport.pause_reading()  # twice is harmless
        assert not server.transport.is_reading()
        client.transport.write(b"held")
        # Round trips on another connection give the loop many chances to misdeliver.
        _, other, other_listener = await connected_pair()
        for _ in range(5):
            other.transport.write(b"x")
            await asyncio.sleep(0)
        assert server.data == b""
        server.transport.resume_reading()
        assert server.transport.is_reading()
        assert await server.receive(4) == b"held"
        other.transport.close()
        await other.lost
        other_listener.close()
        await closed(listener, server, client)

    run(main())


def test_half_close_keeps_the_other_direction_open(run: Any) -> None:
    async def main() -> None:
        server, client, listener = await connected_pair(
            server_protocol=lambda: Recorder(keep_open_on_eof=True)
        )
        client.transport.write(b"request")
        client.transport.write_eof()
        client.transport.write_eof()  # twice is harmless
        with pytest.raises(RuntimeError, match="write_eof"):
            client.transport.write(b"more")
        await server.eof
        assert server.data == b"request"
        assert not server.transport.is_closing()
        server.transport.write(b"response")  # still open for writing
        server.transport.close()
        await client.eof  # the client's protocol returns False: its transport closes
        assert client.data == b"response"
        assert await client.lost is None
        assert await server.lost is None
        assert server.events == ["made", "data", "eof", "lost"]
        assert client.events == ["made", "data", "eof", "lost"]
        listener.close()
        await listener.wait_closed()

    run(main())


def test_eof_closes_when_the_protocol_says_so(run: Any) -> None:
    async def main() -> None:
        server, client, listener = await connected_pair()
        client.transport.write_eof()
        await server.eof
        assert await server.lost is None
        assert server.transport.is_closing()
        await client.eof  # the server's transport closed: the client sees EOF
        await closed(listener, client)

    run(main())


@pytest.mark.parametrize("how", ["close", "abort"])
def test_closing_mid_write(run: Any, how: str) -> None:
    """close() sends what is buffered first; abort() drops it. Either ends the connection."""

    async def main() -> None:
        server, client, listener = await connected_pair()
        server.transport.pause_reading()
        payload = write_until_buffered(client.transport)
        getattr(client.transport, how)()
        getattr(client.transport, how)()  # twice is harmless
        assert client.transport.is_closing()
        assert not client.transport.is_reading()
        buffered = client.transport.get_write_buffer_size()
        server.transport.resume_reading()
        assert await client.lost is None
        if how == "close":
            assert buffered > 0
            await server.eof
            assert bytes(server.data) == payload
            await closed(listener, server)
        else:
            assert buffered == 0
            client.transport.write(b"after")  # counted and dropped, as asyncio does
            exc = await server.lost  # the peer sees EOF or a reset, never all of it
            assert exc is None or isinstance(exc, ConnectionResetError)
            assert len(server.data) < len(payload)
            listener.close()
            await listener.wait_closed()

    run(main())


@pytest.mark.parametrize("how", ["write", "writelines"])
def test_a_socket_closed_under_the_transport_fails_its_writes(run: Any, how: str) -> None:
    """A caller that closes the socket it gave the transport gets EBADF, as from asyncio.

    The descriptor's number may belong to another socket by then: nothing is written there.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            sock = socket.create_connection(listener.getsockname())
            accepted, _ = listener.accept()
            transport, protocol = await loop.create_connection(Recorder, sock=sock)
            await protocol.made
            fd = sock.fileno()
            reuser, reuser_peer = socket.socketpair()
            sock.close()  # the caller's bug: the transport owns this socket
            os.dup2(reuser.fileno(), fd)  # the number now names another socket
            try:
                if how == "write":
                    transport.write(b"stray")
                else:
                    transport.writelines([b"str", b"ay"])
                exc = await protocol.lost
                assert isinstance(exc, OSError) and exc.errno == errno.EBADF
                reuser_peer.setblocking(False)
                with pytest.raises(BlockingIOError):
                    reuser_peer.recv(100)
            finally:
                os.close(fd)
                for other in (reuser, reuser_peer, accepted):
                    other.close()

    run(main())


@pytest.mark.parametrize("protocol_kind", ["plain", "buffered"])
def test_a_socket_closed_under_the_transport_fails_its_reads(
    run: Any, protocol_kind: str
) -> None:
    """Closed by its caller between the poll and the read: EBADF, as from asyncio.

    The poll has reported the descriptor readable when a callback queued before it closes
    the socket and the descriptor's number comes to name another socket, whose waiting
    bytes the transport must not read.
    """

    async def main() -> None:
        loop = asyncio.get_running_loop()
        protocol_factory = Recorder if protocol_kind == "plain" else BufferedRecorder
        with socket.create_server(("127.0.0.1", 0)) as listener:
            sock = socket.create_connection(listener.getsockname())
            accepted, _ = listener.accept()
            _, protocol = await loop.create_connection(protocol_factory, sock=sock)
            await protocol.made
            fd = sock.fileno()
            reuser, reuser_peer = socket.socketpair()
            reuser_peer.sendall(b"not yours")

            def close_under_the_transport() -> None:
                sock.close()  # the caller's bug: the transport owns this socket
                os.dup2(reuser.fileno(), fd)  # the number now names another socket

            try:
                # The next iteration's poll finds the socket readable; the callback queued
                # now runs before the reader does, in the same iteration.
                accepted.sendall(b"in flight")
                loop.call_soon(close_under_the_transport)
                exc = await protocol.lost
                assert isinstance(exc, OSError) and exc.errno == errno.EBADF
                assert not protocol.data
                assert reuser.recv(100) == b"not yours"
            finally:
                os.close(fd)
                for other in (reuser, reuser_peer, accepted):
                    other.close()

    run(main())


def test_connection_reset_reaches_connection_lost(run: Any) -> None:
    async def main() -> None:
        server, client, listener = await connected_pair()
        sock = client.transport.get_extra_info("socket")
        # SO_LINGER 0: closing sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.transport.abort()
        await client.lost
        exc = await server.lost
        assert isinstance(exc, ConnectionResetError)
        assert "eof" not in server.events
        listener.close()
        await listener.wait_closed()

    run(main())


def test_a_protocol_error_goes_to_the_exception_handler(run: Any) -> None:
    class Failing(Recorder):
        def data_received(self, data: bytes) -> None:
            raise ZeroDivisionError("protocol bug")

    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        reports: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        server, client, listener = await connected_pair(server_protocol=Failing)
        client.transport.write(b"boom")
        exc = await server.lost
        assert isinstance(exc, ZeroDivisionError)
        await client.eof
        await closed(listener, client)
        return reports

    [report] = run(main())
    assert report["message"] == "Fatal error: protocol.data_received() call failed."
    assert isinstance(report["exception"], ZeroDivisionError)
    assert report["protocol"] is not None and report["transport"] is not None


class BufferedRecorder(asyncio.BufferedProtocol):
    """Receives into its own small buffer; records reads and their sizes."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.buffer = bytearray(1000)
        self.data = bytearray()
        self.sizes_asked: set[int] = set()
        self.made: asyncio.Future[None] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.made.set_result(None)

    def get_buffer(self, sizehint: int) -> memoryview:
        self.sizes_asked.add(sizehint)
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes: int) -> None:
        assert 0 < nbytes <= len(self.buffer)
        self.data += self.buffer[:nbytes]

    def eof_received(self) -> None:
        self.eof.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.set_result(exc)


def test_buffered_protocol_receives_every_byte(run: Any) -> None:
    payload = os.urandom(300_000)

    async def main() -> None:
        server, client, listener = await connected_pair(server_protocol=BufferedRecorder)
        client.transport.write(payload)
        client.transport.write_eof()
        await server.eof
        assert bytes(server.data) == payload
        assert server.sizes_asked == {-1}
        await server.lost
        await closed(listener, client)

    run(main())


def test_buffered_protocol_empty_buffer_is_a_fatal_error(run: Any) -> None:
    class Empty(BufferedRecorder):
        def get_buffer(self, sizehint: int) -> memoryview:
            return memoryview(bytearray())

    async def main() -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        reports: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reports.append(context))
        server, client, listener = await connected_pair(server_protocol=Empty)
        client.transport.write(b"data")
        assert isinstance(await server.lost, RuntimeError)
        await closed(listener, client)
        return reports

    [report] = run(main())
    assert report["message"] == "Fatal error: protocol.get_buffer() call failed."
    assert "empty buffer" in str(report["exception"])


def test_set_protocol_mid_stream(run: Any) -> None:
    async def main() -> None:
        server, client, listener = await connected_pair()
        client.transport.write(b"first")
        assert await server.receive(5) == b"first"
        # Switch a reading transport to a buffered protocol, and back to a plain one.
        buffered = BufferedRecorder()
        server.transport.set_protocol(buffered)
        assert server.transport.get_protocol() is buffered
        client.transport.write(b"second")
        while bytes(buffered.data) != b"second":
            await asyncio.sleep(0)
        plain = Recorder()
        server.transport.set_protocol(plain)
        client.transport.write(b"third")
        assert await plain.receive(5) == b"third"
        assert bytes(server.data) == b"first"
        client.transport.close()
        assert await plain.lost is None  # the new protocol gets the end
        assert not server.lost.done()
        await client.lost
        listener.close()
        await listener.wait_closed()

    run(main())


def test_set_protocol_to_one_of_the_same_kind_mid_stream(run: Any) -> None:
    """Plain to plain and buffered to buffered: what is read next goes to the new one."""

    async def main() -> None:
        server, client, listener = await connected_pair()
        plain = Recorder()
        server.transport.set_protocol(plain)
        client.transport.write(b"first")
        assert await plain.receive(5) == b"first"
        buffered = BufferedRecorder()
        server.transport.set_protocol(buffered)
        other_buffered = BufferedRecorder()
        server.transport.set_protocol(other_buffered)
        client.transport.write(b"second")
        while bytes(other_buffered.data) != b"second":
            await asyncio.sleep(0)
        assert not server.data and not buffered.data
        client.transport.close()
        assert await other_buffered.lost is None
        await client.lost
        listener.close()
        await listener.wait_closed()

    run(main())


def test_unix_socket_stream(run: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sock")
            servers: list[Recorder] = []

            def make() -> Recorder:
                servers.append(Recorder())
                return servers[-1]

            listener = await loop.create_unix_server(make, path)
            _, client = await loop.create_unix_connection(Recorder, path)
            client.transport.write(b"over unix")
            while not servers:
                await asyncio.sleep(0)
            assert await servers[0].receive(9) == b"over unix"
            assert client.transport.get_extra_info("peername") == path
            await closed(listener, servers[0], client)

    run(main())


def test_connect_accepted_socket(run: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            peer = socket.create_connection(listener.getsockname())
            accepted, _ = listener.accept()
            with peer:
                _, protocol = await loop.connect_accepted_socket(Recorder, accepted)
                peer.sendall(b"ping")
                assert await protocol.receive(4) == b"ping"
                protocol.transport.write(b"pong")
                peer.settimeout(10)
                assert peer.recv(4) == b"pong"
                protocol.transport.close()
                await protocol.lost

    run(main())


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_streams_echo_a_large_payload(run: Any, tls: bool, request: pytest.FixtureRequest) -> None:
    """1 MiB through asyncio's streams (write, drain, readexactly), plain and over TLS."""
    payload = os.urandom(1 << 20)
    server_context = client_context = None
    if tls:
        server_context, client_context = request.getfixturevalue("certificates")

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readexactly(len(payload)))
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_context)
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=client_context,
            server_hostname="localhost" if tls else None,
        )
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        listener.close()
        await listener.wait_closed()

    run(main())


def test_sendfile(run: Any) -> None:
    content = os.urandom(200_000)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server, client, listener = await connected_pair()
        with tempfile.TemporaryFile() as f:
            f.write(content)
            f.seek(0)
            client.transport.write(b"head:")
            sent = await loop.sendfile(client.transport, f, offset=10, count=100_000)
            assert sent == 100_000
            assert client.transport.is_reading()  # restored after sendfile
            client.transport.write(b":tail")
        expected = b"head:" + content[10:100_010] + b":tail"
        assert await server.receive(len(expected)) == expected
        await closed(listener, server, client)

    run(main())


@pytest.fixture(scope="module")
def certificates() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    trustme = pytest.importorskip("trustme")
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return server_context, client_context


def test_start_tls_over_the_transport(
    run: Any, certificates: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = certificates

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            await writer.start_tls(server_context)
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        listener = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_context, server_hostname="localhost")
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"secret\n")
        assert await reader.readline() == b"SECRET\n"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        listener.close()
        await listener.wait_closed()

    run(main())


# --- treadle's transport only ---------------------------------------------------------


def test_the_switch_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TREADLE_AIO_TRANSPORT", "asyncio")
    loop = treadle.aio.new_event_loop()
    assert loop._stream_transport == "asyncio"
    loop.close()
    loop = treadle.aio.new_event_loop(transport="treadle")  # the argument wins
    assert loop._stream_transport == "treadle"
    loop.close()
    monkeypatch.setenv("TREADLE_AIO_TRANSPORT", "uv")
    with pytest.raises(ValueError, match=r"\$TREADLE_AIO_TRANSPORT='uv'.*'treadle'.*'asyncio'"):
        treadle.aio.new_event_loop()
    with pytest.raises(ValueError, match=r"transport='fast' names no stream transport"):
        treadle.aio.new_event_loop(transport="fast")


def test_a_bytearray_written_then_changed_is_sent_as_it_was() -> None:
    # The transport copies a mutable buffer it cannot send at once (asyncio 3.13 keeps
    # the caller's object, so this is treadle's only).
    async def main() -> None:
        server, client, listener = await connected_pair()
        server.transport.pause_reading()
        sent = write_until_buffered(client.transport)
        big = bytearray(b"a" * (1 << 20))
        client.transport.write(big)
        big[:] = b"b" * len(big)
        server.transport.resume_reading()
        data = await server.receive(len(sent) + len(big))
        assert data == sent + b"a" * (1 << 20)
        await closed(listener, server, client)

    with asyncio.Runner(loop_factory=treadle.aio.new_event_loop) as runner:
        runner.run(main())


def test_repr_and_unclosed_warning() -> None:
    async def main() -> str:
        server, client, listener = await connected_pair()
        text = repr(client.transport)
        await closed(listener, server, client)
        assert "closed" in repr(client.transport)
        return text

    with asyncio.Runner(loop_factory=treadle.aio.new_event_loop) as runner:
        text = runner.run(main())
    assert text.startswith("<SocketTransport fd=") and "read=polling" in text
    assert "write=<idle, bufsize=0>" in text

    loop = treadle.aio.new_event_loop()
    a, b = socket.socketpair()
    try:
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            transport = SocketTransport(loop, a, asyncio.Protocol())
            loop.close()  # drops the callbacks that hold it
            del transport
            gc.collect()
        assert a.fileno() == -1  # closed by __del__
    finally:
        b.close()


def test_the_readers_table_holds_the_data_path_named_after_its_transport() -> None:
    """The poller's callback is the transport's data path's, which says whose it is.

    (Debug mode's slow-callback warning and introspection name a callback by its owner.)
    And once the connection is lost the data path lets go of the transport: a lost
    transport is freed as soon as the last reference to it goes, with no cycle to wait
    for the garbage collector.
    """

    async def main() -> None:
        loop: Any = asyncio.get_running_loop()
        server, client, listener = await connected_pair()
        transport = client.transport
        fd = transport.get_extra_info("socket").fileno()
        path = loop._readers[fd]._callback.__self__
        assert repr(path) == f"<DataPath of {transport!r}>"
        assert describe_callback(loop._readers[fd]._callback) == "DataPath.read_ready()"
        freed = weakref.ref(transport)
        await closed(listener, server, client)
        del transport, path, client  # (the client protocol's made future holds it too)
        gc.disable()
        try:
            await asyncio.sleep(0)
            assert freed() is None
        finally:
            gc.enable()

    with asyncio.Runner(loop_factory=treadle.aio.new_event_loop) as runner:
        runner.run(main())


def test_a_transport_is_made_on_a_mock_socket() -> None:
    """asyncio's own tests make transports on mock sockets (test_base_events).

    Whose ``fileno()`` is a mock too: the compiled data path must not insist on an int.
    """
    loop = treadle.aio.new_event_loop()
    sock = mock.MagicMock()
    try:
        transport = SocketTransport(loop, sock, asyncio.Protocol())
        transport.close()
        loop.run_until_complete(asyncio.sleep(0))
        sock.close.assert_called_once_with()
    finally:
        loop.close()


@pytest.mark.skipif(sys.version_info < (3, 13), reason="Server.close_clients is 3.13+")
def test_server_close_clients_reaches_treadles_transports() -> None:
    async def main() -> None:
        server, client, listener = await connected_pair()
        listener.close()
        listener.close_clients()  # type: ignore[attr-defined]
        assert await server.lost is None
        await client.eof
        await listener.wait_closed()
        client.transport.close()
        await client.lost

    with asyncio.Runner(loop_factory=treadle.aio.new_event_loop) as runner:
        runner.run(main())
