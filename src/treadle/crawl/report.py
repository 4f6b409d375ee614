"""What the crawler prints: the final report, and the one-line live progress.

Plain text built from ``treadle.crawl.records.Record`` values; imports only that and
the standard library. ``summarize`` gives the numbers, ``format_report`` the text.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from treadle.crawl.records import Record, status_class

__all__ = [
    "STATUS_CLASSES",
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
) -> str:
    """The end-of-crawl report as plain text (several lines, ending in a newline).

    Totals (pages, bytes, wall time, pages per second), counts per status class with
    the exact statuses of each, the ``slowest`` pages by elapsed time, and the failed
    fetches (URL and exception; the first ``max_errors``, then how many more).
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

    failed = [record for record in records if record.status_class == "error"]
    if failed:
        lines += ["", f"Errors ({len(failed):,})"]
        for record in failed[:max_errors]:
            lines.append(f"  {record.url}")
            lines.append(f"      {record.exception or 'no response'}")
        if len(failed) > max_errors:
            lines.append(f"  ... and {len(failed) - max_errors:,} more")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True, slots=True)
class ProgressSnapshot:
    """The state of a running crawl at one moment, for the live progress line."""

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

    @property
    def pages_per_second(self) -> float:
        """Finished URLs over elapsed time; 0.0 at the very start."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    def format(self) -> str:
        """One line, fixed-width fields so it can be redrawn in place (no newline)."""
        return (
            f"done {self.done:>8,}  queued {self.queued:>7,}  in flight {self.in_flight:>4,}"
            f"  {self.pages_per_second:>8,.1f} pages/s  errors {self.errors:>5,}"
            f"  {self.elapsed:>7.1f} s"
        )

    def __str__(self) -> str:
        return self.format()
