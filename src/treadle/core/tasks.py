"""Task: a Future that drives a coroutine, one step per wake-up; and the seam that suspends it.

A step sends a value into (or throws an exception into) the coroutine, which runs until
it suspends: by yielding a Future it waits for, by yielding a bare ``None`` to let the
others run, or through the suspend/resume seam below. The task then sleeps until it is
woken and takes the next step. ``Task._step`` is the only place a coroutine resumes. A
native coroutine (``async def``) and a plain generator (``yield from``) are driven alike.

The suspend/resume seam, the one way to put a task to sleep without a Future of one's
own (the wait queue under every lock and queue, stream reads and drains, socket
readiness)::

    waiter = current_waiter()      # before publishing it, in the task that will wait
    self.waiter = waiter           # somewhere the waker will find it
    try:
        value = await suspend(waiter)
    finally:
        self.waiter = None         # a stale waiter must not be resumed later

    resume(self.waiter, value)     # the waker, later, from a callback or another task

Its contract:

* ``current_waiter()`` is the handle that wakes the running task: the Task itself when a
  treadle Task (or subclass) runs the coroutine, else a new Future, which a task of
  another kind (asyncio's, say) awaits instead. ``suspend(waiter)`` must be awaited at
  once, by the task that made the waiter, and at most once per waiter from a Future.
* ``resume(waiter, value)`` makes ``await suspend(waiter)`` return ``value``;
  ``resume(waiter, error=exc)`` makes it raise ``exc``. It returns True if the task was
  suspended and is now resumed, and False, doing nothing, if it was not (already
  resumed, or cancelled, or not suspended yet).
* ``resume`` schedules the task's next step with ``call_soon``, like every other
  wake-up. ``resume(waiter, inline=True)`` called from a loop callback that is not a
  task's step (a readiness callback) runs that step at once, inside the callback; from
  inside a step it schedules as usual, since steps never nest (and so it does while a
  callback observer is set: see ``CoreLoop._run_ready_observed``). Only a waker with nothing
  left to do after it may ask for that: the stream's readiness callback does, which
  saves a Handle, a trip through the ready queue and often a poll per message (about a
  tenth of the server's CPU per round trip on the echo benchmark, 1 KiB x 100).
* ``task.cancel()`` on a suspended task ends the suspension: ``await suspend()`` raises
  CancelledError on a later iteration, and a ``resume`` after the cancel returns False.
  A cancel that comes after ``resume`` but before the task has run wins: the value is
  dropped and CancelledError is raised instead. Code that must not lose what the
  waker handed it (the wait queue's wake-ups) keeps that state itself.
* The waiter is good for one suspension: a waker must forget it once the waiting code
  resumes (clear it in a ``finally``), since a later ``suspend`` of the same task
  reuses the same Task as its waiter.

Imports the core's futures, handles, tracebacks and running-loop record, and the leaves
``errors``, ``describe`` (its reprs and the wording of its complaints) and ``interpreted``
(``mypyc_attr``).
"""

from __future__ import annotations

import collections.abc
import itertools
import types
import weakref
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeAlias, TypeVar

from treadle.core.futures import _CANCELLED, _FINISHED, _PENDING, Future
from treadle.core.running import get_running_loop
from treadle.core.tracebacks import trim_tracebacks
from treadle.describe import (
    await_chain_frames,
    describe_task,
    not_a_coroutine,
    why_a_task_cannot_wait_on,
)
from treadle.errors import CancelledError, InvalidStateError
from treadle.interpreted import mypyc_attr

if TYPE_CHECKING:
    from treadle.core.loop import CoreLoop

__all__ = [
    "CoroutineLike", "Task", "Waiter", "current_waiter", "is_suspended", "iscoroutine",
    "resume", "suspend",
]  # fmt: skip

_T = TypeVar("_T")
_P = ParamSpec("_P")

_task_ids: Final = itertools.count(1).__next__

# What a Task drives: a native coroutine, or a generator for ``yield from``; returns _T.
CoroutineLike: TypeAlias = Coroutine[Any, Any, _T] | Generator[Any, Any, _T]


