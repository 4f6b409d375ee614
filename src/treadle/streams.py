"""Buffered streams over a socket: ``StreamReader``, ``StreamWriter`` and their ``Connection``.

Every byte is delivered in order or a clear error is raised. The hot path is short:

* A read that finds bytes buffered, or the socket readable right now, returns without a
  Future, a callback or a trip through the ready queue. Only when the socket would
  block does the reader suspend (``treadle.core.tasks.suspend``) until the selector
  reports data.
* Once a reader has waited, the socket stays registered for reading; the readiness
  callback moves bytes into the buffer, so no system call is spent re-registering
  between messages. Reading pauses when the buffer passes twice the limit.
* Writes go straight to the socket when it can take them; what it can't is buffered,
  and ``drain()`` blocks above the high-water mark until the buffer falls below the low.

A ``Connection`` moves bytes through two hooks (tornado's ``read_from_fd`` and
``write_to_fd``): receive and transmit. Plain, they are ``os.read`` on the socket's
descriptor and the connection's own send queue; a ``StreamLayer`` (TLS, in ``tls.py``)
supplies its own pair and takes part in closing. The functions that open connections,
with TLS as an option, live in ``tls.py`` too: this module never imports it.

I/O layer: imports ``sockets`` and the layers above.
"""

from __future__ import annotations

import copy
import errno
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final, Protocol, Self

from treadle.core.futures import Future
from treadle.core.tasks import Waiter, current_waiter, resume, suspend
from treadle.errors import IncompleteReadError, LimitOverrunError
from treadle.loop import EventLoop, get_running_loop
from treadle.sockets import Buffer, format_address, getaddrinfo, sock_connect

__all__ = [
    "DEFAULT_LIMIT",
    "Connection",
    "StreamLayer",
    "StreamReader",
    "StreamWriter",
    "check_limit",
    "connect_tcp",
    "connect_unix",
    "connection_over",
    "stream_pair",
]

DEFAULT_LIMIT = 64 * 1024
_HIGH_WATER = 64 * 1024
_LOW_WATER = 16 * 1024
# The most one receive asks for.
_MAX_RECV: Final = 256 * 1024
# A plain connection reads and writes the descriptor with os.read/os.write: they take
# their arguments through the fast parser, socket.recv/send through the slow old one
# (and a method lookup through socket.socket's class); the same system calls on a stream
# socket. Measured: about 1,000 fewer instructions per echo round trip. (Final: the
# compiled build keeps them in C variables rather than look them up in the module.)
_read: Final = os.read
_write: Final = os.write


def _closed_under_us() -> OSError:
    # Someone closed the socket object the connection owns (a ``sock=`` argument kept, or
    # get_extra_info("socket"), and closed): fail as recv/send on it would, and never
    # touch the descriptor's number, which may name another file by now.
    return OSError(errno.EBADF, "Bad file descriptor: the stream's socket was closed")


