"""A frontier shared by several crawler processes: leases, acknowledgements, a host ledger.

``SharedFrontier`` is the contract the crawler's workers use when they are not alone:
``claim`` a URL on a lease, ``ack`` it once its outcome is decided (the record, the
links it found and the too-deep ones go in atomically, and the record comes back with
``num_new_urls`` counted against the shared seen set), ``release`` what was not
finished. ``acquire_host``/``release_host`` are the per-host politeness ledger every
worker obeys. Two engines keep it: ``treadle.crawl.redisfrontier`` (Redis, across
machines) and ``MemoryFrontier`` here (one process owns the frontier and serves the
others over a socket: ``treadle.crawl.processes``). docs/crawling.md has the protocol.
Crawler layer: imports the standard library and ``treadle.crawl.records``/``state``.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import os
import socket
import time
from typing import Final, Literal

from treadle.crawl.records import Record
from treadle.crawl.state import CrawlState, SavedJob, Snapshot

__all__ = [
    "DEFAULT_LEASE",
    "DISALLOWED",
    "DONE",
    "FETCHED",
    "HOST_FULL_RETRY",
    "NEW_URLS_PLACEHOLDER",
    "SITEMAP",
    "WAIT",
    "FrontierError",
    "Lease",
    "MemoryFrontier",
    "Outcome",
    "SharedFrontier",
    "default_worker_name",
    "fill_placeholder",
    "job_from_json",
    "job_key",
    "job_to_json",
    "record_with_placeholder",
]

# What became of a leased URL (the ``outcome`` of an ack).
FETCHED: Final = "fetched"
SITEMAP: Final = "sitemap"
DISALLOWED: Final = "disallowed"
Outcome = Literal["fetched", "sitemap", "disallowed"]

# What ``claim`` answers when it has no URL to give.
WAIT: Final = "wait"  # nothing on the frontier now, but leases are out: ask again soon
DONE: Final = "done"  # nothing on the frontier and no lease out: the crawl is over


DEFAULT_LEASE = 30.0
"""Seconds a worker's leases outlive its last sign of life (renewed every third of it)."""


class FrontierError(Exception):
    """The shared frontier cannot be used (the message says why and what to do)."""


@dataclasses.dataclass(slots=True, frozen=True)
class Settlement:
    """What a worker reports when it settles a leased URL (``SharedFrontier.ack``)."""

    outcome: Outcome
    record: Record | None
    """The URL's record; None for a URL that robots.txt disallowed."""
    found: list[SavedJob]
    """The in-scope links it found, for the frontier unless seen."""
    too_deep: list[str]
    """The links it found past ``--max-depth``."""
    archived: tuple[int, int] | None = None
    """Where the worker's WARC segment holds this URL's records (``start, end``), if it
    keeps one (``--processes N --warc``: the parent copies them into the archive)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """A URL claimed by this worker: ``token`` proves the claim when it is acknowledged."""

    job: SavedJob
    token: str


def default_worker_name() -> str:
    """``HOST-PID``: unique among live workers (give ``--worker-id`` to resume one)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def job_key(url: str, is_sitemap: bool) -> str:
    """The seen-set member of a URL: pages and sitemaps are seen apart."""
    return ("sitemap " if is_sitemap else "page ") + url


def job_to_json(job: SavedJob) -> str:
    """A job as one compact JSON array (how the engines store it)."""
    return json.dumps([job.url, job.depth, job.referrer, job.redirects_left, job.is_sitemap])


def job_from_json(text: str | bytes) -> SavedJob:
    """The job ``job_to_json`` wrote."""
    url, depth, referrer, redirects_left, is_sitemap = json.loads(text)
    return SavedJob(url, int(depth), referrer, int(redirects_left), bool(is_sitemap))


# The record's count of new links is decided by the engine, in the same atomic step that
# adds them to the seen set; the crawler sends this placeholder in its place. A JSON
# string cannot hold it unescaped, so it is found only where the key is.
NEW_URLS_PLACEHOLDER: Final = '"num_new_urls": -1'


def record_with_placeholder(record: Record) -> str:
    """``record`` as JSON with ``num_new_urls`` left for the engine to fill in."""
    text = dataclasses.replace(record, num_new_urls=-1).to_json()
    assert NEW_URLS_PLACEHOLDER in text
    return text


def fill_placeholder(record_json: str, new_urls: int) -> str:
    """The record JSON with the engine's count of new links in place of the placeholder."""
    return record_json.replace(NEW_URLS_PLACEHOLDER, f'"num_new_urls": {new_urls}', 1)


