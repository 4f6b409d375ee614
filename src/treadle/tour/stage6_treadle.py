"""Stage 6 of the tour: the same program with async/await, on treadle itself.

Stage 5 built its own Future, Task and loop to drive generators. treadle's are the
same ideas grown up, so here ``yield from`` becomes ``await``, stage 5's connect and
read_all become ``treadle.open_connection`` and ``StreamReader.read``, and
``treadle.gather`` plus ``treadle.run`` replace the hand-made Tasks and loop. Imports
the standard library, treadle's public API and the tour's ``common`` module only.
"""

from __future__ import annotations

import sys
import time

import treadle
from treadle.tour import common


async def fetch(url: str) -> common.FetchResult:
    """Fetch one URL: stage 5's fetch, with ``await`` wherever it said ``yield from``."""
    host, port, path = common.parse_url(url)
    started = time.monotonic()
    try:
        reader, writer = await treadle.open_connection(host, port)
    except OSError as error:
        error.filename = url  # every stage's connection error names the URL
        raise
    async with writer:  # closes the connection, and waits for that, on the way out
        writer.write(common.request_for(host, path))
        response = await reader.read()  # no size: everything until the server closes
    return common.record_fetch(url, started, response)


async def fetch_every(urls: list[str]) -> list[common.FetchResult]:
    """Run a fetch per URL concurrently; their results in the order of urls."""
    return await treadle.gather(*(fetch(url) for url in urls))


def fetch_all(urls: list[str]) -> list[common.FetchResult]:
    """Run the fetches on a fresh treadle loop until all of them are done.

    If one fails, ``treadle.run`` cancels the others and closes their connections
    before the error comes out here.
    """
    return treadle.run(fetch_every(urls))


if __name__ == "__main__":
    sys.exit(common.run_by_hand(fetch_all, __spec__.name))
