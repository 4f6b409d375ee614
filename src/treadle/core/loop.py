"""The loop's core: a ready queue, a timer heap and a poller, and nothing that knows coroutines.

Design principles:

1. The loop runs callbacks, nothing else. It never resumes a coroutine: ``Task._step``
   does (``tasks.py``), and a step runs only inside a loop callback: the task's own
   scheduled step, or the done callback of the Future it waits on, or (principle 7)
   the readiness callback of a stream whose reader it wakes.
2. ``_run_once`` is the only place a callback is called. One iteration: drop cancelled
   timers, work out how long the poller may block, poll, move due timers to the ready
   queue, then run exactly the callbacks that were ready when the iteration began
   (in debug mode, or while an introspection observer is set, EventLoop runs them
   its own way, timing or reporting each).
3. One place owns the poller (epoll): ``_poller``, behind ``add_reader``/``add_writer``.
4. Time comes from a clock object (``clock.py``), so tests can run on virtual time.
5. Nothing is lost: an exception in a callback goes to ``call_exception_handler`` and
   the loop carries on; the loop keeps a strong reference to every live task.
6. Cheap on the hot path: no per-event allocation for readiness, tuples in the timer
   heap so C compares them, and no system call per iteration when no file descriptor
   is registered and there is work ready.
7. A task that waits without a Future of its own (a wait queue, a stream, a socket)
   does so through one seam, ``suspend``/``resume`` in ``tasks.py``. ``resume``
   schedules the task's step like any wake-up; a readiness callback with nothing left
   to do may ask for ``inline=True`` and run it at once. Stream reads do: it saves a
   Handle, a pass through the ready queue and often a poll per message.

This is the core only, and it is not used alone: ``treadle.loop.EventLoop`` is this
class plus asyncio's services (the wake-up socket and ``call_soon_threadsafe``, debug
mode, callback observers, thread pools, asynchronous-generator hooks, the
exception-handler API, a selectors fallback, fork safety, ``sock_*`` and DNS); their
hooks here are marked as such. Imports the rest of the core and ``interpreted``.
"""

from __future__ import annotations

import errno
import itertools
import select
import threading
from collections import deque
from collections.abc import Callable
from contextvars import Context, copy_context
from heapq import heapify, heappop, heappush
from typing import Any, Final, Protocol, TypeVar

from treadle.core.clock import Clock, MonotonicClock
from treadle.core.futures import Future
from treadle.core.handles import Callback, Handle, TimerHandle
from treadle.core.running import running, set_running_loop
from treadle.core.tasks import CoroutineLike, Task, _run_in
from treadle.interpreted import mypyc_attr

__all__ = ["CoreLoop", "Poller"]

_T = TypeVar("_T")

# Readiness bits as epoll and poll report them. An error or hang-up wakes both the
# reader and the writer, so that the callback's own system call reports what went wrong.
_POLLIN, _POLLOUT = select.POLLIN, select.POLLOUT
_READ_EVENTS: Final = _POLLIN | select.POLLERR | select.POLLHUP
_WRITE_EVENTS: Final = _POLLOUT | select.POLLERR | select.POLLHUP

# The longest the poller blocks at once: epoll cannot wait past ~24.8 days, and
# waking once a day to recompute costs nothing.
_MAX_SELECT_TIMEOUT: Final = 24 * 3600.0

# Purge cancelled timers once they are over half the heap and more than this many.
_MIN_CANCELLED_TIMERS_TO_PURGE: Final = 100

# The ready queue's methods, called through these (Final: compiled, each is a C call; a
# method of a deque is looked up by name at every call, as is Context.run, which
# tasks.py provides): 400 instructions per echo round trip compiled, 30 more pure.
_append: Final = deque.append
_popleft: Final = deque.popleft


class Poller(Protocol):
    """What the loop needs from its poller: ``select.epoll``'s interface."""

    def register(self, fd: int, mask: int) -> None: ...
    def modify(self, fd: int, mask: int) -> None: ...
    def unregister(self, fd: int) -> None: ...
    def poll(self, timeout: float | None = None, maxevents: int = -1) -> list[tuple[int, int]]: ...
    def close(self) -> None: ...


