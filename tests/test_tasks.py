"""Task: driving coroutines and generators, bad yields, cancellation, names, and bookkeeping.

Tests that take ``fw`` run on treadle and on asyncio (the oracle). asyncio 3.11 still
drives plain generators, so the generator tests run on both too; from 3.12 asyncio
refuses them, and ``start_generator`` (conftest) checks that refusal instead.
"""

from __future__ import annotations

import contextvars
import gc
import re
import types
import weakref
from typing import Any

import pytest

import treadle


def generator_coroutine(fw: Any) -> Any:
    """``treadle.coroutine``, or its asyncio counterpart ``types.coroutine``."""
    return treadle.coroutine if fw.module is treadle else types.coroutine


# --- driving coroutines and generators ----------------------------------------------------


def test_a_task_drives_a_native_coroutine(fw: Any) -> None:
    async def child(x: int) -> int:
        await fw.sleep(0)
        return x * 2

    async def main() -> Any:
        task = fw.get_running_loop().create_task(child(21))
        assert isinstance(task, fw.Task)
        return await task

    assert fw.run(main()) == 42


def test_a_task_drives_a_plain_generator(fw: Any, start_generator: Any) -> None:
    log: list[str] = []

    def gen(fut: Any) -> Any:
        log.append("started")
        yield
        log.append("after bare yield")
        value = yield from fut
        log.append(f"got {value}")
        return "gen result"

    async def main() -> Any:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 5)
        return await start_generator(loop, gen(fut))

    assert fw.run(main()) == "gen result"
    assert log == ["started", "after bare yield", "got 5"]


def test_run_drives_a_generator_as_main() -> None:
    def main() -> Any:
        fut = treadle.get_running_loop().create_future()
        treadle.get_running_loop().call_soon(fut.set_result, "x")
        value = yield from fut
        return value * 3

    assert treadle.run(main()) == "xxx"


def test_yield_from_a_future_another_generator_and_a_coroutine(
    fw: Any, start_generator: Any
) -> None:
    log: list[str] = []

    def inner_generator(fut: Any) -> Any:
        log.append("inner generator waits")
        value = yield from fut
        return value + 1

    @generator_coroutine(fw)
    def marked_coroutine(fut: Any) -> Any:
        log.append("marked coroutine waits")
        value = yield from fut
        return value + 10

    def outer() -> Any:
        loop = fw.get_running_loop()
        futs = [loop.create_future() for _ in range(3)]
        for i, fut in enumerate(futs):
            loop.call_soon(fut.set_result, i)
        log.append("outer waits")
        a = yield from futs[0]
        b = yield from inner_generator(futs[1])
        c = yield from marked_coroutine(futs[2])
        return a, b, c

    async def main() -> Any:
        return await start_generator(fw.get_running_loop(), outer())

    assert fw.run(main()) == (0, 2, 12)
    assert log == ["outer waits", "inner generator waits", "marked coroutine waits"]


def test_a_marked_coroutine_yields_from_a_native_coroutine(
    fw: Any, start_generator: Any
) -> None:
    async def native(fut: Any) -> Any:
        return await fut + 100

    @generator_coroutine(fw)
    def marked() -> Any:
        loop = fw.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 1)
        value = yield from native(fut)
        return value

    async def main() -> Any:
        return await start_generator(fw.get_running_loop(), marked())

    assert fw.run(main()) == 101


def test_async_code_awaits_a_treadle_coroutine() -> None:
    @treadle.coroutine
    def gen_based() -> Any:
        yield from treadle.sleep(0).__await__()
        inner = yield from plain()
        return f"gen_based({inner})"

    def plain() -> Any:
        yield
        return "plain"

    async def main() -> str:
        return await gen_based()

    assert treadle.run(main()) == "gen_based(plain)"


def test_coroutine_rejects_a_plain_function() -> None:
    def not_a_generator() -> int:
        return 1

    with pytest.raises(TypeError, match="generator function"):
        treadle.coroutine(not_a_generator)  # type: ignore[arg-type]


def test_coroutine_leaves_an_async_function_alone() -> None:
    async def already() -> None:
        pass

    assert treadle.coroutine(already) is already  # type: ignore[arg-type]


