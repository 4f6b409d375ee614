"""The generated demo site (treadle.crawl.demosite_content), and a crawl of it done
without I/O by the crawler's pure parts (links, robots.txt, sitemaps, retries of the
busy pages, a depth bound for the endless calendar): the two must agree on what is
reachable."""

from __future__ import annotations

import struct
import zlib
from collections import deque
from urllib.parse import urlsplit

import pytest

from treadle.crawl.cli import DEMO_MAX_DEPTH
from treadle.crawl.demosite_content import (
    BURST_PATHS,
    CALENDAR_START,
    DISALLOWED_PREFIX,
    ORPHANS,
    REDIRECT_CHAIN,
    REDIRECT_LOOP,
    RETRY_AFTER_PATH,
    SITEMAP_ONLY,
    SITEMAPS,
    SLOW_PATHS,
    TRICKLE_PATH,
    DemoResponse,
    DemoSite,
)
from treadle.crawl.links import decode_html, extract_links
from treadle.crawl.robots import RobotsPolicy, robots_url
from treadle.crawl.sitemaps import read_sitemap
from treadle.crawl.urls import Scope, normalize_url

ORIGIN = "http://127.0.0.1:8765"
REDIRECTS = (301, 302, 303, 307, 308)


def paths(urls: set[str], origin: str = ORIGIN) -> set[str]:
    return {url.removeprefix(origin) for url in urls}


def target_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def is_html(response: DemoResponse) -> bool:
    return (response.header("Content-Type") or "").lower().startswith("text/html")


def sitemap_pages(site: DemoSite, origin: str, sitemaps: list[str]) -> list[str]:
    """The page URLs the sitemaps list, reading one level of index."""
    pages = []
    for url in sitemaps:
        sitemap = read_sitemap(site.response_for(target_of(url), origin=origin).body, 10**6)
        if sitemap.is_index:
            pages += sitemap_pages(site, origin, sitemap.locations)
        else:
            pages += [normalize_url(location) for location in sitemap.locations]
    return pages


def crawl(
    site: DemoSite,
    origin: str,
    *,
    obey_robots: bool = True,
    max_depth: int = DEMO_MAX_DEPTH,
    sitemaps: bool = True,
) -> list[str]:
    """The classic crawler's logic without sockets: frontier, seen-set, scope, robots,
    redirects followed through the frontier, busy pages asked again, a depth bound, and
    the pages of the sitemaps robots.txt names at depth 1. Returns the URLs fetched, in
    order."""
    root = normalize_url(origin + "/")
    scope = Scope(root)
    robots = site.response_for(target_of(robots_url(root)), origin=origin)
    policy = RobotsPolicy.from_response(robots.status, robots.body, "treadle")
    seen = {root}
    frontier = deque([(root, 0)])
    if sitemaps and max_depth >= 1:
        for url in sitemap_pages(site, origin, policy.sitemaps):
            allowed = policy.allowed(url) or not obey_robots
            if url not in seen and scope.allows(url) and allowed:
                seen.add(url)
                frontier.append((url, 1))
    fetched = []
    while frontier:
        url, depth = frontier.popleft()
        fetched.append(url)
        attempt = 1
        response = site.response_for(target_of(url), origin=origin)
        while response.status in (429, 503):
            attempt += 1
            response = site.response_for(target_of(url), origin=origin, attempt=attempt)
        found: list[str] = []
        location = response.header("Location")
        if response.status in REDIRECTS and location is not None:
            found = [normalize_url(location, url)]
            depth -= 1  # a redirect's target has the redirect's depth
        elif response.status == 200 and is_html(response):
            text, _ = decode_html(response.body, response.header("Content-Type"))
            found = extract_links(text, url)
        for link in found:
            if link in seen or not scope.allows(link) or depth + 1 > max_depth:
                continue
            if policy.allowed(link) or not obey_robots:
                seen.add(link)
                frontier.append((link, depth + 1))
    return fetched


