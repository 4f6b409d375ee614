"""TLS over a stream connection: the standard library's ``ssl_module.SSLObject`` over memory BIOs.

``TLSConnection`` is the plain stream connection with encryption slotted in at two
places: ``write`` encrypts into the outgoing BIO before queueing ciphertext on the
socket, and ``recv`` feeds received ciphertext to the incoming BIO and returns what
decrypts. The handshake has a timeout; ``close`` sends close_notify and waits for the
peer's, up to a shutdown timeout after which the socket is simply closed.
I/O layer: imports ``streams``, ``sockets`` and the layers above.
"""

from __future__ import annotations

import socket
import ssl as ssl_module

from treadle.core.handles import TimerHandle
from treadle.loop import EventLoop
from treadle.sockets import Buffer, wait_readable
from treadle.streams import StreamReader, StreamWriter, _Connection
from treadle.timeouts import timeout

__all__ = ["TLSConnection", "start_tls"]

HANDSHAKE_TIMEOUT = 60.0
SHUTDOWN_TIMEOUT = 30.0


class TLSConnection(_Connection):
    """A stream connection that speaks TLS."""

    supports_eof = False
    may_hold_unread = True

    __slots__ = (
        "_shutdown_timer",
        "incoming",
        "outgoing",
        "peer_closed",
        "shutdown_timeout",
        "sslobj",
    )

    def __init__(
        self,
        sock: socket.socket,
        loop: EventLoop,
        limit: int,
        sslobj: ssl_module.SSLObject,
        incoming: ssl_module.MemoryBIO,
        outgoing: ssl_module.MemoryBIO,
        shutdown_timeout: float,
    ) -> None:
        super().__init__(sock, loop, limit)
        self.sslobj = sslobj
        self.incoming = incoming
        self.outgoing = outgoing
        self.shutdown_timeout = shutdown_timeout
        # Invariant: True once the peer's close_notify (or EOF) has been seen.
        self.peer_closed = False
        self._shutdown_timer: TimerHandle | None = None

    def fill_extra_info(self) -> None:
        self.extra.update(
            ssl_object=self.sslobj,
            peercert=self.sslobj.getpeercert(),
            cipher=self.sslobj.cipher(),
            compression=self.sslobj.compression(),
            sslcontext=self.sslobj.context,
        )

    def holds_unread(self) -> bool:
        # Decrypted bytes in the TLS engine, or ciphertext not yet decrypted: both are
        # off the socket, so no readiness event will announce them.
        return self.sslobj.pending() > 0 or self.incoming.pending > 0

    def flush_outgoing(self) -> None:
        """Queue whatever ciphertext the TLS engine produced on the socket."""
        if self.outgoing.pending:
            self.queue(self.outgoing.read())

    def recv(self, nbytes: int) -> bytes:
        """Decrypted bytes; ``b''`` at close_notify or EOF; BlockingIOError if none ready."""
        while True:
            try:
                return self.sslobj.read(nbytes)
            except ssl_module.SSLWantReadError:
                pass
            except (ssl_module.SSLZeroReturnError, ssl_module.SSLEOFError):
                # The peer closed: with close_notify (zero return) or without it (a
                # "ragged EOF", which the standard library also treats as EOF).
                self.peer_closed = True
                return b""
            finally:
                # Reading can produce records to send (session tickets, key updates).
                if not self.closed.done():
                    self.flush_outgoing()
            # The engine wants ciphertext. Received outside the except block, so that a
            # socket error (or the BlockingIOError that means "wait") carries no
            # SSLWantReadError as its context.
            ciphertext = self.sock.recv(max(nbytes, 65536))
            if ciphertext:
                self.incoming.write(ciphertext)
            else:
                self.incoming.write_eof()

    def write(self, data: Buffer) -> None:
        self.check_writable()
        if not data:
            return
        try:
            self.sslobj.write(data)
        except ssl_module.SSLError as exc:
            self.write_failed(exc)
            raise
        self.flush_outgoing()

    def close(self) -> None:
        """Send close_notify, then close once the peer answers or the timeout passes."""
        if self.closing:
            return
        self.closing = True
        self.stop_reading()
        self.eof = True
        self.wake_reader()
        if self.write_error is not None or self.peer_closed:
            self._unwrap_quietly()
            self.flush_outgoing()
            if not self.wbuf:
                self.finish_close()
            return
        if self._unwrap_quietly():
            self.peer_closed = True
        self.flush_outgoing()
        if self.closed.done():
            return  # sending close_notify failed (the peer is gone) and closed the socket
        if not self.peer_closed:
            self.loop.add_reader(self.fd, self._on_shutdown_readable)
            self._shutdown_timer = self.loop.call_later(self.shutdown_timeout, self.abort)
        if not self.wbuf and self.peer_closed:
            self.finish_close()

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
        """During close: read until the peer's close_notify (or EOF) arrives."""
        try:
            ciphertext = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            ciphertext = b""
        if ciphertext:
            self.incoming.write(ciphertext)
            if not self._unwrap_quietly():
                return
        self.peer_closed = True
        self.loop.remove_reader(self.fd)
        if not self.wbuf:
            self.finish_close()

    def buffer_flushed(self) -> None:
        if self.closing and not self.peer_closed:
            return  # still waiting for the peer's close_notify
        super().buffer_flushed()

    def finish_close(self) -> None:
        if self._shutdown_timer is not None:
            self._shutdown_timer.cancel()
            self._shutdown_timer = None
        if not self.reading and self.sock.fileno() >= 0:
            # The close_notify reader, if it is still registered.
            self.loop.remove_reader(self.fd)
        super().finish_close()