def test_a_bare_yield_lets_the_others_run(fw: Any, start_generator: Any) -> None:
    log: list[str] = []

    def worker(name: str) -> Any:
        for i in range(3):
            log.append(f"{name}{i}")
            yield
        return name

    async def main() -> Any:
        loop = fw.get_running_loop()
        a = start_generator(loop, worker("a"))
        b = start_generator(loop, worker("b"))
        return [await a, await b]

    assert fw.run(main()) == ["a", "b"]
    assert log == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_sleep_zero_lets_the_others_run(fw: Any) -> None:
    log: list[str] = []

    async def worker(name: str) -> None:
        for i in range(3):
            log.append(f"{name}{i}")
            await fw.sleep(0)

    async def main() -> None:
        loop = fw.get_running_loop()
        tasks = [loop.create_task(worker(name)) for name in "abc"]
        for task in tasks:
            await task

    fw.run(main())
    assert log == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_a_task_result_and_exception(fw: Any) -> None:
    async def fails() -> None:
        raise KeyError("k")

    async def main() -> Any:
        task = fw.get_running_loop().create_task(fails())
        with pytest.raises(KeyError):
            await task
        assert task.done()
        assert isinstance(task.exception(), KeyError)
        return "ok"

    assert fw.run(main()) == "ok"


# --- yielding something that is not a future ----------------------------------------------


def _catch_bad_yield(fw: Any, bad: Any) -> tuple[str, str]:
    @generator_coroutine(fw)
    def yields_bad() -> Any:
        try:
            yield bad
        except RuntimeError as exc:
            # The error was thrown into the coroutine: it can catch it and carry on.
            yield from fw.sleep(0).__await__()
            return "caught", str(exc)
        return "not thrown", ""

    async def main() -> Any:
        return await yields_bad()

    return fw.run(main())


@pytest.mark.parametrize("bad", [42, "a string", 1.5], ids=["int", "str", "float"])
def test_yielding_a_non_future_throws_runtime_error_into_the_coroutine(fw: Any, bad: Any) -> None:
    outcome, message = _catch_bad_yield(fw, bad)
    assert outcome == "caught"
    assert repr(bad) in message


def test_yielding_a_generator_throws_runtime_error_naming_it(fw: Any) -> None:
    def sub_generator_xyz() -> Any:
        yield

    gen = sub_generator_xyz()
    try:
        outcome, message = _catch_bad_yield(fw, gen)
    finally:
        gen.close()
    assert outcome == "caught"
    assert "sub_generator_xyz" in message
    assert "yield from" in message


def test_yielding_a_future_without_yield_from_is_an_error(fw: Any, start_generator: Any) -> None:
    def bad() -> Any:
        fut = fw.get_running_loop().create_future()
        try:
            yield fut
        except RuntimeError as exc:
            return str(exc)
        finally:
            fut.cancel()
        return "not thrown"

    async def main() -> Any:
        return await start_generator(fw.get_running_loop(), bad())

    assert "yield from" in fw.run(main())


def test_a_bad_yield_that_is_not_caught_fails_the_task() -> None:
    def bad() -> Any:
        yield 42

    async def main() -> None:
        await treadle.create_task(bad())

    with pytest.raises(RuntimeError, match="42"):
        treadle.run(main())


# --- cancellation -------------------------------------------------------------------------


def test_cancel_throws_cancelled_error_at_the_next_suspension(fw: Any) -> None:
    log: list[Any] = []

    async def child(gate: Any) -> None:
        log.append("child waits")
        try:
            await gate
        except fw.CancelledError as exc:
            log.append(("cancelled with", exc.args))
            raise
        log.append("never")

    async def main() -> None:
        loop = fw.get_running_loop()
        gate = loop.create_future()
        task = loop.create_task(child(gate))
        await fw.sleep(0)
        log.append("cancel")
        assert task.cancel("stop it") is True
        assert not task.done()  # the error arrives at the next step, not inline
        with pytest.raises(fw.CancelledError):
            await task
        assert task.cancelled()
        assert gate.cancelled()  # the future it waited for is cancelled too
        assert task.cancel() is False

    fw.run(main())
    assert log == ["child waits", "cancel", ("cancelled with", ("stop it",))]


