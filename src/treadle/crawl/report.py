"""What the crawler prints: the final report, and the one-line live progress.

Plain text built from ``treadle.crawl.records.Record`` values; imports only that and
the standard library. ``summarize`` gives the numbers, ``format_report`` the text.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Sequence

from treadle.crawl.records import Record, status_class

__all__ = [
    "STATUS_CLASSES",
    "CrawlReport",
    "HostActivity",
    "ProgressSnapshot",
    "Summary",
    "format_report",
    "human_bytes",
    "summarize",
]

STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error", "other")
"""The classes a Record's outcome falls in, in report order (see Record.status_class)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """The numbers of a finished crawl."""

    pages: int
    """URLs fetched (one Record each)."""
    by_class: dict[str, int]
    """Records per status class, with every class of STATUS_CLASSES present."""
    by_status: dict[int, int]
    """Records per exact HTTP status."""
    total_bytes: int
    """Sum of body sizes."""
    wall_time: float
    """Seconds the whole crawl took."""
    tries: int
    """Sum of tries (more than ``pages`` when fetches were retried)."""

    @property
    def pages_per_second(self) -> float:
        """Pages over wall time; 0.0 for a crawl that took no time."""
        return self.pages / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def errors(self) -> int:
        """Fetches that got no response."""
        return self.by_class["error"]


def summarize(records: Sequence[Record], wall_time: float) -> Summary:
    """Count ``records`` of a crawl that took ``wall_time`` seconds."""
    classes = Counter(record.status_class for record in records)
    statuses = Counter(
        record.status
        for record in records
        if record.status is not None and record.exception is None
    )
    return Summary(
        pages=len(records),
        by_class={name: classes[name] for name in STATUS_CLASSES},
        by_status=dict(sorted(statuses.items())),
        total_bytes=sum(record.size for record in records),
        wall_time=wall_time,
        tries=sum(record.tries for record in records),
    )


def human_bytes(n: int) -> str:
    """``1536`` -> ``1.5 KiB``; whole bytes below 1 KiB."""
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    units = ["KiB", "MiB", "GiB", "TiB"]
    while size >= 1024 and len(units) > 1:
        size /= 1024
        units.pop(0)
    return f"{size:.1f} {units[0]}"


def format_report(
    records: Sequence[Record],
    wall_time: float,
    *,
    slowest: int = 5,
    max_errors: int = 20,
    retries: int = 0,
) -> str:
    """The end-of-crawl report as plain text (several lines, ending in a newline).

    Totals (pages, bytes, wall time, pages per second, ``retries``), counts per status
    class with the exact statuses of each, the ``slowest`` pages by elapsed time, the
    broken links (4xx and 5xx, with the page linking to each), and the failed fetches
    grouped by kind (URL and exception; the first ``max_errors``, then how many more).
    """
    summary = summarize(records, wall_time)
    lines = [
        "Crawl report",
        f"  pages            {summary.pages:,}",
        f"  bytes            {summary.total_bytes:,} ({human_bytes(summary.total_bytes)})",
        f"  wall time        {wall_time:.2f} s",
        f"  pages per second {summary.pages_per_second:,.1f}",
    ]
    if summary.tries > summary.pages:
        lines.append(f"  tries            {summary.tries:,}")
    if retries:
        lines.append(f"  retries          {retries:,}")
    lines += ["", "Status"]
    for name in STATUS_CLASSES:
        count = summary.by_class[name]
        if name == "other" and not count:
            continue
        detail = ", ".join(
            f"{status}: {n:,}"
            for status, n in summary.by_status.items()
            if status_class(status) == name
        )
        lines.append(f"  {name:<6} {count:>8,}" + (f"   ({detail})" if detail else ""))

    if records and slowest > 0:
        ranked = sorted(records, key=lambda record: record.elapsed, reverse=True)[:slowest]
        lines += ["", f"Slowest {len(ranked)}"]
        for record in ranked:
            outcome = str(record.status) if record.status is not None else "error"
            lines.append(f"  {record.elapsed:8.3f} s  {outcome:>5}  {record.url}")

    broken = [r for r in records if r.exception is None and r.status_class in ("4xx", "5xx")]
    if broken:
        lines += ["", f"Broken links ({len(broken):,})"]
        for record in broken[:max_errors]:
            lines.append(f"  {record.status}  {record.url}")
            lines.append(f"       linked from {record.referrer or '(a root)'}")
        if len(broken) > max_errors:
            lines.append(f"  ... and {len(broken) - max_errors:,} more")
    failed = [record for record in records if record.status_class == "error"]
    if failed:
        lines += ["", f"Errors ({len(failed):,})"]
        by_kind: dict[str, list[Record]] = {}
        for record in failed:
            by_kind.setdefault(record.error_kind or "unclassified", []).append(record)
        shown = 0
        for kind, group in sorted(by_kind.items(), key=lambda item: -len(item[1])):
            lines.append(f"  {kind} ({len(group):,})")
            for record in group:
                if shown == max_errors:
                    break
                shown += 1
                lines.append(f"    {record.url}")
                linked = f" (linked from {record.referrer})" if record.referrer else ""
                lines.append(f"        {record.exception or 'no response'}{linked}")
        if len(failed) > shown:
            lines.append(f"  ... and {len(failed) - shown:,} more")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True, slots=True)
