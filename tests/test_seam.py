"""The suspend/resume seam of treadle.core.tasks: its contract, clause by clause.

One regression test runs on asyncio too: a task that cancels itself and then reads a
stream gets its CancelledError at once (the old park() slept until data came).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from oracle_runners import TREADLE

import treadle
from treadle.core.tasks import Task, Waiter, current_waiter, is_suspended, resume, suspend


class Slot:
    """The smallest user of the seam: one task waits, a waker resumes it."""

    def __init__(self) -> None:
        self.waiter: Waiter | None = None

    async def wait(self) -> Any:
        self.waiter = current_waiter()
        try:
            return await suspend(self.waiter)
        finally:
            self.waiter = None


async def _suspended(slot: Slot) -> Task[Any]:
    task = treadle.create_task(slot.wait())
    await treadle.sleep(0)
    assert slot.waiter is task and is_suspended(task)
    return task


def test_resume_hands_over_a_value_once() -> None:
    async def main() -> None:
        slot = Slot()
        task = await _suspended(slot)
        assert resume(task, "first") is True
        assert not is_suspended(task)
        assert resume(task, "second") is False  # already resumed: nothing happens
        assert await task == "first"
        assert resume(task, "late") is False  # done

    treadle.run(main())


def test_resume_with_an_error_raises_it_at_the_suspension() -> None:
    async def main() -> None:
        slot = Slot()
        task = await _suspended(slot)
        assert resume(task, error=ConnectionResetError("gone")) is True
        with pytest.raises(ConnectionResetError, match="gone"):
            await task

    treadle.run(main())


def test_cancel_ends_the_suspension_and_later_resumes_do_nothing() -> None:
    async def main() -> None:
        slot = Slot()
        task = await _suspended(slot)
        assert task.cancel("stop") is True
        assert not is_suspended(task)
        assert resume(task, "too late") is False
        with pytest.raises(treadle.CancelledError, match="stop"):
            await task

    treadle.run(main())


def test_a_cancel_after_resume_but_before_the_step_wins() -> None:
    async def main() -> None:
        slot = Slot()
        task = await _suspended(slot)
        assert resume(task, "value") is True
        await TREADLE.cancel_and_wait(task)

    treadle.run(main())


def test_a_task_that_cancelled_itself_is_not_left_suspended() -> None:
    async def main() -> None:
        me = treadle.current_task()
        assert me is not None
        me.cancel()
        with pytest.raises(treadle.CancelledError):
            await suspend(current_waiter())  # nobody will ever resume this
        me.uncancel()

    treadle.run(main())


def test_suspend_refuses_another_tasks_waiter() -> None:
    async def main() -> None:
        slot = Slot()
        other = await _suspended(slot)
        with pytest.raises(RuntimeError, match="not the running task"):
            await suspend(other)
        resume(other)
        await other

    treadle.run(main())


def test_it_works_for_task_subclasses() -> None:
    class Named(Task[Any]):
        pass

    async def main() -> None:
        loop = treadle.get_running_loop()
        slot = Slot()
        task = Named(slot.wait(), loop=loop)
        await treadle.sleep(0)
        assert slot.waiter is task
        resume(task, 7)
        assert await task == 7

    treadle.run(main())


def test_a_coroutine_not_driven_by_a_treadle_task_waits_on_a_future() -> None:
    # The fallback for tasks of another kind: here the "other kind" is this test driving
    # the coroutine by hand from a plain callback, as asyncio's Task would.
    async def main() -> None:
        loop = treadle.get_running_loop()
        slot = Slot()
        coro = slot.wait()
        outcome: list[Any] = []
        first = loop.create_future()

        def drive() -> None:
            first.set_result(coro.send(None))

        loop.call_soon(drive)
        yielded = await first
        assert isinstance(yielded, treadle.Future) and slot.waiter is yielded
        assert is_suspended(yielded) and resume(yielded, "via a future") is True
        assert resume(yielded, "again") is False
        try:
            coro.send(None)
        except StopIteration as stop:
            outcome.append(stop.value)
        assert outcome == ["via a future"]

    treadle.run(main())


def test_current_waiter_given_the_running_loop_answers_as_without_it() -> None:
    # A caller that holds the running loop (a stream's reader) may hand it over.
    async def main() -> None:
        loop = treadle.get_running_loop()
        assert current_waiter(loop) is current_waiter() is treadle.current_task()
        # No treadle Task stepping (a plain callback): a new Future of that loop each time.
        answers: list[Any] = []
        loop.call_soon(lambda: answers.extend([current_waiter(loop), current_waiter(loop)]))
        await treadle.sleep(0)
        first, second = answers
        assert isinstance(first, treadle.Future) and first is not second
        assert first.get_loop() is loop

    treadle.run(main())


def test_inline_resume_runs_the_step_inside_a_plain_callback_only() -> None:
    async def main() -> None:
        loop = treadle.get_running_loop()
        log: list[str] = []
        slot = Slot()

        async def waiting() -> None:
            log.append(f"woke with {await slot.wait()}")

        task = treadle.create_task(waiting())
        await treadle.sleep(0)

        def ring() -> None:
            assert slot.waiter is not None
            resume(slot.waiter, "inline", inline=True)
            log.append("callback returns")

        loop.call_soon(ring)
        await task
        assert log == ["woke with inline", "callback returns"]

        log.clear()
        task = treadle.create_task(waiting())
        await treadle.sleep(0)
        assert slot.waiter is not None
        resume(slot.waiter, "scheduled", inline=True)  # from this task's step: scheduled
        log.append("step goes on")
        await task
        assert log == ["step goes on", "woke with scheduled"]

    treadle.run(main())


def test_a_read_after_the_task_cancelled_itself_raises_at_once(fw: Any) -> None:
    async def main() -> None:
        left, right = socket.socketpair()
        reader, writer = await fw.open_connection(sock=left)
        try:
            me = fw.current_task()
            me.cancel()
            with pytest.raises(fw.CancelledError):
                async with fw.timeout(5):  # were it left suspended: TimeoutError
                    await reader.read(1)
            me.uncancel()
        finally:
            writer.close()
            await writer.wait_closed()
            right.close()

    fw.run(main())


def test_a_second_cancel_before_delivery_keeps_the_first_message(fw: Any) -> None:
    # Found by the differential fuzzer: the first cancel() of a waiting task fixes the
    # CancelledError it will see, as the cancelled Future carries it on asyncio; a later
    # cancel("stop") before the task runs only counts as a request.
    async def main() -> str:
        event = fw.Event()

        async def waiter() -> None:
            fw.current_task().cancel()
            await event.wait()

        task = fw.create_task(waiter())
        await fw.sleep(0)  # it cancels itself and waits on the event
        task.cancel("stop")
        try:
            await task
        except fw.CancelledError as cancelled:
            return str(cancelled)
        raise AssertionError("the task was not cancelled")

    assert fw.run(main()) == ""