def test_a_task_that_catches_cancelled_error_carries_on(fw: Any) -> None:
    log: list[str] = []

    async def stubborn() -> str:
        try:
            await fw.get_running_loop().create_future()
        except fw.CancelledError:
            log.append("caught")
        await fw.sleep(0)
        log.append("carried on")
        return "finished anyway"

    async def main() -> None:
        task = fw.get_running_loop().create_task(stubborn())
        await fw.sleep(0)
        task.cancel()
        assert await task == "finished anyway"
        assert not task.cancelled()

    fw.run(main())
    assert log == ["caught", "carried on"]


def test_cancel_before_the_first_step(fw: Any) -> None:
    log: list[str] = []

    async def never_starts() -> None:
        log.append("started")

    async def main() -> None:
        task = fw.get_running_loop().create_task(never_starts())
        assert task.cancel("early") is True
        with pytest.raises(fw.CancelledError):
            await task
        assert task.cancelled()

    fw.run(main())
    assert log == []


def test_a_task_cancelled_while_running_ends_cancelled(fw: Any) -> None:
    async def cancels_itself() -> str:
        fw.current_task().cancel()
        return "returned"

    async def main() -> None:
        task = fw.get_running_loop().create_task(cancels_itself())
        with pytest.raises(fw.CancelledError):
            await task
        assert task.cancelled()

    fw.run(main())


def test_cancelling_and_uncancel(fw: Any) -> None:
    log: list[Any] = []

    async def child() -> str:
        me = fw.current_task()
        try:
            await fw.get_running_loop().create_future()
        except fw.CancelledError:
            log.append(("caught, cancelling", me.cancelling()))
            log.append(("uncancel", me.uncancel()))
            log.append(("uncancel", me.uncancel()))
        log.append(("at the end", me.cancelling()))
        return "done"

    async def main() -> None:
        task = fw.get_running_loop().create_task(child())
        log.append(("fresh", task.cancelling()))
        await fw.sleep(0)
        log.append(("cancel", task.cancel()))
        log.append(("cancelling", task.cancelling()))
        log.append(("cancel again", task.cancel()))
        log.append(("cancelling", task.cancelling()))
        log.append(("result", await task))
        log.append(("cancel when done", task.cancel()))
        log.append(("cancelling when done", task.cancelling()))
        log.append(("uncancel at zero", task.uncancel()))

    fw.run(main())
    assert log == [
        ("fresh", 0),
        ("cancel", True),
        ("cancelling", 1),
        ("cancel again", True),
        ("cancelling", 2),
        ("caught, cancelling", 2),
        ("uncancel", 1),
        ("uncancel", 0),
        ("at the end", 0),
        ("result", "done"),
        ("cancel when done", False),
        ("cancelling when done", 0),
        ("uncancel at zero", 0),
    ]


def test_a_cancelled_task_can_be_cancelled_again_after_catching(fw: Any) -> None:
    log: list[str] = []

    async def child() -> None:
        loop = fw.get_running_loop()
        try:
            await loop.create_future()
        except fw.CancelledError:
            log.append("first")
        try:
            await loop.create_future()
        except fw.CancelledError:
            log.append("second")
            raise

    async def main() -> None:
        task = fw.get_running_loop().create_task(child())
        await fw.sleep(0)
        task.cancel()
        await fw.sleep(0)
        await fw.sleep(0)
        await fw.cancel_and_wait(task)

    fw.run(main())
    assert log == ["first", "second"]


# --- names and introspection ------------------------------------------------------------


def test_names_and_coro(fw: Any) -> None:
    async def child() -> None:
        pass

    async def main() -> None:
        loop = fw.get_running_loop()
        coro = child()
        task = loop.create_task(coro)
        assert re.fullmatch(r"Task-\d+", task.get_name())
        assert task.get_coro() is coro
        task.set_name("renamed")
        assert task.get_name() == "renamed"
        task.set_name(123)
        assert task.get_name() == "123"
        named = loop.create_task(child(), name="given")
        assert named.get_name() == "given"
        other = fw.create_task(child(), name="module-level")
        assert other.get_name() == "module-level"
        await task
        await named
        await other
        assert "123" in repr(task)

    fw.run(main())


