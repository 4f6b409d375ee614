"""Run one test coroutine on a fresh loop, and fail it on leaked tasks or stray errors.

Used by the pytest plugin; usable by hand as ``run_test(coro_function, clock=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import treadle
from treadle.clock import Clock

__all__ = ["StrayErrorsError", "run_test", "wait_all_tasks_blocked"]


class StrayErrorsError(AssertionError):
    """The loop's exception handler was called during a test that did not expect it."""


def run_test(
    test: Callable[..., Coroutine[Any, Any, Any]],
    *args: Any,
    clock: Clock | None = None,
    **kwargs: Any,
) -> Any:
    """Run ``test(*args, **kwargs)`` with ``treadle.run``; fail on leaks and stray errors.

    The test fails if the loop's exception handler was called (an error nobody
    retrieved, a failing callback) or if tasks it started are still running at its end.
    """
    stray: list[dict[str, Any]] = []

    def record(loop: treadle.EventLoop, context: dict[str, Any]) -> None:
        stray.append(context)
        loop.default_exception_handler(context)

    async def guarded() -> Any:
        loop = treadle.get_running_loop()
        loop.set_exception_handler(record)
        result = await test(*args, **kwargs)
        leaked = treadle.all_tasks() - {treadle.current_task()}
        if leaked:
            for task in leaked:
                task.cancel()
            raise AssertionError(
                f"the test left {len(leaked)} task(s) running: "
                + ", ".join(sorted(repr(task) for task in leaked))
            )
        return result

    result = treadle.run(guarded(), clock=clock)
    if stray:
        details = "; ".join(str(context.get("message")) for context in stray)
        raise StrayErrorsError(f"the loop reported {len(stray)} unexpected error(s): {details}")
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
