"""Finding the links in an HTML page (decoding its bytes first) and resolving them.

Two tokenizers find the hrefs, with one contract (docs/crawling.md): lexbor, an HTML5
parser in C reached through ``selectolax`` (the ``crawl`` extra), about ten times the
speed of the other; and the standard library's ``html.parser``, the fallback when
selectolax is not installed and the oracle the tests hold lexbor to. Both read
entities, comments, ``<script>`` and ``<style>`` as a browser would. Imports the
standard library, ``treadle.crawl.urls`` and, when it is installed, selectolax; no I/O.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from treadle.crawl.urls import is_http_url, normalize_url, remove_dot_segments

__all__ = [
    "LEXBOR",
    "META_SCAN_BYTES",
    "PARSERS",
    "STDLIB",
    "LinkResolver",
    "PageLinks",
    "charset_from_content_type",
    "charset_from_meta",
    "decode_html",
    "default_parser",
    "extract_links",
    "find_links",
    "read_html",
]

META_SCAN_BYTES = 4096
"""How much of a page ``decode_html`` searches for a ``<meta>`` charset.

Browsers look at the first 1024 bytes; a little more forgives long ``<head>`` sections.
"""

LEXBOR = "lexbor"
"""The HTML5 parser of the ``crawl`` extra (selectolax's lexbor backend)."""
STDLIB = "stdlib"
"""The standard library's ``html.parser``: always there, and the tests' oracle."""
PARSERS = (LEXBOR, STDLIB)

_LINK_TAGS = frozenset({"a", "area"})
_ASCII_WHITESPACE = "\t\n\f\r "


@functools.cache
def _lexbor() -> Any:
    """selectolax's ``LexborHTMLParser`` class, or None when the package is missing."""
    try:
        from selectolax.lexbor import LexborHTMLParser
    except ImportError:
        return None
    return LexborHTMLParser


def default_parser() -> str:
    """``LEXBOR`` when selectolax is installed (the ``crawl`` extra), else ``STDLIB``."""
    return LEXBOR if _lexbor() is not None else STDLIB


def _check_parser(parser: str | None) -> str:
    if parser is None:
        return default_parser()
    if parser not in PARSERS:
        raise ValueError(f"parser must be one of {', '.join(PARSERS)}, got {parser!r}")
    if parser == LEXBOR and _lexbor() is None:
        raise ValueError(
            "the lexbor parser needs selectolax: pip install 'treadle[crawl]'"
        )
    return parser


@dataclass(frozen=True, slots=True)
class PageLinks:
    """What a page says about its links, as written: before any URL resolution."""

    hrefs: list[str]
    """The ``href`` of each ``<a>`` and ``<area>`` that has one, in document order
    (a bare ``href`` is ``""``, as in HTML), repeats included."""
    base: str | None
    """The ``href`` of the first ``<base>`` that has one, or None."""


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

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _LINK_TAGS:
            for key, value in attrs:
                if key == "href":
                    # A bare attribute (``<a href>``) has the empty string as its value.
                    self.hrefs.append(value or "")
                    break
        elif tag == "base" and self.base is None:
            for key, value in attrs:
                if key == "href":
                    # Only the first <base> with an href counts, even if it is unusable.
                    self.base = value or ""
                    break


def _stdlib_links(html: str) -> PageLinks:
    parser = _LinkParser()
    parser.feed_all(html)
    return PageLinks(parser.hrefs, parser.base)


def _lexbor_links(html: str | bytes) -> PageLinks:
    """The links of a page as text, or as bytes in UTF-8."""
    return _links_of_tree(_lexbor()(html))


def _links_of_tree(tree: Any) -> PageLinks:
    # One walk of the tree finds the links and the <base> (a second selector would walk
    # it again). Matches come in document order. The tree builder may clone an unclosed
    # <a> into the blocks after it (HTML's "reconstruct the active formatting
    # elements"): a repeat of an href seen before, which extract_links drops anyway.
    # Every match has an href, so it is read with [] (cheaper than .get); a bare one
    # reads as None.
    hrefs = []
    base = None
    for node in tree.css("a[href], area[href], base[href]"):
        if node.tag != "base":
            hrefs.append(node.attrs["href"] or "")
        elif base is None:
            base = node.attrs["href"] or ""
    return PageLinks(hrefs, base)


def find_links(html: str, parser: str | None = None) -> PageLinks:
    """The raw hrefs of ``<a>``/``<area>`` and the first ``<base href>`` of a page.

    ``parser`` is ``LEXBOR``, ``STDLIB`` or None for ``default_parser()``.
    """
    if _check_parser(parser) == LEXBOR:
        return _lexbor_links(html)
    return _stdlib_links(html)


def extract_links(html: str, page_url: str, *, parser: str | None = None) -> list[str]:
    """The http(s) links of an HTML page: absolute, normalised, in document order, once each.

    Reads ``href`` of ``<a>`` and ``<area>``. Entities in attribute values are decoded;
    links inside comments, ``<script>`` and ``<style>`` are not links and are ignored.
    The first ``<base href>`` sets the URL relative links resolve against (itself
    resolved against ``page_url``), for links before it too, as in a browser. Links to
    other schemes (``javascript:``, ``mailto:``, ``tel:``, ``data:``, ``ftp:`` ...) and
    unparseable ones are skipped, and so are ``href=""`` and fragments such as ``#top``
    when no ``<base>`` points elsewhere: they link to the page itself, which the crawl
    has already.
    ``parser`` chooses the tokenizer (``find_links``); both give the same links.
    """
    return _SHARED_RESOLVER.resolve(find_links(html, parser), page_url)


class LinkResolver:
    """Resolves the hrefs of many pages to links, as ``extract_links`` does, and
    remembers each answer for the next page of the same folder.

    Most hrefs of a site recur on many of its pages (navigation, indexes), resolved
    against pages of the same folder: a crawl of ~5,000 manual pages meets ~500,000
    hrefs, ~42,000 distinct per folder. Resolving one costs ~10 microseconds
    (urljoin, urlsplit, quoting), a remembered one a dict look-up. ``keep`` (say a
    crawl's scope) is asked once per URL resolved and remembered with it: a link it
    refuses is left out. ``keep_host``, if given, must refuse every URL whose host
    ``keep`` would refuse, and must decide an absolute href as it decides its
    normalised URL (``Scope.allows_host`` does): asked first, it spares normalising the
    links to other sites. What is remembered is bounded: all of it is forgotten when it
    holds ``_MEMO_SIZE`` hrefs. Safe to share between the loop and a parsing thread
    (the memo changes only by single dict operations).
    """

    def __init__(
        self,
        keep: Callable[[str], bool] | None = None,
        keep_host: Callable[[str], bool] | None = None,
    ) -> None:
        self._keep = keep
        self._keep_host = keep_host
        # base folder -> href (stripped, fragment cut) -> its link, None (not a link,
        # or refused by keep), or _BY_PAGE (its resolution reads the whole base URL).
        self._memo: dict[str, dict[str, str | None]] = {}
        # An absolute href ("http://..." or "https://...") -> its link or None, whatever
        # the folder: the same one on pages of many folders is resolved once.
        self._absolute: dict[str, str | None] = {}
        self._memo_size = 0  # hrefs in _memo and _absolute (approximate with threads)

    def resolve(self, page: PageLinks, page_url: str) -> list[str]:
        """The links of ``page``, found at ``page_url``: see ``extract_links``."""
        base = page_url
        if page.base is not None:
            try:
                candidate = normalize_url(page.base, page_url)
            except ValueError:
                candidate = ""
            if is_http_url(candidate):
                base = candidate
        skip_self_links = base == page_url
        directory = _directory_of(base)
        memo: dict[str, str | None] = {}
        if directory is not None:
            memo = self._memo_of(directory)
        links: dict[str, None] = {}  # an insertion-ordered set
        for href in dict.fromkeys(page.hrefs):
            # A URL's fragment starts at its first "#" and the crawl drops it: cut first.
            href = href.strip(_ASCII_WHITESPACE).partition("#")[0]
            url = memo.get(href, _UNSEEN)
            if url == _UNSEEN:
                if directory is not None and _resolves_by_directory(href):
                    url = self._resolve_new(href, directory)
                else:
                    url = _BY_PAGE
                memo[href] = url
                self._memo_size += 1
            if url == _BY_PAGE:
                if skip_self_links and not href:
                    continue  # the page itself: the crawl has it already
                url = self._kept(_resolve(href, base))
            if url is not None:
                links[url] = None
        return list(links)

    def _resolve_new(self, href: str, directory: str) -> str | None:
        """The link ``href`` makes in ``directory``, or None (an href resolved by folder)."""
        if not href.startswith(_ABSOLUTE):
            return self._kept(_resolve_in_directory(href, directory))
        url = self._absolute.get(href, _UNSEEN)
        if url == _UNSEEN:
            if self._keep_host is not None and not self._keep_host(href):
                url = None  # another site's: not worth normalising
            else:
                url = self._kept(_resolve(href, directory))
            self._absolute[href] = url
            self._memo_size += 1
        return url

    def _memo_of(self, directory: str) -> dict[str, str | None]:
        memo = self._memo.get(directory)
        if memo is None:
            if self._memo_size >= _MEMO_SIZE:
                self._memo = {}
                self._absolute = {}
                self._memo_size = 0
            memo = self._memo[directory] = {}
        return memo

    def _kept(self, url: str | None) -> str | None:
        if url is None or (self._keep is not None and not self._keep(url)):
            return None
        return url


# How many hrefs a LinkResolver remembers, at most (~150 bytes each).
_MEMO_SIZE = 1 << 16
_ABSOLUTE = ("http://", "https://")
# Markers in a LinkResolver's memo, never equal to a link (an absolute URL).
_BY_PAGE = ""
_UNSEEN = "unseen"
# extract_links's: a crawl's pages are on few sites, and most callers crawl.
_SHARED_RESOLVER = LinkResolver()
# What ``normalize_url`` strips from both ends of a URL (C0 controls and space).
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def _resolve(href: str, base: str) -> str | None:
    """``normalize_url(href, base)`` if that is an http(s) URL, else None."""
    try:
        url = normalize_url(href, base)
    except ValueError:
        return None
    return url if is_http_url(url) else None


def _resolve_in_directory(href: str, directory: str) -> str | None:
    """``_resolve(href, directory)``, by string operations when both are plain.

    Plain: ``directory`` is a normalised http(s) URL ending in ``/`` with no query,
    parameters, escapes or empty segments, and ``href`` a relative path of unreserved
    characters and ``/`` without ``//``. Then resolving is joining the two and removing
    dot segments, and nothing is left to normalise: the same answer for a fraction of
    the cost (tests hold the two to each other).
    """
    if "//" not in href and _PLAIN_RELATIVE_PATH.match(href):
        split = _plain_directory(directory)
        if split is not None:
            origin, path = split
            return origin + remove_dot_segments(path + href)
    return _resolve(href, directory)


_PLAIN_RELATIVE_PATH = re.compile(r"[A-Za-z0-9._~-][A-Za-z0-9._~/-]*\Z")


@functools.lru_cache(maxsize=1024)
def _plain_directory(directory: str) -> tuple[str, str] | None:
    """``directory`` split into its origin and its path when it is plain (see
    ``_resolve_in_directory``), else None."""
    if any(char in directory for char in "?#;%") or _resolve(directory, directory) != directory:
        return None
    cut = directory.index("/", directory.index("//") + 2)
    origin, path = directory[:cut], directory[cut:]
    return None if "//" in path else (origin, path)


def _directory_of(base: str) -> str | None:
    """``base`` up to the last ``/`` of its path (its folder, scheme and host included),
    or None when ``base`` has no path after its host."""
    authority = base.find("//")
    cut = base.rfind("/")
    if authority < 0 or cut < authority + 2 or base.find("/", authority + 2) > cut:
        return None
    return base[: cut + 1]


def _resolves_by_directory(href: str) -> bool:
    """True if resolving ``href`` reads nothing of the base past its folder.

    ``urljoin`` reads the base's last segment and query only for an href whose path is
    empty: ``""``, ``?q``, ``;p``, ``//``, or a bare scheme such as ``http:``. So: a
    non-empty href, not starting with ``?`` or ``;``, with a host after a leading
    ``//``, ``http://`` or ``https://``, and otherwise no ``:``.
    """
    href = href.strip(_C0_AND_SPACE)
    if not href or href[0] in "?;#":
        return False
    for prefix in ("//", "http://", "https://"):
        if href.startswith(prefix):
            # A host must follow: "//" alone, or "//?q", has an empty path too.
            return len(href) > len(prefix) and href[len(prefix)] not in "/?#;"
    return ":" not in href


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


def _meta_charset(attrs: Callable[[str], str | None]) -> str | None:
    """The charset one ``<meta>`` declares, given a lookup of its attributes, or None."""
    charset = attrs("charset")
    if charset is not None:
        return _clean_charset(charset)
    http_equiv = attrs("http-equiv")
    if http_equiv is not None and http_equiv.strip().lower() == "content-type":
        return charset_from_content_type(attrs("content"))
    return None


class _MetaCharsetParser(_TolerantParser):
    """Finds the first ``<meta charset>`` or ``<meta http-equiv=content-type content=...>``."""

    def __init__(self) -> None:
        super().__init__()
        self.charset: str | None = None
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta" or self._done:
            return
        charset = _meta_charset(lambda name: _first(attrs, name))
        if charset is not None:
            self.charset = charset
            self._done = True


def _stdlib_meta_charset(text: str) -> str | None:
    parser = _MetaCharsetParser()
    parser.feed_all(text)
    return parser.charset


def _lexbor_meta_charset(text: str) -> str | None:
    for node in _lexbor()(text).css("meta"):
        charset = _meta_charset(node.attrs.get)
        if charset is not None:
            return charset
    return None


def charset_from_meta(html_bytes_prefix: bytes, parser: str | None = None) -> str | None:
    """The charset a page declares in a ``<meta>`` tag, lower-cased, or None.

    Understands ``<meta charset="...">`` and ``<meta http-equiv="Content-Type"
    content="text/html; charset=...">``; the first such tag wins. Only the first
    ``META_SCAN_BYTES`` are searched. A declared UTF-16 means UTF-8, as browsers
    decide: a page whose ``<meta>`` can be read as ASCII is not UTF-16. ``parser`` as
    for ``find_links``.
    """
    # Latin-1 maps every byte to one character, so ASCII markup survives whatever
    # the real encoding is.
    text = html_bytes_prefix[:META_SCAN_BYTES].decode("latin-1")
    if _check_parser(parser) == LEXBOR:
        charset = _lexbor_meta_charset(text)
    else:
        charset = _stdlib_meta_charset(text)
    if charset is not None and charset.replace("-", "").startswith("utf16"):
        return "utf-8"
    return charset


def _decode(body: bytes, label: str | None) -> tuple[str, str] | None:
    if label is None:
        return None
    try:
        # Looked up first: decoding no bytes asks no codec, even an unknown one.
        name = codecs.lookup(label).name
        text = body.decode(label, errors="replace")
    except (LookupError, ValueError):
        # Unknown, a bytes-to-bytes codec such as "base64" (LookupError), or a
        # codec that refuses errors="replace" such as "idna" (UnicodeError).
        return None
    return text, name


def decode_html(
    body: bytes, content_type: str | None, *, parser: str | None = None
) -> tuple[str, str]:
    """Decode an HTML body to text; return ``(text, name of the encoding used)``.

    The charset comes from the Content-Type header first, then from a ``<meta>`` tag
    (searched only when the header names no charset Python knows), else UTF-8. A
    charset name Python does not know as a text encoding is passed over. Bytes invalid
    in the chosen encoding become U+FFFD, so decoding never fails. The name returned is
    Python's canonical codec name (``iso8859-1`` for ``latin-1``). ``parser`` as for
    ``find_links``.
    """
    decoded = _decode(body, charset_from_content_type(content_type))
    if decoded is None:
        decoded = _decode(body, charset_from_meta(body, parser))
    if decoded is None:
        decoded = body.decode("utf-8", errors="replace"), "utf-8"
    return decoded


def read_html(
    body: bytes, content_type: str | None, *, parser: str | None = None
) -> tuple[str, PageLinks]:
    """``decode_html`` and ``find_links`` in one: the encoding of an HTML body and its links.

    The same answers, for less: with lexbor, a page whose header names no charset is
    parsed once, as UTF-8 (most pages are), its ``<meta>`` charset read from that tree,
    and parsed again only when it declares another encoding (``decode_html`` parses a
    prefix to find the ``<meta>``, then the decoded text).
    """
    if _check_parser(parser) == STDLIB:
        text, encoding = decode_html(body, content_type, parser=STDLIB)
        return encoding, _stdlib_links(text)
    header = charset_from_content_type(content_type)
    if header is not None and not _is_utf8(header):
        decoded = _decode(body, header)
        if decoded is not None:
            return decoded[1], _lexbor_links(decoded[0])
    tree = None
    if header is None or not _is_utf8(header):
        # No charset Python knows in the header: the page's <meta> decides.
        tree = _lexbor()(body)
        declared = _meta_charset_of_tree(tree, body)
        if declared is _UNDECIDED:
            declared = charset_from_meta(body, LEXBOR)
        if declared is not None and not _is_utf8(declared):
            decoded = _decode(body, declared)
            if decoded is not None:
                return decoded[1], _lexbor_links(decoded[0])
    # UTF-8, which lexbor reads from the bytes themselves. Invalid ones too: lexbor
    # passes them through and selectolax decodes what it returns with errors="replace",
    # as body.decode would have (bytes never invalid in an ASCII byte, where the
    # tokenizer cuts, so each piece decodes as it would inside the whole).
    return "utf-8", _links_of_tree(tree) if tree is not None else _lexbor_links(body)


@functools.lru_cache(maxsize=256)
def _is_utf8(label: str) -> bool:
    """True if Python decodes charset ``label`` as UTF-8 (``utf8``, ``UTF-8``...)."""
    try:
        return codecs.lookup(label).name == "utf-8"
    except (LookupError, ValueError):
        return False


# _meta_charset_of_tree's answer when only the prefix's own parse can tell.
_UNDECIDED = "undecided"
_META_TAG = re.compile(rb"<meta", re.IGNORECASE)


def _meta_charset_of_tree(tree: Any, body: bytes) -> str | None:
    """``charset_from_meta(body, LEXBOR)`` read from ``tree``, the parse of all of
    ``body``, when its ``<head>`` shows the answer; else ``_UNDECIDED``.

    ``charset_from_meta`` reads the ``<meta>`` tags of the first ``META_SCAN_BYTES``.
    The k-th ``<meta`` of that prefix, complete there (a ``>`` after it), is the k-th
    ``<meta>`` of the head when the head holds that many: a tag in a comment or a
    script spells ``<meta`` too and would miscount, so an answer is given only when the
    counts agree: no ``<meta`` at all, or the head's metas are all of the
    prefix's and the charset-declaring one is among them. (Fooled only by a ``<meta``
    spelt inside a comment or script of the prefix with the real tag past its end.)
    """
    prefix = body[:META_SCAN_BYTES]
    starts = [match.start() for match in _META_TAG.finditer(prefix)]
    if not starts:
        return None  # no <meta> in the prefix
    metas = 0
    node = tree.head.child if tree.head is not None else None
    while node is not None:
        if node.tag == "meta":
            metas += 1
            if metas > len(starts):
                return _UNDECIDED
            charset = _meta_charset(node.attrs.get)
            if charset is not None:
                if prefix.find(b">", starts[metas - 1]) < 0:
                    return _UNDECIDED  # cut off by the prefix's end
                if charset.replace("-", "").startswith("utf16"):
                    return "utf-8"
                return charset
        node = node.next
    return None if metas == len(starts) else _UNDECIDED
