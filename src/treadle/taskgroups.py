"""``TaskGroup``: structured concurrency; a block that does not end before its tasks do.

``async with TaskGroup() as tg: tg.create_task(...)``. When a task fails, the group
cancels its other tasks and its body, waits for them all, and raises every error in
an ``ExceptionGroup``. Semantics are asyncio's (3.12, with 3.13's fix that an outside
cancellation is never swallowed by an ``ExceptionGroup``). Coordination layer: imports
the loop, futures and tasks.
"""

from __future__ import annotations

import enum
from contextvars import Context
from typing import Any, TypeVar

from treadle.core.futures import Future
from treadle.core.tasks import CoroutineLike, Task, iscoroutine
from treadle.errors import CancelledError
from treadle.loop import EventLoop, current_task, get_running_loop

__all__ = ["TaskGroup"]

_T = TypeVar("_T")


class _State(enum.Enum):
    CREATED = "created"  # not entered yet
    RUNNING = "running"  # in the body, or waiting for the tasks after it
    ABORTING = "aborting"  # a task failed or the body was left by an error: cancelling all
    FINISHED = "finished"  # __aexit__ is done


def _is_fatal(exc: BaseException) -> bool:
    """KeyboardInterrupt and SystemExit leave a task group as themselves, not in a group."""
    return isinstance(exc, KeyboardInterrupt | SystemExit)


class TaskGroup:
    """An async context manager that owns tasks: it ends only when they all have.

    If a task fails (an exception other than CancelledError), the group cancels the
    remaining tasks and the body, and, once everything has finished, raises an
    ``ExceptionGroup`` of the errors (a ``BaseExceptionGroup`` if one is not an
    ``Exception``). A KeyboardInterrupt or SystemExit is raised as itself. A
    cancellation of the body from outside is not swallowed: after the tasks finish it
    comes out as CancelledError (or, if tasks failed, the group's error comes out and
    the enclosing task stays cancelled).
    """

    def __init__(self) -> None:
        self._state = _State.CREATED
        # True once __aexit__ has started: create_task still works while tasks run.
        self._exiting = False
        self._loop: EventLoop | None = None
        # The task running the body; the group cancels it when a task fails.
        self._parent: Task[Any] | None = None
        # Invariant: True iff the group called self._parent.cancel() and has not yet
        # withdrawn that request with uncancel().
        self._parent_cancel_requested = False
        self._tasks: set[Future[Any]] = set()
        self._errors: list[BaseException] = []
        # The first KeyboardInterrupt or SystemExit seen; raised as itself.
        self._fatal: BaseException | None = None
        # Set when the last task finishes, while __aexit__ waits for them.
        self._all_done: Future[None] | None = None

    def __repr__(self) -> str:
        return f"<TaskGroup {self._state.value} tasks={len(self._tasks)}>"

    async def __aenter__(self) -> TaskGroup:
        if self._state is not _State.CREATED:
            raise RuntimeError(f"{self!r} has already been entered; a TaskGroup is single-use")
        loop = get_running_loop()
        parent = current_task(loop)
        if parent is None:
            raise RuntimeError("a TaskGroup must be used inside a task")
        self._loop = loop
        self._parent = parent
        self._state = _State.RUNNING
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            await self._exit(exc)
        finally:
            # Break the reference cycles through the raised exceptions' tracebacks.
            self._state = _State.FINISHED
            self._parent = None
            self._errors = []
            self._fatal = None

    async def _exit(self, exc: BaseException | None) -> None:
        self._exiting = True
        parent = self._parent
        assert self._loop is not None and parent is not None
        if exc is not None and _is_fatal(exc) and self._fatal is None:
            self._fatal = exc
        propagate_cancel = exc if isinstance(exc, CancelledError) else None
        if exc is not None and self._state is not _State.ABORTING:
            # The body was left by an error or a cancellation: stop the tasks too.
            self._abort()

        # A loop, because the wait may be cancelled more than once: by the group itself
        # when a task fails, and by anyone cancelling the parent task.
        while self._tasks:
            self._all_done = self._loop.create_future()
            try:
                await self._all_done
            except CancelledError as cancelled:
                if self._state is not _State.ABORTING:
                    # Cancelled from outside while waiting for the tasks: stop them,
                    # and pass the cancellation on once they are done.
                    propagate_cancel = cancelled
                    self._abort()
            self._all_done = None

        if self._parent_cancel_requested:
            self._parent_cancel_requested = False
            if parent.uncancel() == 0:
                # The only cancellation was ours (to stop the body): it is not news.
                propagate_cancel = None

        if self._fatal is not None:
            raise self._fatal
        if exc is not None and not isinstance(exc, CancelledError):
            self._errors.append(exc)
        if self._errors:
            if parent.cancelling():
                # Someone else also asked to cancel the parent, and the ExceptionGroup
                # would hide that: re-arm the request so the parent's next await raises.
                parent.uncancel()
                parent.cancel()
            errors = self._errors
            raise BaseExceptionGroup("unhandled errors in a TaskGroup", errors) from None
        if propagate_cancel is not None:
            raise propagate_cancel

    def create_task(
        self, coro: CoroutineLike[_T], *, name: str | None = None, context: Context | None = None
    ) -> Task[_T]:
        """Start ``coro`` as a task of this group; the group's block waits for it."""
        problem = None
        if self._state is _State.CREATED:
            problem = f"{self!r} has not been entered; use 'async with' first"
        elif self._state is _State.FINISHED or (self._exiting and not self._tasks):
            problem = f"{self!r} is finished; it cannot start new tasks"
        elif self._state is _State.ABORTING:
            problem = f"{self!r} is shutting down after an error or a cancellation"
        if problem is not None:
            if iscoroutine(coro):
                coro.close()  # it will never run; don't also warn that it was never awaited
            raise RuntimeError(problem)
        assert self._loop is not None
        task = self._loop.create_task(coro, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def _abort(self) -> None:
        self._state = _State.ABORTING
        for task in self._tasks:
            if not task.done():
                task.cancel()

    def _on_task_done(self, task: Future[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks and self._all_done is not None and not self._all_done.done():
            self._all_done.set_result(None)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self._errors.append(exc)
        if _is_fatal(exc) and self._fatal is None:
            self._fatal = exc
        parent = self._parent
        assert parent is not None
        if parent.done():
            self._loop_report(task, exc)
            return
        if self._state is not _State.ABORTING and not self._parent_cancel_requested:
            # Stop the body too (it may be waiting on anything) and the other tasks;
            # __aexit__ withdraws this cancellation of the parent.
            self._abort()
            self._parent_cancel_requested = True
            parent.cancel()

    def _loop_report(self, task: Future[Any], exc: BaseException) -> None:
        assert self._loop is not None
        self._loop.call_exception_handler(
            {
                "message": f"task {task!r} failed after its TaskGroup's parent task finished",
                "exception": exc,
                "task": task,
            }
        )