def _wake(fut: Future[None] | Any | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class StreamLayer(Protocol):
    """A layer between a connection and its socket (TLS is one): its hooks and its close.

    The connection receives and transmits through the layer's two hooks, and lets it
    take part in a close: a layer may have an exchange of its own to finish (TLS's
    close_notify) before the socket can close.
    """

    def receive(self, nbytes: int) -> bytes:
        """Up to ``nbytes`` for the reader; ``b''`` at the end; BlockingIOError if none yet."""

    def transmit(self, data: Buffer) -> None:
        """Take the writer's bytes; put what goes on the wire in ``Connection.queue``."""

    def holds_unread(self) -> bool:
        """Whether received bytes wait inside the layer, where the selector can't see them."""

    def begin_close(self) -> None:
        """``close()`` was called: start the layer's closing exchange, if it has one."""

    def closing_exchange_done(self) -> bool:
        """Whether the socket may close once the send buffer is flushed."""

    def socket_closing(self) -> None:
        """The socket closes now (flushed, aborted or failed): drop what the layer awaits."""


class Connection:
    """One connected socket and its buffers, shared by a StreamReader and a StreamWriter.

    The streams ask it (by its methods) to receive, hand out buffered bytes, send and
    close; it keeps the state. Made by ``connection_over``.
    """

    # Slots: an idle connection should cost as little memory as it can.
    __slots__ = (
        "closed",
        "closing",
        "drain_waiters",
        "eof",
        "eof_requested",
        "extra",
        "fd",
        "high_water",
        "layer",
        "limit",
        "loop",
        "low_water",
        "rbuf",
        "read_error",
        "read_waiter",
        "readable",
        "reading",
        "sock",
        "wbuf",
        "write_error",
        "writing",
    )

    def __init__(self, sock: socket.socket, loop: EventLoop, limit: int) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.loop = loop
        self.limit = limit
        # The layer whose hooks bytes pass through (TLS), or None: the socket's own.
        self.layer: StreamLayer | None = None
        # Bytes received and not yet read by the user.
        self.rbuf = bytearray()
        # Invariant: True once the peer has finished sending (or the connection closed).
        self.eof = False
        # A receive error, raised once the buffered bytes have been read.
        self.read_error: BaseException | None = None
        # The task waiting to read (see reader_waits), as resume() takes it.
        self.read_waiter: Waiter | None = None
        # Invariant: True exactly while _on_readable is registered with the loop.
        self.reading = False
        # True when the readiness callback woke the reader instead of receiving: the
        # socket has something (bytes, EOF or an error) that no receive() has taken yet.
        self.readable = False
        # Bytes for the wire (ciphertext over TLS) that the socket has not taken yet.
        self.wbuf = bytearray()
        # Invariant: True exactly while _on_writable is registered with the loop.
        self.writing = False
        self.write_error: BaseException | None = None
        self.drain_waiters: list[Waiter] = []
        self.high_water = _HIGH_WATER
        self.low_water = _LOW_WATER
        self.eof_requested = False
        self.closing = False
        # The loop's kind of future: asyncio's under treadle.aio. ("| Any" and through
        # Any: the compiled build would insist on the treadle Future it is declared as.)
        any_loop: Any = loop
        self.closed: Future[None] | Any = any_loop.create_future()
        self.extra: dict[str, Any] = {"socket": sock}
        for key, getter in (("peername", sock.getpeername), ("sockname", sock.getsockname)):
            try:
                self.extra[key] = getter()
            except OSError:
                self.extra[key] = None

    def insert_layer(self, layer: StreamLayer) -> None:
        """Pass every byte through ``layer``'s hooks from now on (before any is read)."""
        self.layer = layer

    def add_extra_info(self, **info: Any) -> None:
        """Add to what ``StreamWriter.get_extra_info`` answers."""
        self.extra.update(info)

    # --- receiving ----------------------------------------------------------------------
    #
    # Every read path receives through receive(): the readiness callback, and the
    # reader's own attempts when the callback isn't registered. It calls the receive
    # hook and is the one place that tells bytes, EOF, "nothing yet" and errors apart.

    def receive(self, nbytes: int) -> bytes | None:
        """Receive once through the hook, and note what the outcome means for the stream.

        Returns the bytes received, for the caller to deliver or to buffer; ``b''`` when
        nothing more will come: at EOF (``eof`` is set) or after an error (``read_error``
        is set, for the reader to raise once the buffer is read); None if nothing is ready.
        """
        layer = self.layer
        self.readable = False
        try:
            if layer is not None:
                data = layer.receive(nbytes)
            elif self.sock._closed:  # type: ignore[attr-defined]
                raise _closed_under_us()
            else:
                data = _read(self.fd, nbytes)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self.read_error = exc
            self.stop_reading()
            self.wake_reader()
            return b""
        if not data:
            self.eof = True
            self.stop_reading()
            self.wake_reader()
        return data

    def receive_into_buffer(self) -> bool:
        """Receive once into the buffer and wake the reader; False if nothing was ready.

        The readiness callback's work when no reader waits on an empty buffer, and the
        reader's way to fill the buffer itself.
        """
        limit = self.limit  # (not max(): see read()'s fast path)
        data = self.receive(limit if limit > 65536 else 65536)
        if data is None:
            return False
        if data:
            rbuf = self.rbuf
            rbuf += data
            # Nobody has read for a while: stop taking bytes from the socket, so the
            # kernel's buffers fill and TCP pushes back on the peer instead of this
            # buffer growing without bound. Twice the limit (asyncio's threshold too)
            # holds a whole line or header up to the limit with room to spare; the
            # reader registers the callback again when it next has to wait.
            if len(rbuf) >= 2 * self.limit:
                self.stop_reading()
            self.wake_reader()
        return True

    def _on_readable(self) -> None:
        """The readiness callback registered by reader_waits: the socket has something."""
        waiter = self.read_waiter
        if waiter is not None and self.layer is None and not self.rbuf:
            # A reader waits on an empty buffer: wake it to receive for itself, straight
            # into the bytes read() returns, rather than copy them into the buffer and
            # out again. If it does not run before the next poll (it was woken already,
            # or is cancelled), this callback runs again and buffers them as usual.
            # Measured: 11-13% fewer instructions per echo round trip at 1 KiB.
            self.readable = True
            self.read_waiter = None  # forgotten by its waker (see reader_waits)
            if resume(waiter, inline=True):
                return
        self.receive_into_buffer()

    def take(self, n: int) -> bytes:
        """Remove and return up to ``n`` buffered bytes."""
        rbuf = self.rbuf
        if len(rbuf) <= n:
            data = bytes(rbuf)
            rbuf.clear()
        else:
            data = bytes(rbuf[:n])
            del rbuf[:n]
        return data

    def take_all(self) -> bytes:
        """Remove and return every buffered byte."""
        return self.take(len(self.rbuf))

    def unread(self, data: Buffer) -> None:
        """Put ``data`` back in front of the buffer, to be read first."""
        self.rbuf[:0] = data

    def stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    # A reader waits in two calls around its own ``await suspend(waiter)``, not in a
    # coroutine of the connection's: one coroutine object and one level of sends fewer
    # per message (measured: 2.3% fewer instructions per echo round trip pure, 1.7% compiled).
    #
    #     waiter = connection.reader_waits()
    #     try:
    #         await suspend(waiter)
    #     finally:
    #         if connection.read_waiter is waiter:
    #             connection.reader_woke()
    #
    # Whoever wakes the reader forgets its waiter first (before an inline resume, in
    # which the reader may already wait again), so a woken reader makes no call on its
    # way out: 1.4% fewer instructions per echo round trip pure. Only a reader that
    # leaves otherwise (cancelled, say) forgets its waiter itself, and only its own: once
    # its waker has forgotten it, another task may already wait in its place.

    def reader_waits(self) -> Waiter:
        """The running task waits until the readiness callback has buffered bytes, seen
        EOF or an error, or found the socket readable (``readable``: the reader receives
        itself). Registers the callback if need be; returns the waiter to suspend on."""
        if self.read_waiter is not None:
            raise RuntimeError(
                "another task is already waiting to read from this stream; "
                "only one task may read a stream at a time"
            )
        if not self.reading and not self.closing:
            self.reading = True
            self.loop.add_reader(self.fd, self._on_readable)
        # The connection's loop is the one running this reader (its readiness callback
        # goes there): handing it over saves current_waiter() finding it, per message.
        self.read_waiter = waiter = current_waiter(self.loop)
        return waiter

    def reader_woke(self) -> None:
        """The reader's wait is over but nobody woke it (cancelled, say): forget its waiter."""
        self.read_waiter = None

    def wake_reader(self) -> None:
        """Wake the task waiting to read, if any."""
        waiter = self.read_waiter
        if waiter is not None:
            self.read_waiter = None  # forgotten by its waker (see reader_waits)
            # Inline: from the readiness callback the reader's step runs right here,
            # saving a trip through the ready queue per message (core/tasks.py).
            resume(waiter, inline=True)

    # --- sending ------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Raise if bytes written now could not be delivered."""
        if self.write_error is not None:
            raise _fresh(self.write_error)
        if self.closing:
            raise RuntimeError("write() called on a stream that is closing or closed")
        if self.eof_requested:
            raise RuntimeError("write() called after write_eof()")

    def write(self, data: Buffer) -> None:
        """Send the writer's bytes through the transmit hook."""
        if self.write_error is not None or self.closing or self.eof_requested:
            self.check_writable()
        layer = self.layer
        if layer is None:
            self.queue(data)
        else:
            layer.transmit(data)

    def queue(self, data: Buffer) -> None:
        """Send ``data`` now if the socket takes it; buffer the rest and watch for room."""
        if not data:
            return
        if self.wbuf:
            self.wbuf += data
            return
        try:
            if self.sock._closed:  # type: ignore[attr-defined]
                raise _closed_under_us()
            sent = _write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.write_failed(exc)
            return
        # send() counts bytes; a memoryview's len() and slices count its items, which
        # are wider than a byte in a view of, say, array("i").
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        if sent < size:
            self.wbuf += memoryview(data).cast("B")[sent:]
            self.start_writing()

    def start_writing(self) -> None:
        if not self.writing:
            self.writing = True
            self.loop.add_writer(self.fd, self._on_writable)

    def stop_writing(self) -> None:
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)

    def _on_writable(self) -> None:
        """The socket can take more: send from the buffer, wake drainers below low water."""
        try:
            if self.sock._closed:  # type: ignore[attr-defined]
                raise _closed_under_us()
            sent = _write(self.fd, self.wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.write_failed(exc)
            return
        del self.wbuf[:sent]
        if len(self.wbuf) <= self.low_water:
            self._wake_drainers()
        if not self.wbuf:
            self.stop_writing()
            self.buffer_flushed()

    def buffer_flushed(self) -> None:
        """Everything written has reached the socket: finish a pending EOF or close."""
        if self.closing:
            self.close_if_done()
        elif self.eof_requested:
            self.shutdown_write()

    def can_write_eof(self) -> bool:
        """Whether the sending side can be closed alone (not under a layer such as TLS)."""
        return self.layer is None

    def write_eof(self) -> None:
        """Close the sending side once the buffer is flushed."""
        if not self.can_write_eof():
            raise RuntimeError("write_eof() is not supported over TLS; use close()")
        if self.closing or self.eof_requested:
            return
        self.eof_requested = True
        if not self.wbuf:
            self.shutdown_write()

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self.write_failed(exc)

    def write_failed(self, exc: BaseException) -> None:
        """The peer can't be written to: keep the error for drain(); the buffer is undeliverable."""
        self.write_error = exc
        self.wbuf.clear()
        self.stop_writing()
        self._wake_drainers()
        if self.closing:
            self.finish_close()

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        """Set the high- and low-water marks of the send buffer, in bytes."""
        self.high_water, self.low_water = high, low

    def _wake_drainers(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            resume(waiter)

    def raise_write_error(self) -> None:
        """Raise the error that stopped writing, if there was one."""
        if self.write_error is not None:
            raise _fresh(self.write_error)

    async def drain(self) -> None:
        self.raise_write_error()
        if len(self.wbuf) <= self.high_water:
            return
        waiter = current_waiter()
        self.drain_waiters.append(waiter)
        try:
            await suspend(waiter)
        finally:
            if waiter in self.drain_waiters:
                self.drain_waiters.remove(waiter)
        # A method call, not ``if self.write_error is not None`` here: type checking narrows
        # the attribute to None across the await, and the compiled build trusted that.
        self.raise_write_error()

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; close the socket once the send buffer is flushed.

        Under a layer, also once the layer's closing exchange is done (see
        ``StreamLayer.begin_close``).
        """
        if self.closing:
            return
        self.closing = True
        self.stop_reading()
        if not self.eof:
            self.eof = True
            self.wake_reader()
        if self.layer is not None:
            self.layer.begin_close()
        self.close_if_done()

    def close_if_done(self) -> None:
        """Close the socket if close() was called, the buffer is flushed and the layer agrees."""
        if (
            self.closing
            and not self.wbuf
            and (self.layer is None or self.layer.closing_exchange_done())
        ):
            self.finish_close()

    def abort(self) -> None:
        """Close at once, discarding whatever is still buffered for writing."""
        self.closing = True
        self.wbuf.clear()
        self.finish_close()

    def finish_close(self) -> None:
        if self.closed.done():
            return
        self.stop_reading()
        self.stop_writing()
        if self.layer is not None:
            self.layer.socket_closing()
        self.eof = True
        self.sock.close()
        self.closed.set_result(None)
        self.wake_reader()
        self._wake_drainers()


def _fresh(exc: BaseException) -> BaseException:
    """A copy of a stored error, so raising it again does not grow its traceback.

    A copy of the same type: ``OSError(errno, strerror)`` would turn an SSLError (errno
    1) into a PermissionError.
    """
    if isinstance(exc, OSError):
        return copy.copy(exc)
    return exc


class StreamReader:
    """Reads bytes from a connection: ``read``, ``readline``, ``readexactly``, ``readuntil``.

    ``limit`` bounds how far ``readline`` and ``readuntil`` search for a separator.
    Only one task may read at a time.
    """

    __slots__ = ("_conn", "_limit")

    def __init__(self, connection: Connection) -> None:
        self._conn = connection
        self._limit = connection.limit

    def __repr__(self) -> str:
        c = self._conn
        state = " eof" if c.eof else ""
        return f"<StreamReader buffered={len(c.rbuf)}{state} limit={self._limit}>"

    def at_eof(self) -> bool:
        """True when the peer has closed and every buffered byte has been read."""
        return self._conn.eof and not self._conn.rbuf

    def exception(self) -> BaseException | None:
        """The receive error the stream has met, if any."""
        return self._conn.read_error

    def buffered(self) -> int:
        """How many received bytes wait in the buffer, not yet read (not in asyncio)."""
        return len(self._conn.rbuf)

    async def _fill(self) -> None:
        """Receive more into the buffer once (or note EOF or an error), waiting if need be."""
        c = self._conn
        # As in read(): receive now only if the callback may not have brought it all.
        unseen = not c.reading or c.readable or (c.layer is not None and c.layer.holds_unread())
        if not unseen or not c.receive_into_buffer():
            waiter = c.reader_waits()
            try:
                await suspend(waiter)
            finally:
                if c.read_waiter is waiter:  # not woken: cancelled, say
                    c.reader_woke()

    def _check_error(self) -> None:
        error = self._conn.read_error
        if error is not None:
            raise _fresh(error)

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all until EOF if ``n`` is negative); ``b''`` at EOF."""
        if n < 0:
            return await self._read_all()
        if n == 0:
            return b""
        c = self._conn
        while True:
            if c.rbuf:
                return c.take(n)
            if c.read_error is not None:
                raise _fresh(c.read_error)
            if c.eof:
                return b""
            # While the readiness callback is registered it takes everything the socket
            # has, so an empty buffer means nothing has arrived: a recv() would only fail
            # (a system call and an exception per message). Except when the callback woke
            # this reader to receive for itself (``readable``), and under a layer: TLS
            # decrypts a record at a time, and the next may already sit in its engine,
            # taken off the socket with this one, where no readiness event announces it.
            if not c.reading or c.readable or (c.layer is not None and c.layer.holds_unread()):
                # Fast path: the socket may have bytes right now, and they go to the
                # caller without a copy into the buffer. (Bounded: recv() allocates the
                # whole size it is asked for up front. Not min(): the builtin parses its
                # arguments by keyword, about 1,100 instructions per message pure.)
                received = c.receive(n if n < _MAX_RECV else _MAX_RECV)
                if received:
                    return received
                if received is not None:
                    continue  # EOF or an error, noted: the checks above report it
            waiter = c.reader_waits()
            try:
                await suspend(waiter)
            finally:
                if c.read_waiter is waiter:  # not woken: cancelled, say
                    c.reader_woke()

    async def _read_all(self) -> bytes:
        chunks: list[bytes] = []
        try:
            while True:
                data = await self.read(max(self._limit, 65536))
                if not data:
                    return b"".join(chunks)
                chunks.append(data)
        except BaseException:
            # Cancelled or failed before EOF: give back what was gathered, so that no
            # byte is lost and the next read starts where this one did.
            self._conn.unread(b"".join(chunks))
            raise

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; IncompleteReadError (with ``.partial``) if EOF comes first."""
        if n < 0:
            raise ValueError(f"readexactly() size must be zero or more, got {n}")
        c = self._conn
        while len(c.rbuf) < n:
            self._check_error()
            if c.eof:
                raise IncompleteReadError(c.take_all(), n)
            await self._fill()
        return c.take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Bytes up to and including ``separator``.

        IncompleteReadError (with ``.partial``) if EOF comes first. LimitOverrunError if
        the separator is not within ``limit`` bytes; the bytes stay buffered.
        """
        if not separator:
            raise ValueError("readuntil() separator must not be empty")
        c = self._conn
        buffer = c.rbuf  # searched here, changed only by the connection
        seplen = len(separator)
        offset = 0
        while True:
            found = buffer.find(separator, offset)
            if found >= 0:
                if found > self._limit:
                    raise LimitOverrunError(
                        f"separator found {found} bytes in, past the stream limit of "
                        f"{self._limit} bytes",
                        found,
                    )
                return c.take(found + seplen)
            offset = max(0, len(buffer) + 1 - seplen)
            if offset > self._limit:
                raise LimitOverrunError(
                    f"separator not found within the stream limit of {self._limit} bytes",
                    offset,
                )
            self._check_error()
            if c.eof:
                raise IncompleteReadError(c.take_all(), None)
            await self._fill()

    async def readline(self) -> bytes:
        """One line, with its ``\\n``; at EOF the last partial line, then ``b''``.

        LimitOverrunError if the line is longer than ``limit``; the bytes stay buffered.
        """
        try:
            return await self.readuntil(b"\n")
        except IncompleteReadError as exc:
            return exc.partial

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


class StreamWriter:
    """Writes bytes to a connection; ``drain()`` applies backpressure.

    Use it as an async context manager to close it (and wait for the close) at the end.
    """

    __slots__ = ("_conn", "_reader")

    def __init__(self, connection: Connection, reader: StreamReader | None = None) -> None:
        self._conn = connection
        self._reader = reader

    def __repr__(self) -> str:
        c = self._conn
        peer = c.extra.get("peername")
        state = " closing" if c.closing else ""
        return f"<StreamWriter peer={peer!r} buffered={len(c.wbuf)}{state}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    def write(self, data: Buffer) -> None:
        """Send ``data`` (buffered if the socket can't take it all now). Follow with drain()."""
        # bytes first, by itself, then a tuple: ``bytes | bytearray | memoryview`` would
        # build a union on every call (1,000 instructions per write, compiled), and the
        # compiled build builds the tuple on every call too.
        if type(data) is not bytes and not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"write() needs bytes, bytearray or memoryview, got {type(data).__name__}"
            )
        self._conn.write(data)

    def writelines(self, data: Iterable[Buffer]) -> None:
        """Write each of ``data`` in turn."""
        self.write(b"".join(data))

    def can_write_eof(self) -> bool:
        """Whether ``write_eof()`` is supported (not over TLS)."""
        return self._conn.can_write_eof()

    def write_eof(self) -> None:
        """Close the sending side once the buffer is flushed; reading goes on."""
        self._conn.write_eof()

    async def drain(self) -> None:
        """Wait while the write buffer is above its high-water mark.

        Raises the connection's error if the peer can't be written to. Safe to call
        from several tasks at once.
        """
        c = self._conn
        if c.write_error is None and len(c.wbuf) <= c.high_water:
            return  # the common case, without a second coroutine
        await c.drain()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the high- and low-water marks of the write buffer, in bytes."""
        high = _HIGH_WATER if high is None else high
        low = high // 4 if low is None else low
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got high={high} low={low}")
        self._conn.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        """How many written bytes the socket has not taken yet."""
        return len(self._conn.wbuf)

    def close(self) -> None:
        """Close the stream once what was written is flushed. Use ``wait_closed()`` to wait."""
        self._conn.close()

    def abort(self) -> None:
        """Close at once, discarding unsent bytes."""
        self._conn.abort()

    def is_closing(self) -> bool:
        """Whether ``close()`` was called or the connection was lost."""
        return self._conn.closing

    async def wait_closed(self) -> None:
        """Wait until the socket is closed. Cancelling the wait does not stop the close."""
        closed = self._conn.closed
        if closed.done():
            return
        # A future of our own: a cancelled wait must not cancel the shared ``closed``,
        # which is also how the connection knows its socket is still to be closed.
        any_loop: Any = self._conn.loop  # as for Connection.closed
        waiter: Future[None] | Any = any_loop.create_future()

        def wake(_: Future[None] | Any) -> None:
            _wake(waiter)

        closed.add_done_callback(wake)
        try:
            await waiter
        finally:
            closed.remove_done_callback(wake)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``peername``, ``sockname``, ``socket``; over TLS also ``ssl_object``, ``peercert``,
        ``cipher`` and ``compression``."""
        return self._conn.extra.get(name, default)

    @property
    def reader(self) -> StreamReader | None:
        """The StreamReader on the same connection."""
        return self._reader


