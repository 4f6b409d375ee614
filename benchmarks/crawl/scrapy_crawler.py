"""The real-pages benchmark's Scrapy side: a spider that follows every link on one host.

The same work as the other crawlers of ``real_pages.py``: the hrefs of ``<a>`` and
``<area>`` (Scrapy's ``LinkExtractor``, on lxml; no file extension refused), on the
root's host, each URL once (Scrapy's duplicate filter), robots.txt obeyed, politeness
off: ``--concurrency`` requests at once, no delay, no auto-throttle. Prints one JSON
line: responses, seconds, pages per second.

    python benchmarks/crawl/scrapy_crawler.py http://127.0.0.1:8000/ --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import HtmlResponse, Response
from scrapy.linkextractors import LinkExtractor


class LinkSpider(scrapy.Spider):
    """Follows every ``<a>``/``<area>`` href on the root's host."""

    name = "links"

    def __init__(self, root: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.start_urls = [root]
        # Scope by host, ports not compared, as the others do (LinkExtractor's
        # allow_domains compares host and port, so it is not used).
        self.host = urlsplit(root).hostname
        self.links = LinkExtractor(tags=("a", "area"), attrs=("href",), deny_extensions=[])

    def parse(self, response: Response, **kwargs: Any) -> Iterator[scrapy.Request]:
        if not isinstance(response, HtmlResponse):
            return
        for link in self.links.extract_links(response):
            if urlsplit(link.url).hostname == self.host:
                yield scrapy.Request(link.url, callback=self.parse)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    process = CrawlerProcess(
        settings={
            "LOG_LEVEL": "WARNING",
            "USER_AGENT": "bench-scrapy",
            "ROBOTSTXT_OBEY": True,
            "CONCURRENT_REQUESTS": args.concurrency,
            "CONCURRENT_REQUESTS_PER_DOMAIN": args.concurrency,
            "DOWNLOAD_DELAY": 0,
            "AUTOTHROTTLE_ENABLED": False,
            "TELNETCONSOLE_ENABLED": False,
            "HTTPERROR_ALLOW_ALL": True,
        }
    )
    crawler = process.create_crawler(LinkSpider)
    started = time.perf_counter()
    process.crawl(crawler, root=args.root)
    process.start()
    seconds = time.perf_counter() - started
    assert crawler.stats is not None
    responses = int(crawler.stats.get_value("response_received_count", 0))
    print(json.dumps({
        "crawler": "scrapy",
        "pages": responses,
        "seconds": round(seconds, 3),
        "pages_per_s": round(responses / seconds, 1),
        "scrapy": scrapy.__version__,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
