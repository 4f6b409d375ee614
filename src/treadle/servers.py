"""Servers: listening sockets that run each connection in its own task.

``start_server`` binds, listens and accepts from a readiness callback (no task per
listening socket); each accepted connection gets a StreamReader/StreamWriter pair and
a task running the user's handler. A failing handler is logged with the peer's address
and the server goes on. When ``accept`` runs out of file descriptors the server logs it
once, pauses accepting, keeps serving its clients and retries later.
I/O layer: imports ``tls``, ``streams``, ``sockets`` and the layers above.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import ssl as ssl_module
import stat
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Self

from treadle.core.futures import Future
from treadle.core.tasks import Task
from treadle.errors import CancelledError
from treadle.loop import EventLoop, get_running_loop
from treadle.sockets import format_address, getaddrinfo
from treadle.streams import DEFAULT_LIMIT, StreamReader, StreamWriter
from treadle.tls import connect_stream

__all__ = ["Server", "start_server", "start_unix_server"]

logger = logging.getLogger("treadle")

ClientHandler = Callable[[StreamReader, StreamWriter], Awaitable[None] | None]

# Errors from accept() that mean "out of resources right now", not "this server is broken".
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# Errors from accept() about one connection that died before we took it.
_CONNECTION_GONE = (errno.ECONNABORTED, errno.EPROTO, errno.EPERM)


class Server:
    """Listening sockets plus the tasks serving their connections.

    ``close()`` stops accepting; ``wait_closed()`` waits for the connections to end;
    leaving ``async with server:`` does both, cancelling the connections still open.
    """

    def __init__(
        self,
        loop: EventLoop,
        sockets: list[socket.socket],
        handler: ClientHandler,
        *,
        limit: int,
        backlog: int,
        ssl: ssl_module.SSLContext | None,
        ssl_handshake_timeout: float | None,
        ssl_shutdown_timeout: float | None,
        accept_retry_delay: float = 1.0,
    ) -> None:
        self._loop = loop
        self._sockets = sockets
        self._handler = handler
        self._limit = limit
        self._backlog = backlog
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._accept_retry_delay = accept_retry_delay
        self._serving = False
        self._closed = False
        # One task per open connection.
        self._clients: set[Task[None]] = set()
        self._all_clients_done: Future[None] | None = None
        # Done when close() is called.
        self._closed_fut: Future[None] = loop.create_future()
        self._serve_forever_fut: Future[None] | None = None
        # True after an out-of-descriptors error was logged, until an accept succeeds.
        self._resource_error_logged = False

    def __repr__(self) -> str:
        addresses = ", ".join(format_address(s.getsockname()) for s in self._sockets)
        return f"<Server {addresses or 'closed'} clients={len(self._clients)}>"

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty once closed)."""
        return tuple(self._sockets)

    def get_loop(self) -> EventLoop:
        """The loop this server runs on."""
        return self._loop

    def is_serving(self) -> bool:
        """Whether the server is accepting connections."""
        return self._serving

    async def start_serving(self) -> None:
        """Start accepting connections (``start_server`` does this unless told not to)."""
        self._start()

    def _start(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._serving:
            return
        self._serving = True
        for sock in self._sockets:
            self._loop.add_reader(sock, self._accept_ready, sock)

    def _accept_ready(self, listener: socket.socket) -> None:
        """A listening socket is readable: accept what is waiting, up to the backlog."""
        for _ in range(self._backlog):
            try:
                conn, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _CONNECTION_GONE:
                    continue
                if exc.errno in _RESOURCE_ERRORS:
                    self._pause_accepting(exc)
                    return
                raise
            self._resource_error_logged = False
            task = self._loop.create_task(self._serve_client(conn, address))
            self._clients.add(task)
            task.add_done_callback(self._client_done)

    def _pause_accepting(self, exc: OSError) -> None:
        """Out of descriptors (or memory): stop accepting for a while; clients go on."""
        if not self._resource_error_logged:
            self._resource_error_logged = True
            logger.error(
                "%r: accept() failed (%s); pausing new connections for %.1f s, "
                "existing connections keep being served",
                self,
                exc.strerror,
                self._accept_retry_delay,
            )
        for sock in self._sockets:
            self._loop.remove_reader(sock)
        self._loop.call_later(self._accept_retry_delay, self._resume_accepting)

    def _resume_accepting(self) -> None:
        if self._serving and not self._closed:
            for sock in self._sockets:
                self._loop.add_reader(sock, self._accept_ready, sock)

    async def _serve_client(self, conn: socket.socket, address: Any) -> None:
        try:
            reader, writer = await connect_stream(
                conn,
                limit=self._limit,
                ssl=self._ssl,
                server_side=True,
                ssl_handshake_timeout=self._ssl_handshake_timeout,
                ssl_shutdown_timeout=self._ssl_shutdown_timeout,
            )
        except (OSError, ssl_module.SSLError, TimeoutError) as exc:
            conn.close()
            logger.warning("connection from %s failed to start: %s", format_address(address), exc)
            return
        except BaseException:
            conn.close()
            raise
        try:
            result = self._handler(reader, writer)
            if result is not None:
                await result
            # The connection is this server's until what the handler wrote is flushed:
            # wait_closed() waits for that, and close_clients() cuts it short.
            writer.close()
            await writer.wait_closed()
        except CancelledError:
            writer.abort()
            raise
        except Exception as exc:
            self._loop.call_exception_handler(
                {
                    "message": f"unhandled exception in the handler for client "
                    f"{format_address(address)}",
                    "exception": exc,
                    "peername": address,
                }
            )
            writer.abort()

    def _client_done(self, task: Future[None]) -> None:
        self._clients.discard(task)
        done = self._all_clients_done
        if not self._clients and done is not None and not done.done():
            done.set_result(None)

    def close(self) -> None:
        """Stop listening and close the listening sockets; connections carry on."""
        if self._closed:
            return
        self._closed = True
        self._closed_fut.set_result(None)
        self._serving = False
        for sock in self._sockets:
            self._loop.remove_reader(sock)
            sock.close()
        self._sockets = []
        if self._serve_forever_fut is not None and not self._serve_forever_fut.done():
            self._serve_forever_fut.cancel()

    def close_clients(self) -> None:
        """Cancel the task serving each open connection (its stream is closed)."""
        for task in list(self._clients):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection has ended."""
        await self._closed_fut
        if not self._clients:
            return
        if self._all_clients_done is None or self._all_clients_done.done():
            self._all_clients_done = self._loop.create_future()
        await self._all_clients_done

    async def serve_forever(self) -> None:
        """Accept connections until cancelled; then close, ending the connections too."""
        if self._serve_forever_fut is not None:
            raise RuntimeError(f"serve_forever() is already running on {self!r}")
        self._start()
        self._serve_forever_fut = self._loop.create_future()
        try:
            await self._serve_forever_fut
        except CancelledError as exc:
            cancelled = exc
        finally:
            self._serve_forever_fut = None
        # Closed outside the except block: an error while waiting must not carry the
        # CancelledError as its context. (Only a cancellation ends the wait.)
        self.close()
        self.close_clients()
        await self.wait_closed()
        raise cancelled

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        self.close_clients()
        await self.wait_closed()


def _check_server_arguments(
    client_connected_cb: ClientHandler, backlog: int, ssl: ssl_module.SSLContext | None
) -> None:
    """The checks ``start_server`` and ``start_unix_server`` share, before any socket."""
    if not callable(client_connected_cb):
        raise TypeError(f"client_connected_cb must be callable, got {client_connected_cb!r}")
    if not isinstance(backlog, int) or isinstance(backlog, bool) or backlog < 1:
        raise ValueError(f"backlog must be a positive integer, got {backlog!r}")
    if ssl is not None and not isinstance(ssl, ssl_module.SSLContext):
        raise TypeError("a server's ssl= must be an ssl.SSLContext with a certificate loaded")


def _listen_on(sock: socket.socket, backlog: int) -> socket.socket:
    """``sock``, made non-blocking and listening (harmless if it listens already)."""
    sock.setblocking(False)
    sock.listen(backlog)
    return sock


async def start_server(
    client_connected_cb: ClientHandler,
    host: str | Iterable[str] | None = None,
    port: int | str | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    family: int = socket.AF_UNSPEC,
    flags: int = socket.AI_PASSIVE,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: ssl_module.SSLContext | None = None,
    reuse_address: bool | None = None,
    reuse_port: bool | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
) -> Server:
    """Listen on ``host:port`` (every interface if ``host`` is None) and serve each client.

    ``client_connected_cb(reader, writer)`` runs in its own task per connection (it may
    be a coroutine function or a plain function); the stream is closed when it returns.
    """
    _check_server_arguments(client_connected_cb, backlog, ssl)
    if sock is not None:
        if host is not None or port is not None:
            raise ValueError("give either host and port, or sock=, not both")
        sockets = [_listen_on(sock, backlog)]
    else:
        sockets = await _bind_tcp(host, port, family, flags, backlog, reuse_address, reuse_port)
    server = Server(
        get_running_loop(),
        sockets,
        client_connected_cb,
        limit=limit,
        backlog=backlog,
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
    )
    if start_serving:
        server._start()
    return server


async def _bind_tcp(
    host: str | Iterable[str] | None,
    port: int | str | None,
    family: int,
    flags: int,
    backlog: int,
    reuse_address: bool | None,
    reuse_port: bool | None,
) -> list[socket.socket]:
    hosts: list[str | None]
    if host is None or host == "":
        hosts = [None]
    elif isinstance(host, str):
        hosts = [host]
    else:
        hosts = list(host)
    infos = []
    for one_host in hosts:
        infos.extend(
            await getaddrinfo(one_host, port, family=family, type=socket.SOCK_STREAM, flags=flags)
        )
    seen = set()
    unique = []
    for info in infos:
        if info[4] not in seen:
            seen.add(info[4])
            unique.append(info)
    if reuse_address is None:
        reuse_address = os.name == "posix"
    sockets: list[socket.socket] = []
    try:
        for af, kind, proto, _, address in unique:
            sock = socket.socket(af, kind, proto)
            sockets.append(sock)
            if reuse_address:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                # Each family gets its own socket, so an IPv6 one must not claim IPv4 too.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno, f"could not bind to {format_address(address)}: {exc.strerror}"
                ) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def start_unix_server(
    client_connected_cb: ClientHandler,
    path: str | None = None,
    *,
    limit: int = DEFAULT_LIMIT,
    sock: socket.socket | None = None,
    backlog: int = 100,
    ssl: ssl_module.SSLContext | None = None,
    ssl_handshake_timeout: float | None = None,
    ssl_shutdown_timeout: float | None = None,
    start_serving: bool = True,
) -> Server:
    """Listen on the Unix socket ``path`` and serve each client, as ``start_server``."""
    _check_server_arguments(client_connected_cb, backlog, ssl)
    if sock is None:
        if path is None:
            raise ValueError("start_unix_server() needs a path (or sock=)")
        try:
            # A socket file left behind by an earlier server would make bind() fail.
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.remove(path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(backlog)
        except OSError as exc:
            sock.close()
            raise OSError(
                exc.errno, f"could not bind to Unix socket {path!r}: {exc.strerror}"
            ) from None
        except BaseException:
            sock.close()
            raise
    elif path is not None:
        raise ValueError("give either path or sock=, not both")
    # From here a Unix socket is served as any listening socket is.
    return await start_server(
        client_connected_cb,
        sock=sock,
        limit=limit,
        backlog=backlog,
        ssl=ssl,
        ssl_handshake_timeout=ssl_handshake_timeout,
        ssl_shutdown_timeout=ssl_shutdown_timeout,
        start_serving=start_serving,
    )
