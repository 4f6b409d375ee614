"""A deterministic generated web site for crawler demos, tests and benchmarks, as data.

``DemoSite(pages=N, seed=S)`` says what each path returns (``response_for``, given how
many times it was asked for) and which URLs a correct crawler reaches
(``expected_reachable``); serving it over a socket is someone else's job. Imports
``treadle.crawl.urls`` and the standard library only.

What the site holds, so a crawl over it exercises every rule of the crawler:

* ``/`` and ``/page/0`` .. ``/page/N-1``: HTML pages; each links to the next (so all
  are reachable) and to several others, spelled root-relative, relative, with dot
  segments, absolute (also with an upper-cased scheme and host), with fragments.
  Each also links off-site and to non-http schemes, which must not be followed.
* ``/``: links whose hrefs use entities (``&amp;``, ``&#x2F;``), padded with spaces,
  repeated ``href`` attributes, an ``<area>``, and decoys that are not links (in a
  comment, a ``<script>``, a ``<style>``, a ``<link>``) pointing at ``/hidden/...``,
  a path no correct crawler requests.
* ``/docs/``: a ``<base href>`` (and a second one, which must be ignored).
* Redirects: 301, 302, 307 and 308 to pages (one to a page reachable only that way),
  a chain of three, a loop of two, and one to another host.
* 404s (links to ``/missing/...``), a 500, slow pages (``delay_hint`` > 0).
* Non-HTML files: text/plain and application/json holding URL-like text (not to be
  followed), and a PNG image.
* Encodings: ``/latin1`` (charset in the header), ``/meta-charset`` and
  ``/meta-http-equiv`` (charset only in ``<meta>``).
* ``/robots.txt`` disallowing ``/private/`` (linked from ``/``), with no crawl delay,
  naming ``/sitemap.xml``: a sitemap index of a plain sitemap and a gzipped one
  (``.xml.gz``), which list pages reachable only through them (``SITEMAP_ONLY``), a
  disallowed one and an off-site one.
* ``/orphan/1`` and ``/orphan/2``: served, but linked from nowhere.
* Traps a polite crawler gets through: ``/busy/retry-after`` answers 429 with a
  ``Retry-After`` first; ``/busy/burst/1``.. answer 503 at once (a burst), then the page; the body
  of ``/slow/trickle`` arrives a little at a time; ``/calendar/2026-01`` starts an
  endless calendar (each month links the months before and after), which only a
  depth bound ends.
"""

from __future__ import annotations

import dataclasses
import gzip
import html
import http
import json
import random
import struct
import zlib
from collections import deque

from treadle.crawl.urls import normalize_url

__all__ = [
    "BURST_PATHS",
    "CALENDAR_START",
    "DISALLOWED_PREFIX",
    "ORPHANS",
    "REDIRECT_CHAIN",
    "REDIRECT_LOOP",
    "RETRY_AFTER_PATH",
    "SITEMAPS",
    "SITEMAP_ONLY",
    "SLOW_PATHS",
    "TRICKLE_PATH",
    "DemoResponse",
    "DemoSite",
]

DISALLOWED_PREFIX = "/private/"
"""The path prefix robots.txt disallows."""
ORPHANS = ("/orphan/1", "/orphan/2")
"""Pages the site serves but never links to."""
REDIRECT_CHAIN = ("/redirect/chain/1", "/redirect/chain/2", "/redirect/chain/3")
"""Each redirects to the next; the last to a page."""
REDIRECT_LOOP = ("/redirect/loop/a", "/redirect/loop/b")
"""Each redirects to the other."""
SLOW_PATHS = ("/slow/1", "/slow/2", "/slow/3")
"""Pages with a ``delay_hint``."""
TRICKLE_PATH = "/slow/trickle"
"""A page whose body the server sends a piece at a time (``DemoResponse.trickle``)."""
RETRY_AFTER_PATH = "/busy/retry-after"
"""Answers 429 with ``Retry-After`` the first time, then the page."""
BURST_PATHS = ("/busy/burst/1", "/busy/burst/2", "/busy/burst/3")
"""Each answers 503 the first time (together, a burst of 503s), then the page."""
CALENDAR_START = "/calendar/2026-01"
"""The month ``/`` links to; every month links the one before and the one after."""
SITEMAPS = ("/sitemap.xml", "/sitemaps/pages.xml", "/sitemaps/more.xml.gz")
"""The sitemap index (named by robots.txt) and the two sitemaps it lists."""
SITEMAP_ONLY = ("/from-sitemap/1", "/from-sitemap/2")
"""Pages that only the sitemaps list."""