@pytest.fixture(scope="module")
def site() -> DemoSite:
    return DemoSite(pages=60, seed=7, origin=ORIGIN)


class TestReachability:
    @pytest.mark.parametrize(
        ("pages", "seed", "origin"),
        [
            (1, 0, "http://localhost"),
            (12, 1, "http://127.0.0.1:8765"),
            (300, 2, "http://[::1]:9000"),
            (40, 3, "https://demo.example:8443"),
        ],
    )
    def test_pure_crawl_reaches_exactly_the_expected_urls(
        self, pages: int, seed: int, origin: str
    ) -> None:
        site = DemoSite(pages=pages, seed=seed, origin=origin)
        fetched = crawl(site, origin)
        assert len(fetched) == len(set(fetched))
        assert set(fetched) == site.expected_reachable(max_depth=DEMO_MAX_DEPTH)

    @pytest.mark.parametrize("max_depth", [0, 1, 2, 5])
    def test_a_depth_bound_and_no_sitemaps_agree_too(self, max_depth: int) -> None:
        site = DemoSite(pages=30, seed=5, origin=ORIGIN)
        for sitemaps in (True, False):
            fetched = crawl(site, ORIGIN, max_depth=max_depth, sitemaps=sitemaps)
            expected = site.expected_reachable(max_depth=max_depth, sitemaps=sitemaps)
            assert set(fetched) == expected, (max_depth, sitemaps)

    def test_without_robots_the_disallowed_pages_are_reached_too(self, site: DemoSite) -> None:
        bound = DEMO_MAX_DEPTH
        expected = site.expected_reachable(max_depth=bound, obey_robots=False)
        extra = expected - site.expected_reachable(max_depth=bound)
        assert paths(extra) == {
            DISALLOWED_PREFIX + "secret",
            DISALLOWED_PREFIX + "deeper",
            DISALLOWED_PREFIX + "from-sitemap",
        }
        assert set(crawl(site, ORIGIN, obey_robots=False)) == expected

    def test_the_calendar_is_endless_and_the_depth_bound_ends_it(self, site: DemoSite) -> None:
        for bound in (3, DEMO_MAX_DEPTH, 40):
            months = {
                path
                for path in paths(site.expected_reachable(max_depth=bound))
                if path.startswith("/calendar/")
            }
            assert CALENDAR_START in months
            assert len(months) == 2 * (bound - 1) + 1, "the bound is all that ends it"
        last = site.response_for("/calendar/9999-12")
        assert b"/calendar/9999-11" in last.body and b"/calendar/10000-01" not in last.body
        for bad in ("/calendar/2026-13", "/calendar/2026-1", "/calendar/0000-05"):
            assert site.response_for(bad).status == 404

    def test_sitemaps_reach_pages_no_link_does(self, site: DemoSite) -> None:
        with_sitemaps = paths(site.expected_reachable(max_depth=DEMO_MAX_DEPTH))
        without = paths(site.expected_reachable(max_depth=DEMO_MAX_DEPTH, sitemaps=False))
        assert with_sitemaps - without == set(SITEMAP_ONLY)
        robots = site.response_for("/robots.txt").body.decode()
        assert f"Sitemap: {ORIGIN}{SITEMAPS[0]}" in robots
        index = read_sitemap(site.response_for(SITEMAPS[0]).body, 10**6)
        assert index.is_index and index.locations == [ORIGIN + path for path in SITEMAPS[1:]]
        packed = site.response_for(SITEMAPS[2])
        assert packed.header("Content-Type") == "application/gzip"
        assert packed.body.startswith(b"\x1f\x8b"), "a .xml.gz file, gzipped as such"
        assert ORIGIN + SITEMAP_ONLY[1] in read_sitemap(packed.body, 10**6).locations

    def test_busy_pages_answer_by_attempt(self, site: DemoSite) -> None:
        first = site.response_for(RETRY_AFTER_PATH)
        assert (first.status, first.header("Retry-After")) == (429, "1")
        assert site.response_for(RETRY_AFTER_PATH, attempt=2).status == 200
        assert DemoSite(delay_scale=0).response_for(RETRY_AFTER_PATH).header("Retry-After") == "0"
        for path in BURST_PATHS:
            assert site.response_for(path).status == 503
            assert site.response_for(path, attempt=2).status == 200
        trickle = site.response_for(TRICKLE_PATH)
        assert (trickle.status, trickle.trickle) == (200, 1.0)

    def test_every_page_is_reachable_except_orphans(self, site: DemoSite) -> None:
        reached = paths(site.expected_reachable(max_depth=DEMO_MAX_DEPTH))
        assert {f"/page/{i}" for i in range(site.pages)} <= reached
        assert "/" in reached
        for orphan in ORPHANS:
            assert orphan not in reached
            assert site.response_for(orphan).status == 200

    def test_decoys_robots_txt_and_off_site_urls_are_not_reached(self, site: DemoSite) -> None:
        reached = site.expected_reachable(max_depth=DEMO_MAX_DEPTH)
        assert all(url.startswith(ORIGIN + "/") for url in reached)
        assert not any("/hidden/" in url for url in reached)
        assert ORIGIN + "/robots.txt" not in reached
        assert not any(ORIGIN + path in reached for path in SITEMAPS)

    def test_special_cases_are_reached(self, site: DemoSite) -> None:
        reached = paths(site.expected_reachable(max_depth=DEMO_MAX_DEPTH))
        expected = {
            "/docs/",
            "/docs/guide/intro",
            "/docs/api",
            "/search?q=treadle&page=2",
            "/area-target",
            "/only-via-redirect",
            "/latin1",
            "/meta-charset",
            "/meta-http-equiv",
            "/redirect/offsite",
            "/missing/1",
            "/missing/2",
            "/missing/3",
            "/error/500",
            "/files/notes.txt",
            "/files/data.json",
            "/files/logo.png",
            *REDIRECT_CHAIN,
            *REDIRECT_LOOP,
            *SLOW_PATHS,
            TRICKLE_PATH,
            RETRY_AFTER_PATH,
            *BURST_PATHS,
            CALENDAR_START,
            *SITEMAP_ONLY,
        }
        assert expected <= reached

    def test_origin_can_be_given_per_call(self) -> None:
        site = DemoSite(pages=5)
        reached = site.expected_reachable(origin="http://other.test:81", max_depth=12)
        assert "http://other.test:81/page/4" in reached
        body = site.response_for("/", origin="http://other.test:81").body
        assert b"http://other.test:81/page/1" in body


