"""Synchronisation primitives for tasks: Lock, Event, Condition, Semaphore, BoundedSemaphore.

Same names, API and semantics as asyncio's, and fair: tasks get through in the order
they started waiting, and one that arrives while others wait queues behind them. Each
primitive keeps its own state and parks its waiters on a ``WaitQueue``, which makes
them safe under cancellation. Coordination layer: imports ``treadle.errors`` and
``treadle.waitqueue`` (itself built on the core's suspend/resume seam).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from treadle.errors import CancelledError
from treadle.waitqueue import WaitQueue

__all__ = ["BoundedSemaphore", "Condition", "Event", "Lock", "Semaphore"]

_R = TypeVar("_R")


class _ContextManagerMixin:
    """``async with primitive:`` acquires on entry and releases on exit."""

    async def acquire(self) -> Literal[True]:
        """Take the primitive, waiting if need be (each subclass says how)."""
        raise NotImplementedError

    def release(self) -> None:
        """Give the primitive back (each subclass says how)."""
        raise NotImplementedError

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


def _describe(obj: object, state: str, waiters: WaitQueue) -> str:
    """``<treadle.locks.Lock object at 0x... [locked, waiters:2]>``, as asyncio shows it."""
    cls = type(obj)
    if waiters:
        state = f"{state}, waiters:{len(waiters)}"
    return f"<{cls.__module__}.{cls.__qualname__} object at {id(obj):#x} [{state}]>"


class Lock(_ContextManagerMixin):
    """A mutual-exclusion lock for tasks: one holder at a time.

    ``acquire()`` waits until the lock is free, then takes it; ``release()`` frees it
    and lets the longest-waiting task take it next. Use ``async with lock:``. A lock has
    no owner: any task may release it, but releasing a free lock is an error.
    """

    def __init__(self) -> None:
        self._locked = False
        self._waiters = WaitQueue()

    def __repr__(self) -> str:
        return _describe(self, "locked" if self._locked else "unlocked", self._waiters)

    def locked(self) -> bool:
        """Whether some task holds the lock."""
        return self._locked

    async def acquire(self) -> Literal[True]:
        """Wait until the lock is free and no task queued earlier wants it; take it.

        Returns True. If cancelled while waiting, the lock is not taken.
        """
        if not self._locked and not self._waiters:
            self._locked = True
            return True
        await self._waiters.park()
        # Invariant: release() freed the lock before waking us, and nobody has taken it
        # since, because a task that finds waiters (woken ones too) queues behind them.
        self._locked = True
        return True

    def release(self) -> None:
        """Free the lock and wake the first task waiting for it. RuntimeError if free."""
        if not self._locked:
            raise RuntimeError("Lock.release() called on a lock that is not acquired")
        self._locked = False
        self._waiters.unpark()


class Event:
    """A flag tasks can wait for: ``set()`` wakes every waiter, ``clear()`` lowers it again."""

    def __init__(self) -> None:
        self._value = False
        self._waiters = WaitQueue()

    def __repr__(self) -> str:
        return _describe(self, "set" if self._value else "unset", self._waiters)

    def is_set(self) -> bool:
        """Whether the flag is set."""
        return self._value

    def set(self) -> None:
        """Set the flag and wake every task waiting for it."""
        if not self._value:
            self._value = True
            self._waiters.unpark_all()

    def clear(self) -> None:
        """Lower the flag: ``wait()`` blocks again until the next ``set()``."""
        self._value = False

    async def wait(self) -> Literal[True]:
        """Wait until the flag is set (return at once if it is); returns True."""
        if self._value:
            return True
        await self._waiters.park()
        return True


class Condition(_ContextManagerMixin):
    """A condition variable: tasks wait, holding a lock, until another notifies them.

    ``lock`` is the Lock to use (a new one by default). ``wait()``, ``notify()`` and
    ``notify_all()`` must be called with the lock held; ``async with condition:``
    acquires it. A woken task holds the lock again when ``wait()`` returns.
    """

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is None:
            lock = Lock()
        elif not isinstance(lock, Lock):
            raise TypeError(f"Condition() needs a treadle Lock, got {lock!r}")
        self._lock = lock
        self._waiters = WaitQueue()

    def __repr__(self) -> str:
        return _describe(self, "locked" if self._lock.locked() else "unlocked", self._waiters)

    def locked(self) -> bool:
        """Whether the underlying lock is held."""
        return self._lock.locked()

    async def acquire(self) -> Literal[True]:
        """Acquire the underlying lock (see ``Lock.acquire``)."""
        return await self._lock.acquire()

    def release(self) -> None:
        """Release the underlying lock (see ``Lock.release``)."""
        self._lock.release()

    async def wait(self) -> Literal[True]:
        """Release the lock, wait to be notified, re-acquire the lock; returns True.

        The lock is held again when this returns or raises, even if the task was
        cancelled. As with any condition variable, re-check what you waited for when it
        returns (``wait_for()`` does that).
        """
        if not self._lock.locked():
            raise RuntimeError(
                "Condition.wait() needs the condition's lock held; "
                "acquire it first (async with condition: ...)"
            )
        self._lock.release()
        notified_alone = False
        try:
            notified_alone = await self._waiters.park()
        finally:
            # Take the lock back however we leave, even if cancelled again meanwhile.
            cancelled: CancelledError | None = None
            while True:
                try:
                    await self._lock.acquire()
                    break
                except CancelledError as exc:
                    cancelled = exc
            if cancelled is not None:
                if notified_alone:
                    # We were notified but will not act on it: notify someone else, or
                    # a notify() would be lost.
                    self._waiters.unpark()
                raise cancelled
        return True

    async def wait_for(self, predicate: Callable[[], _R]) -> _R:
        """Wait until ``predicate()`` is true; returns its last value.

        ``predicate`` is called with the lock held: first at once, then after each
        wake-up.
        """
        result = predicate()
        while not result:
            await self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` tasks waiting on this condition (the longest-waiting first)."""
        if not self._lock.locked():
            raise RuntimeError(
                "Condition.notify() needs the condition's lock held; acquire it first"
            )
        self._waiters.unpark(n)

    def notify_all(self) -> None:
        """Wake every task waiting on this condition."""
        if not self._lock.locked():
            raise RuntimeError(
                "Condition.notify_all() needs the condition's lock held; acquire it first"
            )
        self._waiters.unpark_all()


