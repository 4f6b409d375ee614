"""Buffered streams over a socket: ``StreamReader``, ``StreamWriter``, ``open_connection``.

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

I/O layer: imports ``sockets`` and the layers above.
"""

from __future__ import annotations

import socket
import ssl as ssl_module
from collections.abc import AsyncIterator, Iterable
from typing import Any, Self

from treadle.core.futures import Future
from treadle.core.tasks import Waiter, current_waiter, resume, suspend
from treadle.errors import IncompleteReadError, LimitOverrunError
from treadle.loop import EventLoop, get_running_loop
from treadle.sockets import Buffer, format_address, getaddrinfo, sock_connect

__all__ = [
    "DEFAULT_LIMIT",
    "StreamReader",
    "StreamWriter",
    "open_connection",
    "open_unix_connection",
]

DEFAULT_LIMIT = 64 * 1024
_HIGH_WATER = 64 * 1024
_LOW_WATER = 16 * 1024
# The most one recv() asks for.
_MAX_RECV = 256 * 1024


def _wake(fut: Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class _Connection:
    """One connected socket and its buffers, shared by a StreamReader and a StreamWriter.

    Subclassed by ``tls.TLSConnection``, which encrypts in ``write`` and decrypts in ``recv``.
    """

    # Whether the sending side can be closed alone (not over TLS).
    supports_eof = True
    # Whether received bytes can wait below the buffer (in a TLS engine): see holds_unread.
    may_hold_unread = False

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
        "limit",
        "loop",
        "low_water",
        "rbuf",
        "read_error",
        "read_waiter",
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
        # Bytes received and not yet read by the user.
        self.rbuf = bytearray()
        self.eof = False
        # A receive error, raised once the buffered bytes have been read.
        self.read_error: BaseException | None = None
        # The task suspended in wait_readable, as resume() takes it.
        self.read_waiter: Waiter | None = None
        # Invariant: True exactly while _on_readable is registered with the loop.
        self.reading = False
        # Bytes written by the user that the socket has not taken yet.
        self.wbuf = bytearray()
        # Invariant: True exactly while _on_writable is registered with the loop.
        self.writing = False
        self.write_error: BaseException | None = None
        self.drain_waiters: list[Waiter] = []
        self.high_water = _HIGH_WATER
        self.low_water = _LOW_WATER
        self.eof_requested = False
        self.closing = False
        self.closed: Future[None] = loop.create_future()
        self.extra: dict[str, Any] = {"socket": sock}
        for key, getter in (("peername", sock.getpeername), ("sockname", sock.getsockname)):
            try:
                self.extra[key] = getter()
            except OSError:
                self.extra[key] = None

    # --- receiving ----------------------------------------------------------------------

    def recv(self, nbytes: int) -> bytes:
        """Bytes from the peer now; ``b''`` at EOF; BlockingIOError if none are ready."""
        return self.sock.recv(nbytes)

    def holds_unread(self) -> bool:
        """Whether received bytes wait below the buffer, where the selector can't see them."""
        return False

    def _on_readable(self) -> None:
        """The selector says the socket is readable: move what arrived into the buffer."""
        try:
            data = self.recv(max(self.limit, 65536))
        except (BlockingIOError, InterruptedError, ssl_module.SSLWantReadError):
            return
        except OSError as exc:
            self.read_failed(exc)
            return
        if data:
            self.rbuf += data
            if len(self.rbuf) >= 2 * self.limit:
                self.stop_reading()  # nobody is reading: stop until someone waits
        else:
            self.eof = True
            self.stop_reading()
        self.wake_reader()

    def read_failed(self, exc: BaseException) -> None:
        self.read_error = exc
        self.stop_reading()
        self.wake_reader()

    def stop_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    async def wait_readable(self) -> None:
        """Wait until the readiness callback has buffered bytes, seen EOF, or an error."""
        if self.read_waiter is not None:
            raise RuntimeError(
                "another task is already waiting to read from this stream; "
                "only one task may read a stream at a time"
            )
        if not self.reading and not self.closing:
            self.reading = True
            self.loop.add_reader(self.fd, self._on_readable)
        self.read_waiter = waiter = current_waiter()
        try:
            await suspend(waiter)
        finally:
            self.read_waiter = None

    def wake_reader(self) -> None:
        """Wake the task waiting to read, if any."""
        waiter = self.read_waiter
        if waiter is not None:
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
        if self.write_error is not None or self.closing or self.eof_requested:
            self.check_writable()
        self.queue(data)

    def queue(self, data: Buffer) -> None:
        """Send ``data`` now if the socket takes it; buffer the rest and watch for room."""
        if not data:
            return
        if self.wbuf:
            self.wbuf += data
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError, ssl_module.SSLWantWriteError):
            sent = 0
        except OSError as exc:
            self.write_failed(exc)
            return
        if sent < len(memoryview(data)):
            self.wbuf += memoryview(data)[sent:]
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
            sent = self.sock.send(self.wbuf)
        except (BlockingIOError, InterruptedError, ssl_module.SSLWantWriteError):
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
            self.finish_close()
        elif self.eof_requested:
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

    def _wake_drainers(self) -> None:
        waiters, self.drain_waiters = self.drain_waiters, []
        for waiter in waiters:
            resume(waiter)

    async def drain(self) -> None:
        if self.write_error is not None:
            raise _fresh(self.write_error)
        if len(self.wbuf) <= self.high_water:
            return
        waiter = current_waiter()
        self.drain_waiters.append(waiter)
        try:
            await suspend(waiter)
        finally:
            if waiter in self.drain_waiters:
                self.drain_waiters.remove(waiter)
        if self.write_error is not None:
            raise _fresh(self.write_error)

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading; close the socket once the write buffer is flushed."""
        if self.closing:
            return
        self.closing = True
        self.stop_reading()
        if not self.eof:
            self.eof = True
            self.wake_reader()
        if not self.wbuf:
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
        self.eof = True
        self.sock.close()
        self.closed.set_result(None)
        self.wake_reader()
        self._wake_drainers()


def _fresh(exc: BaseException) -> BaseException:
    """A new exception like ``exc``, so raising it again does not grow its traceback."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return OSError(exc.errno, exc.strerror)
    return exc


