"""Tests for ``gather``, ``wait``, ``wait_for``, ``as_completed`` and ``shield``.

The tests that take ``fw`` run twice: on treadle (on virtual time) and on asyncio (the
oracle), with tiny real delays or none. The ``async def`` tests are treadle-only and run
on virtual time.
Children usually wait on futures that the test completes in a chosen order, so the
interleaving is fixed without any timing.
"""

from __future__ import annotations

import asyncio
import gc
import math
import sys
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import pytest
from oracle_runners import TREADLE, wait_on

import treadle
from treadle.combinators import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    as_completed,
    gather,
    shield,
    wait,
    wait_for,
)
from treadle.errors import CancelledError
from treadle.testing import VirtualClock, wait_all_tasks_blocked

# --- gather -------------------------------------------------------------------------------


def test_gather_results_in_argument_order(fw: Any) -> None:
    log: list[str] = []

    async def main() -> list[Any]:
        loop = fw.get_running_loop()
        a, b, c = (loop.create_future() for _ in range(3))
        gathered = fw.gather(wait_on(a, log, "a"), wait_on(b, log, "b"), wait_on(c, log, "c"))
        await fw.settle()
        c.set_result(3)
        await fw.settle()
        a.set_result(1)
        await fw.settle()
        b.set_result(2)
        return list(await gathered)

    assert fw.run_guarded(main()) == [1, 2, 3]
    assert log == ["c done", "a done", "b done"]


def test_gather_of_nothing_is_an_empty_list(fw: Any) -> None:
    async def main() -> list[Any]:
        return list(await fw.gather())

    assert fw.run_guarded(main()) == []


def test_gather_awaits_the_same_awaitable_once(fw: Any) -> None:
    log: list[str] = []

    async def child() -> str:
        log.append("ran")
        await fw.sleep(0)
        return "x"

    async def main() -> list[Any]:
        coro = child()
        fut = fw.get_running_loop().create_future()
        fut.set_result("f")
        return list(await fw.gather(coro, fut, coro, fut))

    assert fw.run_guarded(main()) == ["x", "f", "x", "f"]
    assert log == ["ran"]


def test_gather_child_exception_propagates_others_keep_running(fw: Any) -> None:
    log: list[str] = []

    async def fail() -> None:
        await fw.sleep(0)
        raise ValueError("boom")

    async def main() -> None:
        slow_done = fw.get_running_loop().create_future()
        release = fw.get_running_loop().create_future()

        async def slow() -> str:
            await release
            log.append("slow done")
            slow_done.set_result(None)
            return "slow"

        with pytest.raises(ValueError, match="boom"):
            await fw.gather(fail(), slow())
        log.append("gather raised")
        release.set_result(None)
        await slow_done

    fw.run_guarded(main())
    assert log == ["gather raised", "slow done"]


def test_gather_retrieves_later_exceptions_so_none_is_reported(fw: Any) -> None:
    async def fail(steps: int) -> None:
        for _ in range(steps):
            await fw.sleep(0)
        raise ValueError(steps)

    async def main() -> None:
        with pytest.raises(ValueError, match="1"):
            await fw.gather(fail(1), fail(3))
        await fw.settle()  # the second child fails too, after the gather
        gc.collect()  # a 'never retrieved' report would come from the task's finalizer

    fw.run_guarded(main())


def test_gather_return_exceptions_gives_them_as_results(fw: Any) -> None:
    async def fail() -> None:
        raise KeyError("k")

    async def ok() -> int:
        await fw.sleep(0)
        return 7

    async def main() -> list[Any]:
        return list(await fw.gather(fail(), ok(), return_exceptions=True))

    results = fw.run_guarded(main())
    assert isinstance(results[0], KeyError)
    assert results[1] == 7


