"""Tests for Queue, PriorityQueue and LifoQueue.

Tests that take the ``fwq`` fixture run the same body on treadle and on asyncio (the
oracle) and compare the interleaving they record. ``shutdown()`` is Python 3.13's and
the venv runs 3.11, so it, and what treadle does beyond asyncio (no barging by
``get()``, strict ``maxsize``), are tested on treadle only, as ``async def`` tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import types
from collections.abc import Coroutine
from typing import Any

import pytest
from oracle_runners import run_asyncio, run_treadle, settle_asyncio

import treadle
from treadle.errors import CancelledError, QueueEmpty, QueueFull, QueueShutDown
from treadle.queues import LifoQueue, PriorityQueue, Queue
from treadle.testing import wait_all_tasks_blocked

# A deadlock fails fast: no test here needs more than a fraction of a second.
pytestmark = pytest.mark.timeout(10)

# --- running one body on treadle and on asyncio -------------------------------------


@pytest.fixture
def fwq(fw: Any) -> types.SimpleNamespace:
    """The framework under test, with its queues (until the lead re-exports treadle's)."""
    if fw is asyncio:
        return types.SimpleNamespace(
            name="asyncio",
            run=run_asyncio,
            settle=settle_asyncio,
            create_task=asyncio.create_task,
            CancelledError=asyncio.CancelledError,
            Queue=asyncio.Queue,
            PriorityQueue=asyncio.PriorityQueue,
            LifoQueue=asyncio.LifoQueue,
            QueueEmpty=asyncio.QueueEmpty,
            QueueFull=asyncio.QueueFull,
        )
    return types.SimpleNamespace(
        name="treadle",
        run=run_treadle,
        settle=wait_all_tasks_blocked,
        create_task=treadle.create_task,
        CancelledError=CancelledError,
        Queue=Queue,
        PriorityQueue=PriorityQueue,
        LifoQueue=LifoQueue,
        QueueEmpty=QueueEmpty,
        QueueFull=QueueFull,
    )


async def _finish(cancelled_error: type[BaseException], tasks: Any) -> None:
    """Await every task, taking a cancellation as a normal way to end."""
    for task in tasks:
        with contextlib.suppress(cancelled_error):
            await task


def _recording_getter(fwq: Any, queue: Any, log: list[Any]) -> Any:
    async def getter(name: str) -> None:
        try:
            item = await queue.get()
        except fwq.CancelledError:
            log.append(f"{name} cancelled")
            raise
        log.append(f"{name} got {item}")

    return getter


def _recording_putter(fwq: Any, queue: Any, log: list[Any]) -> Any:
    async def putter(item: Any) -> None:
        try:
            await queue.put(item)
        except fwq.CancelledError:
            log.append(f"put {item} cancelled")
            raise
        log.append(f"put {item}")

    return putter


# --- ordering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Queue", [3, 1, 4, 1, 5, 9, 2, 6]),
        ("LifoQueue", [6, 2, 9, 5, 1, 4, 1, 3]),
        ("PriorityQueue", [1, 1, 2, 3, 4, 5, 6, 9]),
    ],
)
def test_each_kind_returns_items_in_its_order(fwq: Any, kind: str, expected: list[int]) -> None:
    async def main() -> list[int]:
        queue = getattr(fwq, kind)()
        for item in [3, 1, 4, 1, 5]:
            queue.put_nowait(item)
        for item in [9, 2, 6]:
            await queue.put(item)
        got = [queue.get_nowait() for _ in range(4)]
        got += [await queue.get() for _ in range(4)]
        assert queue.empty()
        return got

    assert fwq.run(main()) == expected


def test_priority_queue_takes_priority_data_pairs(fwq: Any) -> None:
    async def main() -> list[tuple[int, str]]:
        queue = fwq.PriorityQueue()
        for pair in [(2, "b"), (1, "z"), (3, "a"), (1, "y")]:
            queue.put_nowait(pair)
        return [queue.get_nowait() for _ in range(4)]

    assert fwq.run(main()) == [(1, "y"), (1, "z"), (2, "b"), (3, "a")]