class SharedFrontier:
    """The operations a worker needs from a shared frontier (an engine implements them).

    Every operation is atomic, and safe to send again after a lost reply: a claim or a
    host slot carries a token the worker chose, so a repeated call gets the same answer.
    """

    keep_alive_interval: float | None = None
    """Seconds between ``keep_alive`` calls the engine needs (None: it needs none)."""

    worker: str = ""
    """The name of this worker (its records are kept under it, for ``records_of``)."""

    async def join(self, roots: list[str], seeds: list[SavedJob]) -> None:
        """Join the crawl of ``roots`` (refusing another crawl's), putting ``seeds`` on
        the frontier unless they were seen."""
        raise NotImplementedError

    async def claim(self) -> Lease | Literal["wait", "done"]:
        """The next URL on a lease, or ``WAIT``/``DONE``."""
        raise NotImplementedError

    async def ack(self, lease: Lease, settled: Settlement) -> Record | None:
        """Settle a leased URL: its outcome, its record, the links it found. The record as
        committed (``num_new_urls`` counted against the shared seen set), or None if the
        lease was lost (it expired and went back to the frontier: another worker redoes
        the URL, and this worker must not hand its record on)."""
        raise NotImplementedError

    async def release(self, leases: list[Lease]) -> None:
        """Give URLs back to the frontier unfinished (a stopping worker)."""
        raise NotImplementedError

    async def keep_alive(self) -> None:
        """Renew this worker's leases and return those of dead workers to the frontier."""

    async def acquire_host(self, key: str, cap: int, spacing: float, token: str) -> float:
        """Try to take a request slot of host ``key`` under ``token``: 0.0 when taken,
        else the seconds to wait before trying again. At most ``cap`` slots of a host
        are out at once, and a slot is given ``spacing`` seconds after the last one."""
        raise NotImplementedError

    async def back_off_host(self, key: str, seconds: float) -> None:
        """No slot of host ``key`` for ``seconds`` from now (it asked for a pause)."""
        raise NotImplementedError

    async def release_host(self, key: str, token: str) -> None:
        """Give back the slot taken under ``token``."""
        raise NotImplementedError

    async def records_of(self, worker: str) -> list[Record]:
        """The page records acknowledged by the worker named ``worker``, in order."""
        raise NotImplementedError

    async def close(self) -> None:
        """Let go of the connection."""


# A host whose cap is reached is asked again after this long (a slot frees when a
# request ends, which the engine does not announce).
HOST_FULL_RETRY = 0.01


@dataclasses.dataclass(slots=True)
class _HostLedger:
    next_start: float = 0.0
    # token -> the owner holding that slot
    slots: dict[str, str] = dataclasses.field(default_factory=dict)


