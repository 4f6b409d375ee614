"""Run one test on a fresh loop, and fail it on leaked tasks or stray errors.

``LoopHarness`` keeps one loop for one test's whole life (async fixtures, the body,
their teardown) and runs each phase to completion on it; the pytest plugin drives it.
``run_test(coro_function, clock=...)`` is the same for a single coroutine, by hand.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import treadle
from treadle.core.clock import Clock
from treadle.testing.clock import ThreadCountingPool, VirtualClock

__all__ = [
    "LeakedTasksError",
    "LoopHarness",
    "StrayErrorsError",
    "run_test",
    "wait_all_tasks_blocked",
]

_T = TypeVar("_T")


class StrayErrorsError(AssertionError):
    """The loop's exception handler was called during a test that did not expect it."""


class LeakedTasksError(AssertionError):
    """A test (or an async fixture) left tasks running when it ended."""


class LoopHarness:
    """One loop for one test: run its phases on it, then check for leaks and close it.

    Every phase (an async fixture's setup, the test body, a fixture's teardown) runs to
    completion with ``run``; between phases the loop is paused, so tasks a fixture
    started wait for the test. ``close`` fails on tasks still running and on anything
    the loop's exception handler was given.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.loop = treadle.EventLoop(clock=clock)
        self._stray: list[dict[str, Any]] = []
        self.loop.set_exception_handler(self._record)
        if isinstance(clock, VirtualClock):
            # Threads in flight count as real work, so virtual time waits for them.
            self.loop.set_default_executor(ThreadCountingPool())

    def _record(self, loop: treadle.EventLoop, context: dict[str, Any]) -> None:
        self._stray.append(context)
        loop.default_exception_handler(context)

    def run(self, awaitable: Awaitable[_T]) -> _T:
        """Run ``awaitable`` as a task on this test's loop until it is done; its result."""
        __tracebackhide__ = True
        return self.loop.run_until_complete(awaitable)

    def run_body(self, body: Coroutine[Any, Any, _T]) -> _T:
        """Run the test body; fail if it leaves behind tasks it started.

        Whatever the outcome, the tasks it started are cancelled and finish before the
        fixtures' teardown.
        """
        __tracebackhide__ = True
        already_running = treadle.all_tasks(self.loop)

        async def checked() -> _T:
            __tracebackhide__ = True
            try:
                result = await body
            finally:
                leaked = treadle.all_tasks() - already_running - {treadle.current_task()}
                await self._cancel_and_wait(leaked)
            self._fail_on_leaks(leaked, "the test")
            self._fail_on_stray_errors()
            return result

        return self.run(checked())

    async def _cancel_and_wait(self, tasks: set[treadle.Task[Any]]) -> None:
        """Cancel ``tasks`` and wait for them; report errors other than the cancellation."""
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        await treadle.wait(tasks)
        for task in tasks:
            if not task.cancelled() and (exc := task.exception()) is not None:
                self.loop.call_exception_handler(
                    {"message": "exception in a task the test left running", "exception": exc}
                )

    @staticmethod
    def _fail_on_leaks(leaked: set[treadle.Task[Any]], who: str) -> None:
        __tracebackhide__ = True
        if leaked:
            raise LeakedTasksError(
                f"{who} left {len(leaked)} task(s) running: "
                + ", ".join(sorted(repr(task) for task in leaked))
                + "; await or cancel every task you start before the test ends"
            )

    def close(self, *, check: bool = True) -> None:
        """Cancel leftovers, shut the loop down and close it.

        With ``check``, then raise on tasks that were left running or stray errors.
        """
        __tracebackhide__ = True
        loop = self.loop
        if loop.is_closed():
            return
        leaked = treadle.all_tasks(loop)
        try:
            self.run(self._cancel_and_wait(leaked))
            self.run(loop.shutdown_asyncgens())
            self.run(loop.shutdown_default_executor())
        finally:
            loop.close()
        if not check:
            return
        self._fail_on_leaks(leaked, "the test's fixtures")
        self._fail_on_stray_errors()

    def _fail_on_stray_errors(self) -> None:
        """Raise StrayErrorsError for what the exception handler got since the last check."""
        __tracebackhide__ = True
        stray, self._stray = self._stray, []
        if stray:
            details = "; ".join(str(context.get("message")) for context in stray)
            raise StrayErrorsError(f"the loop reported {len(stray)} unexpected error(s): {details}")


def run_test(
    test: Callable[..., Coroutine[Any, Any, _T]],
    *args: Any,
    clock: Clock | None = None,
    **kwargs: Any,
) -> _T:
    """Run ``test(*args, **kwargs)`` on a fresh loop; fail on leaks and stray errors.

    The test fails if the loop's exception handler was called (an error nobody
    retrieved, a failing callback) or if tasks it started are still running at its end.
    """
    __tracebackhide__ = True
    harness = LoopHarness(clock)
    try:
        result = harness.run_body(test(*args, **kwargs))
    except BaseException:
        harness.close(check=False)  # the test's own error says more than any leak
        raise
    harness.close()
    return result


async def wait_all_tasks_blocked() -> None:
    """Return once every other task is blocked and no callback is ready.

    Synchronise on this instead of ``sleep(0.1)``: it yields until a whole loop
    iteration passes in which nothing but this task ran.
    """
    loop = treadle.get_running_loop()
    # The loop runs exactly the callbacks that were ready at the start of an iteration,
    # so yielding until ours is the only one ready means everyone else is waiting.
    for _ in range(10_000):
        await treadle.sleep(0)
        if not loop._ready:
            return
    raise RuntimeError("wait_all_tasks_blocked(): other tasks kept running for 10,000 steps")
