"""Resumable crawls (``--state``): the SQLite state, the --json repair, and real crashes.

The unit tests drive ``CrawlState`` and ``repair_json_lines`` directly and the crawler
in-process against a site of its own. The process tests serve the demo site from one
subprocess and crawl it from others that are killed (SIGKILL at several moments,
SIGTERM, SIGINT) and started again with the same ``--state``: every URL must be
recorded exactly once across the runs, none lost. They synchronise on the crawl's
progress (``-v`` prints a line per URL once its JSON line is written), never on sleeps.
"""

from __future__ import annotations

import collections
import json
import random
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from crawlsite import Site, open_fds, page

from treadle.crawl import DemoSite, Record
from treadle.crawl.cli import DEMO_MAX_DEPTH
from treadle.crawl.crawler import Crawler
from treadle.crawl.state import CrawlState, SavedJob, Snapshot, StateError, repair_json_lines

TREADLE = [sys.executable, "-m", "treadle"]
ROOTS = ["http://example.com/"]


def job(url: str, depth: int = 1) -> SavedJob:
    return SavedJob(url, depth, "http://example.com/", 10, False)


def load(path: Path, roots: list[str] = ROOTS) -> Snapshot:
    """What the state file at ``path`` holds (opened and closed again)."""
    state = CrawlState(path)
    try:
        return state.load(roots)
    finally:
        state.close()


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    before = open_fds()
    yield
    assert open_fds() == before, "the test left file descriptors open"


# --- the state file -----------------------------------------------------------------------


class TestCrawlState:
    def test_a_new_file_is_an_empty_crawl_of_its_roots(self, tmp_path: Path) -> None:
        state = CrawlState(tmp_path / "s.db")
        snapshot = state.load(ROOTS)
        assert (snapshot.frontier, snapshot.seen, snapshot.records) == ([], set(), [])
        state.close()
        with pytest.raises(StateError, match=r"belongs to a crawl of http://example\.com/:"):
            load(tmp_path / "s.db", ["http://other.org/"])

    def test_committed_changes_come_back_in_order(self, tmp_path: Path) -> None:
        state = CrawlState(tmp_path / "s.db")
        state.load(ROOTS)
        for url in ("http://example.com/", "http://example.com/a", "http://example.com/b"):
            state.queued(job(url))
        state.queued(SavedJob("http://example.com/sitemap.xml", 0, None, 10, True))
        done = Record(url="http://example.com/", status=200, num_urls=2)
        state.fetched(done)
        state.disallowed("http://example.com/b")
        state.too_deep("http://example.com/deep", 9)
        assert state.commit() == [done], "the committed page records are handed on"
        assert state.commit() == []
        state.close()
        snapshot = load(tmp_path / "s.db")
        assert [saved.url for saved in snapshot.frontier] == [
            "http://example.com/a",
            "http://example.com/sitemap.xml",
        ]
        assert snapshot.frontier[1].is_sitemap
        assert snapshot.seen == {
            "http://example.com/",
            "http://example.com/a",
            "http://example.com/b",
        }
        assert snapshot.sitemaps_seen == {"http://example.com/sitemap.xml"}
        assert snapshot.records == [done]
        assert snapshot.disallowed == ["http://example.com/b"]
        assert snapshot.too_deep == ["http://example.com/deep"]

    def test_changes_not_committed_are_not_in_the_file(self, tmp_path: Path) -> None:
        state = CrawlState(tmp_path / "s.db")
        state.load(ROOTS)
        state.queued(job("http://example.com/a"))
        state.commit()
        state.fetched(Record(url="http://example.com/a", status=200))
        # As after a crash: another process reads the file while this one has not committed.
        other = sqlite3.connect(tmp_path / "s.db")
        assert other.execute("SELECT url, outcome FROM urls").fetchall() == [
            ("http://example.com/a", None)
        ]
        other.close()
        assert state.pending == 1
        state.close()

    def test_a_too_deep_url_found_again_shallower_goes_on_the_frontier(
        self, tmp_path: Path
    ) -> None:
        state = CrawlState(tmp_path / "s.db")
        state.load(ROOTS)
        state.too_deep("http://example.com/x", 5)
        state.queued(job("http://example.com/x", depth=2))
        state.close()
        snapshot = load(tmp_path / "s.db")
        assert [(saved.url, saved.depth) for saved in snapshot.frontier] == [
            ("http://example.com/x", 2)
        ]
        assert snapshot.too_deep == []

    def test_a_file_that_is_not_a_state_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "notes.txt"
        path.write_text("shopping list\n" * 100)
        with pytest.raises(StateError, match=r"is not a crawl state file .*: give a new file"):
            CrawlState(path)


