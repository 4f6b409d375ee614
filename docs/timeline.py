"""Draw docs/timeline.svg: stage 1 (blocking) and stage 3 (callbacks) on one time axis.

Runs both stages of the tour against its slow server and draws one bar per fetch,
from its start to its finish, so the staircase of blocking fetches and the block of
overlapping ones can be compared at a glance. The SVG is written by hand with string
formatting; nothing beyond the standard library and ``treadle.tour`` is needed.

    python docs/timeline.py [--urls 5] [--delay 0.5] [--out docs/timeline.svg]
"""

from __future__ import annotations

import argparse
import math
import sys
import urllib.parse
from collections.abc import Sequence
from html import escape
from pathlib import Path

from treadle.tour.runner import Stage, StageRun, find_stage, run_stage
from treadle.tour.server import SlowServer

STAGE_NUMBERS = (1, 3)  # blocking, then every fetch at once with callbacks
COLOURS = {1: "#d9822b", 3: "#2b7bb9"}  # per stage; any other stage is grey

# Layout, in SVG user units (pixels at 100%).
WIDTH = 760
MARGIN = 20
LABEL_WIDTH = 80  # the column of URL paths left of the bars
BAR_HEIGHT = 16
BAR_GAP = 6
HEADING_HEIGHT = 34  # room above each stage's bars for its heading
GROUP_GAP = 14
AXIS_HEIGHT = 36


def nice_step(span: float, most: int = 8) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten) giving at most ``most`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / most
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def render(runs: Sequence[StageRun], title: str) -> str:
    """The SVG document for runs: a group of bars per run over one shared time axis."""
    span = max([1e-9, *(run.seconds for run in runs)])
    plot_left = MARGIN + LABEL_WIDTH
    plot_width = WIDTH - plot_left - MARGIN - 50  # room on the right for the totals

    def x(seconds: float) -> float:
        return plot_left + max(0.0, seconds) / span * plot_width

    parts: list[str] = []
    y = MARGIN + 24  # below the title
    for run in runs:
        colour = COLOURS.get(run.stage.number, "#888888")
        parts.append(
            f'<text x="{MARGIN}" y="{y + 20}" class="heading">'
            f"stage {run.stage.number}: {escape(run.stage.idea)}</text>"
        )
        y += HEADING_HEIGHT
        for record in run.records:
            start, end = record.started - run.began, record.finished - run.began
            label = urllib.parse.urlsplit(record.url).path or "/"
            left, right = x(start), max(x(end), x(start) + 1)
            parts.append(
                f'<text x="{plot_left - 8}" y="{y + BAR_HEIGHT - 4}" class="label">'
                f"{escape(label)}</text>"
            )
            parts.append(
                f'<rect x="{left:.1f}" y="{y}" width="{right - left:.1f}" height="{BAR_HEIGHT}"'
                f' rx="3" fill="{colour}"><title>{escape(label)}: {start:.2f} s to {end:.2f} s'
                "</title></rect>"
            )
            y += BAR_HEIGHT + BAR_GAP
        parts.append(
            f'<text x="{x(run.seconds) + 6:.1f}" y="{y - BAR_GAP - 4}" class="total">'
            f"{run.seconds:.2f} s</text>"
        )
        y += GROUP_GAP

    # The shared time axis: grid lines through every group, ticks and labels below.
    plot_top, plot_bottom = MARGIN + 24 + HEADING_HEIGHT - 6, y - GROUP_GAP
    step = nice_step(span)
    grid: list[str] = []
    for i in range(int(span / step + 1e-9) + 1):
        seconds = i * step
        gx = x(seconds)
        grid.append(
            f'<line x1="{gx:.1f}" y1="{plot_top}" x2="{gx:.1f}" y2="{plot_bottom + 4}"'
            ' class="grid"/>'
        )
        grid.append(f'<text x="{gx:.1f}" y="{plot_bottom + 18}" class="tick">{seconds:g}</text>')
    grid.append(
        f'<line x1="{plot_left}" y1="{plot_bottom}" x2="{plot_left + plot_width}"'
        f' y2="{plot_bottom}" class="axis"/>'
    )
    grid.append(
        f'<text x="{plot_left + plot_width / 2:.1f}" y="{plot_bottom + 32}" class="tick">'
        "seconds since the stage started</text>"
    )
    height = plot_bottom + AXIS_HEIGHT + MARGIN // 2

    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
            f' viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
            f"<title>{escape(title)}</title>",
            "<style>",
            "  .heading { font-size: 13px; font-weight: bold; fill: #222222; }",
            "  .label { text-anchor: end; fill: #444444; font-family: monospace; }",
            "  .total { fill: #222222; }",
            "  .tick { text-anchor: middle; fill: #555555; font-size: 11px; }",
            "  .grid { stroke: #dddddd; stroke-width: 1; }",
            "  .axis { stroke: #555555; stroke-width: 1; }",
            "</style>",
            f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
            f'<text x="{MARGIN}" y="{MARGIN + 6}" font-size="15" font-weight="bold"'
            f' fill="#111111">{escape(title)}</text>',
            *grid,
            *parts,
            "</svg>",
            "",
        ]
    )


def measure(urls: int, delay: float) -> list[StageRun]:
    """Run each stage in STAGE_NUMBERS over the same URLs of a fresh slow server."""
    stages: list[Stage] = []
    for number in STAGE_NUMBERS:
        stage = find_stage(number)
        if stage is None:
            raise LookupError(f"the tour has no stage {number}")
        stages.append(stage)
    with SlowServer(delay=delay) as server:
        paths = [server.url(f"/page/{number}") for number in range(1, urls + 1)]
        return [run_stage(stage, paths) for stage in stages]


def main(argv: list[str] | None = None) -> int:
    """Measure, draw and write the SVG; print where it went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=5, help="URLs to fetch (default 5)")
    parser.add_argument(
        "--delay", type=float, default=0.5, help="seconds the server takes per response"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("timeline.svg"), help="SVG to write"
    )
    args = parser.parse_args(argv)
    runs = measure(args.urls, args.delay)
    title = (
        f"Fetching {args.urls} URLs from a slow server ({args.delay:g} s per response):"
        " blocking vs callbacks"
    )
    args.out.write_text(render(runs, title), encoding="utf-8")
    print(
        f"wrote {args.out}: " + ", ".join(f"stage {r.stage.number} {r.seconds:.2f} s" for r in runs)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
