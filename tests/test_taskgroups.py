"""Tests for ``TaskGroup``.

The tests that take ``fw`` run twice: on treadle and on asyncio (the oracle); they use
no time at all, only futures completed in a chosen order. The ``async def`` tests are
treadle-only.
"""

from __future__ import annotations

import contextvars
import gc
import inspect
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from oracle_runners import TREADLE, wait_on

import treadle
from treadle import timeouts
from treadle.errors import CancelledError
from treadle.taskgroups import TaskGroup
from treadle.testing import VirtualClock, wait_all_tasks_blocked


async def _fail_soon(fw: Any, log: list[str], exc: BaseException, steps: int = 1) -> None:
    for _ in range(steps):
        await fw.sleep(0)
    log.append(f"raise {exc!r}")
    raise exc


def _waits_forever(fw: Any, log: list[str], name: str) -> Coroutine[Any, Any, Any]:
    """A child waiting on a future nobody completes, logging how it ends (``wait_on``)."""
    return wait_on(fw.get_running_loop().create_future(), log, name)


def _group_summary(group: BaseExceptionGroup[Any]) -> tuple[str, list[str]]:
    return type(group).__name__, sorted(repr(e) for e in group.exceptions)


# --- conformance with asyncio -------------------------------------------------------------


def test_block_waits_for_every_task(fw: Any) -> None:
    log: list[str] = []

    async def main() -> list[Any]:
        loop = fw.get_running_loop()
        a, b = loop.create_future(), loop.create_future()
        async with fw.TaskGroup() as tg:
            ta = tg.create_task(wait_on(a, log, "a"))
            tb = tg.create_task(wait_on(b, log, "b"), name="bee")
            loop.call_soon(b.set_result, 2)
            loop.call_soon(a.set_result, 1)
            log.append("body done")
        log.append("block done")
        assert tb.get_name() == "bee"
        return [ta.result(), tb.result()]

    assert fw.run_guarded(main()) == [1, 2]
    assert log == ["body done", "b done", "a done", "block done"]


def test_failure_cancels_siblings_and_body(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = fw.get_running_loop()
        try:
            async with fw.TaskGroup() as tg:
                tg.create_task(_waits_forever(fw, log, "sibling"))
                tg.create_task(_fail_soon(fw, log, ValueError("boom")))
                try:
                    await loop.create_future()
                except fw.CancelledError:
                    log.append("body CancelledError")
                    raise
        except ExceptionGroup as group:
            log.append(repr(_group_summary(group)))
        log.append(f"cancelling={fw.current_task().cancelling()}")

    fw.run_guarded(main())
    assert log == [
        "raise ValueError('boom')",
        "sibling CancelledError",
        "body CancelledError",
        "('ExceptionGroup', [\"ValueError('boom')\"])",
        "cancelling=0",
    ]


class _Fatal(BaseException):
    pass


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        pytest.param(
            lambda: [ValueError(1), KeyError(2)],
            ("ExceptionGroup", ["KeyError(2)", "ValueError(1)"]),
            id="all-failures-are-collected",
        ),
        pytest.param(
            lambda: [_Fatal("f"), ValueError("v")],
            ("BaseExceptionGroup", ["ValueError('v')", "_Fatal('f')"]),
            id="a-base-exception-in-a-task-makes-a-base-exception-group",
        ),
    ],
)
def test_the_group_collects_every_failure(
    fw: Any, errors: Callable[[], list[BaseException]], expected: tuple[str, list[str]]
) -> None:
    log: list[str] = []

    async def main() -> None:
        try:
            async with fw.TaskGroup() as tg:
                for error in errors():
                    tg.create_task(_fail_soon(fw, log, error))
        except BaseExceptionGroup as group:
            log.append(repr(_group_summary(group)))

    fw.run_guarded(main())
    assert log[-1] == repr(expected)


