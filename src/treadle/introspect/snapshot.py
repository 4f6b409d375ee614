"""A snapshot of a loop's tasks as plain data, and the ``ps`` table and ``pstree`` tree of it.

``take_snapshot`` runs on the loop's thread, between callbacks, so what it reads is
consistent. ``take_blocked_snapshot`` runs on another thread while the loop is stuck
in a callback: it names that callback and shows the stack it is stuck in, and reads
the tasks as best it can (they do not move while the loop is stuck). The snapshot is
JSON-ready, so ``treadle ps`` in another process prints the same thing a dump prints
in this one. Introspection layer: imports the core's handles and the call-graph helpers.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable
from typing import Any

from treadle.core.handles import describe_callback
from treadle.core.tasks import Task
from treadle.introspect.graph import (
    AwaitIndex,
    coroutine_frames,
    group_of,
    group_owner,
    is_task,
    parent_of,
    user_location,
)
from treadle.introspect.waits import describe_wait

__all__ = [
    "Snapshot",
    "format_table",
    "format_tree",
    "note_birth",
    "take_blocked_snapshot",
    "take_snapshot",
]

Snapshot = dict[str, Any]

# When each task of another kind (asyncio's) was first seen, while introspection is on;
# treadle's tasks keep their birth in a slot of their own.
_births: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

# The functions of the loop that call callbacks; the blocked loop's stack is cut there.
_RUNNERS = frozenset({"_run_once", "_run_ready_debug", "_run_ready_observed"})


def note_birth(task: Any, *, only_if_unknown: bool = False) -> None:
    """Note that ``task`` was made now (the loop's task observer while introspecting)."""
    if only_if_unknown and birth_of(task) is not None:
        return
    now = time.monotonic()
    if isinstance(task, Task):
        task._born = now
        return
    with contextlib.suppress(TypeError):  # a kind of task that has no weak references
        _births[task] = now


def birth_of(task: Any) -> float | None:
    """When ``task`` was made, if it was noted."""
    if isinstance(task, Task):
        return getattr(task, "_born", None)
    return _births.get(task)


def _stack(frames: list[types.FrameType]) -> list[dict[str, Any]]:
    return [
        {"file": f.f_code.co_filename, "line": f.f_lineno, "function": f.f_code.co_qualname}
        for f in frames
    ]


def _describe_task(
    task: Any, index: AwaitIndex, running: Any, now: float | None, reprs: dict[int, str]
) -> Snapshot:
    frames = coroutine_frames(task.get_coro())
    if task is running:
        state, waiting = "running", None
    else:
        waiting = describe_wait(task, frames, now, reprs)
        state = "ready" if waiting is None else "waiting"
        if task.cancelling():
            state = "cancelling"
    born = birth_of(task)
    group = group_of(task)
    parent = parent_of(task)
    return {
        "id": id(task),
        "name": task.get_name(),
        "state": state,
        "waiting_on": waiting,
        "age": None if born is None else round(time.monotonic() - born, 3),
        "location": user_location(frames),
        "stack": _stack(frames),
        "awaited_by": [id(awaiter) for awaiter in index.awaiters(task)],
        "parent": None if parent is None else id(parent),
        "parent_name": None if parent is None else parent.get_name(),
        "group_owner": None if group is None else id(group_owner(group)),
    }


def _loop_header(loop: Any) -> Snapshot:
    thread_id = loop._thread_id
    thread = next((t for t in threading.enumerate() if t.ident == thread_id), None)
    return {
        "loop": f"{type(loop).__module__}.{type(loop).__qualname__}",
        "thread": thread.name if thread is not None else str(thread_id),
        "thread_id": thread_id,
        "blocked": None,
    }


def _tasks(loop: Any, running: Any) -> list[Snapshot]:
    tasks = [task for task in list(loop._tasks) if is_task(task) and not task.done()]
    index = AwaitIndex(tasks)
    now = loop.time()
    reprs: dict[int, str] = {}
    described = [_describe_task(task, index, running, now, reprs) for task in tasks]
    described.sort(key=lambda task: (task["age"] is None, -(task["age"] or 0.0)))
    return described


def take_snapshot(loop: Any) -> Snapshot:
    """Every live task of ``loop``: call this on the loop's thread (from a callback, or
    from a task, which is then shown running)."""
    snapshot = _loop_header(loop)
    snapshot["tasks"] = _tasks(loop, loop._current_task)
    return snapshot


def take_blocked_snapshot(loop: Any, stuck_for: float) -> Snapshot:
    """What ``loop`` (stuck in a callback for ``stuck_for`` seconds) is doing, read from
    another thread: the callback, the stack it is in, and the tasks as they stand."""
    snapshot = _loop_header(loop)
    frame: types.FrameType | None = sys._current_frames().get(loop._thread_id)
    stack: list[types.FrameType] = []
    callback = "(not in a callback)"
    while frame is not None:
        if frame.f_code.co_name in _RUNNERS:
            handle = frame.f_locals.get("handle")
            if handle is not None:
                callback = describe_callback(handle._callback, handle._args)
            break
        stack.append(frame)
        frame = frame.f_back
    del frame
    stack.reverse()
    snapshot["blocked"] = {
        "for_at_least": round(stuck_for, 3),
        "callback": callback,
        "stack": _stack(stack),
    }
    try:
        snapshot["tasks"] = _tasks(loop, loop._current_task)
    except RuntimeError as exc:  # the loop moved under us after all
        snapshot["tasks"] = []
        snapshot["blocked"]["tasks_unreadable"] = str(exc)
    return snapshot


# --- text -----------------------------------------------------------------------------


def _age(task: Snapshot) -> str:
    age = task["age"]
    if age is None:
        return "-"
    if age < 60:
        return f"{age:.1f}s"
    if age < 3600:
        return f"{age / 60:.1f}m"
    return f"{age / 3600:.1f}h"


def _blocked_lines(loop: Snapshot) -> list[str]:
    blocked = loop["blocked"]
    if blocked is None:
        return []
    lines = [
        f"LOOP BLOCKED for at least {blocked['for_at_least']:.1f} s in callback "
        f"{blocked['callback']}",
        "  stuck in (innermost last):",
    ]
    lines += [
        f"    {entry['function']} ({entry['file']}:{entry['line']})" for entry in blocked["stack"]
    ]
    return lines


def _title(header: Snapshot, loop: Snapshot) -> str:
    return (
        f"process {header['pid']}, loop {loop['loop']} on thread {loop['thread']!r}: "
        f"{len(loop['tasks'])} task(s)"
    )


def _format_loops(snapshot: Snapshot, format_tasks: Callable[[Snapshot], list[str]]) -> str:
    """Each loop's title, whether it is blocked, and ``format_tasks(loop)``'s lines.

    A blank line separates the loops; a process with no loop running says so.
    """
    out: list[str] = []
    if not snapshot["loops"]:
        out.append(f"process {snapshot['pid']}: no treadle loop is running")
    for loop in snapshot["loops"]:
        out.append(_title(snapshot, loop))
        out += _blocked_lines(loop)
        out += format_tasks(loop)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def format_table(snapshot: Snapshot) -> str:
    """``treadle ps``: one line per task (id, name, state, age, waiting on, location)."""
    return _format_loops(snapshot, _task_table)


def _task_table(loop: Snapshot) -> list[str]:
    rows = [("ID", "NAME", "STATE", "AGE", "WAITING ON", "LOCATION")]
    for task in loop["tasks"]:
        rows.append((
            f"{task['id']:#x}", task["name"], task["state"], _age(task),
            task["waiting_on"] or "-", task["location"] or "-",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [row[i].ljust(widths[i]) for i in range(5)] + [row[5]]
        lines.append("  ".join(cells).rstrip())
    return lines


def _children(tasks: list[Snapshot]) -> tuple[dict[int, list[Snapshot]], list[Snapshot]]:
    """Each task's children in the tree (the tasks it awaits, else the ones it started
    that nobody awaits), and the roots."""
    by_id = {task["id"]: task for task in tasks}
    children: dict[int, list[Snapshot]] = {task["id"]: [] for task in tasks}
    roots: list[Snapshot] = []
    for task in tasks:
        awaiters = [awaiter for awaiter in task["awaited_by"] if awaiter in by_id]
        if awaiters:
            for awaiter in awaiters:
                children[awaiter].append(task)
        elif task["parent"] in by_id:
            task = dict(task, started_only=True)
            children[task["parent"]].append(task)
        else:
            roots.append(task)
    return children, roots


def _render(
    task: Snapshot,
    children: dict[int, list[Snapshot]],
    out: list[str],
    printed: set[int],
    lead: str = "",
    branch: str = "",
    below: str = "",
    path: frozenset[int] = frozenset(),
) -> None:
    """``task``'s lines in the tree, then its children's, each under ``lead``."""
    printed.add(task["id"])
    path = path | {task["id"]}
    how = " (started by it, not awaited)" if task.get("started_only") else ""
    waiting = f": {task['waiting_on']}" if task["waiting_on"] else ""
    out.append(f"{lead}{branch}{task['name']} [{task['state']}, {_age(task)}]{how}{waiting}")
    kids = [kid for kid in children[task["id"]] if kid["id"] not in path]
    stack_lead = lead + below + ("│   " if kids else "    ")
    for entry in task["stack"]:
        where = f"{os.path.basename(entry['file'])}:{entry['line']}"
        out.append(f"{stack_lead}{entry['function']} ({where})")
    for i, kid in enumerate(kids):
        last = i == len(kids) - 1
        _render(
            kid, children, out, printed, lead + below,
            "└── " if last else "├── ", "    " if last else "│   ", path,
        )  # fmt: skip


def format_tree(snapshot: Snapshot) -> str:
    """``treadle pstree``: the tasks as a tree of who awaits whom, with await chains.

    A task appears under each task awaiting it (through ``await``, ``gather`` or its
    TaskGroup); one nobody awaits appears under the task that started it, marked so.
    Each task's await chain is listed outermost first, down to where it is suspended.
    """
    return _format_loops(snapshot, _task_tree)


def _task_tree(loop: Snapshot) -> list[str]:
    out: list[str] = []
    children, roots = _children(loop["tasks"])
    printed: set[int] = set()
    for root in roots:
        _render(root, children, out, printed)
    for task in loop["tasks"]:
        if task["id"] not in printed:  # in a cycle of tasks awaiting each other
            out.append("(a cycle: these tasks await each other, a deadlock)")
            _render(task, children, out, printed)
    return out
