"""The event loop programs use: the core's scheduling plus asyncio's services.

``EventLoop`` is ``treadle.core.loop.CoreLoop`` (the ready queue, timers, poller and
``_run_once``: read that first) with what asyncio's loop offers around it, each in a
section of its own: the wake-up socket that lets other threads schedule callbacks
(``call_soon_threadsafe``), debug mode and callback observers (introspection's
tracing), thread pools (``run_in_executor``, ``wrap_future``),
asynchronous-generator hooks, the task factory, the exception-handler API, a
``selectors`` fallback where epoll is missing, fork safety, and asyncio's socket
vocabulary (``sock_recv``, ``sock_connect``, ``getaddrinfo`` and the rest). None of them
resumes a coroutine: the socket methods wait through the core's suspend/resume seam.
Imports ``errors`` and the core.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import select
import selectors
import socket
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from contextvars import Context, copy_context
from typing import Any, Literal, Protocol, TypeAlias, TypeVar, cast

from treadle.asyncio_stand_in import (
    STAND_IN,
    restore_asyncio_running_loop,
    swap_asyncio_running_loop,
)
from treadle.core import running as _running_record
from treadle.core.clock import Clock, MonotonicClock
from treadle.core.futures import Future, isfuture
from treadle.core.handles import Handle
from treadle.core.loop import CoreLoop, Poller, _fileno
from treadle.core.tasks import (
    CoroutineLike,
    Task,
    Waiter,
    current_waiter,
    is_suspended,
    iscoroutine,
    resume,
    suspend,
)
from treadle.describe import describe_callback

__all__ = [
    "AddrInfo",
    "Buffer",
    "CallbackObserver",
    "EventLoop",
    "all_tasks",
    "chain_concurrent_future",
    "create_task",
    "current_task",
    "format_address",
    "get_running_loop",
    "wrap_future",
]

logger = logging.getLogger("treadle")

_T = TypeVar("_T")
_C = TypeVar("_C")
ExceptionHandler = Callable[["EventLoop", dict[str, Any]], object]
TaskFactory = Callable[..., "Task[Any]"]

_POLLIN, _POLLOUT = select.POLLIN, select.POLLOUT

# The running-loop record lives in the core (Future and Task need it); every loop treadle
# runs is an EventLoop, so the layers above get it typed as one.
get_running_loop = cast(Callable[[], "EventLoop"], _running_record.get_running_loop)
_get_running_loop = cast(Callable[[], "EventLoop | None"], _running_record._get_running_loop)


# Called with each loop as its run_forever() starts; what one returns, if not None, is
# called as it stops. ``treadle.introspect`` adds its one (a layer below, it cannot be
# called from here by name): it serves ``treadle ps``, dumps and traces when asked.
run_hooks: list[Callable[[EventLoop], Callable[[], object] | None]] = []


class CallbackObserver(Protocol):
    """Told about every callback the loop runs while it is the loop's ``_callback_observer``.

    ``treadle.trace`` is one. While one is set, ``EventLoop._run_ready_observed`` runs
    each iteration's ready callbacks.
    """

    def callbacks_began(self, count: int) -> None:
        """An iteration is about to run ``count`` ready callbacks (its poll is over)."""

    def callback_began(self, handle: Handle) -> None:
        """``handle``'s callback is about to run."""

    def callback_ended(self, handle: Handle) -> None:
        """``handle``'s callback has returned or raised."""

    def callbacks_ended(self) -> None:
        """The iteration's callbacks have all run."""


def create_task(
    coro: CoroutineLike[_T], *, name: str | None = None, context: Context | None = None
) -> Task[_T]:
    """Schedule ``coro`` as a Task on the running loop."""
    try:
        loop = get_running_loop()
    except RuntimeError:
        if iscoroutine(coro):
            coro.close()  # don't also warn that it was never awaited
        raise
    return loop.create_task(coro, name=name, context=context)


# current_task() and all_tasks() live here, not in the core, so that they stay Python in
# the compiled build: treadle.aio's loop answers them with asyncio's tasks, which compiled
# code would refuse as not treadle's (docs/compiled.md).


def current_task(loop: CoreLoop | None = None) -> Task[Any] | None:
    """The task running now on ``loop`` (the running loop by default), or None."""
    return (get_running_loop() if loop is None else loop)._current_task


