"""What stays interpreted in the compiled build: the seam's two yields, and a no-op.

treadle can be built with its core and I/O hot path compiled by mypyc (docs/compiled.md).
This module never is, because of what it holds:

* The two generators in which a task suspends through the seam (``suspend`` in
  ``core/tasks.py``): a ``@types.coroutine`` generator compiled by mypyc cannot be
  awaited. ``SUSPENDED``, what the first yields to the Task, lives here with it.
* ``mypyc_attr``, which tells mypyc how to compile a class (that programs may subclass
  it). mypyc reads it from the source; in the pure build it is this function, which
  does nothing.

A leaf beside ``errors``: imports nothing from treadle.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["SUSPENDED", "Suspended", "mypyc_attr", "wait_for_future", "wait_for_resume"]

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


if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*flags: str, **settings: object) -> Callable[[_C], _C]:
        """mypyc's class settings; in the pure build, nothing to do."""
        return lambda cls: cls
