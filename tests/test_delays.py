"""Delays and deadlines already past: negative ``sleep``/``wait_for``/``timeout``/``wait``.

asyncio (the oracle, newest behaviour: 3.12+ for ``wait_for``) takes a delay of zero or
less as already expired; ``wait_for``'s tests here take zero too. Tests that take ``fw``
run the same body on treadle and on asyncio. NaN stays an error on treadle (asyncio
3.13's ``sleep`` refuses it too).
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import pytest

import treadle
from treadle.combinators import as_completed, wait, wait_for
from treadle.timeouts import timeout, timeout_at

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize("delay", [-1, -0.5, -math.inf])
def test_negative_sleep_acts_like_sleep_zero(fw: Any, delay: float) -> None:
    async def main() -> list[str]:
        log: list[str] = []

        async def other() -> None:
            log.append("other ran")

        task = fw.create_task(other())
        log.append(f"slept: {await fw.sleep(delay, 'result')}")
        await task
        return log

    assert fw.run(main()) == ["other ran", "slept: result"]


@pytest.mark.parametrize("delay", [0, -1, -0.001])
def test_wait_for_with_no_time_left_cancels_what_is_not_done(fw: Any, delay: float) -> None:
    async def main() -> list[str]:
        log: list[str] = []

        async def work() -> str:
            log.append("work started")
            await fw.sleep(100)
            return "never"

        task = fw.create_task(work())
        await fw.sleep(0)  # work() starts and waits
        with pytest.raises(TimeoutError):
            await fw.wait_for(task, delay)
        log.append(f"task cancelled: {task.cancelled()}")
        with pytest.raises(TimeoutError):
            await fw.wait_for(work(), delay)  # a coroutine: cancelled before it starts...
        await fw.settle()  # ...so it never does
        return log

    assert fw.run_guarded(main()) == ["work started", "task cancelled: True"]


@pytest.mark.parametrize("delay", [0, -1])
def test_wait_for_with_no_time_left_gives_what_is_done(fw: Any, delay: float) -> None:
    async def main() -> list[Any]:
        done = fw.get_running_loop().create_future()
        done.set_result("ready")

        async def refuses_to_stop() -> str:
            try:
                await fw.sleep(100)
            except fw.CancelledError:
                return "kept going"
            return "slept"

        stubborn = fw.create_task(refuses_to_stop())
        await fw.sleep(0)
        return [await fw.wait_for(done, delay), await fw.wait_for(stubborn, delay)]

    assert fw.run_guarded(main()) == ["ready", "kept going"]


def test_negative_timeout_expires_at_the_first_suspension(fw: Any) -> None:
    async def main() -> list[str]:
        log: list[str] = []
        cm = fw.timeout(-1)
        with pytest.raises(TimeoutError):
            async with cm:
                log.append("block started")
                await fw.sleep(100)
                log.append("never")
        log.append(f"expired: {cm.expired()}")
        async with fw.timeout(-1) as quick:
            log.append("no suspension")
        log.append(f"expired: {quick.expired()}")
        return log

    assert fw.run(main()) == ["block started", "expired: True", "no suspension", "expired: False"]


def test_timeout_at_a_past_deadline_expires_at_the_first_suspension(fw: Any) -> None:
    async def main() -> bool:
        loop = fw.get_running_loop()
        with pytest.raises(TimeoutError):
            async with fw.timeout_at(loop.time() - 10) as cm:
                await fw.sleep(100)
        return bool(cm.expired())

    assert fw.run(main()) is True


def test_wait_and_as_completed_with_a_negative_timeout_return_at_once(fw: Any) -> None:
    async def main() -> None:
        task = fw.create_task(fw.sleep(100))
        done, pending = await fw.wait([task], timeout=-1)
        assert (done, pending) == (set(), {task})
        for next_done in fw.as_completed([task], timeout=-1):
            with pytest.raises(TimeoutError):
                await next_done
        task.cancel()
        with contextlib.suppress(fw.CancelledError):
            await task

    fw.run(main())


def test_call_later_with_a_negative_delay_runs_on_the_next_iteration(fw: Any) -> None:
    async def main() -> list[str]:
        loop = fw.get_running_loop()
        log: list[str] = []
        handle = loop.call_later(-1, log.append, "fired")
        assert handle.when() < loop.time()
        log.append("scheduled")
        await fw.sleep(0)
        await fw.sleep(0)
        return log

    assert fw.run(main()) == ["scheduled", "fired"]


# --- treadle only: NaN is refused clearly ---------------------------------------------------


async def test_nan_delays_are_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="sleep\\(\\) delay is NaN"):
        await treadle.sleep(math.nan)
    with pytest.raises(ValueError, match="wait_for\\(\\) timeout is NaN"):
        await wait_for(treadle.sleep(0), math.nan)
    with pytest.raises(ValueError, match="timeout\\(\\) delay is NaN"):
        timeout(math.nan)
    with pytest.raises(ValueError, match="NaN"):
        timeout_at(math.nan)
    task = treadle.create_task(treadle.sleep(0))
    with pytest.raises(ValueError, match="wait\\(\\) timeout is NaN"):
        await wait([task], timeout=math.nan)
    with pytest.raises(ValueError, match="as_completed\\(\\) timeout is NaN"):
        as_completed([task], timeout=math.nan)
    await task
    loop = treadle.get_running_loop()
    with pytest.raises(ValueError, match="NaN"):
        loop.call_later(math.nan, print)
