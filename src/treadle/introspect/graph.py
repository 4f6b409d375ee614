"""Call graphs of suspended tasks: the frames each one is stopped in, and who awaits it.

``capture_call_graph`` and ``print_call_graph`` have the shape of Python 3.14's
``asyncio.capture_call_graph``: a ``FutureCallGraph`` holds a future (usually a task),
its call stack (``FrameCallGraphEntry``, innermost first), and the graphs of the tasks
awaiting it, up to the roots. treadle's adds what the task waits on, in words, and the
task that created it. Works for treadle's tasks and for asyncio's on ``treadle.aio``
(their coroutines are walked alike); everything is read when asked, so the loop pays
nothing for it. Introspection layer: imports the core and the description of waits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import types
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from treadle.core.running import _get_running_loop
from treadle.introspect.waits import describe_wait, is_framework_file

__all__ = [
    "FrameCallGraphEntry",
    "FutureCallGraph",
    "capture_call_graph",
    "coroutine_frames",
    "format_call_graph",
    "print_call_graph",
]


@dataclasses.dataclass(frozen=True, slots=True)
class FrameCallGraphEntry:
    """One frame of a call stack: a suspended (or running) coroutine or function."""

    frame: types.FrameType


@dataclasses.dataclass(frozen=True, slots=True)
class FutureCallGraph:
    """A future (a task, mostly), the frames it is suspended in, and who awaits it.

    ``call_stack`` is innermost first, as in asyncio; ``awaited_by`` holds the graphs of
    the tasks awaiting this one (through ``await``, ``gather`` or its TaskGroup).
    ``awaiting`` says in words what the task waits on (None while it runs or is ready
    to); ``parent`` is the task that created it, if known and still alive.
    """

    future: Any
    call_stack: tuple[FrameCallGraphEntry, ...]
    awaited_by: tuple[FutureCallGraph, ...]
    awaiting: str | None = None
    parent: Any = None


def coroutine_frames(coro: Any) -> list[types.FrameType]:
    """The frames of a suspended coroutine's await chain, outermost first.

    Follows ``await`` (``cr_await``), ``yield from`` (``gi_yieldfrom``) and async
    generators (``ag_await``) down to the frame that yielded to the task.
    """
    frames: list[types.FrameType] = []
    seen: set[int] = set()
    while coro is not None and id(coro) not in seen:
        seen.add(id(coro))
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is None:
            break
        frames.append(frame)
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
        if frame.f_code in _CONTEXT_MANAGER_STEPS and coro is not None and not _has_frame(coro):
            # ``async with`` an @asynccontextmanager: the generator's step (anext/asend)
            # has no frame; go on into the generator itself.
            coro = getattr(frame.f_locals.get("self"), "gen", None)
    return frames


def _has_frame(coro: Any) -> bool:
    names = ("cr_frame", "gi_frame", "ag_frame")
    return any(getattr(coro, name, None) is not None for name in names)


# contextlib's @asynccontextmanager entry and exit, whose awaits step an async generator.
_CONTEXT_MANAGER_STEPS = frozenset(
    {
        contextlib._AsyncGeneratorContextManager.__aenter__.__code__,
        contextlib._AsyncGeneratorContextManager.__aexit__.__code__,
    }
)


def is_task(obj: object) -> bool:
    """Whether ``obj`` is a task (treadle's or asyncio's): a future with a coroutine."""
    return callable(getattr(obj, "get_coro", None)) and hasattr(obj, "_fut_waiter")


def done_callbacks(future: Any) -> Iterator[Any]:
    """The done callbacks registered on ``future`` (treadle's or asyncio's)."""
    first = getattr(future, "_callback0", None)
    if first is not None:
        yield first
    for entry in getattr(future, "_callbacks", None) or ():
        yield entry[0] if isinstance(entry, tuple) else entry


def group_of(task: Any) -> Any:
    """The TaskGroup ``task`` was started in, found by its done callback; or None."""
    for callback in done_callbacks(task):
        owner = getattr(callback, "__self__", None)
        if type(owner).__name__ == "TaskGroup":
            return owner
    return None


def group_owner(group: Any) -> Any:
    """The task whose ``async with`` block a TaskGroup is (treadle's or asyncio's)."""
    return getattr(group, "_parent", None) or getattr(group, "_parent_task", None)


def parent_of(task: Any) -> Any:
    """The task that created ``task`` (treadle's tasks record it weakly); or None."""
    get_parent = getattr(task, "get_parent", None)
    return get_parent() if get_parent is not None else None


class AwaitIndex:
    """Who awaits whom among ``tasks``: built once, in one pass, for a whole snapshot."""

    def __init__(self, tasks: Iterable[Any]) -> None:
        self._awaiters: dict[int, list[Any]] = {}
        for task in tasks:
            waiter = getattr(task, "_fut_waiter", None)
            if waiter is not None and hasattr(waiter, "done"):
                self._add(waiter, task)
                # gather's future stands for its children.
                for child in getattr(waiter, "_children", None) or ():
                    self._add(child, task)
            group = group_of(task)
            if group is not None:
                owner = group_owner(group)
                if owner is not None:
                    self._add(task, owner)

    def _add(self, awaited: Any, awaiter: Any) -> None:
        awaiters = self._awaiters.setdefault(id(awaited), [])
        if all(existing is not awaiter for existing in awaiters):
            awaiters.append(awaiter)

    def awaiters(self, future: Any) -> list[Any]:
        """The tasks awaiting ``future``, in the order found."""
        return self._awaiters.get(id(future), [])


def _loop_tasks(loop: Any) -> list[Any]:
    """Every task of ``loop`` not done yet (treadle's, or asyncio's on treadle.aio)."""
    tasks = getattr(loop, "_tasks", ())
    return [task for task in list(tasks) if not task.done()]


def _build(
    future: Any,
    index: AwaitIndex,
    now: float | None,
    limit: int | None,
    seen: frozenset[int],
) -> FutureCallGraph:
    coro = future.get_coro() if is_task(future) else None
    frames = coroutine_frames(coro) if coro is not None else []
    awaiting = describe_wait(future, frames, now) if not future.done() else None
    stack = [FrameCallGraphEntry(frame) for frame in reversed(frames)]
    seen = seen | {id(future)}
    awaited_by = tuple(
        _build(awaiter, index, now, limit, seen)
        for awaiter in index.awaiters(future)
        if id(awaiter) not in seen  # a deadlock: two tasks awaiting each other
    )
    return FutureCallGraph(
        future, tuple(_limited(stack, limit)), awaited_by, awaiting, parent_of(future)
    )


def _limited(stack: list[FrameCallGraphEntry], limit: int | None) -> list[FrameCallGraphEntry]:
    return stack if limit is None else stack[:limit] if limit >= 0 else stack[limit:]


def capture_call_graph(
    future: Any = None, /, *, depth: int = 1, limit: int | None = None
) -> FutureCallGraph | None:
    """The call graph of ``future`` (a task or future), or of the current task if None.

    For the current task the call stack is the live one, from the caller (``depth``
    frames up) to the task's coroutine. ``limit`` keeps the innermost ``limit`` frames
    (the outermost ``-limit`` if negative). None if no task is running and no future
    was given. Outside a running loop, the future's own loop is searched for awaiters.
    """
    loop: Any = _get_running_loop()
    if future is None:
        if loop is None:
            raise RuntimeError(
                "capture_call_graph() was called outside a running event loop "
                "without a task to look at; pass the task"
            )
        future = loop._current_task
        if future is None:
            return None
    if not hasattr(future, "done") or not hasattr(future, "add_done_callback"):
        raise TypeError(f"capture_call_graph() needs a task or a future, got {future!r}")
    if loop is None:
        loop = future.get_loop()
    index = AwaitIndex(_loop_tasks(loop))
    now = loop.time()
    if future is not loop._current_task:
        return _build(future, index, now, limit, frozenset())
    # The running task: its frames are the live stack, from here out to its coroutine.
    coro = future.get_coro()
    coro_frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
    stack: list[FrameCallGraphEntry] = []
    frame: types.FrameType | None = sys._getframe(depth)
    while frame is not None:
        stack.append(FrameCallGraphEntry(frame))
        if frame is coro_frame:
            break
        frame = frame.f_back
    del frame
    awaited_by = tuple(
        _build(awaiter, index, now, limit, frozenset({id(future)}))
        for awaiter in index.awaiters(future)
    )
    return FutureCallGraph(
        future, tuple(_limited(stack, limit)), awaited_by, None, parent_of(future)
    )


def describe_frame(frame: types.FrameType) -> str:
    """``File 'x.py', line 3, in async main()``: one frame, as the call graph prints it."""
    code = frame.f_code
    flags = code.co_flags  # CO_COROUTINE, CO_ASYNC_GENERATOR, CO_GENERATOR
    kind = (
        "async " if flags & 0x80
        else "async generator " if flags & 0x200
        else "generator " if flags & 0x20
        else ""
    )  # fmt: skip
    return f"File {code.co_filename!r}, line {frame.f_lineno}, in {kind}{code.co_qualname}()"


def task_label(future: Any) -> str:
    """``Task(name='main', id=0x7f...)`` or ``Future(id=0x7f...)``."""
    if is_task(future):
        return f"Task(name={future.get_name()!r}, id={id(future):#x})"
    return f"Future(id={id(future):#x})"


def format_call_graph(graph: FutureCallGraph) -> str:
    """The text ``print_call_graph`` prints for ``graph``."""
    lines: list[str] = []

    def render(node: FutureCallGraph, level: int) -> None:
        indent = "    " * level
        lines.append(f"{indent}* {task_label(node.future)}")
        if node.awaiting is not None:
            lines.append(f"{indent}  + Waiting on: {node.awaiting}")
        if node.parent is not None:
            lines.append(f"{indent}  + Started by: {task_label(node.parent)}")
        if node.call_stack:
            lines.append(f"{indent}  + Call stack:")
            for entry in node.call_stack:
                lines.append(f"{indent}  |   {describe_frame(entry.frame)}")
        if node.awaited_by:
            lines.append(f"{indent}  + Awaited by:")
            for awaiter in node.awaited_by:
                render(awaiter, level + 1)

    render(graph, 0)
    return "\n".join(lines)


def print_call_graph(
    future: Any = None, /, *, file: TextIO | None = None, depth: int = 1, limit: int | None = None
) -> None:
    """Print the call graph of ``future`` (the current task if None) to ``file`` (stdout)."""
    graph = capture_call_graph(future, depth=depth + 1, limit=limit)
    if graph is None:
        return
    try:
        print(format_call_graph(graph), file=file if file is not None else sys.stdout)
    finally:
        del graph  # it holds frames: let them go at once


def user_location(frames: list[types.FrameType]) -> str:
    """``file.py:12 in worker``: the innermost frame of the program's own code (outside
    treadle and asyncio), else the innermost frame; "" for none."""
    if not frames:
        return ""
    chosen = next(
        (frame for frame in reversed(frames) if not is_framework_file(frame.f_code.co_filename)),
        frames[-1],
    )
    return f"{chosen.f_code.co_filename}:{chosen.f_lineno} in {chosen.f_code.co_qualname}"
