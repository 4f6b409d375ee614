"""``treadle.run``: the entry point that owns a loop from creation to close.

Starts a fresh loop, runs the main coroutine as a task, cancels whatever tasks are
left, closes asynchronous generators and the default executor, then closes the loop.
Ctrl-C cancels the main task so its ``finally`` blocks run, then raises
KeyboardInterrupt. Imports the core loop layer, ``futures`` and ``tasks``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Coroutine, Generator
from types import FrameType
from typing import Any, TypeVar

from treadle.core.clock import Clock
from treadle.core.futures import Future
from treadle.core.tasks import Task, iscoroutine
from treadle.errors import CancelledError
from treadle.loop import EventLoop, _get_running_loop, all_tasks

__all__ = ["new_event_loop", "run"]

_T = TypeVar("_T")


def new_event_loop() -> EventLoop:
    """A fresh event loop, not running; as ``asyncio.new_event_loop()``.

    Drive it with ``run_until_complete()`` or ``run_forever()`` and ``close()`` it when
    done. ``treadle.run()`` does all of that for you and is the usual entry point.
    """
    return EventLoop()


def run(
    main: Coroutine[Any, Any, _T] | Generator[Any, Any, _T],
    *,
    debug: bool | None = None,
    clock: Clock | None = None,
) -> _T:
    """Run ``main`` on a new event loop and return its result; close the loop after.

    ``debug=True`` turns on the loop's debug mode. ``clock`` replaces the real clock
    (``treadle.testing.VirtualClock`` runs timers on virtual time).
    """
    if _get_running_loop() is not None:
        if iscoroutine(main):
            main.close()
        raise RuntimeError(
            "treadle.run() cannot be called from a running event loop; "
            "await the coroutine (or create_task() it) instead"
        )
    if not iscoroutine(main):
        raise ValueError(
            f"treadle.run() needs a coroutine, got {main!r}; "
            "did you write run(main) instead of run(main())?"
        )
    loop = EventLoop(clock=clock)
    try:
        if debug:
            loop.set_debug(True)
        task = loop.create_task(main)
        with _CancelOnInterrupt(loop, task) as interrupt:
            try:
                return loop.run_until_complete(task)
            except CancelledError:
                if interrupt.count and task.uncancel() == 0:
                    raise KeyboardInterrupt() from None
                raise
            except BaseException:
                if task.done() and not task.cancelled():
                    task.exception()  # raised here: don't also report it as never retrieved
                # Re-raised as it is: the task trimmed its traceback already (unless in
                # debug mode), and raising it anew would show this line, not the call.
                raise
    finally:
        try:
            _cancel_leftover_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


class _CancelOnInterrupt:
    """While active, the first Ctrl-C cancels ``task`` instead of raising; a second one raises."""

    def __init__(self, loop: EventLoop, task: Task[Any]) -> None:
        self.loop = loop
        self.task = task
        self.count = 0
        self._previous: Any = None

    def __enter__(self) -> _CancelOnInterrupt:
        # Only the main thread receives signals, and only the default handler is ours to
        # replace: a program that installed its own SIGINT handler keeps it.
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1 and not self.task.done():
            self.task.cancel()
            # Wake the loop if it is blocked in the selector.
            self.loop.call_soon_threadsafe(_nothing)
            return
        raise KeyboardInterrupt()


def _nothing() -> None:
    """A callback that only wakes the loop."""


def _cancel_leftover_tasks(loop: EventLoop) -> None:
    """Cancel every task still running, wait for them, and report their errors."""
    leftover = all_tasks(loop)
    if not leftover:
        return
    for task in leftover:
        task.cancel()
    everything_done: Future[None] = loop.create_future()
    remaining = len(leftover)

    def one_done(_: Future[Any]) -> None:
        nonlocal remaining
        remaining -= 1
        if remaining == 0:
            everything_done.set_result(None)

    for task in leftover:
        task.add_done_callback(one_done)
    loop.run_until_complete(everything_done)
    for task in leftover:
        if task.cancelled():
            continue
        exc = task.exception()
        if exc is not None:
            loop.call_exception_handler(
                {
                    "message": "exception in a task still running when treadle.run() ended",
                    "exception": exc,
                    "task": task,
                }
            )
