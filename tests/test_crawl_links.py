"""Link extraction and charset detection (treadle.crawl.links)."""

from __future__ import annotations

import pytest

from treadle.crawl.links import (
    META_SCAN_BYTES,
    charset_from_content_type,
    charset_from_meta,
    decode_html,
    extract_links,
)

PAGE = "http://example.com/dir/page.html"


def links(html: str, page: str = PAGE) -> list[str]:
    return extract_links(html, page)


class TestExtractLinks:
    def test_relative_and_absolute_in_document_order(self) -> None:
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

    def test_area_href_is_a_link(self) -> None:
        html = '<map><area shape="rect" href="/area"></map>'
        assert links(html) == ["http://example.com/area"]

    def test_other_tags_and_anchors_without_href_are_not_links(self) -> None:
        html = """<link rel="stylesheet" href="/s.css"><img src="/i.png">
            <script src="/j.js"></script><a name="x">anchor</a><iframe src="/f"></iframe>"""
        assert links(html) == []

    def test_duplicates_and_fragments_collapse_to_first_occurrence(self) -> None:
        html = '<a href="/a">1</a><a href="/b#x">2</a><a href="/a#y">3</a><a href="/b">4</a>'
        assert links(html) == ["http://example.com/a", "http://example.com/b"]

    def test_entities_in_hrefs_are_decoded(self) -> None:
        html = '<a href="/s?a=1&amp;b=2">1</a><a href="&#x2F;slash&#47;es">2</a>'
        assert links(html) == ["http://example.com/s?a=1&b=2", "http://example.com/slash/es"]

    def test_comments_scripts_and_styles_hold_no_links(self) -> None:
        html = """
            <!-- <a href="/in-comment">no</a> -->
            <script>var s = '<a href="/in-script">no</a>';</script>
            <style>/* <a href="/in-style"> */</style>
            <a href="/real">yes</a>
        """
        assert links(html) == ["http://example.com/real"]

    def test_first_base_href_wins_and_resolves_against_the_page(self) -> None:
        html = """<head><base href="../other/"><base href="http://elsewhere.com/"></head>
            <a href="x">x</a><a href="/abs">abs</a>"""
        assert links(html) == ["http://example.com/other/x", "http://example.com/abs"]

    def test_base_applies_to_links_before_it(self) -> None:
        html = '<a href="early">e</a><base href="http://example.com/b/"><a href="late">l</a>'
        assert links(html) == ["http://example.com/b/early", "http://example.com/b/late"]

    def test_unusable_base_falls_back_to_the_page_url(self) -> None:
        html = '<base href="javascript:alert(1)"><base href="/ignored/"><a href="x">x</a>'
        assert links(html) == ["http://example.com/dir/x"]

    def test_base_without_href_does_not_count(self) -> None:
        html = '<base target="_blank"><base href="/b/"><a href="x">x</a>'
        assert links(html) == ["http://example.com/b/x"]

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
    def test_non_http_and_unparseable_links_are_skipped(self, href: str) -> None:
        assert links(f'<a href="{href}">x</a><a href="/kept">k</a>') == ["http://example.com/kept"]

    def test_whitespace_around_href_is_ignored(self) -> None:
        assert links('<a href="  \n/spaced\t ">x</a>') == ["http://example.com/spaced"]

    def test_first_of_repeated_href_attributes_wins(self) -> None:
        assert links('<a href="/first" href="/second">x</a>') == ["http://example.com/first"]

    def test_upper_case_markup(self) -> None:
        assert links('<A HREF="/UP">x</A>') == ["http://example.com/UP"]

    def test_empty_href_and_fragment_link_to_the_page_itself(self) -> None:
        assert links('<a href="">x</a><a href="#top">y</a>') == [PAGE]

    def test_malformed_markup_does_not_stop_extraction(self) -> None:
        html = '<a href="/before">b</a><![bogus section]><a href="/after">a</a><a href="/unclosed'
        assert links(html) == ["http://example.com/before", "http://example.com/after"]

    def test_off_host_links_are_returned_scope_is_the_callers_job(self) -> None:
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
    def test_meta_charset(self) -> None:
        assert charset_from_meta(b'<html><head><meta charset="KOI8-R">') == "koi8-r"

    def test_meta_http_equiv(self) -> None:
        html = b'<meta http-equiv="content-type" content="text/html; charset=iso-8859-2">'
        assert charset_from_meta(html) == "iso-8859-2"

    def test_first_meta_wins(self) -> None:
        html = b'<meta name="x" content="y"><meta charset=latin-1><meta charset="utf-8">'
        assert charset_from_meta(html) == "latin-1"

    def test_meta_in_a_comment_does_not_count(self) -> None:
        assert charset_from_meta(b"<!-- <meta charset=koi8-r> --><p>hi") is None

    def test_no_meta(self) -> None:
        assert charset_from_meta(b"<html><p>no declaration</p>") is None

    def test_non_ascii_bytes_before_the_meta_are_fine(self) -> None:
        assert charset_from_meta("<title>caf\u00e9</title>".encode() + b"<meta charset=x>") == "x"

    def test_only_the_prefix_is_searched(self) -> None:
        html = b"<p>" + b"x" * META_SCAN_BYTES + b'<meta charset="koi8-r">'
        assert charset_from_meta(html) is None

    def test_declared_utf16_means_utf8(self) -> None:
        assert charset_from_meta(b'<meta charset="UTF-16LE">') == "utf-8"


class TestDecodeHtml:
    def test_header_charset_first(self) -> None:
        body = '<meta charset="koi8-r"><p>caf\u00e9</p>'.encode("latin-1")
        text, encoding = decode_html(body, "text/html; charset=ISO-8859-1")
        assert encoding == "iso8859-1"
        assert "caf\u00e9" in text

    def test_meta_when_header_has_no_charset(self) -> None:
        body = '<meta charset="windows-1252"><p>\u20ac 5</p>'.encode("windows-1252")
        text, encoding = decode_html(body, "text/html")
        assert encoding == "cp1252"
        assert "\u20ac 5" in text

    def test_utf8_fallback_replaces_bad_bytes(self) -> None:
        text, encoding = decode_html(b"<p>ok \xff bad</p>", None)
        assert encoding == "utf-8"
        assert text == "<p>ok \ufffd bad</p>"

    def test_unknown_header_charset_tries_meta_then_utf8(self) -> None:
        body = '<meta charset="koi8-r"><p>\u043c\u0438\u0440</p>'.encode("koi8-r")
        text, encoding = decode_html(body, "text/html; charset=no-such-charset")
        assert encoding == "koi8-r"
        assert "\u043c\u0438\u0440" in text
        text, encoding = decode_html(b"<p>caf\xc3\xa9</p>", "text/html; charset=bogus")
        assert (text, encoding) == ("<p>caf\u00e9</p>", "utf-8")

    @pytest.mark.parametrize("charset", ["base64", "rot13", "idna"])
    def test_codecs_that_are_not_text_encodings_fall_back(self, charset: str) -> None:
        text, encoding = decode_html(b"<p>hello</p>", f"text/html; charset={charset}")
        assert (text, encoding) == ("<p>hello</p>", "utf-8")

    def test_wrong_declared_charset_does_not_raise(self) -> None:
        text, encoding = decode_html(b"\xff\xfe\xfd", "text/html; charset=utf-8")
        assert (text, encoding) == ("\ufffd\ufffd\ufffd", "utf-8")
