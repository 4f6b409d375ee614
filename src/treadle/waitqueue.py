"""WaitQueue: the one FIFO queue of waiting tasks under every lock, event and queue.

A task *parks* here through the core's suspend/resume seam (``treadle.core.tasks``);
another task *unparks* it by resuming it. The subtle part of every synchronisation
primitive, that a cancelled waiter must leave the queue and must never swallow a
wake-up meant for another, is solved here once for Lock, Event, Condition, Semaphore
and Queue. Coordination layer: imports only the core.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable

from treadle.core.running import get_running_loop
from treadle.core.tasks import Waiter, current_waiter, is_suspended, resume, suspend

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

    A parked task costs a deque slot and the ``park()`` generator, no Future.
    """

    __slots__ = ("_parked", "_woken")

    def __init__(self) -> None:
        # The waiters of parked tasks not woken yet, oldest first. May also hold tasks
        # cancelled but not yet run to take themselves out; everything that reads the
        # deque skips those (they are no longer suspended).
        self._parked: deque[Waiter] = deque()
        # The tasks woken and not yet resumed from park(), each with whether unpark()
        # (True) or unpark_all() (False) woke it. Invariant: none of them is in _parked.
        self._woken: dict[Waiter, bool] = {}

    def __repr__(self) -> str:
        woken = len(self._woken)
        return f"<{type(self).__name__} parked={len(self) - woken} woken={woken}>"

    def __len__(self) -> int:
        """How many tasks are parked here and have not resumed yet, woken or not."""
        return len(self._woken) + sum(1 for waiter in self._parked if is_suspended(waiter))

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
            if is_suspended(parked[0]):
                return True
            parked.popleft()  # cancelled: its task has not run yet to take it out
        return False

    @property
    def woken(self) -> int:
        """How many tasks were woken and have not resumed from ``park()`` yet."""
        return len(self._woken)

    # A coroutine function, not a @types.coroutine generator: the compiled build cannot
    # await a generator of its own made that way.
    async def park(self, still_worth_passing: Callable[[], bool] | None = None) -> bool:
        """Queue the current task; ``await queue.park()`` suspends it until it is woken.

        The awaited value is True if ``unpark()`` woke the task, False if
        ``unpark_all()`` did. If the task is cancelled while parked, it leaves the queue
        and CancelledError propagates; if it had already been woken by ``unpark()``, the
        wake-up passes to the next task (only if ``still_worth_passing()`` says so, when
        given). Await it at once, exactly once.
        """
        # (self._parked read twice, not held in a local: one slot fewer in this
        # coroutine's frame keeps a parked task 16 bytes smaller on Python 3.13.)
        if self._parked and self._parked[-1].get_loop() is not get_running_loop():
            raise RuntimeError(
                f"{self!r} has tasks of another event loop parked on it; a lock, event "
                "or queue can be shared only by the tasks of one loop"
            )
        waiter = current_waiter()
        self._parked.append(waiter)
        try:
            await suspend(waiter)
        except BaseException:
            self._leave(waiter, still_worth_passing)
            raise
        return self._woken.pop(waiter)

    def _leave(self, waiter: Waiter, still_worth_passing: Callable[[], bool] | None) -> None:
        """The task parked on ``waiter`` is leaving by an exception (cancellation, mostly)."""
        woken_by_unpark = self._woken.pop(waiter, None)
        if woken_by_unpark is not None:
            # Woken, then cancelled before it could run. The wake-up was meant for
            # whoever was first in line; that is no longer this task.
            if woken_by_unpark and (still_worth_passing is None or still_worth_passing()):
                self.unpark()
            return
        # Not woken. The waiter is still queued, unless unpark() already skipped it.
        parked = self._parked
        if parked and parked[-1] is waiter:
            parked.pop()
        else:
            with contextlib.suppress(ValueError):
                parked.remove(waiter)

    def unpark(self, count: int = 1) -> int:
        """Wake the first ``count`` parked tasks (fewer if fewer wait); how many woke.

        Each woken task resumes on a later loop iteration.
        """
        parked = self._parked
        if not parked:
            return 0
        woke = 0
        woken = self._woken
        while woke < count and parked:
            waiter = parked.popleft()
            if resume(waiter, True):  # False: cancelled meanwhile, skipped
                woken[waiter] = True
                woke += 1
        return woke

    def unpark_all(self) -> int:
        """Wake every parked task; how many woke. A wake-up from here is never passed on."""
        parked, self._parked = self._parked, deque()
        woke = 0
        woken = self._woken
        for waiter in parked:
            if resume(waiter, False):
                woken[waiter] = False
                woke += 1
        return woke

    def unpark_for(self, available: int) -> int:
        """Wake parked tasks until ``available`` woken tasks are about to run; how many woke.

        For primitives that count something a woken task takes one unit of (permits,
        items, free slots): after taking, a task calls this with what is left, so that
        units nobody woken is counting on go to the tasks queued behind it.
        """
        woken = len(self._woken)
        return self.unpark(available - woken) if available > woken else 0
