"""The event loop: a ready queue, a timer heap and a selector, and nothing that knows coroutines.

Design principles:

1. The loop runs callbacks, nothing else. It never resumes a coroutine; ``Task`` does
   that, by scheduling its own step as a callback (``tasks.py``).
2. ``_run_once`` is the only place a callback is called. One iteration: drop cancelled
   timers, work out how long the selector may block, poll, move due timers to the ready
   queue, then run exactly the callbacks that were ready when the iteration began.
3. One place owns the selector: ``_poller``, behind ``add_reader``/``add_writer``.
4. Time comes from a clock object (``clock.py``), so tests can run on virtual time.
5. Nothing is lost: an exception in a callback goes to the exception handler and the
   loop carries on; the loop keeps a strong reference to every live task.
6. Cheap on the hot path: no per-event allocation for readiness, tuples in the timer
   heap so C compares them, and no system call per iteration when no file descriptor
   but the wake-up pipe is registered and there is work ready.
7. asyncio's socket vocabulary lives here, once: ``sock_recv``, ``sock_connect``,
   ``getaddrinfo`` and the rest are coroutines that await a Future made by
   ``create_future`` and completed by an ``add_reader``/``add_writer`` callback. They
   await futures; they never resume a coroutine themselves.

Imports from treadle only the core layer (``errors``, ``clock``, ``handles``). The loop
hands futures and tasks around without naming their classes: ``treadle.futures`` and
``treadle.tasks`` install ``EventLoop._future_type`` and ``EventLoop._task_type`` when
they are imported (which ``import treadle`` always does).
"""

from __future__ import annotations

import concurrent.futures
import errno
import functools
import itertools
import logging
import os
import select
import selectors
import socket
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextvars import Context, copy_context
from heapq import heapify, heappop, heappush
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeAlias, TypeVar, cast

from treadle.clock import Clock, MonotonicClock
from treadle.handles import Handle, TimerHandle, describe_callback

if TYPE_CHECKING:
    from treadle.futures import Future
    from treadle.tasks import Task

__all__ = [
    "AddrInfo",
    "Buffer",
    "EventLoop",
    "chain_concurrent_future",
    "format_address",
    "get_running_loop",
]

logger = logging.getLogger("treadle")

_T = TypeVar("_T")
ExceptionHandler = Callable[["EventLoop", dict[str, Any]], object]
TaskFactory = Callable[..., "Task[Any]"]

# Readiness bits as epoll and poll report them (the same values on every platform that
# has either). An error or hang-up wakes both the reader and the writer, so that the
# callback's own system call reports what went wrong.
_POLLIN, _POLLOUT = select.POLLIN, select.POLLOUT
_READ_EVENTS = _POLLIN | select.POLLERR | select.POLLHUP
_WRITE_EVENTS = _POLLOUT | select.POLLERR | select.POLLHUP

# The longest the selector blocks at once: epoll cannot wait past ~24.8 days, and
# waking once a day to recompute costs nothing.
_MAX_SELECT_TIMEOUT = 24 * 3600.0

# Purge cancelled timers once they are over half the heap and more than this many.
_MIN_CANCELLED_TIMERS_TO_PURGE = 100


class _Poller(Protocol):
    def register(self, fd: int, mask: int) -> None: ...
    def modify(self, fd: int, mask: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout: float) -> list[tuple[int, int]]: ...
    def close(self) -> None: ...


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

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        ready = self._selector.select(None if timeout < 0 else timeout)
        return [
            (key.fd, (_POLLIN if ev & selectors.EVENT_READ else 0)
             | (_POLLOUT if ev & selectors.EVENT_WRITE else 0))
            for key, ev in ready
        ]

    def close(self) -> None:
        self._selector.close()


def _make_poller() -> _Poller:
    if hasattr(select, "epoll"):
        return select.epoll()
    return _SelectorsPoller()


class _RunningLoop(threading.local):
    loop: EventLoop | None = None


_running = _RunningLoop()

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
    _running.loop = None
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


