"""treadle's event loop offered to asyncio: asyncio's services on treadle's scheduling.

``EventLoop`` is a subclass of treadle's ``EventLoop`` (first in the MRO) and of
asyncio's Unix selector loop. treadle's part is the engine: the ready queue, the timer
heap, the poller, the wake-up pipe and ``_run_once``, which calls every callback (here
in a version of its own, which runs the ready descriptors' callbacks straight from the
poll's results).
asyncio's part is everything built on an engine: its Future and Task (the C ones, so
libraries' ``isinstance`` checks hold), transports and protocols, servers, TLS,
sendfile, subprocesses, signals, ``sock_*``, DNS, executors, async generators, the
exception-handler API. Where both define a method, the class body below says which one
wins; ``tests/test_aio_loop.py`` pins the answer for every method of asyncio's
``AbstractEventLoop``, so a Python release that moves asyncio's internals fails loudly.

Side layer: imports asyncio, and treadle's loop, clock and errors.

The private names this module relies on, in one place (adapt them when they move):

treadle's loop (``treadle.loop.EventLoop``):
    ``_ready``            the ready queue (a deque of handles), appended to by asyncio's
                          ``call_soon`` and ``_add_callback``
    ``_timers``           the timer heap of ``(when, sequence, handle)``; ``call_at`` below
    ``_timer_sequence``   the tie-breaker counter for ``_timers``
    ``_timer_handle_cancelled``  counts a cancelled timer still in the heap
    ``_closed``, ``_stopping``, ``_thread_id``, ``_debug``  shared state, same meaning
                          in both loops
    ``_drain_self_pipe``  the wake-up pipe's reader callback (overridden: signals)
    ``_self_reader``, ``_self_writer``  the wake-up socketpair (asyncio's ``_ssock``,
                          ``_csock``)
    ``_callback_failed``  reports a callback's exception (overridden: asyncio's wording)
    ``_run_ready_debug``  runs the ready callbacks in debug mode (overridden: asyncio's
                          slow-callback log and ``_current_handle``)
    ``_run_once``         one iteration (overridden by ``treadle.aio.engine._run_once``:
                          the same steps, the descriptors' callbacks from a list of
                          their own); that reads ``_poller``,
                          ``_registered``, ``_readers``, ``_writers`` (fd -> argument-less
                          handle), ``_clock``, ``_clock_time``, ``_cancelled_timers``,
                          ``_purge_cancelled_timers``, ``_callback_observer`` and
                          ``treadle.core.loop``'s ``_POLLIN``, ``_READ_EVENTS``,
                          ``_WRITE_EVENTS``, ``_MAX_SELECT_TIMEOUT``,
                          ``_MIN_CANCELLED_TIMERS_TO_PURGE``, and falls back to
                          ``CoreLoop._run_once`` in debug mode and under an observer
    ``_check_thread``     the debug-mode thread check (overridden: both signatures)
    ``_asyncgen_firstiter``, ``_asyncgen_finalizer``  the hooks ``run_forever`` installs
    ``_current_task``, ``_tasks``  read by ``treadle.current_task``/``all_tasks``
                          (overridden: asyncio's current and live tasks)
    ``_loop_for_asyncio``  what ``run_forever`` registers as asyncio's running loop
asyncio (``asyncio.base_events``, ``selector_events``, ``unix_events``, ``events``):
    ``_add_reader``, ``_remove_reader``, ``_add_writer``, ``_remove_writer``  how its
                          transports watch file descriptors (routed to treadle's poller)
    ``_selector``         its transports read ``get_map()``/``get_key()``; None once closed
    ``_make_socket_transport``, ``_make_ssl_transport``  how its methods make stream
                          transports (treadle.aio.transport's unless transport="asyncio")
    ``_transports``, ``_signal_handlers``, ``_unix_server_sockets``, ``_ssock``,
    ``_csock``, ``_internal_fds``  state its methods expect, set up by ``__init__``
    ``_scheduled``, ``_timer_cancelled_count``  removed after ``BaseEventLoop.__init__``:
                          its ``_run_once``, their only reader, never runs here
    ``unix_events.sys``   ``close()`` asks it whether the interpreter is finalizing
    ``_process_self_data``, ``_read_from_self``  signal numbers through the wake-up pipe
    ``_check_running``, ``_check_closed``  its "already running" checks
    ``_asyncgen_firstiter_hook``, ``_asyncgen_finalizer_hook``  its async generator hooks
    ``_timer_handle_cancelled``  what its ``TimerHandle.cancel`` calls
    ``format_helpers._format_callback_source``  the wording of callback errors
    ``base_events.logger``, ``base_events._format_handle``, ``_current_handle``  debug
                          mode's slow-callback warning
    ``events._get_running_loop``  who runs (via ``treadle.asyncio_stand_in``)
    ``CancelledError.__bases__``  made a subclass of treadle's CancelledError
    ``selectors._fileobj_to_fd``  a file object's descriptor, refused in asyncio's words
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import selectors
import socket
import time
import types
import warnings
import weakref
from asyncio import base_events, events, format_helpers, unix_events
from collections.abc import Iterator, Mapping
from heapq import heappush
from typing import TYPE_CHECKING, Any

import treadle.errors
from treadle.aio import transport as treadle_transport
from treadle.aio.engine import _run_once as run_once_from_poll
from treadle.core.clock import Clock
from treadle.core.loop import CoreLoop
from treadle.loop import EventLoop as TreadleLoop

__all__ = ["EventLoop"]

# The engine's run-once is a Python function (the pure build), which binds as a method,
# or compiled (a builtin function, which does not).
_RUN_ONCE_IS_PYTHON = isinstance(run_once_from_poll, types.FunctionType)


def _call_compiled_run_once(loop: CoreLoop) -> None:
    """One iteration of treadle's loop (``treadle.aio.engine._run_once``, compiled)."""
    run_once_from_poll(loop)

