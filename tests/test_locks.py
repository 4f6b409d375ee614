"""Tests for the wait queue and the synchronisation primitives built on it.

Where treadle mirrors asyncio, the same test body runs on both: tests that take the
``fw`` fixture run once on treadle and once on asyncio (the oracle), and compare the
interleaving they record in a list. Tests of what asyncio 3.11 does not do (or does
differently) run on treadle only, as ``async def`` tests.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
from collections.abc import Callable, Coroutine, Generator
from typing import Any

import pytest
from oracle_runners import TREADLE

import treadle
from treadle.locks import BoundedSemaphore, Condition, Event, Lock, Semaphore
from treadle.testing import wait_all_tasks_blocked
from treadle.waitqueue import WaitQueue

# A deadlock fails fast: no test here needs more than a fraction of a second.
pytestmark = pytest.mark.timeout(10)


# --- WaitQueue ------------------------------------------------------------------------


async def _park(queue: WaitQueue) -> bool:
    return await queue.park()


def _logging_parker(queue: WaitQueue, log: list[str]) -> Callable[[str], Coroutine[Any, Any, None]]:
    """A task body that parks on ``queue``, then logs its name."""

    async def parker(name: str) -> None:
        await queue.park()
        log.append(name)

    return parker


async def test_waitqueue_wakes_in_fifo_order_and_counts() -> None:
    queue = WaitQueue()
    log: list[tuple[str, bool]] = []

    async def parker(name: str) -> None:
        log.append((name, await queue.park()))

    tasks = [treadle.create_task(parker(name)) for name in "abcd"]
    await wait_all_tasks_blocked()
    assert len(queue) == 4 and queue and queue.woken == 0
    assert queue.unpark(2) == 2
    assert len(queue) == 4 and queue.woken == 2  # woken, not yet resumed
    await wait_all_tasks_blocked()
    assert log == [("a", True), ("b", True)]
    assert len(queue) == 2 and queue.woken == 0
    assert queue.unpark_all() == 2
    await wait_all_tasks_blocked()
    assert log[2:] == [("c", False), ("d", False)]
    assert len(queue) == 0 and not queue
    assert queue.unpark() == 0 and queue.unpark_all() == 0
    await TREADLE.finish(tasks)


async def test_waitqueue_cancelled_waiter_leaves_and_is_skipped() -> None:
    queue = WaitQueue()
    log: list[str] = []
    a, _, c = await TREADLE.start_each(_logging_parker(queue, log), "abc")
    a.cancel()
    assert len(queue) == 2  # a cancelled future is not a waiter, even before its task runs
    assert queue.unpark() == 1  # skips a, wakes b
    await wait_all_tasks_blocked()
    assert log == ["b"] and a.cancelled()
    c.cancel()
    assert not queue  # c, the last waiter, is cancelled: nobody waits any more
    await wait_all_tasks_blocked()
    assert len(queue) == 0 and not queue._parked
    assert queue.unpark() == 0


async def test_waitqueue_woken_then_cancelled_passes_the_wake_up_on() -> None:
    queue = WaitQueue()
    log: list[str] = []
    tasks = await TREADLE.start_each(_logging_parker(queue, log), "abc")
    queue.unpark()
    tasks[0].cancel()  # woken, but cancelled before it runs
    await wait_all_tasks_blocked()
    assert log == ["b"]
    assert tasks[0].cancelled() and not tasks[2].done()
    assert queue.woken == 0 and len(queue) == 1
    queue.unpark()
    await TREADLE.finish(tasks)
    assert log == ["b", "c"]


async def test_waitqueue_broadcast_wake_up_is_not_passed_on() -> None:
    queue = WaitQueue()
    log: list[str] = []
    parker = _logging_parker(queue, log)
    [first] = await TREADLE.start_each(parker, "a")
    queue.unpark_all()
    first.cancel()
    late = treadle.create_task(parker("late"))  # parks after the broadcast
    await wait_all_tasks_blocked()
    assert first.cancelled() and not late.done() and log == []
    queue.unpark()
    await late
    assert log == ["late"] and queue.woken == 0


async def test_waitqueue_unpark_for_wakes_only_the_surplus() -> None:
    queue = WaitQueue()
    tasks = [treadle.create_task(_park(queue)) for _ in range(4)]
    await wait_all_tasks_blocked()
    assert queue.unpark() == 1
    assert queue.unpark_for(1) == 0  # one unit, already promised to the woken task
    assert queue.unpark_for(3) == 2
    assert queue.woken == 3
    queue.unpark_all()
    await TREADLE.finish(tasks)


async def test_waitqueue_park_works_from_a_generator_coroutine() -> None:
    queue = WaitQueue()

    @treadle.coroutine
    def old_style() -> Generator[Any, Any, str]:
        woken_alone = yield from queue.park()
        return f"woken alone: {woken_alone}"

    task = treadle.create_task(old_style())
    await wait_all_tasks_blocked()
    queue.unpark()
    assert await task == "woken alone: True"


async def test_waitqueue_refuses_tasks_of_two_loops() -> None:
    queue = WaitQueue()
    here = treadle.create_task(_park(queue))
    await wait_all_tasks_blocked()
    problems: list[BaseException] = []

    async def elsewhere() -> None:
        try:
            await queue.park()
        except RuntimeError as exc:
            problems.append(exc)

    thread = threading.Thread(target=treadle.run, args=(elsewhere(),))
    thread.start()
    thread.join()
    assert len(problems) == 1 and "another event loop" in str(problems[0])
    queue.unpark()
    await here


def test_parking_on_an_event_costs_a_future_not_a_coroutine_frame() -> None:
    # Many tasks park at once (a crawler's idle workers), so each must stay cheap: one
    # future and a deque slot on top of what waiting on a shared future costs.
    n = 2000

    async def cost_per_task(wait: Any, tasks: list[Any]) -> float:
        parked = 0

        async def waiter() -> None:
            nonlocal parked
            parked += 1
            await wait()

        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        tasks += [treadle.create_task(waiter()) for _ in range(n)]
        while parked < n:
            await treadle.sleep(0)
        return (tracemalloc.get_traced_memory()[0] - before) / n

    async def main() -> tuple[float, float]:
        shared = treadle.get_running_loop().create_future()

        async def wait_shared() -> None:
            await shared

        tasks: list[Any] = []
        bare = await cost_per_task(wait_shared, tasks)
        event = Event()
        on_event = await cost_per_task(event.wait, tasks)
        shared.set_result(None)
        event.set()
        for task in tasks:
            await task
        return bare, on_event

    tracemalloc.start()
    try:
        bare, on_event = treadle.run(main())
    finally:
        tracemalloc.stop()
    # About 130 bytes today; another coroutine frame per waiter would add about 200.
    assert on_event - bare < 250, (bare, on_event)


# --- Lock -----------------------------------------------------------------------------


def test_lock_basics(fw: Any) -> None:
    async def main() -> None:
        lock = fw.Lock()
        assert not lock.locked() and "unlocked" in repr(lock)
        assert await lock.acquire() is True
        assert lock.locked() and "[locked" in repr(lock)
        lock.release()
        assert not lock.locked()
        with pytest.raises(RuntimeError):
            lock.release()
        async with lock:
            assert lock.locked()
        assert not lock.locked()
        with pytest.raises(ZeroDivisionError):
            async with lock:
                1 / 0  # noqa: B018
        assert not lock.locked()

    fw.run_guarded(main())


async def test_lock_release_error_says_what_is_wrong() -> None:
    with pytest.raises(RuntimeError, match="not acquired"):
        Lock().release()


def test_lock_is_fifo(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        lock = fw.Lock()

        async def worker(name: str) -> None:
            async with lock:
                log.append(name)
                await fw.sleep(0)

        await lock.acquire()
        tasks = await fw.start_each(worker, "abcde")
        lock.release()
        await fw.finish(tasks)

    assert fw.run_logged(main) == list("abcde")


def _recording_lock_waiter(fw: Any, lock: Any, log: list[str]) -> Any:
    async def waiter(name: str) -> None:
        try:
            async with lock:
                log.append(name)
        except fw.CancelledError:
            log.append(f"{name} cancelled")
            raise

    return waiter


def test_lock_whose_only_waiter_is_cancelled_is_free_at_once(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        lock = fw.Lock()
        await lock.acquire()
        [task] = await fw.start_each(_recording_lock_waiter(fw, lock, log), "a")
        task.cancel()
        lock.release()
        await lock.acquire()  # a will not take it: no need to wait for a to run
        log.append("main")
        lock.release()
        await fw.finish([task])

    assert fw.run_logged(main) == ["main", "a cancelled"]


# --- Event ----------------------------------------------------------------------------


def _recording_event_waiter(fw: Any, event: Any, log: list[str]) -> Any:
    async def waiter(name: str) -> None:
        log.append(f"{name} waits")
        try:
            assert await event.wait() is True
        except fw.CancelledError:
            log.append(f"{name} cancelled")
            raise
        log.append(f"{name} woke")

    return waiter


def test_event_wakes_every_waiter_in_order(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        event = fw.Event()
        assert not event.is_set() and "unset" in repr(event)
        tasks = await fw.start_each(_recording_event_waiter(fw, event, log), "abc")
        event.set()
        assert event.is_set() and "[set" in repr(event)
        await fw.finish(tasks)
        assert await event.wait() is True  # already set: no waiting
        event.set()  # twice is fine
        event.clear()
        assert not event.is_set()

    assert fw.run_logged(main) == ["a waits", "b waits", "c waits", "a woke", "b woke", "c woke"]


def test_event_waiters_woken_before_clear_still_return(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        event = fw.Event()
        tasks = await fw.start_each(_recording_event_waiter(fw, event, log), "ab")
        event.set()
        event.clear()
        await fw.finish(tasks)

    assert fw.run_logged(main) == ["a waits", "b waits", "a woke", "b woke"]


def test_event_cancelled_waiter_does_not_wake_a_later_one(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        event = fw.Event()
        waiter = _recording_event_waiter(fw, event, log)
        tasks = await fw.start_each(waiter, "ab")
        event.set()
        event.clear()
        tasks[0].cancel()  # woken by set(), cancelled before it runs
        tasks.append(fw.create_task(waiter("c")))  # waits for the *next* set()
        await fw.settle()
        assert not tasks[2].done()
        log.append("set again")
        event.set()
        await fw.finish(tasks)

    assert fw.run_logged(main) == [
        "a waits",
        "b waits",
        "a cancelled",
        "b woke",
        "c waits",
        "set again",
        "c woke",
    ]


def test_event_cancelled_waiter_leaves_the_others_waiting(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        event = fw.Event()
        tasks = await fw.start_each(_recording_event_waiter(fw, event, log), "abc")
        tasks[1].cancel()
        await fw.settle()
        event.set()
        await fw.finish(tasks)

    assert fw.run_logged(main) == [
        "a waits",
        "b waits",
        "c waits",
        "b cancelled",
        "a woke",
        "c woke",
    ]


# --- Condition ------------------------------------------------------------------------


def test_condition_needs_its_lock_held(fw: Any) -> None:
    async def main() -> None:
        cond = fw.Condition()
        with pytest.raises(RuntimeError):
            await cond.wait()
        with pytest.raises(RuntimeError):
            cond.notify()
        with pytest.raises(RuntimeError):
            cond.notify_all()
        assert not cond.locked()

    fw.run_guarded(main())


async def test_condition_misuse_errors_say_what_is_wrong() -> None:
    cond = Condition()
    with pytest.raises(RuntimeError, match=r"wait\(\) needs the condition's lock held"):
        await cond.wait()
    with pytest.raises(RuntimeError, match=r"notify\(\) needs the condition's lock held"):
        cond.notify()
    with pytest.raises(RuntimeError, match=r"notify_all\(\) needs"):
        cond.notify_all()
    with pytest.raises(TypeError, match="needs a treadle Lock"):
        Condition(asyncio.Lock())  # type: ignore[arg-type]


def _recording_condition_waiter(fw: Any, cond: Any, log: list[str]) -> Any:
    async def waiter(name: str) -> None:
        async with cond:
            log.append(f"{name} waits")
            try:
                assert await cond.wait() is True
            except fw.CancelledError:
                log.append(f"{name} cancelled, lock held: {cond.locked()}")
                raise
            assert cond.locked()
            log.append(f"{name} woke")

    return waiter


def test_condition_notify_wakes_waiters_in_order(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        cond = fw.Condition()
        tasks = await fw.start_each(_recording_condition_waiter(fw, cond, log), "abcd")
        async with cond:
            cond.notify()
        await fw.settle()
        async with cond:
            cond.notify(2)
        await fw.settle()
        log.append("notify_all")
        async with cond:
            cond.notify_all()
        await fw.finish(tasks)

    assert fw.run_logged(main) == [
        "a waits",
        "b waits",
        "c waits",
        "d waits",
        "a woke",
        "b woke",
        "c woke",
        "notify_all",
        "d woke",
    ]


def test_condition_woken_waiter_waits_for_the_lock(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        cond = fw.Condition()
        [task] = await fw.start_each(_recording_condition_waiter(fw, cond, log), "a")
        async with cond:
            cond.notify()
            await fw.settle()  # a is woken but cannot return from wait() yet
            log.append("main releases")
        await task

    assert fw.run_logged(main) == ["a waits", "main releases", "a woke"]


def test_condition_wait_for_rechecks_the_predicate(fw: Any) -> None:
    async def main(log: list[Any]) -> None:
        cond = fw.Condition()
        count = 0

        async def waiter() -> None:
            async with cond:
                log.append(await cond.wait_for(lambda: count >= 3 and f"count={count}"))

        task = fw.create_task(waiter())
        for _ in range(3):
            await fw.settle()
            async with cond:
                count += 1
                log.append(count)
                cond.notify_all()
        await task
        async with cond:  # already true: returns at once
            assert await cond.wait_for(lambda: "yes") == "yes"

    assert fw.run_logged(main) == [1, 2, 3, "count=3"]


def test_condition_cancelled_wait_reacquires_the_lock_first(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        cond = fw.Condition()
        [task] = await fw.start_each(_recording_condition_waiter(fw, cond, log), "a")
        await cond.acquire()
        task.cancel()
        await fw.settle()  # a is cancelled, but must get the lock back before it leaves
        log.append("main releases")
        cond.release()
        await fw.finish([task])
        assert not cond.locked()

    assert fw.run_logged(main) == ["a waits", "main releases", "a cancelled, lock held: True"]


def test_condition_shares_the_lock_it_is_given(fw: Any) -> None:
    async def main() -> None:
        lock = fw.Lock()
        cond = fw.Condition(lock)
        async with lock:
            assert cond.locked()
            cond.notify()  # the lock is held, through either name
        async with cond:
            assert lock.locked()
        assert not lock.locked()

    fw.run_guarded(main())


async def test_condition_notified_then_cancelled_passes_the_notification_on() -> None:
    # asyncio 3.11 loses this notification (fixed in 3.13); treadle must not.
    cond = Condition()
    log: list[str] = []
    tasks = await TREADLE.start_each(_recording_condition_waiter(treadle, cond, log), "abc")
    async with cond:
        cond.notify()
        tasks[0].cancel()  # notified, then cancelled before it runs: b must wake
    await wait_all_tasks_blocked()
    assert log[3:] == ["a cancelled, lock held: True", "b woke"]
    assert not tasks[2].done()
    async with cond:
        cond.notify()
    await TREADLE.finish(tasks)
    assert log[-1] == "c woke"


async def test_condition_cancelled_while_reacquiring_passes_the_notification_on() -> None:
    cond = Condition()
    log: list[str] = []
    tasks = await TREADLE.start_each(_recording_condition_waiter(treadle, cond, log), "ab")
    async with cond:
        cond.notify()
        await wait_all_tasks_blocked()  # a was notified and now waits for the lock
        tasks[0].cancel()
        await wait_all_tasks_blocked()
    await TREADLE.finish(tasks)
    assert log == ["a waits", "b waits", "a cancelled, lock held: True", "b woke"]


# --- Semaphore and BoundedSemaphore --------------------------------------------------


def test_semaphore_value_rules(fw: Any) -> None:
    async def main() -> None:
        with pytest.raises(ValueError):
            fw.Semaphore(-1)
        with pytest.raises(ValueError):
            fw.BoundedSemaphore(-1)
        assert fw.Semaphore(0).locked()
        one = fw.Semaphore()
        assert not one.locked()
        async with one:
            assert one.locked()
        sem = fw.Semaphore(2)
        assert await sem.acquire() is True
        assert not sem.locked() and "value:1" in repr(sem)
        await sem.acquire()
        assert sem.locked()
        sem.release()
        sem.release()
        sem.release()  # a plain Semaphore may grow past its start
        for _ in range(3):
            await sem.acquire()
        assert sem.locked()

    fw.run_guarded(main())


def test_bounded_semaphore_refuses_to_grow(fw: Any) -> None:
    async def main() -> None:
        sem = fw.BoundedSemaphore(2)
        with pytest.raises(ValueError):
            sem.release()
        await sem.acquire()
        await sem.acquire()
        sem.release()
        sem.release()
        with pytest.raises(ValueError):
            sem.release()
        assert not sem.locked()

    fw.run_guarded(main())


async def test_semaphore_errors_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        Semaphore(-1)
    with pytest.raises(TypeError, match="must be an int"):
        Semaphore(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be an int"):
        BoundedSemaphore(True)
    with pytest.raises(ValueError, match="released too many times"):
        BoundedSemaphore(1).release()


def _recording_acquirer(fw: Any, primitive: Any, log: list[str]) -> Any:
    """A task body that acquires ``primitive`` (a Lock or a Semaphore) and keeps it."""

    async def acquirer(name: str) -> None:
        try:
            await primitive.acquire()
        except fw.CancelledError:
            log.append(f"{name} cancelled")
            raise
        log.append(name)

    return acquirer


def test_semaphore_is_fifo(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        sem = fw.Semaphore(2)
        tasks = await fw.start_each(_recording_acquirer(fw, sem, log), "abcde")
        for _ in range(3):
            log.append("release")
            sem.release()
            await fw.settle()
        await fw.finish(tasks)

    assert fw.run_logged(main) == ["a", "b", "release", "c", "release", "d", "release", "e"]


def test_semaphore_spare_permits_reach_tasks_queued_behind_a_woken_one(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        sem = fw.Semaphore(0)
        [task] = await fw.start_each(_recording_acquirer(fw, sem, log), "a")
        sem.release()  # for a, which has not run yet
        sem.release()  # nobody else waits: a spare permit
        await sem.acquire()  # queues behind a; a must hand the spare permit on
        log.append("main")
        await task
        assert sem.locked()

    assert fw.run_logged(main) == ["a", "main"]


def test_semaphore_wakes_no_more_tasks_than_permits(fw: Any) -> None:
    async def main(log: list[str]) -> None:
        sem = fw.Semaphore(0)
        tasks = await fw.start_each(_recording_acquirer(fw, sem, log), "abc")
        sem.release()
        sem.release()
        await fw.settle()
        assert not tasks[2].done() and sem.locked()
        log.append("release")
        sem.release()
        await fw.finish(tasks)
        assert sem.locked()

    assert fw.run_logged(main) == ["a", "b", "release", "c"]


# --- Lock and Semaphore: handing over on release ---------------------------------------


async def _taken(fw: Any, kind: str) -> Any:
    """A held Lock, or a Semaphore with no permit left: the next acquire() waits."""
    if kind == "Lock":
        lock = fw.Lock()
        await lock.acquire()
        return lock
    return fw.Semaphore(0)


# A released Lock looks free even while it waits for the task it woke; a Semaphore's
# permit is the woken task's, so it stays locked.
@pytest.mark.parametrize(("kind", "stays_locked"), [("Lock", False), ("Semaphore", True)])
def test_a_newcomer_does_not_barge_past_a_woken_waiter(
    fw: Any, kind: str, stays_locked: bool
) -> None:
    async def main(log: list[str]) -> None:
        primitive = await _taken(fw, kind)

        async def waiter() -> None:
            async with primitive:
                log.append("waiter")

        task = fw.create_task(waiter())
        await fw.settle()
        primitive.release()  # wakes the waiter, which has not run yet...
        assert primitive.locked() is stays_locked
        await primitive.acquire()  # ...so this queues behind it
        log.append("main")
        primitive.release()
        await task

    assert fw.run_logged(main) == ["waiter", "main"]


@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
def test_cancelled_after_wake_up_passes_it_on(fw: Any, kind: str) -> None:
    async def main(log: list[str]) -> None:
        primitive = await _taken(fw, kind)
        tasks = await fw.start_each(_recording_acquirer(fw, primitive, log), "abc")
        primitive.release()  # wakes a...
        tasks[0].cancel()  # ...which is cancelled before it runs: b must get it
        await fw.settle()
        assert not tasks[2].done() and primitive.locked()  # and only b
        primitive.release()
        await fw.finish(tasks)
        primitive.release()  # c's
        assert not primitive.locked()

    assert fw.run_logged(main) == ["a cancelled", "b", "c"]


@pytest.mark.parametrize("kind", ["Lock", "Semaphore"])
@pytest.mark.parametrize("cancelled", ["a", "b"])
def test_cancelled_waiter_leaves_the_queue(fw: Any, kind: str, cancelled: str) -> None:
    async def main(log: list[str]) -> None:
        primitive = await _taken(fw, kind)
        tasks = await fw.start_each(_recording_acquirer(fw, primitive, log), "abc")
        tasks["abc".index(cancelled)].cancel()
        await fw.settle()
        for _ in range(2):
            primitive.release()
            await fw.settle()
        await fw.finish(tasks)

    others = [name for name in "abc" if name != cancelled]
    assert fw.run_logged(main) == [f"{cancelled} cancelled", *others]
