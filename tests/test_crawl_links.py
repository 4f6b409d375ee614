"""Link extraction and charset detection (treadle.crawl.links), on both parsers.

Every behaviour test runs on lexbor and on the standard library's parser: the one
contract of docs/crawling.md. tests/test_crawl_parsers.py compares the two on real
and generated pages.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from treadle.crawl import links as links_module
from treadle.crawl.links import (
    LEXBOR,
    META_SCAN_BYTES,
    PARSERS,
    STDLIB,
    charset_from_content_type,
    charset_from_meta,
    decode_html,
    default_parser,
    extract_links,
)
from treadle.crawl.urls import Scope

PAGE = "http://example.com/dir/page.html"

Links = Callable[..., list[str]]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def links(parser: str) -> Links:
    def extract(html: str, page: str = PAGE) -> list[str]:
        return extract_links(html, page, parser=parser)

    return extract


class TestExtractLinks:
    def test_relative_and_absolute_in_document_order(self, links: Links) -> None:
        html = """
            <a href="b.html">b</a> <a href="/root">root</a>
            <a href="http://Example.com:80/abs">abs</a> <a href="../up">up</a>
        """
        assert links(html) == [
            "http://example.com/dir/b.html",
            "http://example.com/root",
            "http://example.com/abs",
            "http://example.com/up",
        ]

    def test_area_href_is_a_link(self, links: Links) -> None:
        html = '<map><area shape="rect" href="/area"></map>'
        assert links(html) == ["http://example.com/area"]

    def test_other_tags_and_anchors_without_href_are_not_links(self, links: Links) -> None:
        html = """<link rel="stylesheet" href="/s.css"><img src="/i.png">
            <script src="/j.js"></script><a name="x">anchor</a><iframe src="/f"></iframe>"""
        assert links(html) == []

    def test_duplicates_and_fragments_collapse_to_first_occurrence(self, links: Links) -> None:
        html = '<a href="/a">1</a><a href="/b#x">2</a><a href="/a#y">3</a><a href="/b">4</a>'
        assert links(html) == ["http://example.com/a", "http://example.com/b"]

    def test_entities_in_hrefs_are_decoded(self, links: Links) -> None:
        html = '<a href="/s?a=1&amp;b=2">1</a><a href="&#x2F;slash&#47;es">2</a>'
        assert links(html) == ["http://example.com/s?a=1&b=2", "http://example.com/slash/es"]

    def test_comments_scripts_and_styles_hold_no_links(self, links: Links) -> None:
        html = """
            <!-- <a href="/in-comment">no</a> -->
            <script>var s = '<a href="/in-script">no</a>';</script>
            <style>/* <a href="/in-style"> */</style>
            <a href="/real">yes</a>
        """
        assert links(html) == ["http://example.com/real"]

    @pytest.mark.parametrize(
        ("html", "expected"),
        [
            pytest.param(
                """<head><base href="../other/"><base href="http://elsewhere.com/"></head>
                <a href="x">x</a><a href="/abs">abs</a>""",
                ["http://example.com/other/x", "http://example.com/abs"],
                id="the-first-base-href-wins-and-resolves-against-the-page",
            ),
            pytest.param(
                '<a href="early">e</a><base href="http://example.com/b/"><a href="late">l</a>',
                ["http://example.com/b/early", "http://example.com/b/late"],
                id="it-applies-to-links-before-it",
            ),
            pytest.param(
                '<base href="javascript:alert(1)"><base href="/ignored/"><a href="x">x</a>',
                ["http://example.com/dir/x"],
                id="an-unusable-base-falls-back-to-the-page-url",
            ),
            pytest.param(
                '<base target="_blank"><base href="/b/"><a href="x">x</a>',
                ["http://example.com/b/x"],
                id="a-base-without-href-does-not-count",
            ),
            pytest.param(
                '<base href="/b/"><a href="#x">x</a><a href="">y</a><a href>z</a>',
                ["http://example.com/b/"],
                id="empty-hrefs-and-fragments-resolve-against-it",
            ),
            pytest.param(
                '<base href><base href="/ignored/"><a href="x">x</a><a href="#f">f</a>',
                ["http://example.com/dir/x"],
                id="a-bare-base-href-is-the-page-itself",
            ),
        ],
    )
    def test_base_href(self, links: Links, html: str, expected: list[str]) -> None:
        assert links(html) == expected

    @pytest.mark.parametrize(
        "href",
        [
            "javascript:void(0)",
            "JavaScript:alert(1)",
            "mailto:someone@example.com",
            "tel:+15555550100",
            "data:text/html,%3Ch1%3E",
            "ftp://ftp.example.com/",
            "http://[::1/broken",
        ],
    )
    def test_non_http_and_unparseable_links_are_skipped(self, links: Links, href: str) -> None:
        assert links(f'<a href="{href}">x</a><a href="/kept">k</a>') == ["http://example.com/kept"]

    def test_whitespace_around_href_is_ignored(self, links: Links) -> None:
        assert links('<a href="  \n/spaced\t ">x</a>') == ["http://example.com/spaced"]

    def test_first_of_repeated_href_attributes_wins(self, links: Links) -> None:
        assert links('<a href="/first" href="/second">x</a>') == ["http://example.com/first"]

    def test_upper_case_markup(self, links: Links) -> None:
        assert links('<A HREF="/UP">x</A>') == ["http://example.com/UP"]

    def test_empty_href_and_fragments_of_the_page_itself_are_skipped(self, links: Links) -> None:
        html = '<a href="">x</a><a href="#top">y</a><a href>z</a><a href=" #sp ">w</a>'
        assert links(html) == []

    def test_a_link_to_the_page_by_its_name_is_kept(self, links: Links) -> None:
        assert links('<a href="page.html#top">x</a>') == [PAGE]

    def test_links_in_tables_lists_and_forms(self, links: Links) -> None:
        html = """<table><tr><td><a href="/1">1</a></td><td><area href="/2"></td></tr>
            </table><ul><li><a href="/3">3</a><li><a href="/4">4</a></ul>
            <form><a href="/5">5</a></form><p><a href="/6"><b>6</b></a></p>"""
        assert links(html) == [f"http://example.com/{i}" for i in range(1, 7)]

    def test_area_and_a_keep_document_order(self, links: Links) -> None:
        html = '<a href="/1">1</a><map><area href="/2"></map><a href="/3">3</a>'
        assert links(html) == [f"http://example.com/{i}" for i in range(1, 4)]

    def test_malformed_markup_does_not_stop_extraction(self, links: Links) -> None:
        html = '<a href="/before">b</a><![bogus section]><a href="/after">a</a><a href="/unclosed'
        assert links(html) == ["http://example.com/before", "http://example.com/after"]

    def test_off_host_links_are_returned_scope_is_the_callers_job(self, links: Links) -> None:
        assert links('<a href="https://other.org/x#f">x</a>') == ["https://other.org/x"]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("text/html", None),
        ("text/html; charset=UTF-8", "utf-8"),
        ('text/html; Charset="ISO-8859-1"', "iso-8859-1"),
        ("text/html;charset=koi8-r;format=flowed", "koi8-r"),
        ("text/html; format=flowed; charset = 'windows-1252' ", "windows-1252"),
        ("text/html; charset=", None),
    ],
)
def test_charset_from_content_type(header: str | None, expected: str | None) -> None:
    assert charset_from_content_type(header) == expected


class TestCharsetFromMeta:
    def test_meta_charset(self, parser: str) -> None:
        assert charset_from_meta(b'<html><head><meta charset="KOI8-R">', parser) == "koi8-r"

    def test_meta_http_equiv(self, parser: str) -> None:
        html = b'<meta http-equiv="content-type" content="text/html; charset=iso-8859-2">'
        assert charset_from_meta(html, parser) == "iso-8859-2"

    def test_first_meta_wins(self, parser: str) -> None:
        html = b'<meta name="x" content="y"><meta charset=latin-1><meta charset="utf-8">'
        assert charset_from_meta(html, parser) == "latin-1"

    def test_meta_in_a_comment_does_not_count(self, parser: str) -> None:
        assert charset_from_meta(b"<!-- <meta charset=koi8-r> --><p>hi", parser) is None

    def test_no_meta(self, parser: str) -> None:
        assert charset_from_meta(b"<html><p>no declaration</p>", parser) is None

    def test_non_ascii_bytes_before_the_meta_are_fine(self, parser: str) -> None:
        assert (
            charset_from_meta("<title>caf\u00e9</title>".encode() + b"<meta charset=x>", parser)
            == "x"
        )

    def test_only_the_prefix_is_searched(self, parser: str) -> None:
        html = b"<p>" + b"x" * META_SCAN_BYTES + b'<meta charset="koi8-r">'
        assert charset_from_meta(html, parser) is None

    def test_declared_utf16_means_utf8(self, parser: str) -> None:
        assert charset_from_meta(b'<meta charset="UTF-16LE">', parser) == "utf-8"


class TestDecodeHtml:
    def test_header_charset_first(self, parser: str) -> None:
        body = '<meta charset="koi8-r"><p>caf\u00e9</p>'.encode("latin-1")
        text, encoding = decode_html(body, "text/html; charset=ISO-8859-1", parser=parser)
        assert encoding == "iso8859-1"
        assert "caf\u00e9" in text

    def test_meta_is_not_searched_when_the_header_names_a_charset(
        self, parser: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def refuse(prefix: bytes, parser: str | None = None) -> str | None:
            raise AssertionError("the page was parsed for a <meta> charset")

        monkeypatch.setattr(links_module, "charset_from_meta", refuse)
        body = b'<meta charset="koi8-r"><p>ok</p>'
        assert decode_html(body, "text/html; charset=utf-8", parser=parser)[1] == "utf-8"
        with pytest.raises(AssertionError, match="parsed for a <meta> charset"):
            decode_html(body, "text/html", parser=parser)

    def test_meta_when_header_has_no_charset(self, parser: str) -> None:
        body = '<meta charset="windows-1252"><p>\u20ac 5</p>'.encode("windows-1252")
        text, encoding = decode_html(body, "text/html", parser=parser)
        assert encoding == "cp1252"
        assert "\u20ac 5" in text

    def test_utf8_fallback_replaces_bad_bytes(self, parser: str) -> None:
        text, encoding = decode_html(b"<p>ok \xff bad</p>", None, parser=parser)
        assert encoding == "utf-8"
        assert text == "<p>ok \ufffd bad</p>"

    def test_unknown_header_charset_tries_meta_then_utf8(self, parser: str) -> None:
        body = '<meta charset="koi8-r"><p>\u043c\u0438\u0440</p>'.encode("koi8-r")
        text, encoding = decode_html(body, "text/html; charset=no-such-charset", parser=parser)
        assert encoding == "koi8-r"
        assert "\u043c\u0438\u0440" in text
        text, encoding = decode_html(
            b"<p>caf\xc3\xa9</p>", "text/html; charset=bogus", parser=parser
        )
        assert (text, encoding) == ("<p>caf\u00e9</p>", "utf-8")

    def test_an_empty_body_with_an_unknown_charset_is_utf8(self, parser: str) -> None:
        # b"".decode("bogus") asks no codec: the name was looked up after, and raised.
        assert decode_html(b"", "text/html; charset=bogus", parser=parser) == ("", "utf-8")

    @pytest.mark.parametrize("charset", ["base64", "rot13", "idna"])
    def test_codecs_that_are_not_text_encodings_fall_back(self, parser: str, charset: str) -> None:
        text, encoding = decode_html(
            b"<p>hello</p>", f"text/html; charset={charset}", parser=parser
        )
        assert (text, encoding) == ("<p>hello</p>", "utf-8")

    def test_wrong_declared_charset_does_not_raise(self, parser: str) -> None:
        text, encoding = decode_html(b"\xff\xfe\xfd", "text/html; charset=utf-8", parser=parser)
        assert (text, encoding) == ("\ufffd\ufffd\ufffd", "utf-8")


class TestParserChoice:
    def test_lexbor_is_the_default_when_selectolax_is_installed(self) -> None:
        pytest.importorskip("selectolax")
        assert default_parser() == LEXBOR

    def test_without_selectolax_the_standard_library_parses(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(links_module, "_lexbor", lambda: None)
        assert default_parser() == STDLIB
        assert extract_links('<a href="/x">x</a>', PAGE) == ["http://example.com/x"]
        with pytest.raises(ValueError, match=r"needs selectolax: pip install 'treadle\[crawl\]'"):
            extract_links("", PAGE, parser=LEXBOR)

    def test_an_unknown_parser_is_named(self) -> None:
        with pytest.raises(ValueError, match="parser must be one of lexbor, stdlib, got 'html5'"):
            extract_links("", PAGE, parser="html5")


# --- memoised resolution: the same links as resolving every href afresh ----------------

_HREF_PIECES = st.sampled_from(
    ["a", "B", ".", "..", "/", "//", "?", "#", ";", ":", "%2e", "%7E", "~", "@", "[", "]",
     "\t", " ", "\x00", "\u00e9", "http:", "https://", "h.org", "mailto:x"]
)
_BASE_PIECES = st.sampled_from(["/", "a", "..", ".", "?", ";", "#", "//", "%41", "b:c"])


def _resolved_afresh(hrefs: list[str], page: str, keep: Callable[[str], bool]) -> list[str]:
    """What LinkResolver.resolve must give: each href resolved against the page, no memo."""
    links: dict[str, None] = {}
    for raw in hrefs:
        href = raw.strip("\t\n\f\r ").partition("#")[0]
        if not href:
            continue  # the page itself
        url = links_module._resolve(href, page)
        if url is not None and keep(url):
            links[url] = None
    return list(links)


@given(
    hrefs=st.lists(st.lists(_HREF_PIECES, max_size=8).map("".join), min_size=1, max_size=6),
    scheme=st.sampled_from(["http://", "https://", "HTTP://", "", "x:"]),
    host=st.sampled_from(["example.com", "EXAMPLE.com:80", "[::1]", "", "u@h"]),
    path=st.lists(_BASE_PIECES, max_size=6).map("".join),
    other_page=st.sampled_from(["other.html", "?q=1", "x/../y", ""]),
)
@settings(max_examples=400)
def test_memoised_resolution_matches_resolving_afresh(
    hrefs: list[str], scheme: str, host: str, path: str, other_page: str
) -> None:
    # A resolver that met the hrefs on another page of the same folder (its memo is
    # keyed by the folder) gives what resolving each href against the page gives.
    page = scheme + host + path
    directory = links_module._directory_of(page)
    resolver = links_module.LinkResolver()
    if directory is not None:
        resolver.resolve(links_module.PageLinks(hrefs, None), directory + other_page)
    got = resolver.resolve(links_module.PageLinks(hrefs, None), page)
    assert got == _resolved_afresh(hrefs, page, lambda url: True), (hrefs, page)


_HOSTS = [
    "example.com", "EXAMPLE.COM", "www.example.com", "example.com:80", "example.com:8080",
    "u@example.com", "other.org", "[::1]", "ex%41mple.com", "example.com.", "ex\tample.com",
    "[::1", "",
]  # fmt: skip
_ABSOLUTE_HREFS = st.lists(
    st.tuples(
        st.sampled_from(["http://", "https://", "HTTPS://", "//"]),
        st.sampled_from(_HOSTS),
        st.sampled_from(["", "/", "/a/../b", "?q", "#f", "/%7e x"]),
    ).map("".join),
    min_size=1,
    max_size=8,
)


@given(hrefs=_ABSOLUTE_HREFS, page=st.sampled_from(
    ["http://example.com/d/p.html", "https://www.example.com/", "http://[::1]/x/"]
))
@settings(max_examples=300)
def test_a_crawls_resolver_keeps_what_its_scope_allows(hrefs: list[str], page: str) -> None:
    # keep_host refuses other sites' absolute hrefs before they are normalised: the
    # links kept are those the scope allows among the links resolved afresh.
    scope = Scope(["http://example.com/", "http://[::1]/"], exclude="/b")
    resolver = links_module.LinkResolver(keep=scope.allows, keep_host=scope.allows_host)
    for _ in range(2):  # the second time from the memo
        got = resolver.resolve(links_module.PageLinks(hrefs, None), page)
        assert got == _resolved_afresh(hrefs, page, scope.allows), (hrefs, page)


@given(
    hrefs=st.lists(
        st.lists(st.sampled_from(["a", "b.html", ".", "..", "/", "~x", "-"]), min_size=1,
                 max_size=8).map("".join),
        min_size=1, max_size=6,
    ),
    path=st.lists(st.sampled_from(["/", "d", "..", ".", "e.html", "%7E", ";p"]), max_size=6)
    .map("".join),
)
@settings(max_examples=400)
def test_plain_hrefs_resolve_by_joining_as_urljoin_does(hrefs: list[str], path: str) -> None:
    # The plain case (a normalised folder, an href of unreserved characters and "/")
    # is resolved by joining strings: it must agree with urljoin and normalize_url.
    base = "http://example.com/" + path
    directory = links_module._directory_of(base)
    assert directory is not None
    for href in filter(links_module._resolves_by_directory, hrefs):
        assert links_module._resolve_in_directory(href, directory) == links_module._resolve(
            href, base
        ), (href, base)


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        # "//" and "//?q" have an empty path, like "" and "?q": they resolve against
        # the whole page URL, not its folder.
        ("//", "http://example.com/dir/page?x=1"),
        ("//?q", "http://example.com/dir/page?q"),
        ("//other.org", "http://other.org/"),
        ("../up.html", "http://example.com/up.html"),
    ],
)
def test_hrefs_with_an_empty_path_resolve_against_the_whole_page(
    href: str, expected: str
) -> None:
    page = "http://example.com/dir/page?x=1"
    assert extract_links(f'<a href="{href}">x</a>', page) == [expected]


# --- read_html: decode_html and find_links in one (one parse with lexbor) ---------------

_BODY_PIECES = st.sampled_from(
    [
        b"<meta charset=utf-8>", b'<meta charset="ISO-8859-1">', b"<meta charset=euc-kr>",
        b"<meta charset=utf-16le>", b"<meta charset=bogus>", b"<META CHARSET=koi8-r>",
        b'<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">',
        b'<meta name="viewport" content="width=device-width">', b"<!-- <meta charset=koi8-r> -->",
        b"<html>", b"<head>", b"</head>", b"<body>", b"<title>t</title>", b"<p>text</p>",
        b"<a href=/caf\xc3\xa9>", b"<a href=/caf\xe9>", b"<a href='/\xff\xfe'>", b"<base href=/b/>",
        b"<a href=x.html#f>", b"caf\xc3\xa9", b"\xa4\xa1", b"x" * 1500, b"<meta charset=utf-8",
        # Bytes invalid in UTF-8 where the tokenizer cuts: truncated sequences before a
        # quote or ">", surrogates, overlong forms, next to entities and NULs.
        b'<a href="/t\xe2">', b"<a href=/u\xf0\x9f>", b"<a href='\xed\xa0\x80/s'>",
        b"<a href=/o\xc0\xaf>", b"<a href=&amp;\xff&lt;>", b"<a href=\x00\xe9\x00>",
        b"<a \xff href=/n>", b"<\xe9 href=/v>", b"\xe2<a href=/w>", b"<a href=/cut\xe2\x82",
    ]
)  # fmt: skip


@pytest.mark.parametrize("parser", PARSERS)
@given(
    body=st.lists(_BODY_PIECES, max_size=14).map(b"".join),
    content_type=st.sampled_from(
        [None, "text/html", "text/html; charset=utf-8", "text/html; charset=UTF8",
         "text/html; charset=iso-8859-1", "text/html; charset=bogus", "text/html; charset=idna"]
    ),
)  # fmt: skip
@settings(max_examples=1000, deadline=None)
def test_read_html_is_decode_html_then_find_links(
    parser: str, body: bytes, content_type: str | None
) -> None:
    text, encoding = decode_html(body, content_type, parser=parser)
    # Fooled, as documented, by a <meta in a comment of the prefix with the tag past it.
    commented = body.find(b"<!-- <meta")
    assume(not (0 <= commented < META_SCAN_BYTES < len(body)))
    assert links_module.read_html(body, content_type, parser=parser) == (
        encoding,
        links_module.find_links(text, parser),
    )


def test_read_html_parses_a_utf8_page_once(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("selectolax")
    parsed: list[object] = []
    real = links_module._lexbor()

    def spy() -> Callable[[str | bytes], object]:
        return lambda html: parsed.append(html) or real(html)

    monkeypatch.setattr(links_module, "_lexbor", spy)
    body = b"<head><meta charset=utf-8></head><a href=/caf\xc3\xa9>"
    assert links_module.read_html(body, "text/html", parser=LEXBOR) == (
        "utf-8", links_module.PageLinks(["/caf\u00e9"], None)
    )
    assert parsed == [body]
    parsed.clear()
    latin = b"<head><meta charset=latin-1></head><a href=/caf\xe9>"
    assert links_module.read_html(latin, None, parser=LEXBOR) == (
        "iso8859-1", links_module.PageLinks(["/caf\u00e9"], None)
    )
    assert parsed == [latin, latin.decode("latin-1")]  # parsed again, decoded
