"""Tests for Queue, PriorityQueue and LifoQueue.

Tests that take the ``fw`` fixture run the same body on treadle and on asyncio (the
oracle) and compare the interleaving they record. ``shutdown()`` is Python 3.13's: on
3.11 and 3.12 its tests run on treadle only. What treadle does beyond asyncio (a clear
error for a bad ``maxsize``) is tested on treadle only.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

import pytest

from treadle.errors import QueueShutDown
from treadle.queues import LifoQueue, PriorityQueue, Queue

# A deadlock fails fast: no test here needs more than a fraction of a second.
pytestmark = pytest.mark.timeout(10)


def _needs_shutdown(fw: Any) -> None:
    if not hasattr(fw, "QueueShutDown"):  # asyncio's is new in Python 3.13
        pytest.skip("asyncio.Queue.shutdown() is new in Python 3.13")


def _recording_getter(fw: Any, queue: Any, log: list[Any]) -> Any:
    async def getter(name: str) -> None:
        try:
            item = await queue.get()
        except fw.CancelledError:
            log.append(f"{name} cancelled")
            raise
        log.append(f"{name} got {item}")

    return getter


def _recording_putter(fw: Any, queue: Any, log: list[Any]) -> Any:
    async def putter(item: Any) -> None:
        try:
            await queue.put(item)
        except fw.CancelledError:
            log.append(f"put {item} cancelled")
            raise
        log.append(f"put {item}")

    return putter


def _full_queue(fw: Any) -> Any:
    """A queue of one slot, taken by ``"kept"``: the next ``put()`` waits."""
    queue = fw.Queue(maxsize=1)
    queue.put_nowait("kept")
    return queue


# --- ordering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Queue", [3, 1, 4, 1, 5, 9, 2, 6]),
        ("LifoQueue", [6, 2, 9, 5, 1, 4, 1, 3]),
        ("PriorityQueue", [1, 1, 2, 3, 4, 5, 6, 9]),
    ],
)
def test_each_kind_returns_items_in_its_order(fw: Any, kind: str, expected: list[int]) -> None:
    async def main() -> list[int]:
        queue = getattr(fw, kind)()
        for item in [3, 1, 4, 1, 5]:
            queue.put_nowait(item)
        for item in [9, 2, 6]:
            await queue.put(item)
        got = [queue.get_nowait() for _ in range(4)]
        got += [await queue.get() for _ in range(4)]
        assert queue.empty()
        return got

    assert fw.run_guarded(main()) == expected


def test_priority_queue_takes_priority_data_pairs(fw: Any) -> None:
    async def main() -> list[tuple[int, str]]:
        queue = fw.PriorityQueue()
        for pair in [(2, "b"), (1, "z"), (3, "a"), (1, "y")]:
            queue.put_nowait(pair)
        return [queue.get_nowait() for _ in range(4)]

    assert fw.run_guarded(main()) == [(1, "y"), (1, "z"), (2, "b"), (3, "a")]


def test_size_empty_full_and_the_nowait_errors(fw: Any) -> None:
    async def main() -> None:
        queue = fw.Queue(maxsize=2)
        assert queue.maxsize == 2 and queue.empty() and not queue.full() and queue.qsize() == 0
        with pytest.raises(fw.QueueEmpty):
            queue.get_nowait()
        queue.put_nowait("a")
        assert not queue.empty() and not queue.full() and queue.qsize() == 1
        queue.put_nowait("b")
        assert queue.full() and queue.qsize() == 2
        with pytest.raises(fw.QueueFull):
            queue.put_nowait("c")
        assert "maxsize=2" in repr(queue)
        unbounded = fw.Queue()
        assert unbounded.maxsize == 0
        for i in range(1000):
            unbounded.put_nowait(i)
        assert not unbounded.full() and unbounded.qsize() == 1000

    fw.run_guarded(main())


def test_queue_is_generic(fw: Any) -> None:
    assert fw.Queue[int] is not None and fw.PriorityQueue[str] is not None


def test_getters_are_served_in_order(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        tasks = await fw.start_each(_recording_getter(fw, queue, log), "abc")
        for item in [1, 2, 3]:
            queue.put_nowait(item)
        await fw.finish(tasks)

    assert fw.run_logged(main) == ["a got 1", "b got 2", "c got 3"]


def test_put_blocks_while_full_and_putters_are_served_in_order(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = fw.Queue(maxsize=1)
        putter = _recording_putter(fw, queue, log)
        await queue.put(0)
        tasks = [fw.create_task(putter(item)) for item in [1, 2, 3]]
        await fw.settle()
        assert queue.qsize() == 1 and not any(task.done() for task in tasks)
        for _ in range(4):
            log.append(f"got {await queue.get()}")
            await fw.settle()
        await fw.finish(tasks)

    assert fw.run_logged(main) == [
        "got 0",
        "put 1",
        "got 1",
        "put 2",
        "got 2",
        "put 3",
        "got 3",
    ]


def test_getter_woken_for_an_item_taken_by_get_nowait_waits_again(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        [task] = await fw.start_each(_recording_getter(fw, queue, log), "a")
        queue.put_nowait(1)  # wakes a...
        log.append(f"main got {queue.get_nowait()}")  # ...but the item is gone
        await fw.settle()
        assert not task.done()
        queue.put_nowait(2)
        await task

    assert fw.run_logged(main) == ["main got 1", "a got 2"]


def test_putter_woken_for_a_slot_taken_by_put_nowait_waits_again(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = _full_queue(fw)
        [task] = await fw.start_each(_recording_putter(fw, queue, log), "p")
        log.append(f"got {queue.get_nowait()}")  # wakes p's putter...
        queue.put_nowait("main")  # ...but the free slot is gone
        await fw.settle()
        assert not task.done()
        log.append(f"got {queue.get_nowait()}")
        await task
        log.append(f"got {queue.get_nowait()}")

    assert fw.run_logged(main) == ["got kept", "got main", "put p", "got p"]


# --- join and task_done ----------------------------------------------------------------


def test_join_waits_for_every_task_done(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        await queue.join()  # nothing put: returns at once
        for item in "ab":
            queue.put_nowait(item)

        async def joiner(name: str) -> None:
            await queue.join()
            log.append(f"{name} joined")

        joiners = await fw.start_each(joiner, "xy")
        queue.get_nowait()
        queue.get_nowait()
        queue.task_done()
        log.append("one done")
        await fw.settle()
        queue.task_done()
        log.append("two done")
        await fw.finish(joiners)
        with pytest.raises(ValueError):
            queue.task_done()

    assert fw.run_logged(main) == ["one done", "two done", "x joined", "y joined"]


async def test_task_done_error_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="too many times"):
        Queue[int]().task_done()


# --- cancellation ------------------------------------------------------------------------


def test_cancelled_get_after_wake_up_loses_no_item(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        tasks = await fw.start_each(_recording_getter(fw, queue, log), "abc")
        queue.put_nowait("x")  # wakes a...
        tasks[0].cancel()  # ...cancelled before it runs: b must get x
        await fw.settle()
        assert not tasks[2].done()
        queue.put_nowait("y")
        await fw.finish(tasks)
        assert queue.empty()

    assert fw.run_logged(main) == ["a cancelled", "b got x", "c got y"]


def test_cancelled_get_with_no_other_getter_leaves_the_item(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        [task] = await fw.start_each(_recording_getter(fw, queue, log), "a")
        queue.put_nowait("x")
        task.cancel()
        await fw.finish([task])
        log.append(f"left: {queue.get_nowait()}")

    assert fw.run_logged(main) == ["a cancelled", "left: x"]


def test_cancelled_put_inserts_nothing(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = _full_queue(fw)
        tasks = await fw.start_each(_recording_putter(fw, queue, log), ["p", "q"])
        tasks[0].cancel()
        await fw.settle()
        assert queue.qsize() == 1
        log.append(f"got {queue.get_nowait()}")
        await fw.settle()
        log.append(f"got {queue.get_nowait()}")
        await fw.finish(tasks)
        assert queue.empty()

    assert fw.run_logged(main) == ["put p cancelled", "got kept", "put q", "got q"]


def test_cancelled_put_after_wake_up_passes_the_free_slot_on(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = _full_queue(fw)
        tasks = await fw.start_each(_recording_putter(fw, queue, log), ["p", "q", "r"])
        log.append(f"got {queue.get_nowait()}")  # wakes p's putter...
        tasks[0].cancel()  # ...cancelled before it runs: q goes in instead
        await fw.settle()
        assert not tasks[2].done()
        log.append(f"got {queue.get_nowait()}")
        await fw.settle()
        log.append(f"got {queue.get_nowait()}")
        await fw.finish(tasks)

    assert fw.run_logged(main) == [
        "got kept",
        "put p cancelled",
        "put q",
        "got q",
        "put r",
        "got r",
    ]


# --- no hand-off: get() and put() go through at once when they can ---------------------


def test_get_returns_at_once_when_an_item_is_there_even_if_a_getter_was_woken(
    fw: Any,
) -> None:
    # The pattern "if not queue.empty(): await queue.get()" must not block. The getter
    # woken for x finds the queue empty when it runs, and waits again.
    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        getter = _recording_getter(fw, queue, log)
        task = fw.create_task(getter("a"))
        await fw.settle()
        queue.put_nowait("x")  # wakes a, which has not run yet
        assert not queue.empty()
        log.append(f"main got {await queue.get()}")
        await fw.settle()
        assert not task.done()
        queue.put_nowait("y")
        await task

    assert fw.run_logged(main) == ["main got x", "a got y"]


def test_get_takes_an_item_put_while_a_woken_getter_waits_to_run(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        [task] = await fw.start_each(_recording_getter(fw, queue, log), "a")
        queue.put_nowait("x")  # for a, which has not run yet
        queue.put_nowait("y")  # nobody else waits
        log.append(f"main got {await queue.get()}")
        await task

    assert fw.run_logged(main) == ["main got x", "a got y"]


def test_put_returns_at_once_when_there_is_room_even_if_a_putter_was_woken(
    fw: Any,
) -> None:
    async def main(log: list[Any]) -> None:
        queue = _full_queue(fw)
        [task] = await fw.start_each(_recording_putter(fw, queue, log), "p")
        log.append(f"got {queue.get_nowait()}")  # wakes p, which has not run yet
        assert not queue.full()
        await queue.put("main")
        log.append("put main")
        await fw.settle()
        assert not task.done()  # p found the queue full and waits again
        log.append(f"got {queue.get_nowait()}")
        await task
        log.append(f"got {queue.get_nowait()}")

    assert fw.run_logged(main) == ["got kept", "put main", "got main", "put p", "got p"]


def test_spare_free_slots_let_put_through_before_a_woken_putter(fw: Any) -> None:
    async def main() -> list[Any]:
        queue = fw.Queue(maxsize=2)
        log: list[Any] = []
        queue.put_nowait("k1")
        queue.put_nowait("k2")
        [task] = await fw.start_each(_recording_putter(fw, queue, log), "p")
        queue.get_nowait()  # a slot for p, which has not run yet
        queue.get_nowait()  # a spare slot
        await queue.put("main")
        await task
        return [queue.get_nowait(), queue.get_nowait()]

    assert fw.run_guarded(main()) == ["main", "p"]


def test_a_stale_wake_up_is_not_passed_on_by_a_cancelled_getter(fw: Any) -> None:
    # a is woken for x, x is taken by get_nowait(), then a is cancelled: nothing is left
    # to wake b for, so b keeps its place in line ahead of c.
    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        tasks = await fw.start_each(_recording_getter(fw, queue, log), "abc")
        queue.put_nowait("x")
        log.append(f"main got {queue.get_nowait()}")
        tasks[0].cancel()
        await fw.settle()
        queue.put_nowait("y")
        queue.put_nowait("z")
        await fw.finish(tasks)

    assert fw.run_logged(main) == ["main got x", "a cancelled", "b got y", "c got z"]


def test_a_stale_wake_up_is_not_passed_on_by_a_cancelled_putter(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        queue = _full_queue(fw)
        tasks = await fw.start_each(_recording_putter(fw, queue, log), "pqr")
        log.append(f"got {queue.get_nowait()}")  # wakes p...
        queue.put_nowait("main")  # ...takes p's slot...
        tasks[0].cancel()  # ...and p leaves: q keeps its place ahead of r
        await fw.settle()
        for _ in range(3):
            log.append(f"got {queue.get_nowait()}")
            await fw.settle()
        await fw.finish(tasks)

    assert fw.run_logged(main) == [
        "got kept",
        "put p cancelled",
        "got main",
        "put q",
        "got q",
        "put r",
        "got r",
    ]


# --- shutdown (asyncio's from Python 3.13) ---------------------------------------------


def test_shutdown_refuses_puts_and_drains_gets(fw: Any) -> None:
    _needs_shutdown(fw)

    async def main() -> None:
        queue = fw.Queue()
        queue.put_nowait(1)
        queue.put_nowait(2)
        queue.shutdown()
        assert "shutdown" in repr(queue)
        with pytest.raises(fw.QueueShutDown):
            queue.put_nowait(3)
        with pytest.raises(fw.QueueShutDown):
            await queue.put(3)
        assert await queue.get() == 1
        assert queue.get_nowait() == 2
        with pytest.raises(fw.QueueShutDown):
            await queue.get()
        with pytest.raises(fw.QueueShutDown):
            queue.get_nowait()
        queue.task_done()
        queue.task_done()
        await queue.join()

    fw.run_guarded(main())


def test_shutdown_refuses_a_put_on_a_full_queue(fw: Any) -> None:
    _needs_shutdown(fw)

    async def main() -> None:
        queue = fw.Queue(maxsize=1)
        queue.put_nowait(1)
        queue.shutdown()
        with pytest.raises(fw.QueueShutDown):
            await queue.put(2)
        assert queue.get_nowait() == 1

    fw.run_guarded(main())


def test_shutdown_wakes_blocked_getters_and_putters(fw: Any) -> None:
    _needs_shutdown(fw)

    async def main(log: list[str]) -> None:
        getters = fw.Queue()
        putters = _full_queue(fw)

        async def expect_shutdown(name: str, operation: Coroutine[Any, Any, Any]) -> None:
            try:
                await operation
            except fw.QueueShutDown:
                log.append(f"{name} shut down")

        tasks = [
            fw.create_task(expect_shutdown("get", getters.get())),
            fw.create_task(expect_shutdown("put", putters.put("late"))),
        ]
        await fw.settle()
        getters.shutdown()
        putters.shutdown()
        for task in tasks:
            await task
        assert putters.get_nowait() == "kept"  # a graceful shutdown keeps the items

    assert fw.run_logged(main) == ["get shut down", "put shut down"]


def test_shutdown_with_items_left_lets_waiting_getters_take_them(fw: Any) -> None:
    _needs_shutdown(fw)

    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        tasks = await fw.start_each(_recording_getter(fw, queue, log), "abc")
        queue.put_nowait("x")
        queue.shutdown()
        await tasks[0]
        for task in tasks[1:]:
            with pytest.raises(fw.QueueShutDown):
                await task

    assert fw.run_logged(main) == ["a got x"]


def test_shutdown_wakes_a_putter_that_then_finds_room_and_is_refused(fw: Any) -> None:
    _needs_shutdown(fw)

    async def main() -> None:
        queue = _full_queue(fw)
        task = fw.create_task(queue.put("late"))
        await fw.settle()
        queue.get_nowait()  # room for the putter...
        queue.shutdown()  # ...which is refused all the same
        with pytest.raises(fw.QueueShutDown):
            await task
        assert queue.empty()

    fw.run_guarded(main())


def test_immediate_shutdown_drops_the_items_and_releases_join(fw: Any) -> None:
    _needs_shutdown(fw)

    async def main(log: list[str]) -> None:
        queue = fw.Queue()
        for item in "abc":
            queue.put_nowait(item)
        assert queue.get_nowait() == "a"  # taken but not marked done

        async def joiner() -> None:
            await queue.join()
            log.append("joined")

        task = fw.create_task(joiner())
        await fw.settle()
        queue.shutdown(immediate=True)
        assert queue.empty()
        with pytest.raises(fw.QueueShutDown):
            await queue.get()
        await fw.settle()
        assert log == []  # "a" is still being worked on
        queue.task_done()
        await task
        with pytest.raises(ValueError):
            queue.task_done()

    assert fw.run_logged(main) == ["joined"]


def test_immediate_shutdown_makes_waiting_getters_raise_at_once(fw: Any) -> None:
    _needs_shutdown(fw)

    async def main(log: list[Any]) -> None:
        queue = fw.Queue()
        [task] = await fw.start_each(_recording_getter(fw, queue, log), "a")
        queue.put_nowait("x")  # a is woken for x...
        queue.shutdown(immediate=True)  # ...which is dropped before a runs
        with pytest.raises(fw.QueueShutDown):
            await task
        await queue.join()

    assert fw.run_logged(main) == []


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