def get_running_loop() -> EventLoop:
    """The loop running in this thread; RuntimeError when there is none."""
    loop = _running.loop
    if loop is None:
        raise RuntimeError(
            "no running event loop: call this from a coroutine run by treadle.run()"
        )
    return loop


def _get_running_loop() -> EventLoop | None:
    """The loop running in this thread, or None."""
    return _running.loop


def _fileno(fileobj: int | Any) -> int:
    """The file descriptor of an int or of any object with ``fileno()``."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                f"expected a file descriptor or an object with fileno(), got {fileobj!r}"
            ) from None
    if fd < 0:
        raise ValueError(f"invalid file descriptor {fd} (is {fileobj!r} closed?)")
    return fd


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


# --- socket helpers, for the loop's sock_* methods ------------------------------------

# What a socket can send from (collections.abc.Buffer arrives only in Python 3.12).
Buffer: TypeAlias = bytes | bytearray | memoryview

# (family, type, proto, canonname, sockaddr), as socket.getaddrinfo returns them.
AddrInfo: TypeAlias = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]


def _check_nonblocking(sock: socket.socket) -> None:
    """Refuse what the sock_* methods cannot drive: a non-socket, or a blocking socket."""
    if not isinstance(sock, socket.socket):
        raise TypeError(f"expected a socket.socket, got {sock!r}")
    if sock.gettimeout() != 0:
        # asyncio checks this only in debug mode; a blocking socket would freeze the loop.
        raise ValueError(
            f"the socket must be non-blocking: call sock.setblocking(False) first ({sock!r})"
        )


def _set_done(fut: Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _take_connect_outcome(sock: socket.socket, fut: Future[int]) -> None:
    """The connecting socket is writable: read its outcome (an errno, 0 for success) now.

    Now, in the readiness callback, and not a loop iteration later when the task
    resumes: a peer that accepts and resets at once must not turn a connection that
    succeeded into a failed connect (asyncio reads SO_ERROR at the same moment).
    """
    if not fut.done():
        fut.set_result(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))


def format_address(address: Any) -> str:
    """``host:port`` (``[host]:port`` for IPv6) for a socket address, for messages."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = f"[{address[0]}]" if ":" in str(address[0]) else str(address[0])
        return f"{host}:{address[1]}"
    return str(address)


