"""Crawl benchmark runner: treadle's crawler against the aiohttp baseline, in one run.

Serves a generated demo site (``treadle demo-site``, no slow pages) on CPU 1, then
crawls it with each crawler in a fresh process pinned to CPU 0, alternating A B A B
for ``--rounds`` rounds, and prints the medians and the ratios.

    python benchmarks/crawl/run.py --pages 2000 --max-tasks 100 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRAWLERS = {
    "treadle": HERE / "treadle_crawler.py",
    "aiohttp": HERE / "aiohttp_crawler.py",
}


def start_site(pages: int) -> tuple[subprocess.Popen[str], str]:
    command = ["taskset", "-c", "1", sys.executable, "-m", "treadle", "demo-site",
               "--port", "0", "--pages", str(pages), "--delay", "0"]
    site = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert site.stdout is not None
    line = site.stdout.readline()
    match = re.search(r"(http://\S+?)/? ", line)
    if match is None:
        site.kill()
        raise SystemExit(f"the demo site did not start: {line!r}")
    return site, match.group(1) + "/"


def crawl(name: str, root: str, max_tasks: int) -> dict[str, float]:
    command = ["taskset", "-c", "0", sys.executable, str(CRAWLERS[name]), root,
               "--max-tasks", str(max_tasks)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    result: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--max-tasks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    site, root = start_site(args.pages)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in CRAWLERS}
    try:
        for round_number in range(args.rounds):
            for name in CRAWLERS:
                result = crawl(name, root, args.max_tasks)
                results[name].append(result)
                print(f"round {round_number + 1} {name}: {result['pages']} pages, "
                      f"{result['pages_per_s']} pages/s, "
                      f"{result['peak_rss_bytes'] / 2**20:.1f} MiB", file=sys.stderr)
    finally:
        site.send_signal(signal.SIGINT)
        site.wait(timeout=10)
    print(f"# Crawl benchmark: {args.pages}-page demo site, {args.max_tasks} tasks, "
          f"medians of {args.rounds} alternated rounds (Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs; crawler pinned to CPU 0, site to CPU 1)\n")
    print("| crawler | pages | pages/s | peak RSS (MiB) |")
    print("|---|--:|--:|--:|")
    medians = {}
    for name, runs in results.items():
        rate = statistics.median(r["pages_per_s"] for r in runs)
        rss = statistics.median(r["peak_rss_bytes"] for r in runs) / 2**20
        medians[name] = (rate, rss)
        print(f"| {name} | {int(runs[0]['pages'])} | {rate:,.0f} | {rss:.1f} |")
    (t_rate, t_rss), (a_rate, a_rss) = medians["treadle"], medians["aiohttp"]
    print(f"\ntreadle / aiohttp pages per second: {t_rate / a_rate:.2f}x (target >= 1); "
          f"peak memory treadle / aiohttp: {t_rss / a_rss:.2f}x (target <= 1)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
