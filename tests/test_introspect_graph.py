"""capture_call_graph / print_call_graph: frames, what is awaited, awaiters, parents.

In-process: each test builds tasks stuck in a known place, waits until every task is
blocked, and asserts on the graph. Tasks on treadle.aio (asyncio's) are read alike.
"""

from __future__ import annotations

import gc
import io
import weakref
from typing import Any

import pytest

import treadle
from treadle.testing import wait_all_tasks_blocked


async def finish(*tasks: treadle.Task[Any]) -> None:
    """Cancel ``tasks`` and wait for them to end."""
    for task in tasks:
        task.cancel()
    await treadle.gather(*tasks, return_exceptions=True)


async def sleeper() -> None:
    await treadle.sleep(3600)


async def start_sleeper(name: str) -> treadle.Task[None]:
    """A task named ``name`` running ``sleeper()``, once every task is blocked."""
    task = treadle.create_task(sleeper(), name=name)
    await wait_all_tasks_blocked()
    return task


def names(graph: treadle.FutureCallGraph) -> list[str]:
    """The call stack's function names, innermost first."""
    return [entry.frame.f_code.co_qualname for entry in graph.call_stack]


def own(*qualnames: str) -> list[str]:
    """Frames of treadle's core, expected in a stack: none in the compiled build, whose
    compiled functions have no frames (docs/compiled.md)."""
    return [] if treadle.compiled else list(qualnames)


async def test_a_suspended_chain_is_listed_innermost_first_with_its_sleep() -> None:
    async def leaf() -> None:
        await treadle.sleep(3600)

    async def middle() -> None:
        await leaf()

    task = treadle.create_task(middle(), name="napper")
    await wait_all_tasks_blocked()
    graph = treadle.capture_call_graph(task)
    assert graph is not None
    expected = [*own("Future.__await__"), "sleep", leaf.__qualname__, middle.__qualname__]
    assert names(graph)[: len(expected)] == expected
    assert graph.awaiting is not None and graph.awaiting.startswith("sleep(3600) until loop time")
    assert graph.parent is treadle.current_task()
    await finish(task)


async def test_a_lock_waiter_names_the_lock_and_is_awaited_by_its_group_owner() -> None:
    lock = treadle.Lock()
    held = treadle.Event()

    async def holder() -> None:
        async with lock:
            held.set()
            await treadle.sleep(3600)

    async def waiter() -> None:
        async with lock:
            pass

    with pytest.raises(treadle.CancelledError):
        async with treadle.TaskGroup() as group:
            group.create_task(holder(), name="holder")
            await held.wait()
            blocked = group.create_task(waiter(), name="waiter")
            await wait_all_tasks_blocked()
            graph = treadle.capture_call_graph(blocked)
            assert graph is not None
            assert graph.awaiting is not None
            assert graph.awaiting.startswith("Lock.acquire on <treadle.locks.Lock")
            assert "locked, waiters:1" in graph.awaiting
            assert own("WaitQueue.park") == [n for n in names(graph) if n == "WaitQueue.park"]
            assert [g.future for g in graph.awaited_by] == [treadle.current_task()]
            treadle.current_task().cancel()  # type: ignore[union-attr]
            await treadle.sleep(0)


async def test_a_generator_coroutine_in_yield_from_is_followed() -> None:
    fut: treadle.Future[None] = treadle.get_running_loop().create_future()

    def inner_gen() -> Any:
        yield from fut

    @treadle.coroutine
    def outer_gen() -> Any:
        yield from inner_gen()

    task = treadle.create_task(outer_gen(), name="gen")
    await wait_all_tasks_blocked()
    graph = treadle.capture_call_graph(task)
    assert graph is not None
    expected = [*own("Future.__await__"), inner_gen.__qualname__, outer_gen.__qualname__]
    assert names(graph) == expected
    assert graph.awaiting == "<Future pending>"
    fut.set_result(None)
    await task


async def test_tasks_awaiting_a_task_and_a_gather_are_its_awaiters() -> None:
    gate = treadle.Event()
    child = treadle.create_task(gate.wait(), name="child")

    async def awaiting_it() -> None:
        await child

    async def gathering_it() -> None:
        await treadle.gather(child)

    first = treadle.create_task(awaiting_it(), name="first")
    second = treadle.create_task(gathering_it(), name="second")
    await wait_all_tasks_blocked()
    graph = treadle.capture_call_graph(child)
    assert graph is not None
    assert {g.future.get_name() for g in graph.awaited_by} == {"first", "second"}
    first_graph = treadle.capture_call_graph(first)
    assert first_graph is not None and first_graph.awaiting == "task 'child'"
    second_graph = treadle.capture_call_graph(second)
    assert second_graph is not None
    assert second_graph.awaiting == "gather of 1: 1 pending (child)"
    gate.set()
    await treadle.gather(first, second)


