"""WaitQueue: the one FIFO queue of parked tasks under every lock, event and queue.

A task *parks* by awaiting a fresh Future in the queue; another task *unparks* it by
setting that Future's result. The subtle part of every synchronisation primitive, that
a cancelled waiter must leave the queue and must never swallow a wake-up meant for
another, is solved here once for Lock, Event, Condition, Semaphore and Queue.
Coordination layer: imports only ``treadle.loop`` and ``treadle.futures``.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Generator

from treadle.futures import Future
from treadle.loop import EventLoop, get_running_loop

__all__ = ["WaitQueue"]


class WaitQueue:
    """A FIFO queue of parked tasks that stays correct under cancellation.

    ``park()`` suspends the calling task until ``unpark()`` or ``unpark_all()`` wakes
    it; tasks are woken in the order they parked. The queue does not decide *when* a
    task may go on: the primitive built on it keeps that state (a ``locked`` flag, a
    count of permits, a buffer of items) and a woken task re-reads it.

    The hand-off rule lives here and nowhere else: a task woken by ``unpark()`` that is
    cancelled before it gets to run passes its wake-up to the next parked task, so a
    wake-up is never lost. (One woken by ``unpark_all()`` does not: everybody parked
    then was woken too, and whoever parked since must not be.) A primitive whose
    wake-up can go stale (a queue item taken meanwhile by ``get_nowait()``) passes a
    ``still_worth_passing`` check to ``park()``, so a stale wake-up dies with its task
    instead of sending the next task to the back of the queue for nothing.

    A parked task costs one Future and one deque slot, and no coroutine frame of its own.
    """

    __slots__ = ("_parked", "_woken")

    def __init__(self) -> None:
        # The futures of parked tasks not woken yet, oldest first. May also hold
        # cancelled futures whose tasks have not yet run to take them out; everything
        # that reads the deque skips those.
        self._parked: deque[_Waiter] = deque()
        # Invariant: how many tasks were woken and have not yet resumed from park().
        self._woken = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} parked={len(self) - self._woken} woken={self._woken}>"

    def __len__(self) -> int:
        """How many tasks are parked here and have not resumed yet, woken or not."""
        return self._woken + sum(1 for fut in self._parked if not fut.done())

    def __bool__(self) -> bool:
        """Whether any task is parked here and has not resumed yet, woken or not.

        A primitive asks this before letting a newcomer through, so that the newcomer
        queues behind tasks that are already waiting (or woken and about to run)
        instead of barging ahead of them.
        """
        if self._woken:
            return True
        parked = self._parked
        while parked:
            if not parked[0].done():
                return True
            parked.popleft()  # cancelled: its task has not run yet to take it out
        return False

    @property
    def woken(self) -> int:
        """How many tasks were woken and have not resumed from ``park()`` yet."""
        return self._woken

    def park(self, still_worth_passing: Callable[[], bool] | None = None) -> Future[bool]:
        """Queue the current task; ``await queue.park()`` suspends it until it is woken.

        The awaited value is True if ``unpark()`` woke the task, False if
        ``unpark_all()`` did. If the task is cancelled while parked, it leaves the queue
        and CancelledError propagates; if it had already been woken by ``unpark()``, the
        wake-up passes to the next task (only if ``still_worth_passing()`` says so, when
        given). Await the result at once, exactly once.
        """
        parked = self._parked
        loop = get_running_loop()
        if parked and parked[-1].get_loop() is not loop:
            raise RuntimeError(
                f"{self!r} has tasks of another event loop parked on it; a lock, event "
                "or queue can be shared only by the tasks of one loop"
            )
        waiter = _Waiter(self, loop, still_worth_passing)
        parked.append(waiter)
        return waiter

    def _leave(self, fut: _Waiter) -> None:
        """The task parked on ``fut`` is leaving by an exception (cancellation, mostly)."""
        if fut.done() and not fut.cancelled():
            # Woken, then cancelled before it could run. The wake-up was meant for
            # whoever was first in line; that is no longer this task.
            self._woken -= 1
            if fut.result() and (fut._still_worth_passing is None or fut._still_worth_passing()):
                self.unpark()
            return
        # Not woken. The future is still queued, unless unpark() already skipped it.
        parked = self._parked
        if parked and parked[-1] is fut:
            parked.pop()
        else:
            with contextlib.suppress(ValueError):
                parked.remove(fut)

    def unpark(self, count: int = 1) -> int:
        """Wake the first ``count`` parked tasks (fewer if fewer wait); how many woke.

        Each woken task resumes on a later loop iteration.
        """
        parked = self._parked
        if not parked:
            return 0
        woke = 0
        while woke < count and parked:
            fut = parked.popleft()
            if not fut.done():  # skip the cancelled
                fut.set_result(True)
                woke += 1
        self._woken += woke
        return woke

    def unpark_all(self) -> int:
        """Wake every parked task; how many woke. A wake-up from here is never passed on."""
        parked = self._parked
        woke = 0
        for fut in parked:
            if not fut.done():
                fut.set_result(False)
                woke += 1
        parked.clear()
        self._woken += woke
        return woke

    def unpark_for(self, available: int) -> int:
        """Wake parked tasks until ``available`` woken tasks are about to run; how many woke.

        For primitives that count something a woken task takes one unit of (permits,
        items, free slots): after taking, a task calls this with what is left, so that
        units nobody woken is counting on go to the tasks queued behind it.
        """
        return self.unpark(available - self._woken) if available > self._woken else 0


class _Waiter(Future[bool]):
    """The future a task parks on: also the one place a parked task resumes or leaves.

    Why a Future subclass rather than ``async def park()``: the bookkeeping runs inside
    the ``__await__`` generator every awaited future has anyway, so a parked task costs
    one future and a deque slot, not another coroutine frame as well (about 200 bytes
    each, and a crawler may park ten thousand tasks on one queue). It speaks the
    protocol every Task understands: ``_asyncio_future_blocking`` set, then yield self.
    """

    __slots__ = ("_queue", "_still_worth_passing")

    def __init__(
        self, queue: WaitQueue, loop: EventLoop, still_worth_passing: Callable[[], bool] | None
    ) -> None:
        super().__init__(loop=loop)
        self._queue = queue
        # Whether a wake-up this task cannot use should go to the next task (None: yes).
        self._still_worth_passing = still_worth_passing

    def __await__(self) -> Generator[Future[bool], None, bool]:
        try:
            if not self.done():
                self._asyncio_future_blocking = True
                yield self  # The Task resumes us once unpark() or a cancel is done with us.
                if not self.done():
                    raise RuntimeError(
                        "a coroutine was resumed before the future it awaits was done; "
                        "futures must be awaited by a treadle Task"
                    )
            woken_by_unpark = self.result()
        except BaseException:
            self._queue._leave(self)
            raise
        self._queue._woken -= 1
        return woken_by_unpark

    __iter__ = __await__  # ``yield from queue.park()`` in generator-based coroutines