def test_cancelling_gather_cancels_the_children(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = fw.get_running_loop()
        futs = [loop.create_future() for _ in range(2)]
        children = [fw.create_task(wait_on(f, log, f"c{i}")) for i, f in enumerate(futs)]
        gathered = fw.gather(*children)
        await fw.settle()
        assert gathered.cancel()
        with pytest.raises(fw.CancelledError):
            await gathered
        log.append(f"children cancelled: {[t.cancelled() for t in children]}")

    fw.run_guarded(main())
    assert log == ["c0 CancelledError", "c1 CancelledError", "children cancelled: [True, True]"]


@pytest.mark.parametrize("return_exceptions", [False, True])
def test_cancelling_the_task_awaiting_gather_cancels_the_children(
    fw: Any, return_exceptions: bool
) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = fw.get_running_loop()
        futs = [loop.create_future() for _ in range(2)]

        async def parent() -> None:
            await fw.gather(
                *(wait_on(f, log, f"c{i}") for i, f in enumerate(futs)),
                return_exceptions=return_exceptions,
            )
            log.append("parent returned: wrong")

        await fw.cancel_when_blocked(parent())

    fw.run_guarded(main())
    assert log == ["c0 CancelledError", "c1 CancelledError"]


def test_gather_cancel_message_reaches_the_awaiter(fw: Any) -> None:
    async def main() -> tuple[Any, ...]:
        fut = fw.get_running_loop().create_future()
        gathered = fw.gather(wait_on(fut, [], "c"))
        await fw.settle()
        gathered.cancel("stop now")
        try:
            await gathered
        except fw.CancelledError as exc:
            return tuple(exc.args)
        return ()

    assert fw.run_guarded(main()) == ("stop now",)


@pytest.mark.parametrize("return_exceptions", [False, True])
def test_child_cancelled_from_outside(fw: Any, return_exceptions: bool) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = fw.get_running_loop()
        victim_fut, other_fut = loop.create_future(), loop.create_future()
        victim = fw.create_task(wait_on(victim_fut, log, "victim"))
        other = fw.create_task(wait_on(other_fut, log, "other"))
        gathered = fw.gather(victim, other, return_exceptions=return_exceptions)
        await fw.settle()
        victim.cancel()
        if return_exceptions:
            await fw.settle()
            other_fut.set_result("o")
            results = await gathered
            log.append(f"results: {[type(r).__name__ for r in results]}")
        else:
            with pytest.raises(fw.CancelledError):
                await gathered
            log.append("gather raised CancelledError")
            other_fut.set_result("o")
            await other
        log.append(f"other cancelled={other.cancelled()}")

    fw.run_guarded(main())
    if return_exceptions:
        assert log == [
            "victim CancelledError",
            "other done",
            "results: ['CancelledError', 'str']",
            "other cancelled=False",
        ]
    else:
        assert log == [
            "victim CancelledError",
            "gather raised CancelledError",
            "other done",
            "other cancelled=False",
        ]


def test_gather_rejects_a_non_awaitable(fw: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError):
            fw.gather(fw.sleep(0), 42)

    # (asyncio starts the first child before it notices; treadle checks first.)
    with _no_unawaited_warnings():
        fw.run_guarded(main())


async def test_gather_error_names_the_culprit_and_starts_nothing() -> None:
    started: list[str] = []

    async def child() -> None:
        started.append("child")

    with pytest.raises(TypeError, match="got 42"):
        gather(child(), 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="instead of calling it"):
        gather(child)  # type: ignore[arg-type]
    await wait_all_tasks_blocked()
    assert started == []  # and no 'never awaited' warning: the coroutines were closed


async def test_gather_drives_generator_coroutines() -> None:
    def gen() -> Generator[Any, None, str]:
        yield from treadle.sleep(0).__await__()
        return "g"

    assert await gather(gen(), gen()) == ["g", "g"]


class _no_unawaited_warnings:
    """Collect garbage on exit so an unawaited coroutine warns here, not in a later test."""

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc: object) -> None:
        gc.collect()


# --- wait ---------------------------------------------------------------------------------