class MemoryFrontier:
    """The frontier engine kept in one process's memory, for workers it serves.

    The operations are ``SharedFrontier``'s, each naming the ``owner`` (a connected
    worker); ``drop_owner`` returns a gone worker's leases to the frontier at once.
    With a ``CrawlState`` every change is queued for it, and ``commit`` saves them and
    hands back the page records it made durable (so a record is written out only once
    saved, as in a one-process crawl).
    Single-threaded: each method runs to its end, so each is atomic.
    """

    def __init__(self, state: CrawlState | None = None) -> None:
        self._state = state
        self.durable_at_once = state is None
        """Whether an acknowledged record is durable at once (no state to commit to)."""
        self._roots: list[str] | None = None
        self._queue: collections.deque[SavedJob] = collections.deque()
        self._seen: set[str] = set()
        # token -> (owner, job) for every URL out on a lease.
        self._leases: dict[str, tuple[str, SavedJob]] = {}
        self._hosts: dict[str, _HostLedger] = {}
        self._unsaved_records: list[Record] = []
        self.records: list[Record] = []
        """Every page record acknowledged (with a state: committed or loaded)."""
        self.sitemaps: list[Record] = []
        self.disallowed: list[str] = []
        self.too_deep: dict[str, None] = {}
        self._tokens = itertools.count()

    def left(self) -> list[str]:
        """The URLs not finished: out on a lease, then on the frontier."""
        return [job.url for _, job in self._leases.values()] + [job.url for job in self._queue]

    def join(self, roots: list[str], seeds: list[SavedJob]) -> None:
        """As ``SharedFrontier.join``; the first join loads the state, if any."""
        if self._roots is None:
            self._roots = roots
            if self._state is not None:
                self._restore(self._state.load(roots))
        elif roots != self._roots:
            raise FrontierError(
                f"this frontier holds a crawl of {', '.join(self._roots)},"
                f" not of {', '.join(roots)}"
            )
        self._add(seeds)

    def _restore(self, saved: Snapshot) -> None:
        self._seen |= {job_key(url, False) for url in saved.seen}
        self._seen |= {job_key(url, True) for url in saved.sitemaps_seen}
        self._queue.extend(saved.frontier)
        self.records.extend(saved.records)
        self.sitemaps.extend(saved.sitemaps)
        self.disallowed.extend(saved.disallowed)
        self.too_deep.update(dict.fromkeys(saved.too_deep))

    def _add(self, jobs: list[SavedJob]) -> int:
        new = 0
        for job in jobs:
            key = job_key(job.url, job.is_sitemap)
            if key in self._seen:
                continue
            self._seen.add(key)
            self.too_deep.pop(job.url, None)
            self._queue.append(job)
            if self._state is not None:
                self._state.queued(job)
            new += 1
        return new

    def claim(
        self, owner: str, count: int = 1
    ) -> tuple[list[tuple[str, SavedJob]], Literal["wait", "done"]]:
        """Up to ``count`` URLs on leases held by ``owner``, as ``(token, job)`` pairs, and
        what a claimer left without one hears: ``WAIT`` (leases are out, whose pages may
        add URLs) or ``DONE`` (the crawl is over)."""
        queue = self._queue
        leases = []
        for _ in range(min(count, len(queue))):
            job = queue.popleft()
            token = f"{owner}:{next(self._tokens)}"
            self._leases[token] = (owner, job)
            leases.append((token, job))
        return leases, WAIT if self._leases else DONE

    def ack(
        self,
        owner: str,
        token: str,
        outcome: Outcome,
        record: Record | None,
        found: list[SavedJob],
        too_deep: list[str],
    ) -> bool:
        """As ``SharedFrontier.ack``, ``record.num_new_urls`` set here (``record`` is None
        for a URL robots.txt disallowed). False, and nothing done, if ``owner`` does not
        hold the lease ``token``."""
        lease = self._leases.get(token)
        if lease is None or lease[0] != owner:
            return False
        del self._leases[token]
        _, job = lease
        new = self._add(found)
        for url in too_deep:
            if job_key(url, False) not in self._seen and url not in self.too_deep:
                self.too_deep[url] = None
                if self._state is not None:
                    self._state.too_deep(url, 0)
        if outcome == DISALLOWED or record is None:
            self.disallowed.append(job.url)
            if self._state is not None:
                self._state.disallowed(job.url)
            return True
        record.num_new_urls = new
        if outcome == SITEMAP:
            self.sitemaps.append(record)
            if self._state is not None:
                self._state.fetched(record, is_sitemap=True)
        elif self._state is not None:
            self._state.fetched(record)  # handed back by the commit that saves it
        else:
            self._unsaved_records.append(record)
        return True

    def commit(self, warc_length: int | None = None) -> list[Record]:
        """Save what changed (with a state); the page records now durable, to hand on.
        ``warc_length``: how long the WARC archive is with the records of every URL
        this commit marks done (a resumed crawl cuts the archive back to it)."""
        if self._state is not None:
            if warc_length is not None and self._state.pending:
                self._state.note_warc_length(warc_length)
            records = self._state.commit()
        else:
            records, self._unsaved_records = self._unsaved_records, []
        self.records.extend(records)
        return records

    def release(self, owner: str, tokens: list[str]) -> None:
        """As ``SharedFrontier.release``: the leases go back to the head of the frontier."""
        for token in tokens:
            lease = self._leases.get(token)
            if lease is not None and lease[0] == owner:
                del self._leases[token]
                self._queue.appendleft(lease[1])

    def drop_owner(self, owner: str) -> list[tuple[str, str]]:
        """A worker went away: its leases go back to the frontier. Its host slots, as
        ``(key, token)`` pairs, are for the caller to free with ``release_host`` (its
        last requests may still be in the servers' hands)."""
        self.release(owner, [token for token, (who, _) in self._leases.items() if who == owner])
        return [
            (key, token)
            for key, ledger in self._hosts.items()
            for token, who in ledger.slots.items()
            if who == owner
        ]

    def back_off_host(self, key: str, seconds: float) -> None:
        """As ``SharedFrontier.back_off_host``."""
        ledger = self._hosts.setdefault(key, _HostLedger())
        ledger.next_start = max(ledger.next_start, time.monotonic() + seconds)

    def acquire_host(self, owner: str, key: str, cap: int, spacing: float, token: str) -> float:
        """As ``SharedFrontier.acquire_host``, the slot held by ``owner``."""
        ledger = self._hosts.setdefault(key, _HostLedger())
        now = time.monotonic()
        if token in ledger.slots:
            return 0.0
        if len(ledger.slots) >= cap:
            return HOST_FULL_RETRY
        if now < ledger.next_start:
            return ledger.next_start - now
        ledger.slots[token] = owner
        ledger.next_start = now + spacing
        return 0.0

    def host_slots(self, key: str) -> collections.Counter[str]:
        """How many slots of host ``key`` each owner holds."""
        ledger = self._hosts.get(key)
        return collections.Counter(ledger.slots.values() if ledger is not None else ())

    def release_host(self, key: str, token: str) -> None:
        """As ``SharedFrontier.release_host``."""
        ledger = self._hosts.get(key)
        if ledger is not None:
            ledger.slots.pop(token, None)
