"""The real-pages crawl benchmark (benchmarks/crawl/real_pages.py) runs end to end.

On a tiny generated site instead of Debian's manuals: nginx serves it, every crawler
installed here crawls it (Scrapy and wget are left out by the harness, with a reason,
when missing), and each must fetch exactly the site's reachable URLs, so that the
harness and its crawlers cannot rot between the runs that make the table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parent.parent / "benchmarks" / "crawl" / "real_pages.py"

# The tiny site: (path, body). Links: relative, absolute-path, with a fragment, repeated,
# to a folder without its slash (nginx redirects), to a text file and to a missing page.
SITE = {
    "index.html": '<a href="a/">a</a> <a href="b.html#x">b</a> <a href="b.html">b</a>'
    ' <a href="notes.txt">notes</a> <a href="missing.html">gone</a>',
    "a/index.html": '<a href="../index.html">up</a> <area href="c.html">',
    "a/c.html": '<p>c <a href="/tiny/b.html">b</a></p>',
    "b.html": '<a href="a">a without its slash</a> <a href="#top">top</a>',
    "notes.txt": "not a page",
}
EXPECTED = {
    "/",  # the index page linking the manuals' roots
    "/tiny/",
    "/tiny/a/",
    "/tiny/a",
    "/tiny/a/c.html",
    "/tiny/b.html",
    "/tiny/index.html",
    "/tiny/notes.txt",
    "/tiny/missing.html",
}


def _nginx() -> str | None:
    sbin = "/usr/sbin/nginx"  # root's PATH has /usr/sbin, not every user's
    return shutil.which("nginx") or (sbin if os.path.exists(sbin) else None)


@pytest.fixture
def site() -> Iterator[Path]:
    """The tiny site, in a folder nginx's worker can read: it runs as nobody when the
    tests run as root, and pytest's tmp_path lies below a folder only its owner enters."""
    folder = Path(tempfile.mkdtemp(prefix="treadle-tiny-site-"))
    try:
        folder.chmod(0o755)
        for path, body in SITE.items():
            (folder / path).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            (folder / path).write_text(f"<!DOCTYPE html><html><body>{body}</body></html>")
            (folder / path).chmod(0o644)
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.mark.timeout(120)
def test_every_installed_crawler_fetches_the_same_urls(site: Path, tmp_path: Path) -> None:
    if _nginx() is None:
        pytest.skip("needs server: nginx not found (apt-get install nginx)")
    result_file = tmp_path / "result.json"
    run = subprocess.run(
        [sys.executable, str(HARNESS), "--docs", f"tiny={site}", "--no-pin",
         "--time-limit", "60", "--json", str(result_file)],
        capture_output=True, text=True, timeout=110, check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(result_file.read_text())
    crawled = {crawl["crawler"] for crawl in result["crawls"]}
    # treadle and the aiohttp crawler are always there (aiohttp is a test dependency);
    # the others were either crawled or left out with their reason.
    assert {"treadle", "aiohttp", "aiohttp-stdlib"} <= crawled
    for name in ("treadle-p2", "scrapy", "wget"):
        assert (name in crawled) != (name in result["skipped"]), name
    for crawl in result["crawls"]:
        assert set(crawl["urls"]) == EXPECTED, crawl["crawler"]
        assert crawl["exit_status"] in ((0, 8) if crawl["crawler"] == "wget" else (0,)), crawl
        assert not crawl["timed_out"], crawl
        assert crawl["cpu_seconds"] > 0 and crawl["peak_rss_bytes"] > 0, crawl
    assert "Same URL set as treadle: all crawls" in run.stdout
    assert "| treadle | 9 |" in run.stdout