class HostActivity:
    """What politeness cost on one host: requests, and the time they were held back."""

    requests: int
    """Requests sent (robots.txt and sitemaps included)."""
    held_back: float
    """Seconds the host's next request was held back, by --delay or a pause it asked for."""
    back_offs: int
    """Pauses the host asked for (Retry-After, 429, 503)."""


LIMIT_OPTIONS = {"max-depth": "--max-depth", "max-pages": "--max-pages", "max-time": "--max-time"}


@dataclasses.dataclass(slots=True)
class CrawlReport:
    """Everything the end-of-crawl report says: the records and what was left out."""

    records: list[Record]
    wall_time: float
    roots: list[str]
    """The root URLs, normalised."""
    stop_reason: str | None = None
    """The limit that stopped the crawl (``max-pages``, ``max-time``), or None."""
    left: list[str] = dataclasses.field(default_factory=list)
    """URLs not fetched because a limit stopped the crawl."""
    skipped: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """URLs left out, by why: ``robots.txt``, ``max-depth``."""
    robots_notes: dict[str, str] = dataclasses.field(default_factory=dict)
    """Per origin, how its robots.txt was decided when it could not simply be read."""
    retries: int = 0
    sitemaps: list[Record] = dataclasses.field(default_factory=list)
    """One record per sitemap fetched: ``num_urls`` entries in scope, ``num_new_urls`` new."""
    hosts: dict[str, HostActivity] = dataclasses.field(default_factory=dict)
    """Per origin, the requests sent and the waits politeness imposed."""

    @property
    def broken(self) -> list[Record]:
        """Records of URLs that are broken: 4xx, 5xx, or no response."""
        return [r for r in self.records if r.status_class in ("4xx", "5xx", "error")]

    @property
    def failed_roots(self) -> list[str]:
        """Roots that could not be fetched: no record, an error, a 4xx or 5xx, at the end
        of their redirects."""
        by_url = {record.url: record for record in self.records}
        failed = []
        for root in self.roots:
            record = by_url.get(root)
            hops = 0
            while record is not None and record.next_url is not None and hops < 20:
                record, hops = by_url.get(record.next_url, record), hops + 1
                if record.next_url is None or record.url == record.next_url:
                    break
            if record is None or record.status_class in ("4xx", "5xx", "error", "other"):
                failed.append(root)
        return failed

    def format(self, *, max_listed: int = 20) -> str:
        """The report as text for people."""
        text = format_report(
            self.records, self.wall_time, max_errors=max_listed, retries=self.retries
        )
        lines = [text.rstrip("\n")]
        if self.stop_reason is not None:
            option = LIMIT_OPTIONS.get(self.stop_reason, self.stop_reason)
            lines += [
                "",
                f"Stopped by {option}: {len(self.left):,} URLs left in the frontier",
            ]
            lines += [f"  {url}" for url in self.left[:max_listed]]
            if len(self.left) > max_listed:
                lines.append(f"  ... and {len(self.left) - max_listed:,} more")
        skipped = {why: urls for why, urls in self.skipped.items() if urls}
        if skipped:
            lines += ["", "Skipped"]
            for why, urls in skipped.items():
                by = LIMIT_OPTIONS.get(why, why)
                lines.append(f"  by {by}: {len(urls):,} URLs")
                lines += [f"    {url}" for url in urls[:max_listed]]
                if len(urls) > max_listed:
                    lines.append(f"    ... and {len(urls) - max_listed:,} more")
        if self.robots_notes:
            lines += ["", "robots.txt"]
            lines += [f"  {key}: {note}" for key, note in self.robots_notes.items()]
        if self.hosts:
            lines += ["", "Hosts"]
            for key, host in self.hosts.items():
                pauses = f", {host.back_offs:,} pauses asked for" if host.back_offs else ""
                lines.append(
                    f"  {key}  {host.requests:,} requests,"
                    f" held back {host.held_back:.2f} s{pauses}"
                )
        if self.sitemaps:
            lines += ["", f"Sitemaps ({len(self.sitemaps):,})"]
            for record in self.sitemaps[:max_listed]:
                outcome = "error" if record.exception is not None else str(record.status)
                lines.append(f"  {outcome:>5}  {record.url}")
                if record.exception is not None:
                    lines.append(f"         {record.exception}")
                elif record.num_urls:
                    lines.append(
                        f"         {record.num_urls:,} URLs listed, {record.num_new_urls:,} new"
                    )
            if len(self.sitemaps) > max_listed:
                lines.append(f"  ... and {len(self.sitemaps) - max_listed:,} more")
        if self.failed_roots:
            lines += ["", "Roots not fetched"]
            lines += [f"  {url}" for url in self.failed_roots]
        return "\n".join(lines) + "\n"

    def to_json(self) -> str:
        """The report as one JSON object, for programs."""
        summary = summarize(self.records, self.wall_time)
        errors_by_kind = Counter(
            record.error_kind or "unclassified" for record in self.records if record.exception
        )
        return json.dumps(
            {
                "pages": summary.pages,
                "bytes": summary.total_bytes,
                "wall_time": round(self.wall_time, 3),
                "tries": summary.tries,
                "retries": self.retries,
                "by_class": summary.by_class,
                "by_status": {str(status): n for status, n in summary.by_status.items()},
                "errors_by_kind": dict(errors_by_kind.most_common()),
                "broken": [
                    {
                        "url": r.url,
                        "status": r.status,
                        "exception": r.exception,
                        "error_kind": r.error_kind,
                        "referrer": r.referrer,
                        "depth": r.depth,
                    }
                    for r in self.broken
                ],
                "stop_reason": self.stop_reason,
                "left": self.left,
                "skipped": self.skipped,
                "robots": self.robots_notes,
                "hosts": {
                    key: {
                        "requests": host.requests,
                        "held_back": round(host.held_back, 3),
                        "back_offs": host.back_offs,
                    }
                    for key, host in self.hosts.items()
                },
                "sitemaps": [
                    {
                        "url": r.url,
                        "status": r.status,
                        "exception": r.exception,
                        "num_urls": r.num_urls,
                        "num_new_urls": r.num_new_urls,
                    }
                    for r in self.sitemaps
                ],
                "failed_roots": self.failed_roots,
            }
        )


