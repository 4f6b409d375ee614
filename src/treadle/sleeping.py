"""``sleep``: suspend the current task for a while, or just let the others run.

Part of the coordination layer; built only on the public API of the loop and futures.
"""

from __future__ import annotations

import math
import types
from collections.abc import Generator
from typing import Any, TypeVar, overload

from treadle.futures import Future
from treadle.loop import get_running_loop

__all__ = ["check_delay", "sleep"]

_T = TypeVar("_T")


def check_delay(delay: float | None, what: str) -> None:
    """Reject a negative or NaN number of seconds with a message naming ``what``."""
    if delay is None:
        return
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {delay!r}")
    if math.isnan(delay):
        raise ValueError(f"{what} is NaN; pass a number of seconds")
    if delay < 0:
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
    """Suspend for ``delay`` seconds, then return ``result``; ``sleep(0)`` lets others run."""
    if delay == 0 and not isinstance(delay, bool):
        await _yield_to_others()
        return result
    check_delay(delay, "sleep() delay")
    loop = get_running_loop()
    fut: Future[Any] = loop.create_future()
    timer = loop.call_later(delay, _wake, fut, result)
    try:
        return await fut
    finally:
        timer.cancel()