# One cancellation, two names: ``except treadle.CancelledError`` (in TaskGroup, timeout
# and the rest of treadle's code) also catches what asyncio's tasks throw. Possible
# because treadle's CancelledError has BaseException's layout (see treadle.errors).
if treadle.errors.CancelledError not in asyncio.CancelledError.__mro__:
    asyncio.CancelledError.__bases__ = (treadle.errors.CancelledError,)

_AsyncioLoop = asyncio.SelectorEventLoop  # asyncio.unix_events._UnixSelectorEventLoop
# The same class, for calling its private methods (typeshed does not declare them).
_asyncio_private: Any = _AsyncioLoop
_asyncio_base_events: Any = base_events
_asyncio_unix_events: Any = unix_events
_selectors_private: Any = selectors
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
# asyncio's handles, made by call_soon and call_at without their __init__ (see there).
_Handle: Any = events.Handle
_TimerHandle: Any = events.TimerHandle
_new_object = object.__new__
_copy_context = contextvars.copy_context
# Which transport serves TCP and UNIX streams when the loop is not told: "treadle"
# (treadle.aio.transport) unless this variable says "asyncio" (asyncio's own, the oracle).
TRANSPORT_ENV = "TREADLE_AIO_TRANSPORT"
TRANSPORTS = ("treadle", "asyncio")


def _choose_transport(transport: str | None) -> str:
    source = "transport="
    if transport is None:
        transport, source = os.environ.get(TRANSPORT_ENV) or "treadle", f"${TRANSPORT_ENV}="
    if transport not in TRANSPORTS:
        raise ValueError(
            f"{source}{transport!r} names no stream transport: "
            f"use 'treadle' (treadle's own) or 'asyncio' (asyncio's)"
        )
    return transport


class _Registrations(Mapping[Any, selectors.SelectorKey]):
    """fd -> ``SelectorKey(fileobj, fd, events, (reader, writer))``, as asyncio's selector keeps.

    Looked up by descriptor or by file object; a closed socket object is still found by
    identity, so removing the reader of a socket closed first works (as in selectors).
    """

    def __init__(self) -> None:
        self.by_fd: dict[int, selectors.SelectorKey] = {}

    def fd_of(self, fileobj: Any) -> int:
        try:
            return int(_selectors_private._fileobj_to_fd(fileobj))
        except ValueError:
            for key in self.by_fd.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    def __getitem__(self, fileobj: Any) -> selectors.SelectorKey:
        try:
            return self.by_fd[self.fd_of(fileobj)]
        except ValueError:
            raise KeyError(fileobj) from None

    def __iter__(self) -> Iterator[Any]:
        return iter(self.by_fd)

    def __len__(self) -> int:
        return len(self.by_fd)


