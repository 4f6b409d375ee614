"""Stage 3 of the tour: callbacks for every URL at once, so the fetches overlap.

Stage 2's callbacks already let one loop serve any number of sockets; here we start
every fetch before running the loop, and each pass of the loop serves whichever
sockets are ready. N slow URLs now take about as long as one. Only ``fetch_all``
changes, so this file is that function: the Fetcher, the selector and the loop are
stage 2's, imported. Standard library only, plus the tour's ``common`` module and
stage 2.
"""

from __future__ import annotations

import sys

from treadle.tour import common
from treadle.tour.stage2_callbacks import Fetcher, run_until_fetched, selector


def fetch_all(urls: list[str]) -> list[common.FetchResult]:
    """Start every fetch, then run the loop until all of them are done."""
    try:
        fetchers = [Fetcher(url) for url in urls]
        for fetcher in fetchers:
            fetcher.start()
        # Each pass of the loop serves every ready socket, not just this fetcher's.
        return [run_until_fetched(fetcher) for fetcher in fetchers]
    finally:
        common.close_abandoned(selector)


if __name__ == "__main__":
    sys.exit(common.run_by_hand(fetch_all, __spec__.name))
