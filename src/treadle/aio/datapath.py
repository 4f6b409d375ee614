"""The data path of treadle.aio's stream transport: its per-message read and write.

``SocketTransport`` (``treadle.aio.transport``) derives from asyncio's flow-control
transport, which a class compiled by mypyc cannot inherit, so the transport stays
interpreted. What it does for every message is here instead, in ``DataPath``, a small
class with no asyncio base that the compiled build compiles (docs/compiled.md): the
readiness callback that reads the socket, and ``write``'s path when the socket takes
the data at once. The class holds what those need (the descriptor, the socket for its
closed check, the protocol, whether a write may send now); everything else (buffering,
flow control, pausing, closing, failures, end of file) stays the transport's, which the
data path calls back.

Pure, the transport's own ``write`` serves (a method of the transport's class, found
the interpreter's fast way) and this one is tested alongside it; compiled, the
transport's ``write`` is this one, a native method. The read routine is this one in
both builds.

The asyncio bridge layer's first module (docs/map.md): imports nothing of treadle's, nor
asyncio.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Final

__all__ = ["DataPath", "closed_under_us"]

# The most one data_received read asks for, as asyncio's transport.
_MAX_READ: Final = 256 * 1024
# A read or write fails in one of these steps; each is the message it is reported with.
GET_BUFFER_FAILED: Final = "Fatal error: protocol.get_buffer() call failed."
RECV_FAILED: Final = "Fatal read error on socket transport"
DATA_RECEIVED_FAILED: Final = "Fatal error: protocol.data_received() call failed."
BUFFER_UPDATED_FAILED: Final = "Fatal error: protocol.buffer_updated() call failed."
WRITE_FAILED: Final = "Fatal write error on socket transport"
# Reads and writes go to the descriptor: os.read/os.readv/os.write parse their arguments
# much faster than socket.recv/recv_into/send (a tenth of a round trip's Python).
_read: Final = os.read
_readv: Final = os.readv
_write: Final = os.write


def closed_under_us() -> OSError:
    """The error of a read or write on a socket object someone closed under the transport.

    (A ``sock=`` argument kept and closed.) It fails as ``socket.recv``/``send`` on it
    would, and the transport never touches the descriptor, which may have been reused.
    """
    return OSError(errno.EBADF, "Bad file descriptor: the transport's socket was closed")


class DataPath:
    """A stream socket's per-message work for its transport.

    ``read_ready`` feeds ``data_received``, ``read_ready_buffered`` a
    ``BufferedProtocol``'s buffer: the transport puts one of the two bound methods in
    treadle's readers table while it reads. ``write`` sends what the socket takes at
    once and hands the rest to the transport. The transport keeps ``protocol`` and
    ``send_now`` in step with its own, and calls back: ``_fatal_error(exc, message)``
    when a step fails, ``_eof_from_peer()`` at end of file, ``_buffer_rest(data, sent)``
    for what the socket did not take, ``_write_when_busy(data)`` while it may not send.
    """

    __slots__ = ("fd", "protocol", "send_now", "sock", "transport")

    # Typed Any, not socket.socket and int: compiled code would check the types, and
    # asyncio's tests make transports on mock sockets (whose fileno() is a mock too).
    def __init__(self, transport: Any, sock: Any, fd: Any) -> None:
        self.transport: Any = transport  # None once the connection is lost
        self.sock: Any = sock  # for its closed check; None once the connection is lost
        self.fd: Any = fd
        self.protocol: Any = None  # the transport's, set by its set_protocol
        # Invariant: the transport's _send_now (write() may send at once: nothing
        # buffered, no write_eof(), no sendfile running, connection not lost).
        self.send_now = True

    def __repr__(self) -> str:
        return f"<DataPath of {self.transport!r}>"

    # The read routines. Each step has its own handler (a try costs nothing until it
    # catches) and its own message. BlockingIOError and InterruptedError mean woken for
    # nothing: the data went to an earlier read. Neither routine checks whether the
    # connection is lost: the transport stops reading before that, and a reader removed
    # mid-iteration is cancelled, so the loop skips it.

    def read_ready(self) -> None:
        """The socket is readable: read up to 256 KiB for ``protocol.data_received``."""
        try:
            if self.sock._closed:
                raise closed_under_us()
            data = _read(self.fd, _MAX_READ)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.transport._fatal_error(exc, RECV_FAILED)
            return
        if not data:
            self.transport._eof_from_peer()
            return
        try:
            self.protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.transport._fatal_error(exc, DATA_RECEIVED_FAILED)

    def read_ready_buffered(self) -> None:
        """The socket is readable: read into ``protocol.get_buffer()``, then report it."""
        try:
            buffer = self.protocol.get_buffer(-1)
            if not len(buffer):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.transport._fatal_error(exc, GET_BUFFER_FAILED)
            return
        try:
            if self.sock._closed:
                raise closed_under_us()
            # readv on the descriptor: recv_into's argument parsing costs more than it.
            nbytes = _readv(self.fd, [buffer])
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.transport._fatal_error(exc, RECV_FAILED)
            return
        if not nbytes:
            self.transport._eof_from_peer()
            return
        try:
            self.protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.transport._fatal_error(exc, BUFFER_UPDATED_FAILED)

    # The same code as SocketTransport.write, on this object's fields: keep the two in
    # step (tests/test_aio_transport.py runs every test with each).
    def write(self, data: Any) -> None:
        """Send ``data``: at once as far as the socket takes it, the rest buffered.

        Never blocks. The protocol's ``pause_writing()`` is called when the buffer
        passes the high-water mark, ``resume_writing()`` when it drains to the low one.
        """
        if type(data) is not bytes:
            data = self.transport._as_bytes_like(data)
        if not self.send_now:
            self.transport._write_when_busy(data)
            return
        if not data:
            return
        try:
            if self.sock._closed:
                raise closed_under_us()
            sent = _write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.transport._fatal_error(exc, WRITE_FAILED)
            return
        if sent != len(data):
            self.transport._buffer_rest(data, sent)