_BURST_LENGTH = 1
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# What each sitemap of SITEMAPS[1:] lists (paths on the site, or absolute URLs).
_SITEMAP_ENTRIES = {
    SITEMAPS[1]: ("/", "/page/1", SITEMAP_ONLY[0], "https://example.org/not-this-site"),
    SITEMAPS[2]: (SITEMAP_ONLY[1], DISALLOWED_PREFIX + "from-sitemap"),
}
_SITEMAP_XMLNS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
_HTML_UTF8 = "text/html; charset=utf-8"
_OFF_SITE = (
    "https://www.python.org/",
    "http://example.org/page/1",
    "https://docs.python.org/3/library/asyncio.html#module-asyncio",
    "//example.net/protocol-relative",
    "http://www.example.com:8080/elsewhere",
)
_NON_HTTP = (
    "mailto:crawler@example.org",
    "javascript:void(0)",
    "tel:+15555550100",
    "data:text/html,%3Ch1%3Ehello%3C/h1%3E",
    "ftp://ftp.example.org/pub/",
)
_WORDS = (
    "coroutine", "future", "task", "loop", "selector", "socket", "callback", "frontier",
    "worker", "queue", "crawler", "fetch", "link", "page", "yield", "await", "resume",
    "suspend", "event", "ready", "timer",
)  # fmt: skip

Headers = tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True, slots=True)
class DemoResponse:
    """What the site answers to one GET: status, headers, body, and how long to stall.

    ``headers`` holds Content-Type (and Location for a redirect); the server adds
    Content-Length, Date and the like. ``delay_hint`` is seconds the server should
    wait before answering (0 for most pages); ``trickle`` is seconds the server should
    take to send the body, a piece at a time (0: at once).
    """

    status: int
    headers: Headers
    body: bytes
    delay_hint: float = 0.0
    trickle: float = 0.0

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def reason(self) -> str:
        """The standard reason phrase of ``status``, e.g. ``Moved Permanently``."""
        return http.HTTPStatus(self.status).phrase


@dataclasses.dataclass(slots=True)
class _Rendered:
    """A response plus the truth about it: the site paths a correct crawler follows."""

    response: DemoResponse
    targets: list[str]


class _Html:
    """Builds one HTML page and, alongside the markup, the paths its links lead to."""

    def __init__(self, title: str, head: str = "") -> None:
        self.parts = [
            f"<!DOCTYPE html>\n<html><head>{head}<title>{html.escape(title)}</title></head>"
            f"<body>\n<h1>{html.escape(title)}</h1>\n"
        ]
        self.targets: list[str] = []

    def link(self, href: str, target: str | None, text: str = "") -> None:
        """Add ``<a href="href">`` (``href`` is raw markup); ``target`` is the site path
        it leads to, or None for a link a crawler must not follow."""
        self.parts.append(f'<p><a href="{href}">{html.escape(text or href)}</a></p>\n')
        if target is not None:
            self.targets.append(target)

    def raw(self, markup: str, *targets: str) -> None:
        """Add markup as is, with the site paths its real links lead to."""
        self.parts.append(markup + "\n")
        self.targets.extend(targets)

    def render(self, content_type: str = _HTML_UTF8, encoding: str = "utf-8") -> _Rendered:
        body = ("".join(self.parts) + "</body></html>\n").encode(encoding)
        return _Rendered(DemoResponse(200, (("Content-Type", content_type),), body), self.targets)


def _filler(rng: random.Random) -> str:
    paragraphs = (
        " ".join(rng.choice(_WORDS) for _ in range(rng.randint(40, 90)))
        for _ in range(rng.randint(2, 5))
    )
    return "\n".join(f"<p>{text}.</p>" for text in paragraphs)


def _png(seed: int) -> bytes:
    """A valid 8x8 RGB PNG whose colours depend on ``seed``.

    Stored uncompressed (zlib level 0) so the bytes do not depend on the zlib build.
    """
    rng = random.Random(f"treadle-demo-png:{seed}")
    rows = b"".join(b"\x00" + bytes(rng.randrange(256) for _ in range(8 * 3)) for _ in range(8))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )


def _redirect(status: int, location: str, target: str | None) -> _Rendered:
    body = f"Redirecting to {location}\n".encode()
    headers = (("Location", location), ("Content-Type", "text/plain; charset=utf-8"))
    return _Rendered(DemoResponse(status, headers, body), [target] if target else [])


