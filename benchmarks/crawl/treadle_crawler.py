"""The crawl benchmark's treadle side: treadle's own ``Crawler`` on one root URL.

Prints the same JSON line as ``aiohttp_crawler.py`` (pages, seconds, pages per
second, peak RSS) so the runner can put the two side by side.

    python benchmarks/crawl/treadle_crawler.py http://127.0.0.1:8000/ --max-tasks 100
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import treadle
from treadle.crawl import Crawler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("roots", nargs="+")
    parser.add_argument("--max-tasks", type=int, default=100)
    parser.add_argument("--no-robots", action="store_true")
    args = parser.parse_args()
    crawler = Crawler(args.roots, max_tasks=args.max_tasks, robots=not args.no_robots)
    start = time.perf_counter()
    treadle.run(crawler.crawl())
    seconds = time.perf_counter() - start
    records = crawler.records
    print(
        json.dumps(
            {
                "crawler": "treadle",
                "max_tasks": args.max_tasks,
                "pages": len(records),
                "seconds": round(seconds, 4),
                "pages_per_s": round(len(records) / seconds, 1),
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "errors": sum(record.exception is not None for record in records),
                "python": platform.python_version(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
