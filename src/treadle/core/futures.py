"""Future: a result that is not known yet, and the callbacks waiting for it.

A coroutine waits for a Future by awaiting it (``await fut``) or, from a generator,
with ``yield from fut``: both suspend the coroutine by yielding the Future up to the
Task driving it, which resumes the coroutine when the Future is done (``tasks.py``).
Imports ``errors``, ``describe``, ``interpreted`` and the running-loop record; it knows
the loop's class only by name (the loop module imports this one, to make futures).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from treadle.core.running import get_running_loop
from treadle.describe import describe_future
from treadle.errors import CancelledError, InvalidStateError
from treadle.interpreted import mypyc_attr

if TYPE_CHECKING:
    from treadle.core.loop import CoreLoop

__all__ = ["Future", "isfuture"]

_T = TypeVar("_T")


class _State(enum.Enum):
    PENDING = "pending"
    CANCELLED = "cancelled"
    FINISHED = "finished"


# Final, here and for the core's other module constants: compiled, a Final name is read
# from a C variable, not looked up in the module's dict at every use.
_PENDING: Final = _State.PENDING
_CANCELLED: Final = _State.CANCELLED
_FINISHED: Final = _State.FINISHED


# Programs may subclass Future (the compiled build must be told so: mypyc_attr).
@mypyc_attr(allow_interpreted_subclasses=True)
class Future(Generic[_T]):
    """A result that will be set later, by ``set_result``, ``set_exception`` or ``cancel``.

    Done callbacks are scheduled with ``call_soon``, never called inline. Awaitable with
    ``await`` and ``yield from``.
    """

    __slots__ = (
        "__weakref__", "_asyncio_future_blocking", "_callback0", "_callbacks", "_cancel_message",
        "_context0", "_exception", "_log_traceback", "_loop", "_result", "_state",
    )  # fmt: skip

    _state: _State
    # The result; once an exception is set instead, the traceback it had then (a slot
    # of its own would cost every parked task eight bytes).
    _result: Any
    # The exception set; while cancelled, the CancelledError to raise first, if a task's
    # coroutine raised one (it keeps that error's message and traceback).
    _exception: BaseException | None
    # The first done callback and its context live in slots of their own (most futures
    # only ever have one: the task waiting on them); any more go in a list.
    _callback0: Callable[[Any], object] | None
    _context0: Context | None
    _callbacks: list[tuple[Callable[[Any], object], Context]] | None
    _cancel_message: str | None

    def __init__(self, *, loop: CoreLoop | None = None) -> None:
        self._loop = get_running_loop() if loop is None else loop
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._callback0 = None
        self._context0 = None
        self._callbacks = None
        self._cancel_message = None
        # Invariant: True while an exception is set that nobody has looked at.
        self._log_traceback = False
        # The flag asyncio's Task looks for: True while a coroutine is suspended on this
        # future. Sharing the name lets treadle and asyncio tasks await each other's
        # futures, which the asyncio adapter relies on.
        self._asyncio_future_blocking = False

    def __repr__(self) -> str:
        return describe_future(self)

    def __del__(self) -> None:
        # getattr: __init__ may have failed (a Task given a non-coroutine) before this was set.
        if not getattr(self, "_log_traceback", False):
            return
        exc = self._exception
        context: dict[str, Any] = {
            "message": f"{type(self).__name__} exception was never retrieved",
            "exception": exc,
            "future": self,
        }
        self._loop.call_exception_handler(context)

    def get_loop(self) -> CoreLoop:
        """The loop this future belongs to."""
        return self._loop

    # --- state ----------------------------------------------------------------------

    def done(self) -> bool:
        """Whether the future has a result, an exception, or was cancelled."""
        return self._state is not _PENDING

    def cancelled(self) -> bool:
        """Whether the future was cancelled."""
        return self._state is _CANCELLED

    def result(self) -> _T:
        """The result; raises the exception if one was set, CancelledError if cancelled."""
        if self._state is _FINISHED:
            self._log_traceback = False
            if self._exception is not None:
                # The traceback as it was when set: re-raising must not pile up the frames
                # of every earlier retrieval.
                raise self._exception.with_traceback(self._result)
            return self._result  # type: ignore[no-any-return]
        if self._state is _CANCELLED:
            raise self._make_cancelled_error()
        raise InvalidStateError(f"{self!r}: result is not set yet")

    def exception(self) -> BaseException | None:
        """The exception set, or None; raises CancelledError if cancelled."""
        if self._state is _FINISHED:
            self._log_traceback = False
            return self._exception
        if self._state is _CANCELLED:
            raise self._make_cancelled_error()
        raise InvalidStateError(f"{self!r}: exception is not set yet")

    def set_result(self, result: _T) -> None:
        """Mark done with ``result`` and schedule the done callbacks."""
        if self._state is not _PENDING:
            raise InvalidStateError(f"{self!r}: cannot set a result, the future is already done")
        self._result = result
        self._state = _FINISHED
        self._schedule_callbacks()

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        """Mark done with ``exception`` (an instance or a class) and schedule the callbacks."""
        if self._state is not _PENDING:
            raise InvalidStateError(
                f"{self!r}: cannot set an exception, the future is already done"
            )
        if isinstance(exception, type):
            exception = exception()
        if not isinstance(exception, BaseException):
            raise TypeError(f"set_exception() needs an exception, got {exception!r}")
        if isinstance(exception, StopIteration):
            # It would end the awaiting coroutine's frame as if it had returned.
            new_exc = RuntimeError("StopIteration cannot be set on a future")
            new_exc.__cause__ = exception
            exception = new_exc
        self._exception = exception
        self._result = exception.__traceback__
        self._state = _FINISHED
        self._log_traceback = True
        self._schedule_callbacks()

    def cancel(self, msg: str | None = None) -> bool:
        """Cancel, unless already done; True if it is now cancelled."""
        self._log_traceback = False
        if self._state is not _PENDING:
            return False
        self._state = _CANCELLED
        self._cancel_message = msg
        self._schedule_callbacks()
        return True

    def _make_cancelled_error(self) -> CancelledError:
        """The CancelledError to raise for this cancelled future (made once, then reused)."""
        if isinstance(self._exception, CancelledError):
            exc = self._exception
            self._exception = None
            return exc
        if self._cancel_message is None:
            return CancelledError()
        return CancelledError(self._cancel_message)

    # --- callbacks --------------------------------------------------------------------

    def add_done_callback(
        self, fn: Callable[[Future[_T]], object], *, context: Context | None = None
    ) -> None:
        """Schedule ``fn(self)`` when done (at once, with ``call_soon``, if already done)."""
        if context is None:
            context = copy_context()
        if self._state is not _PENDING:
            self._loop.call_soon(fn, self, context=context)
        elif self._callbacks is not None:
            self._callbacks.append((fn, context))
        elif self._callback0 is None:
            self._callback0 = fn
            self._context0 = context
        else:
            self._callbacks = [(fn, context)]

    def remove_done_callback(self, fn: Callable[[Future[_T]], object]) -> int:
        """Forget every registration of ``fn``; how many there were."""
        removed = 0
        if self._callback0 is not None and self._callback0 == fn:
            self._callback0 = self._context0 = None
            removed = 1
        if self._callbacks:
            kept = [(f, ctx) for f, ctx in self._callbacks if f != fn]
            removed += len(self._callbacks) - len(kept)
            self._callbacks = kept or None
        return removed

    def _schedule_callbacks(self) -> None:
        first = self._callback0
        if first is not None:
            context = self._context0
            self._callback0 = self._context0 = None
            self._loop._schedule(first, (self,), context)  # type: ignore[arg-type]
        callbacks = self._callbacks
        if callbacks is None:
            return
        self._callbacks = None
        schedule = self._loop._schedule
        args = (self,)
        for fn, context in callbacks:
            schedule(fn, args, context)

    # --- awaiting -----------------------------------------------------------------------

    def __await__(self) -> Generator[Future[_T], None, _T]:
        if self._state is _PENDING:
            self._asyncio_future_blocking = True
            yield self  # The Task driving us resumes this frame once we are done.
            if self._state is _PENDING:
                raise RuntimeError(
                    "a coroutine was resumed before the future it awaits was done; "
                    "futures must be awaited by a treadle Task"
                )
        return self.result()

    def __iter__(self) -> Generator[Future[_T], None, _T]:
        """``yield from future`` in generator-based coroutines: the same as ``await``."""
        # A method, not ``__iter__ = __await__``: the compiled build (mypyc) silently
        # leaves such an alias out of the class.
        return self.__await__()


def isfuture(obj: object) -> bool:
    """Whether ``obj`` is a future (treadle's, or one that speaks the same protocol)."""
    return not isinstance(obj, type) and getattr(obj, "_asyncio_future_blocking", None) is not None