def _plain(status: int, content_type: str, body: bytes) -> _Rendered:
    return _Rendered(DemoResponse(status, (("Content-Type", content_type),), body), [])


_NOT_FOUND = _plain(404, _HTML_UTF8, b"<!DOCTYPE html>\n<h1>404 Not Found</h1>\n")


class DemoSite:
    """A generated site of ``pages`` HTML pages plus the special cases listed above.

    The same ``pages`` and ``seed`` give the same site, byte for byte. Absolute links
    in the pages point at ``origin`` (``http://host:port``); pass the origin the site
    is served at, here or per request to ``response_for`` (a server can use the
    request's Host header). ``delay_scale`` multiplies every ``delay_hint`` (0 turns
    the slow pages fast).
    """

    def __init__(
        self,
        pages: int = 100,
        seed: int = 0,
        *,
        origin: str = "http://localhost",
        delay_scale: float = 1.0,
    ) -> None:
        if pages < 1:
            raise ValueError(f"a DemoSite needs at least 1 page, got {pages}")
        if delay_scale < 0:
            raise ValueError(f"delay_scale must be zero or more, got {delay_scale}")
        self.pages = pages
        """How many ``/page/<i>`` pages there are."""
        self.seed = seed
        """The seed the link graph and text are generated from."""
        self.origin = origin.rstrip("/")
        """The default origin for absolute links."""
        self.delay_scale = delay_scale
        """The factor applied to every delay_hint."""
        # Responses of known paths, by (origin, path). Origins may come from Host
        # headers, so the cache is emptied when it outgrows a few origins' worth.
        self._cache: dict[tuple[str, str], DemoResponse] = {}
        self._cache_limit = 4 * (pages + 100)

    def __repr__(self) -> str:
        return f"DemoSite(pages={self.pages}, seed={self.seed}, origin={self.origin!r})"

    def response_for(
        self, path: str, *, origin: str | None = None, attempt: int = 1
    ) -> DemoResponse:
        """The response to ``GET path`` (a request target such as ``/page/3`` or
        ``/search?q=treadle&page=2``); 404 for anything the site does not have.
        ``attempt`` says how many times the path has been asked for, this time included:
        the busy paths answer 429 or 503 the first times."""
        origin = (origin or self.origin).rstrip("/")
        if path == RETRY_AFTER_PATH or path in BURST_PATHS:
            return self._busy(path, attempt).response
        key = (origin, path)
        response = self._cache.get(key)
        if response is None:
            rendered = self._render(path, origin)
            response = rendered.response
            if rendered is not _NOT_FOUND:
                if len(self._cache) >= self._cache_limit:
                    self._cache.clear()
                self._cache[key] = response
        return response

    def expected_reachable(
        self,
        *,
        max_depth: int,
        origin: str | None = None,
        obey_robots: bool = True,
        sitemaps: bool = True,
    ) -> set[str]:
        """The URLs a correct, strict crawler fetches when started at ``origin + "/"``
        and following links at most ``max_depth`` deep (the calendar is endless).

        That includes redirects, 404s, the 500, the busy pages and the non-HTML files
        it finds links to, and (when ``sitemaps``) the pages the sitemaps list, at
        depth 1; it excludes orphans, off-site URLs, the decoys under ``/hidden/``,
        robots.txt and the sitemaps themselves, and (when ``obey_robots``) everything
        under ``DISALLOWED_PREFIX``. Computed from the site's own record of its links,
        not by parsing its pages, so it can check a link extractor. Depths are the
        shortest paths (a redirect's target has the redirect's depth); a crawler agrees
        as long as no page other than the calendar's lies near ``max_depth`` (the
        calendar is a line, so any crawl order finds each month at its shortest depth).
        """
        origin = (origin or self.origin).rstrip("/")
        depth = {"/": 0}
        todo = deque(["/"])
        if sitemaps and max_depth >= 1:
            for entries in _SITEMAP_ENTRIES.values():
                for path in entries:
                    on_site = path.startswith("/") and path not in depth
                    if on_site and not (obey_robots and path.startswith(DISALLOWED_PREFIX)):
                        depth[path] = 1
                        todo.append(path)
        # Breadth first, where following a redirect costs no depth (0-1 BFS: a redirect's
        # target goes to the front of the queue, and a shorter way in lowers a depth).
        while todo:
            path = todo.popleft()
            rendered = self._render(path, origin)
            step = 0 if rendered.response.status in _REDIRECT_STATUSES else 1
            if depth[path] + step > max_depth:
                continue
            for target in rendered.targets:
                if obey_robots and target.startswith(DISALLOWED_PREFIX):
                    continue
                if depth.get(target, max_depth + 1) > depth[path] + step:
                    depth[target] = depth[path] + step
                    if step:
                        todo.append(target)
                    else:
                        todo.appendleft(target)
        return {normalize_url(origin + path) for path in depth}

    # -- routing ---------------------------------------------------------------------

    def _page_path(self, i: int) -> str:
        return f"/page/{i % self.pages}"

    def _render(self, path: str, origin: str) -> _Rendered:
        """The response to ``path`` and the site paths a crawler follows from it."""
        p = self._page_path
        match path:
            case "/":
                return self._index(origin)
            case _ if path.startswith("/page/"):
                number = path.removeprefix("/page/")
                # Canonical ASCII numbers only: not "/page/007", nor superscript digits.
                canonical = number.isascii() and number.isdigit() and str(int(number)) == number
                if canonical and int(number) < self.pages:
                    return self._numbered_page(int(number), origin)
                return _NOT_FOUND
            case "/docs/":
                return self._docs()
            case "/docs/guide/intro" | "/docs/api":
                return self._leaf(path, "/docs/")
            case "/search?q=treadle&page=2":
                return self._leaf("Search results", p(11))
            case "/area-target" | "/only-via-redirect" | "/private/deeper":
                return self._leaf(path, "/")
            case "/orphan/1" | "/orphan/2":
                return self._leaf(path, "/")
            case "/private/secret":
                return self._leaf("Disallowed by robots.txt", DISALLOWED_PREFIX + "deeper")
            case "/latin1":
                return self._latin1()
            case "/meta-charset":
                return self._meta_charset()
            case "/meta-http-equiv":
                return self._meta_http_equiv()
            # Redirects: Location spelled relative, root-relative or absolute.
            case "/redirect/301":
                return _redirect(301, p(1), p(1))
            case "/redirect/302":
                return _redirect(302, origin + p(2), p(2))
            case "/redirect/307":
                return _redirect(307, "../only-via-redirect", "/only-via-redirect")
            case "/redirect/308":
                return _redirect(308, p(3), p(3))
            case "/redirect/chain/1":
                return _redirect(302, REDIRECT_CHAIN[1], REDIRECT_CHAIN[1])
            case "/redirect/chain/2":
                return _redirect(302, origin + REDIRECT_CHAIN[2], REDIRECT_CHAIN[2])
            case "/redirect/chain/3":
                return _redirect(302, p(6), p(6))
            case "/redirect/loop/a":
                return _redirect(302, REDIRECT_LOOP[1], REDIRECT_LOOP[1])
            case "/redirect/loop/b":
                return _redirect(302, REDIRECT_LOOP[0], REDIRECT_LOOP[0])
            case "/redirect/offsite":
                return _redirect(302, "https://example.org/", None)
            case "/slow/1" | "/slow/2" | "/slow/3":
                return self._slow(int(path[-1]))
            case "/files/notes.txt":
                return self._notes(origin)
            case "/files/data.json":
                return self._data(origin)
            case "/files/logo.png":
                return _plain(200, "image/png", _png(self.seed))
            case "/error/500":
                body = b"<!DOCTYPE html>\n<h1>500 Internal Server Error</h1>\n"
                return _plain(500, _HTML_UTF8, body)
            case "/robots.txt":
                return _plain(200, "text/plain; charset=utf-8", self._robots_txt(origin))
            case "/from-sitemap/1" | "/from-sitemap/2":
                return self._leaf(path, "/")
            case _ if path == TRICKLE_PATH:
                return self._trickle()
            case _ if path.startswith("/calendar/"):
                return self._calendar(path.removeprefix("/calendar/"))
            case _ if path in SITEMAPS:
                return self._sitemap(path, origin)
            case _ if path == RETRY_AFTER_PATH or path in BURST_PATHS:
                return self._busy(path, attempt=1)
        return _NOT_FOUND

    # -- the numbered pages ------------------------------------------------------------

    def _numbered_page(self, i: int, origin: str) -> _Rendered:
        rng = random.Random(f"treadle-demo:{self.seed}:{i}")
        page = _Html(f"Page {i}")
        page.link(f"/page/{(i + 1) % self.pages}", self._page_path(i + 1), "next")
        for n in range(rng.randint(3, 6)):
            j = rng.randrange(self.pages)
            target = self._page_path(j)
            style = (i + n) % 7
            if style == 0:
                page.link(f"/page/{j}", target)
            elif style == 1:
                page.link(f"{j}", target)  # relative to /page/i
            elif style == 2:
                page.link(f"../page/{j}", target)
            elif style == 3:
                page.link(f"{origin}/page/{j}", target)
            elif style == 4:
                page.link(f"/page/{j}#part-{n}", target)
            elif style == 5:
                page.link(f"./{j}", target)
            else:
                page.link(f"{origin.upper()}/page/{j}", target)
        page.link(html.escape(rng.choice(_OFF_SITE)), None, "elsewhere")
        page.link(html.escape(rng.choice(_NON_HTTP)), None, "not http")
        if i == self.pages // 2:
            page.link("/missing/3", "/missing/3", "a page that is not there")
        page.raw(_filler(rng))
        return page.render()

    # -- the special pages ---------------------------------------------------------------

    def _index(self, origin: str) -> _Rendered:
        page = _Html("treadle demo site")
        p = self._page_path
        page.link("/page/0", p(0), "first page")
        page.link(origin + p(1), p(1), "absolute")
        page.link(p(2).replace("/", "&#x2F;"), p(2), "numeric entities")
        page.link(f"  /page/{3 % self.pages}\n ", p(3), "padded with spaces")
        page.raw(
            f'<p><a href="/page/{4 % self.pages}" href="/hidden/second-href">first '
            "href wins</a></p>",
            p(4),
        )
        page.link(f"/a/b/../../page/{5 % self.pages}", p(5), "dot segments")
        page.link("#top", "/", "this page")
        page.link("/search?q=treadle&amp;page=2", "/search?q=treadle&page=2", "entity")
        for path in (
            "/docs/", "/latin1", "/meta-charset", "/meta-http-equiv", "/redirect/301",
            "/redirect/302", "/redirect/307", "/redirect/308", REDIRECT_CHAIN[0],
            REDIRECT_LOOP[0], "/redirect/offsite", *SLOW_PATHS, "/files/notes.txt",
            "/files/data.json", "/files/logo.png", "/missing/1", "/missing/2",
            "/error/500", DISALLOWED_PREFIX + "secret", TRICKLE_PATH, RETRY_AFTER_PATH,
            *BURST_PATHS, CALENDAR_START,
        ):  # fmt: skip
            page.link(path, path)
        page.raw(
            '<map name="m"><area shape="rect" coords="0,0,8,8" href="/area-target"></map>',
            "/area-target",
        )
        for href in _OFF_SITE + _NON_HTTP:
            page.link(html.escape(href), None)
        # Decoys: none of these is a link a crawler may follow.
        page.raw('<!-- <a href="/hidden/comment">commented out</a> -->')
        page.raw("<script>document.write('<a href=\"/hidden/script\">x</a>');</script>")
        page.raw('<style>/* <a href="/hidden/style"> */ a { color: teal; }</style>')
        page.raw('<link rel="stylesheet" href="/hidden/stylesheet.css">')
        page.raw('<img src="/hidden/image.png" alt=""><a name="top">an anchor</a>')
        return page.render()

    def _docs(self) -> _Rendered:
        # The first <base> sets the base URL; the second must be ignored.
        page = _Html("Docs", head='<base href="guide/"><base href="/hidden/second-base/">')
        page.link("intro", "/docs/guide/intro")
        page.link("../api", "/docs/api")
        page.link("/", "/", "home")
        return page.render(content_type="text/html;charset=UTF-8")

    def _leaf(self, title: str, *links: str) -> _Rendered:
        page = _Html(title)
        for link in links:
            page.link(link, link)
        return page.render()

    def _latin1(self) -> _Rendered:
        page = _Html("Latin-1")
        page.raw(
            "<p>Caf\u00e9 cr\u00e8me, na\u00efve fa\u00e7ade, \u00c6r\u00f8sk\u00f8bing, "
            "\u00bfqu\u00e9 tal?</p>"
        )
        page.link(self._page_path(7), self._page_path(7))
        return page.render(content_type="text/html; charset=ISO-8859-1", encoding="latin-1")

    def _meta_charset(self) -> _Rendered:
        page = _Html("windows-1252 in meta", head='<meta charset="windows-1252">')
        page.raw("<p>\u20ac 12, \u2018single\u2019 and \u201cdouble\u201d quotes</p>")
        page.link(self._page_path(8), self._page_path(8))
        return page.render(content_type="text/html", encoding="windows-1252")

    def _meta_http_equiv(self) -> _Rendered:
        head = '<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">'
        page = _Html("koi8-r in meta", head=head)
        page.raw("<p>\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440</p>")
        page.link(self._page_path(9), self._page_path(9))
        return page.render(content_type="text/html", encoding="koi8-r")

    def _slow(self, n: int) -> _Rendered:
        rendered = self._leaf(f"Slow page {n}", self._page_path(10 + n))
        delay = 0.05 * n * self.delay_scale
        rendered.response = dataclasses.replace(rendered.response, delay_hint=delay)
        return rendered

    def _trickle(self) -> _Rendered:
        rendered = self._leaf("A page that trickles in", "/")
        rendered.response = dataclasses.replace(rendered.response, trickle=self.delay_scale)
        return rendered

    def _busy(self, path: str, attempt: int) -> _Rendered:
        """The page at ``path``, after one 429 or a burst of 503s; the links it holds are
        the targets even while it is busy (they are followed once it answers)."""
        settled = self._leaf(f"Busy page {path}", "/")
        if path == RETRY_AFTER_PATH and attempt == 1:
            # Whole seconds, as the header allows: 1 s at the normal delay scale.
            wait = str(round(self.delay_scale))
            headers = (("Content-Type", "text/plain"), ("Retry-After", wait))
            return _Rendered(DemoResponse(429, headers, b"slow down\n"), settled.targets)
        if path in BURST_PATHS and attempt <= _BURST_LENGTH:
            busy = DemoResponse(503, (("Content-Type", "text/plain"),), b"overloaded\n")
            return _Rendered(busy, settled.targets)
        return settled

    def _calendar(self, month: str) -> _Rendered:
        year, dash, number = month.partition("-")
        canonical = (
            dash
            and len(year) == 4
            and year.isascii()
            and year.isdigit()
            and number in {f"{m:02d}" for m in range(1, 13)}
        )
        if not canonical or year == "0000":
            return _NOT_FOUND
        index = int(year) * 12 + int(number) - 1
        page = _Html(f"Calendar {month}")
        page.raw("<p>Nothing happens this month.</p>")
        for step, text in ((-1, "previous month"), (1, "next month")):
            neighbour = _month_path(index + step)
            if neighbour:
                page.link(neighbour, neighbour, text)
        page.link("/", "/", "home")
        return page.render()

    def _robots_txt(self, origin: str) -> bytes:
        lines = ["User-agent: *", f"Disallow: {DISALLOWED_PREFIX}"]
        lines.append(f"Sitemap: {origin}{SITEMAPS[0]}")
        return ("\n".join(lines) + "\n").encode()

    def _sitemap(self, path: str, origin: str) -> _Rendered:
        """The sitemap index, or one of its sitemaps (the second gzipped, as a .xml.gz)."""
        if path == SITEMAPS[0]:
            entries = "".join(f"<sitemap><loc>{origin}{p}</loc></sitemap>\n" for p in SITEMAPS[1:])
            document = f"<sitemapindex {_SITEMAP_XMLNS}>\n{entries}</sitemapindex>\n"
        else:
            locations = (
                origin + entry if entry.startswith("/") else entry
                for entry in _SITEMAP_ENTRIES[path]
            )
            entries = "".join(f"<url><loc>{html.escape(u)}</loc></url>\n" for u in locations)
            document = f"<urlset {_SITEMAP_XMLNS}>\n{entries}</urlset>\n"
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n' + document).encode()
        if path.endswith(".gz"):
            return _plain(200, "application/gzip", gzip.compress(body, mtime=0))
        return _plain(200, "application/xml", body)

    def _notes(self, origin: str) -> _Rendered:
        text = (
            "Plain text is not HTML: nothing here is a link.\n"
            f"See {origin}/hidden/from-text or /hidden/from-text-path,\n"
            '<a href="/hidden/from-text-anchor">not a link either</a>\n'
        )
        return _plain(200, "text/plain; charset=utf-8", text.encode())

    def _data(self, origin: str) -> _Rendered:
        data = {
            "next": "/hidden/from-json",
            "homepage": f"{origin}/hidden/from-json-absolute",
            "html": '<a href="/hidden/from-json-anchor">x</a>',
        }
        return _plain(200, "application/json", json.dumps(data, indent=2).encode())


def _month_path(index: int) -> str:
    """The calendar page of month ``index`` (year * 12 + month - 1), or "" past year 9999."""
    year, month = divmod(index, 12)
    return f"/calendar/{year:04d}-{month + 1:02d}" if 1 <= year <= 9999 else ""
