"""``to_thread``: run a blocking function in a worker thread and await its result.

The function runs in the loop's default thread pool, in a copy of the caller's
``contextvars`` context, so context variables set by the caller are visible to it.
Imports only the loop (``run_in_executor``).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from treadle.loop import get_running_loop

__all__ = ["to_thread"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


async def to_thread(func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``func(*args, **kwargs)`` in a worker thread; return (or raise) what it does.

    Cancelling the awaiting task stops the wait; a call not started yet never starts,
    but one already running in its thread runs to its end.
    """
    loop = get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(None, call)