def all_tasks(loop: CoreLoop | None = None) -> set[Task[Any]]:
    """Every task of ``loop`` (the running loop by default) that is not done yet."""
    loop = get_running_loop() if loop is None else loop
    return {task for task in loop._tasks if not task.done()}


class EventLoop(CoreLoop):
    """Runs callbacks: soon, at a deadline, or when a file descriptor is ready.

    The names, signatures and semantics follow asyncio's event loop.
    """

    _callback_observer: CallbackObserver | None

    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        if type(self._clock) is MonotonicClock:
            # The real clock's reading is time.monotonic itself: one Python call fewer
            # for each loop.time() and each iteration with a timer pending.
            self._clock_time = time.monotonic
        self.slow_callback_duration = 0.1
        self._exception_handler: ExceptionHandler | None = None
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._default_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_shutdown_called = False
        # A socket pair whose reading end is always watched: call_soon_threadsafe writes
        # a byte to wake a loop blocked in the poller. Registered with the poller
        # directly, not by add_reader, so that _registered holds only the descriptors
        # worth a poll while work is ready (_run_once's step 3).
        self._self_reader, self._self_writer = socket.socketpair()
        self._self_reader.setblocking(False)
        self._self_writer.setblocking(False)
        wake_fd = self._self_reader.fileno()
        self._readers[wake_fd] = Handle(self._drain_self_pipe, (), self, copy_context())
        self._poller.register(wake_fd, _POLLIN)
        _all_loops.add(self)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self._closed} debug={self._debug}>"
        )

    def run_forever(self) -> None:
        """Run callbacks until ``stop()`` is called."""
        self._check_can_run()
        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter, finalizer=self._asyncgen_finalizer
        )
        old_depth = sys.get_coroutine_origin_tracking_depth()
        if self._debug:
            sys.set_coroutine_origin_tracking_depth(10)
        asyncio_previous = swap_asyncio_running_loop(self._loop_for_asyncio())
        when_stopped: list[Callable[[], object]] = []
        try:
            for hook in run_hooks:
                stop = hook(self)
                if stop is not None:
                    when_stopped.append(stop)
            super().run_forever()
        finally:
            for stop in when_stopped:
                stop()
            restore_asyncio_running_loop(asyncio_previous)
            sys.set_coroutine_origin_tracking_depth(old_depth)
            sys.set_asyncgen_hooks(*old_hooks)

    def _loop_for_asyncio(self) -> object:
        """What asyncio sees as its running loop while this loop runs (asyncio_stand_in.py).

        The native loop offers a stand-in whose every use says to run the program with
        ``treadle.aio.run()``; ``treadle.aio``'s loop offers itself.
        """
        return STAND_IN

    def close(self) -> None:
        """Release the poller, the wake-up socket and the default executor.

        Pending callbacks are discarded. Closing a closed loop does nothing; closing a
        running one raises RuntimeError.
        """
        super().close()
        self._self_reader.close()
        self._self_writer.close()
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def run_until_complete(self, future: Awaitable[_T]) -> _T:
        """Run until ``future`` (a future, task, coroutine or generator) is done; its result."""
        self._check_can_run()
        is_future = getattr(future, "_asyncio_future_blocking", None) is not None
        if is_future:
            fut: Future[_T] = future  # type: ignore[assignment]
            if fut.get_loop() is not self:
                raise ValueError("the future belongs to a different loop than this one")
        else:
            fut = self.create_task(future)  # type: ignore[arg-type]
        fut.add_done_callback(self._stop_when_done)
        try:
            self.run_forever()
        except BaseException:
            if not is_future and fut.done() and not fut.cancelled():
                # The exception is raised here; don't also log it as never retrieved.
                fut.exception()
            raise
        finally:
            fut.remove_done_callback(self._stop_when_done)
        if not fut.done():
            raise RuntimeError("the loop stopped before the future completed")
        return fut.result()

    def _stop_when_done(self, fut: Future[Any]) -> None:
        if not fut.cancelled() and isinstance(fut.exception(), SystemExit | KeyboardInterrupt):
            # That exception already left run_forever (it is raised through the loop),
            # so there is nothing to stop; stopping now would stop the *next* run.
            return
        self.stop()

    @property
    def clock(self) -> Clock:
        """The clock this loop reads time from."""
        return self._clock

    def has_reader(self, fd: int | Any) -> bool:
        """Whether a reader callback is registered for ``fd``."""
        return _fileno(fd) in self._readers

    def has_writer(self, fd: int | Any) -> bool:
        """Whether a writer callback is registered for ``fd``."""
        return _fileno(fd) in self._writers

    # --- the task factory ---------------------------------------------------------------

    def set_task_factory(self, factory: TaskFactory | None) -> None:
        """Use ``factory(loop, coro, context=...)`` in ``create_task``; None restores Task."""
        self._task_factory = _callable_or_none(factory, "task factory")

    def get_task_factory(self) -> TaskFactory | None:
        """The factory set by ``set_task_factory``, or None."""
        return self._task_factory

    # --- threads: the wake-up socket and thread pools ------------------------------------

    def call_soon_threadsafe(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> Handle:
        """Like ``call_soon``, from any thread; wakes the loop if it is blocked in the poller."""
        # call_soon's checks but debug mode's, which refuses a call from another thread:
        # written out rather than shared, as a helper would cost call_soon a call.
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if not callable(callback):
            raise TypeError(f"call_soon_threadsafe() needs a callable, got {callback!r}")
        handle = Handle(callback, args, self, copy_context() if context is None else context)
        self._ready.append(handle)  # deque.append is atomic
        self._wake_up()
        return handle

    def _wake_up(self) -> None:
        try:
            self._self_writer.send(b"\0")
        except (BlockingIOError, InterruptedError):
            # The socket's buffer is full, so a wake-up is already pending: nothing is lost.
            pass
        except OSError:
            # Closed by close() in another thread; the loop is not going to wait again.
            if not self._closed:
                raise

    def _drain_self_pipe(self) -> None:
        try:
            while self._self_reader.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[..., _T],
        *args: Any,
    ) -> Future[_T]:
        """Run ``func(*args)`` in ``executor`` (a default thread pool if None); a future of it."""
        self._check_closed()
        if not callable(func):
            raise TypeError(f"run_in_executor() needs a callable, got {func!r}")
        if executor is None:
            if self._executor_shutdown_called:
                raise RuntimeError("the default executor has been shut down")
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="treadle")
                self._default_executor = executor
        fut: Future[_T] = self.create_future()
        chain_concurrent_future(executor.submit(func, *args), fut, self)
        return fut

    def set_default_executor(self, executor: concurrent.futures.ThreadPoolExecutor) -> None:
        """Use ``executor`` for ``run_in_executor(None, ...)``."""
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("the default executor must be a concurrent.futures.ThreadPoolExecutor")
        self._default_executor = executor

    def shutdown_default_executor(self) -> Future[None]:
        """Shut the default executor down, waiting for its threads off the loop; awaitable."""
        self._executor_shutdown_called = True
        fut: Future[None] = self.create_future()
        executor = self._default_executor
        if executor is None:
            fut.set_result(None)
            return fut

        def shut_down() -> None:
            try:
                executor.shutdown(wait=True)
            finally:
                if not self._closed:
                    self.call_soon_threadsafe(finish)

        def finish() -> None:
            if not fut.done():
                fut.set_result(None)

        threading.Thread(target=shut_down, name="treadle-executor-shutdown").start()
        return fut

    # --- sockets: asyncio's sock_* methods and DNS -------------------------------------
    #
    # Each tries the system call first and waits for readiness only when it would
    # block. The wait never happens inside the ``except`` block (an error raised
    # while waiting, a timeout say, would carry a stray BlockingIOError as context).
    # Cancellation-safe: the data is taken by the system call in the coroutine, never
    # in a readiness callback, so a cancelled wait leaves nothing registered and loses
    # no byte.

    async def _wait_readable(self, fd: int | Any) -> None:
        """Wait until ``fd`` (a file descriptor or an object with ``fileno()``) is readable."""
        await self._wait_ready(fd, "read")

    async def _wait_writable(self, fd: int | Any) -> None:
        """Wait until ``fd`` (a file descriptor or an object with ``fileno()``) is writable."""
        await self._wait_ready(fd, "write")

    async def _wait_ready(
        self,
        fd: int | Any,
        way: Literal["read", "write"],
        on_ready: Callable[..., object] = resume,
        *args: Any,
    ) -> Any:
        """Wait until ``fd`` is ready to ``way``; what ``on_ready(*args, waiter)`` resumed with.

        One task at a time may wait on a descriptor each way. ``on_ready`` is called by
        the readiness callback; it must ``resume(waiter, ...)``.
        """
        if way == "read":
            watching, watch, unwatch = self.has_reader, self.add_reader, self.remove_reader
        else:
            watching, watch, unwatch = self.has_writer, self.add_writer, self.remove_writer
        if watching(fd):
            direction = "read from" if way == "read" else "write to"
            raise RuntimeError(f"another task is already waiting to {direction} {fd!r}")
        waiter = current_waiter()
        watch(fd, on_ready, *args, waiter)
        try:
            return await suspend(waiter)
        finally:
            unwatch(fd)

    async def _until_done(
        self,
        sock: socket.socket,
        wait: Callable[[socket.socket], Awaitable[None]],
        call: Callable[..., _T],
        *args: Any,
    ) -> _T:
        """``call(*args)`` on non-blocking ``sock``; while it would block, ``wait(sock)``
        (``_wait_readable`` or ``_wait_writable``) and call again."""
        _check_nonblocking(sock)
        while True:
            try:
                return call(*args)
            except (BlockingIOError, InterruptedError):
                pass
            await wait(sock)

    async def sock_recv(self, sock: socket.socket, nbytes: int) -> bytes:
        """Receive up to ``nbytes`` bytes from non-blocking ``sock``; ``b''`` when the peer
        has closed."""
        return await self._until_done(sock, self._wait_readable, sock.recv, nbytes)

    async def sock_recv_into(self, sock: socket.socket, buf: Buffer) -> int:
        """Receive into ``buf`` (up to its size); how many bytes arrived (0: the peer closed)."""
        return await self._until_done(sock, self._wait_readable, sock.recv_into, buf)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to ``bufsize`` bytes; ``(data, address)``."""
        return await self._until_done(sock, self._wait_readable, sock.recvfrom, bufsize)

    async def sock_recvfrom_into(
        self, sock: socket.socket, buf: Buffer, nbytes: int = 0
    ) -> tuple[int, Any]:
        """Receive a datagram into ``buf`` (up to ``nbytes``, or its size); ``(size, address)``."""
        return await self._until_done(sock, self._wait_readable, sock.recvfrom_into, buf, nbytes)

    async def sock_sendall(self, sock: socket.socket, data: Buffer) -> None:
        """Send all of ``data``, waiting for room as often as needed.

        If cancelled part-way, some of the data may have been sent; the rest was not.
        """
        _check_nonblocking(sock)
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            try:
                sent += sock.send(view[sent:])
                continue
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait_writable(sock)

    async def sock_sendto(self, sock: socket.socket, data: Buffer, address: Any) -> int:
        """Send a datagram to ``address``; how many bytes were sent."""
        return await self._until_done(sock, self._wait_writable, sock.sendto, data, address)

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        """Connect ``sock`` to ``address``, resolving a host name first (for IP sockets)."""
        _check_nonblocking(sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            infos = await self.getaddrinfo(
                address[0], address[1], family=sock.family, type=sock.type, proto=sock.proto
            )
            address = infos[0][4]
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        error = await self._wait_ready(sock, "write", _take_connect_outcome, sock)
        if error:
            # OSError(errno, ...) builds the matching subclass (ConnectionRefusedError, ...).
            raise OSError(error, os.strerror(error), format_address(address))

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        """Accept a connection; ``(conn, address)`` with ``conn`` already non-blocking."""
        conn, address = await self._until_done(sock, self._wait_readable, sock.accept)
        conn.setblocking(False)
        return conn, address

    async def getaddrinfo(
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        """``socket.getaddrinfo`` off the loop (a numeric host is resolved at once).

        A failed lookup raises ``socket.gaierror`` naming the host.
        """
        try:
            # A numeric address needs no lookup, so it need not cost a thread.
            infos = socket.getaddrinfo(
                host, port, family, type, proto, flags | socket.AI_NUMERICHOST
            )
            return cast(list[AddrInfo], infos)
        except socket.gaierror:
            pass
        lookup = cast(Callable[..., list[AddrInfo]], socket.getaddrinfo)
        try:
            return await self.run_in_executor(None, lookup, host, port, family, type, proto, flags)
        except socket.gaierror as exc:
            raise socket.gaierror(exc.errno, f"cannot resolve {host!r}: {exc.strerror}") from exc

    async def getnameinfo(self, sockaddr: tuple[Any, ...], flags: int = 0) -> tuple[str, str]:
        """``socket.getnameinfo`` off the loop."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    # --- asynchronous generators --------------------------------------------------------

    def _asyncgen_firstiter(self, agen: Any) -> None:
        self._asyncgens.add(agen)

    def _asyncgen_finalizer(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if not self._closed:
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    def shutdown_asyncgens(self) -> Future[None]:
        """Close every asynchronous generator still open on this loop; awaitable."""
        self._asyncgens_shutdown_called = True
        fut: Future[None] = self.create_future()
        agens = list(self._asyncgens)
        self._asyncgens.clear()
        if not agens:
            fut.set_result(None)
            return fut
        remaining = len(agens)

        def closed(task: Future[Any], agen: Any) -> None:
            nonlocal remaining
            if not task.cancelled() and task.exception() is not None:
                self.call_exception_handler(
                    {
                        "message": f"error closing asynchronous generator {agen!r}",
                        "exception": task.exception(),
                        "asyncgen": agen,
                    }
                )
            remaining -= 1
            if remaining == 0 and not fut.done():
                fut.set_result(None)

        for agen in agens:
            task = self.create_task(agen.aclose())
            task.add_done_callback(functools.partial(closed, agen=agen))
        return fut

    # --- errors -------------------------------------------------------------------------

    def set_exception_handler(self, handler: ExceptionHandler | None) -> None:
        """Send errors nobody else can handle to ``handler(loop, context)``; None: default."""
        self._exception_handler = _callable_or_none(handler, "exception handler")

    def get_exception_handler(self) -> ExceptionHandler | None:
        """The handler set by ``set_exception_handler``, or None."""
        return self._exception_handler

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        """Log ``context`` (a message, maybe an exception, and what it concerns) as an error."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any = (
            (type(exception), exception, exception.__traceback__) if exception else False
        )
        lines = [message]
        for key in sorted(context):
            if key not in ("message", "exception"):
                lines.append(f"{key}: {context[key]!r}")
        logger.error("\n".join(lines), exc_info=exc_info)

    def _callback_failed(self, handle: Handle | Any, exc: BaseException) -> None:
        """A callback raised ``exc``: report it to the exception handler."""
        self.call_exception_handler(
            {
                "message": "Exception in callback "
                + describe_callback(handle._callback, handle._args),
                "exception": exc,
                "handle": handle,
            }
        )

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Hand ``context`` to the exception handler; an error in the handler is logged too."""
        handler = self._exception_handler
        if handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self.default_exception_handler(
                {
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                }
            )

    # --- debug mode and callback observers ---------------------------------------------

    def get_debug(self) -> bool:
        """Whether debug mode is on."""
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        """Debug mode warns about slow callbacks and about calls from the wrong thread."""
        self._debug = bool(enabled)
        if self.is_running():
            sys.set_coroutine_origin_tracking_depth(10 if self._debug else 0)

    def _check_call(self, operation: str, callback: Callable[..., object] | None) -> None:
        """Refuse a scheduling call from another thread, or one given a coroutine function."""
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            raise RuntimeError(
                f"{operation}() called from a thread other than the loop's; "
                "use call_soon_threadsafe() from other threads"
            )
        code = getattr(callback, "__code__", None)
        if code is not None and code.co_flags & 0x180:  # CO_COROUTINE | CO_ITERABLE_COROUTINE
            raise TypeError(
                f"{operation}() was given a coroutine function {callback!r}; "
                "schedule it with create_task() instead"
            )

    def _run_ready_debug(self, ntodo: int) -> None:
        """Step 5 of ``_run_once`` in debug mode: also time each callback."""
        # The loop of _run_once's step 5 again, as in _run_ready_observed and in
        # treadle.aio's version: each mode's own, so that the plain loop stays inline in
        # _run_once and a debug-mode stack reads _run_once -> _run_ready_debug -> callback.
        popleft = self._ready.popleft
        handle: Any = None
        for _ in range(ntodo):
            handle = popleft()
            if handle._cancelled:
                continue
            started = time.monotonic()
            try:
                handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(handle, exc)
            finally:
                took = time.monotonic() - started
                if took >= self.slow_callback_duration:
                    logger.warning(
                        "Executing %s took %.3f seconds (slow_callback_duration is %.3f)",
                        describe_callback(handle._callback, handle._args),
                        took,
                        self.slow_callback_duration,
                    )
        handle = None  # as in _run_once: the frame must not keep the last callback

    def _run_ready_observed(self, ntodo: int, observer: CallbackObserver) -> None:
        """Step 5 of ``_run_once`` while an observer is set: tell it about each callback.

        ``resume(inline=True)`` schedules meanwhile, so each task step is a callback of
        its own and the observer sees it. Debug mode's slow-callback log is off then.
        """
        popleft = self._ready.popleft
        observer.callbacks_began(ntodo)
        handle: Any = None
        for _ in range(ntodo):
            handle = popleft()
            if handle._cancelled:
                continue
            observer.callback_began(handle)
            try:
                handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(handle, exc)
            finally:
                observer.callback_ended(handle)
        handle = None  # as in _run_once: the frame must not keep the last callback
        observer.callbacks_ended()

    # --- where epoll is missing, and after fork() -----------------------------------------

    def _make_poller(self) -> Poller:
        if hasattr(select, "epoll"):
            return select.epoll()
        return _SelectorsPoller()

    def _check_can_run(self) -> None:
        if isinstance(self._poller, _ForkedPoller) and not self._closed:
            self._poller.poll(0)  # raises: this loop belongs to the parent process
        super()._check_can_run()


# --- where epoll is missing: the poller interface over selectors -------------------------

class _SelectorsPoller:
    """The poller interface over ``selectors.DefaultSelector``, where epoll is missing."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    @staticmethod
    def _events(mask: int) -> int:
        return (selectors.EVENT_READ if mask & _POLLIN else 0) | (
            selectors.EVENT_WRITE if mask & _POLLOUT else 0
        )

    def register(self, fd: int, mask: int) -> None:
        self._selector.register(fd, self._events(mask))

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._selector.modify(fd, self._events(mask))
        except KeyError:
            raise FileNotFoundError(fd) from None

    def unregister(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except KeyError:
            raise FileNotFoundError(fd) from None

    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]:
        # maxevents sizes epoll's array; it is not applied here: a selector lists the
        # ready descriptors in the same order every time, so cutting its list would
        # starve the last ones (epoll takes them in turn).
        ready = self._selector.select(None if timeout is None or timeout < 0 else timeout)
        return [
            (key.fd, (_POLLIN if ev & selectors.EVENT_READ else 0)
             | (_POLLOUT if ev & selectors.EVENT_WRITE else 0))
            for key, ev in ready
        ]

    def close(self) -> None:
        self._selector.close()


# --- fork() -------------------------------------------------------------------------------
#
# A child made by fork() inherits the parent's loops half-alive: their epoll instance and
# wake-up socketpair are *shared* with the parent (fork copies the descriptors, not what
# they point to), and the forking thread's record says a loop is running. So in the
# child, no loop is running, and every loop made before the fork is cut off from the
# shared epoll: registering a descriptor there from the child would change what the
# parent's loop waits for. What is supported in a child is a new loop of its own
# (treadle.run(), new_event_loop()); a parent's loop can only be closed there. A child
# forked from inside a callback and returning to the loop finds that loop stopping, its
# pending callbacks and timers dropped (they are the parent's work), and any further run
# refused with a RuntimeError that says so.

# Every loop not yet garbage-collected, so that a forked child can cut them off.
_all_loops: weakref.WeakSet[EventLoop] = weakref.WeakSet()


class _ForkedPoller:
    """The poller of a loop inherited across fork(): refuses everything but close()."""

    def __init__(self, parent_pid: int) -> None:
        self._parent_pid = parent_pid

    def _refuse(self, *args: object) -> Any:
        raise RuntimeError(
            f"this event loop was made in process {self._parent_pid} and came into "
            f"process {os.getpid()} by fork(); it cannot run or watch file descriptors "
            "here. Start a new loop in the child: treadle.run() or treadle.new_event_loop()"
        )

    register = modify = unregister = poll = _refuse

    def close(self) -> None:
        """Nothing to release: the child's copy of the epoll descriptor is closed already."""


def _cut_off_loops_after_fork() -> None:
    """In a child just forked: no loop runs here, and the parent's loops are cut off."""
    _running_record.set_running_loop(None)
    parent_pid = os.getppid()
    for loop in list(_all_loops):
        if loop._closed:
            continue
        # Closing the child's copy of the epoll descriptor leaves the parent's intact.
        loop._poller.close()
        loop._poller = _ForkedPoller(parent_pid)
        for handle in loop._ready:
            # Marked directly, not cancel()ed: this is the child's copy, and nothing of
            # the parent's bookkeeping must run here.
            handle._cancelled = True
        loop._timers.clear()
        loop._cancelled_timers = 0
        loop._stopping = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_cut_off_loops_after_fork)


