"""``treadle crawl --timeline``: the page's lanes and bars, and that a browser opens it cleanly.

The crawl is the built-in demo site in this process, with pacing so politeness waits
show. The page is checked by parsing it (lanes, bars by phase, tooltips) and by opening
it in headless Chromium: no console message, its script ran to the end, a screenshot.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from treadle.crawl import cli
from treadle.crawl.records import Record
from treadle.crawl.timeline import FETCH, POLITENESS, RETRY_WAIT, Segment, render_html


class Bars(HTMLParser):
    """The page's bars (their class and tooltip) and lane labels."""

    def __init__(self) -> None:
        super().__init__()
        self.bars: list[tuple[str, str]] = []
        self.lanes: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "rect":
            self.bars.append((attributes.get("class") or "", ""))
        elif tag == "title" and self.bars:
            self._in = "title"
        elif tag == "text" and attributes.get("class") == "lane":
            self._in = "lane"

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            kind, title = self.bars[-1]
            self.bars[-1] = (kind, title + data)
        elif self._in == "lane":
            self.lanes.append(data)


def parse(page: str) -> Bars:
    bars = Bars()
    bars.feed(page)
    return bars


CRAWL_ARGS = [
    "--demo", "--pages", "30", "--max-tasks", "6", "--max-per-host", "2",
    "--delay", "0.01", "--latency", "0.005", "-q",
]  # fmt: skip


@pytest.fixture(scope="module")
def crawl_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("timeline") / "crawl.html"
    status = cli.main([*CRAWL_ARGS, "--timeline", str(path)])
    assert status == 0
    return path


def test_the_page_has_a_lane_per_worker_and_per_host_with_bars_by_phase(crawl_page: Path) -> None:
    page = parse(crawl_page.read_text())
    workers = [lane for lane in page.lanes if lane.startswith("crawl-worker-")]
    hosts = [lane for lane in page.lanes if re.fullmatch(r"127\.0\.0\.1:\d+", lane)]
    assert 1 < len(workers) <= 6 and len(hosts) == 1
    kinds = {kind for kind, _ in page.bars}
    assert {"fetch", "politeness"} <= kinds
    fetch_titles = [title for kind, title in page.bars if kind == "fetch"]
    assert all(re.match(r"fetch: http://127\.0\.0\.1:\d+/", title) for title in fetch_titles)
    assert any("HTTP 200, 1 try" in title for title in fetch_titles)


def test_retries_and_outcomes_are_drawn() -> None:
    url = "http://example.test/flaky"
    record = Record(url=url, status=503, tries=2, started=0.0, elapsed=0.6)
    segments = [
        Segment("crawl-worker-0", POLITENESS, url, 0.0, 0.1, 0),
        Segment("crawl-worker-0", FETCH, url, 0.1, 0.2, 1),
        Segment("crawl-worker-0", RETRY_WAIT, url, 0.2, 0.5, 1),
        Segment("crawl-worker-0", FETCH, url, 0.5, 0.6, 2),
    ]
    page = render_html(segments, [record])
    bars = parse(page).bars
    on_worker = ["politeness", "fetch", "retry-wait", "fetch"]
    assert [kind for kind, _ in bars] == [*on_worker, "fetch", "fetch"]
    assert 'fill="#d9480f"' in page  # 5xx
    assert "&times;2</text>" in page
    assert "HTTP 503, 2 tries" in bars[1][1]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--no-first-run", "--disable-component-update", "--disable-sync",
    "--enable-logging=stderr", "--v=0",
]  # fmt: skip


def open_in_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.skip("needs server: chromium")
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_the_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>notDefined();</script></body></html>")
    result = open_in_chromium(broken, tmp_path / "profile", "--dump-dom")
    assert any("Uncaught ReferenceError" in line for line in console_messages(result.stderr))


def test_the_page_opens_in_chromium_without_errors(crawl_page: Path, tmp_path: Path) -> None:
    dom = open_in_chromium(crawl_page, tmp_path / "profile-dom", "--dump-dom")
    assert console_messages(dom.stderr) == []
    assert 'data-ready="1"' in dom.stdout, "the page's script did not run to its end"
    screenshot = tmp_path / "timeline.png"
    shot = open_in_chromium(
        crawl_page, tmp_path / "profile-shot", "--window-size=1280,900",
        f"--screenshot={screenshot}",
    )  # fmt: skip
    assert console_messages(shot.stderr) == []
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
