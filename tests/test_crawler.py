"""The crawler against small sites on loopback: the records it writes, the load it puts on a server.

In the style of the 500 Lines crawler's tests, each test builds a site for itself
(``tests/crawlsite.py``), crawls it, and asserts on the per-URL records and on what
the server saw: which paths, how often, how many requests at once. Held pages wait on
a gate that the test opens when every task is blocked, never on a sleep. The timeout
and Crawl-delay tests use short real delays, as real sockets are involved.
"""

from __future__ import annotations

import gzip
import itertools
import threading
from collections import Counter
from collections.abc import Iterator

import pytest
from crawlsite import (
    HTML,
    Exchange,
    Gate,
    Handler,
    Request,
    Site,
    chunked,
    compress,
    hang,
    html_page,
    open_fds,
    page,
    raw,
    redirect,
    refused_port,
    reset,
    reset_reused_connections,
    response,
    sequence,
    static,
)

import treadle
from treadle.crawl import DemoSite, Record
from treadle.crawl.cli import DEMO_MAX_DEPTH
from treadle.crawl.crawler import DEFAULT_USER_AGENT, Crawler
from treadle.crawl.demosite import DemoSiteServer
from treadle.crawl.demosite_content import BURST_PATHS, RETRY_AFTER_PATH, SITEMAPS
from treadle.crawl.robots import RobotsPolicy

ROBOTS = "/robots.txt"


def by_url(records: list[Record]) -> dict[str, Record]:
    urls = [record.url for record in records]
    assert len(urls) == len(set(urls)), f"duplicate records: {Counter(urls).most_common(3)}"
    return {record.url: record for record in records}


def fetched(site: Site) -> Counter[str]:
    """How often the site served each path, robots.txt left out."""
    counts = Counter(site.stats.counts)
    del counts[ROBOTS]
    return counts


async def crawl(root: str | list[str], **options: object) -> tuple[Crawler, dict[str, Record]]:
    options.setdefault("retry_backoff", 0)
    # Here only links feed the frontier, so requests can be counted exactly; sitemaps
    # have their own tests (test_crawl_sitemaps.py).
    options.setdefault("sitemaps", False)
    crawler = Crawler(root, **options)  # type: ignore[arg-type]
    records = await crawler.crawl()
    assert records is crawler.records
    return crawler, by_url(records)



@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    before = open_fds()
    yield
    assert open_fds() == before, "the test left file descriptors open"

# --- links --------------------------------------------------------------------------------


