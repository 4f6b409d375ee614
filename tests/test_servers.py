"""Servers: start_server, start_unix_server and Server, over real sockets; the echo examples.

Where treadle mirrors asyncio a test takes ``fw`` and runs the same body on both
(asyncio is the oracle). treadle's own choices run on treadle only: a plain-function
handler's stream is closed when it returns, ``wait_closed()`` waits for the
connections, leaving ``async with server`` cancels them, and a backlog must be positive.
"""

from __future__ import annotations

import errno
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from loopback import address_of, echo_lines
from processes import interrupt, spawn

import treadle
from treadle import CancelledError, create_task, get_running_loop, start_server
from treadle.testing import wait_all_tasks_blocked

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# --- helpers ----------------------------------------------------------------------------


async def round_trip(fw: Any, address: tuple[str, int], line: bytes = b"ping\n") -> bytes:
    reader, writer = await fw.open_connection(*address)
    try:
        writer.write(line)
        return await reader.readline()
    finally:
        writer.close()
        await writer.wait_closed()


def refuses(address: tuple[str, int]) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(address) == errno.ECONNREFUSED


# --- start_server and Server ------------------------------------------------------------


def test_start_server_on_port_zero_serves(fw: Any) -> None:
    async def main() -> None:
        server = await fw.start_server(echo_lines, "127.0.0.1", 0)
        try:
            assert server.sockets
            host, port = address_of(server)
            assert host == "127.0.0.1" and port != 0
            assert server.is_serving()
            assert server.get_loop() is fw.get_running_loop()
            assert await round_trip(fw, (host, port)) == b"ping\n"
            assert await round_trip(fw, (host, port), b"again\n") == b"again\n"
        finally:
            server.close()
            await server.wait_closed()
        assert not server.is_serving()

    fw.run_guarded(main())


async def test_the_server_repr_names_its_address() -> None:
    async with await start_server(echo_lines, "127.0.0.1", 0) as server:
        host, port = address_of(server)
        assert f"{host}:{port}" in repr(server)


def test_start_serving_later(fw: Any) -> None:
    async def main() -> None:
        server = await fw.start_server(echo_lines, "127.0.0.1", 0, start_serving=False)
        try:
            assert not server.is_serving()
            await server.start_serving()
            assert server.is_serving()
            assert await round_trip(fw, address_of(server)) == b"ping\n"
        finally:
            server.close()
            await server.wait_closed()

    fw.run_guarded(main())


def test_serve_forever_cancelled_cleanly(fw: Any) -> None:
    async def main() -> None:
        server = await fw.start_server(echo_lines, "127.0.0.1", 0, start_serving=False)
        address = address_of(server)
        serving = fw.create_task(server.serve_forever())
        await fw.settle()
        assert server.is_serving()
        with pytest.raises(RuntimeError):
            await server.serve_forever()
        assert await round_trip(fw, address) == b"ping\n"
        await fw.cancel_and_wait(serving)
        assert not server.is_serving()
        assert refuses(address)
        await server.wait_closed()

    fw.run_guarded(main())


def test_async_with_closes_the_server(fw: Any) -> None:
    async def main() -> None:
        async with await fw.start_server(echo_lines, "127.0.0.1", 0) as server:
            address = address_of(server)
            assert await round_trip(fw, address) == b"ping\n"
        assert not server.is_serving()
        assert refuses(address)

    fw.run_guarded(main())


def test_close_stops_accepting_and_existing_clients_go_on(fw: Any) -> None:
    async def main() -> None:
        server = await fw.start_server(echo_lines, "127.0.0.1", 0)
        address = address_of(server)
        reader, writer = await fw.open_connection(*address)
        writer.write(b"before\n")
        assert await reader.readline() == b"before\n"
        server.close()
        assert not server.is_serving()
        assert refuses(address)
        writer.write(b"after\n")
        assert await reader.readline() == b"after\n"
        writer.close()
        await writer.wait_closed()
        await server.wait_closed()

    fw.run_guarded(main())


async def test_wait_closed_waits_for_the_connections() -> None:
    server = await start_server(echo_lines, "127.0.0.1", 0)
    reader, writer = await treadle.open_connection(*address_of(server))
    writer.write(b"hi\n")
    assert await reader.readline() == b"hi\n"
    server.close()
    waiting = create_task(server.wait_closed())
    await wait_all_tasks_blocked()
    assert not waiting.done()
    writer.close()
    await writer.wait_closed()
    await waiting
    await server.wait_closed()  # and again, at once


