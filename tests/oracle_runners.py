"""Run one async test body on asyncio (the oracle) or on treadle, with the same guards.

Shared by the coordination tests. For locks and queues, both runners fail a
test that leaves tasks running or makes the loop report errors, and on treadle a
deadlock shows up at once (virtual time jumps to a watchdog) instead of as a hang.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine
from typing import Any

import treadle
from treadle import combinators, taskgroups, threads, timeouts
from treadle.errors import CancelledError
from treadle.testing import VirtualClock, run_test


async def settle_asyncio() -> None:
    """asyncio's ``wait_all_tasks_blocked``: yield until nothing else is ready."""
    loop = asyncio.get_running_loop()
    for _ in range(10_000):
        await asyncio.sleep(0)
        if not loop._ready:  # type: ignore[attr-defined]
            return
    raise RuntimeError("other tasks kept running for 10,000 steps")


def run_asyncio(main: Coroutine[Any, Any, Any]) -> Any:
    errors: list[dict[str, Any]] = []

    async def guarded() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: errors.append(ctx))
        async with asyncio.timeout(10):
            result = await main
        leaked = asyncio.all_tasks() - {asyncio.current_task()}
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

    timer = treadle.get_running_loop().call_later(3600, expire)
    try:
        return await main
    except CancelledError:
        if expired:
            raise AssertionError("deadlock: every task stayed blocked") from None
        raise
    finally:
        timer.cancel()


def run_treadle(main: Coroutine[Any, Any, Any]) -> Any:
    return run_test(_watched, main, clock=VirtualClock())


def run_asyncio_checking_errors(coro: Any) -> Any:
    """``asyncio.run`` that also fails on anything sent to the loop's exception handler."""
    stray: list[dict[str, Any]] = []

    async def guarded() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: stray.append(ctx))
        return await coro

    result = asyncio.run(guarded())
    assert not stray, stray
    return result


def treadle_coordination() -> Any:
    """treadle's coordination names (and run()), for the combinator, timeout and
    task group tests."""
    ns = types.SimpleNamespace(name="treadle", CancelledError=CancelledError)
    for name in ("create_task", "current_task", "get_running_loop", "sleep"):
        setattr(ns, name, getattr(treadle, name))
    for module in (combinators, timeouts, taskgroups, threads):
        for name in module.__all__:
            setattr(ns, name, getattr(module, name))
    ns.run = lambda coro: run_test(lambda: coro)
    return ns
