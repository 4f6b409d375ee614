"""Tests for ``to_thread``.

Every test takes ``ns`` and runs twice: on treadle and on asyncio (the oracle). Threads
are synchronised with ``threading.Event``, never with sleeps.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import types
from typing import Any

import pytest

import treadle
from treadle import threads
from treadle.errors import CancelledError
from treadle.testing import run_test

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def _run_asyncio(coro: Any) -> Any:
    """``asyncio.run`` that also fails on anything sent to the loop's exception handler."""
    stray: list[dict[str, Any]] = []

    async def guarded() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _, ctx: stray.append(ctx))
        return await coro

    result = asyncio.run(guarded())
    assert not stray, stray
    return result


def _treadle_namespace() -> Any:
    return types.SimpleNamespace(
        name="treadle",
        CancelledError=CancelledError,
        create_task=treadle.create_task,
        get_running_loop=treadle.get_running_loop,
        sleep=treadle.sleep,
        to_thread=threads.to_thread,
        run=lambda coro: run_test(lambda: coro),
    )


def _asyncio_namespace() -> Any:
    return types.SimpleNamespace(
        name="asyncio",
        CancelledError=asyncio.CancelledError,
        create_task=asyncio.create_task,
        get_running_loop=asyncio.get_running_loop,
        sleep=asyncio.sleep,
        to_thread=asyncio.to_thread,
        run=_run_asyncio,
    )


@pytest.fixture(params=["treadle", "asyncio"])
def ns(request: pytest.FixtureRequest) -> Any:
    """treadle's names, or asyncio's: the same test body must pass on both."""
    return _treadle_namespace() if request.param == "treadle" else _asyncio_namespace()


def test_runs_in_another_thread_with_args_and_kwargs(ns: Any) -> None:
    def work(a: int, b: int, *, scale: int) -> tuple[int, int]:
        return (a + b) * scale, threading.get_ident()

    async def main() -> None:
        result, ident = await ns.to_thread(work, 1, 2, scale=10)
        assert result == 30
        assert ident != threading.get_ident()

    ns.run(main())


def test_exception_propagates(ns: Any) -> None:
    def work() -> None:
        raise PermissionError("nope")

    async def main() -> None:
        with pytest.raises(PermissionError, match="nope"):
            await ns.to_thread(work)

    ns.run(main())


def test_context_variables_are_visible_in_the_thread(ns: Any) -> None:
    def work() -> str:
        seen = _var.get()
        _var.set("changed in the thread")  # a copy: the caller does not see it
        return seen

    async def main() -> tuple[str, str]:
        _var.set("set by the caller")
        return await ns.to_thread(work), _var.get()

    assert ns.run(main()) == ("set by the caller", "set by the caller")


def test_other_tasks_run_while_the_thread_blocks(ns: Any) -> None:
    log: list[str] = []
    release = threading.Event()

    def blocking() -> str:
        release.wait(10)
        return "unblocked"

    async def main() -> None:
        async def other() -> None:
            log.append("other ran")
            release.set()

        task = ns.create_task(other())
        log.append(await ns.to_thread(blocking))
        await task

    ns.run(main())
    assert log == ["other ran", "unblocked"]


def test_cancelling_the_awaiting_task(ns: Any) -> None:
    log: list[str] = []
    release = threading.Event()

    async def main() -> None:
        loop = ns.get_running_loop()
        entered = loop.create_future()

        def blocking() -> None:
            loop.call_soon_threadsafe(entered.set_result, None)
            release.wait(10)
            log.append("thread finished")

        task = ns.create_task(ns.to_thread(blocking))
        await entered
        task.cancel()
        with pytest.raises(ns.CancelledError):
            await task
        log.append("task cancelled")
        release.set()

    ns.run(main())  # run() waits for the default executor's threads at its end
    assert log == ["task cancelled", "thread finished"]