@pytest.mark.parametrize("parser", ["lexbor", "stdlib"])
async def test_big_pages_are_parsed_in_one_thread_small_ones_on_the_loop(
    parser: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    filler = "<p>" + "words " * 40_000 + "</p>"  # 240 KB: over both parsers' thresholds
    big = ["/big1", "/big2", "/big3", "/big4"]
    routes = {"/": page(*big, "/small")}
    for path in big:
        routes[path] = page("/from-big", extra=filler)
    routes["/small"] = routes["/from-big"] = page()
    threads: dict[str, threading.Thread] = {}
    read_page = Crawler._read_page

    def spy(self: Crawler, body: bytes, content_type: str | None, url: str) -> object:
        threads[url.rsplit("/", 1)[1]] = threading.current_thread()
        return read_page(self, body, content_type, url)

    monkeypatch.setattr(Crawler, "_read_page", spy)
    async with Site(routes) as site:
        _, records = await crawl(site.url(), parser=parser)
    assert set(records) == {site.url(path) for path in routes}
    assert records[site.url("/big1")].num_urls == 1
    main = threading.main_thread()
    assert [threads[name] is main for name in ("", "small", "from-big")] == [True] * 3
    # One parsing thread for the crawl, not a pool (each thread costs a malloc arena),
    # and it ends with the crawl.
    parsing = {threads[path[1:]] for path in big}
    assert len(parsing) == 1
    (thread,) = parsing
    assert thread is not main and thread.name.startswith("treadle-parse")
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_an_unknown_parser_is_refused_when_the_crawler_is_made() -> None:
    with pytest.raises(ValueError, match="parser must be one of"):
        Crawler("http://example.com/", parser="regex")



async def test_links_cycles_relative_links_and_fragments() -> None:
    routes = {
        "/": page("/docs/index", "/docs/index#intro", "#top", ""),
        "/docs/index": page("a", "./a", "../docs/a#frag", "/docs/a#x", "b?x=1", "/"),
        "/docs/a": page("index", "/", "b?x=1#y"),
        "/docs/b?x=1": page("/docs/../docs/a", "c/"),
        "/docs/c/": page("../a", "../../"),
    }
    async with Site(routes) as site:
        _, records = await crawl(site.url())
    assert set(records) == {site.url(path) for path in routes}
    assert all(record.status == 200 and record.exception is None for record in records.values())
    assert fetched(site) == Counter(dict.fromkeys(routes, 1)), "each page fetched once"
    assert site.stats.counts[ROBOTS] == 1
    root = records[site.url()]
    # "#top" and "" link the page itself: not counted. /docs/index#intro is /docs/index.
    assert (root.num_urls, root.num_new_urls) == (1, 1)
    index = records[site.url("/docs/index")]
    assert (index.num_urls, index.num_new_urls) == (3, 2)  # /docs/a, /docs/b?x=1 and /
    assert records[site.url("/docs/c/")].num_new_urls == 0
    assert all(record.tries == 1 and record.size > 0 for record in records.values())
    assert all(record.content_type == "text/html; charset=utf-8" for record in records.values())


async def test_off_host_and_non_http_links_are_not_followed() -> None:
    async with Site() as site:
        other_host = f"http://localhost:{site.port}"
        site["/"] = page(
            other_host + "/same-server-other-host",
            "http://example.org/",
            "//example.net/protocol-relative",
            "mailto:someone@example.org",
            "javascript:void(0)",
            "tel:+15555550100",
            f"ftp://127.0.0.1:{site.port}/file",
            "data:text/html,<a href=/hidden>x</a>",
            f"HTTP://127.0.0.1:{site.port}/upper-case-scheme",
        )
        site["/upper-case-scheme"] = page()
        _, records = await crawl(site.url())
    assert set(records) == {site.url(), site.url("/upper-case-scheme")}
    assert records[site.url()].num_urls == 1
    assert {request.header("host") for request in site.stats.requests} == {
        f"127.0.0.1:{site.port}"
    }


async def test_exclude_and_lenient_scope() -> None:
    async with Site() as site:
        site["/"] = page("/keep", "/skip/me", "/keep?skip=1")
        site["/keep"] = page()
        _, records = await crawl(site.url(), exclude="skip", strict=False)
    assert set(records) == {site.url(), site.url("/keep")}


async def test_links_in_non_html_bodies_and_error_pages_are_not_followed() -> None:
    anchor = '<a href="/hidden/{}">x</a> http://127.0.0.1/hidden/bare'
    routes = {
        "/": page("/notes.txt", "/data.json", "/image.png", "/missing", "/xhtml"),
        "/notes.txt": static(200, anchor.format("text"), content_type="text/plain"),
        "/data.json": static(
            200, '{"next": "/hidden/json"}', content_type="application/json; charset=utf-8"
        ),
        "/image.png": static(200, b"\x89PNG" + anchor.format("png").encode(), content_type=None),
        "/missing": static(404, html_page("/hidden/from-404")),
        "/xhtml": static(200, html_page("/from-xhtml"), content_type="application/xhtml+xml"),
        "/from-xhtml": page(),
    }
    async with Site(routes) as site:
        _, records = await crawl(site.url())
    assert set(records) == {site.url(path) for path in routes}
    for path in ("/notes.txt", "/data.json", "/image.png", "/missing"):
        assert records[site.url(path)].num_urls == 0
        assert records[site.url(path)].encoding is None
    assert records[site.url("/missing")].status == 404
    assert records[site.url("/image.png")].content_type is None
    assert records[site.url("/xhtml")].num_urls == 1
    assert not any(path.startswith("/hidden") for path in site.stats.paths)


async def test_chunked_and_gzip_pages_are_read_and_followed() -> None:
    gzipped = gzip.compress(html_page("/chunked", "/both").encode())
    both = compress(html_page("/end").encode(), "gzip")
    routes = {
        "/": static(200, gzipped, headers=[("Content-Encoding", "gzip")]),
        "/chunked": raw(
            response(200, b"", headers=[("Transfer-Encoding", "chunked")])
            + chunked(html_page("/end").encode(), 9),
            then="keep",
        ),
        "/both": raw(
            response(
                200, b"", headers=[("Transfer-Encoding", "chunked"), ("Content-Encoding", "gzip")]
            )
            + chunked(both, 4),
            then="keep",
        ),
        "/end": page(),
    }
    async with Site(routes) as site:
        _, records = await crawl(site.url())
    assert set(records) == {site.url(path) for path in routes}
    assert records[site.url()].num_urls == 2
    assert records[site.url()].size == len(gzipped), "size counts the bytes on the wire"
    assert records[site.url("/both")].size == len(both)
    assert records[site.url("/chunked")].num_new_urls + records[site.url("/both")].num_new_urls == 1


async def test_latin1_page() -> None:
    body = (
        "<!doctype html><title>Caf\u00e9</title>"
        '<a href="/menu">Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e</a>'
        '<a href="/drinks?q=th\u00e9">Th\u00e9</a>'
        '<a href="/about" title="\u00c0 propos">\u00c0 propos</a>'
    ).encode("latin-1")
    routes = {
        "/": static(200, body, content_type='text/html; charset="ISO-8859-1"'),
        "/menu": page(),
        "/about": page(),
    }
    async with Site(routes) as site:
        _, records = await crawl(site.url())
    root = records[site.url()]
    assert root.encoding == "iso8859-1"
    assert root.num_urls == 3
    assert {site.url("/menu"), site.url("/about")} <= set(records)
    assert records[site.url("/menu")].encoding == "utf-8"


async def test_non_ascii_hrefs_are_fetched_percent_encoded() -> None:
    body = '<a href="/caf\u00e9">x</a><a href="/\u65e5\u672c">y</a>'.encode()
    routes = {
        "/": static(200, body),
        "/caf%C3%A9": page(),
        "/%E6%97%A5%E6%9C%AC": page(),
    }
    async with Site(routes) as site:
        _, records = await crawl(site.url())
    assert all(record.status == 200 for record in records.values()), records
    assert sorted(fetched(site)) == sorted(routes)


async def test_urls_differing_only_in_escapes_are_fetched_once() -> None:
    routes = {"/": page("/%7Euser", "/~user", "/%7euser", "/a%2fb", "/a%2Fb"), "/~user": page()}
    async with Site(routes) as site:
        _, records = await crawl(site.url())
    assert set(records) == {site.url(), site.url("/~user"), site.url("/a%2Fb")}
    assert fetched(site) == {"/": 1, "/~user": 1, "/a%2Fb": 1}


# --- redirects --------------------------------------------------------------------------


async def test_redirect_is_recorded_and_its_target_crawled_once() -> None:
    async with Site() as site:
        site["/"] = page("/old", "/new", "/away", "/moved")
        site["/old"] = redirect("/new", 301)
        site["/moved"] = redirect("relative/target", 307)
        site["/relative/target"] = page()
        site["/away"] = redirect(f"http://localhost:{site.port}/elsewhere")
        site["/new"] = page("/old")
        _, records = await crawl(site.url())
    old = records[site.url("/old")]
    assert (old.status, old.next_url, old.num_urls, old.size) == (301, site.url("/new"), 1, 0)
    assert records[site.url("/moved")].next_url == site.url("/relative/target")
    away = records[site.url("/away")]
    assert (away.next_url, away.num_urls) == (f"http://localhost:{site.port}/elsewhere", 0)
    assert set(records) == {site.url(p) for p in ("/", "/old", "/new", "/away", "/moved")} | {
        site.url("/relative/target")
    }
    assert fetched(site)["/new"] == 1
    assert old.num_new_urls + records[site.url()].num_new_urls == 4


async def test_redirect_loop() -> None:
    routes = {"/": page("/loop/a"), "/loop/a": redirect("/loop/b"), "/loop/b": redirect("/loop/a")}
    async with Site(routes) as site:
        _, records = await crawl(site.url())
    assert set(records) == {site.url(path) for path in routes}
    assert records[site.url("/loop/a")].next_url == site.url("/loop/b")
    assert records[site.url("/loop/b")].next_url == site.url("/loop/a")
    assert records[site.url("/loop/b")].num_new_urls == 0
    assert fetched(site) == Counter(dict.fromkeys(routes, 1))


@pytest.mark.parametrize(("max_redirect", "reached"), [(1, 2), (2, 3), (3, 4), (0, 1)])
async def test_redirect_limit(max_redirect: int, reached: int) -> None:
    chain = ["/chain/1", "/chain/2", "/chain/3", "/end"]
    routes = {"/": page(chain[0]), "/end": page()}
    for here, there in itertools.pairwise(chain):
        routes[here] = redirect(there)
    async with Site(routes) as site:
        _, records = await crawl(site.url(), max_redirect=max_redirect)
    assert set(records) == {site.url("/")} | {site.url(path) for path in chain[:reached]}
    last = records[site.url(chain[reached - 1])]
    if reached < 4:
        assert last.status == 302
        assert last.next_url == site.url(chain[reached]), "the redirect is recorded, not followed"
        assert last.num_urls == 0


# --- failures and retries ----------------------------------------------------------------


async def test_reset_then_success_on_retry() -> None:
    # keep_alive=False: each request comes on a fresh connection, so the client's own
    # stale-connection retry does not hide the reset from the crawler.
    routes = {"/": page("/flaky"), "/flaky": sequence(reset, page())}
    async with Site(routes, keep_alive=False) as site:
        _, records = await crawl(site.url(), max_tries=3)
    flaky = records[site.url("/flaky")]
    assert (flaky.status, flaky.tries, flaky.exception) == (200, 2, None)
    assert fetched(site)["/flaky"] == 2


@pytest.mark.parametrize("max_tries", [1, 2, 3])
async def test_max_tries_counts_the_clients_own_retries(max_tries: int) -> None:
    # Every reused connection is reset after its request arrives, so the client's
    # transparent retry on a fresh connection sends a second request for the same URL.
    async def linked_page(exchange: Exchange) -> None:
        links = ["/a", "/b", "/c"] if exchange.request.target == "/" else []
        await exchange.respond(200, html_page(*links))

    reset_reused = reset_reused_connections(linked_page)
    site = Site({path: reset_reused for path in ["/", "/a", "/b", "/c"]})
    async with site:
        _, records = await crawl(site.url(), max_tries=max_tries, max_tasks=1, robots=False)
    assert max(fetched(site).values()) <= max_tries, fetched(site)
    for path in ["/a", "/b", "/c"]:
        record = records[site.url(path)]
        assert record.tries == fetched(site)[path]
        if max_tries >= 2:
            assert record.status == 200
    if max_tries == 1:
        # The stale connection's reset is the crawler's last try: not retried, reported.
        failed = [record.exception or "" for record in records.values() if not record.status]
        assert failed and all(error.startswith("RemoteDisconnected") for error in failed)


async def test_no_response_is_retried_up_to_max_tries() -> None:
    routes = {"/": page("/drop"), "/drop": raw(b"", then="close")}
    async with Site(routes, keep_alive=False) as site:
        crawler, records = await crawl(site.url(), max_tries=3)
    drop = records[site.url("/drop")]
    assert drop.tries == 3 and drop.status is None
    assert drop.exception is not None and drop.exception.startswith("RemoteDisconnected: ")
    assert fetched(site)["/drop"] == 3
    assert crawler.errors == 1


async def test_refused_connection_is_not_retried() -> None:
    with refused_port() as port:
        crawler, records = await crawl(f"http://127.0.0.1:{port}/", max_tries=3, robots=False)
    [record] = records.values()
    assert record.url == f"http://127.0.0.1:{port}/"
    assert record.tries == 1 and record.status is None and record.status_class == "error"
    assert record.exception is not None and record.exception.startswith("ConnectError: ")
    assert record.error_kind == "refused"
    assert f"127.0.0.1:{port}" in record.exception
    assert crawler.retries == 0


async def test_host_refusing_robots_txt_gets_error_records_without_more_requests() -> None:
    with refused_port() as port:
        crawler, records = await crawl(f"http://127.0.0.1:{port}/", max_tries=3)
    [record] = records.values()
    assert (record.tries, record.error_kind) == (0, "refused")
    assert "unreachable" in crawler.robots_notes[f"http://127.0.0.1:{port}"]
    assert crawler.report().failed_roots == [record.url]


async def test_unreachable_root_does_not_stop_the_other_roots() -> None:
    with refused_port() as port:
        dead = f"http://127.0.0.1:{port}/"
        async with Site({"/": page("/a"), "/a": page()}) as site:
            _, records = await crawl([dead, site.url()], max_tries=2)
    assert set(records) == {dead, site.url(), site.url("/a")}
    assert records[dead].exception is not None and records[dead].error_kind == "refused"
    assert records[site.url("/a")].status == 200


async def test_garbage_response_is_a_protocol_error_not_retried() -> None:
    routes = {"/": page("/garbage", "/ok"), "/garbage": raw(b"SSH-2.0-nope\r\n\r\n"), "/ok": page()}
    async with Site(routes) as site:
        _, records = await crawl(site.url(), max_tries=4)
    garbage = records[site.url("/garbage")]
    assert garbage.exception is not None and garbage.exception.startswith("ProtocolError: ")
    assert (garbage.tries, garbage.status) == (1, None)
    assert fetched(site)["/garbage"] == 1
    assert records[site.url("/ok")].status == 200


async def test_slow_page_times_out_and_the_crawl_goes_on() -> None:
    routes = {"/": page("/slow", "/fast"), "/slow": hang, "/fast": page()}
    async with Site(routes) as site:
        _, records = await crawl(site.url(), timeout=0.2, max_tries=2)
    slow = records[site.url("/slow")]
    assert slow.status is None and slow.tries == 2
    assert slow.exception is not None and slow.exception.startswith("ReadTimeout: ")
    assert "0.2 s" in slow.exception
    assert slow.elapsed >= 0.35
    assert fetched(site)["/slow"] == 2
    assert records[site.url("/fast")].status == 200


async def test_huge_page_is_capped_by_max_size() -> None:
    huge = html_page("/never") + "x" * 200_000
    routes = {"/": page("/huge", "/small"), "/huge": static(200, huge), "/small": page()}
    async with Site(routes) as site:
        _, records = await crawl(site.url(), max_size=10_000, max_tries=3)
    big = records[site.url("/huge")]
    assert big.exception is not None and big.exception.startswith("ResponseTooLarge: ")
    assert (big.status, big.size, big.tries, big.num_urls) == (200, 0, 1, 0), "not read"
    assert "Content-Length" in big.exception
    assert big.status_class == "error"
    assert records[site.url("/small")].status == 200
    assert "/never" not in site.stats.paths


def head_then_wait(
    content_type: str, length: int, body_sent: bytes, client_closed: list[bool]
) -> Handler:
    """Announce a body of ``length`` bytes, send only ``body_sent`` of it, then note whether
    the client closed the connection rather than wait for the rest."""

    async def handler(exchange: Exchange) -> None:
        headers = [("Content-Length", str(length))]
        head = response(200, b"", content_type=content_type, headers=headers)
        await exchange.send(head + body_sent)
        client_closed.append(await exchange.wait_client_closed())

    return handler


async def test_a_large_body_not_worth_parsing_is_not_read() -> None:
    closed: list[bool] = []
    routes = {
        "/": page("/video.mp4", "/after"),
        # Ten times max_size, and never sent: not an error, as it is never read.
        "/video.mp4": head_then_wait("video/mp4", 1_000_000, b"x" * 1000, closed),
        "/after": page(),
    }
    async with Site(routes) as site:
        _, records = await crawl(site.url(), max_per_host=1, max_size=100_000, timeout=10.0)
    video = records[site.url("/video.mp4")]
    assert (video.status, video.exception, video.tries) == (200, None, 1)
    assert video.size <= 1000 and video.elapsed < 5.0, "no wait for the other 999,000 bytes"
    assert closed == [True], "the server saw the crawler close the connection"
    connections = {request.target: request.connection for request in site.stats.requests}
    assert connections["/after"] != connections["/video.mp4"], "that connection was not reused"
    assert records[site.url("/after")].status == 200


async def test_a_small_body_not_worth_parsing_is_drained_to_keep_the_connection() -> None:
    routes = {
        "/": page("/notes.txt", "/after"),
        "/notes.txt": static(200, "n" * 60_000, content_type="text/plain"),
        "/after": page(),
    }
    async with Site(routes) as site:
        _, records = await crawl(site.url(), max_per_host=1)
    assert records[site.url("/notes.txt")].size == 60_000
    assert {request.connection for request in site.stats.requests} == {1}


async def test_a_content_length_over_max_size_is_refused_before_the_body() -> None:
    closed: list[bool] = []
    routes = {"/": page("/huge"), "/huge": head_then_wait(HTML, 1 << 30, b"", closed)}
    async with Site(routes) as site:
        _, records = await crawl(site.url(), max_size=100_000, timeout=10.0)
    huge = records[site.url("/huge")]
    assert huge.exception is not None and huge.exception.startswith("ResponseTooLarge: ")
    assert "Content-Length 1073741824" in huge.exception and "not read" in huge.exception
    assert (huge.size, huge.tries) == (0, 1) and huge.elapsed < 5.0
    assert closed == [True], "the server sent no body byte, and the crawler hung up"


async def test_gzip_bomb_is_capped_by_max_size() -> None:
    bomb = compress(b"<a href='/never'>" + bytes(32 * 1024 * 1024), "gzip")
    routes = {
        "/": page("/bomb"),
        "/bomb": static(200, bomb, headers=[("Content-Encoding", "gzip")]),
    }
    async with Site(routes) as site:
        _, records = await crawl(site.url(), max_size=100_000)
    record = records[site.url("/bomb")]
    assert record.exception is not None and record.exception.startswith("ResponseTooLarge: ")


# --- robots.txt -------------------------------------------------------------------------


def robots(text: str, status: int = 200) -> dict[str, Handler]:
    return {ROBOTS: static(status, text, content_type="text/plain")}


async def test_robots_disallowed_path_is_not_fetched() -> None:
    routes = {
        **robots("User-agent: *\nDisallow: /private/\n"),
        "/": page("/private/secret", "/public"),
        "/public": page("/private/other"),
    }
    async with Site(routes) as site:
        crawler, records = await crawl(site.url())
    assert set(records) == {site.url(), site.url("/public")}
    assert sorted(crawler.disallowed) == [site.url("/private/other"), site.url("/private/secret")]
    assert not any(path.startswith("/private/") for path in site.stats.paths)
    assert site.stats.paths[0] == ROBOTS and site.stats.counts[ROBOTS] == 1


async def test_robots_false_fetches_everything_and_never_asks() -> None:
    routes = {
        **robots("User-agent: *\nDisallow: /\n"),
        "/": page("/private/secret"),
        "/private/secret": page(),
    }
    async with Site(routes) as site:
        crawler, records = await crawl(site.url(), robots=False)
    assert set(records) == {site.url(), site.url("/private/secret")}
    assert ROBOTS not in site.stats.paths
    assert crawler.disallowed == []


@pytest.mark.parametrize(
    ("status", "allowed", "robots_requests"), [(404, True, 1), (500, False, 3), (403, False, 1)]
)
async def test_robots_fetch_status(status: int, allowed: bool, robots_requests: int) -> None:
    routes = {**robots("", status), "/": page("/a"), "/a": page()}
    async with Site(routes) as site:
        crawler, records = await crawl(site.url(), max_tries=3)
    if allowed:
        assert set(records) == {site.url(), site.url("/a")}
    else:
        assert records == {} and crawler.disallowed == [site.url()]
        assert site.stats.paths == [ROBOTS] * robots_requests, "5xx is retried, 403 is not"
        assert crawler.report().failed_roots == [site.url()]


async def test_robots_rules_for_the_crawlers_user_agent() -> None:
    rules = "User-agent: treadle-crawler\nDisallow: /a\n\nUser-agent: *\nDisallow: /b\n"
    routes = {**robots(rules), "/": page("/a", "/b"), "/b": page()}
    async with Site(routes) as site:
        crawler, records = await crawl(site.url())
    assert set(records) == {site.url(), site.url("/b")}
    assert crawler.disallowed == [site.url("/a")]
    assert {r.header("user-agent") for r in site.stats.requests} == {DEFAULT_USER_AGENT}


async def test_robots_crawl_delay_spaces_the_requests() -> None:
    routes = {**robots("User-agent: *\nCrawl-delay: 1\n"), "/": page("/a"), "/a": page()}
    async with Site(routes) as site:
        _, records = await crawl(site.url(), max_tasks=4)
    assert set(records) == {site.url(), site.url("/a")}
    times = dict(zip(site.stats.paths, site.stats.times, strict=True))
    assert times["/a"] - times["/"] >= 0.95


# --- limits ------------------------------------------------------------------------------


async def test_max_tasks_bounds_the_requests_a_server_sees() -> None:
    gate = Gate()
    async with Site(gate.held_pages(10)) as site, gate.pulsing():
        _, records = await crawl(site.url(), max_tasks=3)
    assert len(records) == 11
    assert site.stats.peak_requests == 3
    assert site.stats.peak_connections <= 3


async def test_max_per_host_bounds_each_host() -> None:
    gate = Gate()
    seen: list[int] = []
    slow = [f"/slow/{i}" for i in range(6)]
    async with Site() as one, Site() as two:
        for site, other in ((one, two), (two, one)):
            site["/"] = page(*slow, other.url())
            for path in slow:
                site[path] = gate.hold(page())

        def count(request: Request) -> None:
            seen.append(one.stats.active_requests + two.stats.active_requests)

        one.on_request = two.on_request = count
        async with gate.pulsing():
            _, records = await crawl([one.url(), two.url()], max_tasks=10, max_per_host=2)
    assert len(records) == 14
    for site in (one, two):
        assert site.stats.peak_requests == 2
        assert site.stats.peak_connections == 2
    assert max(seen) == 4, "the two hosts' limits add up"


async def test_demo_site_end_to_end() -> None:
    # The slow pages really are slow (up to 0.15 s), so workers overlap; the busy page
    # asks for a pause of 1 s and the trickling page takes 1 s.
    site = DemoSite(pages=200)
    async with DemoSiteServer(site) as server:
        got: list[Record] = []
        crawler, records = await crawl(
            server.origin + "/",
            max_tasks=20,
            on_record=got.append,
            max_depth=DEMO_MAX_DEPTH,
            sitemaps=True,
        )
        expected = site.expected_reachable(origin=server.origin, max_depth=DEMO_MAX_DEPTH)
    assert set(records) == expected
    assert len(crawler.records) == len(expected), "exactly one record per URL"
    assert got == crawler.records and all(a is b for a, b in zip(got, crawler.records, strict=True))
    assert all(record.exception is None for record in crawler.records)
    tries = {record.url.removeprefix(server.origin): record.tries for record in crawler.records}
    retried = {path: n for path, n in tries.items() if n > 1}
    busy = {RETRY_AFTER_PATH: 2} | dict.fromkeys(BURST_PATHS, 2)
    assert retried == {"/error/500": 4} | busy, "the 500 and the busy pages, nothing else"
    assert all(records[server.origin + path].status == 200 for path in busy)
    assert crawler.retries == 3 + len(busy)
    paths = Counter(server.stats.paths)
    for path in ["/error/500", *busy]:
        del paths[path]
    assert paths.most_common(1)[0][1] == 1, "no other path was requested twice"
    assert paths[ROBOTS] == 1 and all(paths[path] == 1 for path in SITEMAPS)
    assert crawler.disallowed and all("/private/" in url for url in crawler.disallowed)
    index = server.origin + SITEMAPS[0]
    from_sitemaps = sum(r.num_new_urls for r in crawler.sitemaps if r.url != index)
    assert sum(r.num_new_urls for r in crawler.records) + from_sitemaps + 1 == len(crawler.seen)
    assert len(crawler.seen) == len(crawler.records) + len(crawler.disallowed)
    months = sorted(url for url in crawler.too_deep if "/calendar/" in url)
    assert months == [server.origin + "/calendar/2025-01", server.origin + "/calendar/2027-01"]
    [host] = crawler.report().hosts.values()
    assert host.requests == len(server.stats.paths)
    # The 429's Retry-After pauses the host; the 503s would, for retry_backoff seconds (0).
    assert host.back_offs == 1 and host.held_back >= 1.0
    assert 1 < server.stats.peak_requests <= 4, "the default per-host cap"
    statuses = Counter(record.status for record in crawler.records)
    assert {200, 301, 302, 307, 308, 404, 500} <= set(statuses)


async def test_demo_site_without_robots() -> None:
    site = DemoSite(pages=20, delay_scale=0)
    async with DemoSiteServer(site) as server:
        # No robots.txt to name the sitemap: /sitemap.xml is read all the same.
        _, records = await crawl(server.origin + "/", robots=False, max_depth=4, sitemaps=True)
        expected = site.expected_reachable(origin=server.origin, obey_robots=False, max_depth=4)
    assert set(records) == expected
    assert ROBOTS not in server.stats.paths


async def test_progress_while_crawling() -> None:
    snapshots = []
    crawler: Crawler | None = None

    def on_record(record: Record) -> None:
        assert crawler is not None
        snapshots.append(crawler.progress())

    async with Site({"/": page("/a", "/b"), "/a": page(), "/b": raw(b"junk\r\n\r\n")}) as site:
        crawler = Crawler(site.url(), on_record=on_record)
        assert crawler.progress().done == 0
        await crawler.crawl()
    assert [snapshot.done for snapshot in snapshots] == [1, 2, 3]
    final = crawler.progress()
    assert (final.done, final.queued, final.in_flight, final.errors) == (3, 0, 0, 1)
    assert crawler.wall_time > 0


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("roots", "options", "message"),
    [
        ("ftp://example.org/", {}, "http or https"),
        ("example.org", {}, "http or https"),
        ([], {}, "at least one root"),
        ("http://example.org/", {"max_tries": 0}, "max_tries"),
        ("http://example.org/", {"max_tasks": -1}, "max_tasks"),
        ("http://example.org/", {"max_redirect": -1}, "max_redirect"),
        ("http://example.org/", {"max_size": -5}, "max_size"),
        ("http://example.org/", {"max_tasks": True}, "max_tasks"),
        ("http://example.org/", {"max_per_host": 0}, "max_per_host"),
        ("http://example.org/", {"timeout": -1}, "timeout"),
        ("http://example.org/", {"retry_backoff": -1}, "retry_backoff"),
        ("http://example.org/", {"exclude": "(unclosed"}, "exclude"),
        ("http://example.org/", {"include": "[a-"}, "include"),
        ("http://example.org/", {"max_depth": -1}, "max_depth"),
        ("http://example.org/", {"max_pages": 0}, "max_pages"),
        ("http://example.org/", {"max_time": -1}, "max_time"),
        ("http://example.org/", {"delay": -1}, "delay"),
        ("http://example.org/", {"user_agent": "a\r\nb"}, "user_agent"),
    ],
)
def test_bad_arguments(roots: str | list[str], options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Crawler(roots, **options)  # type: ignore[arg-type]


# --- known bugs --------------------------------------------------------------------------


class RecordSinkError(Exception):
    pass


async def test_an_on_record_error_is_not_lost() -> None:
    def sink(record: Record) -> None:
        raise RecordSinkError("disk full")

    async with Site({"/": page("/a", "/b"), "/a": page(), "/b": page()}) as site:
        crawler = Crawler(site.url(), max_tasks=1, on_record=sink)
        with pytest.raises(RecordSinkError):
            # The crawl itself takes milliseconds; the timeout only turns a hang into a failure.
            async with treadle.timeout(0.3):
                await crawler.crawl()


async def test_redirect_to_an_unparseable_location() -> None:
    routes = {"/": page("/bad", "/ok"), "/bad": redirect("http://[::1/oops"), "/ok": page()}
    async with Site(routes) as site:
        _, records = await crawl(site.url())
    assert set(records) == {site.url(), site.url("/bad"), site.url("/ok")}
    bad = records[site.url("/bad")]
    assert (bad.status, bad.tries) == (302, 1)


async def test_a_bug_while_checking_robots_txt_is_reported_not_hidden() -> None:
    class BrokenRobots(Crawler):
        async def _fetch_robots(self, key: str) -> RobotsPolicy:
            raise RuntimeError("parser exploded")

    async with Site({"/": page()}) as site:
        crawler = BrokenRobots(site.url(), sitemaps=False)
        records = by_url(await crawler.crawl())
    assert records[site.url()].status == 200
    note = crawler.robots_notes[site.origin]
    assert "RuntimeError: parser exploded" in note and "bug" in note
