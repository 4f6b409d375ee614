"""The crawler a site owner would let in: per-host caps and delays, limits, retries, timeouts.

Each test serves a site of its own on loopback (``tests/crawlsite.py``) and asserts on
the records and on what the server saw: requests at once, the gaps between their
arrivals, requests per URL, headers. Delays, backoff and time limits run on the
virtual clock; its autojump threshold lets loopback I/O land before time jumps.
"""

from __future__ import annotations

import email.utils
import itertools
import socket
import ssl
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from crawlsite import Exchange, Gate, Handler, Site, hang, page, response, sequence, static

import treadle
from treadle.crawl import Record
from treadle.crawl.crawler import DEFAULT_MAX_PER_HOST, DEFAULT_USER_AGENT, PROJECT_URL, Crawler
from treadle.crawl.retries import error_kind, is_retryable_error, parse_retry_after
from treadle.errors import ConnectError, ProtocolError, ReadTimeout, RemoteDisconnected
from treadle.testing import VirtualClock

ROBOTS = "/robots.txt"


@pytest.fixture
def virtual_clock() -> Iterator[VirtualClock]:
    """The plugin's fixture, but real sockets are involved: loopback I/O gets a moment
    to arrive before time jumps ahead."""
    yield VirtualClock(autojump_threshold=0.05)


def by_url(records: list[Record]) -> dict[str, Record]:
    urls = [record.url for record in records]
    assert len(urls) == len(set(urls)), "one record per URL"
    return {record.url: record for record in records}


def arrivals(site: Site, path: str) -> list[float]:
    pairs = zip(site.stats.requests, site.stats.times, strict=True)
    return [t for request, t in pairs if request.target == path]


def page_times(site: Site) -> list[float]:
    return [
        t for r, t in zip(site.stats.requests, site.stats.times, strict=True) if r.target != ROBOTS
    ]


# --- 1. politeness ---------------------------------------------------------------------


async def test_default_per_host_cap_is_what_the_server_sees() -> None:
    gate = Gate()
    async with Site(gate.held_pages(12)) as site, gate.pulsing():
        crawler = Crawler(site.url(), retry_backoff=0)
        records = by_url(await crawler.crawl())
    assert len(records) == 13
    assert site.stats.peak_requests == DEFAULT_MAX_PER_HOST
    assert site.stats.peak_connections <= DEFAULT_MAX_PER_HOST
    agents = {request.header("user-agent") for request in site.stats.requests}
    assert agents == {DEFAULT_USER_AGENT}
    assert "treadle" in DEFAULT_USER_AGENT and treadle.__version__ in DEFAULT_USER_AGENT
    assert f"(+{PROJECT_URL})" in DEFAULT_USER_AGENT


def test_the_user_agent_names_the_homepage_pyproject_declares() -> None:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert project["urls"]["Homepage"] == PROJECT_URL


