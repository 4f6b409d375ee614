"""The running-loop record: which loop, if any, is running in this thread.

A leaf, so that Future and Task can find the running loop without importing the loop
module (which imports them, to make them). Imports nothing from treadle at run time.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from treadle.core.loop import CoreLoop

__all__ = ["get_running_loop", "running"]


# ``running.loop``: the loop whose run_forever() is on this thread's stack; unset or None
# when there is none. A plain threading.local read with getattr, not a subclass with a
# class-level default: the compiled build (mypyc) made such a subclass one object
# shared by every thread.
running = threading.local()


def get_running_loop() -> CoreLoop:
    """The loop running in this thread; RuntimeError when there is none."""
    loop: CoreLoop | None = getattr(running, "loop", None)
    if loop is None:
        raise RuntimeError(
            "no running event loop: call this from a coroutine run by treadle.run()"
        )
    return loop


def _get_running_loop() -> CoreLoop | None:
    """The loop running in this thread, or None."""
    loop: CoreLoop | None = getattr(running, "loop", None)
    return loop