async def start_tls(
    sock: socket.socket,
    loop: EventLoop,
    *,
    limit: int,
    ssl: ssl_module.SSLContext | bool,
    server_side: bool,
    server_hostname: str | None,
    handshake_timeout: float | None,
    shutdown_timeout: float | None,
) -> tuple[StreamReader, StreamWriter]:
    """Run the TLS handshake on a connected non-blocking socket; streams over it."""
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
    connection = TLSConnection(
        sock,
        loop,
        limit,
        sslobj,
        incoming,
        outgoing,
        SHUTDOWN_TIMEOUT if shutdown_timeout is None else shutdown_timeout,
    )
    try:
        async with timeout(HANDSHAKE_TIMEOUT if handshake_timeout is None else handshake_timeout):
            await _handshake(connection)
    except TimeoutError:
        connection.abort()
        raise TimeoutError(
            f"TLS handshake with {connection.extra.get('peername')} timed out"
        ) from None
    except BaseException:
        connection.abort()
        raise
    connection.fill_extra_info()
    reader = StreamReader(connection)
    return reader, StreamWriter(connection, reader)


def _context_for(context: ssl_module.SSLContext | bool, server_side: bool) -> ssl_module.SSLContext:
    if isinstance(context, ssl_module.SSLContext):
        return context
    if server_side:
        raise TypeError("a TLS server needs an ssl_module.SSLContext with its certificate loaded")
    return ssl_module.create_default_context()


async def _handshake(connection: TLSConnection) -> None:
    sslobj = connection.sslobj
    sock = connection.sock
    while True:
        try:
            sslobj.do_handshake()
            break
        except ssl_module.SSLWantReadError:
            pass
        # Nothing below runs inside the except block: an error raised here (or a
        # cancellation while waiting) must not carry an SSLWantReadError as context.
        connection.flush_outgoing()
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            data = None
        if data is None:
            await wait_readable(sock)
            continue
        if not data:
            raise ConnectionResetError(
                f"{connection.extra.get('peername')} closed the connection during the "
                "TLS handshake"
            )
        connection.incoming.write(data)
    connection.flush_outgoing()
    if connection.write_error is not None:
        raise connection.write_error