class EventLoop:
    """Runs callbacks: soon, at a deadline, or when a file descriptor is ready.

    The names, signatures and semantics follow asyncio's event loop.
    """

    # Installed by treadle.futures and treadle.tasks; see the module docstring.
    _future_type: ClassVar[Callable[..., Future[Any]]]
    _task_type: ClassVar[Callable[..., Task[Any]]]

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._clock_time = self._clock.time
        # Invariant: every handle in _ready is run or skipped (if cancelled) exactly once.
        self._ready: deque[Handle] = deque()
        # Heap of (when, sequence, handle): ties fire in scheduling order.
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._timer_sequence = itertools.count().__next__
        # Invariant: how many cancelled handles are still in _timers.
        self._cancelled_timers = 0
        self._poller: _Poller | _ForkedPoller = _make_poller()
        # fd -> interest mask currently registered with the poller.
        self._registered: dict[int, int] = {}
        self._readers: dict[int, Handle] = {}
        self._writers: dict[int, Handle] = {}
        self._stopping = False
        self._closed = False
        self._thread_id: int | None = None
        self._debug = False
        self.slow_callback_duration = 0.1
        self._exception_handler: ExceptionHandler | None = None
        self._task_factory: TaskFactory | None = None
        # Every task not yet done: the loop's strong reference keeps a task that nobody
        # else holds alive until it finishes. Task adds itself and removes itself.
        self._tasks: set[Task[Any]] = set()
        # The task whose step is running right now (set by Task).
        self._current_task: Task[Any] | None = None
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._default_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_shutdown_called = False
        self._self_reader, self._self_writer = socket.socketpair()
        self._self_reader.setblocking(False)
        self._self_writer.setblocking(False)
        self._watch(self._readers, self._self_reader.fileno(), self._drain_self_pipe, ())
        _all_loops.add(self)

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} running={self.is_running()} "
            f"closed={self._closed} debug={self._debug}>"
        )

    # --- time ----------------------------------------------------------------------

    def time(self) -> float:
        """The loop's current time, from its clock."""
        return self._clock_time()

    @property
    def clock(self) -> Clock:
        """The clock this loop reads time from."""
        return self._clock

    # --- scheduling callbacks --------------------------------------------------------

    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> Handle:
        """Run ``callback(*args)`` on the next iteration, after those already scheduled."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if not callable(callback):
            raise TypeError(f"call_soon() needs a callable, got {callback!r}")
        if self._debug:
            self._check_thread("call_soon")
            self._check_not_coroutine(callback, "call_soon")
        handle = Handle(callback, args, self, copy_context() if context is None else context)
        self._ready.append(handle)
        return handle

    def _schedule(
        self, callback: Callable[..., object], args: tuple[Any, ...], context: Context
    ) -> None:
        """``call_soon`` for the futures layer's own callbacks, which are known callables."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread("call_soon")
        self._ready.append(Handle(callback, args, self, context))

    def _schedule_handle(self, handle: Handle) -> None:
        """Queue a handle the futures layer made (and may queue again once it has run)."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread("call_soon")
        self._ready.append(handle)

    def call_soon_threadsafe(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> Handle:
        """Like ``call_soon``, from any thread; wakes the loop if it is blocked in the selector."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if not callable(callback):
            raise TypeError(f"call_soon_threadsafe() needs a callable, got {callback!r}")
        handle = Handle(callback, args, self, copy_context() if context is None else context)
        self._ready.append(handle)  # deque.append is atomic
        self._wake_up()
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> TimerHandle:
        """Run ``callback(*args)`` after ``delay`` seconds (at once if ``delay <= 0``)."""
        if delay != delay:
            raise ValueError("call_later() delay is NaN; pass a number of seconds")
        return self.call_at(self._clock_time() + delay, callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> TimerHandle:
        """Run ``callback(*args)`` once ``time()`` reaches ``when``."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if when != when:
            raise ValueError("call_at() deadline is NaN; pass a time from loop.time()")
        if not callable(callback):
            raise TypeError(f"call_at() needs a callable, got {callback!r}")
        if self._debug:
            self._check_thread("call_at")
            self._check_not_coroutine(callback, "call_at")
        timer = TimerHandle(
            when, callback, args, self, copy_context() if context is None else context
        )
        timer._scheduled = True
        heappush(self._timers, (when, self._timer_sequence(), timer))
        return timer

    def _timer_handle_cancelled(self, handle: TimerHandle) -> None:
        """A timer still in the heap was cancelled (called by ``TimerHandle.cancel``)."""
        self._cancelled_timers += 1

    # --- file descriptors ---------------------------------------------------------------

    def add_reader(self, fd: int | Any, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable, replacing any earlier reader."""
        self._check_closed()
        if self._debug:
            self._check_thread("add_reader")
        self._watch(self._readers, _fileno(fd), callback, args)

    def remove_reader(self, fd: int | Any) -> bool:
        """Stop watching ``fd`` for reading; True if a reader was registered."""
        return self._unwatch(self._readers, fd)

    def add_writer(self, fd: int | Any, callback: Callable[..., object], *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable, replacing any earlier writer."""
        self._check_closed()
        if self._debug:
            self._check_thread("add_writer")
        self._watch(self._writers, _fileno(fd), callback, args)

    def remove_writer(self, fd: int | Any) -> bool:
        """Stop watching ``fd`` for writing; True if a writer was registered."""
        return self._unwatch(self._writers, fd)

    def _watch(
        self,
        table: dict[int, Handle],
        fd: int,
        callback: Callable[..., object],
        args: tuple[Any, ...],
    ) -> None:
        """Register ``callback`` in ``table`` (readers or writers) for ``fd``."""
        old = table.get(fd)
        table[fd] = Handle(callback, args, self, copy_context())
        if old is None:
            self._update_interest(fd)
        else:
            old.cancel()

    def _unwatch(self, table: dict[int, Handle], fd: int | Any) -> bool:
        """Drop ``fd``'s callback from ``table``; whether there was one."""
        if self._closed:
            return False
        fd = _fileno(fd)
        handle = table.pop(fd, None)
        if handle is None:
            return False
        handle.cancel()
        self._update_interest(fd)
        return True

    def has_reader(self, fd: int | Any) -> bool:
        """Whether a reader callback is registered for ``fd``."""
        return _fileno(fd) in self._readers

    def has_writer(self, fd: int | Any) -> bool:
        """Whether a writer callback is registered for ``fd``."""
        return _fileno(fd) in self._writers

    def _update_interest(self, fd: int) -> None:
        """Tell the poller what we now want to know about ``fd``."""
        mask = (_POLLIN if fd in self._readers else 0) | (_POLLOUT if fd in self._writers else 0)
        old_mask = self._registered.get(fd, 0)
        if mask == old_mask:
            return
        poller = self._poller
        if mask == 0:
            del self._registered[fd]
            try:
                poller.unregister(fd)
            except OSError as exc:
                # EBADF/ENOENT: the descriptor was closed before it was removed, and
                # closing it already took it out of the poller: nothing is left to undo.
                if exc.errno not in (errno.EBADF, errno.ENOENT):
                    raise
            return
        if old_mask == 0:
            try:
                poller.register(fd, mask)
            except FileExistsError:
                # A closed descriptor's number was reused while still registered.
                poller.modify(fd, mask)
        else:
            try:
                poller.modify(fd, mask)
            except FileNotFoundError:
                # Closed and reused under us: the poller forgot the old registration.
                poller.register(fd, mask)
        self._registered[fd] = mask

    # --- the wake-up pipe ---------------------------------------------------------------

    def _wake_up(self) -> None:
        try:
            self._self_writer.send(b"\0")
        except (BlockingIOError, InterruptedError):
            # The pipe is full, so a wake-up is already pending: nothing is lost.
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

    # --- running ------------------------------------------------------------------------

    def is_running(self) -> bool:
        """Whether ``run_forever`` (or ``run_until_complete``) is in progress."""
        return self._thread_id is not None

    def is_closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_can_run(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed: create a new one (or use treadle.run())")
        if isinstance(self._poller, _ForkedPoller):
            self._poller.poll(0)  # raises: this loop belongs to the parent process
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if _running.loop is not None:
            raise RuntimeError(
                "Cannot run the event loop while another loop is running in this thread"
            )

    def run_forever(self) -> None:
        """Run callbacks until ``stop()`` is called."""
        self._check_can_run()
        self._thread_id = threading.get_ident()
        old_hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(
            firstiter=self._asyncgen_firstiter, finalizer=self._asyncgen_finalizer
        )
        old_depth = sys.get_coroutine_origin_tracking_depth()
        if self._debug:
            sys.set_coroutine_origin_tracking_depth(10)
        _running.loop = self
        try:
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._thread_id = None
            _running.loop = None
            sys.set_coroutine_origin_tracking_depth(old_depth)
            sys.set_asyncgen_hooks(*old_hooks)

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

    def stop(self) -> None:
        """Stop after the callbacks of the current iteration have run."""
        self._stopping = True

    def close(self) -> None:
        """Release the selector, the wake-up pipe and the default executor.

        Pending callbacks are discarded. Closing a closed loop does nothing; closing a
        running one raises RuntimeError.
        """
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop; stop it first")
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        for _, _, timer in self._timers:
            timer._scheduled = False
        self._timers.clear()
        self._cancelled_timers = 0
        self._readers.clear()
        self._writers.clear()
        self._registered.clear()
        self._poller.close()
        self._self_reader.close()
        self._self_writer.close()
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)

    def _run_once(self) -> None:
        """One iteration of the loop; the only place callbacks are called."""
        ready = self._ready
        timers = self._timers

        # 1. Cancelled timers must not pile up: purge them when they are half the heap.
        if (
            self._cancelled_timers > _MIN_CANCELLED_TIMERS_TO_PURGE
            and self._cancelled_timers * 2 > len(timers)
        ):
            self._purge_cancelled_timers()
        else:
            while timers and timers[0][2]._cancelled:
                heappop(timers)[2]._scheduled = False
                self._cancelled_timers -= 1

        # 2. How long may the selector block? Not at all if there is work ready.
        deadline = timers[0][0] if timers else None
        if ready or self._stopping:
            timeout = 0.0
        elif deadline is None:
            timeout = -1.0
        else:
            timeout = min(self._clock.sleep_time(deadline), _MAX_SELECT_TIMEOUT)

        # 3. Poll. With work ready and no descriptor but the wake-up pipe registered,
        # there is nothing to poll for: call_soon_threadsafe appends to _ready itself.
        if timeout != 0.0 or len(self._registered) > 1:
            events = self._poller.poll(timeout)
            if events:
                readers = self._readers
                writers = self._writers
                for fd, mask in events:
                    if mask & _READ_EVENTS:
                        handle = readers.get(fd)
                        if handle is not None:
                            ready.append(handle)
                    if mask & _WRITE_EVENTS:
                        handle = writers.get(fd)
                        if handle is not None:
                            ready.append(handle)
        if deadline is not None and not ready and not self._stopping:
            self._clock.idle(deadline)

        # 4. Move the timers that are due to the ready queue, in deadline order.
        if timers:
            now = self._clock_time()
            while timers and timers[0][0] <= now:
                timer = heappop(timers)[2]
                timer._scheduled = False
                if timer._cancelled:
                    self._cancelled_timers -= 1
                else:
                    ready.append(timer)

        # 5. Run exactly the callbacks that are ready now; any they schedule wait for
        # the next iteration.
        ntodo = len(ready)
        if self._debug:
            self._run_ready_debug(ntodo)
            return
        popleft = ready.popleft
        for _ in range(ntodo):
            handle = popleft()
            if handle._cancelled:
                continue
            try:
                handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(handle, exc)

    def _run_ready_debug(self, ntodo: int) -> None:
        """Step 5 of ``_run_once`` in debug mode: also time each callback."""
        popleft = self._ready.popleft
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

    def _callback_failed(self, handle: Handle, exc: BaseException) -> None:
        self.call_exception_handler(
            {
                "message": "Exception in callback "
                + describe_callback(handle._callback, handle._args),
                "exception": exc,
                "handle": handle,
            }
        )

    def _purge_cancelled_timers(self) -> None:
        timers = self._timers
        live = []
        for entry in timers:
            if entry[2]._cancelled:
                entry[2]._scheduled = False
            else:
                live.append(entry)
        heapify(live)
        # In place, not a new list: _run_once goes on popping due timers from the list it
        # holds, and a timer popped from an old list but kept in a new one ran twice.
        timers[:] = live
        self._cancelled_timers = 0

    # --- futures and tasks ------------------------------------------------------------

    def create_future(self) -> Future[Any]:
        """A new pending ``Future`` bound to this loop."""
        return self._future_type(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, _T] | Generator[Any, Any, _T],
        *,
        name: str | None = None,
        context: Context | None = None,
    ) -> Task[_T]:
        """Wrap a coroutine or generator in a ``Task`` and schedule its first step."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_thread("create_task")
        if self._task_factory is None:
            return self._task_type(coro, loop=self, name=name, context=context)
        task = self._task_factory(self, coro, context=context)
        if name is not None:
            task.set_name(name)
        return task

    def set_task_factory(self, factory: TaskFactory | None) -> None:
        """Use ``factory(loop, coro, context=...)`` in ``create_task``; None restores Task."""
        if factory is not None and not callable(factory):
            raise TypeError(f"task factory must be a callable or None, got {factory!r}")
        self._task_factory = factory

    def get_task_factory(self) -> TaskFactory | None:
        """The factory set by ``set_task_factory``, or None."""
        return self._task_factory

    # --- threads ------------------------------------------------------------------------

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
        if self.has_reader(fd):
            raise RuntimeError(f"another task is already waiting to read from {fd!r}")
        fut: Future[None] = self.create_future()
        self.add_reader(fd, _set_done, fut)
        try:
            await fut
        finally:
            self.remove_reader(fd)

    async def _wait_writable(self, fd: int | Any) -> None:
        """Wait until ``fd`` (a file descriptor or an object with ``fileno()``) is writable."""
        if self.has_writer(fd):
            raise RuntimeError(f"another task is already waiting to write to {fd!r}")
        fut: Future[None] = self.create_future()
        self.add_writer(fd, _set_done, fut)
        try:
            await fut
        finally:
            self.remove_writer(fd)

    async def sock_recv(self, sock: socket.socket, nbytes: int) -> bytes:
        """Receive up to ``nbytes`` bytes from non-blocking ``sock``; ``b''`` when the peer
        has closed."""
        _check_nonblocking(sock)
        while True:
            try:
                return sock.recv(nbytes)
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait_readable(sock)

    async def sock_recv_into(self, sock: socket.socket, buf: Buffer) -> int:
        """Receive into ``buf`` (up to its size); how many bytes arrived (0: the peer closed)."""
        _check_nonblocking(sock)
        while True:
            try:
                return sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait_readable(sock)

    async def sock_recvfrom(self, sock: socket.socket, bufsize: int) -> tuple[bytes, Any]:
        """Receive a datagram of up to ``bufsize`` bytes; ``(data, address)``."""
        _check_nonblocking(sock)
        while True:
            try:
                return sock.recvfrom(bufsize)
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait_readable(sock)

    async def sock_recvfrom_into(
        self, sock: socket.socket, buf: Buffer, nbytes: int = 0
    ) -> tuple[int, Any]:
        """Receive a datagram into ``buf`` (up to ``nbytes``, or its size); ``(size, address)``."""
        _check_nonblocking(sock)
        while True:
            try:
                return sock.recvfrom_into(buf, nbytes)
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait_readable(sock)

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
        _check_nonblocking(sock)
        while True:
            try:
                return sock.sendto(data, address)
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait_writable(sock)

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
        if self.has_writer(sock):
            raise RuntimeError(f"another task is already waiting to write to {sock!r}")
        outcome: Future[int] = self.create_future()
        self.add_writer(sock, _take_connect_outcome, sock, outcome)
        try:
            error = await outcome
        finally:
            self.remove_writer(sock)
        if error:
            # OSError(errno, ...) builds the matching subclass (ConnectionRefusedError, ...).
            raise OSError(error, os.strerror(error), format_address(address))

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        """Accept a connection; ``(conn, address)`` with ``conn`` already non-blocking."""
        _check_nonblocking(sock)
        while True:
            try:
                conn, address = sock.accept()
                conn.setblocking(False)
                return conn, address
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait_readable(sock)

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
        if handler is not None and not callable(handler):
            raise TypeError(f"exception handler must be a callable or None, got {handler!r}")
        self._exception_handler = handler

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

    # --- debug --------------------------------------------------------------------------

    def get_debug(self) -> bool:
        """Whether debug mode is on."""
        return self._debug

    def set_debug(self, enabled: bool) -> None:
        """Debug mode warns about slow callbacks and about calls from the wrong thread."""
        self._debug = bool(enabled)
        if self.is_running():
            sys.set_coroutine_origin_tracking_depth(10 if self._debug else 0)

    def _check_thread(self, operation: str) -> None:
        if self._thread_id is not None and self._thread_id != threading.get_ident():
            raise RuntimeError(
                f"{operation}() called from a thread other than the loop's; "
                "use call_soon_threadsafe() from other threads"
            )

    @staticmethod
    def _check_not_coroutine(callback: Callable[..., object], operation: str) -> None:
        code = getattr(callback, "__code__", None)
        if code is not None and code.co_flags & 0x180:  # CO_COROUTINE | CO_ITERABLE_COROUTINE
            raise TypeError(
                f"{operation}() was given a coroutine function {callback!r}; "
                "schedule it with create_task() instead"
            )
