"""treadle's own transport for TCP and UNIX stream sockets on the aio loop.

``SocketTransport`` is what ``treadle.aio``'s loop makes for ``create_connection``,
``create_server``, ``create_unix_connection``, ``create_unix_server`` and
``connect_accepted_socket`` (and, under asyncio's ``SSLProtocol``, for TLS). It keeps
asyncio's semantics (``asyncio.selector_events._SelectorSocketTransport`` is the oracle,
selectable with ``transport="asyncio"``) on a shorter path: its readiness callbacks sit
directly in treadle's poller tables, with no asyncio ``Handle`` in between; a
``BufferedProtocol`` is read with ``readv`` into its buffer; ``write`` sends first and
buffers only what the socket did not take; a backlog goes out with one ``sendmsg``. The
per-message work (the read routine, and ``write`` when the socket takes it all) is also
in ``treadle.aio.datapath.DataPath``, a class with no asyncio base, which the compiled
build compiles: there the loop reads through it and the transport's ``write`` is its.

Side layer: imports asyncio, treadle's loop and ``treadle.aio.datapath``.

Private names relied on (adapt them when they move):
    treadle's loop: ``EventLoop.add_reader``/``remove_reader``/``add_writer``/
        ``remove_writer`` called unbound (the aio loop's own names are asyncio's, which
        wrap each callback in an asyncio ``Handle``)
    asyncio's loop: ``_transports`` (fd -> transport, for ``_ensure_fd_no_transport``
        and ``_sendfile_native``), ``_ensure_fd_no_transport``
    asyncio: ``transports._FlowControlMixin`` (``loop.sendfile``'s fallback insists on
        it; its water marks are reused), ``base_events.Server._attach``/``_detach``,
        ``constants._SendfileMode``, ``sslproto.SSLProtocol`` and its
        ``_app_transport``, ``trsock.TransportSocket``
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import socket
import types
import warnings
from asyncio import base_events, constants, protocols, sslproto, transports, trsock
from asyncio.log import logger
from collections import deque
from typing import Any

from treadle.aio.datapath import WRITE_FAILED, DataPath, closed_under_us
from treadle.loop import EventLoop as TreadleLoop

__all__ = ["SocketTransport", "make_socket_transport", "make_ssl_transport"]

_asyncio_constants: Any = constants
_asyncio_base_events: Any = base_events
_asyncio_sslproto: Any = sslproto
# asyncio's flow-control base (typeshed does not declare its water-mark methods).
_FlowControlBase: Any = transports._FlowControlMixin

_CAN_SENDMSG = hasattr(socket.socket, "sendmsg")
try:
    _IOV_MAX = os.sysconf("SC_IOV_MAX") if _CAN_SENDMSG else 1
except (OSError, ValueError):
    _CAN_SENDMSG, _IOV_MAX = False, 1

# Python 3.13's Server tracks its transports (close_clients); 3.11 and 3.12 count them.
_SERVER_TRACKS_TRANSPORTS = (
    len(inspect.signature(_asyncio_base_events.Server._attach).parameters) == 2
)
_TCP_FAMILIES = {socket.AF_INET, socket.AF_INET6}

# Writes of the plain path go to the descriptor (as the reads, in treadle.aio.datapath):
# os.write and os.writev parse their arguments much faster than socket.send and sendmsg
# (the same system calls on a stream socket; writelines of two buffers: -200 ns).
_write = os.write
_writev = getattr(os, "writev", None)
# Compiled, DataPath.write is a native method, and each transport's write is its data
# path's (an instance attribute: found by the generic lookup, which costs far less than
# the interpreted write saves). Pure, the class's own write is found the interpreter's
# fast way, and the data path's would only add a call. (Tests set this to run every
# transport test with both.)
_DATA_PATH_WRITES = not isinstance(DataPath.write, types.FunctionType)


def _set_result_unless_cancelled(waiter: asyncio.Future[None]) -> None:
    if not waiter.cancelled():
        waiter.set_result(None)


def _set_nodelay(sock: socket.socket) -> None:
    # Small writes go out at once instead of waiting for the peer's ACK (Nagle).
    if (
        sock.family in _TCP_FAMILIES
        and sock.type == socket.SOCK_STREAM
        and sock.proto == socket.IPPROTO_TCP
    ):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class SocketTransport(_FlowControlBase):  # type: ignore[misc]
    """A stream socket's ``asyncio.Transport`` on treadle's poller.

    Made by the aio loop; user code gets it in ``connection_made``. Serves a
    ``Protocol`` (``data_received``) or a ``BufferedProtocol`` (``get_buffer`` /
    ``buffer_updated``), with read flow control (``pause_reading``/``resume_reading``),
    write flow control on the water marks (``set_write_buffer_limits``), half-close
    (``write_eof``; ``eof_received`` returning true keeps the transport open for
    writing), ``start_tls`` (``set_protocol``) and ``loop.sendfile``.
    """

    # Slots, because asyncio's transport base classes have them: Python 3.13 does not
    # specialise reading an attribute from the __dict__ of such a class's instance (every
    # self._sock was a full lookup), while a slot is read as fast as on 3.11. The
    # __dict__ slot stays for what code may add (a test's mock.patch.object), and
    # __weakref__ for the loop's table of transports.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_buffer",
        "_buffer_size",
        "_buffered",
        "_closing",
        "_conn_lost",
        "_data_path",
        "_empty_waiter",
        "_eof",
        "_paused",
        "_protocol",
        "_protocol_connected",
        "_reading",
        "_send_now",
        "_server",
        "_sock",
        "_sock_fd",
        "_writing",
    )

    # What asyncio's loop.start_tls and loop.sendfile look for.
    _start_tls_compatible = True
    _sendfile_compatible = _asyncio_constants._SendfileMode.TRY_NATIVE
    _sock: socket.socket | None
    _server: Any
    _loop: Any  # the aio loop; None once connection_lost has run

    def __init__(
        self,
        loop: Any,
        sock: socket.socket,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[None] | None = None,
        extra: dict[str, Any] | None = None,
        server: Any = None,
    ) -> None:
        # Read by __del__, which runs even when __init__ fails.
        self._sock = None
        self._server = None
        super().__init__(extra, loop)
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._closing = False  # close() or abort() was called, or the connection failed
        self._paused = False  # pause_reading() is in force
        # Invariant: _reading is True exactly while a method of _data_path is in treadle's
        # readers.
        self._reading = False
        self._writing = False  # likewise, _write_ready in treadle's writers
        self._eof = False  # write_eof() was called
        # >0 once connection_lost is scheduled; then counts writes made after that.
        self._conn_lost = 0
        # Unsent bytes, oldest first (bytes or memoryviews of bytes: never a caller's
        # mutable buffer), and their total length.
        self._buffer: deque[bytes | memoryview] = deque()
        self._buffer_size = 0
        self._empty_waiter: asyncio.Future[None] | None = None  # loop.sendfile's
        # Invariant: _send_now is True exactly when write() may send at once: nothing
        # buffered, no write_eof(), no sendfile running, connection not lost.
        self._send_now = True
        self._protocol: Any = None
        # Reads the socket while _reading, and compiled, writes. Invariant: its protocol
        # is _protocol, its send_now _send_now (so both are set together).
        self._data_path = DataPath(self, sock, self._sock_fd)
        if _DATA_PATH_WRITES:
            self.write = self._data_path.write  # type: ignore[method-assign]
        # The protocol is a BufferedProtocol: the data path's read_ready_buffered reads
        # into its buffer (else its read_ready reads bytes for data_received).
        self._buffered = False
        self._protocol_connected = False
        self.set_protocol(protocol)
        self._server = server
        if server is not None:
            if _SERVER_TRACKS_TRANSPORTS:
                server._attach(self)
            else:
                server._attach()
        loop._transports[self._sock_fd] = self
        _set_nodelay(sock)
        # As asyncio: connection_made first, reading only after it, the waiter last.
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._start_reading_unless_paused)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        if self._loop is not None and not self._loop.is_closed():
            info.append("read=polling" if self._reading else "read=idle")
            state = "polling" if self._writing else "idle"
            info.append(f"write=<{state}, bufsize={self._buffer_size}>")
        return f"<{' '.join(info)}>"

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._sock is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._sock.close()
            if self._server is not None:
                self._detach_from_server()

    # --- protocol --------------------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Deliver what is read from now on to ``protocol`` (``start_tls`` uses this)."""
        self._protocol = self._data_path.protocol = protocol
        buffered = isinstance(protocol, protocols.BufferedProtocol)
        if buffered != self._buffered:
            self._buffered = buffered
            if self._reading:
                self._watch_readable()
        self._protocol_connected = True

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The protocol this transport delivers to."""
        return self._protocol  # type: ignore[no-any-return]

    # --- reading -----------------------------------------------------------------------

    def is_reading(self) -> bool:
        """Whether the transport is receiving (not paused, not closing)."""
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        """Stop reading until ``resume_reading()``; no ``data_received`` meanwhile."""
        if self._closing or self._paused:
            return
        self._paused = True
        self._stop_reading()
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        """Read again after ``pause_reading()``."""
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _start_reading_unless_paused(self) -> None:
        if not self._closing and not self._paused:
            self._start_reading()

    def _start_reading(self) -> None:
        if not self._reading:
            self._watch_readable()
            self._reading = True

    def _watch_readable(self) -> None:
        # (Also replaces the routine when set_protocol changes the kind of protocol.) The
        # data path's bound method goes straight into treadle's table: the loop calls it
        # as it would one of the transport's own, and compiled it is a native method.
        path = self._data_path
        ready = path.read_ready_buffered if self._buffered else path.read_ready
        TreadleLoop.add_reader(self._loop, self._sock_fd, ready)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            TreadleLoop.remove_reader(self._loop, self._sock_fd)

    # The readiness callbacks are the data path's (treadle.aio.datapath), one per kind of
    # protocol, so the hot path asks nothing it knew when reading started; it calls back
    # _fatal_error when a step fails and _eof_from_peer at end of file.

    def _eof_from_peer(self) -> None:
        if self._loop.get_debug():
            logger.debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # Half-closed: the protocol may still write, but nothing more will arrive.
            self._stop_reading()
        else:
            self.close()

    # --- writing -----------------------------------------------------------------------

    # The same code as DataPath.write, on the transport's fields: keep the two in step.
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``: at once as far as the socket takes it, the rest buffered.

        Never blocks. The protocol's ``pause_writing()`` is called when the buffer
        passes the high-water mark, ``resume_writing()`` when it drains to the low one.
        """
        if type(data) is not bytes:
            data = self._as_bytes_like(data)
        if not self._send_now:
            self._write_when_busy(data)
            return
        if not data:
            return
        try:
            if self._sock._closed:  # type: ignore[union-attr]
                raise closed_under_us()
            sent = _write(self._sock_fd, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, WRITE_FAILED)
            return
        if sent != len(data):
            self._buffer_rest(data, sent)

    def writelines(self, list_of_data: Any) -> None:
        """Write each buffer of ``list_of_data`` in order, in one ``writev`` if possible."""
        if self._eof:
            raise RuntimeError("Cannot call writelines() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to writelines; sendfile is in progress")
        chunks = []
        for data in list_of_data:
            chunk = data if type(data) is bytes else self._as_bytes_like(data)
            if chunk:
                chunks.append(chunk)
        if _writev is None or not self._send_now or len(chunks) < 2:
            for chunk in chunks:
                self.write(chunk)
            return
        try:
            if self._sock._closed:  # type: ignore[union-attr]
                raise closed_under_us()
            sent = _writev(self._sock_fd, chunks if len(chunks) <= _IOV_MAX else chunks[:_IOV_MAX])
        except (BlockingIOError, InterruptedError):
            sent = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, WRITE_FAILED)
            return
        for chunk in chunks:
            if sent >= len(chunk):
                sent -= len(chunk)
            else:
                self._buffer_rest(chunk, sent)
                sent = 0

    @staticmethod
    def _as_bytes_like(data: Any) -> bytes | bytearray | memoryview:
        if isinstance(data, (bytes, bytearray)):
            return data
        if isinstance(data, memoryview):
            # Counted and sliced in bytes, whatever the view's item format.
            return data if data.format == "B" and data.ndim == 1 else data.cast("B")
        raise TypeError(
            f"data argument must be a bytes-like object, not {type(data).__name__!r}"
        )

    def _write_when_busy(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= _asyncio_constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        self._buffer_rest(data, 0)

    def _buffer_rest(self, data: bytes | bytearray | memoryview, sent: int) -> None:
        """Keep ``data[sent:]`` to send when the socket is writable again."""
        if type(data) is bytes:
            chunk: bytes | memoryview = memoryview(data)[sent:] if sent else data
        else:
            # A caller's bytearray may change after write() returns: keep a copy.
            chunk = bytes(memoryview(data)[sent:])
        self._buffer.append(chunk)
        self._buffer_size += len(chunk)
        self._send_now = self._data_path.send_now = False
        if not self._writing:
            TreadleLoop.add_writer(self._loop, self._sock_fd, self._write_ready)
            self._writing = True
        if self._buffer_size > self._high_water:
            self._maybe_pause_protocol()

    def _write_ready(self) -> None:
        if self._conn_lost:
            return
        buffer = self._buffer
        try:
            if len(buffer) == 1 or not _CAN_SENDMSG:
                sent = self._sock.send(buffer[0])  # type: ignore[union-attr]
            else:
                sent = self._sock.sendmsg(  # type: ignore[union-attr]
                    itertools.islice(buffer, _IOV_MAX)
                )
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._stop_writing()
            buffer.clear()
            self._buffer_size = 0
            self._fatal_error(exc, WRITE_FAILED)
            if self._empty_waiter is not None and not self._empty_waiter.done():
                self._empty_waiter.set_exception(exc)
            return
        self._buffer_size -= sent
        while sent:
            chunk = buffer.popleft()
            if len(chunk) <= sent:
                sent -= len(chunk)
            else:
                buffer.appendleft(memoryview(chunk)[sent:])
                break
        self._maybe_resume_protocol()  # its resume_writing() may write again
        if buffer:
            return
        self._stop_writing()
        if self._empty_waiter is not None and not self._empty_waiter.done():
            self._empty_waiter.set_result(None)
        if self._closing:
            self._call_connection_lost(None)
        elif self._eof:
            self._sock.shutdown(socket.SHUT_WR)  # type: ignore[union-attr]
        else:
            self._send_now = self._data_path.send_now = self._empty_waiter is None

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            TreadleLoop.remove_writer(self._loop, self._sock_fd)

    def get_write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the socket."""
        return self._buffer_size

    def can_write_eof(self) -> bool:
        """True: a stream socket can half-close."""
        return True

    def write_eof(self) -> None:
        """Close the sending side once the buffer is sent; reading goes on."""
        if self._closing or self._eof:
            return
        self._eof = True
        self._send_now = self._data_path.send_now = False
        if not self._buffer:
            self._sock.shutdown(socket.SHUT_WR)  # type: ignore[union-attr]

    # --- loop.sendfile's hooks (asyncio's _sendfile_native) -------------------------------

    def _make_empty_waiter(self) -> asyncio.Future[None]:
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._empty_waiter = waiter
        self._send_now = self._data_path.send_now = False
        if not self._buffer:
            waiter.set_result(None)
        return waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None
        self._send_now = self._data_path.send_now = not (
            self._buffer or self._eof or self._conn_lost
        )

    # --- closing -----------------------------------------------------------------------

    def is_closing(self) -> bool:
        """Whether ``close()`` or ``abort()`` was called or the connection failed."""
        return self._closing

    def close(self) -> None:
        """Stop reading; once the buffer is sent, close and call ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._conn_lost += 1
            self._send_now = self._data_path.send_now = False
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close now, dropping anything unsent; ``connection_lost(None)`` follows."""
        self._force_close(None)

    def _fatal_error(self, exc: BaseException, message: str) -> None:
        # As asyncio: an OSError is the connection's fate (connection_lost gets it); any
        # other exception is a bug, reported to the loop's exception handler as well.
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler(
                {
                    "message": message,
                    "exception": exc,
                    "transport": self,
                    "protocol": self._protocol,
                }
            )
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._stop_writing()
        if not self._closing:
            self._closing = True
            self._stop_reading()
        self._conn_lost += 1
        self._send_now = self._data_path.send_now = False
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        # A write from now on is counted and dropped, not sent on a closed socket.
        self._conn_lost = self._conn_lost or 1
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            self._sock.close()  # type: ignore[union-attr]
            self._sock = None
            self._protocol = None
            self._loop = None
            # The data path refers back to the transport: no cycle outlives the connection.
            # (A write from now on is the class's, which counts and drops it.)
            path = self._data_path
            if self.__dict__.get("write") == path.write:
                del self.write
            path.transport = path.sock = path.protocol = None
            if self._server is not None:
                self._detach_from_server()
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))

    def _detach_from_server(self) -> None:
        server, self._server = self._server, None
        if _SERVER_TRACKS_TRANSPORTS:
            server._detach(self)
        else:
            server._detach()


def make_socket_transport(
    loop: Any,
    sock: socket.socket,
    protocol: asyncio.BaseProtocol,
    waiter: asyncio.Future[None] | None = None,
    *,
    extra: dict[str, Any] | None = None,
    server: Any = None,
) -> SocketTransport:
    """``loop._make_socket_transport``: a treadle transport for a connected stream socket."""
    loop._ensure_fd_no_transport(sock)
    return SocketTransport(loop, sock, protocol, waiter, extra, server)


def make_ssl_transport(
    loop: Any,
    rawsock: socket.socket,
    protocol: asyncio.BaseProtocol,
    sslcontext: Any,
    waiter: asyncio.Future[None] | None = None,
    *,
    server_side: bool = False,
    server_hostname: str | None = None,
    extra: dict[str, Any] | None = None,
    server: Any = None,
    ssl_handshake_timeout: float | None = _asyncio_constants.SSL_HANDSHAKE_TIMEOUT,
    ssl_shutdown_timeout: float | None = _asyncio_constants.SSL_SHUTDOWN_TIMEOUT,
) -> asyncio.Transport:
    """``loop._make_ssl_transport``: asyncio's ``SSLProtocol`` over a treadle transport."""
    loop._ensure_fd_no_transport(rawsock)
    ssl_protocol = _asyncio_sslproto.SSLProtocol(
        loop,
        protocol,
        sslcontext,
        waiter,
        server_side,
        server_hostname,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    SocketTransport(loop, rawsock, ssl_protocol, extra=extra, server=server)
    return ssl_protocol._app_transport  # type: ignore[no-any-return]
