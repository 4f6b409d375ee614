"""Deadlines for a block of code: ``async with timeout(5): ...`` raises ``TimeoutError``.

A ``Timeout`` cancels its task when the deadline passes, and turns exactly that
cancellation back into the builtin ``TimeoutError`` on the way out, using the task's
cancellation count (``cancelling()``/``uncancel()``) to tell its own cancellation from
anyone else's. Coordination layer: imports the loop, tasks and ``sleeping.check_seconds``.
"""

from __future__ import annotations

import enum
import math
from types import TracebackType
from typing import Any, Protocol

from treadle.core.tasks import Task
from treadle.errors import CancelledError
from treadle.loop import current_task, get_running_loop
from treadle.sleeping import check_seconds

__all__ = ["Timeout", "timeout", "timeout_at"]


class _Cancellable(Protocol):
    """What a Timeout needs of the loop's handles: a way to disarm them."""

    def cancel(self) -> None: ...


class _State(enum.Enum):
    CREATED = "created"  # made, not entered yet
    ENTERED = "active"  # inside the block, deadline armed (or None)
    EXPIRING = "expiring"  # the deadline passed and the task was cancelled
    EXPIRED = "expired"  # left the block after the deadline passed
    EXITED = "finished"  # left the block before the deadline


def _check_when(when: float | None) -> None:
    if when is None:
        return
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(f"a deadline must be a loop time (a number) or None, got {when!r}")
    if math.isnan(when):
        raise ValueError("a deadline is NaN; pass a time from loop.time() or None")


class Timeout:
    """An async context manager that cancels the block when the loop's time reaches ``when``.

    Make one with ``timeout(delay)`` or ``timeout_at(when)``. If the deadline passes
    inside the block, the block is cancelled and ``TimeoutError`` is raised out of it;
    a cancellation from anywhere else still comes out as ``CancelledError``.
    ``when=None`` means no deadline (until ``reschedule`` sets one).
    """

    def __init__(self, when: float | None) -> None:
        _check_when(when)
        self._when = when
        self._state = _State.CREATED
        # The timer that will cancel the task; None when no deadline is armed.
        self._handle: _Cancellable | None = None
        self._task: Task[Any] | None = None
        # The task's cancelling() on entry: more than that on exit means someone else
        # also asked to cancel it, and the CancelledError is theirs to see.
        self._cancelling = 0

    def __repr__(self) -> str:
        return f"<Timeout [{self._state.value}] when={self._when!r}>"

    def when(self) -> float | None:
        """The deadline as a loop time, or None for no deadline."""
        return self._when

    def expired(self) -> bool:
        """Whether the deadline passed and the block was cancelled because of it."""
        return self._state in (_State.EXPIRING, _State.EXPIRED)

    def reschedule(self, when: float | None) -> None:
        """Move the deadline to loop time ``when`` (None: no deadline). Only inside the block."""
        if self._state is not _State.ENTERED:
            if self._state is _State.CREATED:
                raise RuntimeError("the Timeout has not been entered; reschedule() it inside")
            raise RuntimeError(f"cannot reschedule a Timeout that is {self._state.value}")
        _check_when(when)
        self._when = when
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if when is None:
            return
        loop = get_running_loop()
        if when <= loop.time():
            self._handle = loop.call_soon(self._on_timeout)
        else:
            self._handle = loop.call_at(when, self._on_timeout)

    async def __aenter__(self) -> Timeout:
        if self._state is not _State.CREATED:
            raise RuntimeError("a Timeout can be entered only once")
        task = current_task()
        if task is None:
            raise RuntimeError("a Timeout must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._state = _State.ENTERED
        self.reschedule(self._when)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._state is _State.EXPIRING:
            self._state = _State.EXPIRED
            assert self._task is not None
            # Withdraw our own cancellation request. Convert the CancelledError only if
            # no other request is left: an outer timeout or an outside cancel() wins.
            if (
                self._task.uncancel() <= self._cancelling
                and exc_type is not None
                and issubclass(exc_type, CancelledError)
            ):
                raise TimeoutError("the timeout expired") from exc
        elif self._state is _State.ENTERED:
            self._state = _State.EXITED

    def _on_timeout(self) -> None:
        assert self._task is not None
        self._task.cancel()
        self._state = _State.EXPIRING
        self._handle = None


def timeout(delay: float | None) -> Timeout:
    """An async context manager that raises ``TimeoutError`` if its block runs ``delay`` seconds.

    ``delay=None`` means no deadline. A delay of zero or less has already expired:
    the block is cancelled at its first suspension, as in asyncio. NaN is a ValueError.
    """
    check_seconds(delay, "timeout() delay")
    if delay is None:
        return Timeout(None)
    return Timeout(get_running_loop().time() + delay)


def timeout_at(when: float | None) -> Timeout:
    """Like ``timeout``, with an absolute deadline ``when`` in ``loop.time()``'s terms.

    A deadline already past expires at the block's first suspension.
    """
    return Timeout(when)