class _SelectorView:
    """What asyncio's transports read from ``loop._selector``: ``get_map()`` and ``get_key()``."""

    def __init__(self, registrations: _Registrations) -> None:
        self._registrations = registrations

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._registrations

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        try:
            return self._registrations[fileobj]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None


class EventLoop(TreadleLoop, _AsyncioLoop):  # type: ignore[misc]
    """An ``asyncio.AbstractEventLoop`` whose scheduling is treadle's loop.

    Make one with ``treadle.aio.new_event_loop()``, or let ``treadle.aio.run()``,
    ``asyncio.run(..., loop_factory=treadle.aio.new_event_loop)`` or
    ``asyncio.Runner(loop_factory=...)`` make it. Inside it, asyncio code and treadle's
    own API (``treadle.sleep``, streams, ``treadle.timeout``, ``TaskGroup``, the HTTP
    client) run side by side. ``clock`` replaces the real clock, as in ``treadle.run``.
    ``transport`` picks what serves TCP and UNIX stream connections: ``"treadle"``
    (``treadle.aio.transport``, the default) or ``"asyncio"`` (asyncio's own); by
    default the environment variable ``TREADLE_AIO_TRANSPORT`` decides.
    """

    def __init__(self, *, clock: Clock | None = None, transport: str | None = None) -> None:
        try:
            self._stream_transport = _choose_transport(transport)
        except ValueError:
            self._closed = True  # never opened: nothing for __del__ to close or warn about
            raise
        TreadleLoop.__init__(self, clock=clock)
        # asyncio's own state, on top: the attributes both loops share (_ready,
        # _closed, _debug, _default_executor, ...) mean the same in both.
        base_events.BaseEventLoop.__init__(self)
        # Its timer heap and counter: treadle's _timers is the one that runs.
        for name in ("_scheduled", "_timer_cancelled_count"):
            delattr(self, name)
        # What BaseSelectorEventLoop and _UnixSelectorEventLoop set up.
        self._registrations = _Registrations()
        self._selector_view = _SelectorView(self._registrations)
        self._ssock: socket.socket | None = self._self_reader
        self._csock: socket.socket | None = self._self_writer
        self._internal_fds = 1
        self._transports: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
        self._signal_handlers: dict[int, Any] = {}
        self._unix_server_sockets: dict[Any, Any] = {}
        self._treadle_current_task: Any = None

    # --- treadle's engine, asyncio's handles -------------------------------------------
    # call_soon appends asyncio's Handle to _ready (treadle's queue); call_at puts
    # asyncio's TimerHandle in treadle's heap. Handles are asyncio's so that debug mode has
    # their _source_traceback and isinstance(handle, asyncio.TimerHandle) holds. Outside
    # debug mode both make the handle themselves: asyncio's call_soon is five Python calls
    # (call_soon, _check_closed, _call_soon, Handle.__init__, get_debug), and every future's
    # callback and every task step comes through it. In debug mode, and on a closed loop,
    # asyncio's own methods run, with their checks and errors. call_later and
    # call_soon_threadsafe are asyncio's (they call these).

    if not TYPE_CHECKING:  # mypy sees treadle's signatures; asyncio's are typed apart
        call_soon_threadsafe = _AsyncioLoop.call_soon_threadsafe
        call_later = _AsyncioLoop.call_later

    def call_soon(  # type: ignore[override]
        self, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.Handle:
        """Run ``callback(*args)`` in ``context`` (a copy of the current one by default) soon."""
        handle: Any
        if self._debug or self._closed:
            handle = _AsyncioLoop.call_soon(self, callback, *args, context=context)
            if handle._source_traceback:
                del handle._source_traceback[-1]  # this frame: the trace ends at the caller
            return handle  # type: ignore[no-any-return]
        # What Handle.__init__ sets outside debug mode (tests/test_aio_loop.py checks the
        # slots against asyncio's, so a release that adds one fails loudly).
        handle = _new_object(_Handle)
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._loop = self
        handle._source_traceback = None
        handle._repr = None
        handle._context = _copy_context() if context is None else context
        self._ready.append(handle)
        return handle  # type: ignore[no-any-return]

    def call_at(  # type: ignore[override]
        self, when: float, callback: Any, *args: Any, context: Any = None
    ) -> asyncio.TimerHandle:
        """Run ``callback(*args)`` once ``time()`` reaches ``when``."""
        if when is None:
            raise TypeError("when cannot be None")
        if self._debug or self._closed:
            self._check_closed()
            self._check_thread()
            _asyncio_private._check_callback(self, callback, "call_at")
            timer: Any = events.TimerHandle(when, callback, args, self, context)
            if timer._source_traceback:
                del timer._source_traceback[-1]
        else:
            timer = _new_object(_TimerHandle)  # as call_soon makes its Handle
            timer._callback = callback
            timer._args = args
            timer._cancelled = False
            timer._loop = self
            timer._source_traceback = None
            timer._repr = None
            timer._context = _copy_context() if context is None else context
            timer._when = when
        heappush(self._timers, (when, self._timer_sequence(), timer))
        timer._scheduled = True
        return timer  # type: ignore[no-any-return]

    # One iteration of treadle's loop, with readiness callbacks run straight from the poll:
    # treadle.aio.engine._run_once (read it there; it hands debug mode and an
    # introspection observer to the core's own). In the pure build that function is the
    # method itself, one Python call per iteration fewer; compiled, it is a builtin
    # function, which does not bind as a method, so a one-line function calls it.
    _run_once = run_once_from_poll if _RUN_ONCE_IS_PYTHON else _call_compiled_run_once

    def _timer_handle_cancelled(self, handle: Any) -> None:
        # asyncio's TimerHandle reports every cancel; only one still in the heap counts.
        if handle._scheduled:
            TreadleLoop._timer_handle_cancelled(self, handle)

    def _check_thread(self, operation: str | None = None) -> None:
        # Both loops' code calls this: treadle's with the operation's name.
        _asyncio_private._check_thread(self)

    def _run_ready_debug(self, ntodo: int) -> None:
        # Step 5 of treadle's _run_once in debug mode, as asyncio's debug mode runs it:
        # _current_handle set, slow callbacks logged by asyncio's logger in its words.
        popleft = self._ready.popleft
        handle: Any = None
        for _ in range(ntodo):
            handle = popleft()
            if handle._cancelled:
                continue
            self._current_handle: Any = handle
            started = time.monotonic()
            try:
                if isinstance(handle, events.Handle):
                    handle._run()  # reports its own exception
                else:
                    handle._context.run(handle._callback, *handle._args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._callback_failed(handle, exc)
            finally:
                took = time.monotonic() - started
                self._current_handle = None
            if took >= self.slow_callback_duration:
                # A descriptor's treadle handle runs an asyncio handle: name that one.
                shown: Any = handle
                if not isinstance(handle, events.Handle):
                    shown = getattr(handle._callback, "__self__", handle)
                _asyncio_base_events.logger.warning(
                    "Executing %s took %.3f seconds",
                    _asyncio_base_events._format_handle(shown),
                    took,
                )
        # As in treadle's _run_once: a frame kept by a traceback must not keep the last
        # callback (and through it a finished task) alive.
        handle = shown = None

    def _callback_failed(self, handle: Any, exc: BaseException) -> None:
        cb = format_helpers._format_callback_source(handle._callback, handle._args)
        context = {"message": f"Exception in callback {cb}", "exception": exc, "handle": handle}
        if getattr(handle, "_source_traceback", None):
            context["source_traceback"] = handle._source_traceback
        self.call_exception_handler(context)

    # --- running -------------------------------------------------------------------------

    def run_forever(self) -> None:
        """Run callbacks until ``stop()`` is called."""
        self._check_closed()
        _asyncio_private._check_running(self)  # asyncio's: no other loop runs here
        TreadleLoop.run_forever(self)

    def _loop_for_asyncio(self) -> object:
        return self

    if not TYPE_CHECKING:  # mypy sees treadle's signatures; asyncio's are typed apart
        run_until_complete = _AsyncioLoop.run_until_complete
        _asyncgen_firstiter = _AsyncioLoop._asyncgen_firstiter_hook
        _asyncgen_finalizer = _AsyncioLoop._asyncgen_finalizer_hook
        is_running = _AsyncioLoop.is_running
        is_closed = _AsyncioLoop.is_closed
        stop = _AsyncioLoop.stop
        time = TreadleLoop.time

    def close(self) -> None:
        """Close the loop: signal handlers, the default executor, the poller, the pipe."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        # asyncio's Unix loop's own policy for its signal handlers (sys as its module
        # sees it, so that its tests' patches of asyncio.unix_events.sys apply).
        if _asyncio_unix_events.sys.is_finalizing():
            if self._signal_handlers:
                warnings.warn(
                    f"Closing the loop {self!r} on interpreter shutdown "
                    "stage, skipping signal handlers removal",
                    ResourceWarning,
                    stacklevel=2,
                    source=self,
                )
                self._signal_handlers.clear()
        else:
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        self._executor_shutdown_called = True
        TreadleLoop.close(self)
        # asyncio's view of the wake-up pipe, closed with it.
        self._ssock = self._csock = None
        self._internal_fds -= 1

    # --- stream transports: treadle's own unless asked for asyncio's ---------------------

    def _make_socket_transport(
        self, sock: Any, protocol: Any, waiter: Any = None, **kwargs: Any
    ) -> Any:
        if self._stream_transport == "asyncio":
            return _asyncio_private._make_socket_transport(self, sock, protocol, waiter, **kwargs)
        return treadle_transport.make_socket_transport(self, sock, protocol, waiter, **kwargs)

    def _make_ssl_transport(
        self, rawsock: Any, protocol: Any, sslcontext: Any, waiter: Any = None, **kwargs: Any
    ) -> Any:
        if self._stream_transport == "asyncio":
            return _asyncio_private._make_ssl_transport(
                self, rawsock, protocol, sslcontext, waiter, **kwargs
            )
        return treadle_transport.make_ssl_transport(
            self, rawsock, protocol, sslcontext, waiter, **kwargs
        )

    # --- file descriptors: asyncio's registrations on treadle's poller -----------------

    @property
    def _selector(self) -> _SelectorView | None:
        return None if self._closed else self._selector_view

    def _add_reader(self, fd: Any, callback: Any, *args: Any) -> events.Handle:
        return self._watch_fd(fd, _READ, callback, args)

    def _add_writer(self, fd: Any, callback: Any, *args: Any) -> events.Handle:
        return self._watch_fd(fd, _WRITE, callback, args)

    def _remove_reader(self, fd: Any) -> bool:
        return self._unwatch_fd(fd, _READ)

    def _remove_writer(self, fd: Any) -> bool:
        return self._unwatch_fd(fd, _WRITE)

    def _watch_fd(self, fileobj: Any, event: int, callback: Any, args: Any) -> events.Handle:
        self._check_closed()
        handle = events.Handle(callback, args, self, None)
        self._set_fd_handle(fileobj, self._registrations.fd_of(fileobj), event, handle)
        return handle

    def _unwatch_fd(self, fileobj: Any, event: int) -> bool:
        if self._closed:
            return False
        try:
            fd = self._registrations.fd_of(fileobj)
        except ValueError:
            return False
        return self._set_fd_handle(fileobj, fd, event, None) is not None

    def _set_fd_handle(
        self, fileobj: Any, fd: int, event: int, handle: events.Handle | None
    ) -> events.Handle | None:
        """Make ``handle`` (None: nothing) ``fd``'s callback for ``event`` (read or write),
        in the registrations and on treadle's poller; cancel and return the one it replaces."""
        by_fd = self._registrations.by_fd
        key = by_fd.get(fd)
        reader, writer = (None, None) if key is None else key.data
        mask = 0 if key is None else key.events
        if event == _READ:
            old, reader = reader, handle
        else:
            old, writer = writer, handle
        if handle is not None:
            watch = TreadleLoop.add_reader if event == _READ else TreadleLoop.add_writer
            watch(self, fd, handle._run)
            mask |= event
        elif mask & event:
            unwatch = TreadleLoop.remove_reader if event == _READ else TreadleLoop.remove_writer
            unwatch(self, fd)
            mask &= ~event
        if mask:
            owner = fileobj if key is None else key.fileobj
            by_fd[fd] = selectors.SelectorKey(owner, fd, mask, (reader, writer))
        elif key is not None:
            del by_fd[fd]
        if old is not None:
            old.cancel()
        return old

    if not TYPE_CHECKING:  # mypy sees treadle's signatures; asyncio's are typed apart
        add_reader = _AsyncioLoop.add_reader
        remove_reader = _AsyncioLoop.remove_reader
        add_writer = _AsyncioLoop.add_writer
        remove_writer = _AsyncioLoop.remove_writer

    def has_reader(self, fd: Any) -> bool:
        """Whether a reader callback is registered for ``fd``."""
        key = self._registrations.get(fd)
        return key is not None and bool(key.events & _READ)

    def has_writer(self, fd: Any) -> bool:
        """Whether a writer callback is registered for ``fd``."""
        key = self._registrations.get(fd)
        return key is not None and bool(key.events & _WRITE)

    # The wake-up pipe also carries signal numbers (signal.set_wakeup_fd).
    if not TYPE_CHECKING:  # mypy sees treadle's signatures; asyncio's are typed apart
        _drain_self_pipe = _asyncio_private._read_from_self

    # --- treadle's task lookups see asyncio's tasks ------------------------------------

    @property
    def _current_task(self) -> Any:
        task = self._treadle_current_task
        return asyncio.current_task(self) if task is None else task

    @_current_task.setter
    def _current_task(self, task: Any) -> None:
        self._treadle_current_task = task

    @property
    def _tasks(self) -> set[Any]:
        return asyncio.all_tasks(self)

    @_tasks.setter
    def _tasks(self, tasks: set[Any]) -> None:
        if tasks:
            raise RuntimeError("treadle.aio's loop runs asyncio's tasks, not treadle's")

    # --- everything else is asyncio's ---------------------------------------------------

    if not TYPE_CHECKING:  # mypy sees treadle's signatures; asyncio's are typed apart
        create_future = _AsyncioLoop.create_future
        create_task = _AsyncioLoop.create_task
        set_task_factory = _AsyncioLoop.set_task_factory
        get_task_factory = _AsyncioLoop.get_task_factory
        run_in_executor = _AsyncioLoop.run_in_executor
        set_default_executor = _AsyncioLoop.set_default_executor
        shutdown_default_executor = _AsyncioLoop.shutdown_default_executor
        shutdown_asyncgens = _AsyncioLoop.shutdown_asyncgens
        sock_recv = _AsyncioLoop.sock_recv
        sock_recv_into = _AsyncioLoop.sock_recv_into
        sock_recvfrom = _AsyncioLoop.sock_recvfrom
        sock_recvfrom_into = _AsyncioLoop.sock_recvfrom_into
        sock_sendall = _AsyncioLoop.sock_sendall
        sock_sendto = _AsyncioLoop.sock_sendto
        sock_connect = _AsyncioLoop.sock_connect
        sock_accept = _AsyncioLoop.sock_accept
        getaddrinfo = _AsyncioLoop.getaddrinfo
        getnameinfo = _AsyncioLoop.getnameinfo
        set_exception_handler = _AsyncioLoop.set_exception_handler
        get_exception_handler = _AsyncioLoop.get_exception_handler
        default_exception_handler = _AsyncioLoop.default_exception_handler
        call_exception_handler = _AsyncioLoop.call_exception_handler
        get_debug = _AsyncioLoop.get_debug
        set_debug = _AsyncioLoop.set_debug
        _check_closed = _AsyncioLoop._check_closed
        __repr__ = _AsyncioLoop.__repr__