_COROUTINE_TYPES: Final = (types.CoroutineType, types.GeneratorType)


def iscoroutine(obj: object) -> bool:
    """Whether a Task can drive ``obj``: a native coroutine or a generator (or alike)."""
    return type(obj) in _COROUTINE_TYPES or isinstance(
        obj, collections.abc.Coroutine | collections.abc.Generator
    )


# Programs may subclass Task (the compiled build must be told so: mypyc_attr).
@mypyc_attr(allow_interpreted_subclasses=True)
class Task(Future[_T]):
    """Drives a coroutine or generator to completion; its result is the coroutine's.

    ``cancel()`` throws CancelledError into the coroutine at its next suspension point.
    """

    __slots__ = (
        "_born", "_cancelled", "_context", "_coro", "_fut_waiter", "_must_cancel", "_name",
        "_num_cancels_requested", "_parent",
    )  # fmt: skip

    def __init__(
        self,
        coro: CoroutineLike[_T],
        *,
        loop: CoreLoop | None = None,
        name: str | None = None,
        context: Context | None = None,
    ) -> None:
        if type(coro) not in _COROUTINE_TYPES and not iscoroutine(coro):
            raise TypeError(not_a_coroutine(coro))
        # Future.__init__, inlined on purpose (not a duplicate to remove): task creation
        # is on the hot path of every spawn, and a super().__init__ call would cost it.
        self._loop = loop = get_running_loop() if loop is None else loop
        self._state = _PENDING
        self._result = None
        self._exception = None
        self._callback0 = None
        self._context0 = None
        self._callbacks = None
        self._cancel_message = None
        self._log_traceback = False
        self._asyncio_future_blocking = False
        self._coro = coro
        self._context = context = copy_context() if context is None else context
        # The future this task is suspended on; _SUSPENDED while it waits in suspend().
        # ("| Any": under treadle.aio, asyncio's future, which compiled code would refuse.)
        self._fut_waiter: Future[Any] | Suspended | Any | None = None
        # Invariant: True when a cancel() must be thrown in at the next step.
        self._must_cancel = False
        self._num_cancels_requested = 0
        # The name given, or until one is, the number for "Task-N" (a string per task
        # would cost memory most tasks never use).
        self._name: str | int = _task_ids() if name is None else str(name)
        # The task that created this one, weakly: introspection shows who started whom,
        # and a finished parent must not be kept alive by its children.
        parent = loop._current_task
        self._parent: weakref.ReferenceType[Task[Any]] | None = (
            None if parent is None else weakref.ref(parent)
        )
        # When it was made (time.monotonic()), set only by a task observer: introspection
        # shows each task's age. Unset otherwise, which costs nothing.
        self._born: float
        # The first step, after _schedule's checks: the task goes in the ready queue as
        # its own handle (see _callback below). (The test written out, not a call of
        # loop._check_closed(): compiled, a call of a method of the loop, which programs
        # may subclass, is a Python-level lookup, about 3% of a spawn.)
        if loop._closed:
            raise RuntimeError("Event loop is closed")
        if loop._debug:
            loop._check_call("call_soon", None)
        # Invariant: never set but by fork safety (which marks every ready handle).
        self._cancelled = False
        loop._ready.append(self)
        loop._tasks.add(self)
        if loop._task_observer is not None:
            loop._task_observer(self)

    def __repr__(self) -> str:
        return describe_task(self)

    # --- names and introspection ----------------------------------------------------

    def get_name(self) -> str:
        """The task's name (``Task-N`` unless one was given)."""
        name = self._name
        return name if isinstance(name, str) else f"Task-{name}"

    def set_name(self, value: object) -> None:
        """Rename the task."""
        self._name = str(value)

    def get_coro(self) -> CoroutineLike[_T]:
        """The coroutine or generator this task drives."""
        return self._coro

    def get_context(self) -> Context:
        """The ``contextvars.Context`` every step of this task runs in."""
        return self._context

    def get_parent(self) -> Task[Any] | None:
        """The task that created this one, while it is alive; None if none did (or it is gone)."""
        return None if self._parent is None else self._parent()

    def get_stack(self) -> list[types.FrameType]:
        """The frames of the suspended await chain, outermost first (empty when done)."""
        return await_chain_frames(self._coro)

    # --- a task's result comes from its coroutine, not from outside ------------------

    def set_result(self, result: _T) -> None:
        raise RuntimeError("Task does not support set_result(); the coroutine's return sets it")

    def set_exception(self, exception: BaseException | type[BaseException]) -> None:
        raise RuntimeError("Task does not support set_exception(); the coroutine's raise sets it")

    # --- cancellation ---------------------------------------------------------------

    def cancel(self, msg: str | None = None) -> bool:
        """Ask the coroutine to stop: CancelledError is thrown in at its next suspension.

        True if the request was made (the task was not done yet). The coroutine may
        catch the error; ``cancelling()`` counts the requests not yet withdrawn.
        """
        self._log_traceback = False
        if self._state is not _PENDING:
            return False
        self._num_cancels_requested += 1
        waiter = self._fut_waiter
        if waiter is _SUSPENDED:
            # In suspend(), without a Future to cancel: deliver the cancellation now,
            # made now, as a cancelled Future would carry it: a later cancel() before
            # the step runs does not change its message (as on asyncio).
            self._fut_waiter = None
            self._cancel_message = msg
            self._loop._schedule(self._step, (self._make_cancelled_error(),), self._context)
            return True
        if waiter is not None and waiter.cancel(msg=msg):  # type: ignore[union-attr]
            # The waiter's wake-up throws the CancelledError in. Keep _fut_waiter: the
            # coroutine may catch it and wait again, and be cancelled again.
            return True
        self._must_cancel = True
        self._cancel_message = msg
        return True

    def cancelling(self) -> int:
        """How many cancellation requests are pending (made and not ``uncancel()``-ed)."""
        return self._num_cancels_requested

    def uncancel(self) -> int:
        """Withdraw one cancellation request; how many remain."""
        if self._num_cancels_requested > 0:
            self._num_cancels_requested -= 1
            if self._num_cancels_requested == 0:
                self._must_cancel = False
        return self._num_cancels_requested

    # --- driving the coroutine --------------------------------------------------------

    def _step(self, exc: BaseException | None = None, value: Any = None) -> None:
        """Resume the coroutine once: send ``value`` into it, or throw ``exc`` in."""
        if self._state is not _PENDING:
            raise InvalidStateError(f"cannot step {self!r}: it is already done")
        if self._must_cancel:
            if not isinstance(exc, CancelledError):
                exc = self._make_cancelled_error()
            self._must_cancel = False
        self._fut_waiter = None
        loop = self._loop
        loop._current_task = self
        try:
            if exc is None:
                result = self._coro.send(value)
            else:
                result = self._coro.throw(exc)
        except StopIteration as stop:
            if self._must_cancel:
                # cancel() was called during this step and the coroutine returned
                # before it could be delivered: the task ends cancelled.
                self._must_cancel = False
                Future.cancel(self, msg=self._cancel_message)
            else:
                # Future.set_result, inlined: every task ends here.
                self._result, self._state = stop.value, _FINISHED
                self._schedule_callbacks()
            loop._tasks.discard(self)
        except CancelledError as cancelled:
            if not loop._debug:
                trim_tracebacks(cancelled)
            self._exception = cancelled  # raised first by result(); see Future._exception
            Future.cancel(self, msg=cancelled.args[0] if cancelled.args else None)
            loop._tasks.discard(self)
        except (KeyboardInterrupt, SystemExit) as fatal:
            Future.set_exception(self, fatal)
            loop._tasks.discard(self)
            raise
        except BaseException as error:
            if not loop._debug:
                trim_tracebacks(error)
            Future.set_exception(self, error)
            loop._tasks.discard(self)
        else:
            if result is None:
                # A bare ``yield``: let the others run, then carry on. The task is its own
                # handle, straight onto the ready queue: a step runs on the loop's thread
                # while it runs, so none of call_soon's checks can fail here.
                loop._ready.append(self)
            elif result is _SUSPENDED:
                if self._must_cancel:
                    # cancel() came during this very step: deliver it at once, with the
                    # message of that request (as a Future cancelled now would).
                    self._must_cancel = False
                    loop._schedule(self._step, (self._make_cancelled_error(),), self._context)
                else:
                    self._fut_waiter = _SUSPENDED
            else:
                self._suspend_on(result)
        finally:
            loop._current_task = None

    # A task is its own Handle for the steps it schedules itself (the first, and after a
    # bare ``yield``): the loop's ready queue reads only ``_cancelled``, ``_context``,
    # ``_callback`` and ``_args``, and a task has them. Spawning a task then allocates no
    # Handle and no bound method: about 11% fewer instructions per spawned task
    # (benchmarks/README.md). Wake-ups with a value or an error go through a Handle.
    # (Properties, not ``_callback, _args = _step, ()``: the compiled build can neither
    # unpack nor alias a method in a class body. The pure build replaces them below.)
    @property
    def _callback(self) -> Callable[[], None]:
        return self._step

    @property
    def _args(self) -> tuple[()]:
        return ()

    def _suspend_on(self, yielded: Any) -> None:
        """The coroutine yielded ``yielded``: wait for it if it is a future, else complain."""
        if (
            getattr(yielded, "_asyncio_future_blocking", None)  # a future, awaited
            and yielded.get_loop() is self._loop
            and yielded is not self
        ):
            yielded._asyncio_future_blocking = False
            yielded.add_done_callback(self._wakeup, context=self._context)
            self._fut_waiter = yielded
            if self._must_cancel and yielded.cancel(msg=self._cancel_message):
                self._must_cancel = False
            return
        problem = RuntimeError(why_a_task_cannot_wait_on(self.get_name(), yielded, self._loop))
        self._loop.call_soon(self._step, problem, context=self._context)

    def _wakeup(self, future: Future[Any]) -> None:
        """The future this task waited on is done: take the next step with its outcome.

        A treadle future's exception is taken, not raised: raising it here would add
        this frame and ``result()``'s to its traceback, and stepping the coroutine
        inside an ``except`` block would give whatever it raises next a stray
        ``__context__``.
        """
        state = future._state
        if state is _FINISHED:
            error = future._exception
            if error is None:
                self._step()
                return
            future._log_traceback = False
            self._step(error.with_traceback(future._result))
        elif state is _CANCELLED:
            self._step(future._make_cancelled_error())
        else:
            self._step(_outcome_of_foreign(future))


