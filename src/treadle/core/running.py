"""The running-loop record: which loop, if any, is running in this thread.

A leaf, so that Future and Task can find the running loop without importing the loop
module (which imports them, to make them). Imports nothing from treadle at run time.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from treadle.core.loop import CoreLoop

__all__ = ["get_running_loop", "running", "set_running_loop"]


# ``running.loop``: the loop whose run_forever() is on this thread's stack; unset or None
# when there is none. A plain threading.local read with getattr, not a subclass with a
# class-level default: the compiled build (mypyc) made such a subclass one object
# shared by every thread. Written only by set_running_loop().
running = threading.local()

class _Latest:
    """The id of the thread that last called set_running_loop(), and the loop it set.

    Asked on that thread (in most programs the only one with a loop), get_running_loop()
    answers with one comparison instead of threading.local's lookup. One tuple, read and
    written at once. Invariant: a thread writes only its own id, with its own loop, so a
    matching id comes with this thread's loop.
    """

    __slots__ = ("thread_and_loop",)

    def __init__(self) -> None:
        self.thread_and_loop: tuple[int, CoreLoop | None] = (0, None)


# An attribute of a Final object rather than a module global, and get_ident Final: the
# compiled build reads those directly, but looks a plain global up in the module's dict,
# which cost more than the shortcut saved.
_latest: Final = _Latest()
_get_ident: Final = threading.get_ident


def set_running_loop(loop: CoreLoop | None) -> None:
    """Record ``loop`` as the one running in this thread (None: none is)."""
    running.loop = loop
    _latest.thread_and_loop = (_get_ident(), loop)


def get_running_loop() -> CoreLoop:
    """The loop running in this thread; RuntimeError when there is none."""
    # _get_running_loop(), written out: a Python call would cost the pure build more
    # than the shortcut saves it.
    latest = _latest.thread_and_loop
    loop = latest[1] if latest[0] == _get_ident() else getattr(running, "loop", None)
    if loop is None:
        raise RuntimeError("no running event loop: call this from a coroutine run by treadle.run()")
    return loop


def _get_running_loop() -> CoreLoop | None:
    """The loop running in this thread, or None."""
    latest = _latest.thread_and_loop
    return latest[1] if latest[0] == _get_ident() else getattr(running, "loop", None)