class TestPages:
    def test_deterministic(self) -> None:
        a, b = DemoSite(pages=50, seed=5), DemoSite(pages=50, seed=5)
        for path in ["/", "/page/0", "/page/49", "/files/logo.png", "/docs/"]:
            assert a.response_for(path) == b.response_for(path)

    def test_seed_changes_the_graph(self) -> None:
        a, b = DemoSite(pages=50, seed=1), DemoSite(pages=50, seed=2)
        assert a.response_for("/page/10").body != b.response_for("/page/10").body

    def test_each_page_links_to_several_others(self, site: DemoSite) -> None:
        counts = []
        scope = Scope(ORIGIN)
        for i in range(site.pages):
            url = f"{ORIGIN}/page/{i}"
            text, _ = decode_html(site.response_for(f"/page/{i}").body, None)
            counts.append(len([link for link in extract_links(text, url) if scope.allows(link)]))
        assert min(counts) >= 2
        assert sum(counts) / len(counts) >= 4

    def test_pages_use_every_link_spelling(self, site: DemoSite) -> None:
        bodies = b"".join(site.response_for(f"/page/{i}").body for i in range(site.pages))
        for spelling in [
            b'href="/page/',
            b'href="../page/',
            b'href="./',
            b'href="' + ORIGIN.encode() + b"/page/",
            b'href="' + ORIGIN.upper().encode() + b"/page/",
            b"#part-",
        ]:
            assert spelling in bodies
        index = site.response_for("/").body
        for needle in [b"&amp;", b"&#x2F;", b"mailto:", b"javascript:", b"tel:", b"data:"]:
            assert needle in index
        assert b"https://www.python.org/" in index
        assert b"<!-- <a href=" in index
        assert b"<script>" in index

    def test_base_href_page(self, site: DemoSite) -> None:
        docs = site.response_for("/docs/")
        assert b'<base href="guide/">' in docs.body
        links = extract_links(docs.body.decode(), ORIGIN + "/docs/")
        assert ORIGIN + "/docs/guide/intro" in links
        assert site.response_for("/docs/guide/intro").status == 200
        assert site.response_for("/docs/intro").status == 404  # where a base-less crawl goes

    def test_entity_in_href_must_be_decoded(self, site: DemoSite) -> None:
        assert site.response_for("/search?q=treadle&page=2").status == 200
        assert site.response_for("/search?q=treadle&amp;page=2").status == 404