async def test_leaving_async_with_cancels_the_open_connections() -> None:
    events: list[str] = []
    started = get_running_loop().create_future()

    async def handler(reader: Any, writer: Any) -> None:
        started.set_result(None)
        try:
            await reader.read(100)
        except CancelledError:
            events.append("handler cancelled")
            raise

    async with await start_server(handler, "127.0.0.1", 0) as server:
        reader, writer = await treadle.open_connection(*address_of(server))
        await started
    assert events == ["handler cancelled"]
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_a_failing_handler_is_reported_with_the_peer_and_the_server_goes_on() -> None:
    loop = get_running_loop()
    reported = loop.create_future()

    def on_error(loop: Any, context: dict[str, Any]) -> None:
        reported.set_result(context)

    loop.set_exception_handler(on_error)

    async def handler(reader: Any, writer: Any) -> None:
        line = await reader.readline()
        if line == b"fail\n":
            raise ValueError("the handler broke")
        writer.write(line)

    async with await start_server(handler, "127.0.0.1", 0) as server:
        address = address_of(server)
        reader, writer = await treadle.open_connection(*address)
        client = writer.get_extra_info("sockname")
        writer.write(b"fail\n")
        context = await reported
        assert isinstance(context["exception"], ValueError)
        assert str(context["exception"]) == "the handler broke"
        assert context["peername"] == client
        assert f"{client[0]}:{client[1]}" in context["message"]
        assert await reader.read() == b""  # that connection was closed
        writer.close()
        await writer.wait_closed()
        assert await round_trip(treadle, address) == b"ping\n"


def test_a_plain_function_handler(fw: Any) -> None:
    async def main() -> None:
        writers: list[Any] = []

        def handler(reader: Any, writer: Any) -> None:
            writers.append(writer)
            writer.write(b"from a plain function\n")

        async with await fw.start_server(handler, "127.0.0.1", 0) as server:
            reader, writer = await fw.open_connection(*address_of(server))
            assert await reader.readline() == b"from a plain function\n"
            for w in writers:
                w.close()  # treadle has already closed it: harmless
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()

    fw.run_guarded(main())


def test_start_server_with_a_listening_socket(fw: Any) -> None:
    async def main() -> None:
        sock = socket.create_server(("127.0.0.1", 0))
        async with await fw.start_server(echo_lines, sock=sock) as server:
            assert server.sockets[0].getsockname() == sock.getsockname()
            assert await round_trip(fw, sock.getsockname()) == b"ping\n"

    fw.run_guarded(main())


def test_start_server_with_a_bound_socket_listens(fw: Any) -> None:
    async def main() -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        async with await fw.start_server(echo_lines, sock=sock) as server:
            assert await round_trip(fw, address_of(server)) == b"ping\n"

    fw.run_guarded(main())


def test_wait_closed_before_close_waits_for_the_close(fw: Any) -> None:
    async def main() -> None:
        server = await fw.start_server(echo_lines, "127.0.0.1", 0)
        waiting = fw.create_task(server.wait_closed())
        try:
            await fw.settle()
            assert not waiting.done()
        finally:
            server.close()
            await waiting

    fw.run_guarded(main())


async def test_a_bad_backlog_is_refused() -> None:
    for backlog in (0, -1, True, "10"):
        with pytest.raises(ValueError, match="backlog"):
            await start_server(echo_lines, "127.0.0.1", 0, backlog=backlog)
    with pytest.raises(TypeError):
        await start_server("not callable", "127.0.0.1", 0)  # type: ignore[arg-type]


def test_binding_a_port_in_use_is_an_oserror_naming_it(fw: Any) -> None:
    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as taken:
            port = taken.getsockname()[1]
            with pytest.raises(OSError) as info:
                await fw.start_server(echo_lines, "127.0.0.1", port)
        assert info.value.errno == errno.EADDRINUSE
        assert str(port) in str(info.value)
        if fw.module is treadle:
            assert f"127.0.0.1:{port}" in str(info.value)

    fw.run_guarded(main())


# --- Unix sockets -----------------------------------------------------------------------


def test_unix_server_and_connection(fw: Any, tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")

    async def main() -> None:
        # A socket file left behind by an earlier server does not get in the way.
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(path)
        async with await fw.start_unix_server(echo_lines, path) as server:
            assert server.sockets[0].getsockname() == path
            reader, writer = await fw.open_unix_connection(path)
            writer.write(b"over unix\n")
            assert await reader.readline() == b"over unix\n"
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()

    fw.run_guarded(main())


def test_a_unix_server_refuses_an_ssl_that_is_not_a_context_before_binding(
    fw: Any, tmp_path: Path
) -> None:
    path = tmp_path / "tls.sock"

    async def main() -> None:
        with pytest.raises(TypeError):
            await fw.start_unix_server(echo_lines, str(path), ssl=True)
        assert not path.exists()

    fw.run_guarded(main())


async def test_unix_connection_to_a_missing_path_names_it(tmp_path: Path) -> None:
    path = str(tmp_path / "nobody-here.sock")
    with pytest.raises(FileNotFoundError, match=re.escape(path)):
        await treadle.open_unix_connection(path)


# --- the examples -----------------------------------------------------------------------


def test_the_echo_examples_round_trip() -> None:
    server = spawn([sys.executable, str(EXAMPLES / "echo_server.py"), "--port", "0"])
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)\n", first)
        assert match, f"unexpected first line from the server: {first!r}"
        client = subprocess.run(
            [sys.executable, str(EXAMPLES / "echo_client.py"), "--port", match[1], "hello", "x y"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert (client.returncode, client.stdout, client.stderr) == (0, "hello\nx y\n", "")
        piped = subprocess.run(
            [sys.executable, str(EXAMPLES / "echo_client.py"), "--port", match[1]],
            input="from\nstdin\n",
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert (piped.returncode, piped.stdout) == (0, "from\nstdin\n")
    finally:
        _, err = interrupt(server, timeout=20)
    assert server.returncode == 0, err
