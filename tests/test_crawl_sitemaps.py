"""Sitemaps feed the frontier: robots.txt's ``Sitemap:`` lines, else ``/sitemap.xml``.

Each crawl test serves a site of its own on loopback (``tests/crawlsite.py``) and
asserts on the page records, the sitemap records, and what the server saw. Hostile
sitemaps (billion laughs, an external entity, a gzip bomb) must be refused cleanly,
recorded as sitemap errors, and the crawl must go on. The parser is also tested alone.
"""

from __future__ import annotations

import gzip
from collections import Counter

import pytest
from crawlsite import Handler, Site, html_page, page, sequence, static

from treadle.crawl import Record
from treadle.crawl.crawler import Crawler
from treadle.crawl.sitemaps import read_sitemap
from treadle.errors import SitemapError

ROBOTS = "/robots.txt"
XMLNS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'


def urlset(*locations: str) -> str:
    entries = "".join(
        f"<url><loc>{loc}</loc><lastmod>2025-01-01</lastmod></url>\n" for loc in locations
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {XMLNS}>\n{entries}</urlset>\n'


def sitemap_index(*locations: str) -> str:
    entries = "".join(f"<sitemap><loc>{loc}</loc></sitemap>\n" for loc in locations)
    head = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return f"{head}<sitemapindex {XMLNS}>\n{entries}</sitemapindex>\n"


def xml(body: str) -> Handler:
    return static(200, body, content_type="application/xml")


def robots_txt(*lines: str) -> Handler:
    return static(200, "\n".join(["User-agent: *", *lines]) + "\n", content_type="text/plain")


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE urlset [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">\n'
        for n in range(1, 10)
    )
    + f"]>\n<urlset {XMLNS}><url><loc>&lol9;</loc></url></urlset>\n"
)


def external_entity(url: str) -> str:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "{url}">]>\n'
        f"<urlset {XMLNS}><url><loc>&xxe;</loc></url></urlset>\n"
    )


def by_url(records: list[Record]) -> dict[str, Record]:
    urls = [record.url for record in records]
    assert len(urls) == len(set(urls)), f"duplicate records: {Counter(urls).most_common(3)}"
    return {record.url: record for record in records}


# --- feeding the frontier ------------------------------------------------------------------


async def test_robots_sitemaps_index_and_gzipped_children_feed_the_frontier() -> None:
    async with Site() as site:
        site.routes.update(
            {
                ROBOTS: robots_txt(
                    "Disallow: /private/", f"Sitemap: {site.url('/sitemap_index.xml')}"
                ),
                "/": page("/linked"),
                "/linked": page(),
                "/sitemap_index.xml": xml(
                    sitemap_index(
                        site.url("/maps/plain.xml"),
                        site.url("/maps/packed.xml.gz"),
                        site.url("/maps/encoded.xml"),
                        "http://elsewhere.example/sitemap.xml",
                    )
                ),
                "/maps/plain.xml": xml(
                    urlset(
                        site.url("/linked"), site.url("/only-in-sitemap"), "https://example.org/off"
                    )
                ),
                # A .xml.gz file as such (no Content-Encoding) and a gzip Content-Encoding.
                "/maps/packed.xml.gz": static(
                    200,
                    gzip.compress(urlset(site.url("/packed"), site.url("/private/x")).encode()),
                    content_type="application/gzip",
                ),
                "/maps/encoded.xml": static(
                    200,
                    gzip.compress(urlset(site.url("/encoded?a=1&amp;b=2")).encode()),
                    content_type="application/xml",
                    headers=[("Content-Encoding", "gzip")],
                ),
                "/only-in-sitemap": page("/found-from-sitemap-page"),
                "/found-from-sitemap-page": page(),
                "/packed": page(),
                "/encoded?a=1&b=2": page(),
            }
        )
        crawler = Crawler(site.url(), retry_backoff=0)
        records = by_url(await crawler.crawl())
    pages = {"/", "/linked", "/only-in-sitemap", "/found-from-sitemap-page", "/packed"}
    assert set(records) == {site.url(p) for p in pages} | {site.url("/encoded?a=1&b=2")}
    listed = records[site.url("/only-in-sitemap")]
    assert (listed.depth, listed.referrer) == (1, site.url("/maps/plain.xml"))
    assert records[site.url("/found-from-sitemap-page")].depth == 2
    assert records[site.url("/packed")].referrer == site.url("/maps/packed.xml.gz")
    assert crawler.disallowed == [site.url("/private/x")], "robots.txt rules apply"
    counts = site.stats.counts
    assert all(n == 1 for n in counts.values()), counts
    assert "/sitemap.xml" not in counts, "robots.txt named the sitemaps"
    assert not any(p.startswith(("/private", "/off")) for p in site.stats.paths)
    sitemaps = by_url(crawler.sitemaps)
    assert list(sitemaps) == [
        site.url(p)
        for p in (
            "/sitemap_index.xml",
            "/maps/plain.xml",
            "/maps/packed.xml.gz",
            "/maps/encoded.xml",
        )
    ]
    index = sitemaps[site.url("/sitemap_index.xml")]
    assert (index.status, index.num_urls, index.num_new_urls) == (200, 3, 3), "off-host left out"
    assert index.referrer == site.url(ROBOTS)
    plain = sitemaps[site.url("/maps/plain.xml")]
    assert (plain.num_urls, plain.num_new_urls, plain.depth) == (2, 1, 1)
    assert all(record.exception is None for record in crawler.sitemaps)
    text = crawler.report().format()
    assert "Sitemaps (4)" in text and "2 URLs listed, 1 new" in text
    assert not any(record.url in sitemaps for record in crawler.records), "pages only"


