"""The per-message read of treadle.aio's stream transport, in a class with no asyncio base.

``SocketTransport`` (``treadle.aio.transport``) derives from asyncio's flow-control
transport, which a class compiled by mypyc cannot inherit, so the transport stays
interpreted. Its readiness callback is a method of a ``SocketReader`` instead: a small
class holding what a read needs (the descriptor, the socket for its closed check, the
protocol), which the compiled build compiles (docs/compiled.md), so that there the loop
calls a native method with its fields in a C struct. In the pure build it is a Python
class with slots, read as fast as the transport's own. Failures and end of file go back
to the transport, which owns the connection's state.

The asyncio bridge layer's first module (docs/map.md): imports nothing of treadle's, nor asyncio.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import Any, Final

__all__ = ["SocketReader", "closed_under_us"]

# The most one data_received read asks for, as asyncio's transport.
_MAX_READ: Final = 256 * 1024
# A read fails in one of these steps; each is the message the failure is reported with.
GET_BUFFER_FAILED: Final = "Fatal error: protocol.get_buffer() call failed."
RECV_FAILED: Final = "Fatal read error on socket transport"
DATA_RECEIVED_FAILED: Final = "Fatal error: protocol.data_received() call failed."
BUFFER_UPDATED_FAILED: Final = "Fatal error: protocol.buffer_updated() call failed."
# Reads go to the descriptor: os.read/os.readv parse their arguments much faster than
# socket.recv/recv_into.
_read: Final = os.read
_readv: Final = os.readv


def closed_under_us() -> OSError:
    """The error of a read or write on a socket object someone closed under the transport.

    (A ``sock=`` argument kept and closed.) It fails as ``socket.recv``/``send`` on it
    would, and the transport never touches the descriptor, which may have been reused.
    """
    return OSError(errno.EBADF, "Bad file descriptor: the transport's socket was closed")


class SocketReader:
    """Reads a stream socket for its transport: ``read_ready`` feeds ``data_received``,
    ``read_ready_buffered`` a ``BufferedProtocol``'s buffer.

    The transport makes one, puts one of the two bound methods in treadle's readers
    table while it reads, and keeps ``protocol`` in step with its own. The read calls
    back the transport's ``_fatal_error(exc, message)`` when a step fails and its
    ``_eof_from_peer()`` at end of file. Neither routine checks whether the connection
    is lost: the transport stops reading before that, and a reader removed
    mid-iteration is cancelled, so the loop skips it.
    """

    __slots__ = ("fd", "protocol", "sock", "transport")

    def __init__(self, transport: Any, sock: socket.socket, fd: int) -> None:
        self.transport: Any = transport  # None once the connection is lost
        self.sock: Any = sock  # for its closed check; None once the connection is lost
        self.fd = fd
        self.protocol: Any = None  # the transport's, set by its set_protocol

    def __repr__(self) -> str:
        return f"<SocketReader of {self.transport!r}>"

    # Each step has its own handler (a try costs nothing until it catches) and its own
    # message. BlockingIOError and InterruptedError mean woken for nothing: the data
    # went to an earlier read.

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