def check_limit(limit: int) -> None:
    """Raise ValueError unless ``limit`` is a positive number of bytes."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise ValueError(f"limit must be a positive number of bytes, got {limit!r}")


def connection_over(sock: socket.socket, limit: int = DEFAULT_LIMIT) -> Connection:
    """A connection over a connected socket, made non-blocking here (TCP_NODELAY for TCP)."""
    check_limit(limit)
    if isinstance(sock, ssl.SSLSocket):
        # The connection reads and writes the descriptor itself: through an SSLSocket's
        # it would see ciphertext. TLS is a layer of the connection's own (asyncio
        # refuses an SSLSocket too).
        raise TypeError(
            "the socket is an ssl.SSLSocket; pass the plain connected socket and "
            "ssl=... to have treadle run TLS over it"
        )
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Connection(sock, get_running_loop(), limit)


def stream_pair(connection: Connection) -> tuple[StreamReader, StreamWriter]:
    """A StreamReader and a StreamWriter on ``connection``."""
    reader = StreamReader(connection)
    return reader, StreamWriter(connection, reader)


async def connect_tcp(
    host: str, port: int | str, local_addr: tuple[str, int] | None = None
) -> socket.socket:
    """A non-blocking socket connected to the first of ``host``'s addresses that accepts.

    If all fail, the error names the host and every address tried.
    """
    infos = await getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned no addresses")
    local_infos = None
    if local_addr is not None:
        local_infos = await getaddrinfo(*local_addr, type=socket.SOCK_STREAM)
    failures: list[tuple[Any, OSError]] = []
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            if local_infos is not None:
                local = [info[4] for info in local_infos if info[0] == family]
                if not local:
                    raise OSError(f"no local address of family {family.name} in {local_addr!r}")
                sock.bind(local[0])
            await sock_connect(sock, address)
            return sock
        except OSError as exc:
            sock.close()
            failures.append((address, exc))
        except BaseException:
            sock.close()
            raise
    tried = ", ".join(f"{format_address(addr)} ({exc.strerror or exc})" for addr, exc in failures)
    message = f"could not connect to {host}:{port}: tried {tried}"
    errnos = {exc.errno for _, exc in failures}
    if len(errnos) == 1 and None not in errnos:
        raise OSError(errnos.pop(), message)
    raise OSError(message)


async def connect_unix(path: str) -> socket.socket:
    """A non-blocking socket connected to the Unix socket at ``path``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            await sock_connect(sock, path)
        except OSError as exc:
            raise OSError(
                exc.errno, f"could not connect to Unix socket {path!r}: {exc.strerror}"
            ) from None
        return sock
    except BaseException:
        sock.close()
        raise