def chain_concurrent_future(
    source: concurrent.futures.Future[_T], dest: Future[_T], loop: EventLoop
) -> None:
    """Copy ``source``'s outcome (from any thread) into ``dest`` on ``loop``; cancel both ways."""

    def copy_outcome() -> None:
        if dest.done():
            return
        if source.cancelled():
            dest.cancel()
        elif (exc := source.exception()) is not None:
            dest.set_exception(exc)
        else:
            dest.set_result(source.result())

    def on_source_done(_: concurrent.futures.Future[_T]) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(copy_outcome)

    def on_dest_done(f: Future[_T]) -> None:
        if f.cancelled():
            source.cancel()

    source.add_done_callback(on_source_done)
    dest.add_done_callback(on_dest_done)


def wrap_future(fut: Any, *, loop: EventLoop | None = None) -> Future[Any]:
    """A treadle Future that follows a ``concurrent.futures.Future`` (or returns a treadle one)."""
    if isfuture(fut):
        return fut  # type: ignore[no-any-return]
    if not isinstance(fut, concurrent.futures.Future):
        raise TypeError(f"wrap_future() needs a concurrent.futures.Future, got {fut!r}")
    loop = get_running_loop() if loop is None else loop
    new: Future[Any] = Future(loop=loop)
    chain_concurrent_future(fut, new, loop)
    return new