class StreamReader:
    """Reads bytes from a connection: ``read``, ``readline``, ``readexactly``, ``readuntil``.

    ``limit`` bounds how far ``readline`` and ``readuntil`` search for a separator.
    Only one task may read at a time.
    """

    __slots__ = ("_conn", "_limit")

    def __init__(self, connection: _Connection) -> None:
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
        """Receive more into the buffer once (or note EOF or an error)."""
        c = self._conn
        if c.reading and not (c.may_hold_unread and c.holds_unread()):
            # As in read(): the readiness callback will bring what arrives.
            await c.wait_readable()
            return
        data: bytes | None
        try:
            data = c.recv(max(self._limit, 65536))
        except (BlockingIOError, InterruptedError, ssl_module.SSLWantReadError):
            data = None
        except OSError as exc:
            c.read_failed(exc)
            return
        if data is None:
            # Waiting outside the except block: a timeout or a cancellation during the
            # wait must not carry the BlockingIOError as its context.
            await c.wait_readable()
        elif data:
            c.rbuf += data
        else:
            c.eof = True
            c.stop_reading()

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
            buffer = c.rbuf
            if buffer:
                if len(buffer) <= n:
                    data = bytes(buffer)
                    buffer.clear()
                else:
                    data = bytes(buffer[:n])
                    del buffer[:n]
                return data
            if c.read_error is not None:
                raise _fresh(c.read_error)
            if c.eof:
                return b""
            if c.reading and not (c.may_hold_unread and c.holds_unread()):
                # The readiness callback is registered and picks data up the moment it
                # arrives, so an empty buffer means nothing has: trying recv() here
                # would only fail (a system call and an exception per message).
                await c.wait_readable()
                continue
            # Fast path: the socket may have bytes right now. (Bounded: recv() allocates
            # the whole size it is asked for up front.)
            received: bytes | None
            try:
                received = c.recv(min(n, _MAX_RECV))
            except (BlockingIOError, InterruptedError, ssl_module.SSLWantReadError):
                received = None
            except OSError as exc:
                c.read_failed(exc)
                raise
            if received is None:
                # Outside the except block, as in _fill().
                await c.wait_readable()
                continue
            if not received:
                c.eof = True
                c.stop_reading()
            return received

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
            self._conn.rbuf[:0] = b"".join(chunks)
            raise

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; IncompleteReadError (with ``.partial``) if EOF comes first."""
        if n < 0:
            raise ValueError(f"readexactly() size must be zero or more, got {n}")
        c = self._conn
        buffer = c.rbuf
        while len(buffer) < n:
            self._check_error()
            if c.eof:
                partial = bytes(buffer)
                buffer.clear()
                raise IncompleteReadError(partial, n)
            await self._fill()
        data = bytes(buffer[:n])
        del buffer[:n]
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Bytes up to and including ``separator``.

        IncompleteReadError (with ``.partial``) if EOF comes first. LimitOverrunError if
        the separator is not within ``limit`` bytes; the bytes stay buffered.
        """
        if not separator:
            raise ValueError("readuntil() separator must not be empty")
        c = self._conn
        buffer = c.rbuf
        seplen = len(separator)
        offset = 0
        while True:
            found = buffer.find(separator, offset)
            if found >= 0:
                end = found + seplen
                if found > self._limit:
                    raise LimitOverrunError(
                        f"separator found {found} bytes in, past the stream limit of "
                        f"{self._limit} bytes",
                        found,
                    )
                data = bytes(buffer[:end])
                del buffer[:end]
                return data
            offset = max(0, len(buffer) + 1 - seplen)
            if offset > self._limit:
                raise LimitOverrunError(
                    f"separator not found within the stream limit of {self._limit} bytes",
                    offset,
                )
            self._check_error()
            if c.eof:
                partial = bytes(buffer)
                buffer.clear()
                raise IncompleteReadError(partial, None)
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

    def __init__(self, connection: _Connection, reader: StreamReader | None = None) -> None:
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
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(
                f"write() needs bytes, bytearray or memoryview, got {type(data).__name__}"
            )
        self._conn.write(data)

    def writelines(self, data: Iterable[Buffer]) -> None:
        """Write each of ``data`` in turn."""
        self.write(b"".join(data))

    def can_write_eof(self) -> bool:
        """Whether ``write_eof()`` is supported (not over TLS)."""
        return self._conn.supports_eof

    def write_eof(self) -> None:
        """Close the sending side once the buffer is flushed; reading goes on."""
        c = self._conn
        if not c.supports_eof:
            raise RuntimeError("write_eof() is not supported over TLS; use close()")
        if c.closing or c.eof_requested:
            return
        c.eof_requested = True
        if not c.wbuf:
            c.shutdown_write()

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
        self._conn.high_water, self._conn.low_water = high, low

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
        waiter: Future[None] = self._conn.loop.create_future()

        def wake(_: Future[None]) -> None:
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


