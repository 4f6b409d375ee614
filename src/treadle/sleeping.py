"""``sleep``: suspend the current task for a while, or just let the others run.

Part of the coordination layer; built only on the public API of the loop and futures.
"""

from __future__ import annotations

import math
import types
from collections.abc import Generator
from typing import Any, TypeVar, overload

from treadle.core.futures import Future
from treadle.loop import get_running_loop

__all__ = ["check_delay", "check_seconds", "sleep"]

_T = TypeVar("_T")


def check_seconds(delay: float | None, what: str) -> None:
    """Reject a NaN or non-number ``delay`` with a message naming ``what``.

    A negative delay passes: as in asyncio, it has simply expired already. For
    ``sleep``, ``timeout``, ``wait_for`` and the like.
    """
    if delay is None:
        return
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {delay!r}")
    if math.isnan(delay):
        # asyncio 3.13's sleep() refuses NaN too; its timeout() and wait_for() take it
        # and then never fire. A NaN delay is always a bug upstream: say so here.
        raise ValueError(f"{what} is NaN; pass a number of seconds")


def check_delay(delay: float | None, what: str) -> None:
    """Reject a negative, NaN or non-number ``delay`` with a message naming ``what``.

    For settings (a client's timeouts, a crawler's backoff), where a negative number
    of seconds is a mistake rather than a deadline already past.
    """
    check_seconds(delay, what)
    if delay is not None and delay < 0:
        raise ValueError(f"{what} must be zero or more seconds, got {delay!r}")


@types.coroutine
def _yield_to_others() -> Generator[None, None, None]:
    yield  # A bare yield: the Task reschedules itself behind everything ready.


def _wake(fut: Future[Any], result: Any) -> None:
    if not fut.done():
        fut.set_result(result)


@overload
async def sleep(delay: float) -> None: ...
@overload
async def sleep(delay: float, result: _T) -> _T: ...
async def sleep(delay: float, result: Any = None) -> Any:
    """Suspend for ``delay`` seconds, then return ``result``.

    ``sleep(0)``, or any delay of zero or less, just lets the other tasks run.
    """
    if type(delay) is int and delay == 0:
        # sleep(0), the common case, skips the checks: they cost about a sixth of a
        # switch (measured against the release before they were added).
        await _yield_to_others()
        return result
    check_seconds(delay, "sleep() delay")
    if delay <= 0:
        await _yield_to_others()
        return result
    loop = get_running_loop()
    fut: Future[Any] = loop.create_future()
    timer = loop.call_later(delay, _wake, fut, result)
    try:
        return await fut
    finally:
        timer.cancel()
