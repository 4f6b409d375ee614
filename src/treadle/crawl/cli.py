"""``treadle crawl`` and ``treadle demo-site``: the crawler's command line.

``crawl`` validates its arguments at the boundary (one-line errors, exit status 2),
shows live progress on stderr when it is a terminal (with rich), writes JSON Lines as
each URL finishes, and prints the report on stdout at the end, or at Ctrl-C for what
finished. ``--demo`` crawls a generated site served in the same process.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import IO, Any, NoReturn, TypeVar

import treadle
from treadle.crawl import timeline
from treadle.crawl.crawler import (
    DEFAULT_MAX_PER_HOST,
    DEFAULT_USER_AGENT,
    LIMIT_MAX_DEPTH,
    LIMIT_MAX_TIME,
    Crawler,
)
from treadle.crawl.demosite import DemoSiteServer
from treadle.crawl.demosite_content import DemoSite
from treadle.crawl.frontier import (
    DEFAULT_LEASE,
    FrontierError,
    MemoryFrontier,
    SharedFrontier,
    default_worker_name,
)
from treadle.crawl.processes import FrontierService, ProcessFrontier, WorkerProcesses
from treadle.crawl.records import Record
from treadle.crawl.report import CrawlReport
from treadle.crawl.state import CrawlState, StateError, repair_json_lines
from treadle.crawl.urls import is_http_url, normalize_url
from treadle.crawl.warc import WarcArchive, WarcError

__all__ = ["demo_site_main", "main"]

_T = TypeVar("_T")

DEMO_PAGES = 600
# The demo site answers after 0 to 60 ms (30 ms on average): with the default per-host
# cap of 4 the crawl takes a few seconds and still shows real-world waits.
DEMO_LATENCY = 0.03
RETRY_BACKOFF = 1.0
DEMO_RETRY_BACKOFF = 0.1
# The demo site's calendar is endless. Its other pages lie within 6 links of the root
# even at 600 pages (about log(pages) deep), so 12 reaches all of them whatever the
# order the crawl finds them in, and stops the calendar 11 months either way.
DEMO_MAX_DEPTH = 12


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


EXIT_OK = 0
EXIT_OUTPUT_FAILED = 1
EXIT_USAGE = 2
EXIT_ROOT_FAILED = 3
EXIT_STOPPED_BY_LIMIT = 4
EXIT_BROKEN_LINKS = 5
EXIT_FRONTIER_FAILED = 6
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

EXIT_CODES = f"""exit status:
  {EXIT_OK}    the crawl completed and every root was fetched (2xx or 3xx)
  {EXIT_OUTPUT_FAILED}    the --json file could not be written (the report covers what finished)
  {EXIT_USAGE}    bad arguments
  {EXIT_ROOT_FAILED}    a root could not be fetched (no response, 4xx, 5xx, or robots.txt)
  {EXIT_STOPPED_BY_LIMIT}    --max-pages or --max-time stopped the crawl
  {EXIT_BROKEN_LINKS}    with --fail-on-broken: a fetched URL was broken (4xx, 5xx or error)
  {EXIT_FRONTIER_FAILED}    the shared frontier failed: Redis gone for too long, the crawl's
       data lost from it, or (--processes) the workers ended before the crawl
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
  {EXIT_TERMINATED}  stopped by SIGTERM (as by Ctrl-C: the report is printed, --state saved)