DISPLAY_WIDTH = 79
"""The live display's lines fit an 80-column terminal."""


@dataclasses.dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """The state of a running crawl at one moment, for the live progress display."""

    done: int
    """URLs finished (a record written)."""
    queued: int
    """URLs waiting in the frontier."""
    in_flight: int
    """URLs being fetched now."""
    errors: int
    """Finished URLs that failed."""
    elapsed: float
    """Seconds since the crawl started."""
    retries: int = 0
    """Requests sent again so far."""
    host_waits: dict[str, float] = dataclasses.field(default_factory=dict)
    """Hosts whose next request is held back (pacing, Retry-After): origin -> seconds left."""
    robots: dict[str, str] = dataclasses.field(default_factory=dict)
    """robots.txt fetches under way: origin -> how it is going."""

    @property
    def pages_per_second(self) -> float:
        """Finished URLs over elapsed time; 0.0 at the very start."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def format(self) -> str:
        """The counters on one line of fixed-width fields, so it can be redrawn in place;
        then a line for the hosts being waited on and one for robots.txt fetches, when
        there are any. No line is wider than ``DISPLAY_WIDTH``."""
        lines = [
            f"done {self.done:>7,} queued {self.queued:>6,} busy {self.in_flight:>3,}"
            f" {self.pages_per_second:>7,.1f}/s errors {self.errors:>4,}"
            f" retries {self.retries:>4,} {self.elapsed:>6.1f}s"
        ]
        if self.host_waits:
            waits = sorted(self.host_waits.items(), key=lambda item: -item[1])
            lines.append(
                "waiting: " + ", ".join(f"{_host(key)} {left:.1f}s" for key, left in waits)
            )
        if self.robots:
            fetches = ", ".join(f"{_host(key)} {state}" for key, state in self.robots.items())
            lines.append("robots.txt: " + fetches)
        return "\n".join(_fit(line) for line in lines)

    def __str__(self) -> str:
        return self.format()


def _host(origin: str) -> str:
    return origin.partition("://")[2] or origin


def _fit(line: str) -> str:
    if len(line) <= DISPLAY_WIDTH:
        return line
    return line[: DISPLAY_WIDTH - 3] + "..."
