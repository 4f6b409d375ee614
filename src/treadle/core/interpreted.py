"""What stays interpreted in the compiled build: the seam's yields, two task lookups, a no-op.

treadle can be built with its core and I/O hot path compiled by mypyc (docs/compiled.md).
This module never is, because of what it holds:

* The two generators in which a task suspends through the seam (``suspend`` in
  ``tasks.py``). A ``@types.coroutine`` generator compiled by mypyc cannot be awaited.
* ``current_task()`` and ``all_tasks()`` (``tasks.py`` re-exports them). They read the
  loop's ``_current_task`` and ``_tasks`` as any Python code does, so that treadle.aio's
  loop answers with asyncio's tasks through its properties; compiled code would read the
  core loop's own fields past those properties.
* ``mypyc_attr``, which tells mypyc how to compile a class (that programs may subclass
  it). mypyc reads it from the source; in the pure build it is this function, which
  does nothing.

Imports only the running-loop record from treadle at run time.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from treadle.core.running import get_running_loop

if TYPE_CHECKING:
    from treadle.core.loop import CoreLoop
    from treadle.core.tasks import Task

__all__ = [
    "SUSPENDED", "Suspended", "all_tasks", "current_task", "mypyc_attr",
    "wait_for_future", "wait_for_resume",
]  # fmt: skip

_C = TypeVar("_C")


class Suspended:
    """What ``suspend()`` yields to its Task: "no Future: ``resume()`` will wake me"."""

    def __repr__(self) -> str:
        return "<suspended>"


SUSPENDED = Suspended()


@types.coroutine
def wait_for_resume() -> Generator[Any, Any, Any]:
    """Suspend the running treadle Task until ``resume()``; what it was resumed with."""
    return (yield SUSPENDED)


@types.coroutine
def wait_for_future(future: Any) -> Generator[Any, Any, Any]:
    """Wait for ``future`` as a task of another kind (asyncio's) waits; its result."""
    return (yield from future)


def current_task(loop: CoreLoop | None = None) -> Task[Any] | None:
    """The task running now on ``loop`` (the running loop by default), or None."""
    return (get_running_loop() if loop is None else loop)._current_task


def all_tasks(loop: CoreLoop | None = None) -> set[Task[Any]]:
    """Every task of ``loop`` (the running loop by default) that is not done yet."""
    loop = get_running_loop() if loop is None else loop
    return {task for task in loop._tasks if not task.done()}


if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*flags: str, **settings: object) -> Callable[[_C], _C]:
        """mypyc's class settings; in the pure build, nothing to do."""
        return lambda cls: cls
