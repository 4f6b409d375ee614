"""WARC output (``--warc``): checked by warcio's own tools, replayed against what was sent.

A site of the test's own serves plain, chunked and gzipped pages, a redirect, a 404
and a big file the crawler does not read; the archive must pass ``warcio check``, be
listed by ``warcio index``, and give back each payload exactly as the server meant it
(its request records as the server received them). Then crawls killed with SIGKILL
and resumed with ``--state`` must leave one valid archive with no exchange twice.
"""

from __future__ import annotations

import collections
import gzip
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crawlsite import HTML, Site, chunked, html_page, open_fds, raw, redirect, static
from test_crawl_state import crawl_command, demo_root, finish, json_urls, start_and_wait

from treadle.crawl.crawler import Crawler
from treadle.crawl.warc import ORIGINAL_HEADER_PREFIX, WarcArchive

warcio = pytest.importorskip("warcio")
from warcio.archiveiterator import ArchiveIterator  # noqa: E402

__all__ = ["demo_root"]  # the fixture, shared with test_crawl_state

WARCIO = [sys.executable, "-c", "import sys; from warcio.cli import main; sys.exit(main())"]

PLAIN = html_page("/chunked", "/gzipped", "/moved", "/missing", "/big.bin").encode()
CHUNKED = html_page(title="chunked").encode() + b"x" * 100
GZIPPED = html_page(title="gzipped", extra="caf\u00e9 " * 50).encode()
BIG = b"\x00" * 100_000


@pytest.fixture(autouse=True)
def no_fd_leak() -> Iterator[None]:
    before = open_fds()
    yield
    assert open_fds() == before, "the test left file descriptors open"


def records_of(path: Path) -> list[Any]:
    """Every record of a WARC file, with its payload read (the iterator moves on)."""
    found = []
    with path.open("rb") as stream:
        for record in ArchiveIterator(stream):
            record.payload = record.content_stream().read()
            found.append(record)
    return found


def by_target(records: list[Any], kind: str) -> dict[str, Any]:
    """The records of one WARC-Type by their target URI (each must be there once)."""
    found = [r for r in records if r.rec_type == kind]
    targets = {r.rec_headers.get_header("WARC-Target-URI"): r for r in found}
    assert len(targets) == len(found), f"a {kind} record twice"
    return targets


def http_header(record: Any, name: str) -> str | None:
    value: str | None = record.http_headers.get_header(name)
    return value


