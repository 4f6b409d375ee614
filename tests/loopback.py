"""Helpers for tests that talk over loopback sockets, on treadle or on asyncio.

Open descriptors, a server's address, line echo handlers and a client sending one line,
a handler that hands its connection to the test, a writer of random-sized chunks, ways
to end a connection (abort a writer, reset a socket), a writer's buffered byte count,
and TLS contexts from a throwaway trustme CA (no key is committed). conftest.py offers
the TLS contexts as fixtures. Imports only the standard library and trustme.
"""

from __future__ import annotations

import functools
import os
import random
import socket
import ssl
import struct
from typing import Any

import trustme


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def open_fd_names() -> dict[int, str]:
    """This process's open file descriptors, each with what it is (``pipe:[123]``, a path)."""
    names = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            names[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except FileNotFoundError:  # the descriptor listdir itself used, closed since
            continue
    return names


def address_of(server: Any) -> tuple[str, int]:
    """The ``(host, port)`` a server listens on."""
    host, port = server.sockets[0].getsockname()[:2]
    return host, port


async def echo_lines(reader: Any, writer: Any) -> None:
    """Echo each line until EOF, then close (asyncio does not close for us)."""
    async for line in reader:
        writer.write(line)
        await writer.drain()
    writer.close()


async def echo_one_line(reader: Any, writer: Any) -> None:
    """Echo the first line, then close the connection and wait until it is closed."""
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def send_line(open_connection: Any, server: Any, line: bytes) -> bytes:
    """Connect to ``server`` with ``open_connection`` (either framework's), send ``line``;
    the line that comes back. Closes the connection."""
    reader, writer = await open_connection(*address_of(server))
    writer.write(line)
    answer: bytes = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return answer


class HandOver:
    """A server's connection handler that hands the test its connection and keeps it open.

    ``accepted`` (a future of the loop given) gets the first connection's
    ``(reader, writer)``; the handler returns, leaving the connection to the test, once
    ``release()`` is called.
    """

    def __init__(self, loop: Any) -> None:
        self.accepted = loop.create_future()
        self._released = loop.create_future()

    async def __call__(self, reader: Any, writer: Any) -> None:
        self.accepted.set_result((reader, writer))
        await self._released

    def release(self) -> None:
        """Let the handler return."""
        self._released.set_result(None)


async def write_in_random_chunks(
    writer: Any, payload: bytes, rng: random.Random, largest: int
) -> None:
    """Write ``payload`` in chunks of 1 to ``largest`` bytes drawn from ``rng``, draining
    after each."""
    view = memoryview(payload)
    sent = 0
    while sent < len(payload):
        n = rng.randint(1, largest)
        writer.write(view[sent : sent + n])
        sent += n
        await writer.drain()


def abort(writer: Any) -> None:
    """Close a writer at once, treadle's or asyncio's."""
    (writer.transport if hasattr(writer, "transport") else writer).abort()


def reset(sock: socket.socket) -> None:
    """Close ``sock`` with a TCP reset rather than an orderly FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def buffered(writer: Any) -> int:
    """The writer's buffered byte count (asyncio keeps it on the transport)."""
    if hasattr(writer, "transport"):
        return int(writer.transport.get_write_buffer_size())
    return int(writer.get_write_buffer_size())


@functools.cache
def throwaway_ca() -> trustme.CA:
    """A throwaway certificate authority, made once per process."""
    return trustme.CA()


def new_server_context() -> ssl.SSLContext:
    """A fresh server context with a certificate for localhost and 127.0.0.1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    throwaway_ca().issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


def new_client_context() -> ssl.SSLContext:
    """A fresh client context that trusts ``throwaway_ca()``."""
    context = ssl.create_default_context()
    throwaway_ca().configure_trust(context)
    return context


@functools.cache
def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context and a client context trusting it, made once (for fuzzers that
    neither change them nor want a new certificate for every example)."""
    return new_server_context(), new_client_context()
