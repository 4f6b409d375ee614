"""Socket coroutines: try the system call first, wait for readiness only when it would block.

This is the talk's first idea made real: a non-blocking socket, and the selector telling
us when to try again. The work is done once, by the loop's asyncio-named methods
(``EventLoop.sock_recv`` and the rest, in ``loop.py``); the functions here are the same
operations on the running loop. Each is a plain function that returns the loop
method's coroutine, so it adds no frame to a traceback. Every one takes a
non-blocking socket and is cancellation-safe: a cancelled wait leaves no reader or
writer registered and no data half-consumed. DNS lookups run off the loop, in the
default thread pool. I/O layer: imports the layers above it only.
"""

from __future__ import annotations

import socket
from collections.abc import Coroutine
from typing import Any

from treadle.loop import AddrInfo, Buffer, format_address, get_running_loop

__all__ = [
    "AddrInfo",
    "Buffer",
    "format_address",
    "getaddrinfo",
    "getnameinfo",
    "sock_accept",
    "sock_connect",
    "sock_recv",
    "sock_recv_into",
    "sock_recvfrom",
    "sock_recvfrom_into",
    "sock_sendall",
    "sock_sendto",
    "wait_readable",
    "wait_writable",
]


def wait_readable(sock: socket.socket | int) -> Coroutine[Any, Any, None]:
    """Wait until ``sock`` (a socket or a file descriptor) is readable."""
    return get_running_loop()._wait_readable(sock)


def wait_writable(sock: socket.socket | int) -> Coroutine[Any, Any, None]:
    """Wait until ``sock`` (a socket or a file descriptor) is writable."""
    return get_running_loop()._wait_writable(sock)


def sock_recv(sock: socket.socket, nbytes: int) -> Coroutine[Any, Any, bytes]:
    """Receive up to ``nbytes`` bytes; ``b''`` when the peer has closed."""
    return get_running_loop().sock_recv(sock, nbytes)


def sock_recv_into(sock: socket.socket, buf: Buffer, nbytes: int = 0) -> Coroutine[Any, Any, int]:
    """Receive into ``buf`` (up to ``nbytes``, or its size); how many bytes arrived."""
    if nbytes:
        buf = memoryview(buf)[:nbytes]
    return get_running_loop().sock_recv_into(sock, buf)


def sock_recvfrom(sock: socket.socket, bufsize: int) -> Coroutine[Any, Any, tuple[bytes, Any]]:
    """Receive a datagram of up to ``bufsize`` bytes; ``(data, address)``."""
    return get_running_loop().sock_recvfrom(sock, bufsize)


def sock_recvfrom_into(
    sock: socket.socket, buf: Buffer, nbytes: int = 0
) -> Coroutine[Any, Any, tuple[int, Any]]:
    """Receive a datagram into ``buf`` (up to ``nbytes``, or its size); ``(size, address)``."""
    return get_running_loop().sock_recvfrom_into(sock, buf, nbytes)


def sock_sendall(sock: socket.socket, data: Buffer) -> Coroutine[Any, Any, None]:
    """Send all of ``data``, waiting for room as often as needed.

    If cancelled part-way, some of the data may have been sent; the rest was not.
    """
    return get_running_loop().sock_sendall(sock, data)


def sock_sendto(sock: socket.socket, data: Buffer, address: Any) -> Coroutine[Any, Any, int]:
    """Send a datagram to ``address``; how many bytes were sent."""
    return get_running_loop().sock_sendto(sock, data, address)


def sock_connect(sock: socket.socket, address: Any) -> Coroutine[Any, Any, None]:
    """Connect ``sock`` to ``address``, resolving a host name first if needed."""
    return get_running_loop().sock_connect(sock, address)


def sock_accept(sock: socket.socket) -> Coroutine[Any, Any, tuple[socket.socket, Any]]:
    """Accept a connection; ``(conn, address)`` with ``conn`` already non-blocking."""
    return get_running_loop().sock_accept(sock)


def getaddrinfo(
    host: bytes | str | None,
    port: bytes | str | int | None,
    *,
    family: int = 0,
    type: int = 0,
    proto: int = 0,
    flags: int = 0,
) -> Coroutine[Any, Any, list[AddrInfo]]:
    """``socket.getaddrinfo`` off the loop; a numeric host is resolved at once."""
    return get_running_loop().getaddrinfo(
        host, port, family=family, type=type, proto=proto, flags=flags
    )


def getnameinfo(sockaddr: tuple[Any, ...], flags: int = 0) -> Coroutine[Any, Any, tuple[str, str]]:
    """``socket.getnameinfo`` off the loop."""
    return get_running_loop().getnameinfo(sockaddr, flags)
