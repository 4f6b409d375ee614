"""The per-process Unix socket that ``treadle ps`` and ``treadle pstree`` ask for a snapshot.

Started by the first loop that runs with ``TREADLE_INTROSPECT=1``, never otherwise. A
daemon thread, blocked in ``accept()`` until someone connects (so it costs nothing
while nobody asks), answers each connection with one JSON snapshot of every running
loop, taken on the loop's own thread through ``call_soon_threadsafe``; a loop that does
not answer within the client's timeout is reported as blocked, with the callback it is
stuck in, so ``treadle ps`` never hangs on a stuck program.

Only the process's own user gets in, three times over: the socket lives in a directory
of mode 0700 owned by that user (``$XDG_RUNTIME_DIR/treadle``, else
``/tmp/treadle-$UID``; a directory that is anyone else's, or open to others, is
refused), the socket itself is mode 0600, and each connection's ``SO_PEERCRED`` uid
must be the process's. Introspection layer: imports the standard library and ``runtime``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
import stat
import struct
import sys
import threading
from pathlib import Path

from treadle.introspect import runtime

__all__ = ["ensure_serving", "peer_uid", "socket_dir", "socket_path"]

# The most a request may be: one small JSON line.
_MAX_REQUEST = 4096
# How long a client may take to send its request.
_REQUEST_TIMEOUT = 5.0
# The longest a client may ask the server to wait for a loop.
_MAX_LOOP_TIMEOUT = 60.0


def socket_dir() -> Path:
    """The directory the current user's treadle programs put their sockets in."""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir and os.path.isabs(runtime_dir):
        return Path(runtime_dir) / "treadle"
    return Path(f"/tmp/treadle-{os.getuid()}")


def socket_path(pid: int) -> Path:
    """Where the program with process id ``pid`` (of the current user) listens."""
    return socket_dir() / f"{pid}.sock"


def make_private_dir(path: Path) -> None:
    """Create ``path`` with mode 0700, or check that it is ours and closed to others.

    Raises PermissionError, saying what is wrong, for a directory that is a symbolic
    link, belongs to another user, or lets others in.
    """
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{path} is not a directory (a symbolic link?); remove it")
    if info.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {info.st_uid}, not to us ({os.getuid()})")
    if info.st_mode & 0o077:
        raise PermissionError(
            f"{path} has mode {stat.S_IMODE(info.st_mode):o}: others could reach the "
            "socket; make it 0700 (chmod 700) or remove it"
        )


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (``SO_PEERCRED``)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class _Server:
    """The listening socket and the thread answering on it."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        directory = socket_dir()
        make_private_dir(directory)
        self.path = socket_path(self.pid)
        # A file left by a dead process that had our pid.
        if self.path.is_socket():
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            self.sock.listen(8)
        except BaseException:
            self.sock.close()
            raise
        self.thread = threading.Thread(target=self._serve, name="treadle-introspect", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop listening and remove the socket file (in the process that made it)."""
        self.sock.close()
        if os.getpid() == self.pid:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed: at exit, or after fork in the child
                return
            # OSError: the client went away; the next one may come.
            with conn, contextlib.suppress(OSError):
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        if peer_uid(conn) != os.getuid():
            conn.sendall(b'{"error": "refused: not the same user"}\n')
            # Closing with the client's request unread would reset the connection and
            # could lose the refusal before the client reads it: end our side, then
            # discard (never parse) what it sent until it hangs up, within bounds.
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(_REQUEST_TIMEOUT)
            discarded = 0
            while discarded < _MAX_REQUEST and (chunk := conn.recv(_MAX_REQUEST)):
                discarded += len(chunk)
            return
        conn.settimeout(_REQUEST_TIMEOUT)
        request = b""
        while not request.endswith(b"\n") and len(request) < _MAX_REQUEST:
            chunk = conn.recv(_MAX_REQUEST)
            if not chunk:
                break
            request += chunk
        try:
            asked = json.loads(request or b"{}")
            timeout = min(float(asked.get("timeout", 1.0)), _MAX_LOOP_TIMEOUT)
        except (ValueError, AttributeError, TypeError):
            conn.sendall(b'{"error": "bad request: send one JSON object and a newline"}\n')
            return
        snapshot = runtime.process_snapshot(timeout)
        conn.sendall(json.dumps(snapshot).encode() + b"\n")


_server: _Server | None = None
# True once listening failed: said once, not tried again by every loop that starts.
_failed = False
_lock = threading.Lock()


def ensure_serving() -> None:
    """Start this process's server, once (a process forked from one starts its own)."""
    global _server, _failed
    with _lock:
        if _server is not None or _failed:
            return
        try:
            _server = _Server()
        except OSError as exc:
            # Introspection must never stop the program it looks at: say why, go on.
            print(f"treadle: TREADLE_INTROSPECT: cannot listen: {exc}", file=sys.stderr)
            _failed = True
            return
        atexit.register(_stop)


def _stop() -> None:
    global _server
    if _server is not None:
        _server.close()
        _server = None


def _forget_after_fork() -> None:
    """In a forked child: the parent's socket is not ours to answer on or remove."""
    global _server, _lock, _failed
    _lock = threading.Lock()
    _failed = False
    if _server is not None:
        _server.sock.close()
        _server = None


os.register_at_fork(after_in_child=_forget_after_fork)