async def test_without_a_sitemap_line_slash_sitemap_xml_is_read() -> None:
    routes = {
        "/": page(),
        "/sitemap.xml": xml(urlset("/relative-is-resolved", "/also")),
        "/relative-is-resolved": page(),
        "/also": page(),
    }
    async with Site(routes) as site:
        crawler = Crawler(site.url())
        records = by_url(await crawler.crawl())
    assert set(records) == {site.url(p) for p in ("/", "/relative-is-resolved", "/also")}
    assert site.stats.paths[0] == ROBOTS and site.stats.counts["/sitemap.xml"] == 1
    [sitemap] = crawler.sitemaps
    assert (sitemap.url, sitemap.referrer, sitemap.num_new_urls) == (
        site.url("/sitemap.xml"),
        None,
        2,
    )


async def test_no_robots_still_reads_slash_sitemap_xml_and_sitemaps_false_reads_none() -> None:
    routes = {"/": page(), "/sitemap.xml": xml(urlset("/listed")), "/listed": page()}
    async with Site(routes) as site:
        with_sitemaps = by_url(await Crawler(site.url(), robots=False).crawl())
        without = Crawler(site.url(), sitemaps=False)
        records = by_url(await without.crawl())
    assert set(with_sitemaps) == {site.url(), site.url("/listed")}
    assert set(records) == {site.url()} and without.sitemaps == []
    assert site.stats.counts == Counter({"/": 2, "/sitemap.xml": 1, "/listed": 1, ROBOTS: 1})


async def test_a_missing_sitemap_is_noted_not_a_broken_link() -> None:
    async with Site({"/": page()}) as site:
        crawler = Crawler(site.url())
        await crawler.crawl()
    [sitemap] = crawler.sitemaps
    assert (sitemap.status, sitemap.exception) == (404, None)
    report = crawler.report()
    assert report.broken == [] and report.failed_roots == []
    assert f"404  {site.url('/sitemap.xml')}" in report.format()


async def test_sitemap_pages_obey_depth_pages_and_scope_limits() -> None:
    listed = [f"/listed/{i}" for i in range(5)]
    routes: dict[str, Handler] = {
        "/": page(),
        "/sitemap.xml": xml(urlset(*(f"{p}?skip" if p.endswith("4") else p for p in listed))),
    }
    async with Site(routes) as site:
        for path in listed:
            site[path] = page()
        too_deep = Crawler(site.url(), max_depth=0)
        assert [r.url for r in await too_deep.crawl()] == [site.url()]
        limited = Crawler(site.url(), max_pages=3, max_per_host=1, exclude="skip")
        records = await limited.crawl()
    assert list(too_deep.too_deep) == [site.url(p) for p in listed[:4]] + [
        site.url(listed[4] + "?skip")
    ]
    assert len(records) == 3 and limited.stop_reason == "max-pages"
    assert limited.sitemaps[0].num_urls == 4, "exclude applies to the pages listed"
    assert not any("skip" in path for path in site.stats.paths)
    assert sum(path.startswith("/listed/") for path in site.stats.paths) == 2


async def test_a_busy_sitemap_is_retried_like_a_page() -> None:
    busy = static(503, "busy", content_type="text/plain")
    routes = {"/": page(), "/sitemap.xml": sequence(busy, xml(urlset("/late"))), "/late": page()}
    async with Site(routes) as site:
        crawler = Crawler(site.url(), retry_backoff=0)
        records = by_url(await crawler.crawl())
    assert site.url("/late") in records
    [sitemap] = crawler.sitemaps
    assert (sitemap.status, sitemap.tries) == (200, 2) and crawler.retries == 1
    assert site.stats.counts["/sitemap.xml"] == 2


# --- hostile and broken sitemaps -------------------------------------------------------------


async def test_billion_laughs_and_external_entity_are_refused_and_the_crawl_goes_on() -> None:
    async with Site() as site:
        site.routes.update(
            {
                ROBOTS: robots_txt(
                    f"Sitemap: {site.url('/laughs.xml')}",
                    f"Sitemap: {site.url('/xxe.xml')}",
                    f"Sitemap: {site.url('/good.xml')}",
                ),
                "/": page(),
                "/laughs.xml": xml(BILLION_LAUGHS),
                "/xxe.xml": xml(external_entity(site.url("/secret"))),
                "/good.xml": xml(urlset(site.url("/fine"))),
                "/fine": page(),
                "/secret": static(200, "secret", content_type="text/plain"),
            }
        )
        crawler = Crawler(site.url())
        records = by_url(await crawler.crawl())
    assert set(records) == {site.url(), site.url("/fine")}, "the crawl went on"
    assert "/secret" not in site.stats.paths, "the external entity was not fetched"
    sitemaps = by_url(crawler.sitemaps)
    for path in ("/laughs.xml", "/xxe.xml"):
        refused = sitemaps[site.url(path)]
        assert refused.error_kind == "sitemap" and refused.tries == 1 and refused.status == 200
        assert refused.exception is not None
        assert refused.exception.startswith("SitemapError: the sitemap declares a DOCTYPE")
        assert "\n" not in refused.exception
    assert sitemaps[site.url("/good.xml")].num_new_urls == 1
    text = crawler.report().format()
    assert "declares a DOCTYPE" in text
    assert crawler.report().broken == [] and crawler.errors == 0, "pages only"


