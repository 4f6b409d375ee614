"""The words of what treadle reports: a callback's short name, what a coroutine did wrong,
and the reprs of futures and tasks.

The core raises and logs; the sentences that say what went wrong and what to do are
here, so that the core's files read as the mechanism. A leaf: imports nothing from
treadle.
"""

from __future__ import annotations

import inspect
import reprlib
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "await_chain_frames", "describe_callback", "describe_future", "describe_task",
    "not_a_coroutine", "why_a_task_cannot_wait_on",
]  # fmt: skip


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


def describe_future(future: Any) -> str:
    """A future's repr: its class and state, with the result or exception once finished."""
    return f"<{type(future).__name__} {_state_of(future)}>"


def _state_of(future: Any) -> str:
    state: str = future._state.value
    if state == "finished":
        if future._exception is not None:
            return f"finished exception={future._exception!r}"
        return f"finished result={future._result!r}"
    return state


def describe_task(task: Any) -> str:
    """A task's repr: its state, name, and coroutine with where it is paused."""
    if not hasattr(task, "_coro"):
        return f"<{type(task).__name__} (its __init__ failed)>"
    coro = task._coro
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    where = ""
    if frame is not None:
        where = f" running at {frame.f_code.co_filename}:{frame.f_lineno}"
    what = code.co_qualname if code is not None else repr(coro)
    return (
        f"<{type(task).__name__} {_state_of(task)} name={task.get_name()!r} "
        f"coro=<{what}(){where}>>"
    )


def await_chain_frames(coro: Any) -> list[types.FrameType]:
    """The frames of a suspended await chain from ``coro`` inwards (empty once it is done)."""
    frames = []
    awaitable: Any = coro
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaitable = getattr(awaitable, "cr_await", None) or getattr(
            awaitable, "gi_yieldfrom", None
        )
    return frames
