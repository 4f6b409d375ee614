"""The crawler: the classic design of a frontier queue, worker tasks, a seen-set, a join.

The crawler itself (``crawler``) fetches with treadle's HTTP client; its command line
is ``cli``, and ``demosite`` serves the generated demo site. ``state`` keeps a
resumable crawl in SQLite and ``warc`` archives its exchanges (warcio). The pure parts
do no I/O and import only the standard library (and each other): URL rules (``urls``),
link extraction and charset detection (``links``, with lexbor when selectolax is
installed), robots.txt policy (``robots``), the per-URL record (``records``), the
report (``report``) and the demo site's content (``demosite_content``).
"""

from __future__ import annotations

from treadle.crawl.crawler import Crawler
from treadle.crawl.demosite import DemoSiteServer
from treadle.crawl.demosite_content import DemoResponse, DemoSite
from treadle.crawl.links import (
    charset_from_content_type,
    charset_from_meta,
    decode_html,
    extract_links,
)
from treadle.crawl.records import Record, status_class
from treadle.crawl.report import ProgressSnapshot, Summary, format_report, summarize
from treadle.crawl.robots import RobotsPolicy, robots_url
from treadle.crawl.urls import Scope, is_http_url, normalize_url, origin

__all__ = [
    "Crawler",
    "DemoResponse",
    "DemoSite",
    "DemoSiteServer",
    "ProgressSnapshot",
    "Record",
    "RobotsPolicy",
    "Scope",
    "Summary",
    "charset_from_content_type",
    "charset_from_meta",
    "decode_html",
    "extract_links",
    "format_report",
    "is_http_url",
    "normalize_url",
    "origin",
    "robots_url",
    "status_class",
    "summarize",
]