async def test_an_archive_passes_warcio_check_and_replays_what_was_sent(tmp_path: Path) -> None:
    routes = {
        "/": static(200, PLAIN),
        "/chunked": raw(
            b"HTTP/1.1 200 OK\r\nContent-Type: " + HTML.encode()
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(CHUNKED)
        ),
        "/gzipped": static(200, gzip.compress(GZIPPED), headers=[("Content-Encoding", "gzip")]),
        "/moved": redirect("/"),
        "/big.bin": static(200, BIG, content_type="application/octet-stream"),
    }  # fmt: skip
    path = tmp_path / "crawl.warc.gz"
    archive = WarcArchive(path, info={"software": "treadle tests"})
    async with Site(routes) as site:
        crawler = Crawler(site.url(), warc=archive, sitemaps=False, retry_backoff=0)
        await crawler.crawl()
        archive.close()
        received = {request.target: request for request in site.stats.requests}

    checked = subprocess.run([*WARCIO, "check", "-v", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("digest pass") >= 3 * len(routes)
    index = subprocess.run([*WARCIO, "index", str(path)], capture_output=True, text=True)
    assert index.returncode == 0, index.stderr
    kinds = collections.Counter(json.loads(line)["warc-type"] for line in index.stdout.splitlines())
    urls = [site.url(p) for p in (*routes, "/missing")]
    assert kinds == {"warcinfo": 1, "request": 6, "response": 6, "metadata": 6}

    records = records_of(path)
    assert records[0].rec_type == "warcinfo"
    assert records[0].rec_headers.get_header("WARC-Type") == "warcinfo"
    assert b"software: treadle tests" in records[0].payload
    assert all(record.rec_headers.protocol == "WARC/1.1" for record in records)
    responses = by_target(records, "response")
    requests = by_target(records, "request")
    assert set(responses) == set(requests) == set(urls)

    # Replay: each payload is what the server meant, whatever the transfer or content coding.
    assert responses[site.url("/")].payload == PLAIN
    assert responses[site.url("/chunked")].payload == CHUNKED
    assert responses[site.url("/gzipped")].payload == GZIPPED
    chunked_head = responses[site.url("/chunked")]
    assert http_header(chunked_head, ORIGINAL_HEADER_PREFIX + "Transfer-Encoding") == "chunked"
    assert http_header(chunked_head, "Transfer-Encoding") is None
    assert http_header(chunked_head, "Content-Length") == str(len(CHUNKED))
    gzipped = responses[site.url("/gzipped")]
    assert http_header(gzipped, "Content-Encoding") is None
    assert http_header(gzipped, ORIGINAL_HEADER_PREFIX + "Content-Encoding") == "gzip"
    assert http_header(gzipped, ORIGINAL_HEADER_PREFIX + "Content-Length") == str(
        len(gzip.compress(GZIPPED))
    )
    moved = responses[site.url("/moved")]
    assert moved.http_headers.get_statuscode() == "302"
    assert http_header(moved, "Location") == "/"
    assert responses[site.url("/missing")].http_headers.get_statuscode() == "404"
    big = responses[site.url("/big.bin")]
    assert big.rec_headers.get_header("WARC-Truncated") == "unspecified"
    assert big.payload == b""
    assert http_header(big, ORIGINAL_HEADER_PREFIX + "Content-Length") == str(len(BIG))

    # The request records hold the request heads as the server received them.
    for url, request in requests.items():
        sent = received[url.removeprefix(site.origin)]
        fields = "".join(f"{name}: {value}\r\n" for name, value in sent.headers)
        head = f"GET {sent.target} HTTP/1.1\r\n{fields}\r\n".encode("latin-1")
        assert request.http_headers.to_bytes() == head
        assert request.rec_headers.get_header("WARC-Concurrent-To") is None
        response = responses[url]
        assert response.rec_headers.get_header("WARC-Concurrent-To") == (
            request.rec_headers.get_header("WARC-Record-ID")
        )
    metadata = [r for r in records if r.rec_type == "metadata"]
    about_gzipped = next(
        r for r in metadata if r.rec_headers.get_header("WARC-Target-URI") == site.url("/gzipped")
    )
    assert about_gzipped.payload == f"hopsFromSeed: 1\r\nvia: {site.url()}\r\n".encode()


def wait_for_growth(path: Path, process: subprocess.Popen[str], grow_by: int = 4000) -> None:
    """Wait until the file at ``path`` grew by ``grow_by`` bytes, or the process ended."""
    start = path.stat().st_size if path.exists() else 0
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= start + grow_by:
            return
        time.sleep(0.002)  # polling a file: progress shows nowhere else


def test_killed_and_resumed_crawls_leave_one_valid_archive_no_exchange_twice(
    demo_root: str, tmp_path: Path
) -> None:
    warc = tmp_path / "crawl.warc.gz"
    command = [*crawl_command(demo_root, tmp_path), "--warc", str(warc)]
    rng = random.Random()
    kills = [rng.randint(1, 40) for _ in range(3)]
    for finished in kills:
        process = start_and_wait(command, finished)
        # Records are handed on right after a commit; the kill should rather land
        # when the archive holds exchanges the state has not committed yet.
        wait_for_growth(warc, process)
        process.kill()
        process.communicate()
    finish(command)
    checked = subprocess.run([*WARCIO, "check", str(warc)], capture_output=True, text=True)
    assert checked.returncode == 0, f"kills after {kills}: {checked.stdout}{checked.stderr}"
    urls = json_urls(tmp_path)
    assert set(urls.values()) == {1}
    lines = (tmp_path / "crawl.jsonl").read_text().splitlines()
    tries = {json.loads(line)["url"]: json.loads(line)["tries"] for line in lines}
    responses = collections.Counter(
        r.rec_headers.get_header("WARC-Target-URI")
        for r in records_of(warc)
        if r.rec_type == "response"
    )
    sitemaps = {url for url in responses if url not in tries}
    assert all(url.endswith((".xml", ".xml.gz")) for url in sitemaps), sitemaps
    pages = {url: count for url, count in responses.items() if url in tries}
    # Each try that got a response is one exchange: more would be an exchange archived
    # by a run whose URL was then fetched again.
    assert all(1 <= count <= tries[url] for url, count in pages.items()), kills
    assert len(pages) == len(tries) - sum(
        1 for line in lines if json.loads(line)["status"] is None
    ), "every URL that got a response is archived"