class TestStatuses:
    @pytest.mark.parametrize(
        "path",
        [
            "/missing/1",
            "/nope",
            "/page/60",
            "/page/007",
            "/page/-1",
            "/page/x",
            "/page/\u00b2",
            "/page/1?q=1",
        ],
    )
    def test_not_found(self, site: DemoSite, path: str) -> None:
        response = site.response_for(path)
        assert response.status == 404
        assert response.reason == "Not Found"
        assert extract_links(response.body.decode(), ORIGIN + path) == []

    def test_server_error(self, site: DemoSite) -> None:
        assert site.response_for("/error/500").status == 500

    @pytest.mark.parametrize(
        ("path", "status"),
        [
            ("/redirect/301", 301),
            ("/redirect/302", 302),
            ("/redirect/307", 307),
            ("/redirect/308", 308),
        ],
    )
    def test_redirects_to_pages(self, site: DemoSite, path: str, status: int) -> None:
        response = site.response_for(path)
        assert response.status == status
        location = response.header("location")
        assert location is not None
        target = normalize_url(location, ORIGIN + path)
        assert site.response_for(target_of(target)).status == 200

    def test_redirect_chain_ends_at_a_page(self, site: DemoSite) -> None:
        url, hops = ORIGIN + REDIRECT_CHAIN[0], []
        response = site.response_for(REDIRECT_CHAIN[0])
        while response.status in REDIRECTS:
            hops.append(target_of(url))
            url = normalize_url(response.header("Location") or "", url)
            response = site.response_for(target_of(url))
        assert hops == list(REDIRECT_CHAIN)
        assert response.status == 200

    def test_redirect_loop(self, site: DemoSite) -> None:
        url = ORIGIN + REDIRECT_LOOP[0]
        visited = []
        for _ in range(4):
            response = site.response_for(target_of(url))
            assert response.status in REDIRECTS
            visited.append(target_of(url))
            url = normalize_url(response.header("Location") or "", url)
        assert visited == [*REDIRECT_LOOP, *REDIRECT_LOOP]

    def test_off_site_redirect(self, site: DemoSite) -> None:
        location = site.response_for("/redirect/offsite").header("Location")
        assert location is not None
        assert not Scope(ORIGIN).allows(location)

    def test_slow_pages(self) -> None:
        site = DemoSite(pages=20)
        delays = [site.response_for(path).delay_hint for path in SLOW_PATHS]
        assert all(0 < delay <= 0.5 for delay in delays)
        assert site.response_for("/page/1").delay_hint == 0
        fast = DemoSite(pages=20, delay_scale=0)
        assert all(fast.response_for(path).delay_hint == 0 for path in SLOW_PATHS)