def test_failure_while_the_block_waits_at_its_end(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        try:
            async with fw.TaskGroup() as tg:
                tg.create_task(_waits_forever(fw, log, "sibling"))
                tg.create_task(_fail_soon(fw, log, ValueError("late"), steps=3))
                log.append("body done")
        except ExceptionGroup as group:
            log.append(repr(_group_summary(group)))

    fw.run_guarded(main())
    assert log == [
        "body done",
        "raise ValueError('late')",
        "sibling CancelledError",
        "('ExceptionGroup', [\"ValueError('late')\"])",
    ]


@pytest.mark.parametrize(
    ("error", "comes_out_as"),
    [
        pytest.param(
            LookupError("body"),
            repr(("ExceptionGroup", ["LookupError('body')"])),
            id="an-error-joins-the-group",
        ),
        pytest.param(KeyboardInterrupt(), "KeyboardInterrupt()", id="keyboard-interrupt-as-itself"),
    ],
)
def test_body_error_cancels_the_tasks_and_comes_out(
    fw: Any, error: BaseException, comes_out_as: str
) -> None:
    log: list[str] = []

    async def main() -> None:
        try:
            async with fw.TaskGroup() as tg:
                tg.create_task(_waits_forever(fw, log, "child"))
                await fw.sleep(0)
                raise error
        except ExceptionGroup as group:
            log.append(repr(_group_summary(group)))
        except KeyboardInterrupt as interrupt:
            log.append(repr(interrupt))

    fw.run_guarded(main())
    assert log == ["child CancelledError", comes_out_as]


def test_outside_cancel_propagates_after_the_tasks_finish(fw: Any) -> None:
    log: list[str] = []

    async def stubborn(fw: Any) -> None:
        try:
            await fw.get_running_loop().create_future()
        except fw.CancelledError:
            await fw.sleep(0)
            log.append("child cleaned up")
            raise

    async def parent() -> None:
        try:
            async with fw.TaskGroup() as tg:
                tg.create_task(stubborn(fw))
                await fw.get_running_loop().create_future()
        except fw.CancelledError:
            log.append("parent CancelledError")
            raise

    fw.run_guarded(fw.cancel_when_blocked(parent()))
    assert log == ["child cleaned up", "parent CancelledError"]


def test_outside_cancel_while_the_block_waits_at_its_end(fw: Any) -> None:
    log: list[str] = []

    async def parent() -> None:
        try:
            async with fw.TaskGroup() as tg:
                tg.create_task(_waits_forever(fw, log, "child"))
        except fw.CancelledError:
            log.append("parent CancelledError")
            raise

    fw.run_guarded(fw.cancel_when_blocked(parent()))  # cancelled at the block's end
    assert log == ["child CancelledError", "parent CancelledError"]


def test_create_task_before_entering_is_an_error(fw: Any) -> None:
    async def main() -> None:
        coro = fw.sleep(0)
        with pytest.raises(RuntimeError):
            fw.TaskGroup().create_task(coro)
        coro.close()  # asyncio 3.11 leaves it open

    fw.run_guarded(main())


def test_create_task_after_the_group_finished_is_an_error(fw: Any) -> None:
    async def main() -> None:
        async with fw.TaskGroup() as tg:
            pass
        coro = fw.sleep(0)
        with pytest.raises(RuntimeError):
            tg.create_task(coro)
        coro.close()

    fw.run_guarded(main())


def test_create_task_while_shutting_down_is_an_error(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        try:
            async with fw.TaskGroup() as tg:
                tg.create_task(_fail_soon(fw, log, ValueError("x")))
                try:
                    await fw.get_running_loop().create_future()
                except fw.CancelledError:
                    coro = fw.sleep(0)
                    try:
                        tg.create_task(coro)
                    except RuntimeError:
                        log.append("refused")
                    coro.close()
                    raise
        except ExceptionGroup:
            log.append("group")

    fw.run_guarded(main())
    assert log == ["raise ValueError('x')", "refused", "group"]


def test_tasks_may_start_tasks_while_the_block_waits(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        async with fw.TaskGroup() as tg:

            async def spawner() -> None:
                await fw.sleep(0)
                tg.create_task(wait_on(fw.sleep(0, "late"), log, "late child"))
                log.append("spawned")

            tg.create_task(spawner())
            log.append("body done")
        log.append("block done")

    fw.run_guarded(main())
    assert log == ["body done", "spawned", "late child done", "block done"]


def test_entering_twice_is_an_error(fw: Any) -> None:
    async def main() -> None:
        tg = fw.TaskGroup()
        async with tg:
            with pytest.raises(RuntimeError):
                async with tg:
                    pass

    fw.run_guarded(main())


def test_nested_groups(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        try:
            async with fw.TaskGroup() as outer:
                outer.create_task(_waits_forever(fw, log, "outer child"))
                async with fw.TaskGroup() as inner:
                    inner.create_task(_fail_soon(fw, log, ValueError("deep")))
        except ExceptionGroup as group:
            log.append(repr(_group_summary(group)))
            log.append(repr(_group_summary(group.exceptions[0])))

    fw.run_guarded(main())
    assert log == [
        "raise ValueError('deep')",
        "outer child CancelledError",
        repr(
            (
                "ExceptionGroup",
                ["ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('deep')])"],
            )
        ),
        repr(("ExceptionGroup", ["ValueError('deep')"])),
    ]


def test_timeout_around_a_group_is_a_timeout_error(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        try:
            async with fw.timeout(0.002), fw.TaskGroup() as tg:
                tg.create_task(_waits_forever(fw, log, "child"))
        except TimeoutError:
            log.append("TimeoutError")
        log.append(f"cancelling={fw.current_task().cancelling()}")

    fw.run_guarded(main())
    assert log == ["child CancelledError", "TimeoutError", "cancelling=0"]


# --- treadle only -------------------------------------------------------------------------


async def test_outside_cancel_is_kept_when_tasks_failed() -> None:
    # asyncio 3.13 behaviour: the ExceptionGroup comes out, and the enclosing task is
    # still cancelled, so its next await raises CancelledError.
    log: list[str] = []
    loop = treadle.get_running_loop()

    async def fails_on_cancel() -> None:
        try:
            await loop.create_future()
        except CancelledError:
            raise ValueError("cleanup failed") from None

    async def parent() -> None:
        try:
            async with TaskGroup() as tg:
                tg.create_task(fails_on_cancel())
                await loop.create_future()
        except* ValueError:
            log.append("caught the group")
        try:
            await treadle.sleep(0)
        except CancelledError:
            log.append("still cancelled")
            raise

    task = treadle.create_task(parent())
    await wait_all_tasks_blocked()
    await TREADLE.cancel_and_wait(task)
    assert log == ["caught the group", "still cancelled"]


async def test_failure_while_waiting_at_the_end_leaves_no_cancellation() -> None:
    # asyncio 3.11 leaves cancelling() at 1 here (fixed in 3.12): the group's own
    # cancellation of the parent must be withdrawn even when it came after the body.
    async def fail() -> None:
        await treadle.sleep(0)
        raise ValueError("late")

    with pytest.raises(ExceptionGroup):
        async with TaskGroup() as tg:
            tg.create_task(fail())
    task = treadle.current_task()
    assert task is not None and task.cancelling() == 0
    await treadle.sleep(0)  # no cancellation is left pending either


async def test_create_task_refusal_closes_the_coroutine() -> None:
    async with TaskGroup() as tg:
        pass
    ran: list[str] = []

    async def child() -> None:
        ran.append("child")

    coro = child()
    with pytest.raises(RuntimeError, match="is finished"):
        tg.create_task(coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED  # no 'never awaited'
    with pytest.raises(RuntimeError, match="not been entered"):
        TaskGroup().create_task(child())
    gc.collect()
    assert ran == []


async def test_create_task_passes_the_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")

    async def read() -> str:
        return var.get()

    async with TaskGroup() as tg:
        task = tg.create_task(read(), context=ctx)
    assert task.result() == "in ctx"


async def test_group_with_a_timeout_on_virtual_time(virtual_clock: VirtualClock) -> None:
    loop = treadle.get_running_loop()
    finished: list[float] = []

    async def sleeper(delay: float) -> None:
        await treadle.sleep(delay)
        finished.append(loop.time())

    async with TaskGroup() as tg:
        for delay in (3, 1, 2):
            tg.create_task(sleeper(delay))
    assert finished == [1, 2, 3]
    with pytest.raises(TimeoutError):
        async with timeouts.timeout(1.5), TaskGroup() as tg:
            tg.create_task(sleeper(5))
    assert loop.time() == 4.5


async def test_repr() -> None:
    tg = TaskGroup()
    assert repr(tg) == "<TaskGroup created tasks=0>"
    async with tg:
        tg.create_task(treadle.sleep(0))
        assert repr(tg) == "<TaskGroup running tasks=1>"
    assert repr(tg) == "<TaskGroup finished tasks=0>"
