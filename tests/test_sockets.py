"""Socket coroutines: ``sock_*``, ``wait_readable``/``wait_writable``, ``getaddrinfo``.

Real sockets on 127.0.0.1. White-box checks (a reader or writer registered with the
loop, or not) say so: the contract is "try the system call first, register readiness
only when it would block, and leave nothing registered when cancelled".
The module-level functions run on treadle only; the same operations as loop methods,
with asyncio's names, run on treadle and on asyncio (the oracle) with ``fw``.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from oracle_runners import TREADLE

import treadle
from treadle import (
    create_task,
    get_running_loop,
    getaddrinfo,
    getnameinfo,
    sock_accept,
    sock_connect,
    sock_recv,
    sock_recv_into,
    sock_recvfrom,
    sock_sendall,
    sock_sendto,
    wait_readable,
    wait_writable,
)
from treadle.testing import run_test, wait_all_tasks_blocked

# --- helpers ----------------------------------------------------------------------------


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two connected, non-blocking TCP sockets on 127.0.0.1 (made with blocking calls)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        a = socket.create_connection(listener.getsockname())
        b, _ = listener.accept()
    with a, b:
        a.setblocking(False)
        b.setblocking(False)
        yield a, b


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with a, b:
        for s in (a, b):
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
        yield a, b


def fill_send_buffer(sock: socket.socket) -> int:
    """Send until the kernel refuses more (the peer is not reading); how much was sent."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    total = 0
    chunk = b"x" * 65536
    for _ in range(10_000):
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total
    raise AssertionError("the send buffer never filled")


