"""Socket coroutines: try the system call first, wait for readiness only when it would block.

This is the talk's first idea made real: a non-blocking socket, and the selector telling
us when to try again. Every function here works on the running loop, takes a
non-blocking socket, and is cancellation-safe: a cancelled wait leaves no reader or
writer registered and no data half-consumed. DNS lookups run off the loop, in the
default thread pool. I/O layer: imports the layers above it only.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any, TypeAlias, cast

from treadle.futures import Future
from treadle.loop import get_running_loop

__all__ = [
    "Buffer",
    "format_address",
    "getaddrinfo",
    "getnameinfo",
    "sock_accept",
    "sock_connect",
    "sock_recv",
    "sock_recv_into",
    "sock_recvfrom",
    "sock_sendall",
    "sock_sendto",
    "wait_readable",
    "wait_writable",
]

# What a socket can send from (collections.abc.Buffer arrives only in Python 3.12).
Buffer: TypeAlias = bytes | bytearray | memoryview

# (family, type, proto, canonname, sockaddr), as socket.getaddrinfo returns them.
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


def _check_nonblocking(sock: socket.socket) -> None:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"expected a socket.socket, got {sock!r}")
    if sock.gettimeout() != 0:
        raise ValueError(
            f"the socket must be non-blocking: call sock.setblocking(False) first ({sock!r})"
        )


def _wake(fut: Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_readable(sock: socket.socket | int) -> None:
    """Wait until ``sock`` (a socket or a file descriptor) is readable."""
    loop = get_running_loop()
    if loop.has_reader(sock):
        raise RuntimeError(f"another task is already waiting to read from {sock!r}")
    fut: Future[None] = loop.create_future()
    loop.add_reader(sock, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_reader(sock)


async def wait_writable(sock: socket.socket | int) -> None:
    """Wait until ``sock`` (a socket or a file descriptor) is writable."""
    loop = get_running_loop()
    if loop.has_writer(sock):
        raise RuntimeError(f"another task is already waiting to write to {sock!r}")
    fut: Future[None] = loop.create_future()
    loop.add_writer(sock, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_writer(sock)


async def sock_recv(sock: socket.socket, nbytes: int) -> bytes:
    """Receive up to ``nbytes`` bytes; ``b''`` when the peer has closed."""
    _check_nonblocking(sock)
    while True:
        try:
            return sock.recv(nbytes)
        except (BlockingIOError, InterruptedError):
            await wait_readable(sock)


async def sock_recv_into(sock: socket.socket, buf: Buffer, nbytes: int = 0) -> int:
    """Receive into ``buf`` (up to ``nbytes``, or its size); how many bytes arrived."""
    _check_nonblocking(sock)
    while True:
        try:
            return sock.recv_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            await wait_readable(sock)


async def sock_recvfrom(sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
    """Receive a datagram of up to ``bufsize`` bytes; ``(data, address)``."""
    _check_nonblocking(sock)
    while True:
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            await wait_readable(sock)


async def sock_sendall(sock: socket.socket, data: Buffer) -> None:
    """Send all of ``data``, waiting for room as often as needed.

    If cancelled part-way, some of the data may have been sent; the rest was not.
    """
    _check_nonblocking(sock)
    view = memoryview(data).cast("B")
    sent = 0
    while sent < len(view):
        try:
            sent += sock.send(view[sent:])
        except (BlockingIOError, InterruptedError):
            await wait_writable(sock)


async def sock_sendto(sock: socket.socket, data: Buffer, address: Any) -> int:
    """Send a datagram to ``address``; how many bytes were sent."""
    _check_nonblocking(sock)
    while True:
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            await wait_writable(sock)


async def sock_connect(sock: socket.socket, address: Any) -> None:
    """Connect ``sock`` to ``address``, resolving a host name first if needed."""
    _check_nonblocking(sock)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host, port = address[0], address[1]
        infos = await getaddrinfo(host, port, family=sock.family, type=sock.type, proto=sock.proto)
        address = infos[0][4]
    try:
        sock.connect(address)
        return
    except (BlockingIOError, InterruptedError):
        pass
    await wait_writable(sock)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        # OSError(errno, ...) builds the matching subclass (ConnectionRefusedError, ...).
        raise OSError(error, os.strerror(error), format_address(address))


async def sock_accept(sock: socket.socket) -> tuple[socket.socket, Any]:
    """Accept a connection; ``(conn, address)`` with ``conn`` already non-blocking."""
    _check_nonblocking(sock)
    while True:
        try:
            conn, address = sock.accept()
        except (BlockingIOError, InterruptedError):
            await wait_readable(sock)
        else:
            conn.setblocking(False)
            return conn, address


async def getaddrinfo(
    host: str | None,
    port: int | str | None,
    *,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> list[AddrInfo]:
    """``socket.getaddrinfo`` off the loop; a numeric host is resolved at once."""
    try:
        # A numeric address needs no lookup, so it need not cost a thread.
        infos = socket.getaddrinfo(host, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        return cast(list[AddrInfo], infos)
    except socket.gaierror:
        pass
    loop = get_running_loop()
    lookup = cast(Callable[..., list[AddrInfo]], socket.getaddrinfo)
    try:
        return await loop.run_in_executor(None, lookup, host, port, family, type, proto, flags)
    except socket.gaierror as exc:
        raise socket.gaierror(exc.errno, f"cannot resolve {host!r}: {exc.strerror}") from exc


async def getnameinfo(
    sockaddr: tuple[str, int] | tuple[str, int, int, int], flags: int = 0
) -> tuple[str, str]:
    """``socket.getnameinfo`` off the loop."""
    loop = get_running_loop()
    return await loop.run_in_executor(None, socket.getnameinfo, sockaddr, flags)


def format_address(address: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6) for a socket address, for messages."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)