def _check_limit(limit: int) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
        raise ValueError(f"limit must be a positive number of bytes, got {limit!r}")


async def connect_stream(
    sock: socket.socket,
    *,
    limit: int = DEFAULT_LIMIT,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_side: bool = False,
    server_hostname: str | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[StreamReader, StreamWriter]:
    """Streams over a connected socket (made non-blocking here), with TLS if ``ssl`` is set."""
    _check_limit(limit)
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    loop = get_running_loop()
    if ssl:
        from treadle.tls import start_tls

        return await start_tls(
            sock,
            loop,
            limit=limit,
            ssl=ssl,
            server_side=server_side,
            server_hostname=server_hostname,
            handshake_timeout=ssl_handshake_timeout,
            shutdown_timeout=ssl_shutdown_timeout,
        )
    connection = _Connection(sock, loop, limit)
    reader = StreamReader(connection)
    return reader, StreamWriter(connection, reader)


async def open_connection(
    host: str | None = None,
    port: int | str | None = None,
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    limit: int = DEFAULT_LIMIT,
    local_addr: tuple[str, int] | None = None,
    sock: socket.socket | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
) -> tuple[StreamReader, StreamWriter]:
    """Connect to ``host:port`` over TCP (TLS if ``ssl``); ``(reader, writer)``.

    Each resolved address is tried in turn; if all fail, the error names the host and
    every address tried. ``ssl=True`` uses a default context that verifies certificates.
    """
    _check_limit(limit)
    if sock is None:
        if host is None or port is None:
            raise ValueError("open_connection() needs host and port (or sock=)")
        sock = await _connect_tcp(host, port, local_addr)
    elif host is not None or port is not None:
        raise ValueError("give either host and port, or sock=, not both")
    if ssl and server_hostname is None:
        server_hostname = host
    try:
        return await connect_stream(
            sock,
            limit=limit,
            ssl=ssl,
            server_hostname=server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
    except BaseException:
        sock.close()
        raise


async def _connect_tcp(
    host: str, port: int | str, local_addr: tuple[str, int] | None
) -> socket.socket:
    """A socket connected to the first of ``host``'s addresses that accepts."""
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


async def open_unix_connection(
    path: str,
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> tuple[StreamReader, StreamWriter]:
    """Connect to the Unix socket at ``path``; ``(reader, writer)``."""
    _check_limit(limit)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        try:
            await sock_connect(sock, path)
        except OSError as exc:
            raise OSError(
                exc.errno, f"could not connect to Unix socket {path!r}: {exc.strerror}"
            ) from None
        return await connect_stream(sock, limit=limit, ssl=ssl, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise
