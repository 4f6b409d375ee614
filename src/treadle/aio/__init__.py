"""treadle.aio: treadle's event loop for asyncio programs and libraries, as uvloop offers its own.

Three ways in: ``treadle.aio.run(main())``; ``asyncio.run(main(),
loop_factory=treadle.aio.new_event_loop)`` (3.12+) or ``asyncio.Runner(loop_factory=...)``;
and ``uvicorn --loop treadle.aio:new_event_loop``. On this loop asyncio code and
treadle's own API run in the same program. See docs/aio.md. Side layer: imports asyncio
(``import treadle`` never does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from treadle.aio.loop import EventLoop
from treadle.core.clock import Clock

__all__ = ["EventLoop", "EventLoopPolicy", "new_event_loop", "run"]

_T = TypeVar("_T")


def new_event_loop() -> EventLoop:
    """A new ``treadle.aio.EventLoop``: the loop factory for ``asyncio.run`` and ``Runner``."""
    return EventLoop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An asyncio event loop policy whose ``new_event_loop()`` makes ``treadle.aio`` loops.

    ``asyncio.set_event_loop_policy(treadle.aio.EventLoopPolicy())`` puts every loop
    asyncio makes from then on (``asyncio.run()``, ``asyncio.new_event_loop()``) on
    treadle. ``clock`` gives each new loop a clock made by that factory (a
    ``treadle.testing.VirtualClock`` say); by default loops read the real clock.
    """

    def __init__(self, *, clock: Any = None) -> None:
        super().__init__()
        self._clock_factory = clock

    def new_event_loop(self) -> EventLoop:
        """A new ``treadle.aio.EventLoop``."""
        if self._clock_factory is None:
            return EventLoop()
        return EventLoop(clock=self._clock_factory())


def run(
    main: Coroutine[Any, Any, _T], *, debug: bool | None = None, clock: Clock | None = None
) -> _T:
    """Run ``main`` on a new ``treadle.aio`` loop, as ``asyncio.run`` does, and close it.

    Inside, asyncio code and treadle code alike work. ``debug`` as in ``asyncio.run``;
    ``clock`` replaces the real clock (``treadle.testing.VirtualClock()``: timers run on
    virtual time).
    """
    with asyncio.Runner(debug=debug, loop_factory=lambda: EventLoop(clock=clock)) as runner:
        return runner.run(main)
