"""Which HTML parser finds the crawler's links: speed, agreement, and the loop's stalls.

On a folder of real pages (default: Python's HTML docs, `apt-get install python3-doc`):
1. each candidate tokenizer's throughput (MB/s of CPU time) finding the raw hrefs, and
   on how many pages its links differ from html.parser's (the oracle);
2. the crawler's whole per-page work (`Crawler._read_page`: decode, parse, normalise,
   scope) per parser, in ms of CPU per page;
3. the longest stall of a treadle loop while the biggest page is read, inline and in a
   worker thread (as the crawler does for big pages): a task sleeping 1 ms in a loop
   records the longest gap between its wake-ups.
Run:  python benchmarks/crawl/link_parsers.py [FOLDER]
Needs: pip install 'treadle[crawl]' lxml
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import treadle
from treadle.crawl.crawler import Crawler
from treadle.crawl.links import LEXBOR, STDLIB, find_links

FOLDER = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/doc/python3/html")
ORIGIN = "http://docs.example/"


def lxml_hrefs(text: str) -> list[str]:
    """html.parser-style callbacks from libxml2's HTML parser (no tree is built)."""
    import lxml.etree

    class Target:
        def __init__(self) -> None:
            self.hrefs: list[str] = []

        def start(self, tag: str, attrib: dict[str, str]) -> None:
            if tag in ("a", "area") and "href" in attrib:
                self.hrefs.append(attrib["href"] or "")

        def close(self) -> list[str]:
            return self.hrefs

        def data(self, _: str) -> None:
            pass

    result: list[str] = lxml.etree.fromstring(text, lxml.etree.HTMLParser(target=Target()))
    return result


def main() -> None:
    paths = sorted(FOLDER.rglob("*.html"))
    pages = [(path, path.read_bytes().decode("utf-8", "replace")) for path in paths]
    megabytes = sum(len(text.encode()) for _, text in pages) / 1e6
    print(f"{len(pages)} pages, {megabytes:.1f} MB, from {FOLDER}\n")

    candidates: dict[str, Any] = {
        STDLIB: lambda text: find_links(text, STDLIB).hrefs,
        LEXBOR: lambda text: find_links(text, LEXBOR).hrefs,
    }
    try:
        import lxml  # noqa: F401

        candidates["lxml"] = lxml_hrefs
    except ImportError:
        pass
    oracle = {path: list(dict.fromkeys(find_links(text, STDLIB).hrefs)) for path, text in pages}
    print("1. raw hrefs: throughput, and pages whose distinct hrefs differ from html.parser's")
    for name, hrefs in candidates.items():
        started = time.process_time()
        found = {path: hrefs(text) for path, text in pages}
        seconds = time.process_time() - started
        differ = sum(list(dict.fromkeys(found[path])) != oracle[path] for path, _ in pages)
        print(f"   {name:7} {megabytes / seconds:6.1f} MB/s   differ on {differ} pages")

    print("\n2. the crawler's work per page (decode, parse, normalise, scope)")
    bodies = [(ORIGIN + str(path.relative_to(FOLDER)), path.read_bytes()) for path, _ in pages]
    for parser in (STDLIB, LEXBOR):
        crawler = Crawler(ORIGIN, parser=parser)
        started = time.process_time()
        for url, body in bodies:
            crawler._read_page(body, "text/html", url)
        per_page = (time.process_time() - started) / len(bodies) * 1000
        print(f"   {parser:7} {per_page:6.2f} ms per page")

    biggest_url, biggest = max(bodies, key=lambda item: len(item[1]))
    print(f"\n3. longest loop stall reading {biggest_url} ({len(biggest) / 1e6:.2f} MB)")
    for parser in (STDLIB, LEXBOR):
        crawler = Crawler(ORIGIN, parser=parser)
        for place in ("inline", "thread"):
            stall = treadle.run(_stall(crawler, biggest, biggest_url, place))
            print(f"   {parser:7} {place:7} {stall * 1000:7.1f} ms")


async def _stall(crawler: Crawler, body: bytes, url: str, place: str) -> float:
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await treadle.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = treadle.create_task(ticker())
    await treadle.sleep(0.01)
    longest = 0.0
    if place == "inline":
        crawler._read_page(body, "text/html", url)
    else:
        await treadle.to_thread(crawler._read_page, body, "text/html", url)
    await treadle.sleep(0.005)
    done = True
    await task
    return longest


if __name__ == "__main__":
    main()