class TestFilesAndEncodings:
    def test_text_file_has_url_like_text(self, site: DemoSite) -> None:
        response = site.response_for("/files/notes.txt")
        assert response.header("Content-Type") == "text/plain; charset=utf-8"
        assert b"/hidden/" in response.body
        assert b"<a href=" in response.body

    def test_json_file(self, site: DemoSite) -> None:
        response = site.response_for("/files/data.json")
        assert response.header("Content-Type") == "application/json"
        assert b"/hidden/" in response.body

    def test_png_is_valid(self, site: DemoSite) -> None:
        response = site.response_for("/files/logo.png")
        assert response.header("Content-Type") == "image/png"
        body = response.body
        assert body.startswith(b"\x89PNG\r\n\x1a\n")
        position, kinds = 8, []
        while position < len(body):
            (length,) = struct.unpack(">I", body[position : position + 4])
            kind = body[position + 4 : position + 8]
            data = body[position + 8 : position + 8 + length]
            (crc,) = struct.unpack(">I", body[position + 8 + length : position + 12 + length])
            assert crc == zlib.crc32(kind + data)
            if kind == b"IDAT":
                assert len(zlib.decompress(data)) == 8 * (1 + 8 * 3)
            kinds.append(kind)
            position += 12 + length
        assert kinds == [b"IHDR", b"IDAT", b"IEND"]

    def test_latin1_page_declares_its_charset_in_the_header(self, site: DemoSite) -> None:
        response = site.response_for("/latin1")
        assert "ISO-8859-1" in (response.header("Content-Type") or "")
        with pytest.raises(UnicodeDecodeError):
            response.body.decode("utf-8")
        text, encoding = decode_html(response.body, response.header("Content-Type"))
        assert encoding == "iso8859-1"
        assert "Caf\u00e9" in text

    @pytest.mark.parametrize(
        ("path", "encoding", "sample"),
        [
            ("/meta-charset", "cp1252", "\u20ac 12"),
            ("/meta-http-equiv", "koi8-r", "\u043c\u0438\u0440"),
        ],
    )
    def test_charset_only_in_meta(
        self, site: DemoSite, path: str, encoding: str, sample: str
    ) -> None:
        response = site.response_for(path)
        assert response.header("Content-Type") == "text/html"
        text, used = decode_html(response.body, response.header("Content-Type"))
        assert used == encoding
        assert sample in text

    def test_robots_txt(self, site: DemoSite) -> None:
        response = site.response_for("/robots.txt")
        assert response.status == 200
        policy = RobotsPolicy.from_response(response.status, response.body, "treadle")
        assert not policy.allowed(ORIGIN + DISALLOWED_PREFIX + "secret")
        assert policy.allowed(ORIGIN + "/page/1")
        assert policy.crawl_delay is None
        assert site.response_for(DISALLOWED_PREFIX + "secret").status == 200


class TestApi:
    def test_header_lookup_ignores_case(self) -> None:
        response = DemoResponse(200, (("Content-Type", "text/plain"),), b"")
        assert response.header("content-type") == "text/plain"
        assert response.header("Location") is None
        assert response.reason == "OK"

    def test_responses_are_cached(self, site: DemoSite) -> None:
        assert site.response_for("/page/3") is site.response_for("/page/3")

    def test_cache_stays_bounded_whatever_the_origins(self) -> None:
        site = DemoSite(pages=2)
        for port in range(3000):
            site.response_for("/page/1", origin=f"http://127.0.0.1:{port}")
        assert len(site._cache) <= site._cache_limit

    def test_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="at least 1 page"):
            DemoSite(pages=0)
        with pytest.raises(ValueError, match="delay_scale"):
            DemoSite(delay_scale=-1)

    def test_repr(self) -> None:
        assert repr(DemoSite(pages=3, seed=4)) == (
            "DemoSite(pages=3, seed=4, origin='http://localhost')"
        )
