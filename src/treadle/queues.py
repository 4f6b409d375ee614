"""Queues for passing items between tasks: Queue (FIFO), PriorityQueue and LifoQueue.

Same names, API and semantics as asyncio's, including ``shutdown()`` from Python 3.13:
``get()`` returns at once when an item is there and ``put()`` at once when there is
room, even if other tasks were woken for them and have not run yet (those look again,
and wait again at the back of the line if they find nothing). Blocked getters and
putters park on a ``WaitQueue``, so a cancelled ``get()`` never loses an item and a
cancelled ``put()`` never inserts one. Coordination layer: imports ``treadle.errors``
and ``treadle.waitqueue``.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Generic, TypeVar

from treadle.errors import QueueEmpty, QueueFull, QueueShutDown
from treadle.waitqueue import WaitQueue

__all__ = ["LifoQueue", "PriorityQueue", "Queue", "QueueEmpty", "QueueFull", "QueueShutDown"]

_T = TypeVar("_T")


class Queue(Generic[_T]):
    """A first-in, first-out queue of items between tasks.

    ``maxsize`` bounds how many items it holds: ``put()`` waits while it is full. Zero
    (the default) means no bound. ``join()`` waits until every item put has been marked
    done with ``task_done()``.
    """

    def __init__(self, maxsize: int = 0) -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"Queue maxsize must be an int, got {maxsize!r}")
        if maxsize < 0:
            raise ValueError(f"Queue maxsize must be >= 0 (0 means unbounded), got {maxsize}")
        self._maxsize = maxsize
        # The items: a deque here; subclasses choose their container in _init().
        self._queue: Any = None
        self._init(maxsize)
        # Tasks waiting for an item, and for a free slot. A woken task re-checks the
        # queue: what it was woken for may have been taken since.
        self._getters = WaitQueue()
        self._putters = WaitQueue()
        # Tasks waiting in join(), woken all at once when _unfinished drops to zero.
        self._joiners = WaitQueue()
        # Items put and not yet marked done with task_done().
        self._unfinished = 0
        self._is_shutdown = False

    # --- the container: subclasses override these three ------------------------------

    def _init(self, maxsize: int) -> None:
        self._queue = deque()

    def _put(self, item: _T) -> None:
        self._queue.append(item)

    def _get(self) -> _T:
        return self._queue.popleft()  # type: ignore[no-any-return]

    # --- state ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        parts = [f"maxsize={self._maxsize!r}"]
        if self._queue:
            parts.append(f"_queue={list(self._queue)!r}")
        if self._getters:
            parts.append(f"_getters[{len(self._getters)}]")
        if self._putters:
            parts.append(f"_putters[{len(self._putters)}]")
        if self._unfinished:
            parts.append(f"tasks={self._unfinished}")
        if self._is_shutdown:
            parts.append("shutdown")
        return f"<{type(self).__name__} at {id(self):#x} {' '.join(parts)}>"

    @property
    def maxsize(self) -> int:
        """The most items the queue holds (0: no bound)."""
        return self._maxsize

    def qsize(self) -> int:
        """How many items are in the queue."""
        return len(self._queue)

    def empty(self) -> bool:
        """Whether the queue holds no item."""
        return not self._queue

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items (never, if ``maxsize`` is 0)."""
        return 0 < self._maxsize <= len(self._queue)

    # --- putting ---------------------------------------------------------------------

    async def put(self, item: _T) -> None:
        """Put ``item`` in the queue, waiting while it is full.

        QueueShutDown if the queue is shut down. If cancelled, the item is not put.
        """
        while self.full():
            if self._is_shutdown:
                raise QueueShutDown("put() on a queue that is shut down")
            await self._putters.park(self._has_room)
        self.put_nowait(item)

    def _has_room(self) -> bool:
        return not self.full()

    def put_nowait(self, item: _T) -> None:
        """Put ``item`` in the queue at once; QueueFull if it is full.

        QueueShutDown if the queue is shut down.
        """
        if self._is_shutdown:
            raise QueueShutDown("put_nowait() on a queue that is shut down")
        if self.full():
            raise QueueFull(f"the queue is full ({self._maxsize} items)")
        self._put(item)
        self._unfinished += 1
        self._getters.unpark()

    # --- getting ----------------------------------------------------------------------

    async def get(self) -> _T:
        """Remove and return an item, waiting while the queue is empty.

        QueueShutDown if the queue is shut down and empty (or was shut down with
        ``immediate=True``). If cancelled, no item is taken.
        """
        while not self._queue:
            if self._is_shutdown:
                raise QueueShutDown("get() on a queue that is shut down and empty")
            await self._getters.park(self._has_items)
        return self.get_nowait()

    def _has_items(self) -> bool:
        return bool(self._queue)

    def get_nowait(self) -> _T:
        """Remove and return an item at once; QueueEmpty if there is none.

        QueueShutDown instead if the queue is empty and shut down.
        """
        if not self._queue:
            if self._is_shutdown:
                raise QueueShutDown("get_nowait() on a queue that is shut down and empty")
            raise QueueEmpty("the queue is empty")
        item = self._get()
        self._putters.unpark()
        return item

    # --- tracking work ----------------------------------------------------------------

    def task_done(self) -> None:
        """Mark one item taken from the queue as processed; wakes ``join()`` after the last.

        ValueError if called more times than items were put.
        """
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if self._unfinished == 0:
            self._joiners.unpark_all()

    async def join(self) -> None:
        """Wait until every item put in the queue has been marked done with ``task_done()``."""
        if self._unfinished > 0:
            await self._joiners.park()

    # --- shutting down ----------------------------------------------------------------

    def shutdown(self, immediate: bool = False) -> None:
        """Shut the queue down: ``put()`` raises QueueShutDown from now on.

        ``get()`` goes on returning items until the queue is empty, then raises
        QueueShutDown. With ``immediate=True`` the items left are dropped (each counts as
        done for ``join()``) and ``get()`` raises at once. Every blocked ``put()`` and
        ``get()`` wakes up to find out.
        """
        self._is_shutdown = True
        if immediate:
            while self._queue:
                self._get()
                if self._unfinished > 0:
                    self._unfinished -= 1
            if self._unfinished == 0:
                self._joiners.unpark_all()
        self._getters.unpark_all()
        self._putters.unpark_all()


class PriorityQueue(Queue[_T]):
    """A queue that returns the smallest item first (a heap; ``(priority, data)`` pairs work)."""

    def _init(self, maxsize: int) -> None:
        self._queue = []

    def _put(self, item: _T) -> None:
        heapq.heappush(self._queue, item)

    def _get(self) -> _T:
        return heapq.heappop(self._queue)  # type: ignore[no-any-return]


class LifoQueue(Queue[_T]):
    """A queue that returns the most recently put item first (a stack)."""

    def _init(self, maxsize: int) -> None:
        self._queue = []

    def _put(self, item: _T) -> None:
        self._queue.append(item)

    def _get(self) -> _T:
        return self._queue.pop()  # type: ignore[no-any-return]
