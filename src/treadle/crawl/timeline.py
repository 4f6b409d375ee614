"""``treadle crawl --timeline FILE.html``: the crawl drawn as a timeline, one self-contained page.

A lane per worker shows what it did over time: waiting for the host's politeness slot,
fetching (coloured by the URL's outcome), waiting to retry, reading robots.txt. A lane
per host (as many rows as it had requests at once, so the politeness cap shows) has
each fetch as a bar, coloured by outcome, with its retries marked. Hovering a bar names
the URL.

The recorder watches each worker's steps through the loop's callback observer (the
hook ``treadle.trace`` uses, and passes every call on to one already set), reading
from each worker's await chain which phase it is in; the outcome comes from the
crawl's records. Crawler layer: imports the core's observer hook, introspection's frame
walk, and the crawl's records.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from treadle.core.handles import Handle
from treadle.crawl.records import Record
from treadle.introspect.graph import coroutine_frames
from treadle.loop import CallbackObserver, EventLoop

__all__ = ["Segment", "TimelineRecorder", "render_html", "write_html"]

# A worker's phase, by the innermost of the crawler's functions it is suspended in.
IDLE, ROBOTS, POLITENESS, FETCH, RETRY_WAIT = "idle", "robots", "politeness", "fetch", "retry wait"

COLOURS = {
    "2xx": "#2e9e44",
    "3xx": "#3b7dd8",
    "4xx": "#e0a100",
    "5xx": "#d9480f",
    "error": "#c92a2a",
    "other": "#868e96",
    "pending": "#adb5bd",
    POLITENESS: "#ffe8a1",
    RETRY_WAIT: "#ffc9c9",
    ROBOTS: "#b197fc",
}


@dataclasses.dataclass
class Segment:
    """One stretch of one worker's time: a phase, the URL it was for, and when."""

    worker: str
    phase: str
    url: str | None
    start: float
    end: float
    tries: int = 0


def _phase_of(frames: list[Any]) -> tuple[str, str | None, int]:
    """(phase, url, tries) of a crawl worker from its await chain, outermost first."""
    names = [frame.f_code.co_qualname for frame in frames]
    fetch = next((f for f in frames if f.f_code.co_qualname == "Crawler._fetch"), None)
    if fetch is None:
        if "Crawler._robots_for" in names or "Crawler._fetch_robots" in names:
            return ROBOTS, None, 0
        return IDLE, None, 0
    job = fetch.f_locals.get("job")
    record = fetch.f_locals.get("record")
    url = getattr(job, "url", None)
    tries = getattr(record, "tries", 0)
    inner = names[names.index("Crawler._fetch") + 1 :]
    if "Crawler._fetch_once" in inner:
        return FETCH, url, tries
    if "HostGate.slot" in inner:
        return POLITENESS, url, tries
    if inner[:1] == ["sleep"]:
        return RETRY_WAIT, url, tries
    return FETCH, url, tries


class TimelineRecorder:
    """Records each crawl worker's phases while the crawl runs; install with ``start``."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []
        self._open: dict[Any, Segment] = {}
        self._loop: EventLoop | None = None
        self._passed_on: CallbackObserver | None = None
        self._task: Any = None
        self.started = 0.0

    def start(self, loop: EventLoop) -> None:
        """Watch ``loop``'s callbacks (passing them on to any observer already set)."""
        self._loop = loop
        # The crawl starts right after: its records' times count from (about) here.
        self.started = loop.time()
        self._passed_on = loop._callback_observer
        loop._callback_observer = self

    def stop(self) -> None:
        """Stop watching; close every worker's last segment."""
        loop = self._loop
        if loop is None:
            return
        if loop._callback_observer is self:
            loop._callback_observer = self._passed_on
        now = loop.time()
        for segment in self._open.values():
            segment.end = now
            if segment.phase != IDLE:
                self.segments.append(segment)
        self._open.clear()
        self._loop = None

    # --- the callback observer ---------------------------------------------------------

    def callbacks_began(self, count: int) -> None:
        if self._passed_on is not None:
            self._passed_on.callbacks_began(count)

    def callback_began(self, handle: Handle) -> None:
        owner = getattr(handle._callback, "__self__", None)
        self._task = owner if callable(getattr(owner, "get_coro", None)) else None
        if self._passed_on is not None:
            self._passed_on.callback_began(handle)

    def callback_ended(self, handle: Handle) -> None:
        if self._passed_on is not None:
            self._passed_on.callback_ended(handle)
        task, self._task = self._task, None
        if task is None or self._loop is None:
            return
        name = task.get_name()
        if not name.startswith("crawl-worker-"):
            return
        now = self._loop.time()
        phase, url, tries = (
            ("done", None, 0) if task.done() else _phase_of(coroutine_frames(task.get_coro()))
        )
        current = self._open.get(task)
        if current is not None and (current.phase, current.url) == (phase, url):
            current.tries = tries
            return
        if current is not None:
            current.end = now
            if current.phase != IDLE:
                self.segments.append(current)
        if task.done():
            self._open.pop(task, None)
            return
        self._open[task] = Segment(name, phase, url, now, now, tries)

    def callbacks_ended(self) -> None:
        if self._passed_on is not None:
            self._passed_on.callbacks_ended()


