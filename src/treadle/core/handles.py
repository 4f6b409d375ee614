"""Handles: a callback the loop has promised to call, and the means to take it back.

A ``Handle`` is what ``call_soon`` returns and what sits in the loop's ready queue; a
``TimerHandle`` is one with a deadline, returned by ``call_later`` and ``call_at``.
Part of the core loop layer: imports only ``describe`` (a callback's name, for reprs
and logs), and re-exports its ``describe_callback``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Context
from typing import Any, Protocol, TypeAlias

from treadle.describe import describe_callback

__all__ = ["Callback", "Handle", "TimerHandle", "describe_callback"]


# What a handle calls: any callable; what it returns is ignored.
Callback: TypeAlias = Callable[..., object]


class _TimerOwner(Protocol):
    def _timer_handle_cancelled(self, handle: TimerHandle) -> None: ...


class Handle:
    """A callback scheduled on the loop, with its arguments and the context to run it in."""

    __slots__ = ("__weakref__", "_args", "_callback", "_cancelled", "_context", "_loop")

    def __init__(
        self,
        callback: Callback,
        args: tuple[Any, ...],
        loop: object,
        context: Context,
    ) -> None:
        self._callback = callback
        self._args = args
        self._loop = loop
        self._context = context
        # Invariant: a cancelled handle is never called; the loop skips it when popped.
        self._cancelled = False

    def cancel(self) -> None:
        """Take the callback back. Calling it on a handle that already ran does nothing."""
        if not self._cancelled:
            self._cancelled = True
            # Drop the references now rather than when the loop pops the handle.
            self._callback = _cancelled_callback
            self._args = ()

    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called."""
        return self._cancelled

    def get_context(self) -> Context:
        """The ``contextvars.Context`` the callback runs in."""
        return self._context

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return f"<{type(self).__name__}{state} {describe_callback(self._callback, self._args)}>"


def _cancelled_callback(*args: object) -> None:
    """Stands in for a cancelled handle's callback so its real one can be collected."""


class TimerHandle(Handle):
    """A handle with a deadline on the loop's clock."""

    __slots__ = ("_scheduled", "_when")

    def __init__(
        self,
        when: float,
        callback: Callback,
        args: tuple[Any, ...],
        loop: _TimerOwner,
        context: Context,
    ) -> None:
        # Handle.__init__, inlined on purpose (not a duplicate to remove): a timer is made
        # for every sleep and timeout, and a super().__init__ call would cost each one.
        self._callback = callback
        self._args = args
        self._loop = loop
        self._context = context
        self._cancelled = False
        self._when = when
        # Invariant: True exactly while the handle sits in the loop's timer heap.
        self._scheduled = False

    def when(self) -> float:
        """The deadline, in the loop's ``time()`` scale."""
        return self._when

    def cancel(self) -> None:
        if not self._cancelled:
            if self._scheduled:
                loop: _TimerOwner = self._loop  # type: ignore[assignment]
                loop._timer_handle_cancelled(self)
            super().cancel()

    def __repr__(self) -> str:
        state = " cancelled" if self._cancelled else ""
        return (
            f"<{type(self).__name__}{state} when={self._when:.3f} "
            f"{describe_callback(self._callback, self._args)}>"
        )
