"""Finding the links in an HTML page, and decoding the page's bytes to text first.

Uses the standard library's ``html.parser`` (a real tokenizer: entities, comments,
``<script>`` and ``<style>`` handled as a browser would) and ``treadle.crawl.urls``;
no I/O, no third-party packages.
"""

from __future__ import annotations

import codecs
from html.parser import HTMLParser

from treadle.crawl.urls import is_http_url, normalize_url

__all__ = [
    "META_SCAN_BYTES",
    "charset_from_content_type",
    "charset_from_meta",
    "decode_html",
    "extract_links",
]

META_SCAN_BYTES = 4096
"""How much of a page ``decode_html`` searches for a ``<meta>`` charset.

Browsers look at the first 1024 bytes; a little more forgives long ``<head>`` sections.
"""

_LINK_TAGS = frozenset({"a", "area"})
_ASCII_WHITESPACE = "\t\n\f\r "


def _first(attrs: list[tuple[str, str | None]], name: str) -> str | None:
    """The value of attribute ``name``; the first one wins when it is repeated, as in HTML."""
    for key, value in attrs:
        if key == name:
            return value
    return None


class _TolerantParser(HTMLParser):
    """An HTMLParser that skips a malformed ``<![...`` section instead of raising.

    The stdlib parser raises AssertionError on e.g. ``<![foo]>``; a crawler meets such
    pages and must keep the links around them.
    """

    def __init__(self) -> None:
        # convert_charrefs=True decodes entities in text; attribute values are always
        # decoded (``&amp;`` in an href becomes ``&``).
        super().__init__(convert_charrefs=True)

    def parse_marked_section(self, i: int, report: bool = True) -> int:
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            end = self.rawdata.find(">", i)
            return -1 if end < 0 else end + 1

    def feed_all(self, text: str) -> None:
        """Feed ``text`` and close; stop quietly at anything the parser cannot handle."""
        try:
            self.feed(text)
            self.close()
        except AssertionError:
            pass


class _LinkParser(_TolerantParser):
    """Collects raw hrefs of ``<a>``/``<area>`` in order, and the first ``<base href>``."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.base: str | None = None
        self._saw_base = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _LINK_TAGS:
            href = _first(attrs, "href")
            if href is not None:
                self.hrefs.append(href)
        elif tag == "base" and not self._saw_base:
            href = _first(attrs, "href")
            if href is not None:
                # Only the first <base> with an href counts, even if it is unusable.
                self._saw_base = True
                self.base = href


def extract_links(html: str, page_url: str) -> list[str]:
    """The http(s) links of an HTML page: absolute, normalised, in document order, once each.

    Reads ``href`` of ``<a>`` and ``<area>``. Entities in attribute values are decoded;
    links inside comments, ``<script>`` and ``<style>`` are not links and are ignored.
    The first ``<base href>`` sets the URL relative links resolve against (itself
    resolved against ``page_url``), for links before it too, as in a browser. Links to
    other schemes (``javascript:``, ``mailto:``, ``tel:``, ``data:``, ``ftp:`` ...) and
    unparseable ones are skipped. A link to the page itself (``href=""`` or ``#top``)
    is kept; the crawler's seen-set makes it harmless.
    """
    parser = _LinkParser()
    parser.feed_all(html)
    base = page_url
    if parser.base is not None:
        try:
            candidate = normalize_url(parser.base, page_url)
        except ValueError:
            candidate = ""
        if is_http_url(candidate):
            base = candidate
    links: dict[str, None] = {}  # an insertion-ordered set
    for href in parser.hrefs:
        try:
            url = normalize_url(href.strip(_ASCII_WHITESPACE), base)
        except ValueError:
            continue
        if is_http_url(url):
            links.setdefault(url)
    return list(links)


def _clean_charset(label: str) -> str | None:
    label = label.strip(_ASCII_WHITESPACE + "'\"").lower()
    return label or None


def charset_from_content_type(header: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type header value, lower-cased, or None.

    ``text/html; charset="ISO-8859-1"`` gives ``iso-8859-1``. The name is not checked
    against the codecs Python knows; ``decode_html`` does that.
    """
    if not header:
        return None
    for param in header.split(";")[1:]:
        name, eq, value = param.partition("=")
        if eq and name.strip(_ASCII_WHITESPACE).lower() == "charset":
            return _clean_charset(value)
    return None


class _MetaCharsetParser(_TolerantParser):
    """Finds the first ``<meta charset>`` or ``<meta http-equiv=content-type content=...>``."""

    def __init__(self) -> None:
        super().__init__()
        self.charset: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta" or self.charset is not None:
            return
        charset = _first(attrs, "charset")
        if charset is not None:
            self.charset = _clean_charset(charset)
            return
        http_equiv = _first(attrs, "http-equiv")
        if http_equiv is not None and http_equiv.strip().lower() == "content-type":
            self.charset = charset_from_content_type(_first(attrs, "content"))


def charset_from_meta(html_bytes_prefix: bytes) -> str | None:
    """The charset a page declares in a ``<meta>`` tag, lower-cased, or None.

    Understands ``<meta charset="...">`` and ``<meta http-equiv="Content-Type"
    content="text/html; charset=...">``; the first such tag wins. Only the first
    ``META_SCAN_BYTES`` are searched. A declared UTF-16 means UTF-8, as browsers
    decide: a page whose ``<meta>`` can be read as ASCII is not UTF-16.
    """
    # Latin-1 maps every byte to one character, so ASCII markup survives whatever
    # the real encoding is.
    text = html_bytes_prefix[:META_SCAN_BYTES].decode("latin-1")
    parser = _MetaCharsetParser()
    parser.feed_all(text)
    charset = parser.charset
    if charset is not None and charset.replace("-", "").startswith("utf16"):
        return "utf-8"
    return charset


def decode_html(body: bytes, content_type: str | None) -> tuple[str, str]:
    """Decode an HTML body to text; return ``(text, name of the encoding used)``.

    The charset comes from the Content-Type header first, then from a ``<meta>`` tag,
    else UTF-8. A charset name Python does not know as a text encoding is passed over
    (the next source is tried, ending at UTF-8). Bytes invalid in the chosen encoding
    become U+FFFD, so decoding never fails. The name returned is Python's canonical
    codec name (``iso8859-1`` for ``latin-1``).
    """
    for label in (charset_from_content_type(content_type), charset_from_meta(body)):
        if label is None:
            continue
        try:
            text = body.decode(label, errors="replace")
        except (LookupError, ValueError):
            # Unknown, a bytes-to-bytes codec such as "base64" (LookupError), or a
            # codec that refuses errors="replace" such as "idna" (UnicodeError).
            continue
        return text, codecs.lookup(label).name
    return body.decode("utf-8", errors="replace"), "utf-8"
