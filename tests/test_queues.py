"""Tests for Queue, PriorityQueue and LifoQueue.

Tests that take the ``fwq`` fixture run the same body on treadle and on asyncio (the
oracle) and compare the interleaving they record. ``shutdown()`` is Python 3.13's: on
3.11 and 3.12 its tests run on treadle only. What treadle does beyond asyncio (a clear
error for a bad ``maxsize``) is tested on treadle only.
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
            QueueShutDown=getattr(asyncio, "QueueShutDown", None),  # Python 3.13+
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
        QueueShutDown=QueueShutDown,
    )


def _needs_shutdown(fwq: Any) -> None:
    if fwq.QueueShutDown is None:
        pytest.skip("asyncio.Queue.shutdown() is new in Python 3.13")


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


# --- no hand-off: get() and put() go through at once when they can ---------------------


def test_get_returns_at_once_when_an_item_is_there_even_if_a_getter_was_woken(
    fwq: Any,
) -> None:
    # The pattern "if not queue.empty(): await queue.get()" must not block. The getter
    # woken for x finds the queue empty when it runs, and waits again.
    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        task = fwq.create_task(getter("a"))
        await fwq.settle()
        queue.put_nowait("x")  # wakes a, which has not run yet
        assert not queue.empty()
        log.append(f"main got {await queue.get()}")
        await fwq.settle()
        assert not task.done()
        queue.put_nowait("y")
        await task
        return log

    assert fwq.run(main()) == ["main got x", "a got y"]


def test_get_takes_an_item_put_while_a_woken_getter_waits_to_run(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        task = fwq.create_task(getter("a"))
        await fwq.settle()
        queue.put_nowait("x")  # for a, which has not run yet
        queue.put_nowait("y")  # nobody else waits
        log.append(f"main got {await queue.get()}")
        await task
        return log

    assert fwq.run(main()) == ["main got x", "a got y"]


def test_put_returns_at_once_when_there_is_room_even_if_a_putter_was_woken(
    fwq: Any,
) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue(maxsize=1)
        log: list[Any] = []
        putter = _recording_putter(fwq, queue, log)
        queue.put_nowait("kept")
        task = fwq.create_task(putter("p"))
        await fwq.settle()
        log.append(f"got {queue.get_nowait()}")  # wakes p, which has not run yet
        assert not queue.full()
        await queue.put("main")
        log.append("put main")
        await fwq.settle()
        assert not task.done()  # p found the queue full and waits again
        log.append(f"got {queue.get_nowait()}")
        await task
        log.append(f"got {queue.get_nowait()}")
        return log

    assert fwq.run(main()) == ["got kept", "put main", "got main", "put p", "got p"]


def test_spare_free_slots_let_put_through_before_a_woken_putter(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue(maxsize=2)
        log: list[Any] = []
        putter = _recording_putter(fwq, queue, log)
        queue.put_nowait("k1")
        queue.put_nowait("k2")
        task = fwq.create_task(putter("p"))
        await fwq.settle()
        queue.get_nowait()  # a slot for p, which has not run yet
        queue.get_nowait()  # a spare slot
        await queue.put("main")
        await task
        return [queue.get_nowait(), queue.get_nowait()]

    assert fwq.run(main()) == ["main", "p"]


def test_a_stale_wake_up_is_not_passed_on_by_a_cancelled_getter(fwq: Any) -> None:
    # a is woken for x, x is taken by get_nowait(), then a is cancelled: nothing is left
    # to wake b for, so b keeps its place in line ahead of c.
    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        tasks = [fwq.create_task(getter(name)) for name in "abc"]
        await fwq.settle()
        queue.put_nowait("x")
        log.append(f"main got {queue.get_nowait()}")
        tasks[0].cancel()
        await fwq.settle()
        queue.put_nowait("y")
        queue.put_nowait("z")
        await _finish(fwq.CancelledError, tasks)
        return log

    assert fwq.run(main()) == ["main got x", "a cancelled", "b got y", "c got z"]


def test_a_stale_wake_up_is_not_passed_on_by_a_cancelled_putter(fwq: Any) -> None:
    async def main() -> list[Any]:
        queue = fwq.Queue(maxsize=1)
        log: list[Any] = []
        putter = _recording_putter(fwq, queue, log)
        queue.put_nowait("kept")
        tasks = [fwq.create_task(putter(item)) for item in "pqr"]
        await fwq.settle()
        log.append(f"got {queue.get_nowait()}")  # wakes p...
        queue.put_nowait("main")  # ...takes p's slot...
        tasks[0].cancel()  # ...and p leaves: q keeps its place ahead of r
        await fwq.settle()
        for _ in range(3):
            log.append(f"got {queue.get_nowait()}")
            await fwq.settle()
        await _finish(fwq.CancelledError, tasks)
        return log

    assert fwq.run(main()) == [
        "got kept",
        "put p cancelled",
        "got main",
        "put q",
        "got q",
        "put r",
        "got r",
    ]


# --- shutdown (asyncio's from Python 3.13) ---------------------------------------------


def test_shutdown_refuses_puts_and_drains_gets(fwq: Any) -> None:
    _needs_shutdown(fwq)

    async def main() -> None:
        queue = fwq.Queue()
        queue.put_nowait(1)
        queue.put_nowait(2)
        queue.shutdown()
        assert "shutdown" in repr(queue)
        with pytest.raises(fwq.QueueShutDown):
            queue.put_nowait(3)
        with pytest.raises(fwq.QueueShutDown):
            await queue.put(3)
        assert await queue.get() == 1
        assert queue.get_nowait() == 2
        with pytest.raises(fwq.QueueShutDown):
            await queue.get()
        with pytest.raises(fwq.QueueShutDown):
            queue.get_nowait()
        queue.task_done()
        queue.task_done()
        await queue.join()

    fwq.run(main())


def test_shutdown_refuses_a_put_on_a_full_queue(fwq: Any) -> None:
    _needs_shutdown(fwq)

    async def main() -> None:
        queue = fwq.Queue(maxsize=1)
        queue.put_nowait(1)
        queue.shutdown()
        with pytest.raises(fwq.QueueShutDown):
            await queue.put(2)
        assert queue.get_nowait() == 1

    fwq.run(main())


def test_shutdown_wakes_blocked_getters_and_putters(fwq: Any) -> None:
    _needs_shutdown(fwq)

    async def main() -> list[str]:
        getters = fwq.Queue()
        putters = fwq.Queue(maxsize=1)
        putters.put_nowait("kept")
        log: list[str] = []

        async def expect_shutdown(name: str, operation: Coroutine[Any, Any, Any]) -> None:
            try:
                await operation
            except fwq.QueueShutDown:
                log.append(f"{name} shut down")

        tasks = [
            fwq.create_task(expect_shutdown("get", getters.get())),
            fwq.create_task(expect_shutdown("put", putters.put("late"))),
        ]
        await fwq.settle()
        getters.shutdown()
        putters.shutdown()
        for task in tasks:
            await task
        assert putters.get_nowait() == "kept"  # a graceful shutdown keeps the items
        return log

    assert fwq.run(main()) == ["get shut down", "put shut down"]


def test_shutdown_with_items_left_lets_waiting_getters_take_them(fwq: Any) -> None:
    _needs_shutdown(fwq)

    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        tasks = [fwq.create_task(getter(name)) for name in "abc"]
        await fwq.settle()
        queue.put_nowait("x")
        queue.shutdown()
        await tasks[0]
        for task in tasks[1:]:
            with pytest.raises(fwq.QueueShutDown):
                await task
        return log

    assert fwq.run(main()) == ["a got x"]


def test_shutdown_wakes_a_putter_that_then_finds_room_and_is_refused(fwq: Any) -> None:
    _needs_shutdown(fwq)

    async def main() -> None:
        queue = fwq.Queue(maxsize=1)
        queue.put_nowait("kept")
        task = fwq.create_task(queue.put("late"))
        await fwq.settle()
        queue.get_nowait()  # room for the putter...
        queue.shutdown()  # ...which is refused all the same
        with pytest.raises(fwq.QueueShutDown):
            await task
        assert queue.empty()

    fwq.run(main())


def test_immediate_shutdown_drops_the_items_and_releases_join(fwq: Any) -> None:
    _needs_shutdown(fwq)

    async def main() -> list[str]:
        queue = fwq.Queue()
        for item in "abc":
            queue.put_nowait(item)
        assert queue.get_nowait() == "a"  # taken but not marked done
        log: list[str] = []

        async def joiner() -> None:
            await queue.join()
            log.append("joined")

        task = fwq.create_task(joiner())
        await fwq.settle()
        queue.shutdown(immediate=True)
        assert queue.empty()
        with pytest.raises(fwq.QueueShutDown):
            await queue.get()
        await fwq.settle()
        assert log == []  # "a" is still being worked on
        queue.task_done()
        await task
        with pytest.raises(ValueError):
            queue.task_done()
        return log

    assert fwq.run(main()) == ["joined"]


def test_immediate_shutdown_makes_waiting_getters_raise_at_once(fwq: Any) -> None:
    _needs_shutdown(fwq)

    async def main() -> list[Any]:
        queue = fwq.Queue()
        log: list[Any] = []
        getter = _recording_getter(fwq, queue, log)
        task = fwq.create_task(getter("a"))
        await fwq.settle()
        queue.put_nowait("x")  # a is woken for x...
        queue.shutdown(immediate=True)  # ...which is dropped before a runs
        with pytest.raises(fwq.QueueShutDown):
            await task
        await queue.join()
        return log

    assert fwq.run(main()) == []


# --- treadle only: arguments ------------------------------------------------------------


@pytest.mark.parametrize("kind", [Queue, PriorityQueue, LifoQueue])
async def test_bad_maxsize_is_refused_clearly(kind: type[Queue[Any]]) -> None:
    # asyncio takes a negative maxsize as "no bound"; treadle asks for 0 instead.
    with pytest.raises(ValueError, match="maxsize must be >= 0"):
        kind(-1)
    for bad in ["3", 1.5, None, True]:
        with pytest.raises(TypeError, match="maxsize must be an int"):
            kind(bad)  # type: ignore[arg-type]


async def test_shutdown_errors_say_what_happened() -> None:
    queue: Queue[int] = Queue()
    queue.shutdown()
    with pytest.raises(QueueShutDown, match="shut down"):
        await queue.put(1)
    with pytest.raises(QueueShutDown, match="shut down and empty"):
        await queue.get()