@pytest.mark.parametrize("encoded", [False, True], ids=["xml.gz file", "gzip encoding"])
async def test_a_gzip_bomb_sitemap_is_refused_without_inflating_it(encoded: bool) -> None:
    padding = " " * (16 * 1024 * 1024)  # 16 MiB of blanks: about 16 KiB gzipped
    bomb = gzip.compress(urlset("/bait").replace("<url>", padding + "<url>", 1).encode())
    headers = [("Content-Encoding", "gzip")] if encoded else []
    content_type = "application/xml" if encoded else "application/gzip"
    routes = {
        "/": page("/fine"),
        "/fine": page(),
        "/sitemap.xml": static(200, bomb, content_type=content_type, headers=headers),
    }
    async with Site(routes) as site:
        crawler = Crawler(site.url(), max_size=1_000_000)
        records = by_url(await crawler.crawl())
    assert set(records) == {site.url(), site.url("/fine")}
    assert "/bait" not in site.stats.paths
    [sitemap] = crawler.sitemaps
    assert sitemap.exception is not None and sitemap.tries == 1
    if encoded:  # the HTTP client's cap on the decoded body
        assert sitemap.exception.startswith("ResponseTooLarge: ")
    else:
        assert sitemap.exception == "SitemapError: the sitemap inflates to more than 1000000 bytes"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (html_page("/x"), "not well-formed XML"),
        ("<rss><channel/></rss>", "not a sitemap: the root element is <rss>"),
        ("<urlset><url><loc>/a</loc></url>", "not well-formed XML: no element found"),
    ],
)
async def test_a_sitemap_that_is_not_one_is_an_error_the_crawl_survives(
    body: str, message: str
) -> None:
    async with Site({"/": page(), "/sitemap.xml": xml(body)}) as site:
        crawler = Crawler(site.url())
        records = await crawler.crawl()
    assert [record.url for record in records] == [site.url()]
    [sitemap] = crawler.sitemaps
    assert sitemap.exception is not None and message in sitemap.exception
    assert "/x" not in site.stats.paths and "/a" not in site.stats.paths


async def test_an_index_inside_an_index_is_refused() -> None:
    async with Site() as site:
        site.routes.update(
            {
                "/": page(),
                "/sitemap.xml": xml(sitemap_index(site.url("/inner.xml"))),
                "/inner.xml": xml(sitemap_index(site.url("/innermost.xml"))),
            }
        )
        crawler = Crawler(site.url())
        await crawler.crawl()
    inner = by_url(crawler.sitemaps)[site.url("/inner.xml")]
    assert inner.exception is not None and "allows one level" in inner.exception
    assert "/innermost.xml" not in site.stats.paths


# --- the parser alone ------------------------------------------------------------------------


def test_read_sitemap_urlset_index_namespaces_and_whitespace() -> None:
    plain = read_sitemap(b"<urlset><url><loc>\n  http://a.example/1 </loc></url></urlset>", 1000)
    assert (plain.is_index, plain.locations) == (False, ["http://a.example/1"])
    index = read_sitemap(sitemap_index("http://a.example/s.xml").encode(), 1000)
    assert (index.is_index, index.locations) == (True, ["http://a.example/s.xml"])
    # A <loc> outside <url> (an image extension's, say) is not a page of the sitemap.
    odd = b"<urlset><url><loc>http://a.example/p</loc><image><loc>x</loc></image></url></urlset>"
    assert read_sitemap(odd, 1000).locations == ["http://a.example/p"]
    gzipped = gzip.compress(urlset("http://a.example/2").encode())
    assert read_sitemap(gzipped, 1000).locations == ["http://a.example/2"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (BILLION_LAUGHS.encode(), "declares a DOCTYPE (urlset)"),
        (external_entity("file:///etc/passwd").encode(), "declares a DOCTYPE (urlset)"),
        (b"<urlset><url><loc>&xxe;</loc></url></urlset>", "undefined entity"),
        (b"\x1f\x8bnot gzip at all", "not valid gzip"),
        (gzip.compress(b"<urlset/>")[:-4], "cut short"),
        (b"<urlset>" + b" " * 2000 + b"</urlset>", "larger than 1000 bytes"),
    ],
)
def test_read_sitemap_refuses(body: bytes, message: str) -> None:
    with pytest.raises(SitemapError) as caught:
        read_sitemap(body, 1000)
    assert message in str(caught.value)