def test_size_empty_full_and_the_nowait_errors(fwq: Any) -> None:
    async def main() -> None:
        queue = fwq.Queue(maxsize=2)
        assert queue.maxsize == 2 and queue.empty() and not queue.full() and queue.qsize() == 0
        with pytest.raises(fwq.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait("a")
        assert not queue.empty() and not queue.full() and queue.qsize() == 1
        queue.put_nowait("b")
        assert queue.full() and queue.qsize() == 2
        with pytest.raises(fwq.QueueFull):
            queue.put_nowait("c")
        assert "maxsize=2" in repr(queue)
        unbounded = fwq.Queue()
        assert unbounded.maxsize == 0
        for i in range(1000):
            unbounded.put_nowait(i)
        assert not unbounded.full() and unbounded.qsize() == 1000

    fwq.run(main())


def test_queue_is_generic(fwq: Any) -> None:
    assert fwq.Queue[int] is not None and fwq.PriorityQueue[str] is not None


def test_getters_are_served_in_order(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        tasks = [fwq.create_task(getter(name)) for name in "abc"]
        await fwq.settle()
        for item in [1, 2, 3]:
            queue.put_nowait(item)
        await _finish(fwq.CancelledError, tasks)
        return log

    assert fwq.run(main()) == ["a got 1", "b got 2", "c got 3"]


def test_put_blocks_while_full_and_putters_are_served_in_order(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue(maxsize=1)
        log: list[Any] = []
        putter = _recording_putter(fwq, queue, log)
        await queue.put(0)
        tasks = [fwq.create_task(putter(item)) for item in [1, 2, 3]]
        await fwq.settle()
        assert queue.qsize() == 1 and not any(task.done() for task in tasks)
        for _ in range(4):
            log.append(f"got {await queue.get()}")
            await fwq.settle()
        await _finish(fwq.CancelledError, tasks)
        return log

    assert fwq.run(main()) == [
        "got 0",
        "put 1",
        "got 1",
        "put 2",
        "got 2",
        "put 3",
        "got 3",
    ]


def test_getter_woken_for_an_item_taken_by_get_nowait_waits_again(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        task = fwq.create_task(getter("a"))
        await fwq.settle()
        queue.put_nowait(1)  # wakes a...
        log.append(f"main got {queue.get_nowait()}")  # ...but the item is gone
        await fwq.settle()
        assert not task.done()
        queue.put_nowait(2)
        await task
        return log

    assert fwq.run(main()) == ["main got 1", "a got 2"]


def test_putter_woken_for_a_slot_taken_by_put_nowait_waits_again(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue(maxsize=1)
        log: list[Any] = []
        putter = _recording_putter(fwq, queue, log)
        queue.put_nowait("kept")
        task = fwq.create_task(putter("p"))
        await fwq.settle()
        log.append(f"got {queue.get_nowait()}")  # wakes p's putter...
        queue.put_nowait("main")  # ...but the free slot is gone
        await fwq.settle()
        assert not task.done()
        log.append(f"got {queue.get_nowait()}")
        await task
        log.append(f"got {queue.get_nowait()}")
        return log

    assert fwq.run(main()) == ["got kept", "got main", "put p", "got p"]


# --- join and task_done ----------------------------------------------------------------


def test_join_waits_for_every_task_done(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        await queue.join()  # nothing put: returns at once
        for item in "ab":
            queue.put_nowait(item)

        async def joiner(name: str) -> None:
            await queue.join()
            log.append(f"{name} joined")

        joiners = [fwq.create_task(joiner(name)) for name in "xy"]
        await fwq.settle()
        queue.get_nowait()
        queue.get_nowait()
        queue.task_done()
        log.append("one done")
        await fwq.settle()
        queue.task_done()
        log.append("two done")
        await _finish(fwq.CancelledError, joiners)
        with pytest.raises(ValueError):
            queue.task_done()
        return log

    assert fwq.run(main()) == ["one done", "two done", "x joined", "y joined"]


async def test_task_done_error_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="too many times"):
        Queue[int]().task_done()


# --- cancellation ------------------------------------------------------------------------


def test_cancelled_get_after_wake_up_loses_no_item(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        tasks = [fwq.create_task(getter(name)) for name in "abc"]
        await fwq.settle()
        queue.put_nowait("x")  # wakes a...
        tasks[0].cancel()  # ...cancelled before it runs: b must get x
        await fwq.settle()
        assert not tasks[2].done()
        queue.put_nowait("y")
        await _finish(fwq.CancelledError, tasks)
        assert queue.empty()
        return log

    assert fwq.run(main()) == ["a cancelled", "b got x", "c got y"]


def test_cancelled_get_with_no_other_getter_leaves_the_item(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        task = fwq.create_task(getter("a"))
        await fwq.settle()
        queue.put_nowait("x")
        task.cancel()
        await _finish(fwq.CancelledError, [task])
        log.append(f"left: {queue.get_nowait()}")
        return log

    assert fwq.run(main()) == ["a cancelled", "left: x"]


def test_cancelled_put_inserts_nothing(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue(maxsize=1)
        log: list[Any] = []
        putter = _recording_putter(fwq, queue, log)
        queue.put_nowait("kept")
        tasks = [fwq.create_task(putter(item)) for item in ["p", "q"]]
        await fwq.settle()
        tasks[0].cancel()
        await fwq.settle()
        assert queue.qsize() == 1
        log.append(f"got {queue.get_nowait()}")
        await fwq.settle()
        log.append(f"got {queue.get_nowait()}")
        await _finish(fwq.CancelledError, tasks)
        assert queue.empty()
        return log

    assert fwq.run(main()) == ["put p cancelled", "got kept", "put q", "got q"]


def test_cancelled_put_after_wake_up_passes_the_free_slot_on(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue(maxsize=1)
        log: list[Any] = []
        putter = _recording_putter(fwq, queue, log)
        queue.put_nowait("kept")
        tasks = [fwq.create_task(putter(item)) for item in ["p", "q", "r"]]
        await fwq.settle()
        log.append(f"got {queue.get_nowait()}")  # wakes p's putter...
        tasks[0].cancel()  # ...cancelled before it runs: q goes in instead
        await fwq.settle()
        assert not tasks[2].done()
        log.append(f"got {queue.get_nowait()}")
        await fwq.settle()
        log.append(f"got {queue.get_nowait()}")
        await _finish(fwq.CancelledError, tasks)
        return log

    assert fwq.run(main()) == ["got kept", "put p cancelled", "put q", "got q", "put r", "got r"]


# --- treadle only: arguments, fairness, shutdown ---------------------------------------


@pytest.mark.parametrize("kind", [Queue, PriorityQueue, LifoQueue])
async def test_bad_maxsize_is_refused_clearly(kind: type[Queue[Any]]) -> None:
    with pytest.raises(ValueError, match="maxsize must be >= 0"):
        kind(-1)
    for bad in ["3", 1.5, None, True]:
        with pytest.raises(TypeError, match="maxsize must be an int"):
            kind(bad)  # type: ignore[arg-type]


async def test_get_does_not_barge_past_a_woken_getter() -> None:
    # asyncio lets a get() that finds an item take it ahead of a getter already woken
    # for that item; treadle queues it behind, as Lock.acquire() does.
    queue: Queue[str] = Queue()
    log: list[Any] = []
    getter = _recording_getter(treadle, queue, log)
    first = treadle.create_task(getter("a"))
    await wait_all_tasks_blocked()
    queue.put_nowait("x")  # for a, which has not run yet
    queue.put_nowait("y")  # nobody else waits yet
    log.append(f"main got {await queue.get()}")  # queues behind a; a hands y on
    await first
    assert log == ["a got x", "main got y"]


async def test_put_does_not_barge_past_a_woken_putter() -> None:
    queue: Queue[str] = Queue(maxsize=1)
    log: list[Any] = []
    putter = _recording_putter(treadle, queue, log)
    queue.put_nowait("kept")
    first = treadle.create_task(putter("p"))
    await wait_all_tasks_blocked()
    queue.get_nowait()  # frees the slot for p, which has not run yet
    second = treadle.create_task(putter("q"))
    await wait_all_tasks_blocked()
    assert log == ["put p"] and not second.done()
    assert queue.get_nowait() == "p"
    await second
    assert queue.get_nowait() == "q"
    await first


async def test_spare_free_slots_reach_putters_queued_behind_a_woken_one() -> None:
    queue: Queue[str] = Queue(maxsize=2)
    log: list[Any] = []
    putter = _recording_putter(treadle, queue, log)
    queue.put_nowait("k1")
    queue.put_nowait("k2")
    first = treadle.create_task(putter("p"))
    await wait_all_tasks_blocked()
    queue.get_nowait()  # a slot for p, which has not run yet
    queue.get_nowait()  # a spare slot
    await queue.put("main")  # queues behind p; p hands the spare slot on
    await first
    assert [queue.get_nowait(), queue.get_nowait()] == ["p", "main"]


async def test_shutdown_refuses_puts_and_drains_gets() -> None:
    queue: Queue[int] = Queue()
    queue.put_nowait(1)
    queue.put_nowait(2)
    queue.shutdown()
    assert "shutdown" in repr(queue)
    with pytest.raises(QueueShutDown):
        queue.put_nowait(3)
    with pytest.raises(QueueShutDown):
        await queue.put(3)
    assert await queue.get() == 1
    assert queue.get_nowait() == 2
    with pytest.raises(QueueShutDown):
        await queue.get()
    with pytest.raises(QueueShutDown):
        queue.get_nowait()
    queue.task_done()
    queue.task_done()
    await queue.join()


async def test_shutdown_wakes_blocked_getters_and_putters() -> None:
    getters: Queue[str] = Queue()
    putters: Queue[str] = Queue(maxsize=1)
    putters.put_nowait("kept")
    log: list[str] = []

    async def expect_shutdown(name: str, operation: Coroutine[Any, Any, Any]) -> None:
        try:
            await operation
        except QueueShutDown:
            log.append(f"{name} shut down")

    tasks = [
        treadle.create_task(expect_shutdown("get", getters.get())),
        treadle.create_task(expect_shutdown("put", putters.put("late"))),
    ]
    await wait_all_tasks_blocked()
    getters.shutdown()
    putters.shutdown()
    for task in tasks:
        await task
    assert log == ["get shut down", "put shut down"]
    assert putters.get_nowait() == "kept"  # a graceful shutdown keeps the items


async def test_shutdown_with_items_left_lets_waiting_getters_take_them() -> None:
    queue: Queue[str] = Queue()
    log: list[Any] = []
    getter = _recording_getter(treadle, queue, log)
    tasks = [treadle.create_task(getter(name)) for name in "abc"]
    await wait_all_tasks_blocked()
    queue.put_nowait("x")
    queue.shutdown()
    await tasks[0]
    for task in tasks[1:]:
        with pytest.raises(QueueShutDown):
            await task
    assert log == ["a got x"]


async def test_immediate_shutdown_drops_the_items_and_releases_join() -> None:
    queue: Queue[str] = Queue()
    for item in "abc":
        queue.put_nowait(item)
    assert queue.get_nowait() == "a"  # taken but not marked done
    log: list[str] = []

    async def joiner() -> None:
        await queue.join()
        log.append("joined")

    task = treadle.create_task(joiner())
    await wait_all_tasks_blocked()
    queue.shutdown(immediate=True)
    assert queue.empty()
    with pytest.raises(QueueShutDown):
        await queue.get()
    await wait_all_tasks_blocked()
    assert log == []  # "a" is still being worked on
    queue.task_done()
    await task
    assert log == ["joined"]
    with pytest.raises(ValueError):
        queue.task_done()


async def test_immediate_shutdown_makes_waiting_getters_raise_at_once() -> None:
    queue: Queue[str] = Queue()
    log: list[Any] = []
    getter = _recording_getter(treadle, queue, log)
    task = treadle.create_task(getter("a"))
    await wait_all_tasks_blocked()
    queue.put_nowait("x")  # a is woken for x...
    queue.shutdown(immediate=True)  # ...which is dropped before a runs
    with pytest.raises(QueueShutDown):
        await task
    assert log == []
    await queue.join()
