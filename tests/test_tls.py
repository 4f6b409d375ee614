"""TLS streams: handshake, verification, SNI, extra info, bulk data, timeouts, close_notify.

Certificates come from a throwaway trustme CA made at test time; no key is committed.
Where treadle mirrors asyncio a test takes ``fw`` and runs on both (asyncio is the
oracle). The timeout tests run on real time, since the timeout is the thing tested;
they are kept to a few tenths of a second.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from loopback import address_of, write_in_random_chunks
from oracle_runners import TREADLE

import treadle
from treadle import get_running_loop, open_connection, start_server
from treadle.testing import wait_all_tasks_blocked

# --- helpers ----------------------------------------------------------------------------


async def echo(reader: Any, writer: Any) -> None:
    """Echo until the client closes, then close (asyncio does not close for us)."""
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


async def close(writer: Any) -> None:
    writer.close()
    await writer.wait_closed()


# --- handshake and verification ---------------------------------------------------------


def test_echo_several_megabytes_over_tls(
    fw: Any, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    payload = random.Random(11).randbytes(5 * 1024 * 1024 + 3)

    async def main() -> None:
        async with await fw.start_server(echo, "127.0.0.1", 0, ssl=server_context) as server:
            host, port = address_of(server)
            reader, writer = await fw.open_connection(
                host, port, ssl=client_context, server_hostname="localhost"
            )

            sending = fw.create_task(
                write_in_random_chunks(writer, payload, random.Random(12), 100_000)
            )
            received = await reader.readexactly(len(payload))
            await sending
            assert received == payload
            await close(writer)

    fw.run_guarded(main())


def test_certificates_are_verified_by_default(fw: Any, server_context: ssl.SSLContext) -> None:
    async def main() -> None:
        async with await fw.start_server(echo, "127.0.0.1", 0, ssl=server_context) as server:
            with pytest.raises(ssl.SSLCertVerificationError):
                await fw.open_connection("localhost", address_of(server)[1], ssl=True)

    fw.run_guarded(main())


def test_the_host_name_is_checked(
    fw: Any, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def main() -> None:
        async with await fw.start_server(echo, "127.0.0.1", 0, ssl=server_context) as server:
            with pytest.raises(ssl.SSLCertVerificationError, match=r"wrong\.example"):
                await fw.open_connection(
                    *address_of(server), ssl=client_context, server_hostname="wrong.example"
                )

    fw.run_guarded(main())


def test_a_server_hostname_is_required_to_check_against(
    fw: Any, client_context: ssl.SSLContext
) -> None:
    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            sock = socket.create_connection(listener.getsockname())
            with sock, pytest.raises(ValueError):
                await fw.open_connection(sock=sock, ssl=client_context)

    fw.run_guarded(main())


def test_the_server_sees_the_sni_name(
    fw: Any, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    seen: list[str | None] = []

    def on_sni(sslobj: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        seen.append(server_name)

    server_context.sni_callback = on_sni

    async def main() -> None:
        async with await fw.start_server(echo, "127.0.0.1", 0, ssl=server_context) as server:
            port = address_of(server)[1]
            _, writer = await fw.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
            )
            await close(writer)
            # Without server_hostname, the host connected to is the name sent.
            _, writer = await fw.open_connection("localhost", port, ssl=client_context)
            await close(writer)

    fw.run_guarded(main())
    assert seen == ["localhost", "localhost"]


def test_tls_extra_info(
    fw: Any, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def main() -> None:
        loop = fw.get_running_loop()
        server_side = loop.create_future()

        async def handler(reader: Any, writer: Any) -> None:
            server_side.set_result(
                {key: writer.get_extra_info(key) for key in ("ssl_object", "peercert")}
            )
            await echo(reader, writer)

        async with await fw.start_server(handler, "127.0.0.1", 0, ssl=server_context) as server:
            reader, writer = await fw.open_connection(
                *address_of(server), ssl=client_context, server_hostname="localhost"
            )
            sslobj = writer.get_extra_info("ssl_object")
            assert isinstance(sslobj, ssl.SSLObject)
            assert sslobj.version().startswith("TLS")
            assert sslobj.server_hostname == "localhost"
            peercert = writer.get_extra_info("peercert")
            assert ("DNS", "localhost") in peercert["subjectAltName"]
            cipher = writer.get_extra_info("cipher")
            assert isinstance(cipher, tuple) and len(cipher) == 3
            assert cipher[1] == sslobj.version()
            assert writer.get_extra_info("peername") == address_of(server)
            seen_by_server = await server_side
            assert isinstance(seen_by_server["ssl_object"], ssl.SSLObject)
            assert not seen_by_server["peercert"]  # the client sent no certificate
            writer.write(b"still works\n")
            assert await reader.readline() == b"still works\n"
            await close(writer)

    fw.run_guarded(main())


async def test_tls_streams_cannot_half_close(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async with await start_server(echo, "127.0.0.1", 0, ssl=server_context) as server:
        _, writer = await open_connection(
            *address_of(server), ssl=client_context, server_hostname="localhost"
        )
        assert not writer.can_write_eof()
        with pytest.raises(RuntimeError, match="TLS"):
            writer.write_eof()
        await close(writer)


async def test_a_server_needs_a_context() -> None:
    with pytest.raises(TypeError):
        await start_server(echo, "127.0.0.1", 0, ssl=True)  # type: ignore[arg-type]


async def test_a_failed_handshake_is_logged_and_the_server_goes_on(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with await start_server(echo, "127.0.0.1", 0, ssl=server_context) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await open_connection(*address_of(server), ssl=True, server_hostname="localhost")
        reader, writer = await open_connection(
            *address_of(server), ssl=client_context, server_hostname="localhost"
        )
        writer.write(b"next\n")
        assert await reader.readline() == b"next\n"
        await close(writer)
    failures = [r for r in caplog.records if r.name == "treadle" and "failed to start" in r.message]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING
    assert "127.0.0.1:" in failures[0].message


# --- timeouts ---------------------------------------------------------------------------


async def test_the_client_handshake_times_out(client_context: ssl.SSLContext) -> None:
    # The kernel completes the TCP handshake from the backlog; nobody ever speaks TLS.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="TLS handshake"):
            await open_connection(
                *silent.getsockname(),
                ssl=client_context,
                server_hostname="localhost",
                ssl_handshake_timeout=0.2,
            )
        elapsed = time.monotonic() - started
        # Not the 60 s default; the upper margin is for a busy machine's stalls.
        assert 0.15 < elapsed < 5, f"the 0.2 s handshake timeout fired after {elapsed:.2f} s"


async def test_cancelling_open_connection_during_the_handshake_leaves_nothing_behind(
    client_context: ssl.SSLContext,
) -> None:
    loop = get_running_loop()
    # White-box: the loop's registered readers and writers.
    before = (dict(loop._readers), dict(loop._writers))
    with socket.create_server(("127.0.0.1", 0)) as silent:
        connecting = treadle.create_task(
            open_connection(*silent.getsockname(), ssl=client_context, server_hostname="localhost")
        )
        for _ in range(1000):  # until the client waits for the server's first TLS bytes
            await wait_all_tasks_blocked()
            if len(loop._readers) > len(before[0]):
                break
        else:
            pytest.fail("the handshake never started waiting for the server")
        assert not connecting.done()
        await TREADLE.cancel_and_wait(connecting)
    assert (loop._readers, loop._writers) == before
    # The autouse fixture checks that the socket was closed.


async def test_the_server_handshake_times_out(
    server_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    async with await start_server(
        echo, "127.0.0.1", 0, ssl=server_context, ssl_handshake_timeout=0.2
    ) as server:
        with socket.socket() as mute:
            mute.setblocking(False)
            started = time.monotonic()
            await treadle.sock_connect(mute, address_of(server))
            assert await treadle.sock_recv(mute, 100) == b""  # closed on us
            elapsed = time.monotonic() - started
            # Not the 60 s default; the upper margin is for a busy machine's stalls.
            assert 0.15 < elapsed < 5, f"the 0.2 s handshake timeout closed after {elapsed:.2f} s"
    assert any("timed out" in r.message for r in caplog.records if r.name == "treadle")


async def test_a_peer_that_never_answers_close_notify_is_aborted_after_the_timeout(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    release = get_running_loop().create_future()

    async def never_reads(reader: Any, writer: Any) -> None:
        await release  # never reads, so the client's close_notify is never answered

    async with await start_server(
        never_reads, "127.0.0.1", 0, ssl=server_context, ssl_shutdown_timeout=0.2
    ) as server:
        _, writer = await open_connection(
            *address_of(server),
            ssl=client_context,
            server_hostname="localhost",
            ssl_shutdown_timeout=0.3,
        )
        writer.write(b"unanswered")
        started = time.monotonic()
        writer.close()
        await writer.wait_closed()
        elapsed = time.monotonic() - started
        # Not the 30 s default; the upper margin is for a busy machine's stalls.
        assert 0.25 < elapsed < 5, f"the 0.3 s shutdown timeout aborted after {elapsed:.2f} s"
        assert writer.get_extra_info("socket").fileno() == -1
        release.set_result(None)


# --- close_notify with a blocking peer in a thread --------------------------------------


class ThreadPeer:
    """A TLS server on a blocking ssl socket in a thread, strict about close_notify.

    ``suppress_ragged_eofs=False``: an EOF without close_notify raises instead of
    reading as b''. ``script(tls)`` runs after the handshake; what it returns (or
    raises) is the result. The socket is closed only when ``finish`` is set.
    """

    def __init__(self, context: ssl.SSLContext, script: Callable[[ssl.SSLSocket], object]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = self.listener.getsockname()
        self.finish = threading.Event()
        self._context = context
        self._script = script

    def serve(self) -> object:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        try:
            with self._context.wrap_socket(
                conn, server_side=True, suppress_ragged_eofs=False
            ) as tls:
                try:
                    return self._script(tls)
                finally:
                    self.finish.wait(10)
        finally:
            conn.close()
            self.listener.close()


async def test_close_sends_close_notify_and_waits_for_the_answer(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    got_close_notify, answer = threading.Event(), threading.Event()

    def script(tls: ssl.SSLSocket) -> object:
        data = b""
        while chunk := tls.recv(100):  # b'' only at close_notify (ragged EOF raises)
            data += chunk
        got_close_notify.set()
        answer.wait(10)
        tls.unwrap()  # answer with our close_notify; the socket stays open
        return data

    peer = ThreadPeer(server_context, script)
    loop = get_running_loop()
    serving = loop.run_in_executor(None, peer.serve)
    try:
        _, writer = await open_connection(
            *peer.address,
            ssl=client_context,
            server_hostname="localhost",
            ssl_shutdown_timeout=10,
        )
        writer.write(b"goodbye")
        writer.close()
        closing = treadle.create_task(writer.wait_closed())
        assert await loop.run_in_executor(None, got_close_notify.wait, 10)
        await treadle.sleep(0)
        assert not closing.done()  # waiting for the peer's answer
        started = time.monotonic()
        answer.set()
        await closing  # the peer's close_notify ended it, not the 10 s timeout
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"closing took {elapsed:.2f} s after the peer's answer"
    finally:
        answer.set()
        peer.finish.set()
    assert await serving == b"goodbye"


async def test_the_peers_close_notify_reads_as_eof(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    def script(tls: ssl.SSLSocket) -> object:
        tls.sendall(b"last words")
        tls.unwrap()  # sends close_notify, then waits for the client's
        return "clean shutdown"

    peer = ThreadPeer(server_context, script)
    serving = get_running_loop().run_in_executor(None, peer.serve)
    try:
        reader, writer = await open_connection(
            *peer.address, ssl=client_context, server_hostname="localhost"
        )
        assert await reader.read() == b"last words"
        assert reader.at_eof()
        started = time.monotonic()
        writer.close()
        await writer.wait_closed()
        elapsed = time.monotonic() - started
        # Not the 30 s shutdown timeout: the peer's close_notify was already in.
        assert elapsed < 5, f"closing took {elapsed:.2f} s"
    finally:
        peer.finish.set()
    assert await serving == "clean shutdown"


# --- a broken session ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["read", "readexactly", "readline"])
def test_a_corrupt_record_raises_the_ssl_error_from_every_read(
    fw: Any, how: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    # Regression: the stored error was copied as OSError(errno, strerror), which turned
    # an SSLError (errno 1) into a PermissionError for readexactly() and readline().
    def script(tls: ssl.SSLSocket) -> object:
        # An application-data record of garbage, written under the TLS layer.
        socket.socket.sendall(tls, b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
        return None

    async def main() -> None:
        peer = ThreadPeer(server_context, script)
        serving = fw.get_running_loop().run_in_executor(None, peer.serve)
        try:
            reader, writer = await fw.open_connection(
                *peer.address, ssl=client_context, server_hostname="localhost"
            )
            read = getattr(reader, how)
            with pytest.raises(ssl.SSLError) as first:
                await (read(100) if how != "readline" else read())
            assert type(first.value) is ssl.SSLError, repr(first.value)
            writer.close()
            # asyncio's wait_closed() raises the error again, treadle's does not.
            with contextlib.suppress(ssl.SSLError):
                await writer.wait_closed()
        finally:
            peer.finish.set()
            await serving

    fw.run_guarded(main())
