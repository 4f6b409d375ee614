"""Tests for ``to_thread``.

Every test takes ``fw`` and runs twice: on treadle and on asyncio (the oracle). Threads
are synchronised with ``threading.Event``, never with sleeps.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import pytest

_var: contextvars.ContextVar[str] = contextvars.ContextVar("_var", default="unset")


def test_runs_in_another_thread_with_args_and_kwargs(fw: Any) -> None:
    def work(a: int, b: int, *, scale: int) -> tuple[int, int]:
        return (a + b) * scale, threading.get_ident()

    async def main() -> None:
        result, ident = await fw.to_thread(work, 1, 2, scale=10)
        assert result == 30
        assert ident != threading.get_ident()

    fw.run_guarded(main())


def test_exception_propagates(fw: Any) -> None:
    def work() -> None:
        raise PermissionError("nope")

    async def main() -> None:
        with pytest.raises(PermissionError, match="nope"):
            await fw.to_thread(work)

    fw.run_guarded(main())


def test_context_variables_are_visible_in_the_thread(fw: Any) -> None:
    def work() -> str:
        seen = _var.get()
        _var.set("changed in the thread")  # a copy: the caller does not see it
        return seen

    async def main() -> tuple[str, str]:
        _var.set("set by the caller")
        return await fw.to_thread(work), _var.get()

    assert fw.run_guarded(main()) == ("set by the caller", "set by the caller")


def test_other_tasks_run_while_the_thread_blocks(fw: Any) -> None:
    log: list[str] = []
    release = threading.Event()

    def blocking() -> str:
        release.wait(10)
        return "unblocked"

    async def main() -> None:
        async def other() -> None:
            log.append("other ran")
            release.set()

        task = fw.create_task(other())
        log.append(await fw.to_thread(blocking))
        await task

    fw.run_guarded(main())
    assert log == ["other ran", "unblocked"]


def test_cancelling_the_awaiting_task(fw: Any) -> None:
    log: list[str] = []
    release = threading.Event()

    async def main() -> None:
        loop = fw.get_running_loop()
        entered = loop.create_future()

        def blocking() -> None:
            loop.call_soon_threadsafe(entered.set_result, None)
            release.wait(10)
            log.append("thread finished")

        task = fw.create_task(fw.to_thread(blocking))
        await entered
        await fw.cancel_and_wait(task)
        log.append("task cancelled")
        release.set()

    fw.run_guarded(main())  # run() waits for the default executor's threads at its end
    assert log == ["task cancelled", "thread finished"]
