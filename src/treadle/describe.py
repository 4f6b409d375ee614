"""The words of what treadle reports: a callback's short name, and what a coroutine did wrong.

The core raises and logs; the sentences that say what went wrong and what to do are
here, so that the core's files read as the mechanism. A leaf: imports nothing from
treadle.
"""

from __future__ import annotations

import inspect
import reprlib
from collections.abc import Callable
from typing import Any

__all__ = ["describe_callback", "not_a_coroutine", "why_a_task_cannot_wait_on"]


def describe_callback(callback: Callable[..., Any], args: tuple[Any, ...] | None = None) -> str:
    """A short human name for a callback and its arguments, for logs and warnings."""
    while hasattr(callback, "func"):  # functools.partial and friends
        callback = callback.func
    name = getattr(callback, "__qualname__", None) or getattr(callback, "__name__", None)
    if name is None:
        name = repr(callback)
    owner = getattr(callback, "__self__", None)
    if owner is not None and not isinstance(owner, type):
        name = f"{type(owner).__name__}.{getattr(callback, '__name__', name)}"
    if args:
        name += "(" + ", ".join(reprlib.repr(arg) for arg in args) + ")"
    else:
        name += "()"
    return name


def not_a_coroutine(obj: object) -> str:
    """Why a Task refuses to drive ``obj``, which is neither a coroutine nor a generator."""
    problem = f"a coroutine or generator was expected, got {obj!r}"
    if callable(obj):
        return problem + "; did you pass the function instead of calling it?"
    return problem


def why_a_task_cannot_wait_on(task_name: str, yielded: Any, loop: object) -> str:
    """Why the task ``task_name`` on ``loop`` cannot wait on what its coroutine yielded."""
    blocking = getattr(yielded, "_asyncio_future_blocking", None)
    if blocking is None:
        if inspect.isgenerator(yielded) or inspect.iscoroutine(yielded):
            return (
                f"{task_name} yielded {yielded!r}; "
                "use 'yield from' (or 'await') to run a sub-coroutine, not 'yield'"
            )
        return (
            f"{task_name} yielded {yielded!r}, which is not a Future; a coroutine "
            "may only wait on a Future ('await fut' or 'yield from fut'), or yield "
            "nothing at all to let other tasks run"
        )
    if yielded.get_loop() is not loop:
        return f"{task_name} awaited {yielded!r}, which belongs to a different loop"
    if not blocking:
        return (
            f"{task_name} yielded the future {yielded!r} with 'yield'; "
            "use 'yield from' (or 'await') to wait for it"
        )
    return f"{task_name} cannot await itself"