# Where they are Python properties (the pure build), plain class attributes instead: a
# property is a Python call per read, 10% of an ``await sleep(0)`` switch, 5% of a spawn.
# (setattr: mypyc would not compile an assignment to its class's property.)
if isinstance(vars(Task)["_callback"], property):
    setattr(Task, "_callback", Task._step)  # noqa: B010
    setattr(Task, "_args", ())  # noqa: B010


def _outcome_of_foreign(future: Any) -> BaseException | None:
    """The exception of a done future of another kind (asyncio's, say), or None."""
    try:
        future.result()
    except BaseException as exc:
        return exc
    return None


# --- the suspend/resume seam (its contract is in the module docstring) --------------------


class Suspended:
    """What ``suspend()`` returns, and what awaiting it yields to the Task: "no Future:
    ``resume()`` will wake me". The await then gives what the task was resumed with."""

    # A class whose __await__ is a generator, as Future's: the compiled build compiles it,
    # and compiled code awaits it without a Python frame (a generator function's own
    # result, compiled, could not be awaited by interpreted code; interpreted, it cost a
    # Python call and frame per wait: 1,100 instructions per echo round trip).
    def __await__(self) -> Generator[Suspended, Any, Any]:
        return (yield self)

    def __iter__(self) -> Generator[Suspended, Any, Any]:
        """``yield from suspend(waiter)`` in generator-based coroutines, as ``await``."""
        return self.__await__()


