"""What stays interpreted in the compiled build: a stand-in for mypyc's class settings.

treadle can be built with its core and I/O hot path compiled by mypyc (docs/compiled.md).
This module never is: it holds ``mypyc_attr``, which tells mypyc how to compile a class
(that programs may subclass it). mypyc reads it from the source; in the pure build it
is this function, which does nothing.

A leaf beside ``errors``: imports nothing from treadle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

__all__ = ["mypyc_attr"]

_C = TypeVar("_C")


if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:

    def mypyc_attr(*flags: str, **settings: object) -> Callable[[_C], _C]:
        """mypyc's class settings; in the pure build, nothing to do."""
        return lambda cls: cls