# Programs may subclass the loop (the compiled build must be told so: mypyc_attr).
@mypyc_attr(allow_interpreted_subclasses=True)
class CoreLoop:
    """Runs callbacks: soon, at a deadline, or when a file descriptor is ready.

    The names, signatures and semantics follow asyncio's event loop. Programs use
    ``treadle.EventLoop``, this core plus asyncio's services.
    """

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._clock_time = self._clock.time
        # Invariant: every handle in _ready is run or skipped (if cancelled) exactly once.
        # (Typed "| Any", as treadle.aio queues asyncio's handles: the compiled build would
        # refuse what is not treadle's; and naming Handle and Task lets it read theirs
        # directly, not through Python's attribute lookup. _timers holds Any alike.)
        self._ready: deque[Handle | Task[Any] | Any] = deque()
        # Heap of (when, sequence, handle): ties fire in scheduling order.
        self._timers: list[tuple[float, int, Any]] = []
        self._timer_sequence = itertools.count().__next__
        # Invariant: how many cancelled handles are still in _timers.
        self._cancelled_timers = 0
        self._poller: Poller = self._make_poller()
        # fd -> interest mask registered with the poller by add_reader/add_writer.
        self._registered: dict[int, int] = {}
        self._readers: dict[int, Handle] = {}
        self._writers: dict[int, Handle] = {}
        self._stopping = False
        self._closed = False
        # The thread running run_forever(), or None when not running.
        self._thread_id: int | None = None
        # Debug mode is EventLoop's; the core only asks whether it is on.
        self._debug = False
        # Every task not yet done: the loop's strong reference keeps a task that nobody
        # else holds alive until it finishes. Task adds itself and removes itself.
        self._tasks: set[Task[Any]] = set()
        # The task whose step is running right now (set by Task._step).
        self._current_task: Task[Any] | None = None
        # Introspection's hooks (``treadle.introspect``), None unless it is asked for: the
        # hot path pays one test per new task and one per iteration for them. The task
        # observer is called with every new Task; the callback observer is a
        # ``treadle.loop.CallbackObserver``, told about every callback run.
        self._task_observer: Callable[[Task[Any]], object] | None = None
        self._callback_observer: object | None = None
        # EventLoop.set_task_factory's factory, or None to make a Task. Read here, not in an
        # EventLoop.create_task: compiled, that override cost every spawn a Python call.
        self._task_factory: Callable[..., Task[Any]] | None = None

    # --- running ------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run callbacks until ``stop()`` is called."""
        self._check_can_run()
        self._thread_id = threading.get_ident()
        set_running_loop(self)
        try:
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._stopping = False
            self._thread_id = None
            set_running_loop(None)

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

        # 2. How long may the poller block? Not at all if there is work ready.
        deadline = timers[0][0] if timers else None
        if ready or self._stopping:
            timeout = 0.0
        elif deadline is None:
            timeout = -1.0
        else:
            timeout = min(self._clock.sleep_time(deadline), _MAX_SELECT_TIMEOUT)

        # 3. Poll. With work ready and no descriptor registered there is nothing to poll
        # for. (EventLoop's wake-up socket is not in _registered: call_soon_threadsafe
        # appends to _ready itself, and only a loop that blocks needs waking.)
        if timeout != 0.0 or self._registered:
            events = self._poller.poll(timeout)
            if events:
                readers, writers = self._readers, self._writers
                for fd, mask in events:
                    # (Not "handle": that one holds what _ready holds, see there.)
                    if mask & _READ_EVENTS and (reader := readers.get(fd)) is not None:
                        _append(ready, reader)
                    if mask & _WRITE_EVENTS and (writer := writers.get(fd)) is not None:
                        _append(ready, writer)
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
                    _append(ready, timer)

        # 5. Run exactly the callbacks that are ready now; any they schedule wait for
        # the next iteration. (In debug mode, or while an observer is set, EventLoop
        # runs them, timing or reporting each.)
        ntodo = len(ready)
        if self._callback_observer is not None:
            self._run_ready_observed(ntodo, self._callback_observer)
            return
        if self._debug:
            self._run_ready_debug(ntodo)
            return
        # (Measured on 3.11: repeat() beats range(), and a call without *args skips
        # building a tuple per callback; _popleft(ready) costs the pure build no more than
        # ready.popleft(), and a bound method cached in a local more.)
        for _ in itertools.repeat(None, ntodo):
            handle = _popleft(ready)
            if handle._cancelled:
                continue
            try:
                if handle._args:
                    _run_in(handle._context, handle._callback, *handle._args)
                else:
                    _run_in(handle._context, handle._callback)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(handle, exc)
        # A coroutine's frame, kept by a traceback, links to this frame (f_back), which
        # keeps its locals once it returns (3.12+): forget the last callback, or its task
        # and the task's exception outlive them (asyncio's _run_once does the same).
        handle = None

    def stop(self) -> None:
        """Stop after the callbacks of the current iteration have run."""
        self._stopping = True

    def is_running(self) -> bool:
        """Whether ``run_forever`` (or ``run_until_complete``) is in progress."""
        return self._thread_id is not None

    def is_closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._closed

    def close(self) -> None:
        """Release the poller. Pending callbacks are discarded.

        Closing a closed loop does nothing; closing a running one raises RuntimeError.
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

    # --- time ---------------------------------------------------------------------------

    def time(self) -> float:
        """The loop's current time, from its clock."""
        return self._clock_time()

    # --- scheduling callbacks -----------------------------------------------------------

    def call_soon(self, callback: Callback, *args: Any, context: Context | None = None) -> Handle:
        """Run ``callback(*args)`` on the next iteration, after those already scheduled."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if not callable(callback):
            raise TypeError(f"call_soon() needs a callable, got {callback!r}")
        if self._debug:
            self._check_call("call_soon", callback)
        handle = Handle(callback, args, self, copy_context() if context is None else context)
        self._ready.append(handle)
        return handle

    def _schedule(self, callback: Callback, args: tuple[Any, ...], context: Context) -> None:
        """``call_soon`` for the core's own callbacks (Future's and Task's), known callables."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_call("call_soon", None)
        self._ready.append(Handle(callback, args, self, context))

    def call_later(
        self, delay: float, callback: Callback, *args: Any, context: Context | None = None
    ) -> TimerHandle:
        """Run ``callback(*args)`` after ``delay`` seconds (at once if ``delay <= 0``)."""
        if delay != delay:
            raise ValueError("call_later() delay is NaN; pass a number of seconds")
        return self.call_at(self._clock_time() + delay, callback, *args, context=context)

    def call_at(
        self, when: float, callback: Callback, *args: Any, context: Context | None = None
    ) -> TimerHandle:
        """Run ``callback(*args)`` once ``time()`` reaches ``when``."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if when != when:
            raise ValueError("call_at() deadline is NaN; pass a time from loop.time()")
        if not callable(callback):
            raise TypeError(f"call_at() needs a callable, got {callback!r}")
        if self._debug:
            self._check_call("call_at", callback)
        timer = TimerHandle(
            when, callback, args, self, copy_context() if context is None else context
        )
        timer._scheduled = True
        heappush(self._timers, (when, self._timer_sequence(), timer))
        return timer

    def _timer_handle_cancelled(self, handle: TimerHandle | Any) -> None:
        """A timer still in the heap was cancelled (called by ``TimerHandle.cancel``)."""
        self._cancelled_timers += 1

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

    # --- file descriptors ---------------------------------------------------------------

    def add_reader(self, fd: int | Any, callback: Callback, *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is readable, replacing any earlier reader."""
        self._watch("add_reader", self._readers, fd, callback, args)

    def remove_reader(self, fd: int | Any) -> bool:
        """Stop watching ``fd`` for reading; True if a reader was registered."""
        return self._unwatch(self._readers, fd)

    def add_writer(self, fd: int | Any, callback: Callback, *args: Any) -> None:
        """Call ``callback(*args)`` whenever ``fd`` is writable, replacing any earlier writer."""
        self._watch("add_writer", self._writers, fd, callback, args)

    def remove_writer(self, fd: int | Any) -> bool:
        """Stop watching ``fd`` for writing; True if a writer was registered."""
        return self._unwatch(self._writers, fd)

    def _watch(
        self,
        operation: str,
        table: dict[int, Handle],
        fileobj: int | Any,
        callback: Callback,
        args: tuple[Any, ...],
    ) -> None:
        """Register ``callback`` in ``table`` (readers or writers) for ``fileobj``."""
        self._check_closed()
        if self._debug:
            self._check_call(operation, None)
        fd = _fileno(fileobj)
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

    # --- futures and tasks --------------------------------------------------------------

    def create_future(self) -> Future[Any]:
        """A new pending ``Future`` bound to this loop."""
        return Future(loop=self)

    def create_task(
        self, coro: CoroutineLike[_T], *, name: str | None = None, context: Context | None = None
    ) -> Task[_T]:
        """Wrap a coroutine or generator in a ``Task`` (or the task factory's) and schedule it."""
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_call("create_task", None)
        factory = self._task_factory
        if factory is None:
            return Task(coro, loop=self, name=name, context=context)
        task = factory(self, coro, context=context)
        if name is not None:
            task.set_name(name)
        return task

    # --- errors -------------------------------------------------------------------------

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_can_run(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed: create a new one (or use treadle.run())")
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if getattr(running, "loop", None) is not None:  # see running.py
            raise RuntimeError(
                "Cannot run the event loop while another loop is running in this thread"
            )

    # --- hooks that treadle.loop.EventLoop fills in -------------------------------------

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        """Report an error nobody else can handle (EventLoop's exception-handler API)."""
        raise NotImplementedError("the exception-handler API is treadle.EventLoop's")

    def _callback_failed(self, handle: Handle | Any, exc: BaseException) -> None:
        """A callback raised ``exc``: report it (EventLoop's, to the exception handler)."""
        raise NotImplementedError("the exception-handler API is treadle.EventLoop's")

    def _make_poller(self) -> Poller:
        """The poller this loop waits in (EventLoop falls back to ``selectors`` without epoll)."""
        return select.epoll()

    def _check_call(self, operation: str, callback: Callback | None) -> None:
        """Debug mode's checks on a scheduling call (EventLoop's; the core makes none)."""

    def _run_ready_observed(self, ntodo: int, observer: Any) -> None:
        """Step 5 of ``_run_once`` while a callback observer is set (EventLoop's)."""
        raise NotImplementedError("callback observers are treadle.EventLoop's")

    def _run_ready_debug(self, ntodo: int) -> None:
        """Step 5 of ``_run_once`` in debug mode (EventLoop's: it times each callback)."""
        raise NotImplementedError("debug mode is treadle.EventLoop's")


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
