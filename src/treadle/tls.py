"""TLS under stream connections, and the functions that open streams with or without it.

``TLSLayer`` is the standard library's ``SSLObject`` over two memory BIOs, plugged into
a ``streams.Connection`` as its layer: the receive hook decrypts (pulling ciphertext
from the socket whenever the engine asks for more), the transmit hook encrypts and
queues the ciphertext on the connection's send buffer. The handshake has a timeout;
a close goes through the close_notify exchange (``_CloseState``), up to a shutdown
timeout after which the socket is simply closed.

``open_connection``, ``open_unix_connection`` and ``connect_stream`` live here, not in
``streams``, because TLS is one of their options and ``streams`` never imports this
module. I/O layer: imports ``streams``, ``sockets`` and the layers above.
"""

from __future__ import annotations

import enum
import socket
import ssl as ssl_module
from dataclasses import dataclass, field

from treadle.core.handles import TimerHandle
from treadle.sockets import Buffer, wait_readable
from treadle.streams import (
    DEFAULT_LIMIT,
    Connection,
    StreamReader,
    StreamWriter,
    check_limit,
    connect_tcp,
    connect_unix,
    connection_over,
    stream_pair,
)
from treadle.timeouts import timeout

__all__ = [
    "TLSLayer",
    "connect_stream",
    "open_connection",
    "open_unix_connection",
    "start_tls",
]

HANDSHAKE_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0
# The most ciphertext one recv() asks for.
_CIPHERTEXT_CHUNK = 65536


class _CloseState(enum.Enum):
    """Where a TLS connection stands in the close_notify exchange.

    Each side ends a TLS session with a close_notify alert, so that the other can tell
    a stream that finished from one cut short by an attacker or a crash. The states:

    * ``OPEN``: no close_notify either way.
    * ``PEER_CLOSED``: the peer's close_notify (or a bare EOF, which the standard
      library also reads as the end) was read; the reader sees EOF. On ``close()`` we
      answer with ours and have nothing left to wait for: ``DONE``.
    * ``AWAITING_PEER``: ``close()`` sent ours first. A reader of our own reads on,
      feeding ciphertext to the engine, until the peer's close_notify or EOF arrives
      (``DONE``); if it does not come within the shutdown timeout, the connection is
      aborted.
    * ``DONE``: the exchange is over, or the session is broken (a failed write, an SSL
      error) and there is nobody to exchange with. The socket closes once the
      ciphertext still buffered (our close_notify with it) is flushed.
    """

    OPEN = enum.auto()
    PEER_CLOSED = enum.auto()
    AWAITING_PEER = enum.auto()
    DONE = enum.auto()


