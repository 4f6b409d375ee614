"""Per-host politeness: how many requests at once, and how far apart.

A ``HostGate`` holds one origin's cap on concurrent requests, its minimum delay
between the starts of two requests (the larger of ``--delay`` and robots.txt's
``Crawl-delay``, with jitter), and a back-off deadline that a ``Retry-After`` or an
overloaded server sets for the whole host. When processes share a crawl, a gate also
takes each slot from the shared ledger (``HostLedger``: the frontier engine's), so the
cap and the spacing hold across all of them. Crawler layer: imports treadle's
coordination primitives.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

from treadle.locks import Lock, Semaphore
from treadle.loop import get_running_loop
from treadle.sleeping import sleep

__all__ = ["HostGate", "HostLedger"]


class HostLedger(Protocol):
    """The per-host politeness ledger shared by the processes of one crawl."""

    async def acquire_host(self, key: str, cap: int, spacing: float, token: str) -> float:
        """0.0 once a slot of host ``key`` is taken under ``token``, else seconds to wait."""
        ...

    async def back_off_host(self, key: str, seconds: float) -> None:
        """No slot of host ``key`` for ``seconds`` from now."""
        ...

    async def release_host(self, key: str, token: str) -> None:
        """Give back the slot taken under ``token``."""
        ...


class HostGate:
    """The politeness ledger of one origin; ``async with gate.slot():`` around a request.

    ``slot`` waits for a free slot (at most ``max_concurrent`` requests at once), then
    for the host's next allowed start, then claims the start after it: ``delay`` seconds
    later (a minimum), plus up to half of it again at random, so requests do not tick
    like a metronome. With a ``ledger`` (shared by processes, ``key`` naming the host
    in it) the slot is then also taken from the ledger, which spaces the starts of all
    the processes' requests and caps them together.
    """

    def __init__(
        self,
        max_concurrent: int,
        delay: float,
        *,
        rng: random.Random | None = None,
        ledger: HostLedger | None = None,
        key: str = "",
    ) -> None:
        self.delay = delay
        """Least seconds between the starts of two requests to this host."""
        self._slots = Semaphore(max_concurrent)
        # Invariant: whoever holds _pacing is the next request to start on this host.
        self._pacing = Lock()
        self._rng = rng or random.Random()
        # Loop time before which no request may start (pacing and back-off).
        self._next_start = 0.0
        self._backoff_until = 0.0
        self._max_concurrent = max_concurrent
        self._ledger = ledger
        self._key = key
        self._tokens = itertools.count()
        # A back-off not yet told to the ledger (seconds from when it was asked for):
        # the next request of this gate tells it, before anything else.
        self._ledger_back_off = 0.0
        self.waiting = 0
        """Requests waiting for a slot or for their start time now (for the display)."""
        self.active = 0
        """Requests running now."""
        self.requests = 0
        """Requests started so far."""
        self.held_back = 0.0
        """Seconds requests were held back so far, by pacing and back-off (for the report)."""
        self.back_offs = 0
        """Times the host asked for a pause (Retry-After, 429, 503)."""

    def back_off(self, seconds: float) -> None:
        """No request to this host may start for ``seconds`` from now (it asked us to wait)."""
        self.back_offs += 1
        self._backoff_until = max(self._backoff_until, get_running_loop().time() + seconds)
        self._ledger_back_off = max(self._ledger_back_off, seconds)

    @property
    def wait_left(self) -> float:
        """Seconds until the next request may start (0 when it may start now)."""
        start = max(self._next_start, self._backoff_until)
        return max(0.0, start - get_running_loop().time())

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the host's request slots, started no sooner than politeness allows."""
        self.waiting += 1
        token: str | None = None
        started = False
        try:
            await self._slots.acquire()
            try:
                async with self._pacing:
                    if self._ledger is not None and self._ledger_back_off > 0:
                        back_off, self._ledger_back_off = self._ledger_back_off, 0.0
                        await self._ledger.back_off_host(self._key, back_off)
                    # Back-off can be extended while we sleep: check again after waking.
                    held_since = get_running_loop().time()
                    while (wait := self.wait_left) > 0:
                        await sleep(wait)
                    jitter = self._rng.uniform(1.0, 1.5) if self.delay > 0 else 1.0
                    if self._ledger is not None:
                        token = str(next(self._tokens))
                        await self._take_from_ledger(token, self.delay * jitter)
                    self.held_back += get_running_loop().time() - held_since
                    if self.delay > 0:
                        self._next_start = get_running_loop().time() + self.delay * jitter
                started = True
            finally:
                if not started:
                    self._slots.release()
                    # Cancelled while asking the ledger: the slot may have been given.
                    await self._release_to_ledger(token)
        finally:
            self.waiting -= 1
        self.active += 1
        self.requests += 1
        try:
            yield
        finally:
            self.active -= 1
            self._slots.release()
            await self._release_to_ledger(token)

    async def _release_to_ledger(self, token: str | None) -> None:
        if token is not None:
            assert self._ledger is not None
            await self._ledger.release_host(self._key, token)

    async def _take_from_ledger(self, token: str, spacing: float) -> None:
        """Wait until the shared ledger gives this host's slot ``token``."""
        assert self._ledger is not None
        while True:
            wait = await self._ledger.acquire_host(self._key, self._max_concurrent, spacing, token)
            if wait <= 0:
                return
            await sleep(wait)