class RegistrationSpy:
    """Records every add_reader/add_writer call the loop receives."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        for name in ("add_reader", "add_writer"):
            real = getattr(treadle.EventLoop, name)
            monkeypatch.setattr(treadle.EventLoop, name, self._wrap(name, real))

    def _wrap(self, name: str, real: Callable[..., None]) -> Callable[..., None]:
        def spy(loop: Any, fd: Any, *args: Any) -> None:
            self.calls.append((name, fd if isinstance(fd, int) else fd.fileno()))
            real(loop, fd, *args)

        return spy


# --- connect, accept, send, receive -----------------------------------------------------


async def test_connect_accept_and_a_few_megabytes_byte_for_byte() -> None:
    payload = random.Random(1).randbytes(4 * 1024 * 1024 + 17)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        client = socket.socket()
        with client:
            client.setblocking(False)
            accepting = create_task(sock_accept(listener))
            await sock_connect(client, listener.getsockname())
            conn, address = await accepting
            with conn:
                assert conn.gettimeout() == 0  # handed back non-blocking
                assert address == client.getsockname()
                sending = create_task(sock_sendall(client, payload))
                received = bytearray()
                while len(received) < len(payload):
                    chunk = await sock_recv(conn, 65536)
                    assert chunk, "EOF before all bytes arrived"
                    received += chunk
                await sending
                assert bytes(received) == payload
                client.shutdown(socket.SHUT_WR)
                assert await sock_recv(conn, 10) == b""


async def test_sock_recv_into_fills_the_buffer_in_order(tcp_pair: Any) -> None:
    a, b = tcp_pair
    payload = random.Random(2).randbytes(3 * 1024 * 1024)
    sending = create_task(sock_sendall(a, memoryview(payload)))
    buf = bytearray(len(payload))
    view = memoryview(buf)
    got = 0
    while got < len(payload):
        n = await sock_recv_into(b, view[got:], min(50_000, len(payload) - got))
        assert 0 < n <= 50_000
        got += n
    await sending
    assert buf == payload


async def test_sock_recv_returns_empty_bytes_when_the_peer_closes(tcp_pair: Any) -> None:
    a, b = tcp_pair
    a.sendall(b"last")
    a.shutdown(socket.SHUT_WR)
    assert await sock_recv(b, 100) == b"last"
    assert await sock_recv(b, 100) == b""


async def test_udp_sendto_and_recvfrom(udp_pair: Any) -> None:
    a, b = udp_pair
    receiving = create_task(sock_recvfrom(b, 2048))
    await wait_all_tasks_blocked()
    assert await sock_sendto(a, b"ping", b.getsockname()) == 4
    data, address = await receiving
    assert (data, address) == (b"ping", a.getsockname())
    # A datagram already waiting is returned without parking.
    await sock_sendto(b, bytearray(b"pong"), a.getsockname())
    assert await sock_recvfrom(a, 2048) == (b"pong", b.getsockname())


async def test_connect_to_a_refused_port_names_the_address() -> None:
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))  # bound, not listening: connecting is refused
        port = reserved.getsockname()[1]
        with socket.socket() as client:
            client.setblocking(False)
            with pytest.raises(ConnectionRefusedError) as info:
                await sock_connect(client, ("127.0.0.1", port))
    assert f"127.0.0.1:{port}" in str(info.value)


async def test_connect_resolves_a_host_name() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.socket() as client:
            client.setblocking(False)
            await sock_connect(client, ("localhost", port))
            assert client.getpeername() == ("127.0.0.1", port)
            conn, _ = listener.accept()
            conn.close()


# --- try the system call first (white-box) ----------------------------------------------


async def test_each_call_tries_the_syscall_before_registering(
    tcp_pair: Any, udp_pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = RegistrationSpy(monkeypatch)
    a, b = tcp_pair
    await sock_sendall(a, b"ready")  # the socket has room: no writer
    await wait_all_tasks_blocked()
    assert await sock_recv(b, 100) == b"ready"  # data waiting: no reader
    a.sendall(b"into")
    await wait_all_tasks_blocked()
    buf = bytearray(10)
    assert await sock_recv_into(b, buf) == 4
    u1, u2 = udp_pair
    assert await sock_sendto(u1, b"dgram", u2.getsockname()) == 5
    assert (await sock_recvfrom(u2, 100))[0] == b"dgram"
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        with socket.create_connection(listener.getsockname()):
            conn, _ = await sock_accept(listener)  # a connection waiting: no reader
            conn.close()
    assert spy.calls == []


async def test_readiness_is_registered_only_when_the_call_would_block(
    tcp_pair: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = RegistrationSpy(monkeypatch)
    a, b = tcp_pair
    loop = get_running_loop()
    receiving = create_task(sock_recv(b, 100))
    await wait_all_tasks_blocked()
    assert spy.calls == [("add_reader", b.fileno())]
    assert loop.has_reader(b)
    a.sendall(b"wake")
    assert await receiving == b"wake"
    assert not loop.has_reader(b)


# --- cancellation safety ----------------------------------------------------------------


async def test_cancelled_recv_unregisters_and_the_next_recv_gets_the_data(tcp_pair: Any) -> None:
    a, b = tcp_pair
    loop = get_running_loop()
    receiving = create_task(sock_recv(b, 100))
    await wait_all_tasks_blocked()
    assert loop.has_reader(b)
    await TREADLE.cancel_and_wait(receiving)
    assert not loop.has_reader(b)
    a.sendall(b"after the cancel")
    assert await sock_recv(b, 100) == b"after the cancel"
    assert not loop.has_reader(b)


async def test_data_arriving_with_the_cancellation_is_not_lost(tcp_pair: Any) -> None:
    a, b = tcp_pair
    receiving = create_task(sock_recv(b, 100))
    await wait_all_tasks_blocked()
    a.sendall(b"racing")
    await TREADLE.cancel_and_wait(receiving)
    assert await sock_recv(b, 100) == b"racing"


async def test_cancelled_recv_into_and_recvfrom_unregister(tcp_pair: Any, udp_pair: Any) -> None:
    loop = get_running_loop()
    a, b = tcp_pair
    u1, u2 = udp_pair
    buf = bytearray(10)
    tasks = [create_task(sock_recv_into(b, buf)), create_task(sock_recvfrom(u2, 100))]
    await wait_all_tasks_blocked()
    assert loop.has_reader(b) and loop.has_reader(u2)
    for task in tasks:
        await TREADLE.cancel_and_wait(task)
    assert not loop.has_reader(b) and not loop.has_reader(u2)
    a.sendall(b"tcp")
    u1.sendto(b"udp", u2.getsockname())
    assert await sock_recv_into(b, buf) == 3 and buf[:3] == b"tcp"
    assert (await sock_recvfrom(u2, 100))[0] == b"udp"


async def test_cancelled_sendall_unregisters_its_writer(tcp_pair: Any) -> None:
    a, _ = tcp_pair
    loop = get_running_loop()
    fill_send_buffer(a)
    sending = create_task(sock_sendall(a, b"y" * 1024 * 1024))
    await wait_all_tasks_blocked()
    assert loop.has_writer(a)
    await TREADLE.cancel_and_wait(sending)
    assert not loop.has_writer(a)


async def test_cancelled_accept_unregisters_and_the_next_accept_works() -> None:
    loop = get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        accepting = create_task(sock_accept(listener))
        await wait_all_tasks_blocked()
        assert loop.has_reader(listener)
        await TREADLE.cancel_and_wait(accepting)
        assert not loop.has_reader(listener)
        with socket.create_connection(listener.getsockname()) as client:
            conn, address = await sock_accept(listener)
            with conn:
                assert address == client.getsockname()


# --- misuse -----------------------------------------------------------------------------

CALLS: dict[str, Callable[[socket.socket], Any]] = {
    "sock_recv": lambda s: sock_recv(s, 10),
    "sock_recv_into": lambda s: sock_recv_into(s, bytearray(10)),
    "sock_recvfrom": lambda s: sock_recvfrom(s, 10),
    "sock_sendall": lambda s: sock_sendall(s, b"x"),
    "sock_sendto": lambda s: sock_sendto(s, b"x", ("127.0.0.1", 9)),
    "sock_connect": lambda s: sock_connect(s, ("127.0.0.1", 9)),
    "sock_accept": lambda s: sock_accept(s),
}


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_a_blocking_socket_is_refused_clearly(name: str) -> None:
    with socket.socket() as sock:
        assert sock.gettimeout() is None
        with pytest.raises(ValueError, match=r"non-blocking.*setblocking\(False\)"):
            await CALLS[name](sock)


async def test_two_waiters_on_one_socket_is_an_error(tcp_pair: Any) -> None:
    a, b = tcp_pair
    loop = get_running_loop()
    reading = create_task(wait_readable(b))
    await wait_all_tasks_blocked()
    with pytest.raises(RuntimeError, match="already waiting to read"):
        await wait_readable(b)
    await TREADLE.cancel_and_wait(reading)
    fill_send_buffer(a)
    writing = create_task(wait_writable(a))
    await wait_all_tasks_blocked()
    with pytest.raises(RuntimeError, match="already waiting to write"):
        await wait_writable(a)
    await TREADLE.cancel_and_wait(writing)
    assert not loop.has_reader(b) and not loop.has_writer(a)


async def test_wait_readable_takes_a_file_descriptor(tcp_pair: Any) -> None:
    a, b = tcp_pair
    waiting = create_task(wait_readable(b.fileno()))
    await wait_all_tasks_blocked()
    assert not waiting.done()
    a.sendall(b"!")
    await waiting
    assert b.recv(1) == b"!"


# --- name resolution --------------------------------------------------------------------


async def test_getaddrinfo_numeric_and_by_name() -> None:
    numeric = await getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
    assert [info[4] for info in numeric] == [("127.0.0.1", 80)]
    assert numeric[0][0] == socket.AF_INET
    named = await getaddrinfo("localhost", "80", family=socket.AF_INET, type=socket.SOCK_STREAM)
    assert ("127.0.0.1", 80) in [info[4] for info in named]


async def test_getnameinfo() -> None:
    flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
    assert await getnameinfo(("127.0.0.1", 8080), flags) == ("127.0.0.1", "8080")


async def test_an_unknown_host_gives_an_error_naming_it() -> None:
    with pytest.raises(socket.gaierror) as info:
        await getaddrinfo("nonexistent.invalid", 80)
    assert "nonexistent.invalid" in str(info.value)
    assert info.value.errno is not None


# --- the same operations as loop methods, with asyncio's names: run on both ---------------


def test_loop_tcp_methods_connect_accept_send_and_receive(fw: Any) -> None:
    async def main() -> None:
        loop = fw.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener, socket.socket() as client:
            listener.setblocking(False)
            client.setblocking(False)
            port = listener.getsockname()[1]
            accepting = fw.create_task(loop.sock_accept(listener))
            await loop.sock_connect(client, ("localhost", port))  # a host name, resolved
            conn, address = await accepting
            with conn:
                assert conn.gettimeout() == 0
                assert address == client.getsockname()
                payload = random.Random(3).randbytes(1024 * 1024 + 3)
                sending = fw.create_task(loop.sock_sendall(client, payload))
                received = bytearray()
                buf = bytearray(70_000)
                while len(received) < len(payload):
                    if len(received) % 2:
                        n = await loop.sock_recv_into(conn, buf)
                        received += buf[:n]
                    else:
                        received += await loop.sock_recv(conn, 65536)
                assert await sending is None
                assert bytes(received) == payload
                client.shutdown(socket.SHUT_WR)
                assert await loop.sock_recv(conn, 10) == b""

    fw.run_guarded(main())


def test_loop_udp_methods(fw: Any) -> None:
    async def main() -> None:
        loop = fw.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(
            socket.AF_INET, socket.SOCK_DGRAM
        ) as b:
            for s in (a, b):
                s.bind(("127.0.0.1", 0))
                s.setblocking(False)
            receiving = fw.create_task(loop.sock_recvfrom(b, 100))
            await fw.settle()
            assert await loop.sock_sendto(a, b"one", b.getsockname()) == 3
            assert await receiving == (b"one", a.getsockname())
            buf = bytearray(10)
            receiving_into = fw.create_task(loop.sock_recvfrom_into(b, buf, 4))
            await fw.settle()
            await loop.sock_sendto(a, b"two!", b.getsockname())
            assert await receiving_into == (4, a.getsockname())
            assert buf[:4] == b"two!"

    fw.run_guarded(main())


def test_loop_getaddrinfo_and_getnameinfo(fw: Any) -> None:
    async def main() -> None:
        loop = fw.get_running_loop()
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        assert [info[4] for info in infos] == [("127.0.0.1", 80)]
        named = await loop.getaddrinfo(
            "localhost", "80", family=socket.AF_INET, type=socket.SOCK_STREAM
        )
        assert ("127.0.0.1", 80) in [info[4] for info in named]
        flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        assert await loop.getnameinfo(("127.0.0.1", 8080), flags) == ("127.0.0.1", "8080")
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("nonexistent.invalid", 80)

    fw.run_guarded(main())


def test_loop_sock_connect_to_a_refused_port(fw: Any) -> None:
    async def main() -> None:
        loop = fw.get_running_loop()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            address = probe.getsockname()  # bound, not listening: refused
            with socket.socket() as client:
                client.setblocking(False)
                with pytest.raises(ConnectionRefusedError):
                    await loop.sock_connect(client, address)

    fw.run_guarded(main())


LOOP_CALLS: dict[str, Callable[[Any, socket.socket], Any]] = {
    "sock_recv": lambda loop, s: loop.sock_recv(s, 10),
    "sock_recv_into": lambda loop, s: loop.sock_recv_into(s, bytearray(10)),
    "sock_recvfrom": lambda loop, s: loop.sock_recvfrom(s, 10),
    "sock_recvfrom_into": lambda loop, s: loop.sock_recvfrom_into(s, bytearray(10)),
    "sock_sendall": lambda loop, s: loop.sock_sendall(s, b"x"),
    "sock_sendto": lambda loop, s: loop.sock_sendto(s, b"x", ("127.0.0.1", 9)),
    "sock_connect": lambda loop, s: loop.sock_connect(s, ("127.0.0.1", 9)),
    "sock_accept": lambda loop, s: loop.sock_accept(s),
}


@pytest.mark.parametrize("name", sorted(LOOP_CALLS))
def test_loop_methods_refuse_a_blocking_socket(fw: Any, name: str) -> None:
    # asyncio checks only in debug mode (treadle always does): compare in debug mode.
    async def main() -> None:
        fw.get_running_loop().set_debug(True)
        with socket.socket() as sock, pytest.raises(ValueError, match="non-blocking"):
            await LOOP_CALLS[name](fw.get_running_loop(), sock)

    fw.run_guarded(main())


def test_a_cancelled_loop_sock_recv_removes_its_reader_and_loses_no_byte(fw: Any) -> None:
    async def main() -> None:
        loop = fw.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            b.setblocking(False)
            receiving = fw.create_task(loop.sock_recv(b, 100))
            await fw.settle()
            a.sendall(b"racing")  # arrives together with the cancellation
            await fw.cancel_and_wait(receiving)
            assert loop.remove_reader(b) is False  # nothing left registered
            assert await loop.sock_recv(b, 100) == b"racing"

    fw.run_guarded(main())


def test_the_module_functions_add_no_frame() -> None:
    # They return the loop method's coroutine itself.
    async def main() -> None:
        a, b = socket.socketpair()
        with a, b:
            b.setblocking(False)
            a.sendall(b"x")
            coro = sock_recv(b, 10)
            assert coro.cr_code is treadle.EventLoop.sock_recv.__code__
            assert await coro == b"x"

    run_test(main)