# --- the page ---------------------------------------------------------------------------

_ROW = 16
_GAP = 4
_LABEL = 220
_WIDTH = 1200


def _host(url: str | None) -> str:
    return urlsplit(url).netloc if url else "?"


def _pack(bars: list[tuple[float, float]]) -> list[int]:
    """A row for each (start, end) bar so that bars in one row never overlap."""
    row_ends: list[float] = []
    rows = []
    for start, end in bars:
        for row, row_end in enumerate(row_ends):
            if row_end <= start:
                row_ends[row] = end
                rows.append(row)
                break
        else:
            row_ends.append(end)
            rows.append(len(row_ends) - 1)
    return rows


def render_html(
    segments: Iterable[Segment], records: Iterable[Record], *, time_offset: float = 0.0
) -> str:
    """The timeline page. ``time_offset``: the loop time the crawl started at (records'
    ``started`` counts from it)."""
    records_by_url = {record.url: record for record in records}
    segs = sorted(
        (
            dataclasses.replace(s, start=s.start - time_offset, end=s.end - time_offset)
            for s in segments
        ),
        key=lambda s: (s.start, s.worker),
    )
    total = max(
        [s.end for s in segs] + [r.started + r.elapsed for r in records_by_url.values()] + [0.001]
    )
    scale = (_WIDTH - _LABEL - 20) / total

    def outcome(url: str | None) -> str:
        record = records_by_url.get(url or "")
        return record.status_class if record is not None else "pending"

    def title(segment: Segment) -> str:
        record = records_by_url.get(segment.url or "")
        what = f"{segment.phase}: {segment.url or ''}"
        if record is not None:
            result = record.exception or f"HTTP {record.status}"
            what += f"\n{result}, {record.tries} tr{'y' if record.tries == 1 else 'ies'}"
        return f"{what}\n{segment.start:.3f} s to {segment.end:.3f} s ({segment.worker})"

    def colour(segment: Segment) -> str:
        return COLOURS[outcome(segment.url)] if segment.phase == FETCH else COLOURS[segment.phase]

    shapes: list[str] = []
    y = 30

    def lane_label(text: str) -> None:
        shapes.append(f'<text x="4" y="{y + _ROW - 4}" class="lane">{html.escape(text)}</text>')

    def bar(segment: Segment, row_y: int) -> None:
        x = _LABEL + segment.start * scale
        width = max((segment.end - segment.start) * scale, 1.0)
        kind = segment.phase.replace(" ", "-")
        shapes.append(
            f'<rect x="{x:.1f}" y="{row_y}" width="{width:.1f}" height="{_ROW}" '
            f'fill="{colour(segment)}" class="{kind}"><title>{html.escape(title(segment))}'
            "</title></rect>"
        )
        if segment.phase == FETCH and segment.tries > 1:
            shapes.append(
                f'<text x="{x + 2:.1f}" y="{row_y + _ROW - 4}" class="retry">'
                f"&times;{segment.tries}</text>"
            )

    shapes.append('<text x="4" y="20" class="section">Workers</text>')
    workers = sorted({s.worker for s in segs}, key=lambda w: int(w.rsplit("-", 1)[-1]))
    for worker in workers:
        lane_label(worker)
        for segment in segs:
            if segment.worker == worker:
                bar(segment, y)
        y += _ROW + _GAP
    y += 20
    shapes.append(f'<text x="4" y="{y - 6}" class="section">Hosts</text>')
    hosts = sorted({_host(s.url) for s in segs if s.url})
    for host in hosts:
        # Only the fetches: the rows show how many requests the host had at once.
        mine = [s for s in segs if _host(s.url) == host and s.phase == FETCH]
        rows = _pack([(s.start, s.end) for s in mine])
        lane_label(host)
        for segment, row in zip(mine, rows, strict=True):
            bar(segment, y + row * (_ROW + 2))
        y += (max(rows, default=0) + 1) * (_ROW + 2) + _GAP + 6
    axis = []
    step = _nice_step(total)
    tick = 0.0
    while tick <= total + 1e-9:
        x = _LABEL + tick * scale
        axis.append(
            f'<line x1="{x:.1f}" y1="24" x2="{x:.1f}" y2="{y}" class="grid"/>'
            f'<text x="{x + 2:.1f}" y="{y + 14}" class="axis">{tick:g} s</text>'
        )
        tick += step
    legend = "".join(
        f'<span class="key"><i style="background:{c}"></i>{html.escape(k)}</span>'
        for k, c in COLOURS.items()
    )
    counts = {
        "workers": len(workers),
        "hosts": len(hosts),
        "urls": len(records_by_url),
        "seconds": round(total, 3),
    }
    return _PAGE.format(
        width=_WIDTH,
        height=y + 24,
        shapes="\n".join(axis + shapes),
        legend=legend,
        summary=html.escape(json.dumps(counts)),
        counts=counts,
    )