def test_wait_first_completed(fw: Any) -> None:
    async def main() -> None:
        loop = fw.get_running_loop()
        a, b = loop.create_future(), loop.create_future()
        ta = fw.create_task(wait_on(a, [], "a"))
        tb = fw.create_task(wait_on(b, [], "b"))
        loop.call_soon(b.set_result, "b")
        done, pending = await fw.wait({ta, tb}, return_when=fw.FIRST_COMPLETED)
        assert (done, pending) == ({tb}, {ta})
        a.set_result("a")
        await ta

    fw.run_guarded(main())


def test_wait_first_exception_and_all_completed(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = fw.get_running_loop()
        a, b, c = (loop.create_future() for _ in range(3))
        tasks = [fw.create_task(wait_on(f, log, n)) for f, n in ((a, "a"), (b, "b"), (c, "c"))]
        loop.call_soon(a.set_result, 1)
        loop.call_soon(b.set_exception, ValueError("b"))
        done, pending = await fw.wait(tasks, return_when=fw.FIRST_EXCEPTION)
        assert done == set(tasks[:2]) and pending == {tasks[2]}
        assert isinstance(tasks[1].exception(), ValueError)
        loop.call_soon(c.set_result, 3)
        done, pending = await fw.wait(tasks)  # ALL_COMPLETED
        assert done == set(tasks) and not pending

    fw.run_guarded(main())
    assert log == ["a done", "b ValueError", "c done"]


def test_wait_first_exception_returns_when_all_done_without_error(fw: Any) -> None:
    async def main() -> None:
        tasks = [fw.create_task(fw.sleep(0, i)) for i in range(3)]
        done, pending = await fw.wait(tasks, return_when=fw.FIRST_EXCEPTION)
        assert done == set(tasks) and not pending

    fw.run_guarded(main())


def test_wait_timeout_returns_what_is_done_and_cancels_nothing(fw: Any) -> None:
    async def main() -> None:
        never = fw.get_running_loop().create_future()
        quick = fw.create_task(fw.sleep(0))
        stuck = fw.create_task(wait_on(never, [], "stuck"))
        # Real time on asyncio: quick must finish within the timeout, so the timeout
        # outlasts any stall a busy machine can put between the two (virtual on treadle).
        done, pending = await fw.wait([quick, stuck], timeout=0.5)
        assert (done, pending) == ({quick}, {stuck})
        assert not stuck.done()
        await fw.cancel_and_wait(stuck)

    fw.run_guarded(main())


def test_wait_rejects_bare_coroutines(fw: Any) -> None:
    async def main() -> None:
        coro = fw.sleep(0)
        with pytest.raises(TypeError):
            await fw.wait([coro])
        coro.close()  # asyncio leaves it open

    fw.run_guarded(main())


def test_wait_rejects_a_single_future(fw: Any) -> None:
    async def main() -> None:
        fut = fw.get_running_loop().create_future()
        with pytest.raises(TypeError):
            await fw.wait(fut)

    fw.run_guarded(main())


def test_wait_rejects_empty_and_bad_return_when(fw: Any) -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            await fw.wait([])
        with pytest.raises(ValueError):
            await fw.wait(set())
        task = fw.create_task(fw.sleep(0))
        with pytest.raises(ValueError):
            await fw.wait([task], return_when="WHENEVER")
        await task

    fw.run_guarded(main())


@pytest.mark.parametrize("bad", [math.nan])
async def test_wait_bad_timeout_is_a_value_error(bad: float) -> None:
    task = treadle.create_task(treadle.sleep(0))
    with pytest.raises(ValueError, match="wait\\(\\) timeout"):
        await wait([task], timeout=bad)
    await task


async def test_wait_error_messages() -> None:
    with pytest.raises(ValueError, match="no futures"):
        await wait([])
    with pytest.raises(TypeError, match="create_task"):
        await wait([treadle.sleep(0)])
    with pytest.raises(TypeError, match="got 'nope'"):
        await wait(["nope"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'WHENEVER'"):
        await wait([treadle.create_task(treadle.sleep(0))], return_when="WHENEVER")
    await wait_all_tasks_blocked()


async def test_wait_timeout_on_virtual_time(virtual_clock: VirtualClock) -> None:
    loop = treadle.get_running_loop()
    slow = treadle.create_task(treadle.sleep(10))
    done, pending = await wait([slow], timeout=3)
    assert (done, pending) == (set(), {slow})
    assert loop.time() == 3
    done, pending = await wait([slow], return_when=FIRST_COMPLETED)
    assert (done, pending) == ({slow}, set())
    assert loop.time() == 10


async def test_wait_accepts_asyncio_constants() -> None:
    task = treadle.create_task(treadle.sleep(0))
    done, _ = await wait([task], return_when=asyncio.FIRST_COMPLETED)
    assert done == {task}
    assert (FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED) == (
        asyncio.FIRST_COMPLETED,
        asyncio.FIRST_EXCEPTION,
        asyncio.ALL_COMPLETED,
    )


# --- wait_for -----------------------------------------------------------------------------


def test_wait_for_in_time_returns_the_result(fw: Any) -> None:
    async def main() -> Any:
        return await fw.wait_for(fw.sleep(0, "r"), 10)

    assert fw.run_guarded(main()) == "r"


def test_wait_for_none_waits_as_long_as_it_takes(fw: Any) -> None:
    async def main() -> Any:
        return await fw.wait_for(fw.sleep(0.005, "late"), None)

    assert fw.run_guarded(main()) == "late"


def test_wait_for_timeout_cancels_the_inner_then_raises(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        try:
            await fw.wait_for(wait_on(fw.sleep(10), log, "inner"), 0.002)
        except TimeoutError as exc:
            assert type(exc) is TimeoutError
            log.append("TimeoutError")
        log.append(f"cancelling={fw.current_task().cancelling()}")

    fw.run_guarded(main())
    assert log == ["inner CancelledError", "TimeoutError", "cancelling=0"]


def test_wait_for_timeout_cancels_a_task_and_waits_for_it(fw: Any) -> None:
    log: list[str] = []

    async def stubborn() -> None:
        try:
            await fw.sleep(10)
        except fw.CancelledError:
            log.append("cleaning up")
            await fw.sleep(0)
            log.append("cleaned up")
            raise

    async def main() -> None:
        task = fw.create_task(stubborn())
        with pytest.raises(TimeoutError):
            await fw.wait_for(task, 0.002)
        log.append(f"TimeoutError, task cancelled={task.cancelled()}")

    fw.run_guarded(main())
    assert log == ["cleaning up", "cleaned up", "TimeoutError, task cancelled=True"]


def test_wait_for_inner_exception_propagates(fw: Any) -> None:
    async def fail() -> None:
        await fw.sleep(0)
        raise OSError("disk")

    async def main() -> None:
        with pytest.raises(OSError, match="disk"):
            await fw.wait_for(fail(), 10)

    fw.run_guarded(main())


def test_wait_for_result_arriving_with_the_deadline_times_out(fw: Any) -> None:
    # The future completes in the loop iteration where the deadline timer runs, just
    # before it: block the loop past the deadline, then complete the future from the
    # next iteration's ready queue, which runs ahead of the due timer. The waiter has
    # not woken yet when the deadline cancels it, so it times out; the result stays on
    # the future. treadle follows asyncio 3.12+ here.
    deadline = 0.01
    not_set_up = "the loop reached the blocking callback after the deadline"

    async def main() -> Any:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        # wait_for's own deadline is set after this, so never earlier than this one.
        deadline_at = loop.time() + deadline

        def block_past_the_deadline() -> None:
            if loop.time() >= deadline_at:
                return  # the deadline may have come due ahead of this callback
            time.sleep(2 * deadline)
            loop.call_soon(fut.set_result, "kept")

        loop.call_soon(block_past_the_deadline)
        try:
            return f"returned {await fw.wait_for(fut, deadline)}"
        except TimeoutError:
            return not_set_up if fut.cancelled() else f"timed out; the future holds {fut.result()}"

    # Real time: the loop is blocked past the deadline with time.sleep. On a busy machine
    # the loop can be held up between starting the wait and that callback past the
    # deadline itself; such a run tests nothing and is made again.
    for _ in range(10):
        outcome = fw.run_guarded(main(), virtual_time=False)
        if outcome != not_set_up:
            break
    if fw.name == "asyncio" and sys.version_info < (3, 12):
        # asyncio 3.11's own wait_for returned the result; 3.12 rebuilt wait_for on
        # timeout() (CPython gh-96764), and the deadline's cancellation wins.
        assert outcome == "returned kept"
    else:
        assert outcome == "timed out; the future holds kept"


def test_wait_for_outside_cancel_is_not_a_timeout(fw: Any) -> None:
    log: list[str] = []

    async def waiter() -> None:
        try:
            await fw.wait_for(fw.sleep(10), 5)
        except TimeoutError:
            log.append("TimeoutError: wrong")
        except fw.CancelledError:
            log.append("CancelledError")
            raise

    fw.run_guarded(fw.cancel_when_blocked(waiter()))
    assert log == ["CancelledError"]


def test_wait_for_rejects_a_non_awaitable(fw: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError):
            await fw.wait_for(42, 1)

    fw.run_guarded(main())


async def test_wait_for_result_and_deadline_in_one_iteration(
    virtual_clock: VirtualClock,
) -> None:
    # Deterministic on virtual time: both timers are due at t=1, the result's first.
    # The deadline cancels the waiter before it wakes: TimeoutError, as in asyncio 3.12+.
    loop = treadle.get_running_loop()
    fut: treadle.Future[str] = loop.create_future()
    loop.call_at(loop.time() + 1, fut.set_result, "kept")
    with pytest.raises(TimeoutError):
        await wait_for(fut, 1)
    assert fut.result() == "kept"
    assert loop.time() == 1
    assert treadle.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_wait_for_deadline_and_outside_cancel_together(
    virtual_clock: VirtualClock,
) -> None:
    loop = treadle.get_running_loop()
    task = treadle.create_task(wait_for(treadle.sleep(10), 1))
    loop.call_at(loop.time() + 1, task.cancel)  # due with the deadline, before it
    with pytest.raises(CancelledError):
        await task
    assert task.cancelled()


async def test_wait_for_outside_cancel_with_the_result_is_not_swallowed() -> None:
    # asyncio 3.11 returns the result here and loses the cancellation.
    loop = treadle.get_running_loop()
    fut: treadle.Future[str] = loop.create_future()
    task = treadle.create_task(wait_for(fut, 10))
    await wait_all_tasks_blocked()
    fut.set_result("too late")
    await TREADLE.cancel_and_wait(task)


async def test_wait_for_fires_at_the_deadline(virtual_clock: VirtualClock) -> None:
    loop = treadle.get_running_loop()
    with pytest.raises(TimeoutError):
        await wait_for(treadle.sleep(100), 2.5)
    assert loop.time() == 2.5


@pytest.mark.parametrize("bad", [math.nan])
async def test_wait_for_bad_timeout_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match="wait_for\\(\\) timeout"):
        await wait_for(treadle.sleep(1), bad)
    # The coroutine was closed, so it does not warn that it was never awaited.


async def test_wait_for_non_awaitable_error_names_it() -> None:
    with pytest.raises(TypeError, match="got 42"):
        await wait_for(42, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seconds, got '1'"):
        await wait_for(treadle.sleep(0), "1")  # type: ignore[arg-type]


async def test_wait_for_runs_a_generator_coroutine(virtual_clock: VirtualClock) -> None:
    def gen() -> Generator[Any, None, str]:
        yield from treadle.sleep(1).__await__()
        return "g"

    assert await wait_for(gen(), 5) == "g"
    with pytest.raises(TimeoutError):
        await wait_for(gen(), 0.5)


# --- as_completed -------------------------------------------------------------------------


def test_as_completed_in_completion_order(fw: Any) -> None:
    async def main() -> list[Any]:
        loop = fw.get_running_loop()
        futs = [loop.create_future() for _ in range(3)]
        for i in (2, 0, 1):
            loop.call_soon(futs[i].set_result, i)
        return [await aw for aw in fw.as_completed(futs)]

    assert fw.run_guarded(main()) == [2, 0, 1]


def test_as_completed_raises_each_exception_in_turn(fw: Any) -> None:
    async def main() -> list[str]:
        loop = fw.get_running_loop()
        bad, good = loop.create_future(), loop.create_future()
        loop.call_soon(bad.set_exception, ValueError("bad"))
        loop.call_soon(good.set_result, "good")
        out = []
        for aw in fw.as_completed([good, bad]):
            try:
                out.append(await aw)
            except ValueError as exc:
                out.append(f"raised {exc}")
        return out

    assert fw.run_guarded(main()) == ["raised bad", "good"]


def test_as_completed_wraps_coroutines_and_drops_duplicates(fw: Any) -> None:
    async def main() -> list[Any]:
        fut = fw.get_running_loop().create_future()
        fut.set_result("f")
        awaitables = list(fw.as_completed([fut, fut, fw.sleep(0, "c")]))
        return sorted([await aw for aw in awaitables])

    assert fw.run_guarded(main()) == ["c", "f"]


def test_as_completed_timeout(fw: Any) -> None:
    async def main() -> list[str]:
        loop = fw.get_running_loop()
        quick, never = loop.create_future(), loop.create_future()
        quick.set_result("quick")
        out = []
        for aw in fw.as_completed([quick, never], timeout=0.002):
            try:
                out.append(await aw)
            except TimeoutError:
                out.append("TimeoutError")
        out.append(f"never cancelled={never.cancelled()}")
        return out

    assert fw.run_guarded(main()) == ["quick", "TimeoutError", "never cancelled=False"]


def test_as_completed_rejects_a_single_future(fw: Any) -> None:
    async def main() -> None:
        fut = fw.get_running_loop().create_future()
        with pytest.raises(TypeError):
            for _ in fw.as_completed(fut):
                pass

    fw.run_guarded(main())


async def test_as_completed_async_for_gives_the_futures(virtual_clock: VirtualClock) -> None:
    slow = treadle.create_task(treadle.sleep(2, "slow"))
    fast = treadle.create_task(treadle.sleep(1, "fast"))
    seen = [f async for f in as_completed([slow, fast])]
    assert seen == [fast, slow]


async def test_as_completed_timeout_on_virtual_time(virtual_clock: VirtualClock) -> None:
    loop = treadle.get_running_loop()
    slow: treadle.Task[str] = treadle.create_task(treadle.sleep(10, "slow"))
    quick = treadle.create_task(treadle.sleep(1, "quick"))
    it = as_completed([slow, quick], timeout=5)
    assert await next(it) == "quick"
    assert loop.time() == 1
    with pytest.raises(TimeoutError):
        await next(it)
    assert loop.time() == 5
    assert list(it) == []  # exhausted
    slow.cancel()
    await wait([slow])


async def test_as_completed_concurrent_consumers() -> None:
    loop = treadle.get_running_loop()
    futs: list[treadle.Future[int]] = [loop.create_future() for _ in range(3)]
    awaitables = list(as_completed(futs))
    gathered = gather(*awaitables)
    await wait_all_tasks_blocked()
    for i, fut in enumerate(futs):
        fut.set_result(i)
    assert sorted(await gathered) == [0, 1, 2]


@pytest.mark.parametrize("bad", [math.nan])
async def test_as_completed_bad_timeout_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match="as_completed\\(\\) timeout"):
        as_completed([treadle.sleep(0)], timeout=bad)


# --- shield -------------------------------------------------------------------------------


def test_shield_passes_the_outcome_through(fw: Any) -> None:
    async def fail() -> None:
        await fw.sleep(0)
        raise KeyError("k")

    async def main() -> Any:
        with pytest.raises(KeyError):
            await fw.shield(fail())
        return await fw.shield(fw.sleep(0, "ok"))

    assert fw.run_guarded(main()) == "ok"


def test_shield_inner_keeps_running_when_outer_cancelled(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        release = fw.get_running_loop().create_future()
        inner = fw.create_task(wait_on(release, log, "inner"))

        async def outer() -> None:
            await fw.shield(inner)

        await fw.cancel_when_blocked(outer())
        log.append(f"outer cancelled, inner done={inner.done()}")
        release.set_result("r")
        log.append(f"inner result={await inner}")

    fw.run_guarded(main())
    assert log == ["outer cancelled, inner done=False", "inner done", "inner result=r"]


def test_shield_inner_cancelled_cancels_outer(fw: Any) -> None:
    async def main() -> None:
        inner = fw.create_task(fw.sleep(10))
        shielded = fw.shield(inner)
        await fw.settle()
        inner.cancel()
        with pytest.raises(fw.CancelledError):
            await shielded
        assert shielded.cancelled()

    fw.run_guarded(main())


def test_shield_of_a_done_future_is_that_future(fw: Any) -> None:
    async def main() -> None:
        fut = fw.get_running_loop().create_future()
        fut.set_result(1)
        assert fw.shield(fut) is fut

    fw.run_guarded(main())


def _late_failure(
    message: str,
) -> tuple[list[dict[str, Any]], treadle.Future[None], Callable[[], Coroutine[Any, Any, None]]]:
    """What the running loop reports from now on, a release, and work that fails once released.

    The work raises ``RuntimeError(message)`` after ``release`` gets a result.
    """
    loop = treadle.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    release: treadle.Future[None] = loop.create_future()

    async def work() -> None:
        await release
        raise RuntimeError(message)

    return reported, release, work


async def test_shield_reports_a_late_exception_of_its_own_task() -> None:
    reported, release, work = _late_failure("failed after the shield was cancelled")

    async def outer() -> None:
        await shield(work())

    task = treadle.create_task(outer())
    await wait_all_tasks_blocked()
    await TREADLE.cancel_and_wait(task)
    release.set_result(None)
    await wait_all_tasks_blocked()
    assert len(reported) == 1
    assert str(reported[0]["exception"]) == "failed after the shield was cancelled"
    assert "shield" in reported[0]["message"]


async def test_shield_leaves_a_late_exception_on_a_given_task() -> None:
    reported, release, work = _late_failure("mine to see")
    inner = treadle.create_task(work())
    outer = shield(inner)
    await wait_all_tasks_blocked()
    outer.cancel()
    release.set_result(None)
    with pytest.raises(RuntimeError, match="mine to see"):
        await inner
    await wait_all_tasks_blocked()
    assert reported == []


async def test_shield_non_awaitable_error_names_it() -> None:
    with pytest.raises(TypeError, match=r"got 3\.5"):
        shield(3.5)  # type: ignore[arg-type]


# --- awaiting: yield from any awaitable in a generator coroutine -------------------------


async def test_awaiting_gives_a_generator_coroutine_every_kind_of_awaitable() -> None:
    queue: treadle.Queue[int] = treadle.Queue()
    queue.put_nowait(3)
    fut: treadle.Future[str] = treadle.get_running_loop().create_future()
    fut.set_result("f")

    @treadle.coroutine
    def inner() -> Generator[Any, Any, str]:
        yield from treadle.awaiting(treadle.sleep(0))
        return "inner"

    def plain_generator() -> Generator[Any, Any, str]:
        yield from treadle.awaiting(treadle.sleep(0))
        return "plain"

    @treadle.coroutine
    def outer() -> Generator[Any, Any, list[Any]]:
        return [
            (yield from treadle.awaiting(queue.get())),
            (yield from treadle.awaiting(treadle.sleep(0, "slept"))),
            (yield from treadle.awaiting(fut)),
            (yield from treadle.awaiting(treadle.create_task(treadle.sleep(0, "task")))),
            (yield from treadle.awaiting(inner())),
            (yield from treadle.awaiting(plain_generator())),
        ]

    assert await outer() == [3, "slept", "f", "task", "inner", "plain"]


async def test_awaiting_something_not_awaitable_says_what_it_got() -> None:
    async def work() -> None: ...

    with pytest.raises(TypeError, match=r"awaiting\(\) needs awaitables.*calling it"):
        treadle.awaiting(work)  # type: ignore[arg-type]
