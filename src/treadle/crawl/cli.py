"""``treadle crawl`` and ``treadle demo-site``: the crawler's command line.

``crawl`` validates its arguments at the boundary (one-line errors, exit status 2),
shows live progress on stderr when it is a terminal (with rich), writes JSON Lines as
each URL finishes, and prints the report on stdout at the end, or at Ctrl-C for what
finished. ``--demo`` crawls a generated site served in the same process.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import IO, NoReturn

import treadle
from treadle.crawl.crawler import Crawler
from treadle.crawl.demosite import DemoSiteServer
from treadle.crawl.demosite_content import DemoSite
from treadle.crawl.records import Record
from treadle.crawl.report import format_report
from treadle.crawl.urls import is_http_url

__all__ = ["demo_site_main", "main"]

DEMO_PAGES = 600
# The demo site answers after 0 to 0.5 s (0.25 s on average), so the crawl takes a few
# seconds and shows what 100 concurrent tasks do with real-world waits.
DEMO_LATENCY = 0.25


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(least: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value

    return parse


_non_negative_int = _int_at_least(0)
_positive_int = _int_at_least(1)


def _seconds(*, zero_ok: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, above zero (or zero too)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds, got {text!r}"
            ) from None
        if not (value >= 0 if zero_ok else value > 0) or value == float("inf"):
            least = "zero or more" if zero_ok else "a positive number of"
            raise argparse.ArgumentTypeError(f"must be {least} seconds, got {text}")
        return value

    return parse


_positive_float = _seconds(zero_ok=False)
_non_negative_float = _seconds(zero_ok=True)


def _crawl_parser() -> _OneLineParser:
    parser = _OneLineParser(
        prog="treadle crawl",
        description="Crawl web sites concurrently and report on every URL.",
    )
    parser.add_argument("roots", nargs="*", metavar="ROOT", help="http or https URLs to start at")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="serve a generated demo site on a free local port and crawl it",
    )
    parser.add_argument(
        "--pages", type=_positive_int, default=DEMO_PAGES, help="pages in the demo site"
    )
    parser.add_argument(
        "--latency", type=_non_negative_float, default=DEMO_LATENCY, metavar="SECONDS",
        help="mean delay the demo site adds to each response, as a network would "
        f"(default {DEMO_LATENCY})",
    )
    parser.add_argument("--max-tasks", type=_positive_int, default=100, help="worker tasks")
    parser.add_argument(
        "--max-redirect", type=_non_negative_int, default=10, help="redirects to follow per URL"
    )
    parser.add_argument("--max-tries", type=_positive_int, default=4, help="attempts per URL")
    parser.add_argument(
        "--max-per-host", type=_positive_int, default=None, help="connections per host"
    )
    parser.add_argument("--exclude", metavar="REGEX", help="skip URLs matching this regex")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--strict",
        dest="strict",
        action="store_true",
        default=True,
        help="stay on the roots' hosts and their www. variants (default)",
    )
    scope.add_argument(
        "--lenient",
        dest="strict",
        action="store_false",
        help="allow hosts sharing the roots' last two labels",
    )
    parser.add_argument("--timeout", type=_positive_float, default=30.0, help="seconds per request")
    parser.add_argument(
        "--max-size",
        type=_non_negative_int,
        default=10 * 1024 * 1024,
        metavar="BYTES",
        help="largest body to read",
    )
    parser.add_argument("--no-robots", action="store_true", help="ignore robots.txt")
    parser.add_argument(
        "--json", metavar="FILE", help="write one JSON line per finished URL to FILE ('-': stdout)"
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="print each finished URL on stderr"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """``treadle crawl ...``; the exit status."""
    parser = _crawl_parser()
    args = parser.parse_args(argv)
    if args.demo and args.roots:
        parser.error("give either ROOT URLs or --demo, not both")
    if not args.demo and not args.roots:
        parser.error("give at least one ROOT URL (or --demo to crawl a built-in demo site)")
    for root in args.roots:
        if not is_http_url(root):
            parser.error(f"a ROOT must be an http or https URL, got {root!r}")
    if args.exclude is not None:
        try:
            re.compile(args.exclude)
        except re.error as exc:
            parser.error(f"--exclude {args.exclude!r} is not a valid regular expression: {exc}")
    json_file: IO[str] | None = None
    if args.json is not None:
        try:
            json_file = (
                sys.stdout
                if args.json == "-"
                else open(args.json, "w", encoding="utf-8")  # noqa: SIM115 (closed in finally)
            )
        except OSError as exc:
            parser.error(f"cannot write --json file {args.json!r}: {exc.strerror}")
    try:
        return _run_crawl(args, json_file)
    finally:
        if json_file is not None and json_file is not sys.stdout:
            json_file.close()


def _run_crawl(args: argparse.Namespace, json_file: IO[str] | None) -> int:
    crawler: Crawler | None = None
    progress = _Progress(quiet=args.quiet, verbose=args.verbose)

    def on_record(record: Record) -> None:
        if json_file is not None:
            json_file.write(record.to_json() + "\n")
            json_file.flush()
        progress.record(record)

    async def crawl() -> None:
        nonlocal crawler
        site_server: DemoSiteServer | None = None
        roots = args.roots
        if args.demo:
            site_server = DemoSiteServer(DemoSite(pages=args.pages), latency=args.latency)
            await site_server.start()
            roots = [site_server.origin + "/"]
            print(
                f"treadle: serving a demo site of {args.pages} pages at {site_server.origin}",
                file=sys.stderr,
            )
        try:
            crawler = Crawler(
                roots,
                exclude=args.exclude,
                strict=args.strict,
                max_redirect=args.max_redirect,
                max_tries=args.max_tries,
                max_tasks=args.max_tasks,
                max_per_host=args.max_per_host,
                timeout=args.timeout,
                max_size=args.max_size,
                robots=not args.no_robots,
                on_record=on_record,
            )
            ticker = treadle.create_task(progress.run(crawler))
            try:
                await crawler.crawl()
            finally:
                ticker.cancel()
                await treadle.gather(ticker, return_exceptions=True)
        finally:
            if site_server is not None:
                await site_server.close()

    interrupted = False
    try:
        treadle.run(crawl())
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.stop()
    if crawler is None:
        return 130 if interrupted else 1
    report_out = sys.stderr if json_file is sys.stdout else sys.stdout
    if interrupted:
        print("Interrupted: the report covers the URLs that finished.", file=report_out)
    report_out.write(format_report(crawler.records, crawler.wall_time))
    if crawler.disallowed:
        print(f"  skipped by robots.txt: {len(crawler.disallowed):,} URLs", file=report_out)
    return 130 if interrupted else 0


class _Progress:
    """The live progress display on stderr: a rich status line on a terminal."""

    def __init__(self, *, quiet: bool, verbose: bool) -> None:
        self.verbose = verbose
        self.live = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(
                "", console=Console(file=sys.stderr), refresh_per_second=8, transient=True
            )

    def record(self, record: Record) -> None:
        if self.verbose:
            outcome = record.exception or str(record.status)
            print(f"{outcome:>6}  {record.url}", file=sys.stderr)

    async def run(self, crawler: Crawler) -> None:
        if self.live is None:
            return
        self.live.start()
        while True:
            self.live.update(crawler.progress().format())
            await treadle.sleep(0.125)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


def demo_site_main(argv: list[str] | None = None) -> int:
    """``treadle demo-site ...``: serve the demo site until Ctrl-C."""
    parser = _OneLineParser(prog="treadle demo-site", description="Serve the generated demo site.")
    parser.add_argument("--pages", type=_positive_int, default=DEMO_PAGES, help="HTML pages")
    parser.add_argument(
        "--delay",
        type=_non_negative_float,
        default=1.0,
        help="scale of the slow pages' delays (0 makes every page fast)",
    )
    parser.add_argument("--port", type=_non_negative_int, default=8080, help="port (0: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--latency", type=_non_negative_float, default=0.0, metavar="SECONDS",
        help="mean delay added to each response, as a network would (default 0)",
    )
    args = parser.parse_args(argv)
    if args.port > 65535:
        parser.error(f"--port must be at most 65535, got {args.port}")

    async def serve() -> None:
        server = DemoSiteServer(
            DemoSite(pages=args.pages, delay_scale=args.delay),
            host=args.host,
            port=args.port,
            latency=args.latency,
        )
        try:
            await server.start()
        except OSError as exc:
            print(f"treadle demo-site: error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        print(
            f"Serving a demo site of {args.pages} pages at {server.origin}/ (Ctrl-C stops)",
            flush=True,
        )
        try:
            await server.serve_forever()
        finally:
            await server.close()

    try:
        treadle.run(serve())
    except KeyboardInterrupt:
        return 0
    return 0