# The one instance (Final: compiled code reads it from a C variable; see futures.py).
_SUSPENDED: Final = Suspended()


def _suspended_until_resumed() -> Generator[Suspended, Any, Any]:
    """``Suspended.__await__`` of the pure build: the same wait, with no ``self`` to hold."""
    return (yield _SUSPENDED)


# In the pure build, a static __await__: its generator holds no ``self``, which keeps a
# parked task's generator 16 bytes smaller after pymalloc's rounding (benchmarks/README.md,
# memory). (mypyc cannot compile a static __await__; the compiled one holds no frame.)
if isinstance(vars(Suspended)["__await__"], types.FunctionType):
    setattr(Suspended, "__await__", staticmethod(_suspended_until_resumed))  # noqa: B010

# What resume() wakes: the suspended Task itself, or the Future a task of another kind awaits.
# ("| Any", not "Task[Any] | Future[Any]": mypyc crashes on a union of a class and its
# subclass, and compiled code would refuse asyncio's future under treadle.aio.)
Waiter: TypeAlias = "Future[Any] | Any"


def current_waiter(running_loop: Any = None) -> Waiter:
    """The handle by which ``resume()`` will wake the running task once it ``suspend()``s.

    A caller that holds the running loop may pass it, to save finding it (a stream's
    reader, once per message: ``get_running_loop()``'s check of the thread).
    """
    # Any: treadle.aio's loop answers with asyncio's tasks and futures, which the compiled
    # build would refuse as not treadle's.
    loop: Any = get_running_loop() if running_loop is None else running_loop
    task = loop._current_task
    if isinstance(task, Task):
        return task
    # No treadle Task is stepping: a task of another kind (asyncio's, on treadle.aio's
    # loop) runs this coroutine, and waits on a Future of its loop's kind.
    return loop.create_future()