class TestRepairJsonLines:
    RECORDS = [Record(url=f"http://example.com/{i}", status=200) for i in range(4)]

    def lines(self, path: Path) -> list[str]:
        return [Record.from_json(line).url for line in path.read_text().splitlines()]

    def test_a_torn_last_line_is_cut_and_missing_records_added(self, tmp_path: Path) -> None:
        path = tmp_path / "out.jsonl"
        whole = "".join(record.to_json() + "\n" for record in self.RECORDS[:2])
        path.write_text(whole + self.RECORDS[2].to_json()[:25])
        assert repair_json_lines(path, self.RECORDS) == 2
        assert self.lines(path) == [record.url for record in self.RECORDS]

    def test_a_new_file_gets_every_record(self, tmp_path: Path) -> None:
        path = tmp_path / "new.jsonl"
        assert repair_json_lines(path, self.RECORDS) == 4
        assert self.lines(path) == [record.url for record in self.RECORDS]

    def test_a_whole_file_is_left_alone(self, tmp_path: Path) -> None:
        path = tmp_path / "out.jsonl"
        path.write_text("".join(record.to_json() + "\n" for record in self.RECORDS[::-1]))
        before = path.read_bytes()
        assert repair_json_lines(path, self.RECORDS) == 0
        assert path.read_bytes() == before

    def test_another_crawls_file_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "out.jsonl"
        path.write_text(Record(url="http://other.org/").to_json() + "\n")
        with pytest.raises(StateError, match=r"holds http://other\.org/ \(line 1\)"):
            repair_json_lines(path, self.RECORDS)
        path.write_text("not json\n")
        with pytest.raises(StateError, match=r"line 1 of the --json file .* is not a record"):
            repair_json_lines(path, self.RECORDS)


# --- the crawler with a state, in-process ---------------------------------------------------


@pytest.fixture
def linked_site() -> Iterator[dict[str, object]]:
    yield {
        "/": page("/a", "/b", "/c"),
        "/a": page("/a1", "/a2"),
        "/b": page("/b1"),
        "/c": page(),
        "/a1": page(),
        "/a2": page("/"),
        "/b1": page(),
    }


async def test_a_crawl_stopped_by_a_limit_resumes_where_it_stopped(
    tmp_path: Path, linked_site: dict[str, object]
) -> None:
    handed_on: list[str] = []
    async with Site(linked_site) as site:  # type: ignore[arg-type]
        runs = []
        for _ in range(4):
            state = CrawlState(tmp_path / "s.db")
            crawler = Crawler(
                site.url(),
                max_pages=2,
                max_tasks=1,
                sitemaps=False,
                state=state,
                on_record=lambda record: handed_on.append(record.url),
            )
            await crawler.crawl()
            state.close()
            runs.append(crawler)
    assert [run.stop_reason for run in runs] == ["max-pages", "max-pages", "max-pages", None]
    assert sorted(handed_on) == sorted(site.url(path) for path in linked_site)
    assert len(runs[-1].records) == len(linked_site), "the last report covers every run"
    pages = collections.Counter(site.stats.counts)
    assert pages.pop("/robots.txt") == 4, "each run reads robots.txt afresh"
    assert set(pages.values()) == {1}, "no page is fetched twice"


async def test_a_finished_crawl_run_again_fetches_nothing(
    tmp_path: Path, linked_site: dict[str, object]
) -> None:
    async with Site(linked_site) as site:  # type: ignore[arg-type]
        state = CrawlState(tmp_path / "s.db")
        await Crawler(site.url(), sitemaps=False, state=state).crawl()
        state.close()
        requests = len(site.stats.requests)
        state = CrawlState(tmp_path / "s.db")
        again = Crawler(site.url(), sitemaps=False, state=state)
        await again.crawl()
        state.close()
        assert len(site.stats.requests) == requests
    assert {record.url for record in again.records} == {site.url(p) for p in linked_site}
    assert len(again.report().records) == len(linked_site)


# --- real processes, really killed ------------------------------------------------------------

PAGES = 150


