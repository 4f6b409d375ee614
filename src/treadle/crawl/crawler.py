"""The crawler: a frontier queue, ``max_tasks`` worker tasks, a seen-set, and a join.

Each worker takes a URL from the frontier, fetches it with treadle's HTTP client
(retrying connection failures and timeouts with a short backoff), writes exactly one
``Record`` for it, and puts the in-scope links it has not seen onto the frontier. The
crawl ends when the frontier is empty and every worker is idle. Politeness: robots.txt
is fetched once per origin and obeyed, with its Crawl-delay; ``max_per_host`` bounds
the connections to one host. Crawler layer: imports the HTTP client and below.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from treadle.combinators import FIRST_COMPLETED, gather, wait
from treadle.crawl.links import decode_html, extract_links
from treadle.crawl.records import Record
from treadle.crawl.report import ProgressSnapshot
from treadle.crawl.robots import RobotsPolicy, robots_url
from treadle.crawl.urls import Scope, is_http_url, normalize_url, origin
from treadle.errors import (
    CancelledError,
    ConnectError,
    HTTPError,
    ReadTimeout,
    ResponseTooLarge,
)
from treadle.futures import Future
from treadle.http import Client
from treadle.locks import Lock, Semaphore
from treadle.loop import get_running_loop
from treadle.queues import Queue
from treadle.sleeping import check_delay, sleep
from treadle.tasks import create_task

__all__ = ["DEFAULT_USER_AGENT", "Crawler"]

DEFAULT_USER_AGENT = "treadle-crawler/0.1 (+https://github.com/treadle)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# Failures worth another try: the next attempt may well succeed.
_RETRYABLE = (ConnectError, ReadTimeout, ConnectionError, TimeoutError)


@dataclass(slots=True)
class _Host:
    """Per-host politeness state: the connection limit and the Crawl-delay pacing."""

    limit: Semaphore
    pacing: Lock
    next_request: float = 0.0


class Crawler:
    """Crawls from ``roots`` and keeps one ``Record`` per finished URL in ``records``.

    ``strict`` scope allows the roots' hosts and their ``www.`` variants; lenient
    scope hosts sharing the last two labels. ``exclude`` is a regex of URLs to skip.
    ``max_tries`` bounds the requests sent per URL (the HTTP client's own retries
    included), ``max_redirect`` the redirects followed from one URL, ``max_size`` the
    bytes read of one body. ``on_record`` is called with each record as it is made (the
    CLI writes JSON Lines from it).
    """

    def __init__(
        self,
        roots: str | Iterable[str],
        *,
        exclude: str | None = None,
        strict: bool = True,
        max_redirect: int = 10,
        max_tries: int = 4,
        max_tasks: int = 100,
        max_per_host: int | None = None,
        timeout: float | None = 30.0,
        max_size: int = 10 * 1024 * 1024,
        robots: bool = True,
        user_agent: str = DEFAULT_USER_AGENT,
        retry_backoff: float = 0.1,
        on_record: Callable[[Record], object] | None = None,
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
            ("max_size", max_size, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"{name} must be an integer of at least {least}, got {value!r}")
        if max_per_host is not None and (not isinstance(max_per_host, int) or max_per_host < 1):
            raise ValueError(f"max_per_host must be a positive integer, got {max_per_host!r}")
        check_delay(timeout, "timeout")
        check_delay(retry_backoff, "retry_backoff")
        self.roots = [normalize_url(root) for root in roots]
        self.scope = Scope(self.roots, strict=strict, exclude=exclude)
        self.max_redirect = max_redirect
        self.max_tries = max_tries
        self.max_tasks = max_tasks
        self.max_per_host = max_tasks if max_per_host is None else max_per_host
        self.timeout = timeout
        self.max_size = max_size
        self.obey_robots = robots
        self.user_agent = user_agent
        self.retry_backoff = retry_backoff
        self.on_record = on_record
        self.records: list[Record] = []
        # Every URL ever put on the frontier (so each is fetched at most once).
        self.seen: set[str] = set()
        # URLs left out because robots.txt disallows them.
        self.disallowed: list[str] = []
        self.in_flight = 0
        self.errors = 0
        self._started = 0.0
        self._hosts: dict[str, _Host] = {}
        self._robots: dict[str, Future[RobotsPolicy]] = {}
        self._frontier: Queue[tuple[str, int]] | None = None
        self._client: Client | None = None
        # Set when the crawl can't go on (on_record raised): crawl() raises it.
        self._failed: Future[None] | None = None

    # --- progress ---------------------------------------------------------------------

    def progress(self) -> ProgressSnapshot:
        """How the crawl stands right now."""
        queued = self._frontier.qsize() if self._frontier is not None else 0
        return ProgressSnapshot(
            done=len(self.records),
            queued=queued,
            in_flight=self.in_flight,
            errors=self.errors,
            elapsed=time.monotonic() - self._started if self._started else 0.0,
        )

    @property
    def wall_time(self) -> float:
        """Seconds since the crawl started."""
        return time.monotonic() - self._started if self._started else 0.0

    # --- the crawl ------------------------------------------------------------------------

    async def crawl(self) -> list[Record]:
        """Crawl until every reachable in-scope URL has a record; the records."""
        self._started = time.monotonic()
        self._frontier = Queue()
        for root in self.roots:
            self._add(root, self.max_redirect)
        async with Client(
            max_connections=self.max_tasks,
            max_per_host=self.max_per_host,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            timeout=self.timeout,
            max_body_size=self.max_size,
            user_agent=self.user_agent,
        ) as client:
            self._client = client
            self._failed = get_running_loop().create_future()
            workers = [
                create_task(self._work(), name=f"crawl-worker-{i}") for i in range(self.max_tasks)
            ]
            joined = create_task(self._frontier.join())
            try:
                await wait([joined, self._failed], return_when=FIRST_COMPLETED)
            finally:
                for task in [*workers, joined]:
                    task.cancel()
                await gather(*workers, joined, return_exceptions=True)
                self._client = None
            if self._failed.done():
                self._failed.result()  # raises what stopped the crawl
        return self.records

    def _add(self, url: str, max_redirect: int) -> bool:
        """Put ``url`` on the frontier unless it was seen; whether it is new."""
        if url in self.seen:
            return False
        self.seen.add(url)
        assert self._frontier is not None
        self._frontier.put_nowait((url, max_redirect))
        return True

    async def _work(self) -> None:
        assert self._frontier is not None
        while True:
            url, max_redirect = await self._frontier.get()
            try:
                await self._visit(url, max_redirect)
            finally:
                self._frontier.task_done()

    async def _visit(self, url: str, max_redirect: int) -> None:
        if self.obey_robots and not (await self._robots_for(url)).allowed(url):
            self.disallowed.append(url)
            return
        self.in_flight += 1
        try:
            record = await self._fetch(url, max_redirect)
        except CancelledError:
            raise
        except Exception as exc:  # a bug of ours must not stop the crawl or lose the URL
            record = Record(url=url, exception=f"{type(exc).__name__}: {exc}")
        finally:
            self.in_flight -= 1
        self._finish(record)

    def _finish(self, record: Record) -> None:
        if record.exception is not None:
            self.errors += 1
        self.records.append(record)
        if self.on_record is not None:
            try:
                self.on_record(record)
            except Exception as exc:
                # Losing records silently (a full disk under --json, say) is worse than
                # stopping: the crawl ends and crawl() raises this.
                if self._failed is not None and not self._failed.done():
                    self._failed.set_exception(exc)

    # --- fetching -------------------------------------------------------------------------

    def _host(self, url: str) -> _Host:
        key = origin(url)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(Semaphore(self.max_per_host), Lock())
        return host

    async def _fetch(self, url: str, max_redirect: int) -> Record:
        started = time.monotonic()
        record = Record(url=url, started=started - self._started)
        host = self._host(url)
        delay = (await self._robots_for(url)).crawl_delay if self.obey_robots else None
        while True:
            try:
                async with host.limit:
                    if delay:
                        await self._pace(host, delay)
                    await self._fetch_once(url, max_redirect, record)
                break
            except _RETRYABLE as exc:
                record.exception = f"{type(exc).__name__}: {exc}"
                if record.tries >= self.max_tries:
                    break
                await sleep(self.retry_backoff * 2 ** (record.tries - 1))
            except ResponseTooLarge as exc:
                record.exception = f"ResponseTooLarge: {exc}"
                record.size = exc.limit
                break
            except HTTPError as exc:
                record.exception = f"{type(exc).__name__}: {exc}"
                break
        record.elapsed = time.monotonic() - started
        return record

    async def _pace(self, host: _Host, delay: float) -> None:
        """Wait until ``delay`` seconds have passed since this host's last request."""
        async with host.pacing:
            loop = get_running_loop()
            wait = host.next_request - loop.time()
            if wait > 0:
                await sleep(wait)
            host.next_request = loop.time() + delay

    async def _fetch_once(self, url: str, max_redirect: int, record: Record) -> None:
        assert self._client is not None
        # max_tries bounds the requests that reach the server, the client's transparent
        # retry of a stale connection included: allow that retry only if it fits.
        retry_stale = self.max_tries - record.tries >= 2
        try:
            response = await self._client.request("GET", url, stream=True, retry_stale=retry_stale)
        except Exception as exc:
            record.tries += _requests_sent(exc)
            raise
        record.tries += response.requests_sent
        async with response:
            record.status = response.status
            record.exception = None
            record.content_type = response.content_type
            if response.status in _REDIRECTS:
                location = response.headers.get("location")
                if location:
                    try:
                        record.next_url = normalize_url(location, base=url)
                    except ValueError as exc:
                        record.exception = f"InvalidURL: bad redirect Location {location!r}: {exc}"
                        return
                    if max_redirect > 0 and self.scope.allows(record.next_url):
                        record.num_urls = 1
                        record.num_new_urls = int(self._add(record.next_url, max_redirect - 1))
                return
            try:
                body = await response.read()
            except ResponseTooLarge:
                record.status = response.status
                raise
            record.size = response.bytes_received
            media_type = (record.content_type or "").split(";", 1)[0].strip().lower()
            if response.status == 200 and media_type in _HTML_TYPES:
                text, record.encoding = decode_html(body, record.content_type)
                links = [link for link in extract_links(text, url) if self.scope.allows(link)]
                record.num_urls = len(links)
                record.num_new_urls = sum(self._add(link, self.max_redirect) for link in links)

    async def _robots_for(self, url: str) -> RobotsPolicy:
        """The robots.txt policy of ``url``'s origin, fetched once and shared."""
        key = origin(url)
        policy = self._robots.get(key)
        if policy is None:
            policy = self._robots[key] = get_running_loop().create_future()
            try:
                policy.set_result(await self._fetch_robots(robots_url(url)))
            except BaseException as exc:
                if not policy.done():
                    policy.set_result(RobotsPolicy.allow_all(self.user_agent))
                if isinstance(exc, CancelledError):
                    raise
        return await policy

    async def _fetch_robots(self, url: str) -> RobotsPolicy:
        assert self._client is not None
        tries = attempt = 0
        while tries < self.max_tries:
            try:
                response = await self._client.get(
                    url, follow_redirects=True, retry_stale=self.max_tries - tries >= 2
                )
            except _RETRYABLE as exc:
                tries += _requests_sent(exc)
                if tries < self.max_tries:
                    await sleep(self.retry_backoff * 2**attempt)
                attempt += 1
                continue
            except HTTPError:
                break
            return RobotsPolicy.from_response(response.status, response.content, self.user_agent)
        # No robots.txt could be had: the convention is to crawl as if there were none.
        return RobotsPolicy.allow_all(self.user_agent)


def _requests_sent(error: BaseException) -> int:
    """The tries a failed request used: the requests it wrote, and at least one."""
    return max(1, error.requests_sent) if isinstance(error, HTTPError) else 1
