"""Where the event loop reads the time: the real monotonic clock, behind a small protocol.

The loop never calls ``time.monotonic`` itself; it asks its clock. A test can hand it a
virtual clock (``treadle.testing.VirtualClock``) that jumps to the next deadline
whenever the loop would otherwise sleep. Imports nothing from treadle.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "MonotonicClock"]


class Clock(Protocol):
    """What the loop needs from a clock."""

    def time(self) -> float:
        """The current time, in seconds, on this clock's own scale."""
        ...

    def sleep_time(self, deadline: float) -> float:
        """How many real seconds the loop may block in the selector waiting for ``deadline``."""
        ...

    def idle(self, deadline: float) -> None:
        """The loop blocked for ``sleep_time(deadline)`` and nothing happened."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic``, and real sleeping."""

    __slots__ = ()

    def time(self) -> float:
        return time.monotonic()

    def sleep_time(self, deadline: float) -> float:
        # Not max(): its keyword parsing costs ~1,000 instructions, before every wait.
        return remaining if (remaining := deadline - time.monotonic()) > 0.0 else 0.0

    def idle(self, deadline: float) -> None:
        pass
