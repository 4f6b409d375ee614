"""Tests for ``timeout``, ``timeout_at`` and ``Timeout``.

The tests that take ``fw`` run twice: on treadle (on virtual time) and on asyncio (the
oracle), with tiny real delays. The ``async def`` tests are treadle-only and run on
virtual time.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest

import treadle
from treadle.errors import CancelledError
from treadle.testing import VirtualClock
from treadle.timeouts import Timeout, timeout, timeout_at

# --- conformance with asyncio -------------------------------------------------------------


def test_expiry_cancels_the_block_and_raises_builtin_timeout_error(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        cm = fw.timeout(0.005)
        try:
            async with cm:
                try:
                    await fw.sleep(10)
                except fw.CancelledError:
                    log.append("body cancelled")
                    raise
        except TimeoutError as exc:
            assert type(exc) is TimeoutError
            assert isinstance(exc.__cause__, fw.CancelledError)
            log.append("TimeoutError")
        log.append(f"expired={cm.expired()} cancelling={fw.current_task().cancelling()}")

    fw.run_guarded(main())
    assert log == ["body cancelled", "TimeoutError", "expired=True cancelling=0"]


def test_block_that_finishes_in_time_is_not_touched(fw: Any) -> None:
    async def main() -> str:
        async with fw.timeout(10) as cm:
            await fw.sleep(0)
        assert not cm.expired()
        await fw.sleep(0)  # the disarmed timer must not cancel us later
        return f"cancelling={fw.current_task().cancelling()}"

    assert fw.run_guarded(main()) == "cancelling=0"


def test_none_means_no_deadline(fw: Any) -> None:
    async def main() -> tuple[Any, bool]:
        async with fw.timeout(None) as cm:
            await fw.sleep(0.002)
        return cm.when(), cm.expired()

    assert fw.run_guarded(main()) == (None, False)


def test_zero_delay_expires_at_the_first_suspension(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with fw.timeout(0):
                log.append("body runs")
                await fw.sleep(10)
        log.append("after")

    fw.run_guarded(main())
    assert log == ["body runs", "after"]


@pytest.mark.parametrize("expiring_too", [False, True], ids=["alone", "with-expiry-cancel-wins"])
def test_outside_cancel_propagates_as_cancelled_error(fw: Any, expiring_too: bool) -> None:
    log: list[str] = []

    async def worker(entered: Any) -> None:
        try:
            async with fw.timeout(10) as cm:
                entered.set_result(cm)
                await fw.sleep(10)
        except TimeoutError:
            log.append("TimeoutError: wrong")
        except fw.CancelledError:
            log.append(f"CancelledError expired={cm.expired()}")
            raise

    async def main() -> None:
        loop = fw.get_running_loop()
        entered = loop.create_future()
        task = fw.create_task(worker(entered))
        cm = await entered
        if expiring_too:
            cm.reschedule(loop.time())  # due now: fires on the next iteration
        await fw.cancel_and_wait(task)

    fw.run_guarded(main())
    assert log == [f"CancelledError expired={expiring_too}"]


@pytest.mark.parametrize("inner_later_by", [10, 0], ids=["outer-expires-first", "same-deadline"])
def test_nested_the_outer_reports_its_expiry(fw: Any, inner_later_by: float) -> None:
    log: list[str] = []

    async def main() -> None:
        when = fw.get_running_loop().time() + 0.005
        try:
            async with fw.timeout_at(when) as outer:
                try:
                    async with fw.timeout_at(when + inner_later_by) as inner:
                        await fw.sleep(10)
                except TimeoutError:
                    log.append("inner TimeoutError: wrong")
                except fw.CancelledError:
                    log.append("inner passes the cancellation on")
                    raise
        except TimeoutError:
            log.append("outer TimeoutError")
        log.append(f"outer={outer.expired()} inner={inner.expired()}")
        log.append(f"cancelling={fw.current_task().cancelling()}")

    fw.run_guarded(main())
    assert log == [
        "inner passes the cancellation on",
        "outer TimeoutError",
        f"outer=True inner={inner_later_by == 0}",
        "cancelling=0",
    ]


def test_nested_inner_expires_first(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        async with fw.timeout(10) as outer:
            try:
                async with fw.timeout(0.002) as inner:
                    await fw.sleep(10)
            except TimeoutError:
                log.append("inner TimeoutError")
            await fw.sleep(0)
            log.append("outer block carries on")
        log.append(f"outer={outer.expired()} inner={inner.expired()}")

    fw.run_guarded(main())
    assert log == ["inner TimeoutError", "outer block carries on", "outer=False inner=True"]


def test_reschedule_moves_the_deadline(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        loop = fw.get_running_loop()
        async with fw.timeout(0.001) as cm:
            cm.reschedule(loop.time() + 10)
            await fw.sleep(0.005)  # past the first deadline
            log.append("later deadline kept")
            cm.reschedule(None)
            assert cm.when() is None
            await fw.sleep(0.002)
            log.append("no deadline")
        try:
            async with fw.timeout(10) as cm:
                when = loop.time() + 0.001
                cm.reschedule(when)
                assert cm.when() == when
                await fw.sleep(10)
        except TimeoutError:
            log.append("earlier deadline fired")

    fw.run_guarded(main())
    assert log == ["later deadline kept", "no deadline", "earlier deadline fired"]


def test_reschedule_after_exit_is_an_error(fw: Any) -> None:
    async def main() -> None:
        async with fw.timeout(10) as cm:
            pass
        with pytest.raises(RuntimeError):
            cm.reschedule(None)

    fw.run_guarded(main())


def test_block_that_swallows_the_cancellation_ends_normally(fw: Any) -> None:
    log: list[str] = []

    async def main() -> None:
        async with fw.timeout(0.002) as cm:
            try:
                await fw.sleep(10)
            except fw.CancelledError:
                log.append("swallowed")
        log.append(f"expired={cm.expired()} cancelling={fw.current_task().cancelling()}")

    fw.run_guarded(main())
    assert log == ["swallowed", "expired=True cancelling=0"]


def test_other_exception_after_expiry_propagates_unchanged(fw: Any) -> None:
    async def main() -> int:
        with pytest.raises(KeyError):
            async with fw.timeout(0.002):
                try:
                    await fw.sleep(10)
                except fw.CancelledError:
                    raise KeyError("cleanup failed") from None
        return int(fw.current_task().cancelling())

    assert fw.run_guarded(main()) == 0


def test_exception_in_time_propagates(fw: Any) -> None:
    async def main() -> None:
        with pytest.raises(ZeroDivisionError):
            async with fw.timeout(10):
                await fw.sleep(0)
                1 / 0  # noqa: B018

    fw.run_guarded(main())


# --- treadle only: virtual time, bad input, and 3.12 behaviour ----------------------------


async def test_fires_exactly_at_the_deadline(virtual_clock: VirtualClock) -> None:
    loop = treadle.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        async with timeout(5) as cm:
            assert cm.when() == start + 5
            await treadle.sleep(100)
    assert loop.time() == start + 5


async def test_timeout_at_uses_loop_time(virtual_clock: VirtualClock) -> None:
    loop = treadle.get_running_loop()
    with pytest.raises(TimeoutError):
        async with timeout_at(loop.time() + 3):
            await treadle.sleep(100)
    assert loop.time() == 3
    # A deadline in the past expires at the first suspension.
    with pytest.raises(TimeoutError):
        async with timeout_at(loop.time() - 1):
            await treadle.sleep(100)
    assert loop.time() == 3


@pytest.mark.parametrize("bad", [math.nan])
async def test_bad_delay_is_a_value_error(bad: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        timeout(bad)


async def test_non_number_delay_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="'5'"):
        timeout("5")  # type: ignore[arg-type]


async def test_nan_deadline_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        timeout_at(math.nan)
    async with timeout(None) as cm:
        with pytest.raises(ValueError, match="NaN"):
            cm.reschedule(math.nan)


async def test_reschedule_before_entering_and_entering_twice_are_errors() -> None:
    cm = timeout(1)
    with pytest.raises(RuntimeError, match="not been entered"):
        cm.reschedule(None)
    async with cm:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        async with cm:
            pass


async def test_must_be_used_inside_a_task() -> None:
    loop = treadle.get_running_loop()
    outcome: treadle.Future[str] = loop.create_future()

    def from_a_callback() -> None:
        entering = Timeout(None).__aenter__()
        try:
            entering.send(None)
        except RuntimeError as exc:
            outcome.set_result(str(exc))
        finally:
            entering.close()

    loop.call_soon(from_a_callback)
    assert "inside a task" in await outcome


async def test_earlier_uncancelled_request_does_not_stop_conversion(
    virtual_clock: VirtualClock,
) -> None:
    # asyncio 3.12 behaviour: the timeout compares with cancelling() at entry, so a
    # task still carrying an old, swallowed cancellation gets its TimeoutError.
    task = treadle.current_task()
    assert task is not None
    task.cancel()
    with contextlib.suppress(CancelledError):  # swallowed without uncancel()
        await treadle.sleep(0)
    assert task.cancelling() == 1
    with pytest.raises(TimeoutError):
        async with timeout(1):
            await treadle.sleep(10)
    assert task.cancelling() == 1
    task.uncancel()


async def test_repr_shows_state_and_deadline(virtual_clock: VirtualClock) -> None:
    cm = timeout(2)
    assert repr(cm) == "<Timeout [created] when=2.0>"
    async with cm:
        assert repr(cm) == "<Timeout [active] when=2.0>"
    assert repr(cm) == "<Timeout [finished] when=2.0>"
    with pytest.raises(TimeoutError):
        async with timeout(1) as cm:
            await treadle.sleep(5)
    assert repr(cm) == "<Timeout [expired] when=1.0>"
