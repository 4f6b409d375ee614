"""Virtual time for asyncio code: treadle.aio loops whose clock jumps to the next timer.

``virtual_time_loop`` is a loop factory: give it to ``asyncio.Runner(loop_factory=...)``,
to ``asyncio.run(..., loop_factory=...)``, or to pytest-asyncio through its
``pytest_asyncio_loop_factories`` hook (docs/aio.md shows the three lines). The pytest
fixture ``aio_virtual_time`` (in treadle's pytest plugin) runs coroutines on one.
Side layer: imports asyncio, treadle.aio and treadle.testing.
"""

from __future__ import annotations

from treadle.aio.loop import EventLoop
from treadle.testing.clock import VirtualClock

__all__ = ["virtual_time_loop"]


def virtual_time_loop() -> EventLoop:
    """A new ``treadle.aio`` loop on a fresh ``VirtualClock`` (``loop.clock``).

    ``asyncio.sleep(3600)`` returns at once, and the loop's ``time()`` has moved an hour.
    While a socket is watched or a thread works, the clock waits for real work first
    (see ``treadle.testing.VirtualClock``).
    """
    return EventLoop(clock=VirtualClock())
