"""``treadle crawl`` and ``treadle demo-site`` from the outside: exit status, report, JSON Lines.

Most tests call ``treadle.__main__.main`` in-process with ``capsys``; the ones about
processes (no traceback, Ctrl-C, serving until interrupted) run ``python -m treadle``
in a subprocess. A test that needs a site of its own serves it on its loop and runs
the command in a worker thread (``treadle.to_thread``). Subprocesses are waited for
by reading their output, never by sleeping.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from crawlsite import RECORD_FIELDS, Site, page, raw, redirect, static
from processes import interrupt, reaped, spawn

import treadle
from treadle.__main__ import main
from treadle.crawl import DemoSite, Record
from treadle.crawl.cli import DEMO_MAX_DEPTH
from treadle.crawl.demosite import DemoSiteServer

TREADLE = [sys.executable, "-m", "treadle"]


def read_records(path: Path) -> list[Record]:
    """The records of a JSON Lines file, checking each line holds every field."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        data = json.loads(line)
        assert set(RECORD_FIELDS) <= set(data), f"missing fields in {line}"
        records.append(Record.from_dict(data))
    return records


def status_counts(report: str) -> dict[str, int]:
    """The per-class counts of a report: ``{"2xx": 12, ..., "error": 1}``."""
    counts = re.findall(r"^  (2xx|3xx|4xx|5xx|other|error)\s+([\d,]+)", report, re.MULTILINE)
    return {name: int(count.replace(",", "")) for name, count in counts}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TREADLE, *args], capture_output=True, text=True, timeout=30, check=False
    )


# --- a completed crawl ------------------------------------------------------------------------


def test_demo_crawl_reports_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "crawl.jsonl"
    args = ["crawl", "--demo", "--pages", "40", "--latency", "0", "--json", str(out), "--quiet"]
    assert main(args) == 0
    captured = capsys.readouterr()
    records = read_records(out)
    urls = [record.url for record in records]
    assert len(urls) == len(set(urls)), "one line per finished URL"
    origin = re.search(r"at (http://127\.0\.0\.1:\d+)", captured.err)
    assert origin is not None, captured.err
    expected = DemoSite(pages=40).expected_reachable(origin=origin[1], max_depth=DEMO_MAX_DEPTH)
    # The demo's slow pages take up to 0.15 s: far inside the default timeout.
    assert set(urls) == expected
    report = captured.out
    assert report.startswith("Crawl report\n")
    assert re.search(rf"^  pages\s+{len(records)}$", report, re.MULTILINE)
    counts = status_counts(report)
    assert counts == {
        name: sum(record.status_class == name for record in records)
        for name in ("2xx", "3xx", "4xx", "5xx", "error")
    }
    assert counts["4xx"] >= 1 and counts["5xx"] == 1
    # The report shows the traps at work: retries, the depth bound, the pauses, sitemaps.
    # The 500 is retried 3 times, and each busy page (one 429, three 503s) once.
    assert re.search(r"^  retries\s+7$", report, re.MULTILINE)
    assert "by robots.txt: 2 URLs" in report
    assert "by --max-depth: 2 URLs" in report and "/calendar/2027-01" in report
    assert re.search(r"^  http://127\.0\.0\.1:\d+  \d+ requests, held back \d", report, re.M)
    assert "4 pauses asked for" in report
    assert "Sitemaps (3)" in report and "sitemaps/more.xml.gz" in report


async def test_completed_crawl_with_failed_pages_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "crawl.jsonl"
    routes = {
        "/": page("/ok", "/garbage", "/missing", "/broken", "/moved"),
        "/ok": page(),
        "/garbage": raw(b"not http at all\r\n\r\n"),
        "/broken": static(500, "oops"),
        "/moved": redirect("/ok"),
    }
    async with Site(routes) as site:
        done = await treadle.to_thread(
            run_cli, "crawl", site.url(), "--json", str(out), "--max-tries", "2", "-q"
        )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert status_counts(done.stdout) == {"2xx": 2, "3xx": 1, "4xx": 1, "5xx": 1, "error": 1}
    assert "Errors (1)" in done.stdout and site.url("/garbage") in done.stdout
    records = {record.url: record for record in read_records(out)}
    assert set(records) == {site.url(path) for path in [*routes, "/missing"]}
    garbage = records[site.url("/garbage")]
    assert garbage.status is None and garbage.exception is not None
    assert garbage.exception.startswith("ProtocolError: ")
    assert records[site.url("/moved")].next_url == site.url("/ok")
    assert records[site.url()].num_urls == 5


