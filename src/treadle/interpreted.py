"""What stays interpreted in the compiled build: the seam's yield, and a no-op.

treadle can be built with its core and I/O hot path compiled by mypyc (docs/compiled.md).
This module never is, because of what it holds:

* The generator in which a task suspends through the seam (``suspend`` in
  ``core/tasks.py`` returns it): a ``@types.coroutine`` generator compiled by mypyc
  cannot be awaited. ``SUSPENDED``, what it yields to the Task, lives here with it.
* ``mypyc_attr``, which tells mypyc how to compile a class (that programs may subclass
  it). mypyc reads it from the source; in the pure build it is this function, which
  does nothing.

A leaf beside ``errors``: imports nothing from treadle.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

__all__ = ["SUSPENDED", "Suspended", "mypyc_attr", "wait_for_resume"]

_C = TypeVar("_C")


class Suspended:
    """What ``suspend()`` yields to its Task: "no Future: ``resume()`` will wake me"."""

    def __repr__(self) -> str:
        return "<suspended>"


SUSPENDED = Suspended()


@types.coroutine
def wait_for_resume() -> Generator[Any, Any, Any]:
    """Yield to the Task: "no Future: ``resume()`` will wake me"; what it was resumed with."""
    return (yield SUSPENDED)


if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*flags: str, **settings: object) -> Callable[[_C], _C]:
        """mypyc's class settings; in the pure build, nothing to do."""
        return lambda cls: cls