def _nice_step(total: float) -> float:
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600):
        if total / step <= 12:
            return float(step)
    return total / 10


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>treadle crawl timeline</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 16px; color: #212529; }}
svg {{ display: block; }}
.lane {{ font-size: 11px; fill: #343a40; }}
.section {{ font-weight: 600; font-size: 13px; }}
.axis {{ font-size: 10px; fill: #868e96; }}
.grid {{ stroke: #e9ecef; }}
.retry {{ font-size: 10px; fill: white; pointer-events: none; }}
.politeness {{ stroke: #e0a100; stroke-dasharray: 2 2; }}
.key {{ margin-right: 12px; white-space: nowrap; }}
.key i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px;
          vertical-align: -2px; }}
#zoom {{ margin: 8px 0; }}
</style></head><body>
<h1 style="font-size:16px">treadle crawl timeline</h1>
<p id="summary" data-counts="{summary}">{counts[urls]} URLs, {counts[workers]} workers,
{counts[hosts]} hosts, {counts[seconds]} s. Hover a bar for its URL; &times;N marks a fetch tried
N times.</p>
<p>{legend}</p>
<div id="zoom">zoom <button data-zoom="0.5">&minus;</button> <button data-zoom="2">+</button></div>
<div style="overflow-x:auto"><svg id="timeline" xmlns="http://www.w3.org/2000/svg"
 width="{width}" height="{height}" viewBox="0 0 {width} {height}"
 preserveAspectRatio="none">
{shapes}
</svg></div>
<script>
"use strict";
const svg = document.getElementById("timeline");
const baseWidth = svg.width.baseVal.value;
let factor = 1;
for (const button of document.querySelectorAll("[data-zoom]")) {{
  button.addEventListener("click", () => {{
    factor = Math.min(32, Math.max(1, factor * Number(button.dataset.zoom)));
    svg.setAttribute("width", String(baseWidth * factor));
  }});
}}
document.body.dataset.ready = "1";
</script>
</body></html>
"""


def write_html(path: str, recorder: TimelineRecorder, records: Iterable[Record]) -> None:
    """Write the timeline page of a crawl recorded by ``recorder`` to ``path``."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(render_html(recorder.segments, records, time_offset=recorder.started))