async def test_delay_spaces_requests_with_jitter_above_the_minimum(
    virtual_clock: VirtualClock,
) -> None:
    pages = [f"/p/{i}" for i in range(6)]
    async with Site({"/": page(*pages)}) as site:
        for path in pages:
            site[path] = page()
        crawler = Crawler(site.url(), delay=2.0, max_per_host=4, user_agent="polite-bot/1")
        await crawler.crawl()
    times = [t for r, t in zip(site.stats.requests, site.stats.times, strict=True)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # robots.txt, the root, /sitemap.xml (a 404 here) and six pages, one after another.
    assert len(gaps) == 8 and site.stats.counts["/sitemap.xml"] == 1
    assert all(2.0 <= gap < 3.05 for gap in gaps), gaps
    assert len({round(gap, 3) for gap in gaps}) > 1, "jittered, not a metronome"
    assert {r.header("user-agent") for r in site.stats.requests} == {"polite-bot/1"}


async def test_crawl_delay_from_robots_txt_wins_when_longer(virtual_clock: VirtualClock) -> None:
    routes: dict[str, Handler] = {
        ROBOTS: static(200, "User-agent: *\nCrawl-delay: 5\n", content_type="text/plain"),
        "/": page("/a", "/b"),
        "/a": page(),
        "/b": page(),
    }
    async with Site(routes) as site:
        await Crawler(site.url(), delay=1.0, sitemaps=False).crawl()
    gaps = [b - a for a, b in itertools.pairwise(page_times(site))]
    assert len(gaps) == 2 and all(5.0 <= gap < 7.55 for gap in gaps), gaps


# --- 2. limits ------------------------------------------------------------------------------


async def test_max_depth_counts_links_from_a_root() -> None:
    routes = {"/": page("/d1"), "/d1": page("/d2"), "/d2": page("/d3"), "/d3": page("/d4")}
    async with Site(routes) as site:
        crawler = Crawler(site.url(), max_depth=2)
        records = by_url(await crawler.crawl())
    assert set(records) == {site.url(p) for p in ("/", "/d1", "/d2")}
    assert [records[site.url(p)].depth for p in ("/", "/d1", "/d2")] == [0, 1, 2]
    assert records[site.url("/d2")].referrer == site.url("/d1")
    assert records[site.url()].referrer is None
    assert list(crawler.too_deep) == [site.url("/d3")]
    assert "/d3" not in site.stats.paths
    assert crawler.stop_reason is None, "a depth bound is scope, not a stop"
    report = crawler.report()
    assert report.skipped["max-depth"] == [site.url("/d3")]
    assert "by --max-depth: 1 URLs" in report.format()


async def test_max_pages_stops_the_crawl_and_names_what_was_left() -> None:
    pages = [f"/p/{i}" for i in range(10)]
    async with Site({"/": page(*pages)}) as site:
        for path in pages:
            site[path] = page()
        crawler = Crawler(site.url(), max_pages=3, max_per_host=1, sitemaps=False)
        records = await crawler.crawl()
    assert len(records) == 3
    assert crawler.stop_reason == "max-pages"
    assert len(site.stats.paths) == 4  # robots.txt and three pages
    assert sorted(crawler.left) == sorted(site.url(p) for p in pages[2:])
    text = crawler.report().format()
    assert "Stopped by --max-pages: 8 URLs left in the frontier" in text


async def test_max_time_stops_the_crawl_and_cuts_fetches_short(virtual_clock: VirtualClock) -> None:
    async with Site({"/": page("/hang", "/ok"), "/hang": hang, "/ok": page()}) as site:
        crawler = Crawler(site.url(), max_time=5.0, timeout=60.0)
        records = by_url(await crawler.crawl())
    assert set(records) == {site.url(), site.url("/ok")}
    assert crawler.stop_reason == "max-time"
    assert crawler.left == [site.url("/hang")], "in flight when time ran out"
    assert 5.0 <= crawler.wall_time < 5.5


async def test_include_keeps_only_matching_urls() -> None:
    routes = {"/": page("/docs/a", "/blog/b", "/docs/skip"), "/docs/a": page()}
    async with Site(routes) as site:
        crawler = Crawler(site.url(), include="/docs/", exclude="skip")
        records = by_url(await crawler.crawl())
    assert set(records) == {site.url(), site.url("/docs/a")}
    assert not any(p.startswith(("/blog", "/docs/skip")) for p in site.stats.paths)


# --- 3. retries -----------------------------------------------------------------------------


def busy(status: int, retry_after: str | None = None) -> Handler:
    headers = [("Retry-After", retry_after)] if retry_after is not None else []
    return static(status, "busy", content_type="text/plain", headers=headers)


async def test_retry_after_seconds_holds_back_the_whole_host(virtual_clock: VirtualClock) -> None:
    routes = {"/": page("/a", "/b"), "/a": sequence(busy(503, "7"), page()), "/b": page()}
    async with Site(routes) as site:
        crawler = Crawler(site.url(), max_per_host=1)
        records = by_url(await crawler.crawl())
    a = records[site.url("/a")]
    assert (a.status, a.tries, a.exception) == (200, 2, None)
    [first, second] = arrivals(site, "/a")
    assert 7.0 <= second - first < 7.5
    [b] = arrivals(site, "/b")
    assert b - first >= 7.0, "the other URL of the host waited too"
    assert crawler.retries == 1
    assert site.stats.counts["/a"] == 2


async def test_retry_after_http_date(virtual_clock: VirtualClock) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    routes = {"/": page("/a"), "/a": sequence(busy(429, when), page())}
    async with Site(routes) as site:
        records = by_url(await Crawler(site.url()).crawl())
    assert records[site.url("/a")].tries == 2
    [first, second] = arrivals(site, "/a")
    assert 25.0 <= second - first <= 31.0


async def test_retryable_status_backs_off_exponentially_up_to_max_tries(
    virtual_clock: VirtualClock,
) -> None:
    routes = {"/": page("/busy"), "/busy": busy(502)}
    async with Site(routes) as site:
        crawler = Crawler(site.url(), max_tries=3, retry_backoff=1.0)
        records = by_url(await crawler.crawl())
    record = records[site.url("/busy")]
    assert (record.status, record.tries, record.status_class) == (502, 3, "5xx")
    assert site.stats.counts["/busy"] == 3, "max_tries requests reach the server, no more"
    times = arrivals(site, "/busy")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.5 <= gaps[0] < 1.55 and 1.0 <= gaps[1] < 3.05, gaps


@pytest.mark.parametrize("status", [404, 403, 501])
async def test_statuses_no_retry_can_fix_are_not_retried(status: int) -> None:
    async with Site({"/": page("/x"), "/x": busy(status)}) as site:
        records = by_url(await Crawler(site.url(), retry_backoff=0).crawl())
    assert records[site.url("/x")].tries == 1
    assert site.stats.counts["/x"] == 1


async def test_retry_after_longer_than_we_wait_gives_up(virtual_clock: VirtualClock) -> None:
    async with Site({"/": page("/x"), "/x": busy(503, "3600")}) as site:
        records = by_url(await Crawler(site.url(), max_retry_wait=60).crawl())
    assert (records[site.url("/x")].status, records[site.url("/x")].tries) == (503, 1)


def test_failures_are_classified_for_retry() -> None:
    def connect_error(cause: BaseException | None, message: str = "x") -> ConnectError:
        error = ConnectError(message)
        error.__cause__ = cause
        return error

    cases = [
        (connect_error(socket.gaierror(-2, "Name or service not known")), "dns", False),
        (connect_error(ConnectionRefusedError(111, "refused")), "refused", False),
        (connect_error(ssl.SSLCertVerificationError("bad cert")), "tls", False),
        (connect_error(None, "connecting to h timed out after 10 s"), "connect-timeout", True),
        (ReadTimeout("slow"), "timeout", True),
        (RemoteDisconnected("gone"), "reset", True),
        (ConnectionResetError(104, "reset"), "reset", True),
        (ProtocolError("garbage"), "protocol", False),
    ]
    for exc, kind, retryable in cases:
        assert (error_kind(exc), is_retryable_error(exc)) == (kind, retryable), exc


def test_parse_retry_after() -> None:
    from datetime import UTC, datetime

    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


# --- 4. timeouts ------------------------------------------------------------------------------


def trickle(total: int, every: float) -> Handler:
    """A body of ``total`` bytes sent one byte per ``every`` seconds."""

    async def handler(exchange: Exchange) -> None:
        length = [("Content-Length", str(total))]
        head = response(200, b"", content_type="text/html", headers=length)
        await exchange.send(head)
        for _ in range(total):
            await treadle.sleep(every)
            await exchange.send(b"x")

    return handler


async def test_timeout_bounds_the_whole_body(virtual_clock: VirtualClock) -> None:
    routes = {"/": page("/trickle"), "/trickle": trickle(1000, 1.0)}
    async with Site(routes) as site:
        records = by_url(await Crawler(site.url(), timeout=5.0, max_tries=1).crawl())
    record = records[site.url("/trickle")]
    assert record.exception is not None and record.exception.startswith("ReadTimeout: ")
    assert "timeout of 5.0 s" in record.exception
    assert (record.error_kind, record.tries, record.status) == ("timeout", 1, 200)
    assert record.status_class == "error" and 0 < record.size < 10
    assert 5.0 <= record.elapsed < 5.5


async def test_robots_txt_that_times_out_is_decided_and_shown(virtual_clock: VirtualClock) -> None:
    seen: list[str] = []
    crawler: Crawler | None = None
    async with Site({ROBOTS: hang, "/": page()}) as site:

        def watch(request: object) -> None:
            assert crawler is not None
            seen.append(crawler.progress().format())

        site.on_request = watch  # type: ignore[assignment]
        crawler = Crawler(site.url(), timeout=2.0, max_tries=2, sitemaps=False)
        records = await crawler.crawl()
    assert records == [] and crawler.disallowed == [site.url()]
    assert site.stats.paths == [ROBOTS, ROBOTS]
    assert "everything disallowed" in crawler.robots_notes[site.origin]
    assert crawler.wall_time < 6.0, "two tries of 2 s and a short backoff"
    assert any("robots.txt: 127.0.0.1" in line and "try 2/2" in line for line in seen), seen
