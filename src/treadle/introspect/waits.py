"""What a suspended task waits on, in words: a lock, a queue, a socket and its peer, a sleep.

Nothing is recorded when a task suspends (the hot path stays as it is). Instead, when
asked, the frames the task is suspended in are read from the inside out: the first one
that is a known suspension point (``sleep``, a primitive's ``acquire``/``wait``/``get``,
a socket or stream read, a drain, a TaskGroup's exit) says what it waits for, from its
own locals; failing that, the future the task waits on is described. treadle's and
asyncio's suspension points are both known, so tasks on ``treadle.aio`` read alike.
Introspection layer: imports only the standard library (it reads objects by their attributes).
"""

from __future__ import annotations

import os
import sysconfig
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["describe_wait", "is_framework_file"]

_MAX_REPR = 160

_TREADLE_DIR = str(Path(__file__).resolve().parents[1]) + os.sep
_ASYNCIO_DIR = str(Path(sysconfig.get_paths()["stdlib"]) / "asyncio") + os.sep

# The coordination primitives a task can be queued on, by class name (treadle's and
# asyncio's share them).
_PRIMITIVES = frozenset({
    "Lock", "Event", "Condition", "Semaphore", "BoundedSemaphore", "Barrier",
    "Queue", "PriorityQueue", "LifoQueue",
})  # fmt: skip


def is_framework_file(filename: str) -> bool:
    """Whether ``filename`` is treadle's or asyncio's own code, not the program's."""
    return filename.startswith((_TREADLE_DIR, _ASYNCIO_DIR))


def _short(text: str) -> str:
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


def _local(frame: types.FrameType, name: str) -> Any:
    try:
        return frame.f_locals.get(name)
    except Exception:  # a frame being torn down: nothing to read
        return None


def _peer(sock: Any) -> str:
    """``peer 127.0.0.1:5000`` for a connected socket, or its descriptor otherwise."""
    if isinstance(sock, int):
        return f"fd {sock}"
    try:
        peer = sock.getpeername()
    except (OSError, AttributeError):
        return f"fd {_fileno(sock)}"
    return f"peer {_address(peer)}"


def _fileno(sock: Any) -> str:
    try:
        return str(sock.fileno())
    except (OSError, AttributeError, ValueError):
        return "?"


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) if address else "(unnamed)"


def _in_seconds(when: float | None, now: float | None) -> str:
    if when is None:
        return ""
    if now is None:
        return f" until loop time {when:.3f}"
    return f" until loop time {when:.3f} ({when - now:.3f} s from now)"


# --- the known suspension points ------------------------------------------------------
# Each takes the frame (and the loop's time) and returns a description, or None to let
# an outer frame or the awaited future say it.

Describer = Callable[[types.FrameType, "float | None"], "str | None"]


def _sleep(frame: types.FrameType, now: float | None) -> str:
    delay = _local(frame, "delay")
    timer = _local(frame, "timer") or _local(frame, "h")  # treadle's, asyncio's
    when = timer.when() if timer is not None and hasattr(timer, "when") else None
    return f"sleep({delay!r}){_in_seconds(when, now)}"


def _wait_fd(action: str) -> Describer:
    def describe(frame: types.FrameType, now: float | None) -> str:
        target = _local(frame, "sock") or _local(frame, "fd")
        return f"{action}: socket {_peer(target)}"

    return describe


def _sock_method(action: str) -> Describer:
    def describe(frame: types.FrameType, now: float | None) -> str:
        return f"{frame.f_code.co_name}: {action} socket {_peer(_local(frame, 'sock'))}"

    return describe


def _stream_connection(action: str) -> Describer:
    def describe(frame: types.FrameType, now: float | None) -> str:
        owner = _local(frame, "self")  # the connection, or a StreamReader waiting on one
        connection = getattr(owner, "_conn", owner)
        extra = getattr(connection, "extra", None) or {}
        text = f"{action} stream, peer {_address(extra.get('peername'))}"
        if action == "drain":
            text += f", {len(getattr(connection, 'wbuf', b''))} bytes unsent"
        return text

    return describe


def _asyncio_stream(frame: types.FrameType, now: float | None) -> str:
    reader = _local(frame, "self")
    transport = getattr(reader, "_transport", None)
    peer = transport.get_extra_info("peername") if transport is not None else None
    return f"read from stream, peer {_address(peer)}"


def _task_group(frame: types.FrameType, now: float | None) -> str:
    group = _local(frame, "self")
    tasks = sorted(
        (task for task in getattr(group, "_tasks", ()) if not task.done()),
        key=lambda task: task.get_name(),
    )
    names = ", ".join(task.get_name() for task in tasks[:5])
    more = f", and {len(tasks) - 5} more" if len(tasks) > 5 else ""
    return f"TaskGroup: {len(tasks)} task(s) to finish ({names}{more})"