async def test_crawl_of_a_demo_site_server(tmp_path: Path) -> None:
    out = tmp_path / "crawl.jsonl"
    site = DemoSite(pages=30, delay_scale=0)
    async with DemoSiteServer(site) as server:
        done = await treadle.to_thread(
            run_cli, "crawl", server.origin + "/", "--json", str(out), "--max-tasks", "4",
            "--max-depth", "5", "-v",
        )  # fmt: skip
        expected = site.expected_reachable(origin=server.origin, max_depth=5)
    assert done.returncode == 0, done.stderr
    records = read_records(out)
    assert {record.url for record in records} == expected
    assert len(records) == len(expected)
    assert server.stats.peak_requests <= 4
    # -v prints one line per finished URL on stderr.
    verbose = [line for line in done.stderr.splitlines() if server.origin in line]
    assert len(verbose) == len(records)


def test_json_to_stdout_moves_the_report_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crawl", "--demo", "--pages", "5", "--latency", "0", "--json", "-", "-q"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines and all(json.loads(line)["url"].startswith("http://127.0.0.1:") for line in lines)
    assert "Crawl report" in captured.err


# --- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ftp://example.org/"], "must be an http or https URL"),
        (["example.org"], "must be an http or https URL"),
        ([], "give at least one ROOT URL"),
        (["--demo", "--exclude", "("], "not a valid regular expression"),
        (["--demo", "--max-tasks", "-1"], "--max-tasks"),
        (["--demo", "--max-tries", "0"], "--max-tries"),
        (["--demo", "--max-redirect", "-3"], "--max-redirect"),
        (["--demo", "--timeout", "-1"], "--timeout"),
        (["--demo", "--timeout", "soon"], "--timeout"),
        (["--demo", "--max-size", "big"], "--max-size"),
        (["--demo", "http://example.org/"], "not both"),
        (["--demo", "--json", "/nonexistent/dir/out.jsonl"], "cannot write --json file"),
        (["--demo", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["crawl", *args])
    assert caught.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("treadle crawl: error: ")
    assert message in captured.err
    assert captured.err.count("\n") == 1, "one line"


def test_bad_arguments_in_a_process_give_no_traceback() -> None:
    for args in (["crawl", "ftp://example.org/"], ["crawl"], ["demo-site", "--port", "70000"]):
        done = run_cli(*args)
        assert done.returncode == 2, done
        assert done.stdout == ""
        assert "Traceback" not in done.stderr
        assert len(done.stderr.splitlines()) == 1, done.stderr


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crawll"]) == 2
    assert "unknown command 'crawll'" in capsys.readouterr().err


# --- processes ---------------------------------------------------------------------------


def test_ctrl_c_reports_what_finished(tmp_path: Path) -> None:
    out = tmp_path / "crawl.jsonl"
    args = ["crawl", "--demo", "--pages", "2000", "--max-tasks", "5", "--json", str(out), "-v"]
    with reaped(spawn([*TREADLE, *args])) as process:
        assert process.stderr is not None
        assert "serving a demo site" in process.stderr.readline()
        # -v prints a line per finished URL, after its JSON line is written and flushed.
        for _ in range(20):
            assert "http://127.0.0.1:" in process.stderr.readline()
        written = len(out.read_text(encoding="utf-8").splitlines())
        assert written >= 20
        stdout, stderr = interrupt(process, timeout=30)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stdout.startswith("Interrupted: the report covers the URLs that finished.\n")
    assert "Crawl report" in stdout
    records = read_records(out)  # every line whole and valid
    assert len(records) >= written
    assert len(records) < 2000, "the crawl stopped early"
    pages = re.search(r"^  pages\s+([\d,]+)$", stdout, re.MULTILINE)
    assert pages is not None and int(pages[1].replace(",", "")) == len(records)


def test_demo_site_serves_until_ctrl_c() -> None:
    with reaped(spawn([*TREADLE, "demo-site", "--port", "0", "--pages", "10"])) as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"Serving a demo site of 10 pages at (http://127\.0\.0\.1:\d+/) ", line)
        assert found is not None, line
        root = found[1]
        with urllib.request.urlopen(root + "page/3", timeout=10) as answer:
            assert answer.status == 200
            assert b"<a " in answer.read()
        with urllib.request.urlopen(root + "robots.txt", timeout=10) as answer:
            assert b"Disallow: /private/" in answer.read()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(root + "page/10", timeout=10)
        assert caught.value.code == 404
        caught.value.close()
        stdout, stderr = interrupt(process, timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert stdout == "", "nothing after the serving line"



# --- exit codes, machine report, a full disk --------------------------------------------------


def test_help_shows_defaults_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["crawl", "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    assert all(len(line) <= 80 for line in text.splitlines())
    for needle in ("--max-per-host N", "(default: 4)", "(default: 30.0)", "exit status:",
                   "  3 ", "  4 ", "  5 ", "Retry-After"):
        assert needle in text, needle


async def test_root_that_fails_exits_3() -> None:
    async with Site({"/": static(404, "gone")}) as site:
        done = await treadle.to_thread(run_cli, "crawl", site.url(), "-q")
    assert done.returncode == 3, done.stderr
    assert "Roots not fetched" in done.stdout and site.url() in done.stdout


async def test_stopped_by_a_limit_exits_4() -> None:
    async with Site({"/": page("/a", "/b", "/c"), "/a": page(), "/b": page()}) as site:
        done = await treadle.to_thread(run_cli, "crawl", site.url(), "--max-pages", "2", "-q")
    assert done.returncode == 4, done.stderr
    assert "Stopped by --max-pages" in done.stdout


async def test_broken_links_exit_5_with_fail_on_broken_and_json_report() -> None:
    async with Site({"/": page("/ok", "/missing"), "/ok": page()}) as site:
        plain = await treadle.to_thread(run_cli, "crawl", site.url(), "-q")
        strict = await treadle.to_thread(
            run_cli, "crawl", site.url(), "-q", "--fail-on-broken", "--report", "json"
        )
    assert plain.returncode == 0, plain.stderr
    assert "Broken links (1)" in plain.stdout and f"linked from {site.url()}" in plain.stdout
    assert strict.returncode == 5, strict.stderr
    report = json.loads(strict.stdout)
    assert report["broken"] == [
        {"url": site.url("/missing"), "status": 404, "exception": None, "error_kind": None,
         "referrer": site.url(), "depth": 1}
    ]
    assert report["by_class"]["4xx"] == 1 and report["failed_roots"] == []


def test_full_disk_under_json_gives_one_line_and_the_report() -> None:
    done = run_cli("crawl", "--demo", "--pages", "10", "--latency", "0", "--json", "/dev/full")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert errors == [
        "treadle crawl: error: cannot write --json file '/dev/full': No space left on device"
    ]
    assert done.stdout.startswith("Crawl report\n")
    assert re.search(r"^  pages\s+1$", done.stdout, re.MULTILINE)


async def test_sitemaps_are_read_unless_no_sitemaps() -> None:
    sitemap = "<urlset><url><loc>/listed</loc></url></urlset>"
    routes = {
        "/": page(),
        "/sitemap.xml": static(200, sitemap, content_type="application/xml"),
        "/listed": page(),
    }
    async with Site(routes) as site:
        read = await treadle.to_thread(run_cli, "crawl", site.url(), "-q", "--report", "json")
        paths_then = list(site.stats.paths)
        skipped = await treadle.to_thread(run_cli, "crawl", site.url(), "-q", "--no-sitemaps")
        paths_after = site.stats.paths[len(paths_then) :]
    assert read.returncode == 0 and skipped.returncode == 0, (read.stderr, skipped.stderr)
    report = json.loads(read.stdout)
    assert report["pages"] == 2 and report["sitemaps"] == [
        {"url": site.url("/sitemap.xml"), "status": 200, "exception": None,
         "num_urls": 1, "num_new_urls": 1}
    ]  # fmt: skip
    assert sorted(paths_then) == ["/", "/listed", "/robots.txt", "/sitemap.xml"]
    assert sorted(paths_after) == ["/", "/robots.txt"]
    assert "Sitemaps" not in skipped.stdout