async def test_the_current_task_shows_its_live_stack() -> None:
    async def deeper() -> treadle.FutureCallGraph | None:
        return treadle.capture_call_graph()

    graph = await deeper()
    assert graph is not None
    assert graph.future is treadle.current_task()
    assert names(graph)[0] == deeper.__qualname__
    assert graph.awaiting is None


async def test_print_call_graph_prints_the_asyncio_shape() -> None:
    task = await start_sleeper("sleeper")
    out = io.StringIO()
    treadle.print_call_graph(task, file=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == f"* Task(name='sleeper', id={id(task):#x})"
    assert lines[1].startswith("  + Waiting on: sleep(3600)")
    assert "  + Call stack:" in lines
    assert any(line.endswith(" in async sleeper()") for line in lines)
    await finish(task)


async def test_a_parent_is_remembered_weakly() -> None:
    async def child() -> None:
        await treadle.sleep(3600)

    async def parent() -> treadle.Task[None]:
        return treadle.create_task(child(), name="orphan")

    parent_task = treadle.create_task(parent(), name="parent")
    orphan = await parent_task
    assert orphan.get_parent() is parent_task
    gone = weakref.ref(parent_task)
    del parent_task
    await treadle.sleep(0)  # the step that woke us holds the parent in its handle's args
    gc.collect()
    assert gone() is None, "a child must not keep its finished parent alive"
    assert orphan.get_parent() is None
    await finish(orphan)


def test_capture_call_graph_outside_a_loop_needs_a_task() -> None:
    with pytest.raises(RuntimeError, match="outside a running event loop"):
        treadle.capture_call_graph()
    with pytest.raises(TypeError, match="needs a task or a future"):
        treadle.capture_call_graph(42)


def test_asyncio_tasks_on_treadle_aio_are_read_alike() -> None:
    import asyncio

    import treadle.aio

    async def main() -> str | None:
        lock = asyncio.Lock()
        await lock.acquire()

        async def blocked() -> None:
            async with lock:
                pass

        task = asyncio.create_task(blocked(), name="aio-waiter")
        await asyncio.sleep(0.01)
        graph = treadle.capture_call_graph(task)
        assert graph is not None
        assert [g.future for g in graph.awaited_by] == []
        aenter = "_ContextManagerMixin.__aenter__"
        assert names(graph) == ["Lock.acquire", aenter, blocked.__qualname__]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return graph.awaiting

    awaiting = treadle.aio.run(main())
    assert awaiting is not None
    assert awaiting.startswith("Lock.acquire on <asyncio.locks.Lock")


async def test_dump_tasks_writes_the_tree_from_inside_the_program() -> None:
    from treadle.introspect import runtime

    task = await start_sleeper("dumped")
    out = io.StringIO()
    treadle.dump_tasks(out)
    text = out.getvalue()
    assert runtime.running_loops, "the loop hook keeps the running loops"
    assert "└── dumped [waiting, -] (started by it, not awaited): sleep(3600) until" in text
    assert f"{treadle.current_task().get_name()} [running" in text  # type: ignore[union-attr]
    await finish(task)


async def test_a_snapshot_describes_a_shared_primitive_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Event's repr counts its waiters: taken once per waiter, a snapshot would be quadratic.
    from treadle.introspect.snapshot import take_snapshot

    calls = []
    original = treadle.Event.__repr__

    def counting_repr(self: treadle.Event) -> str:
        calls.append(self)
        return original(self)

    monkeypatch.setattr(treadle.Event, "__repr__", counting_repr)
    event = treadle.Event()
    tasks = [treadle.create_task(event.wait()) for _ in range(50)]
    await wait_all_tasks_blocked()
    snapshot = take_snapshot(treadle.get_running_loop())
    ours = {id(task) for task in tasks}
    waits = {task["waiting_on"] for task in snapshot["tasks"] if task["id"] in ours}
    assert len(calls) == 1
    assert len(waits) == 1 and next(iter(waits)).startswith("Event.wait on <treadle.locks.Event")
    event.set()
    await treadle.gather(*tasks)
