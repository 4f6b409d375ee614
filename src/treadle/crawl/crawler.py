"""The crawler: a frontier queue, ``max_tasks`` worker tasks, a seen-set, and a join.

Each worker takes a URL from the frontier, fetches it with treadle's HTTP client,
writes exactly one ``Record`` for it, and puts the in-scope links it has not seen onto
the frontier. The crawl ends when the frontier is empty and every worker is idle, or
when a limit (``max_pages``, ``max_time``) stops it; then ``left`` holds what was not
fetched. Politeness: robots.txt is fetched once per origin and obeyed; each origin has
a ``HostGate`` bounding its concurrent requests and spacing their starts; failures a
retry can fix are retried with backoff, and a host that asks for a pause gets one.
The roots' sitemaps feed the frontier too; they go through the same workers, gates
and retries, but their records are kept apart (``sitemaps``), like robots.txt's notes.
Crawler layer: imports the HTTP client and below.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

import treadle
from treadle.combinators import FIRST_COMPLETED, gather, shield, wait
from treadle.core.futures import Future
from treadle.core.tasks import Task
from treadle.crawl.frontier import (
    DISALLOWED,
    DONE,
    FETCHED,
    SITEMAP,
    WAIT,
    Lease,
    Outcome,
    Settlement,
    SharedFrontier,
)
from treadle.crawl.links import (
    LEXBOR,
    STDLIB,
    LinkResolver,
    default_parser,
    extract_links,
    read_html,
)
from treadle.crawl.politeness import HostGate
from treadle.crawl.records import Record
from treadle.crawl.report import CrawlReport, HostActivity, ProgressSnapshot
from treadle.crawl.retries import (
    RETRYABLE_STATUSES,
    backoff_delay,
    error_kind,
    is_retryable_error,
    parse_retry_after,
)
from treadle.crawl.robots import RobotsPolicy, robots_url
from treadle.crawl.sitemaps import SITEMAP_MAX_SIZE, read_sitemap
from treadle.crawl.state import CrawlState, SavedJob, Snapshot
from treadle.crawl.urls import Scope, is_http_url, normalize_url, origin
from treadle.crawl.warc import Exchange, WarcArchive
from treadle.errors import (
    CancelledError,
    ConnectError,
    HTTPError,
    ReadTimeout,
    ResponseTooLarge,
    SitemapError,
)
from treadle.http import Client, Response
from treadle.loop import create_task, get_running_loop
from treadle.queues import Queue
from treadle.sleeping import check_delay, sleep
from treadle.timeouts import timeout

__all__ = [
    "DEFAULT_MAX_PER_HOST",
    "DEFAULT_USER_AGENT",
    "LIMIT_MAX_DEPTH",
    "LIMIT_MAX_PAGES",
    "LIMIT_MAX_TIME",
    "PROJECT_URL",
    "Crawler",
]

PROJECT_URL = "https://github.com/treadle/treadle"
"""Where a site owner reads about the crawler: pyproject.toml's Homepage (a test checks)."""
DEFAULT_USER_AGENT = f"treadle-crawler/{treadle.__version__} (+{PROJECT_URL})"
# Four requests at once per host: below the six connections a browser opens for one
# person (a crawler should weigh on a site less than a reader does), half Scrapy's 8,
# and already four times wget's one, which is plenty when pages come in 100 ms.
DEFAULT_MAX_PER_HOST = 4
LIMIT_MAX_DEPTH = "max-depth"
LIMIT_MAX_PAGES = "max-pages"
LIMIT_MAX_TIME = "max-time"

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# A body not worth parsing is drained (so the connection can be reused) when it is at
# most this big, and the connection closed without reading it when it is bigger.
_DRAIN_LIMIT = 64 * 1024
# Where a site's sitemap is when its robots.txt names none (sitemaps.org convention).
_DEFAULT_SITEMAP_PATH = "/sitemap.xml"
# RFC 9309, section 2.5: crawlers must parse at least 500 KiB of robots.txt.
_ROBOTS_MAX_SIZE = 500 * 1024
# Connecting takes one round trip; a host that has not answered in 10 s is not there.
_MAX_CONNECT_TIMEOUT = 10.0
# A page at least this big is parsed in the crawl's parsing thread, so that the loop
# keeps serving the other fetches: lexbor parses without the GIL, and the Python around
# it (and all of html.parser) gives the GIL up every switch interval (5 ms). Below it, a
# page costs about 1 ms (lexbor at ~90 MB/s plus its links' normalisation) or 8 ms
# (html.parser at ~8 MB/s) on the loop, less than a thread hand-off is worth
# (docs/crawling.md). One thread, not a pool: glibc gives each thread that allocates its
# own malloc arena, and a pool's threads held ~30 MiB more than one thread does.
_PARSE_IN_THREAD_BYTES = {LEXBOR: 128 * 1024, STDLIB: 32 * 1024}
# How often the state file (--state) is committed, and after how many changes at most:
# a crash loses at most this much work, and a commit costs ~0.1 ms, not per record.
_STATE_COMMIT_INTERVAL = 0.25
_STATE_COMMIT_CHANGES = 2000
# With a shared frontier: a worker finding it empty while other workers hold leases asks
# again after this long, doubling up to the most (their pages may add URLs any time).
_POLL_FIRST = 0.01
_POLL_MOST = 0.2
# Leases given back when the crawl stops: a Redis that does not answer by then lets them
# expire instead of holding up the report.
_RELEASE_TIMEOUT = 5.0
# An outcome of a visit: a limit stopped the crawl before the URL was fetched.
_LEFT: Final = "left"