DESCRIBERS: dict[str, Describer] = {
    "treadle.sleeping.sleep": _sleep,
    "asyncio.tasks.sleep": _sleep,
    "treadle.loop.EventLoop._wait_readable": _wait_fd("read"),
    "treadle.loop.EventLoop._wait_writable": _wait_fd("write"),
    "treadle.streams.StreamReader.read": _stream_connection("read from"),
    "treadle.streams.StreamReader._fill": _stream_connection("read from"),
    "treadle.streams.Connection.drain": _stream_connection("drain"),
    "asyncio.streams.StreamReader._wait_for_data": _asyncio_stream,
    "treadle.taskgroups.TaskGroup._exit": _task_group,
    "asyncio.taskgroups.TaskGroup._aexit": _task_group,
    "asyncio.taskgroups.TaskGroup.__aexit__": _task_group,
}
"""Suspension points by ``module.qualname``: how each says what its task waits on.

Add to it to teach ``treadle ps`` about a suspension point of your own."""

for _name in ("sock_recv", "sock_recv_into", "sock_recvfrom", "sock_recvfrom_into", "sock_accept"):
    DESCRIBERS[f"treadle.loop.EventLoop.{_name}"] = _sock_method("read from")
    DESCRIBERS[f"asyncio.selector_events.BaseSelectorEventLoop.{_name}"] = _sock_method("read from")
for _name in ("sock_sendall", "sock_sendto", "sock_connect"):
    DESCRIBERS[f"treadle.loop.EventLoop.{_name}"] = _sock_method("write to")
    DESCRIBERS[f"asyncio.selector_events.BaseSelectorEventLoop.{_name}"] = _sock_method("write to")


def _frame_key(frame: types.FrameType) -> str:
    module = frame.f_globals.get("__name__", "?")
    return f"{module}.{frame.f_code.co_qualname}"


# Passed as ``reprs`` for a brief description: a primitive by its class and address only
# (a trace describes every step, and a repr may count the waiters).
_BRIEF: dict[int, str] = {}


def _primitive(frame: types.FrameType, reprs: dict[int, str]) -> str | None:
    """``Lock.acquire on <Lock locked waiters:1>`` if ``frame`` is a primitive's method.

    ``reprs`` keeps each primitive's repr for the snapshot: a repr may count the
    waiters, and a thousand tasks on one Event must not count them a thousand times.
    """
    owner = _local(frame, "self")
    cls = type(owner)
    if cls.__name__ in _PRIMITIVES and cls.__module__.startswith(("treadle", "asyncio")):
        if reprs is _BRIEF:
            text = f"<{cls.__module__}.{cls.__qualname__} object at {id(owner):#x}>"
        else:
            text = reprs.get(id(owner)) or reprs.setdefault(id(owner), _short(repr(owner)))
        return f"{frame.f_code.co_qualname} on {text}"
    return None


def describe_future(future: Any) -> str:
    """A future a task waits on: another task, a gather, or a plain future."""
    if callable(getattr(future, "get_coro", None)):
        return f"task {future.get_name()!r}"
    children = getattr(future, "_children", None)
    if children is not None:
        pending = [child for child in children if not child.done()]
        names = ", ".join(
            child.get_name() if callable(getattr(child, "get_name", None)) else "a future"
            for child in pending[:5]
        )
        return f"gather of {len(children)}: {len(pending)} pending ({names})"
    return _short(repr(future))


def describe_wait(
    task: Any,
    frames: list[types.FrameType],
    now: float | None,
    reprs: dict[int, str] | None = None,
    *,
    brief: bool = False,
) -> str | None:
    """What ``task`` waits on, from the frames it is suspended in (outermost first) and
    the future it waits on; None if it is not waiting (ready to run, or running).

    Describing many tasks at once, pass one ``reprs`` dict to all the calls; ``brief``
    names a primitive by class and address instead of its repr, in constant time."""
    waiter = getattr(task, "_fut_waiter", None)
    if waiter is None:
        return None
    for frame in reversed(frames):
        describer = DESCRIBERS.get(_frame_key(frame))
        if describer is not None:
            described = describer(frame, now)
            if described is not None:
                return _short(described)
        memo = _BRIEF if brief else {} if reprs is None else reprs
        described = _primitive(frame, memo)
        if described is not None:
            return described
    if hasattr(waiter, "done"):
        return describe_future(waiter)
    innermost = frames[-1].f_code.co_qualname if frames else "?"
    return f"suspended in {innermost} (resume() wakes it)"
