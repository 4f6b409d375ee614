"""The crawl benchmark's baseline: the classic crawler on asyncio and aiohttp.

Same design as treadle's crawler (a frontier ``asyncio.Queue``, ``max_tasks`` worker
tasks, a seen-set, ``Queue.join``) and the same pure rules, imported from
``treadle.crawl`` (URL normalisation and scope, link extraction, robots.txt, records);
only the event loop and the HTTP client differ. ``--parser`` picks the HTML tokenizer
(treadle's default: lexbor when selectolax is installed; ``stdlib``: html.parser).
Prints one JSON line: pages, seconds, pages per second and peak RSS.

    python benchmarks/crawl/aiohttp_crawler.py http://127.0.0.1:8000/ --max-tasks 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import resource
import sys
import time
from collections.abc import Sequence

import aiohttp
from yarl import URL

from treadle.crawl.links import PARSERS, LinkResolver, default_parser, read_html
from treadle.crawl.records import Record
from treadle.crawl.report import format_report
from treadle.crawl.robots import RobotsPolicy, robots_url
from treadle.crawl.urls import Scope, normalize_url

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def _request_url(url: str) -> URL:
    # An ASCII URL is sent exactly as normalised (yarl would otherwise re-encode
    # escapes); anything else is left to yarl to percent-encode.
    return URL(url, encoded=url.isascii())


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Crawler:
    """Crawl from ``roots`` with ``max_tasks`` workers until the frontier is empty."""

    def __init__(
        self,
        roots: Sequence[str],
        *,
        max_tasks: int = 100,
        max_redirect: int = 10,
        max_tries: int = 4,
        strict: bool = True,
        exclude: str | None = None,
        obey_robots: bool = True,
        user_agent: str = "treadle-bench-aiohttp",
        timeout: float = 30.0,
        parser: str | None = None,
    ) -> None:
        self.roots = [normalize_url(root) for root in roots]
        self.scope = Scope(self.roots, strict=strict, exclude=exclude)
        # The page reading treadle's crawler does: one parse, hrefs resolved once per folder.
        self.links = LinkResolver(keep=self.scope.allows, keep_host=self.scope.allows_host)
        self.max_tasks = max_tasks
        self.max_redirect = max_redirect
        self.max_tries = max_tries
        self.obey_robots = obey_robots
        self.user_agent = user_agent
        self.timeout = timeout
        self.parser = parser or default_parser()
        self.records: list[Record] = []
        self.skipped_by_robots = 0
        # Invariant: every URL ever put on the frontier is in seen, so none is fetched twice.
        self.seen: set[str] = set()
        self.frontier: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
        # robots.txt fetches, one per origin, shared by every worker that needs it.
        self._robots: dict[str, asyncio.Task[RobotsPolicy]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._t0 = 0.0

    def _add(self, url: str, max_redirect: int) -> bool:
        if url in self.seen:
            return False
        self.seen.add(url)
        self.frontier.put_nowait((url, max_redirect))
        return True

    async def crawl(self) -> None:
        """Run the crawl; ``records`` holds one Record per URL fetched."""
        self._t0 = time.monotonic()
        connector = aiohttp.TCPConnector(limit=self.max_tasks)
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": self.user_agent},
        ) as self._session:
            for root in self.roots:
                self._add(root, self.max_redirect)
            workers = [asyncio.create_task(self._work()) for _ in range(self.max_tasks)]
            try:
                await self.frontier.join()
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                for task in self._robots.values():
                    task.cancel()
                await asyncio.gather(*self._robots.values(), return_exceptions=True)

    async def _work(self) -> None:
        while True:
            url, max_redirect = await self.frontier.get()
            try:
                await self._fetch(url, max_redirect)
            finally:
                self.frontier.task_done()

    async def _policy(self, url: str) -> RobotsPolicy:
        key = robots_url(url)
        task = self._robots.get(key)
        if task is None:
            task = self._robots[key] = asyncio.create_task(self._fetch_robots(key))
        return await asyncio.shield(task)

    async def _fetch_robots(self, url: str) -> RobotsPolicy:
        assert self._session is not None
        try:
            # Redirects to robots.txt are followed, as RFC 9309 asks.
            async with self._session.get(_request_url(url)) as response:
                body = await response.read()
                return RobotsPolicy.from_response(response.status, body, self.user_agent)
        except (aiohttp.ClientError, TimeoutError):
            return RobotsPolicy.allow_all(self.user_agent)

    async def _fetch(self, url: str, max_redirect: int) -> None:
        assert self._session is not None
        if self.obey_robots and not (await self._policy(url)).allowed(url):
            self.skipped_by_robots += 1
            return
        record = Record(url=url, started=time.monotonic() - self._t0)
        begin = time.perf_counter()
        body = b""
        location = None
        while record.tries < self.max_tries:
            record.tries += 1
            try:
                async with self._session.get(_request_url(url), allow_redirects=False) as response:
                    body = await response.read()
                    record.status = response.status
                    record.content_type = response.headers.get("Content-Type")
                    location = response.headers.get("Location")
                record.exception = None
                break
            except (aiohttp.ClientError, TimeoutError) as exc:
                record.exception = _describe(exc)
        record.size = len(body)
        if record.exception is None:
            self._follow(record, body, location, max_redirect)
        record.elapsed = time.perf_counter() - begin
        self.records.append(record)

    def _follow(self, record: Record, body: bytes, location: str | None, max_redirect: int) -> None:
        if record.status in REDIRECT_STATUSES and location is not None:
            try:
                record.next_url = normalize_url(location, record.url)
            except ValueError:
                return
            if max_redirect > 0 and self.scope.allows(record.next_url):
                record.num_urls = 1
                record.num_new_urls = int(self._add(record.next_url, max_redirect - 1))
            return
        mime = (record.content_type or "").partition(";")[0].strip().lower()
        if record.status != 200 or mime != "text/html":
            return
        record.encoding, page = read_html(body, record.content_type, parser=self.parser)
        for link in self.links.resolve(page, record.url):
            record.num_urls += 1
            record.num_new_urls += self._add(link, self.max_redirect)


def peak_rss_bytes() -> int:
    """The process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", metavar="URL", help="where the crawl starts")
    parser.add_argument("--max-tasks", type=int, default=100, help="worker tasks (100)")
    parser.add_argument("--max-redirect", type=int, default=10, help="redirects per URL (10)")
    parser.add_argument("--max-tries", type=int, default=4, help="tries per URL (4)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (30)")
    parser.add_argument("--lenient", action="store_true", help="same last two host labels")
    parser.add_argument("--exclude", metavar="REGEX", help="skip URLs matching REGEX")
    parser.add_argument("--no-robots", action="store_true", help="ignore robots.txt")
    parser.add_argument("--parser", choices=PARSERS, help="HTML tokenizer (treadle's default)")
    parser.add_argument("--records", metavar="FILE", help="write one JSON line per URL")
    parser.add_argument("--report", action="store_true", help="print the report to stderr")
    args = parser.parse_args(argv)
    if args.max_tasks < 1:
        parser.error("--max-tasks must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        crawler = Crawler(
            args.roots,
            max_tasks=args.max_tasks,
            max_redirect=args.max_redirect,
            max_tries=args.max_tries,
            strict=not args.lenient,
            exclude=args.exclude,
            obey_robots=not args.no_robots,
            timeout=args.timeout,
            parser=args.parser,
        )
    except ValueError as exc:
        print(f"aiohttp_crawler: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(crawler.crawl())
    seconds = time.perf_counter() - start
    records = crawler.records
    if args.records:
        with open(args.records, "w", encoding="utf-8") as out:
            out.writelines(record.to_json() + "\n" for record in records)
    if args.report:
        print(format_report(records, seconds), file=sys.stderr)
    result = {
        "crawler": "aiohttp",
        "roots": crawler.roots,
        "max_tasks": args.max_tasks,
        "parser": crawler.parser,
        "pages": len(records),
        "seconds": round(seconds, 4),
        "pages_per_s": round(len(records) / seconds, 1) if seconds > 0 else 0.0,
        "peak_rss_bytes": peak_rss_bytes(),
        "errors": sum(record.status_class == "error" for record in records),
        "skipped_by_robots": crawler.skipped_by_robots,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