When several apply, the smallest non-zero status is given."""

POLITENESS = f"""politeness: at most --max-per-host requests at once to one host
(default {DEFAULT_MAX_PER_HOST}: fewer than the 6 connections a browser opens for
one reader, half Scrapy's 8), their starts at least --delay seconds apart, plus
up to half again at random (or robots.txt's Crawl-delay if longer). Timeouts,
resets and 408, 429, 500, 502, 503, 504 are retried with exponential backoff
and jitter; Retry-After is obeyed and holds back the whole host. DNS failures,
refused connections and certificate errors are not retried."""


class _JsonWriteError(Exception):
    """Writing a record to the --json file failed; ``error`` says why."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default value, and the description and epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        if action.default in (None, True, False, argparse.SUPPRESS) or action.option_strings == []:
            return help_text
        return help_text + " (default: %(default)s)"


def _crawl_parser() -> _OneLineParser:
    parser = _OneLineParser(
        prog="treadle crawl",
        description="Crawl web sites concurrently and report on every URL.\n\n" + POLITENESS,
        epilog=EXIT_CODES,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("roots", nargs="*", metavar="ROOT", help="http or https URLs to start at")
    demo = parser.add_argument_group("demo")
    demo.add_argument(
        "--demo",
        action="store_true",
        help="serve a generated demo site on a free local port and crawl it",
    )
    demo.add_argument(
        "--pages", type=_positive_int, default=DEMO_PAGES, help="pages in the demo site"
    )
    demo.add_argument(
        "--latency", type=_non_negative_float, default=DEMO_LATENCY, metavar="SECONDS",
        help="mean delay the demo site adds to each response, as a network would",
    )
    polite = parser.add_argument_group("politeness")
    polite.add_argument(
        "--max-per-host", type=_positive_int, default=DEFAULT_MAX_PER_HOST, metavar="N",
        help="requests at once to one host",
    )
    polite.add_argument(
        "--delay", type=_non_negative_float, default=0.0, metavar="SECONDS",
        help="least time between the starts of two requests to one host",
    )
    polite.add_argument(
        "--user-agent", default=DEFAULT_USER_AGENT, metavar="TEXT",
        help="the User-Agent header, also the name robots.txt rules are matched against",
    )
    polite.add_argument("--no-robots", action="store_true", help="ignore robots.txt")
    limits = parser.add_argument_group("scope and limits")
    limits.add_argument(
        "--max-depth", type=_non_negative_int, default=None, metavar="N",
        help="follow links at most N deep (a root's links are depth 1); none if unset,"
        f" {DEMO_MAX_DEPTH} with --demo (its calendar is endless)",
    )
    limits.add_argument(
        "--max-pages", type=_positive_int, default=None, metavar="N",
        help="stop after fetching N URLs; no limit if unset",
    )
    limits.add_argument(
        "--max-time", type=_positive_float, default=None, metavar="SECONDS",
        help="stop after this long; no limit if unset",
    )
    limits.add_argument(
        "--no-sitemaps", action="store_true",
        help="do not read the roots' sitemaps (those robots.txt names, else /sitemap.xml)",
    )
    limits.add_argument("--include", metavar="REGEX", help="follow only URLs matching this regex")
    limits.add_argument("--exclude", metavar="REGEX", help="skip URLs matching this regex")
    scope = limits.add_mutually_exclusive_group()
    scope.add_argument(
        "--strict",
        dest="strict",
        action="store_true",
        default=True,
        help="stay on the roots' hosts and their www. variants (the default)",
    )
    scope.add_argument(
        "--lenient",
        dest="strict",
        action="store_false",
        help="allow hosts sharing the roots' last two labels",
    )
    fetching = parser.add_argument_group("fetching")
    fetching.add_argument(
        "--max-tasks", type=_positive_int, default=100, metavar="N",
        help="worker tasks (URLs fetched at once, over all hosts)",
    )
    fetching.add_argument(
        "--max-redirect", type=_non_negative_int, default=10, metavar="N",
        help="redirects to follow per URL",
    )
    fetching.add_argument(
        "--max-tries", type=_positive_int, default=4, metavar="N",
        help="requests per URL at most (1: never retry)",
    )
    fetching.add_argument(
        "--retry-backoff", type=_non_negative_float, default=None, metavar="SECONDS",
        help=f"first wait before a retry, doubled each time (default: {RETRY_BACKOFF};"
        f" {DEMO_RETRY_BACKOFF} with --demo, whose server is local)",
    )
    fetching.add_argument(
        "--timeout", type=_positive_float, default=30.0, metavar="SECONDS",
        help="time for one whole fetch: connect, head and body",
    )
    fetching.add_argument(
        "--max-size", type=_non_negative_int, default=10 * 1024 * 1024, metavar="BYTES",
        help="largest body to read (a bigger Content-Length is refused unread)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--json", metavar="FILE", help="write one JSON line per finished URL to FILE ('-': stdout)"
    )
    output.add_argument(
        "--state", metavar="FILE",
        help="keep the crawl's frontier, seen set and finished URLs in this SQLite file;"
        " run the same command again to resume a crawl that was stopped or killed",
    )
    output.add_argument(
        "--warc", metavar="FILE",
        help="archive every exchange to this gzipped WARC/1.1 file (FILE.warc.gz); with"
        " --state, a resumed crawl appends to it",
    )
    output.add_argument(
        "--timeline", metavar="FILE.html",
        help="write the crawl as an HTML timeline: a lane per worker and per host",
    )
    output.add_argument(
        "--report", choices=("text", "json"), default="text",
        help="the end-of-crawl report as text for people or one JSON object for programs",
    )
    output.add_argument(
        "--fail-on-broken", action="store_true",
        help=f"exit {EXIT_BROKEN_LINKS} if any fetched URL was broken (link checking)",
    )
    shared = parser.add_argument_group(
        "several processes",
        "One crawl run by several processes: --processes N on this machine, or\n"
        "workers on any machines sharing a frontier in Redis (start each with the\n"
        "same --frontier, --crawl-id and ROOTs). See docs/crawling.md.",
    )
    shared.add_argument(
        "--processes", type=_positive_int, default=None, metavar="N",
        help="crawl with N worker processes fed by this one, which owns the frontier"
        " (and writes --json and --state)",
    )
    shared.add_argument(
        "--frontier", metavar="URL",
        help="share the crawl's frontier, seen set and per-host politeness with other"
        " workers in Redis at URL (redis://HOST:PORT/DB); needs --crawl-id",
    )
    shared.add_argument(
        "--crawl-id", metavar="NAME", help="the name of the shared crawl in Redis"
    )
    shared.add_argument(
        "--worker-id", metavar="NAME",
        help="this worker's name in the shared crawl (default: HOST-PID); start a worker"
        " again under its name and its --json file is repaired (records it had"
        " acknowledged but not written are added, a torn last line cut)",
    )
    shared.add_argument(
        "--lease", type=_positive_float, default=DEFAULT_LEASE, metavar="SECONDS",
        help="how long a worker's URLs stay leased after its last sign of life: a dead"
        " worker's URLs return to the frontier after this",
    )
    # A worker process of --processes: serves the crawl through the parent's socket.
    shared.add_argument("--worker-of", metavar="SOCKET", help=argparse.SUPPRESS)
    verbosity = output.add_mutually_exclusive_group()
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
    for option in ("include", "exclude"):
        pattern = getattr(args, option)
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                parser.error(f"--{option} {pattern!r} is not a valid regular expression: {exc}")
    if not args.user_agent.strip() or any(ch in args.user_agent for ch in "\r\n"):
        parser.error(f"--user-agent must be one non-empty line, got {args.user_agent!r}")
    _check_shared_options(parser, args)
    if args.worker_of is not None:
        return _run_worker(args)
    if args.state is not None and args.demo:
        parser.error(
            "--state resumes a crawl of the same ROOT, and --demo serves on a new port each"
            " time: serve the demo with 'treadle demo-site --port 8080' and crawl"
            " http://127.0.0.1:8080/ instead"
        )
    state: CrawlState | None = None
    if args.state is not None:
        try:
            state = CrawlState(args.state)
        except StateError as exc:
            parser.error(str(exc))
    json_file: IO[str] | None = None
    if args.json is not None:
        try:
            if args.json == "-":
                json_file = sys.stdout
            elif state is not None:
                # A resumed crawl's file keeps its lines; a torn last one is cut and
                # records committed but not yet written are added (each URL once).
                repair_json_lines(args.json, state.saved_records())
                json_file = open(args.json, "a", encoding="utf-8")  # noqa: SIM115 (closed below)
            elif args.frontier is not None and args.worker_id is not None:
                # A worker started again under its name: as a resumed crawl's, its file
                # gets the records it acknowledged in Redis and had not written.
                repair_json_lines(args.json, _run_on_aio(_acknowledged_records(args)))
                json_file = open(args.json, "a", encoding="utf-8")  # noqa: SIM115 (closed below)
            else:
                json_file = open(args.json, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as exc:
            parser.error(f"cannot write --json file {args.json!r}: {exc.strerror}")
        except (StateError, FrontierError) as exc:
            parser.error(str(exc))
    warc: WarcArchive | None = None
    if args.warc is not None:
        if importlib.util.find_spec("warcio") is None:
            parser.error("--warc needs warcio: pip install 'treadle[crawl]'")
        try:
            warc = WarcArchive(
                args.warc,
                info={
                    "software": f"treadle {treadle.__version__}",
                    "http-header-user-agent": args.user_agent,
                    "robots": "ignore" if args.no_robots else "obey",
                    "treadle-payload": "as read: de-chunked and decompressed; response heads"
                    " rewritten to match, original values under X-Treadle-Orig-*",
                },
                resume_at=state.warc_length() if state is not None else None,
            )
        except WarcError as exc:
            parser.error(str(exc))
    args.json_failed = False
    status = EXIT_INTERRUPTED
    try:
        if args.processes is not None:
            status = _run_processes(args, json_file, state, warc)
        else:
            status = _run_crawl(args, json_file, state, warc)
    finally:
        if warc is not None:
            warc.close()
        if json_file is not None and json_file is not sys.stdout:
            try:
                json_file.close()
            except OSError as exc:
                # After a failed write the buffer still holds that record: the error
                # was reported once already. Otherwise it is news.
                if not args.json_failed:
                    _report_json_error(args.json, exc)
                    status = EXIT_OUTPUT_FAILED
    return status


def _report_json_error(path: str, error: OSError) -> None:
    reason = error.strerror or str(error)
    print(f"treadle crawl: error: cannot write --json file {path!r}: {reason}", file=sys.stderr)


def _run_crawl(
    args: argparse.Namespace,
    json_file: IO[str] | None,
    state: CrawlState | None,
    warc: WarcArchive | None,
) -> int:
    crawler: Crawler | None = None
    progress = _Progress(quiet=args.quiet, verbose=args.verbose)

    def on_record(record: Record) -> None:
        if json_file is not None:
            try:
                json_file.write(record.to_json() + "\n")
                json_file.flush()
            except OSError as exc:
                raise _JsonWriteError(exc) from None
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
        frontier = _open_frontier(args)
        try:
            crawler = _new_crawler(
                args, roots, on_record, state=state, warc=warc, frontier=frontier
            )
            ticker = treadle.create_task(progress.run(crawler))
            recorder = timeline.TimelineRecorder() if args.timeline else None
            if recorder is not None:
                recorder.start(treadle.get_running_loop())
            try:
                await crawler.crawl()
            finally:
                if recorder is not None:
                    recorder.stop()
                    timeline.write_html(args.timeline, recorder, crawler.records)
                ticker.cancel()
                await treadle.gather(ticker, return_exceptions=True)
        finally:
            if frontier is not None:
                await frontier.close()
            if site_server is not None:
                await site_server.close()

    interrupted = False
    output_error: OSError | None = None
    try:
        with _TerminateAsInterrupt() as terminate:
            if args.frontier is not None:
                _run_on_aio(crawl())
            else:
                treadle.run(crawl())
    except KeyboardInterrupt:
        interrupted = True
    except _JsonWriteError as exc:
        # Writing --json failed (a full disk, say): the crawl stopped; say so once.
        output_error = exc.error
    except StateError as exc:
        print(f"treadle crawl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FrontierError as exc:
        print(f"treadle crawl: error: {exc}", file=sys.stderr)
        return EXIT_FRONTIER_FAILED
    finally:
        progress.stop()
        if state is not None:
            state.close()
    if output_error is not None:
        args.json_failed = True
        _report_json_error(args.json, output_error)
    if crawler is None:
        return EXIT_INTERRUPTED if interrupted else EXIT_OUTPUT_FAILED
    report_out = sys.stderr if json_file is sys.stdout else sys.stdout
    if interrupted:
        print("Interrupted: the report covers the URLs that finished.", file=report_out)
        if state is not None:
            print(f"The crawl is saved in {args.state}: run the same command to resume it.",
                  file=report_out)
    crawl_report = crawler.report()
    if args.frontier is not None:
        # This worker's share: the roots other workers fetched are not its failures.
        mine = {record.url for record in crawl_report.records}
        crawl_report.roots = [root for root in crawl_report.roots if root in mine]
        print(
            f"Worker {args.worker_id or default_worker_name()} of the crawl"
            f" {args.crawl_id!r}: the report covers the URLs this worker fetched.",
            file=report_out,
        )
        if crawler.leases_unreleased:
            print(
                f"{crawler.leases_unreleased} URLs being fetched could not be given back:"
                f" they return to the frontier when their lease ({args.lease} s) expires.",
                file=report_out,
            )
    if args.report == "json":
        report_out.write(crawl_report.to_json() + "\n")
    else:
        report_out.write(crawl_report.format())
    if interrupted:
        return EXIT_TERMINATED if terminate.terminated else EXIT_INTERRUPTED
    if output_error is not None:
        return EXIT_OUTPUT_FAILED
    return _exit_status(args, crawl_report)


def _exit_status(args: argparse.Namespace, crawl_report: CrawlReport) -> int:
    """The exit status of a crawl that ran to its end (or to a limit)."""
    if crawl_report.failed_roots:
        return EXIT_ROOT_FAILED
    if crawl_report.stop_reason is not None:
        return EXIT_STOPPED_BY_LIMIT
    if args.fail_on_broken and crawl_report.broken:
        return EXIT_BROKEN_LINKS
    return EXIT_OK


def _check_shared_options(parser: _OneLineParser, args: argparse.Namespace) -> None:
    """Refuse the combinations of --frontier and --processes that cannot work, clearly."""
    if args.frontier is None:
        for option in ("crawl_id", "worker_id"):
            if getattr(args, option) is not None:
                parser.error(f"--{option.replace('_', '-')} names a worker of a shared"
                             " crawl: give --frontier redis://HOST:PORT/DB too")
        if args.processes is not None and args.timeline is not None:
            parser.error("--timeline is not supported with --processes yet:"
                         " crawl in one process to use --timeline")
        return
    if args.crawl_id is None:
        parser.error("--frontier needs --crawl-id NAME: the name of the crawl the workers share")
    if not args.frontier.startswith(("redis://", "rediss://", "unix://")):
        parser.error(
            f"--frontier must be a Redis URL (redis://HOST:PORT/DB), got {args.frontier!r}"
        )
    for option, given in (
        ("--processes", args.processes),
        ("--state", args.state),
        ("--warc", args.warc),
        ("--timeline", args.timeline),
    ):
        if given is not None:
            parser.error(
                f"--frontier keeps the crawl in Redis: {option} is not supported with it"
                " (start more workers instead of --processes; Redis is the state)"
            )
    if args.demo:
        parser.error(
            "each worker would serve its own --demo site: serve it once with"
            " 'treadle demo-site --port 8080' and give the workers http://127.0.0.1:8080/"
        )
    if importlib.util.find_spec("redis") is None:
        parser.error("--frontier needs the redis package, which comes with the 'crawl'"
                     " extra: pip install 'treadle[crawl]'")


def _run_on_aio(main: Coroutine[Any, Any, _T]) -> _T:
    """Run ``main`` on treadle's loop offered to asyncio (treadle.aio), where redis.asyncio
    and the crawler's treadle code run together."""
    import asyncio

    from treadle.aio.loop import EventLoop

    with asyncio.Runner(loop_factory=EventLoop) as runner:
        return runner.run(main)


def _open_frontier(args: argparse.Namespace) -> SharedFrontier | None:
    """The Redis frontier --frontier names, or None."""
    if args.frontier is None:
        return None
    from treadle.crawl.redisfrontier import RedisFrontier

    return RedisFrontier(args.frontier, args.crawl_id, worker=args.worker_id, lease=args.lease)


async def _acknowledged_records(args: argparse.Namespace) -> list[Record]:
    """The records the worker ``--worker-id`` acknowledged in the shared crawl so far."""
    frontier = _open_frontier(args)
    assert frontier is not None
    try:
        return await frontier.records_of(args.worker_id)
    finally:
        await frontier.close()


def _new_crawler(
    args: argparse.Namespace,
    roots: list[str],
    on_record: Callable[[Record], object] | None,
    *,
    state: CrawlState | None = None,
    warc: WarcArchive | None = None,
    frontier: SharedFrontier | None = None,
) -> Crawler:
    """The crawler the command line asks for."""
    return Crawler(
        roots,
        include=args.include,
        exclude=args.exclude,
        strict=args.strict,
        max_redirect=args.max_redirect,
        max_tries=args.max_tries,
        max_tasks=args.max_tasks,
        max_per_host=args.max_per_host,
        delay=args.delay,
        max_depth=DEMO_MAX_DEPTH if args.max_depth is None and args.demo else args.max_depth,
        max_pages=args.max_pages,
        max_time=args.max_time,
        timeout=args.timeout,
        max_size=args.max_size,
        robots=not args.no_robots,
        sitemaps=not args.no_sitemaps,
        user_agent=args.user_agent,
        retry_backoff=(
            args.retry_backoff
            if args.retry_backoff is not None
            else DEMO_RETRY_BACKOFF if args.demo else RETRY_BACKOFF
        ),
        on_record=on_record,
        state=state,
        warc=warc,
        frontier=frontier,
    )


def _run_worker(args: argparse.Namespace) -> int:
    """A worker process of --processes: crawl through the parent's frontier, say nothing."""
    # Spare URLs: enough for the tasks' next requests to a host, twice over.
    frontier = ProcessFrontier(
        args.worker_of, spare=2 * min(args.max_tasks, args.max_per_host), segment=args.warc
    )
    # Its WARC segment: the parent copies each URL's records into the crawl's archive.
    warc = None
    if args.warc is not None:
        info = {"software": f"treadle {treadle.__version__}", "treadle-segment": "yes"}
        warc = WarcArchive(args.warc, info=info)

    async def work() -> None:
        try:
            await _new_crawler(args, args.roots, None, frontier=frontier, warc=warc).crawl()
        finally:
            await frontier.close()
            if warc is not None:
                warc.close()

    try:
        with _TerminateAsInterrupt() as terminate:
            treadle.run(work())
    except KeyboardInterrupt:
        return EXIT_TERMINATED if terminate.terminated else EXIT_INTERRUPTED
    except FrontierError as exc:
        print(f"treadle crawl: worker error: {exc}", file=sys.stderr)
        return EXIT_FRONTIER_FAILED
    return EXIT_OK


def _worker_args(args: argparse.Namespace, roots: list[str]) -> list[str]:
    """The command line of a worker process: the roots and the options of the crawl itself
    (not those of output, state or limits, which the parent keeps)."""
    worker = [*roots, "--quiet"]
    for option, value in (
        ("--max-per-host", args.max_per_host),
        ("--delay", args.delay),
        ("--user-agent", args.user_agent),
        ("--max-depth", DEMO_MAX_DEPTH if args.max_depth is None and args.demo else args.max_depth),
        ("--include", args.include),
        ("--exclude", args.exclude),
        ("--max-tasks", args.max_tasks),
        ("--max-redirect", args.max_redirect),
        ("--max-tries", args.max_tries),
        ("--retry-backoff", args.retry_backoff if args.retry_backoff is not None
         else DEMO_RETRY_BACKOFF if args.demo else RETRY_BACKOFF),
        ("--timeout", args.timeout),
        ("--max-size", args.max_size),
    ):
        if value is not None:
            worker += [option, str(value)]
    for option, given in (
        ("--no-robots", args.no_robots),
        ("--no-sitemaps", args.no_sitemaps),
        ("--lenient", not args.strict),
    ):
        if given:
            worker.append(option)
    return worker


def _run_processes(
    args: argparse.Namespace,
    json_file: IO[str] | None,
    state: CrawlState | None,
    warc: WarcArchive | None,
) -> int:
    """--processes N: serve the frontier to N worker processes; write --json and the report."""
    progress = _Progress(quiet=True, verbose=args.verbose)
    frontier = MemoryFrontier(state)
    output_error: list[OSError] = []
    interrupted = False
    stop_reason: str | None = None
    wall_time = 0.0
    roots: list[str] = list(args.roots)
    workers: WorkerProcesses | None = None

    def on_records(records: list[Record]) -> None:
        if json_file is not None and not output_error:
            try:
                json_file.write("".join(record.to_json() + "\n" for record in records))
                json_file.flush()
            except OSError as exc:
                output_error.append(exc)
        for record in records:
            progress.record(record)

    async def run() -> None:
        nonlocal stop_reason, wall_time, roots, workers
        loop = treadle.get_running_loop()
        started = loop.time()
        site_server: DemoSiteServer | None = None
        if args.demo:
            site_server = DemoSiteServer(DemoSite(pages=args.pages), latency=args.latency)
            await site_server.start()
            roots = [site_server.origin + "/"]
            print(f"treadle: serving a demo site of {args.pages} pages at {site_server.origin}",
                  file=sys.stderr)
        workers = WorkerProcesses(
            args.processes, _worker_args(args, roots), warc_segments=warc is not None
        )
        service = FrontierService(
            frontier, workers.socket_path, on_records, max_pages=args.max_pages, warc=warc
        )
        ended = None
        try:
            await service.start()
            workers.start()
            ended = treadle.create_task(workers.wait())
            done, _ = await treadle.wait([ended], timeout=args.max_time)
            if not done:
                stop_reason = LIMIT_MAX_TIME
            stop_reason = stop_reason or service.stop_reason
        finally:
            await workers.stop()
            if ended is not None:
                await treadle.gather(ended, return_exceptions=True)
            await service.close()
            wall_time = loop.time() - started
            if site_server is not None:
                await site_server.close()

    try:
        with _TerminateAsInterrupt() as terminate:
            treadle.run(run())
    except KeyboardInterrupt:
        interrupted = True
    except FrontierError as exc:
        print(f"treadle crawl: error: {exc}", file=sys.stderr)
        return EXIT_FRONTIER_FAILED
    finally:
        if workers is not None:
            workers.cleanup()
        if state is not None:
            state.close()
    report_out = sys.stderr if json_file is sys.stdout else sys.stdout
    if output_error:
        args.json_failed = True
        _report_json_error(args.json, output_error[0])
    unfinished = frontier.left()
    if interrupted:
        print("Interrupted: the report covers the URLs that finished.", file=report_out)
        if state is not None:
            print(f"The crawl is saved in {args.state}: run the same command to resume it.",
                  file=report_out)
    crawl_report = CrawlReport(
        records=list(frontier.records),
        wall_time=wall_time,
        roots=[normalize_url(root) for root in roots],
        stop_reason=stop_reason,
        left=unfinished if stop_reason is not None else [],
        skipped={"robots.txt": list(frontier.disallowed), LIMIT_MAX_DEPTH: list(frontier.too_deep)},
        retries=sum(max(0, record.tries - 1) for record in frontier.records),
        sitemaps=list(frontier.sitemaps),
    )
    if args.report == "json":
        report_out.write(crawl_report.to_json() + "\n")
    else:
        report_out.write(crawl_report.format())
    if interrupted:
        return EXIT_TERMINATED if terminate.terminated else EXIT_INTERRUPTED
    if output_error:
        return EXIT_OUTPUT_FAILED
    if unfinished and stop_reason is None:
        assert workers is not None
        print(
            f"treadle crawl: error: the worker processes ended (exit statuses"
            f" {', '.join(map(str, workers.returncodes))}) with {len(unfinished)} URLs"
            " not crawled",
            file=sys.stderr,
        )
        return EXIT_FRONTIER_FAILED
    return _exit_status(args, crawl_report)


class _TerminateAsInterrupt:
    """While active, SIGTERM stops the crawl the way Ctrl-C does: the main task is
    cancelled, so the report is printed and the state saved; ``terminated`` says if it came."""

    def __init__(self) -> None:
        self.terminated = False
        self._previous: object = None

    def __enter__(self) -> _TerminateAsInterrupt:
        if threading.current_thread() is threading.main_thread():  # only it gets signals
            self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)  # type: ignore[arg-type]

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.terminated = True
        signal.raise_signal(signal.SIGINT)


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