def suspend(waiter: Waiter) -> Any:
    """Suspend the running task until ``resume(waiter, ...)``; what it was resumed with.

    ``waiter`` comes from ``current_waiter()`` in the same task. The result is awaited
    at once, with ``await`` or ``yield from`` (so it is typed ``Any``: both accept it).
    Raises what ``resume(waiter, error=...)`` passed, or CancelledError if the task is
    cancelled.
    """
    if not isinstance(waiter, Task):
        return waiter  # a Future: awaiting it is the suspension
    if waiter._loop._current_task is not waiter:
        raise RuntimeError(
            f"suspend() was given {waiter!r}, which is not the running task; "
            "take the waiter from current_waiter() in the task that suspends"
        )
    return _SUSPENDED


# An inline resume calls these (Final: compiled, each is a C call; the plain
# ``waiter._context.run(waiter._step, ...)`` looks ``run`` up by name and reads
# ``_step``, a bound method made through Python since programs may subclass Task:
# 600 instructions per echo round trip compiled, 400 pure). A subclass's own ``_step``
# (none has one) would still run for scheduled steps, not inline ones.
_run_in: Final = Context.run
_task_step: Final = Task._step


def resume(
    waiter: Waiter, value: Any = None, *, error: BaseException | None = None, inline: bool = False
) -> bool:
    """Wake the task suspended on ``waiter`` with ``value`` (or ``error`` to raise).

    True if it was suspended and is now resumed; False, doing nothing, if it was not.
    Its next step is scheduled with ``call_soon``, as any other wake-up; with
    ``inline=True`` and no task's step running, the step runs here and now.
    """
    if isinstance(waiter, Task):
        if waiter._fut_waiter is not _SUSPENDED:
            return False
        waiter._fut_waiter = None
        loop = waiter._loop
        # Not while an observer times each callback: it must see every step as one.
        if inline and loop._current_task is None and loop._callback_observer is None:
            _run_in(waiter._context, _task_step, waiter, error, value)
        else:
            loop._schedule(waiter._step, (error, value), waiter._context)
        return True
    if waiter.done():
        return False
    if error is None:
        waiter.set_result(value)
    else:
        waiter.set_exception(error)
    return True


def is_suspended(waiter: Waiter) -> bool:
    """Whether the task behind ``waiter`` is suspended on it, so ``resume()`` would wake it."""
    if isinstance(waiter, Task):
        return waiter._fut_waiter is _SUSPENDED
    return not waiter.done()