@dataclass(slots=True, eq=False, repr=False)
class TLSLayer:
    """TLS under a stream connection: its receive and transmit hooks, and its close."""

    connection: Connection
    sslobj: ssl_module.SSLObject
    # Ciphertext received and not yet decrypted; ciphertext made and not yet queued.
    incoming: ssl_module.MemoryBIO
    outgoing: ssl_module.MemoryBIO
    shutdown_timeout: float
    _close_state: _CloseState = field(default=_CloseState.OPEN, init=False)
    # Invariant: set exactly while the state is AWAITING_PEER (with its reader).
    _shutdown_timer: TimerHandle | None = field(default=None, init=False)

    def session_info(self) -> dict[str, object]:
        """What ``get_extra_info`` adds over TLS, once the handshake is done."""
        return {
            "ssl_object": self.sslobj,
            "peercert": self.sslobj.getpeercert(),
            "cipher": self.sslobj.cipher(),
            "compression": self.sslobj.compression(),
            "sslcontext": self.sslobj.context,
        }

    # --- the hooks ----------------------------------------------------------------------

    def receive(self, nbytes: int) -> bytes:
        """Decrypted bytes; ``b''`` at close_notify or EOF; BlockingIOError if none ready."""
        while True:
            try:
                return self.sslobj.read(nbytes)
            except ssl_module.SSLWantReadError:
                pass
            except (ssl_module.SSLZeroReturnError, ssl_module.SSLEOFError):
                # The peer closed: with close_notify (zero return) or without it (a
                # "ragged EOF", which the standard library also treats as EOF).
                if self._close_state is _CloseState.OPEN:
                    self._close_state = _CloseState.PEER_CLOSED
                return b""
            finally:
                # Reading can produce records to send (session tickets, key updates).
                if not self.connection.closed.done():
                    self.flush()
            # The engine wants ciphertext. Received outside the except block, so that a
            # socket error (or the BlockingIOError that means "wait") carries no
            # SSLWantReadError as its context.
            self.receive_ciphertext(max(nbytes, _CIPHERTEXT_CHUNK))

    def transmit(self, data: Buffer) -> None:
        """Encrypt ``data`` and queue the ciphertext on the connection."""
        if not data:
            return
        try:
            self.sslobj.write(data)
        except ssl_module.SSLError as exc:
            self.connection.write_failed(exc)
            raise
        self.flush()

    def holds_unread(self) -> bool:
        """Whether decrypted bytes, or ciphertext not yet decrypted, wait in the engine.

        A recv() takes whatever the socket has, often more than one record; the engine
        decrypts one record per read. What is left has left the socket, so the selector
        will not report it: the reader must ask the engine before waiting.
        """
        return self.sslobj.pending() > 0 or self.incoming.pending > 0

    # --- ciphertext ---------------------------------------------------------------------

    def receive_ciphertext(self, nbytes: int) -> bool:
        """Feed what the socket has to the engine; False at EOF; BlockingIOError if nothing.

        The one place the socket is read over TLS: the receive hook, the handshake and
        the close_notify reader all come here.
        """
        ciphertext = self.connection.sock.recv(nbytes)
        if ciphertext:
            self.incoming.write(ciphertext)
            return True
        self.incoming.write_eof()
        return False

    def flush(self) -> None:
        """Queue whatever ciphertext the engine produced on the connection."""
        if self.outgoing.pending:
            self.connection.queue(self.outgoing.read())

    # --- closing ------------------------------------------------------------------------

    def begin_close(self) -> None:
        """Send our close_notify; wait for the peer's unless it came or can't come."""
        connection = self.connection
        if connection.write_error is not None or self._close_state is _CloseState.PEER_CLOSED:
            self._unwrap_quietly()
            self._close_state = _CloseState.DONE
            self.flush()
            return
        if self._unwrap_quietly():
            self._close_state = _CloseState.DONE
        self.flush()
        if connection.closed.done():
            return  # sending close_notify failed (the peer is gone) and closed the socket
        if self._close_state is not _CloseState.DONE:
            self._close_state = _CloseState.AWAITING_PEER
            connection.loop.add_reader(connection.fd, self._on_shutdown_readable)
            self._shutdown_timer = connection.loop.call_later(
                self.shutdown_timeout, connection.abort
            )

    def closing_exchange_done(self) -> bool:
        """Whether the socket may close once flushed: not while awaiting the peer."""
        return self._close_state is not _CloseState.AWAITING_PEER

    def socket_closing(self) -> None:
        """The socket closes now: stop waiting for the peer's close_notify."""
        self._stop_awaiting_peer()

    def _stop_awaiting_peer(self) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
            self.connection.loop.remove_reader(self.connection.fd)

    def _unwrap_quietly(self) -> bool:
        """Start (or finish) the close_notify exchange; True when it is complete."""
        try:
            self.sslobj.unwrap()
        except ssl_module.SSLWantReadError:
            return False
        except (ssl_module.SSLError, OSError):
            return True  # the TLS session is broken; there is nothing left to exchange
        return True

    def _on_shutdown_readable(self) -> None:
        """While AWAITING_PEER: read until the peer's close_notify (or EOF) arrives."""
        try:
            arrived = self.receive_ciphertext(_CIPHERTEXT_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            arrived = False  # the peer is gone: nothing more will come
        if arrived and not self._unwrap_quietly():
            return
        self._stop_awaiting_peer()
        self._close_state = _CloseState.DONE
        self.connection.close_if_done()

    # --- the handshake ------------------------------------------------------------------

    async def handshake(self) -> None:
        """Run the handshake to its end, receiving ciphertext as the engine asks."""
        sslobj = self.sslobj
        while True:
            try:
                sslobj.do_handshake()
                break
            except ssl_module.SSLWantReadError:
                pass
            # Nothing below runs inside the except block: an error raised here (or a
            # cancellation while waiting) must not carry an SSLWantReadError as context.
            self.flush()
            try:
                arrived: bool | None = self.receive_ciphertext(_CIPHERTEXT_CHUNK)
            except (BlockingIOError, InterruptedError):
                arrived = None
            if arrived is None:
                await wait_readable(self.connection.sock)
            elif not arrived:
                raise ConnectionResetError(
                    f"{self.connection.extra.get('peername')} closed the connection during "
                    "the TLS handshake"
                )
        self.flush()
        if self.connection.write_error is not None:
            raise self.connection.write_error


async def start_tls(
    connection: Connection,
    *,
    ssl: ssl_module.SSLContext | bool,
    server_side: bool,
    server_hostname: str | None,
    handshake_timeout: float | None,
    shutdown_timeout: float | None,
) -> None:
    """Put TLS under a fresh connection and run the handshake (aborting it on failure)."""
    context = _context_for(ssl, server_side)
    if not server_side and context.check_hostname and not server_hostname:
        raise ValueError(
            "TLS needs server_hostname to check the certificate against; pass it, or "
            "use a context with check_hostname=False"
        )
    incoming = ssl_module.MemoryBIO()
    outgoing = ssl_module.MemoryBIO()
    sslobj = context.wrap_bio(
        incoming,
        outgoing,
        server_side=server_side,
        server_hostname=None if server_side else server_hostname,
    )
    layer = TLSLayer(
        connection,
        sslobj,
        incoming,
        outgoing,
        SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout,
    )
    connection.insert_layer(layer)
    try:
        async with timeout(HANDSHAKE_TIMEOUT if handshake_timeout is None else handshake_timeout):
            await layer.handshake()
    except TimeoutError:
        connection.abort()
        raise TimeoutError(
            f"TLS handshake with {connection.extra.get('peername')} timed out"
        ) from None
    except BaseException:
        connection.abort()
        raise
    connection.add_extra_info(**layer.session_info())


def _context_for(context: ssl_module.SSLContext | bool, server_side: bool) -> ssl_module.SSLContext:
    if isinstance(context, ssl_module.SSLContext):
        return context
    if server_side:
        raise TypeError("a TLS server needs an ssl_module.SSLContext with its certificate loaded")
    return ssl_module.create_default_context()


# --- opening streams --------------------------------------------------------------------


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
    connection = connection_over(sock, limit)
    if ssl:
        await start_tls(
            connection,
            ssl=ssl,
            server_side=server_side,
            server_hostname=server_hostname,
            handshake_timeout=ssl_handshake_timeout,
            shutdown_timeout=ssl_shutdown_timeout,
        )
    return stream_pair(connection)


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
    check_limit(limit)
    if sock is None:
        if host is None or port is None:
            raise ValueError("open_connection() needs host and port (or sock=)")
        sock = await connect_tcp(host, port, local_addr)
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


async def open_unix_connection(
    path: str,
    *,
    ssl: ssl_module.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> tuple[StreamReader, StreamWriter]:
    """Connect to the Unix socket at ``path``; ``(reader, writer)``."""
    check_limit(limit)
    sock = await connect_unix(path)
    try:
        return await connect_stream(sock, limit=limit, ssl=ssl, server_hostname=server_hostname)
    except BaseException:
        sock.close()
        raise
