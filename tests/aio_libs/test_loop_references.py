"""What the loop under test keeps alive: nothing of a task once the task is done.

Found by anyio's suite (TestRefcycles::test_exception_refcycles_parent_task) on Python
3.13: a failed coroutine's frame stays in its exception's traceback and links (f_back)
to the loop frame that ran it; since 3.12 a returned frame keeps its locals, so a loop
whose run-once frame still names its last callback keeps that task, and the task its
exception, alive.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import pytest
from loops_under_test import LoopFactory, run_on_fresh_loop


class Failure(Exception):
    pass


async def fail() -> None:
    raise Failure


@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug"])
def test_a_failed_task_is_freed_while_its_exception_lives(
    loop_factory: LoopFactory, debug: bool
) -> None:
    def debug_loop() -> asyncio.AbstractEventLoop:
        loop = loop_factory()
        loop.set_debug(debug)
        return loop

    async def main() -> tuple[Any, ...]:
        task = asyncio.create_task(fail())
        await asyncio.wait([task])
        error = task.exception()
        task_reference = weakref.ref(task)
        del task
        gc.collect()
        return error, task_reference() is None

    error, freed = run_on_fresh_loop(debug_loop, main)
    assert isinstance(error, Failure)
    assert freed, "the finished task is still referenced"