def test_default_names_differ(fw: Any) -> None:
    async def child() -> None:
        pass

    async def main() -> None:
        tasks = [fw.create_task(child()) for _ in range(3)]
        assert len({task.get_name() for task in tasks}) == 3
        for task in tasks:
            await task

    fw.run(main())


def test_current_task_and_all_tasks(fw: Any) -> None:
    seen: list[Any] = []

    async def child(gate: Any) -> None:
        seen.append(fw.current_task())
        await gate

    async def main() -> None:
        loop = fw.get_running_loop()
        me = fw.current_task()
        assert isinstance(me, fw.Task)
        gate = loop.create_future()
        waiting = loop.create_task(child(gate))
        finished = loop.create_task(child(loop.create_future()))
        finished.cancel()
        await fw.sleep(0)
        assert seen == [waiting]
        assert fw.all_tasks() == {me, waiting}
        assert fw.all_tasks(loop) == {me, waiting}
        outside: list[Any] = []
        loop.call_soon(lambda: outside.append(fw.current_task()))
        await fw.sleep(0)
        assert outside == [None]  # a plain callback runs outside any task
        assert fw.current_task(loop) is me
        gate.set_result(None)
        await waiting
        assert fw.all_tasks() == {me}

    fw.run(main())


def test_current_task_outside_a_loop_raises(fw: Any) -> None:
    with pytest.raises(RuntimeError):
        fw.current_task()
    with pytest.raises(RuntimeError):
        fw.all_tasks()


def test_a_task_nobody_references_still_runs_to_the_end() -> None:
    # asyncio keeps only weak references to tasks and loses this one; treadle must not.
    log: list[str] = []

    async def worker(gate: treadle.Future[str], done: treadle.Future[None]) -> None:
        log.append("worker waits")
        value = await gate
        log.append(f"worker got {value}")
        done.set_result(None)

    async def main() -> None:
        loop = treadle.get_running_loop()
        gate: treadle.Future[str] = loop.create_future()
        done: treadle.Future[None] = loop.create_future()
        loop.create_task(worker(gate, done))  # no reference kept
        await treadle.sleep(0)
        # Only the worker (and its task, and the gate's callback to it) now refer to
        # the gate: without the loop's strong reference the whole cycle is garbage.
        gate_ref = weakref.ref(gate)
        del gate
        gc.collect()
        alive = gate_ref()
        assert alive is not None, "the waiting task was garbage-collected"
        alive.set_result("the value")
        del alive
        await done

    treadle.run(main())
    assert log == ["worker waits", "worker got the value"]


def test_a_task_that_collects_garbage_itself_still_completes() -> None:
    log: list[str] = []

    async def worker() -> None:
        await treadle.sleep(0)
        gc.collect()
        await treadle.sleep(0)
        log.append("side effect")

    async def main() -> None:
        treadle.create_task(worker())
        gc.collect()
        for _ in range(5):
            await treadle.sleep(0)
            gc.collect()

    treadle.run(main())
    assert log == ["side effect"]


# --- misuse -------------------------------------------------------------------------------


async def _a_coroutine_function() -> None:
    pass


def _a_plain_function() -> int:
    return 1


@pytest.mark.parametrize(
    "not_a_coroutine",
    [_a_coroutine_function, _a_plain_function, 42, "text", None],
    ids=["coroutine-function", "function", "int", "str", "None"],
)
def test_create_task_with_a_non_coroutine_raises_type_error(
    fw: Any, new_loop: Any, not_a_coroutine: Any
) -> None:
    loop = new_loop()
    with pytest.raises(TypeError, match="coroutine"):
        loop.create_task(not_a_coroutine)

    async def main() -> None:
        with pytest.raises(TypeError, match="coroutine"):
            fw.create_task(not_a_coroutine)

    fw.run(main())


def test_create_task_with_the_function_says_to_call_it() -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match=r"instead of calling it"):
            treadle.create_task(_a_coroutine_function)  # type: ignore[arg-type]

    treadle.run(main())


