"""The oracle harness: one test body runs on treadle and on asyncio, with the same guards.

``Framework`` stands for one framework under test (in the spirit of uvloop's ``_TestTCP``
base classes, run once on uvloop and once on stock asyncio). Its names are the module's
own (``fw.sleep``, ``fw.Lock``, ``fw.start_server`` ...), plus:
- ``run_guarded``, which runs a test's main coroutine and fails on tasks left running or
  errors reported to the loop's exception handler (on treadle on virtual time, where a
  deadlock fails at once instead of hanging); ``run_logged``, which runs one given a
  list to log in and returns the list;
- ``settle``, which waits until every other task is blocked;
- ``cancel_and_wait``, which cancels a task and checks it ends cancelled, and
  ``cancel_when_blocked``, which first lets a new task run until every task is blocked;
- ``start_each``, which starts a task per name and lets them all block, and ``finish``,
  which awaits tasks that may end cancelled.
``wait_on`` is a child task that logs how it ends. conftest.py offers ``Framework`` to
tests as the ``fw`` fixture. Imports treadle's public API and asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Iterable
from types import ModuleType
from typing import Any

import pytest

import treadle
from treadle.errors import CancelledError
from treadle.testing import VirtualClock, run_test, wait_all_tasks_blocked

# How long a test body may run on asyncio, and on treadle's virtual time, before it fails.
ASYNCIO_TIME_LIMIT = 10
VIRTUAL_DEADLOCK_DEADLINE = 3600
# asyncio has no wait_all_tasks_blocked: ``settle`` lets at least this many loop
# iterations pass (so replies over loopback sockets arrive), then waits until nothing is
# ready to run.
ASYNCIO_SETTLE_ITERATIONS = 100
SETTLE_STEP_LIMIT = 10_000


class Framework:
    """treadle or asyncio: the module's names, a guarded runner and ``settle``.

    ``fw.module`` is the module itself (``fw.module is treadle`` tells which one runs);
    any other name is looked up on it.
    """

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.name = module.__name__

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def __repr__(self) -> str:
        return f"<Framework {self.name}>"

    def run_guarded(self, main: Coroutine[Any, Any, Any], *, virtual_time: bool = True) -> Any:
        """Run ``main`` on a fresh loop and return its result.

        Fails if it leaves tasks running (on asyncio: still running once every task is
        blocked, since asyncio leaves some of its own to finish) or the loop's exception
        handler is called. On treadle it runs on a ``VirtualClock`` unless
        ``virtual_time`` is False; on asyncio it runs on real time, for at most
        ``ASYNCIO_TIME_LIMIT`` seconds.
        """
        __tracebackhide__ = True
        if self.module is treadle:
            return run_test(_watched, main, clock=VirtualClock() if virtual_time else None)
        return _run_asyncio_guarded(main)

    def run_logged(self, main: Callable[[list[Any]], Coroutine[Any, Any, None]]) -> list[Any]:
        """Run ``main(log)`` as ``run_guarded`` does, with a fresh list for it to record
        the interleaving in; return the list, for the test to compare."""
        __tracebackhide__ = True
        log: list[Any] = []
        self.run_guarded(main(log))
        return log

    async def settle(self) -> None:
        """Return once every other task is blocked and no callback is ready to run."""
        if self.module is treadle:
            await wait_all_tasks_blocked()
            return
        loop = asyncio.get_running_loop()
        for step in range(SETTLE_STEP_LIMIT):
            await asyncio.sleep(0)
            if step >= ASYNCIO_SETTLE_ITERATIONS and not loop._ready:  # type: ignore[attr-defined]
                return
        raise RuntimeError(f"settle(): other tasks kept running for {SETTLE_STEP_LIMIT} steps")

    async def cancel_and_wait(self, task: Any) -> None:
        """Cancel ``task`` and await it; fail unless awaiting it raises ``CancelledError``
        and the task ends cancelled."""
        __tracebackhide__ = True
        task.cancel()
        with pytest.raises(self.module.CancelledError):
            await task
        assert task.cancelled(), f"{task!r} did not end cancelled"

    async def cancel_when_blocked(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coro`` as a task until every task is blocked, then ``cancel_and_wait`` it;
        the task."""
        __tracebackhide__ = True
        task = self.module.create_task(coro)
        await self.settle()
        await self.cancel_and_wait(task)
        return task

    async def start_each(
        self, function: Callable[[str], Coroutine[Any, Any, Any]], names: Iterable[str]
    ) -> list[Any]:
        """A task running ``function(name)`` for each name, in order; once all are blocked."""
        tasks = [self.module.create_task(function(name)) for name in names]
        await self.settle()
        return tasks

    async def finish(self, tasks: Iterable[Any]) -> None:
        """Await every task, taking a cancellation as a normal way to end."""
        for task in tasks:
            with contextlib.suppress(self.module.CancelledError):
                await task


async def wait_on(fut: Any, log: list[str], name: str) -> Any:
    """A child that waits for ``fut``, logging how it ends: ``name done`` or the error."""
    try:
        value = await fut
    except BaseException as exc:
        log.append(f"{name} {type(exc).__name__}")
        raise
    log.append(f"{name} done")
    return value


TREADLE = Framework(treadle)
ASYNCIO = Framework(asyncio)


def _run_asyncio_guarded(main: Coroutine[Any, Any, Any]) -> Any:
    errors: list[dict[str, Any]] = []

    async def guarded() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        async with asyncio.timeout(ASYNCIO_TIME_LIMIT):
            result = await main
        leaked = asyncio.all_tasks() - {asyncio.current_task()}
        if leaked:
            # asyncio leaves some tasks of its own to finish after the body (before 3.12 a
            # closed server's connection handlers, its accept tasks): give them the loop
            # until every task is blocked. (The same body on treadle is checked at once.)
            await ASYNCIO.settle()
            leaked = {task for task in leaked if not task.done()}
        for task in leaked:
            task.cancel()
        assert not leaked, f"the test left tasks running: {leaked}"
        return result

    result = asyncio.run(guarded())
    assert not errors, f"the loop reported errors: {errors}"
    return result


async def _watched(main: Coroutine[Any, Any, Any]) -> Any:
    # On virtual time a deadlock makes the clock jump to this deadline at once, so the
    # test fails quickly instead of hanging until the pytest timeout.
    task = treadle.current_task()
    assert task is not None
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        task.cancel()

    timer = treadle.get_running_loop().call_later(VIRTUAL_DEADLOCK_DEADLINE, expire)
    try:
        return await main
    except CancelledError:
        if expired:
            raise AssertionError("deadlock: every task stayed blocked") from None
        raise
    finally:
        timer.cancel()
