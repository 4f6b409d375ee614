"""The two link parsers against each other: lexbor (fast) and html.parser (the oracle).

The contract (docs/crawling.md): on any page both give the same links in the same
order, except where HTML5 itself reads markup differently from html.parser; those
cases are listed in ``TestWhereHtml5Differs``, and there lexbor does what a browser
does. Checked on generated messy pages (hypothesis) and, where Debian's python3-doc
is installed, on Python's HTML documentation.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treadle.crawl.links import LEXBOR, STDLIB, decode_html, extract_links

pytest.importorskip("selectolax")

PAGE = "http://example.com/dir/page.html"
PYTHON_DOCS = Path("/usr/share/doc/python3/html")


def both(html: str, page: str = PAGE) -> tuple[list[str], list[str]]:
    return extract_links(html, page, parser=LEXBOR), extract_links(html, page, parser=STDLIB)


# --- generated pages ----------------------------------------------------------------------

_href_piece = st.sampled_from(
    [
        "a", "b/", "../", "./", "/root", "x.html", "?q=1", "&amp;", "&#47;", "&#x2F;", "&lt;",
        "&quot;", "&copy;", "%41", "%7e", " ", "#frag", "caf\u00e9", "http://example.com/",
        "https://other.org/p", "//example.com/pr", "javascript:x()", "mailto:a@b", "HTTP://EX.com",
        "\t", "\n",
    ]
)  # fmt: skip
_href = st.lists(_href_piece, max_size=5).map("".join)
_text = st.sampled_from(
    ["hello", " ", "a < b", "x > y", "&amp;", "&", "caf\u00e9", "&nbsp;", "\n", "5 &lt; 6"]
)


@st.composite
def _attribute(draw: st.DrawFn, name: str) -> str:
    value = draw(_href).replace('"', "").replace("'", "")
    quoting = draw(st.sampled_from(["double", "single", "bare"]))
    if quoting == "bare" and (not value or any(c in value for c in " \t\n>`=<")):
        quoting = "double"  # a bare value cannot hold these: quoted, it means the same
    if quoting == "double":
        return f' {name}="{value}"'
    if quoting == "single":
        return f" {name}='{value}'"
    return f" {name}={value}"


@st.composite
def _start_tag(draw: st.DrawFn) -> str:
    tag = draw(st.sampled_from(["a", "a", "a", "A", "area", "base", "p", "div", "b", "span", "li"]))
    names = draw(st.lists(st.sampled_from(["href", "HREF", "title", "class", "name"]), max_size=2))
    if tag.lower() in ("a", "area", "base") and draw(st.integers(0, 4)):
        names.insert(draw(st.integers(0, len(names))), "href")
    text = "".join(draw(_attribute(name)) for name in names)
    if draw(st.integers(0, 9)) == 0:
        text += " href"  # a bare attribute, repeated or not
    return f"<{tag}{text}{draw(st.sampled_from(['', ' ', '/']))}>"


def _wrapped(opening: str, closing: str, forbidden: str) -> st.SearchStrategy[str]:
    """A comment, script or style around markup that holds links."""
    inner = st.lists(st.one_of(_start_tag(), _text), max_size=4).map("".join)
    return inner.map(lambda body: opening + body.replace(forbidden, "") + closing)


_chunk = st.one_of(
    _start_tag(),
    _start_tag(),
    _start_tag(),
    _text,
    st.sampled_from(["</a>", "</p>", "</div>", "</b>", "</x>", "</A>", "<br>", "<hr/>"]),
    _wrapped("<!--", "-->", "--"),
    _wrapped("<script>", "</script>", "<"),
    _wrapped("<style>", "</style>", "</"),
    st.just("<!DOCTYPE html>"),
)


@given(st.lists(_chunk, max_size=25).map("".join))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_messy_pages_give_the_same_links(html: str) -> None:
    lexbor, stdlib = both(html)
    assert lexbor == stdlib


@given(st.lists(_chunk, max_size=12).map("".join), st.sampled_from(["", "<a href='/tail"]))
@settings(max_examples=100, deadline=None)
def test_a_page_cut_short_gives_the_same_links(html: str, tail: str) -> None:
    lexbor, stdlib = both(html + tail)
    assert lexbor == stdlib


# --- the documented differences -----------------------------------------------------------


class TestWhereHtml5Differs:
    """Where HTML5 reads markup differently from html.parser, lexbor follows HTML5.

    The standard library's answer is asserted only as "it may see more": its behaviour
    here has changed between Python patch releases.
    """

    @pytest.mark.parametrize(
        "element", ["title", "textarea", "xmp", "iframe", "noembed", "noframes", "template"]
    )
    def test_markup_inside_text_only_elements_holds_no_links(self, element: str) -> None:
        lexbor, stdlib = both(f"<{element}><a href=/inside></{element}><a href=/after>")
        assert lexbor == ["http://example.com/after"]
        assert set(lexbor) <= set(stdlib)

    def test_plaintext_swallows_the_rest_of_the_page(self) -> None:
        lexbor, stdlib = both("<a href=/before><plaintext><a href=/inside>")
        assert lexbor == ["http://example.com/before"]
        assert set(lexbor) <= set(stdlib)

    def test_a_script_that_writes_a_script_ends_where_a_browser_ends_it(self) -> None:
        html = "<script><!--<script></script><a href=/in></script><a href=/after>"
        lexbor, stdlib = both(html)
        assert lexbor == ["http://example.com/after"]
        assert set(lexbor) <= set(stdlib)

    def test_legacy_entity_before_equals_sign_stays_as_written(self) -> None:
        lexbor, stdlib = both('<a href="/s?a=1&copy=2&amp;b=3">')
        assert lexbor == ["http://example.com/s?a=1&copy=2&b=3"]
        assert stdlib in (lexbor, ["http://example.com/s?a=1%C2%A9=2&b=3"])

    def test_links_misplaced_in_a_table_move_before_it_same_links(self) -> None:
        lexbor, stdlib = both("<table><tr><td><a href=/1></td></tr><a href=/2></table>")
        assert lexbor == ["http://example.com/2", "http://example.com/1"]
        assert sorted(stdlib) == sorted(lexbor)

    def test_a_nul_in_an_href_becomes_the_replacement_character(self) -> None:
        lexbor, _ = both("<a href=/x\x00y>")
        assert lexbor == ["http://example.com/x%EF%BF%BDy"]

    def test_an_unclosed_a_cloned_by_html5_is_still_one_link(self) -> None:
        html = "<p><a href=/1>one<p>two</p><div>three</div>"
        assert both(html) == (["http://example.com/1"], ["http://example.com/1"])


# --- real pages ---------------------------------------------------------------------------


def _python_doc_pages() -> list[Path]:
    if not PYTHON_DOCS.is_dir():
        return []
    pages = sorted(PYTHON_DOCS.rglob("*.html"))
    # Every page in CI is too slow for the oracle (about 7 s); the biggest ones and
    # a spread of the rest.
    biggest = sorted(pages, key=lambda p: p.stat().st_size)[-3:]
    return sorted(set(pages[:: max(1, len(pages) // 60)] + biggest))


@pytest.mark.skipif(
    not PYTHON_DOCS.is_dir(),
    reason="Python's HTML docs are not installed (apt-get install python3-doc)",
)
def test_python_documentation_pages_give_the_same_links() -> None:
    pages = _python_doc_pages()
    assert any(p.name == "genindex-all.html" for p in pages)
    total = 0
    for path in pages:
        text, _ = decode_html(path.read_bytes(), "text/html")
        url = "http://docs.example/" + os.fspath(path.relative_to(PYTHON_DOCS))
        lexbor, stdlib = both(text, url)
        assert lexbor == stdlib, path
        total += len(lexbor)
    assert total > 2_000