def test_create_task_outside_a_loop_raises_and_closes_the_coroutine() -> None:
    coro = _a_coroutine_function()
    with pytest.raises(RuntimeError, match="no running event loop"):
        treadle.create_task(coro)
    assert coro.cr_frame is None  # closed, so no "never awaited" warning


def test_task_set_result_and_set_exception_raise(fw: Any) -> None:
    async def main() -> None:
        task = fw.current_task()
        with pytest.raises(RuntimeError):
            task.set_result(1)
        with pytest.raises(RuntimeError):
            task.set_exception(ValueError())
        assert not task.done()

    fw.run(main())


def test_awaiting_a_non_awaitable_raises_type_error(fw: Any) -> None:
    async def main() -> None:
        with pytest.raises(TypeError, match="int"):
            await 5  # type: ignore[misc]

    fw.run(main())


def test_a_task_awaiting_itself_raises_runtime_error(fw: Any) -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="itself"):
            await fw.current_task()

    fw.run(main())


def test_awaiting_a_future_of_another_loop_raises(fw: Any, new_loop: Any) -> None:
    other = new_loop()

    async def main() -> None:
        fut = other.create_future()
        try:
            with pytest.raises(RuntimeError, match="loop"):
                await fut
        finally:
            fut.cancel()

    fw.run(main())


# --- more oracle checks -------------------------------------------------------------------


def test_a_cancel_message_reaches_the_awaiting_task(fw: Any) -> None:
    log: list[Any] = []

    async def inner() -> None:
        await fw.get_running_loop().create_future()

    async def outer(task: Any) -> None:
        try:
            await task
        except fw.CancelledError as exc:
            log.append(("outer got", exc.args))
            raise

    async def main() -> None:
        loop = fw.get_running_loop()
        inner_task = loop.create_task(inner())
        outer_task = loop.create_task(outer(inner_task))
        await fw.sleep(0)
        inner_task.cancel("the reason")
        with pytest.raises(fw.CancelledError) as info:
            await outer_task
        log.append(("main got", info.value.args))
        log.append((outer_task.cancelled(), inner_task.cancelled()))

    fw.run(main())
    assert log == [("outer got", ("the reason",)), ("main got", ("the reason",)), (True, True)]


def test_a_task_exception_nobody_retrieved_is_reported(fw: Any) -> None:
    contexts: list[dict[str, Any]] = []

    async def fails() -> None:
        raise LookupError("nobody awaited me")

    async def main() -> None:
        loop = fw.get_running_loop()
        loop.set_exception_handler(lambda lp, context: contexts.append(context))
        loop.create_task(fails())
        await fw.sleep(0)
        await fw.sleep(0)
        gc.collect()

    gc.collect()
    fw.run(main())
    assert len(contexts) == 1
    assert "never retrieved" in contexts[0]["message"]
    assert isinstance(contexts[0]["exception"], LookupError)
    assert isinstance(contexts[0]["future"], fw.Task)


def test_a_task_runs_in_a_copy_of_the_context(fw: Any) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def child() -> str:
        seen = var.get()
        var.set("set by child")
        await fw.sleep(0)
        return f"{seen}, then {var.get()}"

    async def main() -> list[str]:
        var.set("set by main")
        result = await fw.create_task(child())
        return [result, var.get()]

    assert fw.run(main()) == ["set by main, then set by child", "set by main"]


def test_create_task_with_a_context(fw: Any) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def child() -> str:
        await fw.sleep(0)
        return var.get()

    async def main() -> str:
        ctx = contextvars.copy_context()
        ctx.run(var.set, "from the given context")
        task = fw.get_running_loop().create_task(child(), context=ctx)
        return await task

    assert fw.run(main()) == "from the given context"


def test_uncancel_to_zero_withdraws_a_pending_cancel() -> None:
    # asyncio 3.13 semantics, which treadle follows; asyncio 3.11 still cancels the task.
    log: list[str] = []

    async def child() -> str:
        log.append("ran")
        return "not cancelled"

    async def main() -> str:
        task = treadle.create_task(child())
        task.cancel()
        assert task.uncancel() == 0
        return await task

    assert treadle.run(main()) == "not cancelled"
    assert log == ["ran"]
