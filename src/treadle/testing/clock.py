"""A virtual clock for the event loop: time stands still until the loop has nothing to do.

When every task waits and the loop would block until its next timer, the clock jumps to
that timer's deadline instead of sleeping. The rule for real I/O: while the loop watches
a file descriptor other than its own wake-up pipe, or a thread of ``ThreadCountingPool``
is still working, real work could still complete, so the clock first waits up to
``autojump_threshold`` real seconds for it and jumps only if nothing happened meanwhile.
With no real work in flight it jumps at once. Side layer: peeks at the loop's registered
descriptors and default executor.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from treadle.loop import EventLoop, _get_running_loop

__all__ = ["DEFAULT_AUTOJUMP_THRESHOLD", "ThreadCountingPool", "VirtualClock"]

_T = TypeVar("_T")

# Real seconds of silence, with a socket or a thread in flight, before virtual time jumps.
# Loopback I/O answers in microseconds; a quarter second also covers a busy machine that
# is slow to schedule a peer thread, and costs that much real time per jump only while a
# descriptor stays registered (a listening server, say).
DEFAULT_AUTOJUMP_THRESHOLD = 0.25


class ThreadCountingPool(concurrent.futures.ThreadPoolExecutor):
    """A thread pool that knows how many of its calls are still running.

    Installed as the loop's default executor by ``treadle.testing.run_test`` and the
    pytest plugin, so ``to_thread`` work counts as real work in flight for the clock.
    """

    def __init__(self) -> None:
        super().__init__(thread_name_prefix="treadle-test")
        self._in_flight_lock = threading.Lock()
        # Invariant: how many submitted calls have not finished yet.
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """How many submitted calls have not finished yet."""
        return self._in_flight

    def submit(
        self, fn: Callable[..., _T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[_T]:
        with self._in_flight_lock:
            self._in_flight += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._one_finished(None)
            raise
        future.add_done_callback(self._one_finished)
        return future

    def _one_finished(self, _: object) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1


def real_work_in_flight(loop: EventLoop) -> bool:
    """Whether real I/O or a counted thread could still wake ``loop`` without a timer."""
    # A registered descriptor (the wake-up socket is not one) is a socket someone awaits.
    if loop._registered:
        return True
    executor = loop._default_executor
    return isinstance(executor, ThreadCountingPool) and executor.in_flight > 0


class VirtualClock:
    """A clock for ``treadle.run(..., clock=VirtualClock())`` that jumps to the next timer.

    ``autojump_threshold`` is how many real seconds the loop waits, while real I/O is in
    flight, for something to happen before it jumps. Zero jumps at once even then (so
    timeouts around real I/O fire before the I/O completes); with no I/O in flight the
    clock always jumps at once.
    """

    def __init__(
        self, start: float = 0.0, *, autojump_threshold: float = DEFAULT_AUTOJUMP_THRESHOLD
    ) -> None:
        if math.isnan(start):
            raise ValueError(f"start must be a number, got {start!r}")
        if math.isnan(autojump_threshold) or autojump_threshold < 0:
            raise ValueError(
                f"autojump_threshold must be zero or more real seconds, got {autojump_threshold!r}"
            )
        self._now = float(start)
        self.autojump_threshold = autojump_threshold
        # How many times the clock jumped (for tests of the clock).
        self.jumps = 0

    def __repr__(self) -> str:
        return f"<VirtualClock time={self._now:.6f} jumps={self.jumps}>"

    def time(self) -> float:
        """The virtual time: moves only when the clock jumps or ``advance`` is called."""
        return self._now

    def sleep_time(self, deadline: float) -> float:
        """Real seconds to block: none, unless real I/O could still arrive."""
        if deadline <= self._now:
            return 0.0
        loop = _get_running_loop()
        if loop is not None and real_work_in_flight(loop):
            return self.autojump_threshold
        return 0.0

    def idle(self, deadline: float) -> None:
        """Nothing happened while the loop waited: jump to ``deadline``."""
        if deadline > self._now:
            self._now = deadline
            self.jumps += 1

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` by hand."""
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds!r}")
        self._now += seconds