@dataclass(slots=True)
class _Job:
    """A URL on the frontier, with how it was found.

    For a page, ``depth`` counts links from a root (a URL a sitemap lists has depth 1).
    For a sitemap, it counts sitemap indexes above it: 0 for the sitemap robots.txt
    names (or ``/sitemap.xml``), 1 for one a sitemap index lists.
    """

    url: str
    depth: int
    referrer: str | None
    redirects_left: int
    is_sitemap: bool = False
    # The exchanges of its tries, archived (--warc) together once the URL is done.
    exchanges: list[Exchange] = field(default_factory=list)
    # With a shared frontier: the new links and the too-deep ones it found,
    # acknowledged together with its outcome.
    found: list[SavedJob] = field(default_factory=list)
    found_too_deep: list[str] = field(default_factory=list)
    # With a shared frontier and --warc: where the archive holds its records.
    archived: tuple[int, int] | None = None


class _FetchFailed(Exception):
    """One try failed without a response worth recording (wraps the failure)."""


class Crawler:
    """Crawls from ``roots`` and keeps one ``Record`` per finished URL in ``records``.

    Scope: ``strict`` allows the roots' hosts and their ``www.`` variants, lenient
    hosts sharing the last two labels; ``include`` and ``exclude`` are regexes a URL
    must match and must not match. Politeness: at most ``max_per_host`` requests at
    once to one origin, their starts ``delay`` seconds apart on average (or robots.txt's
    Crawl-delay if larger). Limits: ``max_depth`` links from a root, ``max_pages``
    fetches, ``max_time`` seconds. ``max_tries`` bounds the requests per URL,
    ``max_redirect`` the redirects followed from one URL, ``max_size`` the bytes of one
    body; ``timeout`` bounds one whole fetch (connect, head and body). Retries wait
    ``retry_backoff * 2**n`` seconds with jitter, or what ``Retry-After`` asks, up to
    ``max_retry_wait``. ``on_record`` is called with each record as it is made.
    ``sitemaps``: read the sitemaps of the roots' origins (those robots.txt names, else
    ``/sitemap.xml``; indexes one level deep; gzipped or not) and crawl the in-scope
    page URLs they list, as if a root linked to them (depth 1). ``parser`` names the
    HTML tokenizer (``treadle.crawl.links.PARSERS``; lexbor when selectolax is installed).
    ``state``: keep the frontier, the seen set and the finished URLs there, and resume
    the crawl it holds; ``on_record`` is then called once a record is committed to it
    (a few times a second), and the records of earlier runs are in ``records`` from the
    start (see ``treadle.crawl.state``). ``warc``: archive every exchange of the pages
    and sitemaps there, when their URL is done (see ``treadle.crawl.warc``).
    ``frontier``: share the crawl with other processes (``treadle.crawl.frontier``):
    URLs are claimed from it on a lease and acknowledged with their outcome and links,
    every request waits for the host's shared politeness ledger too, and the crawl ends
    when the shared frontier is done; ``on_record`` is called once the ack committed.
    """

    def __init__(
        self,
        roots: str | Iterable[str],
        *,
        include: str | None = None,
        exclude: str | None = None,
        strict: bool = True,
        max_redirect: int = 10,
        max_tries: int = 4,
        max_tasks: int = 100,
        max_per_host: int = DEFAULT_MAX_PER_HOST,
        delay: float = 0.0,
        max_depth: int | None = None,
        max_pages: int | None = None,
        max_time: float | None = None,
        timeout: float | None = 30.0,
        max_size: int = 10 * 1024 * 1024,
        robots: bool = True,
        sitemaps: bool = True,
        user_agent: str = DEFAULT_USER_AGENT,
        retry_backoff: float = 1.0,
        max_retry_wait: float = 120.0,
        on_record: Callable[[Record], object] | None = None,
        rng: random.Random | None = None,
        parser: str | None = None,
        state: CrawlState | None = None,
        warc: WarcArchive | None = None,
        frontier: SharedFrontier | None = None,
    ) -> None:
        roots = [roots] if isinstance(roots, str) else list(roots)
        if not roots:
            raise ValueError("the crawl needs at least one root URL")
        for root in roots:
            if not is_http_url(root):
                raise ValueError(f"a root must be an http or https URL, got {root!r}")
        for name, value, least in (
            ("max_redirect", max_redirect, 0),
            ("max_tries", max_tries, 1),
            ("max_tasks", max_tasks, 1),
            ("max_per_host", max_per_host, 1),
            ("max_size", max_size, 0),
            ("max_depth", max_depth, 0),
            ("max_pages", max_pages, 1),
        ):
            if value is None and name in ("max_depth", "max_pages"):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
        for name, seconds in (
            ("timeout", timeout),
            ("delay", delay),
            ("max_time", max_time),
            ("retry_backoff", retry_backoff),
            ("max_retry_wait", max_retry_wait),
        ):
            check_delay(seconds, name)
        if frontier is not None and state is not None:
            raise ValueError(
                "a shared frontier keeps the crawl's state itself: it cannot be combined"
                " with a state file"
            )
        # Checked (and a missing selectolax named) here, not at the first page.
        extract_links("", roots[0], parser=parser)
        self.parser = parser or default_parser()
        if not user_agent or any(ch in user_agent for ch in "\r\n"):
            raise ValueError(f"user_agent must be one non-empty line, got {user_agent!r}")
        self.roots = [normalize_url(root) for root in roots]
        self.scope = Scope(self.roots, strict=strict, include=include, exclude=exclude)
        # Resolves the pages' hrefs to in-scope links, remembering them across pages.
        self._links = LinkResolver(keep=self.scope.allows, keep_host=self.scope.allows_host)
        self.max_redirect = max_redirect
        self.max_tries = max_tries
        self.max_tasks = max_tasks
        self.max_per_host = max_per_host
        self.delay = delay
        self.max_depth = max_depth
        self.max_pages = max_pages
        self.max_time = max_time
        self.timeout = timeout
        self.max_size = max_size
        self.obey_robots = robots
        self.read_sitemaps = sitemaps
        # A sitemap is read whole before it is parsed: the protocol's bound, or less.
        self._sitemap_max_size = min(max_size, SITEMAP_MAX_SIZE)
        self.user_agent = user_agent
        self.retry_backoff = retry_backoff
        self.max_retry_wait = max_retry_wait
        self.on_record = on_record
        self._state = state
        self._warc = warc
        self._shared = frontier
        # Shared: the URLs this process put on the frontier when it joined.
        self._seeds: list[SavedJob] = []
        # Shared: the leases of URLs being visited now (given back if the crawl stops).
        self._leases: dict[str, Lease] = {}
        self.leases_lost = 0
        """Shared: URLs whose lease expired before their ack (another worker redid them)."""
        self.leases_unreleased = 0
        """Shared: leases the stopped crawl could not give back (they expire instead)."""
        self._rng = rng or random.Random()
        self.records: list[Record] = []
        # Every URL ever put on the frontier (so each is fetched at most once).
        self.seen: set[str] = set()
        self.sitemaps: list[Record] = []
        """One record per sitemap fetched, apart from the pages' (``num_urls``: its entries)."""
        # Every sitemap URL ever put on the frontier, and the origins whose sitemaps we read.
        self._sitemaps_seen: set[str] = set()
        self._sitemap_origins = {origin(root) for root in self.roots} if sitemaps else set()
        self.disallowed: list[str] = []
        """URLs left out because robots.txt disallows them (or could not be read)."""
        self.robots_notes: dict[str, str] = {}
        """Per origin, how its robots.txt was decided when not simply read (for the report)."""
        self.too_deep: dict[str, None] = {}
        """In-scope links not followed because they lie deeper than ``max_depth`` (ordered)."""
        self.stop_reason: str | None = None
        """``LIMIT_MAX_PAGES`` or ``LIMIT_MAX_TIME`` if a limit ended the crawl, else None."""
        self.left: list[str] = []
        """URLs still in the frontier (or in flight) when a limit stopped the crawl."""
        self.errors = 0
        self.retries = 0
        """Requests sent again after a failure or a retryable status."""
        self._loop_started: float | None = None
        self._monotonic_started = 0.0
        self._ended: float | None = None
        self._claimed = 0
        self._in_flight: dict[str, _Job] = {}
        self._hosts: dict[str, HostGate] = {}
        # Origins whose connections fail (found fetching robots.txt): origin -> error.
        self._unreachable: dict[str, BaseException] = {}
        self._robots: dict[str, Future[RobotsPolicy]] = {}
        # robots.txt fetches under way: origin -> what the display shows.
        self._robots_fetching: dict[str, str] = {}
        self._frontier: Queue[_Job] | None = None
        self._client: Client | None = None
        # Parses the big pages, started at the first (see _PARSE_IN_THREAD_BYTES).
        self._parse_thread: ThreadPoolExecutor | None = None
        # Set when the crawl can't go on (on_record raised): crawl() raises it.
        self._failed: Future[None] | None = None

    # --- progress ---------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """URLs being fetched now."""
        return len(self._in_flight)

    def progress(self) -> ProgressSnapshot:
        """How the crawl stands right now."""
        queued = self._frontier.qsize() if self._frontier is not None else 0
        waits = {key: gate.wait_left for key, gate in self._hosts.items() if gate.waiting}
        return ProgressSnapshot(
            done=len(self.records),
            queued=queued,
            in_flight=self.in_flight,
            errors=self.errors,
            elapsed=self.wall_time,
            retries=self.retries,
            host_waits={key: wait for key, wait in waits.items() if wait > 0},
            robots=dict(self._robots_fetching),
        )

    @property
    def wall_time(self) -> float:
        """Seconds since the crawl started (until it ended, once it has)."""
        if self._loop_started is None:
            return 0.0
        if self._ended is not None:
            return self._ended - self._loop_started
        try:
            return get_running_loop().time() - self._loop_started
        except RuntimeError:  # the loop was torn down mid-crawl (Ctrl-C)
            return time.monotonic() - self._monotonic_started

    def report(self) -> CrawlReport:
        """What the end-of-crawl report says about this crawl (so far)."""
        return CrawlReport(
            records=list(self.records),
            wall_time=self.wall_time,
            roots=list(self.roots),
            stop_reason=self.stop_reason,
            left=list(self.left),
            skipped={"robots.txt": list(self.disallowed), LIMIT_MAX_DEPTH: list(self.too_deep)},
            robots_notes=dict(self.robots_notes),
            retries=self.retries,
            sitemaps=list(self.sitemaps),
            hosts={
                key: HostActivity(gate.requests, gate.held_back, gate.back_offs)
                for key, gate in self._hosts.items()
            },
        )

    # --- the crawl ------------------------------------------------------------------------

    async def crawl(self) -> list[Record]:
        """Crawl until every reachable in-scope URL has a record, or a limit stops it."""
        loop = get_running_loop()
        self._loop_started = loop.time()
        self._monotonic_started = time.monotonic()
        self._frontier = Queue()
        if self._state is not None:
            self._restore(self._state.load(self.roots))
        for root in self.roots:
            self._add(root, depth=0, referrer=None, redirects_left=self.max_redirect)
        if not self.obey_robots:
            # No robots.txt to name the sitemaps: look where they usually are.
            for key in sorted(self._sitemap_origins):
                self._queue_sitemaps(key, [], None)
        async with Client(
            max_connections=self.max_tasks,
            max_per_host=self.max_per_host,
            connect_timeout=(
                _MAX_CONNECT_TIMEOUT if self.timeout is None
                else min(self.timeout, _MAX_CONNECT_TIMEOUT)
            ),
            read_timeout=self.timeout,
            timeout=self.timeout,
            max_body_size=self.max_size,
            user_agent=self.user_agent,
        ) as client:
            self._client = client
            self._failed = loop.create_future()
            if self._shared is not None:
                await self._shared.join(self.roots, self._seeds)
                work = self._work_shared
            else:
                work = self._work
            workers = [
                create_task(work(), name=f"crawl-worker-{i}") for i in range(self.max_tasks)
            ]
            if self._shared is not None:
                finished = create_task(_all_of(workers))
                helper = create_task(self._keep_alive())
            else:
                finished = create_task(self._frontier.join())
                helper = create_task(self._save_state_periodically())
            try:
                done, _ = await wait(
                    [finished, self._failed], timeout=self.max_time, return_when=FIRST_COMPLETED
                )
                if not done:
                    self._stop(LIMIT_MAX_TIME)
            finally:
                for task in [*workers, finished, helper]:
                    task.cancel()
                await gather(*workers, finished, helper, return_exceptions=True)
                self._client = None
                if self._parse_thread is not None:
                    # Its page, if any, is the page of a worker cancelled above.
                    self._parse_thread.shutdown(wait=False, cancel_futures=True)
                    self._parse_thread = None
                self._ended = loop.time()
                self._save_state()
                await self._release_leases()
            # Whatever did not finish is left: fetches cut short, then the frontier.
            self.left.extend(self._in_flight)
            self._in_flight.clear()
            while not self._frontier.empty():
                self.left.append(self._frontier.get_nowait().url)
            if self._failed.done():
                self._failed.result()  # raises what stopped the crawl
        return self.records

    def _restore(self, saved: Snapshot) -> None:
        """Take up the crawl a state file holds: its frontier, seen sets and outcomes."""
        assert self._frontier is not None
        self.seen |= saved.seen
        self._sitemaps_seen |= saved.sitemaps_seen
        self.records.extend(saved.records)
        self.errors += sum(record.exception is not None for record in saved.records)
        self.sitemaps.extend(saved.sitemaps)
        self.disallowed.extend(saved.disallowed)
        self.too_deep.update(dict.fromkeys(saved.too_deep))
        for job in saved.frontier:
            self._frontier.put_nowait(
                _Job(job.url, job.depth, job.referrer, job.redirects_left, job.is_sitemap)
            )

    async def _save_state_periodically(self) -> None:
        if self._state is None:
            return
        while True:
            await sleep(_STATE_COMMIT_INTERVAL)
            self._save_state()

    def _save_state(self) -> None:
        """Commit the state's pending changes, then hand on the records that made durable."""
        if self._state is None:
            return
        try:
            if self._warc is not None and self._state.pending:
                # The archive's records up to here are exactly those of URLs this
                # commit marks done: a resumed crawl cuts the file back to it.
                self._state.note_warc_length(self._warc.flush())
            records = self._state.commit()
        except Exception as exc:
            self._fail(exc)
            raise
        for record in records:
            self._hand_on(record)

    def _fail(self, exc: BaseException) -> None:
        """Stop the crawl: crawl() raises ``exc``."""
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(exc)

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason

    def _add(
        self,
        url: str,
        *,
        depth: int,
        referrer: str | None,
        redirects_left: int,
        is_sitemap: bool = False,
        found_by: _Job | None = None,
    ) -> bool:
        """Put ``url`` on the frontier unless it was seen or is too deep; whether it is new.

        With a shared frontier the URL goes with the ack of ``found_by``, the job whose
        page links to it (or with this process's seeds if None); ``seen`` is then this
        process's cache of the shared seen set.
        """
        seen = self._sitemaps_seen if is_sitemap else self.seen
        if url in seen:
            return False
        if not is_sitemap and self.max_depth is not None and depth > self.max_depth:
            if url not in self.too_deep and self._state is not None:
                self._state.too_deep(url, depth)
            if found_by is not None and self._shared is not None:
                found_by.found_too_deep.append(url)
            self.too_deep[url] = None
            return False
        self.too_deep.pop(url, None)
        seen.add(url)
        if self._shared is not None:
            saved = SavedJob(url, depth, referrer, redirects_left, is_sitemap)
            (self._seeds if found_by is None else found_by.found).append(saved)
            return True
        assert self._frontier is not None
        self._frontier.put_nowait(_Job(url, depth, referrer, redirects_left, is_sitemap))
        if self._state is not None:
            self._state.queued(SavedJob(url, depth, referrer, redirects_left, is_sitemap))
            if self._state.pending >= _STATE_COMMIT_CHANGES:
                self._save_state()
        return True

    def _queue_sitemaps(self, key: str, declared: list[str], found_by: _Job | None) -> None:
        """Queue the sitemaps of origin ``key`` if it is a root's: those its robots.txt
        ``declared``, or its ``/sitemap.xml`` when it declared none (found by the job
        ``found_by`` whose visit read that robots.txt)."""
        if key not in self._sitemap_origins:
            return
        for location in declared or [key + _DEFAULT_SITEMAP_PATH]:
            try:
                url = normalize_url(location, base=key + "/")
            except ValueError as exc:
                self.sitemaps.append(_sitemap_error(location, f"InvalidURL: {exc}"))
                continue
            if self.scope.allows_host(url):
                self._add(
                    url,
                    depth=0,
                    referrer=robots_url(key) if declared else None,
                    redirects_left=self.max_redirect,
                    is_sitemap=True,
                    found_by=found_by,
                )
            else:
                self.sitemaps.append(_sitemap_error(url, "SitemapError: not on a host in scope"))

    async def _work(self) -> None:
        assert self._frontier is not None
        while True:
            job = await self._frontier.get()
            try:
                if self.stop_reason is not None:
                    self.left.append(job.url)
                else:
                    await self._visit(job)
            finally:
                self._frontier.task_done()

    async def _work_shared(self) -> None:
        """A worker of a shared crawl: claim, visit, acknowledge, until the crawl is done."""
        frontier = self._shared
        assert frontier is not None
        idle = _POLL_FIRST
        try:
            while self.stop_reason is None:
                claim = await frontier.claim()
                if claim == DONE:
                    return
                if claim == WAIT:
                    # Other workers hold leases: their pages may still add URLs.
                    await sleep(idle)
                    idle = min(idle * 2, _POLL_MOST)
                    continue
                assert isinstance(claim, Lease)
                idle = _POLL_FIRST
                self._leases[claim.token] = claim
                saved = claim.job
                job = _Job(
                    saved.url, saved.depth, saved.referrer, saved.redirects_left, saved.is_sitemap
                )
                outcome, record = await self._run_job(job)
                if outcome == _LEFT:
                    self.left.append(job.url)
                    return  # the lease is given back when the crawl ends
                await self._acknowledge(frontier, claim, job, outcome, record)
        except Exception as exc:
            # The frontier failed (Redis gone for good, the crawl's keys lost): stop.
            self._fail(exc)

    async def _acknowledge(
        self,
        frontier: SharedFrontier,
        claim: Lease,
        job: _Job,
        outcome: Outcome,
        record: Record | None,
    ) -> None:
        """Acknowledge ``job`` to the shared frontier, then hand its record on.

        A worker stopped (Ctrl-C, SIGTERM) while its ack is under way waits for the ack
        (briefly): had the ack committed and the record not been handed on, the URL
        would be done in the frontier and missing from this worker's ``--json``.
        """
        settled = Settlement(outcome, record, job.found, job.found_too_deep, job.archived)
        ack = create_task(frontier.ack(claim, settled))
        try:
            await shield(ack)
        finally:
            if not ack.done():
                await wait([ack], timeout=_RELEASE_TIMEOUT)
            if ack.done() and not ack.cancelled() and ack.exception() is None:
                del self._leases[claim.token]
                committed = ack.result()
                if outcome == DISALLOWED:
                    self.disallowed.append(job.url)
                elif committed is None:
                    self.leases_lost += 1  # another worker redoes it; no record here
                elif outcome == SITEMAP:
                    self.sitemaps.append(committed)
                else:
                    self._finish(committed)

    async def _keep_alive(self) -> None:
        """Tell the shared frontier this process lives, and let it reclaim dead leases."""
        frontier = self._shared
        assert frontier is not None
        if frontier.keep_alive_interval is None:
            return
        try:
            while True:
                await sleep(frontier.keep_alive_interval)
                await frontier.keep_alive()
        except Exception as exc:
            self._fail(exc)

    async def _release_leases(self) -> None:
        """Give the URLs this process was visiting back to the shared frontier."""
        if self._shared is None or not self._leases:
            return
        leases, self._leases = list(self._leases.values()), {}
        try:
            async with timeout(_RELEASE_TIMEOUT):
                await self._shared.release(leases)
        except TimeoutError:
            # Not lost: the leases return to the frontier when they expire.
            self.leases_unreleased = len(leases)

    async def _visit(self, job: _Job) -> None:
        outcome, record = await self._run_job(job)
        if outcome == DISALLOWED:
            self.disallowed.append(job.url)
            if self._state is not None:
                self._state.disallowed(job.url)
        elif outcome == _LEFT:
            self.left.append(job.url)
        elif outcome == SITEMAP:
            assert record is not None
            self.sitemaps.append(record)
            if self._state is not None:
                self._state.fetched(record, is_sitemap=True)
        else:
            assert record is not None
            self._finish(record)

    async def _run_job(self, job: _Job) -> tuple[Outcome | Literal["left"], Record | None]:
        """Visit ``job``: its outcome (``DISALLOWED``, ``_LEFT``, ``SITEMAP``, ``FETCHED``)
        and its record, its exchanges archived."""
        if self.obey_robots and not (await self._robots_for(job)).allowed(job.url):
            return DISALLOWED, None
        if self.max_pages is not None and self._claimed >= self.max_pages:
            self._stop(LIMIT_MAX_PAGES)
            return _LEFT, None
        if not job.is_sitemap:
            self._claimed += 1
        self._in_flight[job.url] = job
        try:
            record = await self._fetch(job)
        except CancelledError:
            raise  # the URL stays in _in_flight: crawl() lists it as left
        except Exception as exc:  # a bug of ours must not stop the crawl or lose the URL
            record = Record(url=job.url, exception=f"{type(exc).__name__}: {exc}")
            record.error_kind = "bug"
        del self._in_flight[job.url]
        if self._warc is not None:
            metadata = {"hopsFromSeed": str(job.depth)}
            if job.referrer is not None:
                metadata["via"] = job.referrer
            start = self._warc.flush() if self._shared is not None else 0
            for exchange in job.exchanges:
                self._warc.archive(exchange, metadata)
            if self._shared is not None:
                job.archived = (start, self._warc.flush())
        return (SITEMAP if job.is_sitemap else FETCHED), record

    def _finish(self, record: Record) -> None:
        if record.exception is not None:
            self.errors += 1
        self.records.append(record)
        if self._state is not None:
            self._state.fetched(record)  # handed on once committed
        else:
            self._hand_on(record)

    def _hand_on(self, record: Record) -> None:
        if self.on_record is not None:
            try:
                self.on_record(record)
            except Exception as exc:
                # Losing records silently (a full disk under --json, say) is worse than
                # stopping: the crawl ends and crawl() raises this.
                self._fail(exc)

    # --- fetching -------------------------------------------------------------------------

    def _host(self, url: str) -> HostGate:
        key = origin(url)
        gate = self._hosts.get(key)
        if gate is None:
            gate = self._hosts[key] = HostGate(
                self.max_per_host, self.delay, rng=self._rng, ledger=self._shared, key=key
            )
        return gate

    def _retry_wait(self, tries: int) -> float:
        return backoff_delay(tries, self.retry_backoff, self.max_retry_wait, self._rng)

    async def _fetch(self, job: _Job) -> Record:
        loop = get_running_loop()
        started = loop.time()
        assert self._loop_started is not None
        record = Record(
            url=job.url,
            referrer=job.referrer,
            depth=job.depth,
            started=started - self._loop_started,
        )
        key = origin(job.url)
        gate = self._host(job.url)
        unreachable = self._unreachable.get(key)
        if unreachable is not None:
            # robots.txt of this origin already failed to connect, after its retries.
            record.exception = f"{type(unreachable).__name__}: {unreachable}"
            record.error_kind = error_kind(unreachable)
            return record
        while True:
            record.status = None
            record.exception = record.error_kind = None
            wait_host = 0.0
            wait_url = 0.0
            async with gate.slot():
                # The one place a request to the server is counted. max_tries bounds the
                # requests that reach the server, so the HTTP client's transparent retry
                # of a stale keep-alive connection is allowed only when it fits, and the
                # requests it sent beyond the first are counted too.
                record.tries += 1
                try:
                    retry_after = await self._fetch_once(
                        job, record, retry_stale=record.tries < self.max_tries
                    )
                except _FetchFailed as failed:
                    exc = failed.__cause__
                    assert exc is not None
                    record.tries += _extra_requests(exc)
                    record.exception = f"{type(exc).__name__}: {exc}"
                    record.error_kind = error_kind(exc)
                    if not is_retryable_error(exc):
                        break
                    wait_url = self._retry_wait(record.tries)
                else:
                    if record.status not in RETRYABLE_STATUSES:
                        break
                    if retry_after is not None and retry_after > self.max_retry_wait:
                        # Asked to come back later than we will wait: give up on the
                        # URL, and leave the host alone for as long as we would wait.
                        gate.back_off(self.max_retry_wait)
                        break
                    if retry_after is not None or record.status in (429, 503):
                        # The server is overloaded or said when to return: the whole
                        # host waits, not only this URL.
                        wait_host = (
                            retry_after
                            if retry_after is not None
                            else self._retry_wait(record.tries)
                        )
                    else:
                        wait_url = self._retry_wait(record.tries)
            if record.tries >= self.max_tries:
                break
            self.retries += 1
            if wait_host:
                gate.back_off(wait_host)
            if wait_url:
                await sleep(wait_url)
        record.elapsed = loop.time() - started
        return record

    async def _fetch_once(self, job: _Job, record: Record, *, retry_stale: bool) -> float | None:
        """One request for ``job``, its outcome written to ``record``; the Retry-After
        seconds the response asked for, if any. A failure raises ``_FetchFailed``."""
        assert self._client is not None
        deadline = timeout(self.timeout)
        body_limit = self._sitemap_max_size if job.is_sitemap else self.max_size
        try:
            async with (
                deadline,
                # The deadline bounds the whole fetch: the client needs none of its own.
                self._client.stream(
                    "GET",
                    job.url,
                    max_body_size=body_limit,
                    retry_stale=retry_stale,
                    timeout=None,
                ) as response,
            ):
                record.tries += response.requests_sent - 1
                record.status = response.status
                record.content_type = response.content_type
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                await self._take_response(job, record, response)
                return retry_after
        except TimeoutError as exc:
            if not deadline.expired():
                raise _FetchFailed() from exc
            overran = ReadTimeout(
                f"fetching {job.url} took longer than the timeout of {self.timeout} s"
                f" ({record.size} body bytes received)"
            )
            raise _FetchFailed() from overran
        except ResponseTooLarge as exc:
            record.size = max(record.size, 0)
            raise _FetchFailed() from exc
        except (HTTPError, OSError, SitemapError) as exc:
            raise _FetchFailed() from exc

    async def _take_response(self, job: _Job, record: Record, response: Response) -> None:
        arrived = datetime.now(UTC) if self._warc is not None else None  # for the archive
        length = _content_length(response)
        media_type = (record.content_type or "").split(";", 1)[0].strip().lower()
        if response.status in _REDIRECTS or response.status != 200 or not (
            job.is_sitemap or media_type in _HTML_TYPES
        ):
            # Nothing to parse: read a small body to keep the connection (a redirect's
            # only when archiving it), skip a big one (leaving the stream unread closes
            # the connection). Its size is no error.
            chunks: list[bytes] | None = None
            drain = response.status not in _REDIRECTS or self._warc is not None
            if drain and length is not None and length <= _DRAIN_LIMIT:
                chunks = await _read_body(response, record)
            record.size = response.bytes_received
            self._keep_exchange(job, response, arrived, chunks)
            if response.status in _REDIRECTS:
                self._follow_redirect(job, record, response.headers.get("location"))
            return
        body_limit = self._sitemap_max_size if job.is_sitemap else self.max_size
        if length is not None and length > body_limit:
            raise ResponseTooLarge(
                f"Content-Length {length} is over the limit of {body_limit} bytes;"
                " the body was not read",
                body_limit,
            )
        chunks = await _read_body(response, record)
        self._keep_exchange(job, response, arrived, chunks)
        body = b"".join(chunks)
        if job.is_sitemap:
            self._take_sitemap(job, record, body)
            return
        if len(body) >= _PARSE_IN_THREAD_BYTES[self.parser]:
            if self._parse_thread is None:
                self._parse_thread = ThreadPoolExecutor(1, thread_name_prefix="treadle-parse")
            record.encoding, links = await get_running_loop().run_in_executor(
                self._parse_thread, self._read_page, body, record.content_type, job.url
            )
        else:
            record.encoding, links = self._read_page(body, record.content_type, job.url)
        record.num_urls = len(links)
        new_urls = 0
        for link in links:
            if link not in self.seen:  # the most common answer, found without a call
                new_urls += self._add(
                    link,
                    depth=job.depth + 1,
                    referrer=job.url,
                    redirects_left=self.max_redirect,
                    found_by=job,
                )
        record.num_new_urls = new_urls

    def _keep_exchange(
        self, job: _Job, response: Response, arrived: datetime | None, chunks: list[bytes] | None
    ) -> None:
        """Keep the exchange for the archive (``chunks`` None: the body was not read)."""
        if self._warc is None:
            return
        assert arrived is not None
        job.exchanges.append(
            Exchange(
                url=job.url,
                request_head=response.request_head,
                date=arrived,
                http_version=response.http_version,
                status=response.status,
                reason=response.reason,
                headers=list(response.headers.items()),
                body=b"".join(chunks or ()),
                body_complete=chunks is not None,
            )
        )

    def _read_page(
        self, body: bytes, content_type: str | None, url: str
    ) -> tuple[str, list[str]]:
        """The encoding of an HTML page and its in-scope links (pure: any thread may run it)."""
        encoding, page = read_html(body, content_type, parser=self.parser)
        return encoding, self._links.resolve(page, url)

    def _take_sitemap(self, job: _Job, record: Record, body: bytes) -> None:
        """Queue what the sitemap in ``body`` lists: pages in scope, or (an index) sitemaps."""
        sitemap = read_sitemap(body, self._sitemap_max_size)
        if sitemap.is_index and job.depth > 0:
            raise SitemapError(
                "a sitemap index listed by a sitemap index: the protocol allows one level"
            )
        urls = []
        for location in sitemap.locations:
            try:
                urls.append(normalize_url(location, base=job.url))
            except ValueError:
                continue  # not a URL: skipped, as a bad href is
        if sitemap.is_index:
            urls = [url for url in urls if self.scope.allows_host(url)]
        else:
            urls = [url for url in urls if self.scope.allows(url)]
        record.num_urls = len(urls)
        record.num_new_urls = sum(
            self._add(
                url,
                depth=job.depth + 1 if sitemap.is_index else 1,
                referrer=job.url,
                redirects_left=self.max_redirect,
                is_sitemap=sitemap.is_index,
                found_by=job,
            )
            for url in urls
        )

    def _follow_redirect(self, job: _Job, record: Record, location: str | None) -> None:
        if not location:
            return
        try:
            record.next_url = normalize_url(location, base=job.url)
        except ValueError as exc:
            record.exception = f"InvalidURL: bad redirect Location {location!r}: {exc}"
            record.error_kind = "InvalidURL"
            return
        in_scope = self.scope.allows_host if job.is_sitemap else self.scope.allows
        if job.redirects_left > 0 and in_scope(record.next_url):
            record.num_urls = 1
            record.num_new_urls = int(
                self._add(
                    record.next_url,
                    depth=job.depth,
                    referrer=job.url,
                    redirects_left=job.redirects_left - 1,
                    is_sitemap=job.is_sitemap,
                    found_by=job,
                )
            )

    # --- robots.txt -----------------------------------------------------------------------

    async def _robots_for(self, job: _Job) -> RobotsPolicy:
        """The robots.txt policy of the origin of ``job``'s URL, fetched once and shared."""
        key = origin(job.url)
        policy = self._robots.get(key)
        if policy is None:
            policy = self._robots[key] = get_running_loop().create_future()
            try:
                policy.set_result(await self._fetch_robots(key))
            except BaseException as exc:
                # Whoever else waits for this origin's policy must not hang: they crawl
                # as if there were no robots.txt. A failure that is not a cancellation
                # is a bug of ours: the report says so rather than hiding it.
                if not policy.done():
                    policy.set_result(RobotsPolicy.allow_all(self.user_agent))
                if isinstance(exc, CancelledError):
                    raise
                self.robots_notes[key] = (
                    f"checking robots.txt failed ({type(exc).__name__}: {exc}; "
                    "a bug in treadle): crawled as if allowed"
                )
            finally:
                self._robots_fetching.pop(key, None)
            self._queue_sitemaps(key, policy.result().sitemaps, job)
        return await policy

    async def _fetch_robots(self, key: str) -> RobotsPolicy:
        """Fetch and decide one origin's robots.txt (RFC 9309, section 2.3.1).

        4xx: no rules. 5xx (after retries, as for pages): complete disallow. A timeout
        or reset on every try: the file is unreachable, so complete disallow as well.
        A connection that fails (DNS, refused, TLS, no answer): the origin is marked
        unreachable, so each of its pages gets an error record without a request.
        """
        assert self._client is not None
        url = robots_url(key)
        gate = self._host(url)
        tries = 0
        while True:
            tries += 1
            self._robots_fetching[key] = f"try {tries}/{self.max_tries}"
            failure: BaseException | None = None
            response: Response | None = None
            async with gate.slot():
                try:
                    async with timeout(self.timeout):
                        response = await self._client.get(
                            url,
                            follow_redirects=True,
                            max_body_size=_ROBOTS_MAX_SIZE,
                            retry_stale=tries < self.max_tries,
                        )
                except ResponseTooLarge as exc:
                    failure = exc
                except (HTTPError, OSError, TimeoutError) as exc:
                    failure = exc
            if failure is not None:
                tries += _extra_requests(failure)
                kind = error_kind(failure)
                if is_retryable_error(failure) and tries < self.max_tries:
                    self.retries += 1
                    self._robots_fetching[key] = f"{kind}, waiting"
                    await sleep(self._retry_wait(tries))
                    continue
                if isinstance(failure, ConnectError):
                    self._unreachable[key] = failure
                    self.robots_notes[key] = f"unreachable ({kind}): its pages are errors"
                    return RobotsPolicy.allow_all(self.user_agent)
                if isinstance(failure, ResponseTooLarge):
                    self.robots_notes[key] = "larger than 500 KiB: no rules read"
                    return RobotsPolicy.allow_all(self.user_agent)
                self.robots_notes[key] = f"unreachable ({kind}): everything disallowed"
                return RobotsPolicy.disallow_all(self.user_agent)
            assert response is not None
            if response.status in RETRYABLE_STATUSES and tries < self.max_tries:
                self.retries += 1
                retry_after = parse_retry_after(response.headers.get("retry-after"))
                wait_for = retry_after if retry_after is not None else self._retry_wait(tries)
                self._robots_fetching[key] = f"{response.status}, waiting"
                gate.back_off(min(wait_for, self.max_retry_wait))
                continue
            policy = RobotsPolicy.from_response(response.status, response.content, self.user_agent)
            if 500 <= response.status < 600 or response.status == 429:
                self.robots_notes[key] = f"answered {response.status}: everything disallowed"
                policy = RobotsPolicy.disallow_all(self.user_agent)
            if policy.crawl_delay is not None and policy.crawl_delay > gate.delay:
                gate.delay = policy.crawl_delay
            return policy


async def _all_of(tasks: list[Task[None]]) -> None:
    """Wait for every task in ``tasks`` to end."""
    await gather(*tasks)


def _extra_requests(error: BaseException) -> int:
    """The requests a failed fetch wrote beyond the one already counted for it."""
    return max(0, error.requests_sent - 1) if isinstance(error, HTTPError) else 0


def _sitemap_error(url: str, exception: str) -> Record:
    """The record of a sitemap that could not even be requested."""
    return Record(url=url, exception=exception, error_kind="sitemap")


def _content_length(response: Response) -> int | None:
    value = response.headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


async def _read_body(response: Response, record: Record) -> list[bytes]:
    """The body's chunks as they arrive, the record's size kept current (a timeout
    part-way leaves it saying how much came)."""
    chunks = []
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        record.size = response.bytes_received
    record.size = response.bytes_received
    return chunks
