"""Reading sitemaps (sitemaps.org, protocol 0.9): the page URLs a site lists for crawlers.

A sitemap is either a ``<urlset>`` of page URLs or a ``<sitemapindex>`` of further
sitemaps, as XML, possibly gzipped. ``read_sitemap`` takes the body as fetched and
returns the ``<loc>`` values, or raises ``SitemapError``. Pure functions; imports
treadle's errors and the standard library.
"""

from __future__ import annotations

import dataclasses
import zlib
from xml.parsers import expat

from treadle.errors import SitemapError

__all__ = ["SITEMAP_MAX_SIZE", "Sitemap", "read_sitemap"]

SITEMAP_MAX_SIZE = 50 * 1024 * 1024
"""The protocol's limit on one sitemap, uncompressed: 50 MiB."""

_GZIP_MAGIC = b"\x1f\x8b"
# Element names come as "namespace local-name"; sitemaps in the wild use the protocol's
# namespace, an old Google one, or none, so only the local name is compared.
_NAMESPACE_SEPARATOR = " "


@dataclasses.dataclass(frozen=True, slots=True)
class Sitemap:
    """What one sitemap lists."""

    is_index: bool
    """True for a ``<sitemapindex>`` (its locations are sitemaps), False for a ``<urlset>``."""
    locations: list[str]
    """The ``<loc>`` values in document order, whitespace stripped, as written."""


def read_sitemap(body: bytes, max_size: int) -> Sitemap:
    """The sitemap in ``body``: XML, or gzipped XML (a ``.xml.gz`` file), at most
    ``max_size`` bytes once inflated.

    Raises ``SitemapError`` for a body that inflates past ``max_size`` (checked as it
    inflates, so a decompression bomb costs at most ``max_size`` bytes), a corrupt gzip
    stream, XML that is not well-formed or declares a DOCTYPE, or a root element other
    than ``<urlset>`` and ``<sitemapindex>``.
    """
    if body.startswith(_GZIP_MAGIC):
        body = _gunzip(body, max_size)
    if len(body) > max_size:
        raise SitemapError(f"the sitemap is larger than {max_size} bytes")
    return _parse(body)


def _gunzip(data: bytes, max_size: int) -> bytes:
    """``data`` gunzipped (every member), refusing to produce more than ``max_size`` bytes."""
    inflated = bytearray()
    while data:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            # At most one byte past the limit: enough to know it was passed.
            inflated += inflater.decompress(data, max_size + 1 - len(inflated))
        except zlib.error as exc:
            raise SitemapError(f"the sitemap is not valid gzip: {exc}") from None
        if len(inflated) > max_size or inflater.unconsumed_tail:
            raise SitemapError(f"the sitemap inflates to more than {max_size} bytes")
        if not inflater.eof:
            raise SitemapError("the gzipped sitemap is cut short")
        data = inflater.unused_data
    return bytes(inflated)


class _SitemapParser:
    """expat callbacks collecting the ``<loc>`` of each ``<url>`` or ``<sitemap>``."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.locations: list[str] = []
        # The local names of the open elements, outermost first.
        self._open: list[str] = []
        self._text: list[str] = []

    def start(self, name: str, attributes: dict[str, str]) -> None:
        local = name.rpartition(_NAMESPACE_SEPARATOR)[2]
        if self.root is None:
            if local not in ("urlset", "sitemapindex"):
                raise SitemapError(
                    f"not a sitemap: the root element is <{local}>, not <urlset> or <sitemapindex>"
                )
            self.root = local
        self._open.append(local)
        self._text.clear()

    def end(self, name: str) -> None:
        if self._open in (["urlset", "url", "loc"], ["sitemapindex", "sitemap", "loc"]):
            location = "".join(self._text).strip()
            if location:
                self.locations.append(location)
        self._open.pop()

    def text(self, data: str) -> None:
        self._text.append(data)


def _refuse_doctype(name: str, *_details: object) -> None:
    raise SitemapError(f"the sitemap declares a DOCTYPE ({name}): refused, as sitemaps need none")


def _parse(xml: bytes) -> Sitemap:
    # Safe against entity expansion (billion laughs) and external entities because no
    # DOCTYPE is accepted: entities can only be declared in one, and an undeclared
    # entity is a well-formedness error. This is defusedxml's forbid_dtd, done with
    # the standard library's expat, so the crawler needs no third-party XML package.
    parser = expat.ParserCreate(namespace_separator=_NAMESPACE_SEPARATOR)
    collector = _SitemapParser()
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.StartElementHandler = collector.start
    parser.EndElementHandler = collector.end
    parser.CharacterDataHandler = collector.text
    parser.buffer_text = True
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as exc:
        raise SitemapError(f"the sitemap is not well-formed XML: {exc}") from None
    return Sitemap(is_index=collector.root == "sitemapindex", locations=collector.locations)