class Semaphore(_ContextManagerMixin):
    """A pool of permits: ``acquire()`` takes one, waiting if none is left; ``release()`` adds one.

    ``value`` is the number of permits to start with (1 by default; not negative).
    Tasks waiting for a permit get one in the order they started waiting.
    """

    def __init__(self, value: int = 1) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"Semaphore initial value must be an int, got {value!r}")
        if value < 0:
            raise ValueError(f"Semaphore initial value must be >= 0, got {value}")
        # Invariant: _value >= _waiters.woken; each woken waiter is owed one permit.
        self._value = value
        self._waiters = WaitQueue()

    def __repr__(self) -> str:
        state = "locked" if self.locked() else f"unlocked, value:{self._value}"
        return _describe(self, state, self._waiters)

    def locked(self) -> bool:
        """Whether ``acquire()`` would have to wait."""
        return self._value == 0 or bool(self._waiters)

    async def acquire(self) -> Literal[True]:
        """Take a permit, waiting for one if none is free or others wait first; returns True."""
        if not self.locked():
            self._value -= 1
            return True
        await self._waiters.park()
        self._value -= 1
        # Permits released while we waited that no woken task is counting on belong to
        # the tasks queued behind us.
        self._waiters.unpark_for(self._value)
        return True

    def release(self) -> None:
        """Return a permit, waking the first task waiting for one."""
        self._value += 1
        self._waiters.unpark()


class BoundedSemaphore(Semaphore):
    """A Semaphore that raises ValueError if released more times than it was acquired."""

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._bound_value = value

    def release(self) -> None:
        """Return a permit; ValueError if that would exceed the initial value."""
        if self._value >= self._bound_value:
            raise ValueError(
                f"BoundedSemaphore released too many times (its bound is {self._bound_value})"
            )
        super().release()