# --- socket helpers, for the loop's sock_* methods ------------------------------------

# What a socket can send from (collections.abc.Buffer arrives only in Python 3.12).
Buffer: TypeAlias = bytes | bytearray | memoryview

# (family, type, proto, canonname, sockaddr), as socket.getaddrinfo returns them.
AddrInfo: TypeAlias = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


def _callable_or_none(value: _C, what: str) -> _C:
    """``value``, if it is a callable or None; else a TypeError naming ``what`` it is for."""
    if value is not None and not callable(value):
        raise TypeError(f"{what} must be a callable or None, got {value!r}")
    return value


def _check_nonblocking(sock: socket.socket) -> None:
    """Refuse what the sock_* methods cannot drive: a non-socket, or a blocking socket."""
    if not isinstance(sock, socket.socket):
        raise TypeError(f"expected a socket.socket, got {sock!r}")
    if sock.gettimeout() != 0:
        # asyncio checks this only in debug mode; a blocking socket would freeze the loop.
        raise ValueError(
            f"the socket must be non-blocking: call sock.setblocking(False) first ({sock!r})"
        )


def _take_connect_outcome(sock: socket.socket, waiter: Waiter) -> None:
    """The connecting socket is writable: read its outcome (an errno, 0 for success) now.

    Now, in the readiness callback, and not a loop iteration later when the task
    resumes: a peer that accepts and resets at once must not turn a connection that
    succeeded into a failed connect (asyncio reads SO_ERROR at the same moment).
    """
    if is_suspended(waiter):
        resume(waiter, sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))


def format_address(address: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6) for a socket address, for messages."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)

