"""Bare-Python floor: the least work a pure-Python coroutine scheduler can do.

Not a framework. A ready deque of tasks stepped with ``coro.send(None)``, a
deque of plain callbacks, and a heapq of timers; no cancellation, no error
handling beyond letting an exception escape ``run``, no I/O. It exposes just
the asyncio-shaped surface the workloads use (``run``, ``sleep``,
``create_task``, ``get_running_loop``, ``Event``) so the very same workload
code drives it, and its figures mark the floor of pure-Python overhead.

Protocol: a task's coroutine yields either ``None`` ("requeue me", i.e. a
zero sleep) or a callable that takes the task and parks it somewhere
(a waiter list, a timer); whoever holds it later appends it to the ready
deque.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine, Generator
from heapq import heappop, heappush
from itertools import count
from time import monotonic
from time import sleep as _block
from types import coroutine
from typing import Any

_running: Loop | None = None


class Task:
    """A coroutine plus its outcome; awaiting it parks the awaiter until done."""

    __slots__ = ("coro", "done", "joiners", "result")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.done = False
        self.result: Any = None
        self.joiners: list[Task] | None = None

    def _join(self, task: Task) -> None:
        if self.joiners is None:
            self.joiners = [task]
        else:
            self.joiners.append(task)

    def __await__(self) -> Generator[Any, None, Any]:
        if not self.done:
            yield self._join
        return self.result


class Future:
    """A one-shot result that wakes every task awaiting it."""

    __slots__ = ("_ready", "done", "result", "waiters")

    def __init__(self, ready: deque[Task]) -> None:
        self._ready = ready
        self.done = False
        self.result: Any = None
        self.waiters: list[Task] = []

    def set_result(self, value: Any) -> None:
        self.done = True
        self.result = value
        self._ready.extend(self.waiters)
        self.waiters.clear()

    def __await__(self) -> Generator[Any, None, Any]:
        if not self.done:
            yield self.waiters.append
        return self.result


class Event:
    """A flag that tasks wait on; ``set`` requeues every waiter."""

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[Task] = []

    def set(self) -> None:
        self._flag = True
        assert _running is not None
        _running.ready.extend(self._waiters)
        self._waiters.clear()

    @coroutine
    def wait(self) -> Generator[Any, None, None]:
        if not self._flag:
            yield self._waiters.append


class Loop:
    """Ready deque, callback deque, timer heap; ``run`` drains them in turn."""

    def __init__(self) -> None:
        self.ready: deque[Task] = deque()
        self.calls: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self.timers: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = count()

    def time(self) -> float:
        return monotonic()

    def call_soon(self, cb: Callable[..., Any], *args: Any) -> None:
        self.calls.append((cb, args))

    def call_later(self, delay: float, cb: Callable[..., Any], *args: Any) -> None:
        heappush(self.timers, (monotonic() + delay, next(self._seq), cb, args))

    def create_future(self) -> Future:
        return Future(self.ready)

    def create_task(self, coro: Coroutine[Any, Any, Any]) -> Task:
        task = Task(coro)
        self.ready.append(task)
        return task

    def run_until_complete(self, coro: Coroutine[Any, Any, Any]) -> Any:
        main = self.create_task(coro)
        ready, calls, timers = self.ready, self.calls, self.timers
        requeue, next_task, next_call = ready.append, ready.popleft, calls.popleft
        while not main.done:
            if timers:
                now = monotonic()
                while timers and timers[0][0] <= now:
                    _, _, cb, args = heappop(timers)
                    cb(*args)
            if calls:
                for _ in range(len(calls)):
                    cb, args = next_call()
                    cb(*args)
            if ready:
                for _ in range(len(ready)):
                    task = next_task()
                    try:
                        park = task.coro.send(None)
                    except StopIteration as stop:
                        task.done = True
                        task.result = stop.value
                        if task.joiners:
                            ready.extend(task.joiners)
                        continue
                    if park is None:
                        requeue(task)
                    else:
                        park(task)
            elif not calls:
                if not timers:
                    raise RuntimeError("floor: main task is blocked and nothing is scheduled")
                _block(max(0.0, timers[0][0] - monotonic()))
        return main.result


def get_running_loop() -> Loop:
    if _running is None:
        raise RuntimeError("floor: no running loop")
    return _running


def create_task(coro: Coroutine[Any, Any, Any]) -> Task:
    return get_running_loop().create_task(coro)


@coroutine
def sleep(delay: float) -> Generator[Any, None, None]:
    if delay <= 0:
        yield None
    else:
        loop = get_running_loop()
        yield lambda task: loop.call_later(delay, loop.ready.append, task)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    global _running
    if _running is not None:
        raise RuntimeError("floor: run() called from a running loop")
    _running = Loop()
    try:
        return _running.run_until_complete(coro)
    finally:
        _running = None
