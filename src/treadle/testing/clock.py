"""A virtual clock for the event loop: time stands still until the loop has nothing to do.

When every task waits and the loop would block until its next timer, the clock jumps
to that timer's deadline instead of sleeping. With ``autojump_threshold`` above zero it
first waits that many real seconds for I/O (real sockets in a test), and jumps only if
nothing arrived.
"""

from __future__ import annotations

import math

__all__ = ["VirtualClock"]


class VirtualClock:
    """A clock for ``treadle.run(..., clock=VirtualClock())`` that jumps to the next timer."""

    def __init__(self, start: float = 0.0, *, autojump_threshold: float = 0.0) -> None:
        if math.isnan(start) or math.isnan(autojump_threshold) or autojump_threshold < 0:
            raise ValueError("start must be a number and autojump_threshold zero or more")
        self._now = float(start)
        self.autojump_threshold = autojump_threshold
        # How many times the clock jumped, and how far in all (for tests of the clock).
        self.jumps = 0

    def __repr__(self) -> str:
        return f"<VirtualClock time={self._now:.6f} jumps={self.jumps}>"

    def time(self) -> float:
        return self._now

    def sleep_time(self, deadline: float) -> float:
        if deadline <= self._now:
            return 0.0
        return self.autojump_threshold

    def idle(self, deadline: float) -> None:
        if deadline > self._now:
            self._now = deadline
            self.jumps += 1

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` by hand."""
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds!r}")
        self._now += seconds