@pytest.fixture(scope="module")
def demo_root() -> Iterator[str]:
    """The demo site served by a process of its own, for the whole module."""
    args = ["demo-site", "--port", "0", "--pages", str(PAGES), "--delay", "0", "--latency", "0.005"]
    server = subprocess.Popen(
        [*TREADLE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        found = re.search(r"at (http://127\.0\.0\.1:\d+/) ", line)
        assert found is not None, line + server.stderr.read()  # type: ignore[union-attr]
        yield found[1]
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def crawl_command(root: str, tmp_path: Path) -> list[str]:
    return [
        *TREADLE, "crawl", root, "--state", str(tmp_path / "crawl.db"),
        "--json", str(tmp_path / "crawl.jsonl"), "-v", "--max-depth", str(DEMO_MAX_DEPTH),
        "--retry-backoff", "0.01", "--max-per-host", "8",
    ]  # fmt: skip


def start_and_wait(command: list[str], finished_urls: int) -> subprocess.Popen[str]:
    """Start a crawl; return once it reported ``finished_urls`` more URLs (or ended)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for _ in range(finished_urls):
        if "http://127.0.0.1:" not in process.stderr.readline():
            break  # the crawl ended first
    return process


def expected_urls(root: str) -> set[str]:
    return DemoSite(pages=PAGES).expected_reachable(max_depth=DEMO_MAX_DEPTH, origin=root)


def json_urls(tmp_path: Path) -> collections.Counter[str]:
    lines = (tmp_path / "crawl.jsonl").read_text(encoding="utf-8").splitlines()
    return collections.Counter(json.loads(line)["url"] for line in lines)


def finish(command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_crawls_killed_at_random_moments_resume_to_each_url_once(
    demo_root: str, tmp_path: Path
) -> None:
    command = crawl_command(demo_root, tmp_path)
    rng = random.Random()
    kills = [rng.randint(1, 40) for _ in range(3)]
    for finished in kills:
        process = start_and_wait(command, finished)
        process.kill()  # SIGKILL: no finally block runs, nothing is flushed
        process.communicate()
        assert process.returncode in (-signal.SIGKILL, 0), kills
    # A write torn by the kill (cut before its newline), as a crash mid-line leaves it.
    with (tmp_path / "crawl.jsonl").open("a") as out:
        out.write('{"url": "http://127.0.0.1:1/torn", "sta')
    finish(command)
    urls = json_urls(tmp_path)
    assert urls.most_common(1)[0][1] == 1, f"recorded twice (kills after {kills})"
    assert set(urls) == expected_urls(demo_root), f"kills after {kills}"


@pytest.mark.parametrize(
    ("sent", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_sigterm_and_ctrl_c_save_the_state_and_print_the_report(
    demo_root: str, tmp_path: Path, sent: signal.Signals, status: int
) -> None:
    command = crawl_command(demo_root, tmp_path)
    # Two requests at once, spaced by 30 ms: the crawl is still far from done when the
    # signal comes (the other 120 pages take 3.6 s at least, more than a busy machine
    # holds this process up between reading the 30th URL and signalling).
    process = start_and_wait([*command, "--max-per-host", "2", "--delay", "0.03"], 30)
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stdout + stderr
    assert "Traceback" not in stderr
    assert stdout.startswith("Interrupted: the report covers the URLs that finished.\n")
    assert f"saved in {tmp_path / 'crawl.db'}: run the same command to resume" in stdout
    first = json_urls(tmp_path)
    pages = re.search(r"^  pages\s+([\d,]+)$", stdout, re.MULTILINE)
    assert pages is not None and int(pages[1].replace(",", "")) == len(first) >= 30
    assert len(first) < len(expected_urls(demo_root)), "the crawl stopped early"
    done = finish(command)
    urls = json_urls(tmp_path)
    assert urls.most_common(1)[0][1] == 1
    assert set(urls) == expected_urls(demo_root)
    pages = re.search(r"^  pages\s+([\d,]+)$", done.stdout, re.MULTILINE)
    assert pages is not None and int(pages[1].replace(",", "")) == len(urls)


def test_state_with_demo_is_refused_with_what_to_do_instead(tmp_path: Path) -> None:
    done = subprocess.run(
        [*TREADLE, "crawl", "--demo", "--state", str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "serve the demo with 'treadle demo-site --port 8080'" in done.stderr
